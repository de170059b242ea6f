// sgt::Precision: which arithmetic the Linear layers use. A core type because the kernels
// (kernels/matmul.hpp) take it as a parameter and the model (model/ops.hpp) chooses it.
#pragma once

#include "sgt/core/enum_names.hpp"

namespace sgt {

// The arithmetic of the Linear layers (docs/format.md, "Precision").
//   F32:  f32 activations times the weights widened to f32, f32 accumulation: the numerics of the
//         Hugging Face f32 reference.
//   Bf16: for BF16-stored weights, the activations are rounded to bf16 at the input of each
//         matmul and the products accumulated in f32 (the CPU's bf16 dot-product instruction where
//         it has one, an exact emulation elsewhere); everything else stays f32. Linears whose
//         weights are F32 or F16 run as in F32.
//   Auto: auto_precision() below.
enum class Precision {
  Auto,
  F32,
  Bf16,
};

// Its spellings, for options read from text (flags, requests) and for reports.
inline constexpr EnumName<Precision> kPrecisionNames[] = {
    {Precision::Auto, "auto"}, {Precision::F32, "f32"}, {Precision::Bf16, "bf16"}};

inline const char* precision_name(Precision p) noexcept {
  return enum_name(kPrecisionNames, p);
}

// What Auto runs: Bf16 only when the model's Linear weights are BF16 (what the transform was
// trained and served with) and the kernels run bf16 products on the CPU's bf16 dot-product
// instruction (KernelTable::bf16_dot_product); F32 otherwise. Without the instruction, bf16 is an
// emulation with f32 FMAs that is both slower than f32 and further from the f32 reference
// (docs/format.md 1.4 has the timings), so it is never the default there.
inline constexpr Precision auto_precision(bool linears_bf16, bool bf16_dot_product) noexcept {
  return linears_bf16 && bf16_dot_product ? Precision::Bf16 : Precision::F32;
}

}  // namespace sgt
