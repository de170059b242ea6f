// sgt::DecodeWeights: which weights a CausalLM's decode steps read -- the stored, mapped ones, or
// a copy in feature blocks (CausalLM::copy_decode_weights; docs/format.md 9, "The decode copy")
// -- and where the copy is the default.
#pragma once

#include <cstring>

#include "sgt/core/enum_names.hpp"
#include "sgt/core/isa.hpp"

namespace sgt {
SGT_ISA_BEGIN

//   Auto:   the copy where decode_copy_pays() says so, the stored weights elsewhere.
//   Mapped: the stored weights (no extra memory).
//   Copy:   the copy (about the Linear weights' size in anonymous memory).
enum class DecodeWeights {
  Auto,
  Mapped,
  Copy,
};

inline constexpr EnumName<DecodeWeights> kDecodeWeightsNames[] = {{DecodeWeights::Auto, "auto"},
                                                                  {DecodeWeights::Mapped, "mapped"},
                                                                  {DecodeWeights::Copy, "copy"}};

inline const char* decode_weights_name(DecodeWeights d) noexcept {
  return enum_name(kDecodeWeightsNames, d);
}

// Whether the copy is measured to make decode faster with the kernels of instruction set
// `kernels_isa` (KernelTable::isa): the AVX2 and SSE2 ones, whose narrow path on row-major weights
// is bound by its transposes rather than by memory (bench/RESULTS.md, on an AVX2-only Zen 3: with
// AVX2, decode at 0.76-0.89x of llama.cpp's tokens/s without the copy, 1.06-1.17x with it; with
// SSE2, 1.38-1.62x the tokens/s without it; 1 and 2 threads). With AVX-512 the narrow path already
// reads at the memory's speed and the copy measured no faster (Zen 4); NEON is not measured, so it
// keeps the stored weights and spares the memory.
inline bool decode_copy_pays(const char* kernels_isa) noexcept {
  return std::strcmp(kernels_isa, "avx2") == 0 || std::strcmp(kernels_isa, "sse2") == 0;
}

// Whether a CausalLM should copy its decode weights for `choice` with those kernels.
inline bool wants_decode_copy(DecodeWeights choice, const char* kernels_isa) noexcept {
  return choice == DecodeWeights::Copy ||
         (choice == DecodeWeights::Auto && decode_copy_pays(kernels_isa));
}

SGT_ISA_END
}  // namespace sgt
