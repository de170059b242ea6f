// Weights in feature blocks: a Linear's W [N, K] stored so that one cache line holds the same k
// of many output features, which a decode step reads as whole registers with no transpose.
//
// Why. A decode step multiplies one token by every weight once, so it runs at the speed the
// weights stream in. Row-major W ([out_features][in_features], as safetensors stores it) puts
// one feature's k in a row; the narrow path (kernels/matmul_narrow.hpp) must transpose a
// register's worth of rows before each multiply-add, and on 16-register instruction sets the
// transposes and the single chain per output cap it near 20 GB/s even from L1 (bench/README.md).
// In feature blocks the weights are already in the order the chains consume them: on AVX2 one
// token against 128 x 2048 weights held in L2 streams at 57-91 GB/s instead of 12-18 (Zen 4),
// and from memory at the memory's speed. Each output is still one chain of multiply-adds in the
// order of k, so the bits are those of row-major W (tests/test_kernels_matmul.cpp).
//
// The layout, for W [N, K] of F32 or BF16 (F16 has no narrow path and stays row-major):
//   - features are cut into blocks of kFeatureBlock (64; the last block is padded with zero
//     features, computed and dropped);
//   - F32:  block b holds K steps of 64 floats: element (n, k) at (b * K + k) * 64 + n % 64;
//   - BF16: block b holds ceil(K / 2) steps of 64 pairs: the pair p of feature n is the two bf16
//     at 2 * ((b * P + p) * 64 + n % 64), k = 2p first (as in a row-major row), and an odd K's
//     last pair is (W[n][K-1], 0).
// One step of a block is 256 bytes: four cache lines holding one k (or pair) of 64 features.
// 64 is four AVX-512 registers, eight AVX2 or sixteen SSE2/NEON ones: one layout for every
// instruction set, so a dispatched build need not know the CPU when it packs.
//
// Blocked weights are a copy made once, at load (kernels/block_features.hpp), in memory of their
// own. The tile path reads them too, with the same bits, but more slowly than row-major rows
// (measured on Zen 4 at 128 tokens: 13-15% with the AVX2 kernels, up to 12% at bf16 on AVX-512;
// neither shorter K blocks, huge pages nor software prefetch closed the gap), so sgt::CausalLM
// keeps both: the mapped weights for a prefill, the copy for decode steps
// (CausalLM::copy_decode_weights).
#pragma once

#include <cstddef>
#include <type_traits>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"

namespace sgt {

// How a weight's elements are ordered in memory.
enum class WeightLayout {
  RowMajor,       // [N][K], as stored in safetensors
  FeatureBlocks,  // the blocks above
};

inline constexpr std::size_t kFeatureBlock = 64;

// Elements of one feature that share a 32-bit word: 2 for BF16 (a pair), 1 for F32.
template <class WT>
inline constexpr std::size_t kFeatureBlockPer = std::is_same_v<WT, bfloat16> ? 2 : 1;

// Steps (k, or pairs of k) of a block for K: K for F32, ceil(K / 2) for BF16.
inline constexpr std::size_t feature_block_steps(std::size_t k_len, std::size_t per) noexcept {
  return (k_len + per - 1) / per;
}

// Elements a feature-blocked [n_len, k_len] weight of `dtype` holds, padding included; false when
// that overflows std::size_t.
inline bool feature_blocks_elements(std::size_t n_len, std::size_t k_len, DType dtype,
                                    std::size_t& elements) noexcept {
  const std::size_t per = dtype == DType::BF16 ? 2 : 1;
  const std::size_t blocks = n_len / kFeatureBlock + (n_len % kFeatureBlock != 0 ? 1 : 0);
  std::size_t step_elements = 0;
  return checked_mul(feature_block_steps(k_len, per), kFeatureBlock * per, step_elements) &&
         checked_mul(blocks, step_elements, elements);
}

// Whether W [n_len, k_len] of `dtype` in feature blocks, padding included, holds at most twice
// its elements: false below 32 features (a hostile config's [1, K] would grow 64-fold), so a
// caller that copies only such matrices bounds the copy by the weights it was given.
inline bool feature_blocks_at_most_double(std::size_t n_len, std::size_t k_len,
                                          DType dtype) noexcept {
  std::size_t padded = 0;
  return feature_blocks_elements(n_len, k_len, dtype, padded) && padded / 2 <= n_len * k_len;
}

// The first element of feature n (k = 0) in a blocked weight of k_len; the element k of that
// feature is then at feature_block_offset<WT>(k) from it.
template <class WT>
inline std::size_t feature_block_origin(std::size_t n, std::size_t k_len) noexcept {
  constexpr std::size_t per = kFeatureBlockPer<WT>;
  return (n / kFeatureBlock) * feature_block_steps(k_len, per) * kFeatureBlock * per +
         (n % kFeatureBlock) * per;
}
template <class WT>
inline constexpr std::size_t feature_block_offset(std::size_t k) noexcept {
  constexpr std::size_t per = kFeatureBlockPer<WT>;
  return (k / per) * (kFeatureBlock * per) + k % per;
}

}  // namespace sgt
