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
// An item is kFloatLanes features: kFloatLanes weight streams, each prefetched 1 KiB ahead. A unit
// of work is one item, or for one token on vectors narrower than AVX-512 two items whose chains
// interleave (kNarrowOneTokenItems says why). F16 weights keep the tile path.
//
// Reading from memory. A unit's rows are consecutive rows of W, one block of memory, but the
// kernel reads them as streams a row apart (4 KiB in a typical model, one page each, which the
// hardware prefetchers do not cross). So while it runs a unit it also prefetches the next unit of
// its chunk front to back: memory then sees one sequential stream, and the next unit starts from
// L2. A decode step of a 1B-shaped model from memory: 5-7% more tokens/s on one core of Zen 4
// (bench/README.md). Callers run a chunk's units in order (narrow_grain), so "next" is known.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "sgt/core/dtype.hpp"
#include "sgt/core/feature_blocks.hpp"
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

// Units per parallel_for chunk on the narrow path: consecutive units let each prefetch the next
// (above); at least 16 chunks per matrix keep the threads of a pool busy on small ones (k_proj of
// a 1B model has 32 items). Depends on the unit count only, like every grain.
inline std::size_t narrow_grain(std::size_t units) noexcept {
  const std::size_t grain = units / 16;
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

// f(std::integral_constant<std::size_t, g>) for g = 0 .. G-1: the items of a unit (and the words
// of a block) unrolled at any optimization level, so each item's accumulators stay in registers.
template <class F, std::size_t... I>
inline void for_items(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<std::size_t, I>{}), ...);
}

// acc[g * T + t] (lane j) = the chain of token t against row rows[g * kFloatLanes + j], over all
// of K, for T tokens and G items. WT is float or bfloat16; kPairs: Precision::Bf16 (x packed as
// pairs, BF16 weights). The rows must be rows of one matrix (one stride, so one alignment): the
// peel is rows[0]'s. The loop walks each row a cache line (64 bytes) at a time and
// runs the line's blocks of one item before the next item's, so a line is read whole while it is
// in L1 (the rows of all G items can fall in one set). The words before the first aligned line
// and after the last one run through a lane array, in order. Each chain is the same sequence of
// operations whatever G. next: the first byte of the weights the caller reads next (G x
// kFloatLanes rows of K), or null; only prefetched, so any value is safe.
template <class WT, bool kPairs, std::size_t T, std::size_t G>
inline void narrow_group(const void* x_packed, const WT* const* rows, std::size_t k_len,
                         const void* next, simd::FloatBatch* acc_out) noexcept {
  using simd::FloatBatch;
  using simd::PairBatch;
  // Local accumulators: a vector type may alias the float activations, so the compiler keeps
  // accumulators behind a pointer in memory, a store and a reload on every chain link.
  FloatBatch acc[G * T];
  constexpr std::size_t L = simd::kFloatLanes;
  constexpr std::size_t R = G * L;                // rows
  constexpr std::size_t kBlockBytes = L * 4;      // of each row, per transposed block
  constexpr std::size_t kBlocksPerLine = 64 / kBlockBytes;
  static_assert(64 % kBlockBytes == 0, "a block divides a cache line");
  for (std::size_t i = 0; i < G * T; ++i) acc[i] = FloatBatch(0.0f);
  const void* row_bytes[R];
  for (std::size_t j = 0; j < R; ++j) row_bytes[j] = rows[j];
  const std::size_t stride = k_len * sizeof(WT);
  // One cache line of every row, transposed: line[g][s] is block s of item g. With G > 1 the
  // blocks outnumber the registers and wait in L1; the chains of the G items then interleave
  // instruction by instruction, which is what hides their latency.
  PairBatch line[G][kBlocksPerLine][L];
  const auto load_line = [&](std::size_t offset) SGT_SIMD_INLINE_LAMBDA {
    SGT_SIMD_UNROLL
    for (std::size_t g = 0; g < G; ++g) {
      SGT_SIMD_UNROLL
      for (std::size_t s = 0; s < kBlocksPerLine; ++s)
        simd::load_transposed_words(row_bytes + g * L, offset + s * kBlockBytes, line[g][s]);
    }
  };
  // Every line step reads 64 bytes of each row, so R lines of the next unit per step cover it by
  // the time this one ends. Left to the compiler (neither inlined nor unrolled by force): forced,
  // a decode step from memory measured 15% slower on Zen 4 (AVX-512, one thread).
  const unsigned char* next_line = static_cast<const unsigned char*>(next);
  const auto prefetch_line = [&](std::size_t offset) {
    if (next_line != nullptr) {
      for (std::size_t j = 0; j < R; ++j) simd::prefetch_read(next_line + j * 64);
      next_line += R * 64;
    }
    for (std::size_t j = 0; j < R; ++j)
      simd::prefetch_read(static_cast<const unsigned char*>(row_bytes[j]) + offset +
                          kNarrowPrefetchBytes);
  };

  if constexpr (!kPairs) {
    // f32 activations; weights F32, or BF16 read as words of two values widened exactly (the
    // lower address first: k, then k + 1).
    const float* x = static_cast<const float*>(x_packed);
    const auto one_k = [&](std::size_t k) {
      for (std::size_t g = 0; g < G; ++g) {
        alignas(64) float lanes[L];
        for (std::size_t j = 0; j < L; ++j) lanes[j] = to_float(rows[g * L + j][k]);
        const FloatBatch w = FloatBatch::load_aligned(lanes);
        for (std::size_t t = 0; t < T; ++t)
          acc[g * T + t] = simd::multiply_add(FloatBatch(x[k * T + t]), w, acc[g * T + t]);
      }
    };
    constexpr std::size_t kPerWord = std::is_same_v<WT, float> ? 1 : 2;  // k values per word
    constexpr std::size_t kPerBlock = kPerWord * L, kPerLine = kPerBlock * kBlocksPerLine;
    const std::size_t head = narrow_peel_words(rows[0], stride, sizeof(WT), k_len);
    const std::size_t lines = (k_len - head) / kPerLine;
    std::size_t k = 0;
    for (; k < head; ++k) one_k(k);
    for (std::size_t b = 0; b < lines; ++b, k += kPerLine) {
      prefetch_line(k * sizeof(WT));
      load_line(k * sizeof(WT));
      for (std::size_t s = 0; s < kBlocksPerLine; ++s)
        for_items([&](auto i) SGT_SIMD_INLINE_LAMBDA {
          const std::size_t kk = k + s * kPerBlock + kPerWord * i;
          for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
            FloatBatch* a = acc + g * T;
            if constexpr (std::is_same_v<WT, float>) {
              const FloatBatch w = simd::words_as_float(line[g][s][i]);
              SGT_SIMD_UNROLL
              for (std::size_t t = 0; t < T; ++t)
                a[t] = simd::multiply_add(FloatBatch(x[kk * T + t]), w, a[t]);
            } else {
              FloatBatch lo, hi;
              simd::widen_bf16_pairs(line[g][s][i], lo, hi);
              SGT_SIMD_UNROLL
              for (std::size_t t = 0; t < T; ++t) {
                a[t] = simd::multiply_add(FloatBatch(x[kk * T + t]), lo, a[t]);
                a[t] = simd::multiply_add(FloatBatch(x[(kk + 1) * T + t]), hi, a[t]);
              }
            }
          }, std::make_index_sequence<G>{});
        }, std::make_index_sequence<L>{});
    }
    for (; k < k_len; ++k) one_k(k);
  } else {
    // Pairs: x word p * T + t is token t's pair p; row j's pair p is at rows[j] + 2p.
    const std::uint32_t* x = static_cast<const std::uint32_t*>(x_packed);
    const auto one_pair = [&](std::size_t p, bool last_alone) {
      for (std::size_t g = 0; g < G; ++g) {
        alignas(64) std::uint32_t lanes[L];
        for (std::size_t j = 0; j < L; ++j) {
          const WT* row = rows[g * L + j];
          lanes[j] = last_alone ? row[2 * p].bits : simd::load_bf16_pair(row + 2 * p);
        }
        const PairBatch w = PairBatch::load_aligned(lanes);
        for (std::size_t t = 0; t < T; ++t)
          acc[g * T + t] = simd::dot_bf16_weight_pairs(acc[g * T + t], w, x[p * T + t]);
      }
    };
    constexpr std::size_t kPerLine = L * kBlocksPerLine;  // pairs
    const std::size_t full_pairs = k_len / 2;
    const std::size_t head = narrow_peel_words(rows[0], stride, 2 * sizeof(bfloat16), full_pairs);
    const std::size_t lines = (full_pairs - head) / kPerLine;
    std::size_t p = 0;
    for (; p < head; ++p) one_pair(p, false);
    for (std::size_t b = 0; b < lines; ++b, p += kPerLine) {
      prefetch_line(p * 2 * sizeof(bfloat16));
      load_line(p * 2 * sizeof(bfloat16));
      for (std::size_t s = 0; s < kBlocksPerLine; ++s)
        for_items([&](auto i) SGT_SIMD_INLINE_LAMBDA {
          const std::size_t pp = p + s * L + i;
          for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
            FloatBatch* a = acc + g * T;
            SGT_SIMD_UNROLL
            for (std::size_t t = 0; t < T; ++t)
              a[t] = simd::dot_bf16_weight_pairs(a[t], line[g][s][i], x[pp * T + t]);
          }, std::make_index_sequence<G>{});
        }, std::make_index_sequence<L>{});
    }
    for (; p < full_pairs; ++p) one_pair(p, false);
    // The last weight alone (odd K), against the packed (x, 0) pair.
    if (k_len % 2 != 0) one_pair(full_pairs, true);
  }
  for (std::size_t i = 0; i < G * T; ++i) acc_out[i] = acc[i];
}

template <class WT>
using NarrowFn = void (*)(const void*, const WT* const*, std::size_t, const void*,
                          simd::FloatBatch*);


// Items a unit of work runs at once. With T tokens an item has T independent chains; with one it
// has a single chain, and every block waits for it: kFloatLanes dependent multiply-adds per block
// (twice that for BF16 weights at f32, widened into two registers), 4-6 cycles each. AVX-512 runs
// 64 bytes of bf16 pairs per 16 chained vdpbf16ps, fast enough for memory; two items there (32
// streams) measured no faster from memory and slower on two threads. AVX2 at f32 (what `auto`
// picks there) runs 32 chained FMAs per 64 bytes of BF16 weights: 11 GB/s on Zen 4, half of what
// memory gives. Two items whose chains interleave instruction by instruction: 1.3x for a decode
// step; four measured slower (32 rows in flight per unit).
inline constexpr std::size_t kNarrowOneTokenItems = simd::kFloatLanes >= 16 ? 1 : 2;

inline constexpr std::size_t narrow_unit_items(std::size_t tokens) noexcept {
  return tokens == 1 ? kNarrowOneTokenItems : 1;
}

// Output features of a unit of work for `tokens` tokens.
inline constexpr std::size_t narrow_unit_features(std::size_t tokens) noexcept {
  return narrow_unit_items(tokens) * kNarrowItem;
}

template <class WT, bool kPairs, std::size_t... T>
constexpr std::array<NarrowFn<WT>, sizeof...(T)> narrow_table(std::index_sequence<T...>) {
  return {{&narrow_group<WT, kPairs, T + 1, narrow_unit_items(T + 1)>...}};
}

// Floats a unit's output holds at most (out[t * narrow_unit_features(tokens) + f]).
inline constexpr std::size_t kNarrowOutFloats =
    kNarrowMaxTokens * kNarrowItem > kNarrowOneTokenItems * kNarrowItem
        ? kNarrowMaxTokens * kNarrowItem
        : kNarrowOneTokenItems * kNarrowItem;

// The instantiation for T tokens (1..kNarrowMaxTokens): a unit of narrow_unit_items(T) items.
template <class WT, bool kPairs>
inline NarrowFn<WT> narrow_for(std::size_t tokens) noexcept {
  static constexpr std::array<NarrowFn<WT>, kNarrowMaxTokens> table =
      narrow_table<WT, kPairs>(std::make_index_sequence<kNarrowMaxTokens>{});
  return table[tokens - 1];
}

// Runs features [n0, n0 + nf) (nf <= U = narrow_unit_features(xp.tokens)) of W (rows of k_len)
// against the narrow-packed xp: out[t * U + f] = the chain of token t and feature n0 + f (no
// bias). Rows past N repeat the last real row; their lanes are computed and ignored. next: as
// narrow_group's.
template <class WT>
inline void narrow_unit(const PackedActivations& xp, const WT* w, std::size_t n0, std::size_t nf,
                        const void* next, float* out) noexcept {
  const std::size_t k_len = xp.k_len, tokens = xp.tokens;
  constexpr std::size_t kMaxRows = kNarrowOneTokenItems * kNarrowItem;
  const WT* rows[kMaxRows];
  const std::size_t row_count = narrow_unit_features(tokens);
  for (std::size_t f = 0; f < row_count; ++f) rows[f] = w + (n0 + (f < nf ? f : nf - 1)) * k_len;
  constexpr std::size_t kMaxAcc =
      kNarrowMaxTokens > kNarrowOneTokenItems ? kNarrowMaxTokens : kNarrowOneTokenItems;
  simd::FloatBatch acc[kMaxAcc];  // acc[g * tokens + t]: item g, token t
  if constexpr (std::is_same_v<WT, bfloat16>) {
    if (xp.packing == ActivationPacking::Bf16Pairs)
      narrow_for<WT, true>(tokens)(xp.data, rows, k_len, next, acc);
    else
      narrow_for<WT, false>(tokens)(xp.data, rows, k_len, next, acc);
  } else {
    narrow_for<WT, false>(tokens)(xp.data, rows, k_len, next, acc);
  }
  const std::size_t items = narrow_unit_items(tokens);
  for (std::size_t g = 0; g < items; ++g)
    for (std::size_t t = 0; t < tokens; ++t)
      acc[g * tokens + t].store_unaligned(out + t * row_count + g * kNarrowItem);
}

// The weights of unit `unit` + 1 (of `unit_features` rows) of a [n_len, k_len] W, if it is a
// whole unit of the chunk that ends at `end` (the one narrow_unit runs next), else null.
template <class WT>
inline const void* narrow_next_unit(const WT* w, std::size_t unit, std::size_t end,
                                    std::size_t unit_features, std::size_t n_len,
                                    std::size_t k_len) noexcept {
  const std::size_t next0 = (unit + 1) * unit_features;
  return unit + 1 < end && next0 + unit_features <= n_len ? w + next0 * k_len : nullptr;
}

// The narrow path on weights in feature blocks (core/feature_blocks.hpp). A block step is 64
// features' k (or pair) side by side, so a register of weights is one load: no transpose, no
// lane array, and the chains run as many items at once as the registers hold. A unit is a slice
// of narrow_block_unit_items(T) items of one block; its weights are a 256-byte-strided run of one
// contiguous block, which the hardware prefetchers follow. Each chain is the one above (and the
// tile's): acc = 0, then k = 0, 1, ... in order; an odd K's last pair holds a zero weight, which
// Bf16 pairs multiply as the row-major path does (against the packed (x, 0) pair), and which the
// f32 chain skips.

// Items of a block (kFeatureBlock / kFloatLanes) and the items a unit runs for T tokens: the
// largest power of two whose T x items accumulators fit half the registers (the rest hold the
// broadcast activations and the loaded weights).
inline constexpr std::size_t kNarrowBlockItems = kFeatureBlock / kNarrowItem;
inline constexpr std::size_t narrow_block_unit_items(std::size_t tokens) noexcept {
  std::size_t items = kNarrowBlockItems;
  while (items > 1 && tokens * items > simd::kVectorRegisters / 2) items /= 2;
  return items;
}
inline constexpr std::size_t narrow_block_unit_features(std::size_t tokens) noexcept {
  return narrow_block_unit_items(tokens) * kNarrowItem;
}

// acc[g * T + t] = the chains of token t against the G items at `w` (the unit's first feature at
// k = 0, as feature_block_origin gives it), over all of K.
template <class WT, bool kPairs, std::size_t T, std::size_t G>
inline void narrow_block_group(const void* x_packed, const WT* w, std::size_t k_len,
                               simd::FloatBatch* acc_out) noexcept {
  using simd::FloatBatch;
  using simd::PairBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  constexpr std::size_t kStepWords = kFeatureBlock;  // 32-bit words per block step
  FloatBatch acc[G * T];
  for (std::size_t i = 0; i < G * T; ++i) acc[i] = FloatBatch(0.0f);
  if constexpr (std::is_same_v<WT, float>) {
    const float* x = static_cast<const float*>(x_packed);
    for (std::size_t k = 0; k < k_len; ++k) {
      const float* step = w + k * kStepWords;
      for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
        const FloatBatch wv = FloatBatch::load_unaligned(step + g * L);
        SGT_SIMD_UNROLL
        for (std::size_t t = 0; t < T; ++t)
          acc[g * T + t] = simd::multiply_add(FloatBatch(x[k * T + t]), wv, acc[g * T + t]);
      }, std::make_index_sequence<G>{});
    }
  } else {
    const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(w);
    const std::size_t full_pairs = k_len / 2;
    if constexpr (kPairs) {
      // x word p * T + t is token t's pair p; an odd K's last pair is (x, 0) against (w, 0).
      const std::uint32_t* x = static_cast<const std::uint32_t*>(x_packed);
      const std::size_t pairs = (k_len + 1) / 2;
      for (std::size_t p = 0; p < pairs; ++p) {
        const std::uint32_t* step = words + p * kStepWords;
        for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
          const PairBatch wv = PairBatch::load_unaligned(step + g * L);
          SGT_SIMD_UNROLL
          for (std::size_t t = 0; t < T; ++t)
            acc[g * T + t] = simd::dot_bf16_weight_pairs(acc[g * T + t], wv, x[p * T + t]);
        }, std::make_index_sequence<G>{});
      }
    } else {
      // f32 activations: each pair widened exactly, k = 2p then 2p + 1.
      const float* x = static_cast<const float*>(x_packed);
      for (std::size_t p = 0; p < full_pairs; ++p) {
        const std::uint32_t* step = words + p * kStepWords;
        for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
          FloatBatch lo, hi;
          simd::widen_bf16_pairs(PairBatch::load_unaligned(step + g * L), lo, hi);
          SGT_SIMD_UNROLL
          for (std::size_t t = 0; t < T; ++t) {
            acc[g * T + t] = simd::multiply_add(FloatBatch(x[2 * p * T + t]), lo, acc[g * T + t]);
            acc[g * T + t] =
                simd::multiply_add(FloatBatch(x[(2 * p + 1) * T + t]), hi, acc[g * T + t]);
          }
        }, std::make_index_sequence<G>{});
      }
      if (k_len % 2 != 0) {  // the last weight alone
        const std::uint32_t* step = words + full_pairs * kStepWords;
        for_items([&](auto g) SGT_SIMD_INLINE_LAMBDA {
          FloatBatch lo, hi;
          simd::widen_bf16_pairs(PairBatch::load_unaligned(step + g * L), lo, hi);
          for (std::size_t t = 0; t < T; ++t)
            acc[g * T + t] =
                simd::multiply_add(FloatBatch(x[2 * full_pairs * T + t]), lo, acc[g * T + t]);
        }, std::make_index_sequence<G>{});
      }
    }
  }
  for (std::size_t i = 0; i < G * T; ++i) acc_out[i] = acc[i];
}

template <class WT>
using NarrowBlockFn = void (*)(const void*, const WT*, std::size_t, simd::FloatBatch*);

template <class WT, bool kPairs, std::size_t... T>
constexpr std::array<NarrowBlockFn<WT>, sizeof...(T)> narrow_block_table(
    std::index_sequence<T...>) {
  return {{&narrow_block_group<WT, kPairs, T + 1, narrow_block_unit_items(T + 1)>...}};
}

template <class WT, bool kPairs>
inline NarrowBlockFn<WT> narrow_block_for(std::size_t tokens) noexcept {
  static constexpr std::array<NarrowBlockFn<WT>, kNarrowMaxTokens> table =
      narrow_block_table<WT, kPairs>(std::make_index_sequence<kNarrowMaxTokens>{});
  return table[tokens - 1];
}

// Floats a blocked unit's output holds at most.
inline constexpr std::size_t kNarrowBlockOutFloats = simd::kVectorRegisters / 2 * kNarrowItem;
static_assert(kNarrowMaxTokens <= simd::kVectorRegisters / 2,
              "a unit of one item for kNarrowMaxTokens tokens must fit kNarrowBlockOutFloats");

// Runs the unit of features [n0, n0 + narrow_block_unit_features(xp.tokens)) of a feature-blocked
// W (n0 a multiple of the unit's features, so the unit lies in one block) against the
// narrow-packed xp: out[t * U + f] = the chain of token t and feature n0 + f (no bias; padding
// features give 0).
template <class WT>
inline void narrow_block_unit(const PackedActivations& xp, const WT* w, std::size_t n0,
                              float* out) noexcept {
  const std::size_t k_len = xp.k_len, tokens = xp.tokens;
  simd::FloatBatch acc[kNarrowBlockOutFloats / kNarrowItem];  // acc[g * tokens + t]
  const WT* unit = w + feature_block_origin<WT>(n0, k_len);
  if constexpr (std::is_same_v<WT, bfloat16>) {
    if (xp.packing == ActivationPacking::Bf16Pairs)
      narrow_block_for<WT, true>(tokens)(xp.data, unit, k_len, acc);
    else
      narrow_block_for<WT, false>(tokens)(xp.data, unit, k_len, acc);
  } else {
    narrow_block_for<WT, false>(tokens)(xp.data, unit, k_len, acc);
  }
  const std::size_t items = narrow_block_unit_items(tokens), row = items * kNarrowItem;
  for (std::size_t g = 0; g < items; ++g)
    for (std::size_t t = 0; t < tokens; ++t)
      acc[g * tokens + t].store_unaligned(out + t * row + g * kNarrowItem);
}

SGT_ISA_END
}  // namespace detail
}  // namespace sgt::kernels
