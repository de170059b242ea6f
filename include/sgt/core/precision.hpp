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
//   Auto: Bf16 when the estimators' projection weights are BF16, F32 otherwise.
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

}  // namespace sgt
