// matmul: Y[T, N] = X[T, K] * W[N, K]^T (+ b[N]) -- every Linear layer of the estimators.
//
// W is used as stored in safetensors: row-major [out_features][in_features], in F32, BF16 or F16,
// read in place from the mapped file. Activations and accumulation are f32. W is never widened to
// f32 as a whole (a Llama-3.1-8B MLP would double in size): BF16/F16 values are widened in
// registers as they are loaded (sgt::simd::load_as_float), so a BF16 weight also costs half the
// memory traffic of an F32 one.
//
// Design: an inner-product ("dot tile") micro-kernel. Both operands are contiguous along K -- X
// rows and W rows alike -- so the kernel streams MR rows of X and NR rows of W side by side, one
// SIMD register (kFloatLanes values of K) at a time, and keeps an MR x NR block of vector
// accumulators in registers; each accumulator is reduced horizontally at the end of a K block.
//   - Register budget (AVX-512, 32 zmm): MR * NR accumulators + MR X vectors + 1 widened W vector.
//     MR = 4, NR = 6 gives 24 + 4 + 1 = 29 registers. Per K step: 24 FMAs for 10 loads (4 X, 6 W)
//     and 6 widenings, FMA-bound on paper; 24 independent chains cover FMA latency x throughput
//     (4 cycles x 1-2 per cycle on Zen 4 / Skylake-X). Measured on Zen 4: 4x4 (16 chains, 2 FMAs
//     per load) ran ~40% slower, 6x4 and 8x3 (W held in registers, X streamed) 10-40% slower.
//   - Memory traffic decides the rest. Each K step pulls 4 X lines and 6 W lines (3 for BF16 /
//     F16, whose rows are half as wide) through L1, so: K is cut into blocks of kMatmulKBlock
//     (2048) and a chunk's W rows of one block (~512 KiB) stay in L2 while all token tiles sweep
//     them; the X rows of a token tile and K block are copied into a stack tile (XTile) whose rows
//     do not alias in L1 and whose loads are aligned; W loads are aligned by peeling a few K
//     values off the front of every row (weight_peel), as a mapped file puts W at any offset.
//     Together these took F32 from ~55% to ~75% of the FMA peak on Zen 4 (a load that straddles
//     two cache lines costs two). Smaller K blocks (512, 1024) measured slower: reductions and
//     short W streams cost more than L1 hits gain.
//   - Horizontal sums: a transposing tree reduces 16 accumulators at ~3 instructions per sum.
//   - No packing of W and no scratch from the caller; T = 1 (one token) is the same kernel with
//     MR = 1, a pure W stream at memory bandwidth.
//
// Alternatives measured and dropped (bench/bench_matmul.cpp keeps them as alt_*; Llama-3.2-1B
// q_o shape, one thread, Zen 4 with a measured FMA peak of 112 GFLOP/s):
//   - Eigen's GEMM on an Eigen::Map of the mapped F32 weights, our pool splitting N: 64 / 75
//     GFLOP/s at T = 128 / 512 against 80 / 81 for this kernel; faster only at T = 1 (46 against
//     40 GB/s of weights, an L3-bound matrix-vector product). And Eigen heap-allocates its packing
//     buffers in every product above 128 KiB (checked with EIGEN_RUNTIME_NO_MALLOC), which a hot
//     path must not do; its rounding also depends on its cache blocking, not only on the data.
//   - BF16 panels widened into a per-thread f32 buffer, then Eigen on the panel: 66 GFLOP/s at
//     T = 128 and 512 against 95 / 86, and 16 against 50 GB/s at T = 1: the widening pass writes
//     and reads every weight once more, which a memory-bound product cannot hide.
//
// Determinism. Every output element y[t, n] is computed the same way wherever it falls in a tile
// or chunk: the peeled head as one zero-padded step, lane-wise FMAs over each K block in
// increasing k, the zero-padded K tail as one last step, one fixed reduction tree per block,
// block sums added in order of k, then + b[n]. The peel depends on the weight's address and
// shape alone. The result therefore depends neither on the thread count nor on T (row t of a
// batch is bit-identical to the same row computed alone) nor on where X lives.
//
// matmul_reference is the plain triple loop with double accumulation, the yardstick of the tests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/invariant.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/overlap.hpp"

namespace sgt::kernels {

namespace detail {

// Tile shape of the micro-kernel (see the register budget above) and the blocking.
inline constexpr std::size_t kMatmulTileRows = 4;      // MR: rows of X (tokens)
inline constexpr std::size_t kMatmulTileCols = 6;      // NR: rows of W (output features)
inline constexpr std::size_t kMatmulKBlock = 2048;     // K block: 4 X rows x 8 KiB
inline constexpr std::size_t kMatmulTokenBlock = 256;  // tokens per work chunk
inline constexpr std::size_t kMatmulChunkBytes = std::size_t{512} << 10;  // W bytes per chunk

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

// Adds one partial K step -- the first or last `count` (< kFloatLanes) values, zero-padded -- to
// the accumulators: the K head and tail become one more FMA step of the same kind (0 * 0 adds
// nothing), loaded by simd::load_partial_as_float, which reads nothing past `count`.
template <class WT, std::size_t MR, std::size_t NR>
inline void partial_step(const float* x, std::size_t ldx, const WT* const* w, std::size_t k,
                         std::size_t count, simd::FloatBatch* acc) noexcept {
  simd::FloatBatch xv[MR];
  for (std::size_t i = 0; i < MR; ++i) xv[i] = simd::load_partial_as_float(x + i * ldx + k, count);
  for (std::size_t j = 0; j < NR; ++j) {
    const simd::FloatBatch wv = simd::load_partial_as_float(w[j] + k, count);
    for (std::size_t i = 0; i < MR; ++i)
      acc[i * NR + j] = simd::multiply_add(xv[i], wv, acc[i * NR + j]);
  }
}

// The micro-kernel: out[i * NR + j] = dot(x row i, w row j) over k_len, for MR rows of x (stride
// ldx) and NR rows of w given by pointer (so that a caller may mix rows of two matrices, as the
// fused gate/up projection of the SwiGLU MLP does). The first `head` values (< kFloatLanes) form
// one zero-padded step of their own, so that the full steps after them load W at aligned
// addresses (see weight_peel). The summation order of one output does not depend on MR or NR,
// see "Determinism" above.
template <class WT, std::size_t MR, std::size_t NR>
inline void dot_tile(const float* x, std::size_t ldx, const WT* const* w, std::size_t k_len,
                     std::size_t head, float* out) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t kLanes = simd::kFloatLanes;
  FloatBatch acc[MR * NR];
  for (std::size_t a = 0; a < MR * NR; ++a) acc[a] = FloatBatch(0.0f);
  const WT* wr[NR];
  for (std::size_t j = 0; j < NR; ++j) wr[j] = w[j];

  sgt::detail::invariant(head <= k_len, "dot_tile: the peeled head is longer than the K block");
  if (head > 0) partial_step<WT, MR, NR>(x, ldx, wr, 0, head, acc);
  const std::size_t k_main = head + (k_len - head) / kLanes * kLanes;
  for (std::size_t k = head; k < k_main; k += kLanes) {
    FloatBatch xv[MR];
    for (std::size_t i = 0; i < MR; ++i) xv[i] = FloatBatch::load_unaligned(x + i * ldx + k);
    for (std::size_t j = 0; j < NR; ++j) {
      FloatBatch wv = simd::load_as_float(wr[j] + k);
      simd::keep_in_register(wv);
      for (std::size_t i = 0; i < MR; ++i)
        acc[i * NR + j] = simd::multiply_add(xv[i], wv, acc[i * NR + j]);
    }
  }
  if (k_main < k_len) partial_step<WT, MR, NR>(x, ldx, wr, k_main, k_len - k_main, acc);
  simd::reduce_accumulators<MR * NR>(acc, out);
}

// dot_tile for a runtime tile shape (mr <= MR, nr <= NR): a table of every instantiation, so the
// edges of T and N run register-blocked kernels too (T = 1 runs the 1 x NR kernel). The results
// are written densely: out[i * nr + j].
template <class WT>
using DotTileFn = void (*)(const float*, std::size_t, const WT* const*, std::size_t, std::size_t,
                           float*);

template <class WT, std::size_t MR, std::size_t... J>
constexpr std::array<DotTileFn<WT>, sizeof...(J)> dot_tile_row(std::index_sequence<J...>) {
  return {{&dot_tile<WT, MR, J + 1>...}};
}
template <class WT, std::size_t NRMax, std::size_t... I>
constexpr std::array<std::array<DotTileFn<WT>, NRMax>, sizeof...(I)> dot_tile_table(
    std::index_sequence<I...>) {
  return {{dot_tile_row<WT, I + 1>(std::make_index_sequence<NRMax>{})...}};
}

template <class WT, std::size_t MRMax, std::size_t NRMax>
inline DotTileFn<WT> dot_tile_for(std::size_t mr, std::size_t nr) noexcept {
  static constexpr auto table = dot_tile_table<WT, NRMax>(std::make_index_sequence<MRMax>{});
  return table[mr - 1][nr - 1];
}

// Rows of W per work chunk: about kMatmulChunkBytes of weights, given the bytes of one row that a
// chunk sweeps per token tile (one K block of it for matmul, all of K for gate + up), so those
// stay in L2 while every tile of a token block sweeps them; a multiple of the tile width, between
// 1 and 16 tiles. Depends on the shapes and the dtypes alone, never on the thread count.
inline std::size_t chunk_rows(std::size_t swept_row_bytes, std::size_t tile_cols) noexcept {
  std::size_t rows = kMatmulChunkBytes / (swept_row_bytes == 0 ? 1 : swept_row_bytes);
  rows = rows / tile_cols * tile_cols;
  if (rows < tile_cols) rows = tile_cols;
  if (rows > 16 * tile_cols) rows = 16 * tile_cols;
  return rows;
}

// Elements to peel off the front of every W row so that the full K steps after them load W at
// multiples of the load size (kFloatLanes elements: 64 bytes for F32 on AVX-512, 32 for BF16 /
// F16): a load that straddles two cache lines costs two, and weights mapped from a safetensors
// file sit wherever the file put them (measured: F32 ~20% slower when W and X are both off by
// 16 bytes). Only when every row has the same alignment (row bytes a multiple of the load size);
// otherwise 0. A property of the weight alone -- its address and shape -- so results stay
// independent of T, of the threads and of where X lives.
inline std::size_t weight_peel(const void* w, std::size_t k_len, std::size_t elem_bytes) noexcept {
  const std::size_t load_bytes = simd::kFloatLanes * elem_bytes;
  if ((k_len * elem_bytes) % load_bytes != 0) return 0;
  const std::size_t misalignment = reinterpret_cast<std::uintptr_t>(w) % load_bytes;
  if (misalignment % elem_bytes != 0) return 0;
  const std::size_t peel = (load_bytes - misalignment) % load_bytes / elem_bytes;
  return peel < k_len ? peel : k_len;
}

// K blocks of a weight with a given peel: [0, peel + KC), then KC at a time, so every block after
// the first starts at an aligned W address. Calls block_fn(k0, kc, head, first, last).
template <class F>
inline void for_each_k_block(std::size_t k_len, std::size_t peel, F&& block_fn) {
  for (std::size_t k0 = 0;;) {
    const std::size_t nominal_end = (k0 == 0 ? peel : k0) + kMatmulKBlock;
    const std::size_t k1 = nominal_end < k_len ? nominal_end : k_len;
    block_fn(k0, k1 - k0, k0 == 0 ? peel : std::size_t{0}, k0 == 0, k1 == k_len);
    if (k1 == k_len) break;
    k0 = k1;
  }
}

// The X rows of one token tile and K block, copied so that the element at `head` of every row is
// aligned like the W loads after the peel, and so that rows are three cache lines off a multiple
// of 4 KiB apart (rows of a power-of-two K would otherwise all map to the same L1 set, and 4 X + 6
// W lines exceed its 8 ways). The copy costs ~2% of the FMAs that reuse it (16 W tiles per chunk).
// MR x (kMatmulKBlock + 48) floats: 33.5 KiB on the stack of the thread that runs the chunk.
template <std::size_t MR>
struct XTile {
  static constexpr std::size_t kStride = kMatmulKBlock + 3 * 16;  // floats; a multiple of 16
  alignas(64) float data[MR * kStride];

  // Copies rows [0, mr) x columns [0, kc) of x (row stride ldx); returns the first row, whose
  // element `head` is vector-aligned. kc <= kMatmulKBlock + kFloatLanes.
  const float* pack(const float* x, std::size_t ldx, std::size_t mr, std::size_t kc,
                    std::size_t head) noexcept {
    const std::size_t shift = (simd::kFloatLanes - head % simd::kFloatLanes) % simd::kFloatLanes;
    if (kc != 0)
      for (std::size_t i = 0; i < mr; ++i)
        std::memcpy(data + i * kStride + shift, x + i * ldx, kc * sizeof(float));
    return data + shift;
  }
};

// The work split: chunks of (kMatmulTokenBlock tokens) x (rows_per_chunk output features),
// numbered feature-block-fastest, each one parallel_for item (grain 1). Token blocks give a pool
// work to share when N is small (the k/v projections) and T large.
struct ChunkGrid {
  std::size_t t_len, n_len, n_block, n_blocks, count;

  ChunkGrid(std::size_t tokens, std::size_t features, std::size_t rows_per_chunk)
      : t_len(tokens), n_len(features), n_block(rows_per_chunk) {
    n_blocks = (features + n_block - 1) / n_block;
    count = n_blocks * ((tokens + kMatmulTokenBlock - 1) / kMatmulTokenBlock);
  }

  // Calls chunk_fn(t_begin, t_end, n_begin, n_end) once per chunk.
  template <class F>
  void run(ThreadPool* pool, F&& chunk_fn) const {
    parallel_for(pool, count, 1, [&](std::size_t c_begin, std::size_t c_end) {
      for (std::size_t c = c_begin; c < c_end; ++c) {
        const std::size_t t0 = c / n_blocks * kMatmulTokenBlock, n0 = c % n_blocks * n_block;
        chunk_fn(t0, t0 + kMatmulTokenBlock < t_len ? t0 + kMatmulTokenBlock : t_len, n0,
                 n0 + n_block < n_len ? n0 + n_block : n_len);
      }
    });
  }
};

template <class WT>
inline void matmul_typed(TensorView<const float> x, const WT* w, const AnyTensorView& bias,
                         TensorView<float> y, ThreadPool* pool) {
  constexpr std::size_t MR = kMatmulTileRows, NR = kMatmulTileCols;
  const std::size_t t_len = x.dim(0), k_len = x.dim(1), n_len = y.dim(1);
  const bool has_bias = bias.data() != nullptr;
  const std::size_t peel = weight_peel(w, k_len, sizeof(WT));
  const std::size_t swept = (k_len < kMatmulKBlock ? k_len : kMatmulKBlock) * sizeof(WT);
  const ChunkGrid grid(t_len, n_len, chunk_rows(swept, NR));
  grid.run(pool, [&](std::size_t t_begin, std::size_t t_end, std::size_t n_begin,
                     std::size_t n_end) {
    XTile<MR> x_tile;
    float out[MR * NR];
    const WT* rows[NR];
    // K blocks outermost: one block of the chunk's W rows stays in L2 while all token tiles sweep
    // it; block sums go into y, the last block also adds the bias.
    for_each_k_block(
        k_len, peel, [&](std::size_t k0, std::size_t kc, std::size_t head, bool first, bool last) {
          for (std::size_t t = t_begin; t < t_end; t += MR) {
            const std::size_t mr = t_end - t < MR ? t_end - t : MR;
            const float* xp = x_tile.pack(x.row(t) + k0, k_len, mr, kc, head);
            for (std::size_t n = n_begin; n < n_end; n += NR) {
              const std::size_t nr = n_end - n < NR ? n_end - n : NR;
              for (std::size_t j = 0; j < nr; ++j) rows[j] = w + (n + j) * k_len + k0;
              dot_tile_for<WT, MR, NR>(mr, nr)(xp, XTile<MR>::kStride, rows, kc, head, out);
              for (std::size_t i = 0; i < mr; ++i) {
                float* y_row = y.row(t + i) + n;
                for (std::size_t j = 0; j < nr; ++j) {
                  float v = first ? out[i * nr + j] : y_row[j] + out[i * nr + j];
                  if (last && has_bias) v += bias_at(bias, n + j);
                  y_row[j] = v;
                }
              }
            }
          }
        });
  });
}

}  // namespace detail

// Y[T, N] = X[T, K] * W[N, K]^T (+ b[N]). x and y are f32; w and bias may each be F32, BF16 or
// F16. An empty AnyTensorView (data() == nullptr) means "no bias". y must not overlap x. Throws
// sgt::Error, naming both shapes, when the shapes disagree.
inline void matmul(TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& bias,
                   TensorView<float> y, ThreadPool* pool = nullptr) {
  detail::check_linear("matmul", x, w, bias, y);
  if (y.size() == 0) return;
  visit_dtype(w.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    detail::matmul_typed<WT>(x, static_cast<const WT*>(w.data()), bias, y, pool);
  });
}

// The yardstick: plain loops, weights widened element by element, double accumulation. Serial
// whatever the pool (the parameter only keeps the signature identical to matmul's).
inline void matmul_reference(TensorView<const float> x, const AnyTensorView& w,
                             const AnyTensorView& bias, TensorView<float> y,
                             ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_linear("matmul_reference", x, w, bias, y);
  const std::size_t t_len = x.dim(0), k_len = x.dim(1), n_len = y.dim(1);
  visit_dtype(w.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    const WT* wp = static_cast<const WT*>(w.data());
    for (std::size_t t = 0; t < t_len; ++t) {
      for (std::size_t n = 0; n < n_len; ++n) {
        double sum = 0.0;
        for (std::size_t k = 0; k < k_len; ++k)
          sum += static_cast<double>(x(t, k)) * static_cast<double>(to_float(wp[n * k_len + k]));
        if (bias.data() != nullptr) sum += static_cast<double>(detail::bias_at(bias, n));
        y(t, n) = static_cast<float>(sum);
      }
    }
  });
}

}  // namespace sgt::kernels
