// matmul's narrow path: Y = X W^T for a few tokens (T <= kNarrowMaxTokens), the decode step of a
// causal LM and the last rows of a pruned layer.
//
// Why a second path. The tile of matmul.hpp keeps kTileTokens tokens in registers and broadcasts
// one weight per output feature; with one real token its registers are 1/32 full, every weight
// still costs a broadcast and a multiply-add, and the weights of 12 rows are read 4 or 2 bytes at
// a time. A decode step then runs at a third of the memory bandwidth it needs (bench/RESULTS.md).
// Here the roles swap: one register holds kFloatLanes output features, the activation is the
// broadcast operand, and the weights are read as full registers. W is stored [N][K] (features are
// rows), so kFloatLanes rows are read kFloatLanes words at a time and transposed in registers
// (simd::load_transposed_words: 64 shuffles per 16 x 16 words on AVX-512), which turns them into
// registers holding one k (or one pair of k) for every feature. Each of the T tokens then costs
// one broadcast and one multiply-add per register. Loads are 64-byte aligned where the rows allow
// (narrow_peel_words says why that doubles the speed).
//
// The same bits as the tile. Each output is still one chain over k in order: acc = 0;
// acc = multiply_add(x[t][k], w[n][k], acc) for k = 0, 1, ... (bf16 weights widened exactly, the
// pairs of Precision::Bf16 through vdpbf16ps or its emulation), then + b[n]. Only which operand is
// broadcast changes, and the products are the same numbers. So a token computed on this path gives
// the bits the tile gives it in any batch (tests/test_kernels_matmul.cpp checks it), and the
// documented guarantee -- a row alone equals the same row in a batch -- holds across the two paths.
// A GEMV that split k across lanes would be simpler and would break it.
//
// One work item is kFloatLanes features: kFloatLanes weight streams, each prefetched 1 KiB ahead.
// Two items at once (32 streams, two chains in flight) measured slower on Zen 4, in L2 and from
// memory. F16 weights keep the tile path.
//
// Reading from memory. An item's rows are consecutive rows of W, one block of kFloatLanes x K
// words, but the kernel reads it as kFloatLanes streams a row apart (4 KiB in a typical model, one
// page each, which the hardware prefetchers do not cross). So while it runs an item it also
// prefetches the next item of its chunk front to back, kFloatLanes lines per block: memory then
// sees one sequential stream, and the next item starts from L2. A decode step of a 1B-shaped
// model from memory: 7% more tokens/s on one core of Zen 4 (bench/README.md). Callers run an item's
// chunk in order (narrow_grain), so "next" is known.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "sgt/core/dtype.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/kernels/packed_activations.hpp"

namespace sgt::kernels {
SGT_ISA_BEGIN

// Tokens up to which the narrow path runs, measured against the tile on Zen 4 (bench/README.md):
// with bf16 pairs (one vdpbf16ps per 2 x kFloatLanes products) it wins up to 12 tokens; with f32
// products (F32 weights, or BF16 ones widened) up to about 6. The tile loads its tokens as
// registers and does fewer instructions per weight beyond that. Twelve tokens' accumulators and a
// transposed block fill AVX-512's 32 registers; 16-register instruction sets stop at 4.
inline constexpr std::size_t kNarrowMaxTokens = simd::kFloatLanes >= 16 ? 12 : 4;

// Without AVX512-BF16 the pairs run an emulation whose weight side (the vector here) costs more
// than the tile's broadcast one: on AVX2 the narrow path wins up to 2 tokens only.
inline std::size_t narrow_max_tokens(ActivationPacking packing) noexcept {
  if (packing != ActivationPacking::Bf16Pairs) return 4;
  return simd::kHasBf16DotProduct ? kNarrowMaxTokens : 2;
}

// Whether a Linear with weights of `dtype`, fed activations packed as `packing`, runs `tokens`
// tokens on the narrow path.
inline bool narrow_path_applies(std::size_t tokens, DType dtype,
                                ActivationPacking packing) noexcept {
  return simd::kFloatLanes >= 4 && tokens >= 1 && tokens <= narrow_max_tokens(packing) &&
         dtype != DType::F16;
}

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

// Output features of one work item: one register of them.
inline constexpr std::size_t kNarrowItem = simd::kFloatLanes;

// Bytes ahead of the current block that each weight row is prefetched (into L2: the rows of an
// item sit a multiple of 4 KiB apart in a typical model, so they all map to one set of L1).
inline constexpr std::size_t kNarrowPrefetchBytes = 1024;

// Items per parallel_for chunk on the narrow path: consecutive items let each prefetch the next
// (above); at least 16 chunks per matrix keep the threads of a pool busy on small ones (k_proj of
// a 1B model has 32 items). Depends on the item count only, like every grain.
inline std::size_t narrow_grain(std::size_t items) noexcept {
  const std::size_t grain = items / 16;
  return grain < 1 ? 1 : grain > 8 ? 8 : grain;
}

// Words (of `word_bytes`) to run one at a time before the first block whose loads are 64-byte
// aligned. When the rows are a multiple of 64 bytes apart (every real model: K x 2 or K x 4
// bytes) every row then loads whole cache lines; an unaligned load straddles two lines, and with
// rows 4 KiB apart the second line has left L1 (all rows fall in one set) before the next block
// reads it -- twice the traffic, measured at half the speed on Zen 4. Rows whose stride is not a
// multiple of 64 have no common alignment: no peel.
inline std::size_t narrow_peel_words(const void* row0, std::size_t row_bytes, std::size_t word_bytes,
                                     std::size_t words) noexcept {
  const auto addr = reinterpret_cast<std::uintptr_t>(row0);
  if (row_bytes % 64 != 0 || addr % word_bytes != 0) return 0;
  const std::size_t head = (64 - addr % 64) % 64 / word_bytes;
  return head < words ? head : words;
}

// acc[t] (lane j) = the chain of token t against row rows[j], over all of K, for T tokens.
// WT is float or bfloat16; kPairs: Precision::Bf16 (x packed as pairs, BF16 weights). The words
// before the first aligned block and after the last one run through a lane array, in order.
// next: the first byte of the weights the caller reads next (kFloatLanes rows of K), or null;
// only prefetched, so any value is safe.
template <class WT, bool kPairs, std::size_t T>
inline void narrow_group(const void* x_packed, const WT* const* rows, std::size_t k_len,
                         const void* next, simd::FloatBatch* acc) noexcept {
  using simd::FloatBatch;
  using simd::PairBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  for (std::size_t t = 0; t < T; ++t) acc[t] = FloatBatch(0.0f);
  const void* row_bytes[L];
  for (std::size_t j = 0; j < L; ++j) row_bytes[j] = rows[j];
  const std::size_t stride = k_len * sizeof(WT);
  PairBatch cols[L];
  // Every block reads 64 bytes of each row, so kFloatLanes lines of the next item per block
  // cover it by the time this one ends.
  const unsigned char* next_line = static_cast<const unsigned char*>(next);
  // Loads block b's words (kFloatLanes 32-bit words per row at byte `offset`), transposed.
  const auto load_block = [&](std::size_t offset) {
    if (next_line != nullptr) {
      for (std::size_t j = 0; j < L; ++j) simd::prefetch_read(next_line + j * 64);
      next_line += L * 64;
    }
    for (std::size_t j = 0; j < L; ++j)
      simd::prefetch_read(static_cast<const unsigned char*>(row_bytes[j]) + offset +
                          kNarrowPrefetchBytes);
    simd::load_transposed_words(row_bytes, offset, cols);
  };

  if constexpr (!kPairs) {
    // f32 activations; weights F32, or BF16 read as words of two values widened exactly (the
    // lower address first: k, then k + 1).
    const float* x = static_cast<const float*>(x_packed);
    const auto one_k = [&](std::size_t k) {
      alignas(64) float lanes[L];
      for (std::size_t j = 0; j < L; ++j) lanes[j] = to_float(rows[j][k]);
      const FloatBatch w = FloatBatch::load_aligned(lanes);
      for (std::size_t t = 0; t < T; ++t)
        acc[t] = simd::multiply_add(FloatBatch(x[k * T + t]), w, acc[t]);
    };
    constexpr std::size_t kPerWord = std::is_same_v<WT, float> ? 1 : 2;  // k values per word
    const std::size_t head = narrow_peel_words(rows[0], stride, sizeof(WT), k_len);
    const std::size_t blocks = (k_len - head) / (kPerWord * L);
    std::size_t k = 0;
    for (; k < head; ++k) one_k(k);
    for (std::size_t b = 0; b < blocks; ++b, k += kPerWord * L) {
      load_block(k * sizeof(WT));
      for (std::size_t i = 0; i < L; ++i) {
        if constexpr (std::is_same_v<WT, float>) {
          const FloatBatch w = simd::words_as_float(cols[i]);
          for (std::size_t t = 0; t < T; ++t)
            acc[t] = simd::multiply_add(FloatBatch(x[(k + i) * T + t]), w, acc[t]);
        } else {
          FloatBatch lo, hi;
          simd::widen_bf16_pairs(cols[i], lo, hi);
          const std::size_t kk = k + 2 * i;
          for (std::size_t t = 0; t < T; ++t) {
            acc[t] = simd::multiply_add(FloatBatch(x[kk * T + t]), lo, acc[t]);
            acc[t] = simd::multiply_add(FloatBatch(x[(kk + 1) * T + t]), hi, acc[t]);
          }
        }
      }
    }
    for (; k < k_len; ++k) one_k(k);
  } else {
    // Pairs: x word p * T + t is token t's pair p; row j's pair p is at rows[j] + 2p.
    const std::uint32_t* x = static_cast<const std::uint32_t*>(x_packed);
    const auto one_pair = [&](std::size_t p, bool last_alone) {
      alignas(64) std::uint32_t lanes[L];
      for (std::size_t j = 0; j < L; ++j)
        lanes[j] = last_alone ? rows[j][2 * p].bits : simd::load_bf16_pair(rows[j] + 2 * p);
      const PairBatch w = PairBatch::load_aligned(lanes);
      for (std::size_t t = 0; t < T; ++t)
        acc[t] = simd::dot_bf16_weight_pairs(acc[t], w, x[p * T + t]);
    };
    const std::size_t full_pairs = k_len / 2;
    const std::size_t head = narrow_peel_words(rows[0], stride, 2 * sizeof(bfloat16), full_pairs);
    const std::size_t blocks = (full_pairs - head) / L;
    std::size_t p = 0;
    for (; p < head; ++p) one_pair(p, false);
    for (std::size_t b = 0; b < blocks; ++b, p += L) {
      load_block(p * 2 * sizeof(bfloat16));
      for (std::size_t i = 0; i < L; ++i)
        for (std::size_t t = 0; t < T; ++t)
          acc[t] = simd::dot_bf16_weight_pairs(acc[t], cols[i], x[(p + i) * T + t]);
    }
    for (; p < full_pairs; ++p) one_pair(p, false);
    // The last weight alone (odd K), against the packed (x, 0) pair.
    if (k_len % 2 != 0) one_pair(full_pairs, true);
  }
}

template <class WT>
using NarrowFn = void (*)(const void*, const WT* const*, std::size_t, const void*,
                          simd::FloatBatch*);

template <class WT, bool kPairs, std::size_t... T>
constexpr std::array<NarrowFn<WT>, sizeof...(T)> narrow_table(std::index_sequence<T...>) {
  return {{&narrow_group<WT, kPairs, T + 1>...}};
}

// The instantiation for T tokens (1..kNarrowMaxTokens).
template <class WT, bool kPairs>
inline NarrowFn<WT> narrow_for(std::size_t tokens) noexcept {
  static constexpr std::array<NarrowFn<WT>, kNarrowMaxTokens> table =
      narrow_table<WT, kPairs>(std::make_index_sequence<kNarrowMaxTokens>{});
  return table[tokens - 1];
}

// Runs features [n0, n0 + nf) (nf <= kNarrowItem) of W (rows of k_len) against the narrow-packed
// xp: out[t * kNarrowItem + f] = the chain of token t and feature n0 + f (no bias). Rows past N
// repeat the last real row; their lanes are computed and ignored. next: as narrow_group's.
template <class WT>
inline void narrow_item(const PackedActivations& xp, const WT* w, std::size_t n0, std::size_t nf,
                        const void* next, float* out) noexcept {
  const std::size_t k_len = xp.k_len, tokens = xp.tokens;
  const WT* rows[kNarrowItem];
  for (std::size_t f = 0; f < kNarrowItem; ++f)
    rows[f] = w + (n0 + (f < nf ? f : nf - 1)) * k_len;
  simd::FloatBatch acc[kNarrowMaxTokens];
  if constexpr (std::is_same_v<WT, bfloat16>) {
    if (xp.packing == ActivationPacking::Bf16Pairs)
      narrow_for<WT, true>(tokens)(xp.data, rows, k_len, next, acc);
    else
      narrow_for<WT, false>(tokens)(xp.data, rows, k_len, next, acc);
  } else {
    narrow_for<WT, false>(tokens)(xp.data, rows, k_len, next, acc);
  }
  for (std::size_t t = 0; t < tokens; ++t) acc[t].store_unaligned(out + t * kNarrowItem);
}

// The weights of item `item` + 1 of a [n_len, k_len] W, if it is a whole item of the chunk that
// ends at `end` (the one narrow_item runs next), else null.
template <class WT>
inline const void* narrow_next_item(const WT* w, std::size_t item, std::size_t end,
                                    std::size_t n_len, std::size_t k_len) noexcept {
  const std::size_t next0 = (item + 1) * kNarrowItem;
  return item + 1 < end && next0 + kNarrowItem <= n_len ? w + next0 * k_len : nullptr;
}

SGT_ISA_END
}  // namespace detail
}  // namespace sgt::kernels
