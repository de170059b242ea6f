// Packed activations: the X operand of matmul (kernels/matmul.hpp), transposed into tiles.
//
// The matmul tile computes kTileTokens tokens x a few output features at once, one SIMD register
// holding kFloatLanes tokens of one feature; at every step k it loads the tokens' x[t][k] as
// registers and multiplies them by one broadcast weight. X is stored token-major ([T][K]), so the
// values of one k for kTileTokens tokens are kTileTokens rows apart. Packing copies them next to
// each other once per matmul call (T x K copies, against T x K x N / kFloatLanes vector FMAs that
// read them), in one of two layouts:
//   F32:       tile i, word k * kTileTokens + lane = x[i * kTileTokens + lane][k]
//   Bf16Pairs: tile i, word p * kTileTokens + lane = bf16 pair of x[..][2p] and x[..][2p + 1]
//              (simd::bf16_round_pair: rounded to nearest even; Precision::Bf16)
// Tokens past T and the odd K's missing partner are zeros: they add 0 * w to lanes that are never
// stored (and a zero times a finite weight changes no sum).
//
// The buffer is the caller's (packed_activation_floats), so a planned Workspace allocates nothing
// per call; matmul() without one allocates it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

enum class ActivationPacking { F32, Bf16Pairs };

// The packing a Linear with weights of `weight_dtype` uses at `precision` (Auto must have been
// resolved by the caller; it is read as F32 here).
inline ActivationPacking packing_for(Precision precision, DType weight_dtype) noexcept {
  return precision == Precision::Bf16 && weight_dtype == DType::BF16 ? ActivationPacking::Bf16Pairs
                                                                     : ActivationPacking::F32;
}

SGT_ISA_BEGIN
// Tokens per tile: two registers of kFloatLanes tokens (see the register budget in matmul.hpp).
inline constexpr std::size_t kTileTokens = 2 * simd::kFloatLanes;


inline std::size_t packed_tiles(std::size_t tokens) noexcept {
  return (tokens + kTileTokens - 1) / kTileTokens;
}

// 32-bit words of one tile: K floats or ceil(K / 2) pairs per token.
inline std::size_t packed_tile_words(std::size_t k_len, ActivationPacking packing) noexcept {
  return kTileTokens * (packing == ActivationPacking::F32 ? k_len : (k_len + 1) / 2);
}

// Floats of buffer that packing `tokens` x `k_len` activations needs, in either layout.
inline std::size_t packed_activation_floats(std::size_t tokens, std::size_t k_len) noexcept {
  return packed_tiles(tokens) * packed_tile_words(k_len, ActivationPacking::F32);
}

// The narrow layout (pack_activations_narrow) is the same transposition with as many lanes as
// there are tokens, one "tile" of `tokens` lanes and no padding:
//   F32:       word k * T + t = x[t][k]
//   Bf16Pairs: word p * T + t = bf16 pair of x[t][2p] and x[t][2p + 1]
// It feeds the narrow matmul path (kernels/matmul_narrow.hpp, T <= kNarrowMaxTokens), which
// broadcasts activations instead of loading them as registers, so padding lanes would only cost.
struct PackedActivations {
  const void* data = nullptr;
  std::size_t tokens = 0, k_len = 0;
  ActivationPacking packing = ActivationPacking::F32;
  bool narrow = false;  // the narrow layout: `tokens` lanes, read by the narrow path only

  std::size_t lanes() const noexcept { return narrow ? tokens : kTileTokens; }
  std::size_t tiles() const noexcept { return narrow ? 1 : packed_tiles(tokens); }
  std::size_t tile_words() const noexcept {
    return narrow ? tokens * (packing == ActivationPacking::F32 ? k_len : (k_len + 1) / 2)
                  : packed_tile_words(k_len, packing);
  }
  const float* f32_tile(std::size_t i) const noexcept {
    return static_cast<const float*>(data) + i * tile_words();
  }
  const std::uint32_t* pair_tile(std::size_t i) const noexcept {
    return static_cast<const std::uint32_t*>(data) + i * tile_words();
  }
};

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

// One tile: k (or pair) blocks of 16 values outermost, so the tile's destination block (16 x
// kTileTokens words, 2 KiB on AVX-512) stays in L1 while every token's row segment is copied in.
inline void pack_tile_f32(TensorView<const float> x, std::size_t t0, float* dst) noexcept {
  const std::size_t t_len = x.dim(0), k_len = x.dim(1);
  constexpr std::size_t kBlock = 16;
  for (std::size_t k0 = 0; k0 < k_len; k0 += kBlock) {
    const std::size_t k1 = k0 + kBlock < k_len ? k0 + kBlock : k_len;
    for (std::size_t lane = 0; lane < kTileTokens; ++lane) {
      const std::size_t t = t0 + lane;
      if (t < t_len) {
        const float* row = x.data() + t * k_len;
        for (std::size_t k = k0; k < k1; ++k) dst[k * kTileTokens + lane] = row[k];
      } else {
        for (std::size_t k = k0; k < k1; ++k) dst[k * kTileTokens + lane] = 0.0f;
      }
    }
  }
}

inline void pack_tile_pairs(TensorView<const float> x, std::size_t t0, std::uint32_t* dst) noexcept {
  const std::size_t t_len = x.dim(0), k_len = x.dim(1), pairs = (k_len + 1) / 2;
  constexpr std::size_t kBlock = simd::kFloatLanes;  // pairs converted at once
  for (std::size_t p0 = 0; p0 < pairs; p0 += kBlock) {
    const std::size_t p1 = p0 + kBlock < pairs ? p0 + kBlock : pairs;
    const bool full = 2 * p1 <= k_len && p1 - p0 == kBlock;
    for (std::size_t lane = 0; lane < kTileTokens; ++lane) {
      const std::size_t t = t0 + lane;
      std::uint32_t* d = dst + p0 * kTileTokens + lane;
      if (t >= t_len) {
        for (std::size_t p = p0; p < p1; ++p, d += kTileTokens) *d = 0;
        continue;
      }
      const float* row = x.data() + t * k_len;
      if (full) {
        std::uint32_t block[kBlock];
        simd::bf16_round_pairs(row + 2 * p0, block);
        for (std::size_t i = 0; i < kBlock; ++i, d += kTileTokens) *d = block[i];
      } else {
        for (std::size_t p = p0; p < p1; ++p, d += kTileTokens) {
          const float odd = 2 * p + 1 < k_len ? row[2 * p + 1] : 0.0f;
          *d = simd::bf16_round_pair(row[2 * p], odd);
        }
      }
    }
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Packs x [T, K] into `buffer` (packed_activation_floats(T, K) floats, not overlapping x), one
// tile per parallel_for item.
inline PackedActivations pack_activations(TensorView<const float> x, ActivationPacking packing,
                                          float* buffer, ThreadPool* pool = nullptr) {
  if (x.rank() != 2) throw Error("pack_activations: x must be [T, K], got " + x.shape_string());
  PackedActivations packed;
  packed.data = buffer;
  packed.tokens = x.dim(0);
  packed.k_len = x.dim(1);
  packed.packing = packing;
  if (x.size() == 0) return packed;
  if (buffer == nullptr) throw Error("pack_activations: no buffer");
  const std::size_t words = packed_tile_words(packed.k_len, packing);
  parallel_for(pool, packed.tiles(), 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      if (packing == ActivationPacking::F32)
        detail::pack_tile_f32(x, i * kTileTokens, buffer + i * words);
      else
        detail::pack_tile_pairs(x, i * kTileTokens,
                                reinterpret_cast<std::uint32_t*>(buffer) + i * words);
    }
  });
  return packed;
}

// Packs x [T, K] in the narrow layout (see PackedActivations) into `buffer`, which holds at least
// T x K floats (packed_activation_floats(T, K) does). Serial: T x K copies, for a few tokens.
inline PackedActivations pack_activations_narrow(TensorView<const float> x,
                                                 ActivationPacking packing, float* buffer) {
  if (x.rank() != 2)
    throw Error("pack_activations_narrow: x must be [T, K], got " + x.shape_string());
  PackedActivations packed;
  packed.data = buffer;
  packed.tokens = x.dim(0);
  packed.k_len = x.dim(1);
  packed.packing = packing;
  packed.narrow = true;
  if (x.size() == 0) return packed;
  if (buffer == nullptr) throw Error("pack_activations_narrow: no buffer");
  const std::size_t t_len = packed.tokens, k_len = packed.k_len;
  if (packing == ActivationPacking::F32) {
    for (std::size_t t = 0; t < t_len; ++t) {
      const float* row = x.data() + t * k_len;
      for (std::size_t k = 0; k < k_len; ++k) buffer[k * t_len + t] = row[k];
    }
    return packed;
  }
  auto* dst = reinterpret_cast<std::uint32_t*>(buffer);
  const std::size_t pairs = (k_len + 1) / 2, full_blocks = k_len / (2 * simd::kFloatLanes);
  for (std::size_t t = 0; t < t_len; ++t) {
    const float* row = x.data() + t * k_len;
    std::size_t p = 0;
    for (std::size_t b = 0; b < full_blocks; ++b, p += simd::kFloatLanes) {
      std::uint32_t block[simd::kFloatLanes];
      simd::bf16_round_pairs(row + 2 * p, block);
      for (std::size_t i = 0; i < simd::kFloatLanes; ++i) dst[(p + i) * t_len + t] = block[i];
    }
    for (; p < pairs; ++p) {
      const float odd = 2 * p + 1 < k_len ? row[2 * p + 1] : 0.0f;
      dst[p * t_len + t] = simd::bf16_round_pair(row[2 * p], odd);
    }
  }
  return packed;
}

SGT_ISA_END
}  // namespace sgt::kernels
