// matmul: Y[T, N] = X[T, K] * W[N, K]^T (+ b[N]) -- every Linear layer of the estimators.
//
// W is used as stored in safetensors: row-major [out_features][in_features], in F32, BF16 or F16,
// read in place from the mapped file and never copied or widened as a whole (a Llama-3.1-8B MLP
// would double in size). Activations and accumulation are f32; at Precision::Bf16 a Linear with
// BF16 weights multiplies bf16-rounded activations (core/precision.hpp).
//
// Design: an outer-product tile over packed activations (kernels/packed_activations.hpp). The tile
// holds kTileTokens tokens (two registers of kFloatLanes) x kTileFeatures output features of
// accumulators in registers; at every step k it loads the two token registers from the packed
// tile and multiplies them by one broadcast weight per feature, read in place from W's rows:
//   - AVX-512 (32 registers): 2 x 8 = 16 accumulators + 2 token registers + 1 broadcast weight.
//     Per step: 16 FMAs for 2 vector loads and 8 broadcasts; no horizontal sums at all (each
//     accumulator lane is one output), so the tile is FMA-bound. 16 independent chains cover the
//     FMA latency x throughput of Zen 4 (4 x 1 zmm) and Zen 5 (4 x 2). Why not 12 features (24
//     accumulators, fewer loads per FMA): in every real model the rows of W are a multiple of
//     4 KiB apart (K x 2 or K x 4 bytes), so the tile's rows all map to one set of the 8-way L1,
//     and 12 of them evict each other at every step. Measured on Zen 4, 8 rows against 12: 18%
//     faster at T = 16 (BF16 pairs), 23% (F32), 3-7% at T = 128-512, where the tile now reaches
//     88-93% of the measured peak of its instruction.
//   - 16-register instruction sets (AVX2, SSE2) and NEON: 2 x 6 = 12 accumulators + 2 + 1, one k
//     per step where two would not fit the registers (kPairedSteps). A BF16 weight then widens
//     from the 32-bit word that ends with it (simd::broadcast_as_float_after: a plain broadcast
//     load and one AND): on an AVX2-only Zen 3, 5-11% faster than a 16-bit broadcast and a shift
//     (BF16 weights at f32: q_o 76 -> 83 GFLOP/s at T = 128, F32 weights 89).
//   - Precision::Bf16 on BF16 weights: the same tile over pairs of k (simd::dot_bf16_pairs, one
//     vdpbf16ps per accumulator and pair on CPUs with AVX512-BF16: twice the multiply-adds of an
//     f32 FMA), the pair of weights read as one 32-bit broadcast.
// The work is cut into chunks of token tiles x kChunkGroups feature groups, one parallel_for item
// each (TileGrid): a group's weight rows (kTileFeatures x K) are reused by the chunk's token tiles,
// and the packed tiles (32 x K floats each) by its groups from L2. Where 4 tiles over all of K
// would not fit L2 (K above 1024 in f32, above 2048 in bf16 pairs), K is cut into blocks and each
// (tile, group) continues its sums from a stack slot at the next block, so W streams from memory
// once per 4 tiles, not once per tile. The accumulators are written once, transposed into Y's rows, after the last block.
//
// A few tokens (a decode step, the pruned last rows of a causal LM) take the narrow path instead
// (kernels/matmul_narrow.hpp): weight rows loaded as registers and transposed, activations
// broadcast. It computes the same chains, so its results are the tile's bits.
//
// W may also be in feature blocks (core/feature_blocks.hpp, a copy the caller makes with
// block_features, for decode): the narrow path then loads whole registers of weights with no
// transpose, and the tile reads a row's element k at feature_block_offset instead of k (slower
// than on row-major W, see there). Same chains, same bits as row-major W.
//
// Determinism. Every output is one chain: acc = 0; acc = multiply_add(x[t][k], w[n][k], acc) for
// k = 0, 1, ..., K-1 (at Bf16: pairs p = 0, 1, ..., odd then even element); then + b[n]. Nothing in
// it depends on where (t, n) falls in a tile or chunk, on T, or on the thread count, so row t of a
// batch is bit-identical to the same row computed alone, with any pool.
//
// Alternatives measured on Zen 4 and dropped (see bench/README.md): the previous inner-product
// tile (4 tokens x 6 weight rows, both contiguous along K, horizontal sums per K block) reached
// 75-80% of the FMA peak with BF16 weights widened to f32 but cannot use vdpbf16ps; Eigen's GEMM
// on mapped F32 weights (64-75 GFLOP/s against 80) allocates its packing buffers per product.
//
// matmul_reference is the plain triple loop with double accumulation, the yardstick of the tests
// (at Bf16 it rounds the activations exactly as the packing does).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/invariant.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/matmul_narrow.hpp"
#include "sgt/kernels/overlap.hpp"
#include "sgt/kernels/packed_activations.hpp"

namespace sgt::kernels {
SGT_ISA_BEGIN

// Output features per tile (see the register budget above: at most 8 rows, the ways of L1).
inline constexpr std::size_t kTileFeatures = simd::kFloatLanes >= 16 ? 8 : 6;

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

inline constexpr std::size_t kChunkGroups = 8;  // feature groups (of kTileFeatures) per chunk

// Checks the shapes of one Linear: x [T, K], w [N, K], bias [N] or empty, y [T, N], and that the
// weight has data. Messages name the caller as `op` + `part` ("matmul", "swiglu_mlp down_proj").
// It runs on every call of a hot kernel, so messages are only built on failure: `op` is a C string
// and nothing is allocated on the success path.
inline void check_linear_shapes(const char* op, const Shape& x_shape, std::size_t x_rank,
                                const AnyTensorView& w, const AnyTensorView& bias,
                                const Shape& y_shape, std::size_t y_rank, const char* x_name = "x",
                                const char* y_name = "y", const char* part = "") {
  auto name = [&] { return std::string(op) + part; };
  auto xs = [&] { return std::string(x_name) + " " + shape_to_string(x_shape, x_rank); };
  auto ys = [&] { return std::string(y_name) + " " + shape_to_string(y_shape, y_rank); };
  if (x_rank != 2)
    throw Error(name() + ": " + x_name + " must be [T, K], got " +
                shape_to_string(x_shape, x_rank));
  if (w.rank() != 2) throw Error(name() + ": weight must be [N, K], got " + w.shape_string());
  if (y_rank != 2)
    throw Error(name() + ": " + y_name + " must be [T, N], got " +
                shape_to_string(y_shape, y_rank));
  if (x_shape[1] != w.dim(1))
    throw Error(name() + ": " + xs() + " and weight " + w.shape_string() + " disagree on K (" +
                x_name + " is [T, K], weight is [N, K])");
  if (y_shape[0] != x_shape[0] || y_shape[1] != w.dim(0))
    throw Error(name() + ": " + ys() + " does not match " + xs() + " times weight " +
                w.shape_string() + "^T: expected [" + std::to_string(x_shape[0]) + ", " +
                std::to_string(w.dim(0)) + "]");
  if (bias.data() != nullptr && (bias.rank() != 1 || bias.dim(0) != w.dim(0)))
    throw Error(name() + ": bias " + bias.shape_string() + " does not match weight " +
                w.shape_string() + ": expected [" + std::to_string(w.dim(0)) + "]");
  if (w.data() == nullptr && w.size() != 0) throw Error(name() + ": weight has no data");
  if (!w.row_major() && w.dtype() == DType::F16)
    throw Error(name() + ": feature blocks hold F32 or BF16 weights, got F16");
}

// check_linear_shapes, plus: x and y have data and do not overlap.
inline void check_linear(const char* op, const TensorView<const float>& x, const AnyTensorView& w,
                         const AnyTensorView& bias, const TensorView<float>& y) {
  check_linear_shapes(op, x.shape(), x.rank(), w, bias, y.shape(), y.rank());
  if (x.data() == nullptr && x.size() != 0) throw Error(std::string(op) + ": x has no data");
  if (y.data() == nullptr && y.size() != 0) throw Error(std::string(op) + ": y has no data");
  if (ranges_overlap(x.data(), x.size() * sizeof(float), y.data(), y.size() * sizeof(float)))
    throw Error(std::string(op) + ": y overlaps x; the output needs its own buffer");
}

inline float bias_at(const AnyTensorView& bias, std::size_t n) noexcept {
  switch (bias.dtype()) {
    case DType::F32:
      return static_cast<const float*>(bias.data())[n];
    case DType::BF16:
      return to_float(static_cast<const bfloat16*>(bias.data())[n]);
    case DType::F16:
      return to_float(static_cast<const float16*>(bias.data())[n]);
  }
  return 0.0f;
}

// Whether the f32 tile steps two k at a time: TV * NR accumulators, 2 * TV token registers and
// two broadcast weights must fit the register file, or the compiler spills accumulators to the
// stack in the inner loop (AVX2 and SSE2 have 16 registers: 12 + 4 + 2 does not fit). Measured
// with the AVX2 kernels on Zen 4 (bench/README.md): F32 weights 61% -> 86-88% of the FMA peak.
template <std::size_t TV, std::size_t NR>
inline constexpr bool kPairedSteps = TV * NR + 2 * TV + 2 <= simd::kVectorRegisters;

// Element k of a weight row given by its first element: k past it in a row-major W, or
// feature_block_offset past it in feature blocks (core/feature_blocks.hpp).
template <bool kBlocked, class WT>
SGT_SIMD_ALWAYS_INLINE const WT* weight_at(const WT* row, std::size_t k) noexcept {
  if constexpr (kBlocked) return row + feature_block_offset<WT>(k);
  return row + k;
}

// The f32 tile: out[j * kTileTokens + lane] = sum_k xp[k * kTileTokens + lane] * w[j][k] for
// TV token registers (1 or 2) and NR weight rows given by pointer (so the SwiGLU MLP can run the
// rows of gate and up through the same code).
//
// Over k in [k_begin, k_end) only (a K block, see TileGrid): the accumulators start from out when
// `accumulate` (the previous block's sums, stored exactly as f32) and from 0 otherwise, so a chain
// cut into blocks performs the same operations in the same order as one pass over all of K.
// k_begin is even.
template <class WT, bool kBlocked, std::size_t TV, std::size_t NR>
inline void tile_f32(const float* xp, const WT* const* w, std::size_t k_begin, std::size_t k_end,
                     float* out, bool accumulate) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t kLanes = simd::kFloatLanes;
  FloatBatch acc[TV * NR];
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) {
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      acc[v * NR + j] = accumulate ? FloatBatch::load_unaligned(out + j * kTileTokens + v * kLanes)
                                   : FloatBatch(0.0f);
  }
  const WT* wr[NR];
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) wr[j] = w[j];
  const std::size_t k_len = k_end;
  std::size_t k = k_begin;
  if constexpr (kPairedSteps<TV, NR>) {
    // Two k at a time (BF16 weights: both widened from one 32-bit broadcast); the same chain
    // order as one at a time (measured on Zen 4: 89% of the FMA peak instead of 82% on F32
    // weights, 95% instead of 50-70% on BF16 ones).
    for (; k + 2 <= k_len; k += 2) {
      FloatBatch x0[TV], x1[TV];
      SGT_SIMD_UNROLL
      for (std::size_t v = 0; v < TV; ++v) {
        x0[v] = FloatBatch::load_unaligned(xp + k * kTileTokens + v * kLanes);
        x1[v] = FloatBatch::load_unaligned(xp + (k + 1) * kTileTokens + v * kLanes);
      }
      SGT_SIMD_UNROLL
      for (std::size_t j = 0; j < NR; ++j) {
        FloatBatch w0, w1;
        if constexpr (std::is_same_v<WT, bfloat16>) {
          simd::broadcast_bf16_pair_as_float(weight_at<kBlocked>(wr[j], k), w0, w1);
        } else {
          w0 = simd::broadcast_as_float(weight_at<kBlocked>(wr[j], k));
          w1 = simd::broadcast_as_float(weight_at<kBlocked>(wr[j], k + 1));
        }
        SGT_SIMD_UNROLL
        for (std::size_t v = 0; v < TV; ++v) {
          acc[v * NR + j] = simd::multiply_add(x0[v], w0, acc[v * NR + j]);
          acc[v * NR + j] = simd::multiply_add(x1[v], w1, acc[v * NR + j]);
        }
      }
    }
  }
  for (; k < k_len; ++k) {
    FloatBatch xv[TV];
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      xv[v] = FloatBatch::load_unaligned(xp + k * kTileTokens + v * kLanes);
    SGT_SIMD_UNROLL
    for (std::size_t j = 0; j < NR; ++j) {
      FloatBatch wv;
      // A row-major BF16 row has element k - 1 beside element k for every k but its first.
      if constexpr (std::is_same_v<WT, bfloat16> && !kBlocked)
        wv = k > 0 ? simd::broadcast_as_float_after(wr[j] + k) : simd::broadcast_as_float(wr[j]);
      else
        wv = simd::broadcast_as_float(weight_at<kBlocked>(wr[j], k));
      SGT_SIMD_UNROLL
      for (std::size_t v = 0; v < TV; ++v)
        acc[v * NR + j] = simd::multiply_add(xv[v], wv, acc[v * NR + j]);
    }
  }
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) {
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      acc[v * NR + j].store_unaligned(out + j * kTileTokens + v * kLanes);
  }
}

// The bf16 tile: the same over pairs of k (simd::dot_bf16_pairs); xp holds pairs.
// Over k in [k_begin, k_end) as tile_f32 (k_begin even; an odd k_end is K itself).
template <bool kBlocked, std::size_t TV, std::size_t NR>
inline void tile_pairs(const std::uint32_t* xp, const bfloat16* const* w, std::size_t k_begin,
                       std::size_t k_end, float* out, bool accumulate) noexcept {
  using simd::FloatBatch;
  using simd::PairBatch;
  constexpr std::size_t kLanes = simd::kFloatLanes;
  FloatBatch acc[TV * NR];
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) {
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      acc[v * NR + j] = accumulate ? FloatBatch::load_unaligned(out + j * kTileTokens + v * kLanes)
                                   : FloatBatch(0.0f);
  }
  const bfloat16* wr[NR];
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) wr[j] = w[j];
  const std::size_t k_len = k_end;
  const std::size_t full_pairs = k_len / 2;
  std::size_t p = k_begin / 2;
  for (; p + 2 <= full_pairs; p += 2) {  // two pairs per iteration: less loop overhead
    PairBatch x0[TV], x1[TV];
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v) {
      x0[v] = PairBatch::load_unaligned(xp + p * kTileTokens + v * kLanes);
      x1[v] = PairBatch::load_unaligned(xp + (p + 1) * kTileTokens + v * kLanes);
    }
    SGT_SIMD_UNROLL
    for (std::size_t j = 0; j < NR; ++j) {
      const std::uint32_t w0 = simd::load_bf16_pair(weight_at<kBlocked>(wr[j], 2 * p));
      const std::uint32_t w1 = simd::load_bf16_pair(weight_at<kBlocked>(wr[j], 2 * p + 2));
      SGT_SIMD_UNROLL
      for (std::size_t v = 0; v < TV; ++v) {
        acc[v * NR + j] = simd::dot_bf16_pairs(acc[v * NR + j], x0[v], w0);
        acc[v * NR + j] = simd::dot_bf16_pairs(acc[v * NR + j], x1[v], w1);
      }
    }
  }
  for (; p < full_pairs; ++p) {
    PairBatch xv[TV];
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      xv[v] = PairBatch::load_unaligned(xp + p * kTileTokens + v * kLanes);
    SGT_SIMD_UNROLL
    for (std::size_t j = 0; j < NR; ++j) {
      const std::uint32_t wp = simd::load_bf16_pair(weight_at<kBlocked>(wr[j], 2 * p));
      SGT_SIMD_UNROLL
      for (std::size_t v = 0; v < TV; ++v)
        acc[v * NR + j] = simd::dot_bf16_pairs(acc[v * NR + j], xv[v], wp);
    }
  }
  if (k_len % 2 != 0) {  // the last weight alone; its missing partner pairs with a packed zero
    PairBatch xv[TV];
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      xv[v] = PairBatch::load_unaligned(xp + full_pairs * kTileTokens + v * kLanes);
    SGT_SIMD_UNROLL
    for (std::size_t j = 0; j < NR; ++j) {
      const std::uint32_t wp = weight_at<kBlocked>(wr[j], k_len - 1)->bits;
      SGT_SIMD_UNROLL
      for (std::size_t v = 0; v < TV; ++v)
        acc[v * NR + j] = simd::dot_bf16_pairs(acc[v * NR + j], xv[v], wp);
    }
  }
  SGT_SIMD_UNROLL
  for (std::size_t j = 0; j < NR; ++j) {
    SGT_SIMD_UNROLL
    for (std::size_t v = 0; v < TV; ++v)
      acc[v * NR + j].store_unaligned(out + j * kTileTokens + v * kLanes);
  }
}

// Tables of every (TV, NR) instantiation, so the last token tile (one register when it holds no
// more than kFloatLanes tokens) and the last feature group run register-blocked kernels too.
template <class WT>
using TileF32Fn = void (*)(const float*, const WT* const*, std::size_t, std::size_t, float*, bool);
using TilePairsFn = void (*)(const std::uint32_t*, const bfloat16* const*, std::size_t,
                             std::size_t, float*, bool);

template <class WT, bool kBlocked, std::size_t TV, std::size_t... J>
constexpr std::array<TileF32Fn<WT>, sizeof...(J)> tile_f32_row(std::index_sequence<J...>) {
  return {{&tile_f32<WT, kBlocked, TV, J + 1>...}};
}
template <bool kBlocked, std::size_t TV, std::size_t... J>
constexpr std::array<TilePairsFn, sizeof...(J)> tile_pairs_row(std::index_sequence<J...>) {
  return {{&tile_pairs<kBlocked, TV, J + 1>...}};
}

template <class WT, bool kBlocked>
inline TileF32Fn<WT> tile_f32_for(std::size_t tv, std::size_t nr) noexcept {
  static constexpr std::array<std::array<TileF32Fn<WT>, kTileFeatures>, 2> table = {
      {tile_f32_row<WT, kBlocked, 1>(std::make_index_sequence<kTileFeatures>{}),
       tile_f32_row<WT, kBlocked, 2>(std::make_index_sequence<kTileFeatures>{})}};
  return table[tv - 1][nr - 1];
}
template <bool kBlocked>
inline TilePairsFn tile_pairs_for(std::size_t tv, std::size_t nr) noexcept {
  static constexpr std::array<std::array<TilePairsFn, kTileFeatures>, 2> table = {
      {tile_pairs_row<kBlocked, 1>(std::make_index_sequence<kTileFeatures>{}),
       tile_pairs_row<kBlocked, 2>(std::make_index_sequence<kTileFeatures>{})}};
  return table[tv - 1][nr - 1];
}

// Token registers a tile needs: 1 when its real tokens fit in one.
inline std::size_t tile_vectors(std::size_t tokens_in_tile) noexcept {
  return tokens_in_tile > simd::kFloatLanes ? 2 : 1;
}

// One K block of a tile: k in [begin, end), the first block starting the sums from 0 and the last
// one leaving them complete.
struct KSpan {
  std::size_t begin, end;
  bool first() const noexcept { return begin == 0; }
};

// Runs `rows` (nr <= kTileFeatures weight rows, by pointer) against packed tile `tile` over the K
// block `k`: out[j * kTileTokens + lane], continuing the sums already in out unless k is the first
// block. The weight type must match the packing (BF16 for pairs). kBlocked: the rows are in
// feature blocks (each pointer at its feature's first element).
template <class WT, bool kBlocked = false>
inline void run_tile(const PackedActivations& xp, std::size_t tile, const WT* const* rows,
                     std::size_t nr, KSpan k, float* out) noexcept {
  const std::size_t t0 = tile * kTileTokens;
  const std::size_t tv = tile_vectors(xp.tokens - t0 < kTileTokens ? xp.tokens - t0 : kTileTokens);
  if constexpr (std::is_same_v<WT, bfloat16>) {
    if (xp.packing == ActivationPacking::Bf16Pairs) {
      tile_pairs_for<kBlocked>(tv, nr)(xp.pair_tile(tile), rows, k.begin, k.end, out, !k.first());
      return;
    }
  }
  tile_f32_for<WT, kBlocked>(tv, nr)(xp.f32_tile(tile), rows, k.begin, k.end, out, !k.first());
}

// The work split: chunks of `chunk_tiles` token tiles x kChunkGroups feature groups, numbered
// feature-block fastest, one parallel_for item each. Within a chunk, groups are outer (a group's
// weight rows serve all the chunk's tiles while they are in L1/L2) and the chunk's packed tiles
// stay in L2 while its groups sweep them.
//
// When the chunk's tiles over all of K would not fit the 512 KiB L2 budget with at least
// kBlockedTiles of them (K x 32 tokens is 512 KiB in f32 at K = 4096, and 1.8 MiB for an 8B
// model's down_proj), K is cut into blocks of k_block: for every block, every (group, tile) of the
// chunk continues its sums from a slot where the previous block left them. Without the blocks a
// chunk held one tile, so the whole of W streamed from memory once per 32 tokens (an 8B-shaped
// f32 transform on 2 threads ran at 67% of the FMA peak at S = 512); with them once per
// kBlockedTiles x 32 tokens. The chains are unchanged: same operations in the same order.
//
// chunk_tiles and k_block depend on the shapes alone, never on the thread count.
inline constexpr std::size_t kBlockedTiles = 4;  // tiles per chunk when K is blocked

struct TileGrid {
  std::size_t tiles, groups, chunk_tiles, group_blocks, count, k_len, k_block;

  TileGrid(std::size_t tokens, std::size_t features, std::size_t k, std::size_t tile_bytes) {
    constexpr std::size_t kBudget = std::size_t{512} << 10;
    tiles = packed_tiles(tokens);
    groups = (features + kTileFeatures - 1) / kTileFeatures;
    k_len = k;
    k_block = k;
    chunk_tiles = kBudget / (tile_bytes == 0 ? 1 : tile_bytes);
    if (chunk_tiles < 1) chunk_tiles = 1;
    if (chunk_tiles > 8) chunk_tiles = 8;
    if (chunk_tiles < kBlockedTiles && tiles > chunk_tiles && k > 0) {
      chunk_tiles = tiles < kBlockedTiles ? tiles : kBlockedTiles;
      const std::size_t bytes_per_k = (tile_bytes + k - 1) / k;
      std::size_t kb = kBudget / (chunk_tiles * bytes_per_k) / 16 * 16;
      if (kb < 16) kb = 16;
      if (kb < k) k_block = kb;
    }
    group_blocks = (groups + kChunkGroups - 1) / kChunkGroups;
    count = group_blocks * ((tiles + chunk_tiles - 1) / chunk_tiles);
  }

  bool blocked() const noexcept { return k_block < k_len; }

  // Calls fn(tile, group, KSpan, float* slot) for every tile, group and K block. `slot` holds
  // kSlotFloats floats that belong to (tile, group) across its K blocks (fn accumulates there and
  // finishes the tile when span.end == k_len); on the stack, kChunkGroups x kBlockedTiles of them.
  template <std::size_t kSlotFloats, class F>
  void run(ThreadPool* pool, F&& fn) const {
    parallel_for(pool, count, 1, [&](std::size_t c_begin, std::size_t c_end) {
      alignas(64) float slots[kChunkGroups * kBlockedTiles * kSlotFloats];
      for (std::size_t c = c_begin; c < c_end; ++c) {
        const std::size_t i0 = c / group_blocks * chunk_tiles, g0 = c % group_blocks * kChunkGroups;
        const std::size_t i1 = i0 + chunk_tiles < tiles ? i0 + chunk_tiles : tiles;
        const std::size_t g1 = g0 + kChunkGroups < groups ? g0 + kChunkGroups : groups;
        if (!blocked()) {
          for (std::size_t g = g0; g < g1; ++g)
            for (std::size_t i = i0; i < i1; ++i) fn(i, g, KSpan{0, k_len}, slots);
          continue;
        }
        for (std::size_t kb = 0; kb < k_len; kb += k_block) {
          const KSpan span{kb, k_len - kb > k_block ? kb + k_block : k_len};
          for (std::size_t g = g0; g < g1; ++g)
            for (std::size_t i = i0; i < i1; ++i)
              fn(i, g, span, slots + ((g - g0) * kBlockedTiles + (i - i0)) * kSlotFloats);
        }
      }
    });
  }
};

// y[lane * ldy + j] = out[j * kTileTokens + lane]: the tile, transposed into Y's rows.
inline void store_tile(const float* out, std::size_t nr, std::size_t tr, float* y,
                       std::size_t ldy) noexcept {
  for (std::size_t lane = 0; lane < tr; ++lane) {
    float* y_row = y + lane * ldy;
    for (std::size_t j = 0; j < nr; ++j) y_row[j] = out[j * kTileTokens + lane];
  }
}

inline std::size_t packed_tile_bytes(const PackedActivations& xp) noexcept {
  return xp.tile_words() * 4;
}

// Checks a packed operand against the weight and the output of one Linear.
inline void check_packed_linear(const char* op, const PackedActivations& xp,
                                const AnyTensorView& w, const AnyTensorView& bias,
                                const TensorView<float>& y) {
  const Shape x_shape{xp.tokens, xp.k_len};
  check_linear_shapes(op, x_shape, 2, w, bias, y.shape(), y.rank());
  if (y.data() == nullptr && y.size() != 0) throw Error(std::string(op) + ": y has no data");
  if (xp.data == nullptr && xp.tokens * xp.k_len != 0)
    throw Error(std::string(op) + ": the packed activations have no data");
  if (xp.packing == ActivationPacking::Bf16Pairs && w.dtype() != DType::BF16)
    throw Error(std::string(op) + ": bf16-packed activations need BF16 weights, got " +
                dtype_name(w.dtype()));
}

// Feature n's first element (k = 0) in W [.., k_len], row-major or in feature blocks.
template <class WT, bool kBlocked>
inline const WT* weight_row(const WT* w, std::size_t n, std::size_t k_len) noexcept {
  if constexpr (kBlocked) return w + feature_block_origin<WT>(n, k_len);
  return w + n * k_len;
}

// The narrow path (kernels/matmul_narrow.hpp): one unit (one or a few items of kNarrowItem
// features; on feature blocks, narrow_block_unit_features(T) features of one block) after
// another, in chunks of consecutive units.
template <class WT, bool kBlocked>
inline void matmul_narrow_typed(const PackedActivations& xp, const WT* w,
                                const AnyTensorView& bias, TensorView<float> y, ThreadPool* pool) {
  const std::size_t t_len = xp.tokens, n_len = y.dim(1);
  const bool has_bias = bias.data() != nullptr;
  const std::size_t unit_features =
      kBlocked ? narrow_block_unit_features(t_len) : narrow_unit_features(t_len);
  const std::size_t units = (n_len + unit_features - 1) / unit_features;
  parallel_for(pool, units, narrow_grain(units), [&](std::size_t begin, std::size_t end) {
    alignas(64) float out[kBlocked ? kNarrowBlockOutFloats : kNarrowOutFloats];
    for (std::size_t unit = begin; unit < end; ++unit) {
      const std::size_t n0 = unit * unit_features;
      const std::size_t nf = n_len - n0 < unit_features ? n_len - n0 : unit_features;
      if constexpr (kBlocked)
        narrow_block_unit<WT>(xp, w, n0, out);
      else
        narrow_unit<WT>(xp, w, n0, nf,
                        narrow_next_unit(w, unit, end, unit_features, n_len, xp.k_len), out);
      for (std::size_t t = 0; t < t_len; ++t) {
        float* y_row = y.row(t) + n0;
        const float* o = out + t * unit_features;
        if (has_bias) {
          for (std::size_t f = 0; f < nf; ++f) y_row[f] = o[f] + bias_at(bias, n0 + f);
        } else {
          std::copy(o, o + nf, y_row);
        }
      }
    }
  });
}

template <class WT, bool kBlocked>
inline void matmul_packed_typed(const PackedActivations& xp, const WT* w,
                                const AnyTensorView& bias, TensorView<float> y, ThreadPool* pool) {
  if (xp.narrow) {
    if constexpr (std::is_same_v<WT, float16>) {
      throw Error("matmul: narrow-packed activations need F32 or BF16 weights, got F16");
    } else {
      matmul_narrow_typed<WT, kBlocked>(xp, w, bias, y, pool);
      return;
    }
  }
  const std::size_t t_len = xp.tokens, k_len = xp.k_len, n_len = y.dim(1);
  const bool has_bias = bias.data() != nullptr;
  const TileGrid grid(t_len, n_len, k_len, packed_tile_bytes(xp));
  constexpr std::size_t kSlot = kTileFeatures * kTileTokens;
  grid.run<kSlot>(pool, [&](std::size_t tile, std::size_t group, KSpan span, float* out) {
    const WT* rows[kTileFeatures];
    const std::size_t n0 = group * kTileFeatures, t0 = tile * kTileTokens;
    const std::size_t nr = n_len - n0 < kTileFeatures ? n_len - n0 : kTileFeatures;
    const std::size_t tr = t_len - t0 < kTileTokens ? t_len - t0 : kTileTokens;
    for (std::size_t j = 0; j < nr; ++j) rows[j] = weight_row<WT, kBlocked>(w, n0 + j, k_len);
    run_tile<WT, kBlocked>(xp, tile, rows, nr, span, out);
    if (span.end != k_len) return;  // more K blocks to come
    if (has_bias) {
      float b[kTileFeatures];
      for (std::size_t j = 0; j < nr; ++j) b[j] = bias_at(bias, n0 + j);
      for (std::size_t j = 0; j < nr; ++j)
        for (std::size_t lane = 0; lane < tr; ++lane) out[j * kTileTokens + lane] += b[j];
    }
    store_tile(out, nr, tr, y.row(t0) + n0, n_len);
  });
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Y = X W^T (+ b) on activations packed by pack_activations (shared by several Linears of one
// input: q, k and v). Throws sgt::Error on a shape mismatch or bf16 packing with non-BF16 weights.
inline void matmul_packed(const PackedActivations& xp, const AnyTensorView& w,
                          const AnyTensorView& bias, TensorView<float> y,
                          ThreadPool* pool = nullptr) {
  detail::check_packed_linear("matmul", xp, w, bias, y);
  if (y.size() == 0) return;
  visit_dtype(w.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    const WT* data = static_cast<const WT*>(w.data());
    if constexpr (!std::is_same_v<WT, float16>) {
      if (!w.row_major()) return detail::matmul_packed_typed<WT, true>(xp, data, bias, y, pool);
    }
    detail::matmul_packed_typed<WT, false>(xp, data, bias, y, pool);
  });
}

// Y[T, N] = X[T, K] * W[N, K]^T (+ b[N]). x and y are f32; w and bias may each be F32, BF16 or
// F16. An empty AnyTensorView (data() == nullptr) means "no bias". y must not overlap x.
// `pack_buffer` holds packed_activation_floats(T, K) floats and overlaps neither x nor y; null
// means "allocate one for this call" (the model's Workspace passes one: no allocation per call).
// Throws sgt::Error, naming both shapes, when the shapes disagree.
inline void matmul(TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& bias,
                   TensorView<float> y, ThreadPool* pool = nullptr,
                   Precision precision = Precision::F32, float* pack_buffer = nullptr) {
  detail::check_linear("matmul", x, w, bias, y);
  if (y.size() == 0) return;
  WipedVector<float> own;  // activations are the user's secret: wiped when released
  if (pack_buffer == nullptr) {
    own.resize(packed_activation_floats(x.dim(0), x.dim(1)));
    pack_buffer = own.data();
  }
  const ActivationPacking packing = packing_for(precision, w.dtype());
  const PackedActivations xp = narrow_path_applies(x.dim(0), w.dtype(), packing)
                                   ? pack_activations_narrow(x, packing, pack_buffer)
                                   : pack_activations(x, packing, pack_buffer, pool);
  matmul_packed(xp, w, bias, y, pool);
}

// x[t][k] as the matmul multiplies it: rounded to bf16 where the packing is Bf16Pairs.
inline float matmul_input_value(float x, ActivationPacking packing) noexcept {
  if (packing == ActivationPacking::F32) return x;
  const std::uint32_t bits = static_cast<std::uint32_t>(simd::bf16_round_bits(x)) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The yardstick: plain loops, weights widened element by element, double accumulation; at
// Precision::Bf16 with BF16 weights the activations are rounded to bf16 first, as matmul does.
// Serial whatever the pool (the parameter only keeps the signature identical to matmul's).
inline void matmul_reference(TensorView<const float> x, const AnyTensorView& w,
                             const AnyTensorView& bias, TensorView<float> y,
                             ThreadPool* pool = nullptr, Precision precision = Precision::F32) {
  (void)pool;
  detail::check_linear("matmul_reference", x, w, bias, y);
  const std::size_t t_len = x.dim(0), k_len = x.dim(1), n_len = y.dim(1);
  const ActivationPacking packing = packing_for(precision, w.dtype());
  visit_dtype(w.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    const WT* wp = static_cast<const WT*>(w.data());
    // Element (n, k) in either layout (check_linear refuses F16 in feature blocks).
    const auto at = [&](std::size_t n, std::size_t k) {
      if (w.row_major()) return wp[n * k_len + k];
      return wp[feature_block_origin<WT>(n, k_len) + feature_block_offset<WT>(k)];
    };
    for (std::size_t t = 0; t < t_len; ++t) {
      for (std::size_t n = 0; n < n_len; ++n) {
        double sum = 0.0;
        for (std::size_t k = 0; k < k_len; ++k)
          sum += static_cast<double>(matmul_input_value(x(t, k), packing)) *
                 static_cast<double>(to_float(at(n, k)));
        if (bias.data() != nullptr) sum += static_cast<double>(detail::bias_at(bias, n));
        y(t, n) = static_cast<float>(sum);
      }
    }
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
