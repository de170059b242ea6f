// flash_attention: attention in O(tile) memory with an online softmax (FlashAttention, Dao et al.
// 2022, laid out for a CPU). Same contract, layouts and masking rule as sdpa (attention.hpp); the
// reference it is tested against is sdpa (sdpa.hpp).
//
// Work: one task per (batch row b, query head h, block of Bq query positions). A task walks the
// key blocks its queries can see and keeps, per query row, a running max m, a running sum l of
// exp(s - m) and an unnormalized output row acc:
//
//     for each key block (Bk keys):
//         s     = scale * q k^T, masked to -inf             (Bk x Bq tile, never S x S)
//                 (soft-capped first when the options say so: cap * tanh(s / cap), on the tile)
//         m'    = max(m, max_j s)                           per query
//         alpha = exp(m - m');  p = exp(s - m')
//         l     = alpha * l + sum_j p;  acc = alpha * acc + p v;  m = m'
//     out = acc / l        (0 for a row that saw no key: l == 0, never 0/0)
//
// Which key blocks a task touches. Let the task hold queries [i0, i0 + nq):
//
//                keys ->   0 .......................................... S
//   causal:                [ visited: j < i0 + nq ]  [ never touched: j > every i ]
//   + window W:  [skipped: j <= i0 - W, out of every window] [ visited ] [ never touched ]
//
//   Inside the visited span, a block whose keys are all padding is skipped too. Only the blocks
//   that straddle the diagonal or the window edge pay for per-element masking; within those, a
//   key row j is visible to the queries i with causal ? i >= j : true, and i < j + W, so masking is
//   two contiguous fills per key row.
//
// Layout of a tile, and why it is transposed. The scores tile is stored keys x queries (St[j][i])
// and q is packed once per task as Qt[d][i] (pre-multiplied by scale). Then
//   - q k^T is an outer-product accumulation over d: acc[j][i..i+L) += k[j][d] * Qt[d][i..i+L),
//     a broadcast of one k element times a vector of L queries. No horizontal reductions at all
//     (a dot product along head_dim needs one per score, as many shuffles as FMAs at head_dim 64),
//     and k is read in place, row by row, from the [S, kv_heads * head_dim] activation.
//   - the softmax is per query = per column, so max, exp and sum are vertical SIMD operations over
//     the key rows of the tile, L queries at a time.
//   - p v is an axpy: acc[i][d..d+L) += St[j][i] * v[j][d..d+L), v read row by row.
// Register blocking: q k^T keeps R key rows x G query vectors, p v keeps R query rows x C head_dim
// vectors, R*G (R*C) accumulators: 16 of the 32 registers of AVX-512 (G, C <= 4) and NEON, 12 of
// the 16 of AVX2 and SSE2 (G, C <= 2, R = 6). Each inner step issues R*G (R*C) FMAs for G+R (C+R)
// loads. A block's rows that do not fill a last tile are split into two near-equal ones, never
// left as a thin tile of one or two rows (flash_tile_rows). head_dim need not be a multiple of L:
// the packed Qt has no tail in d, and the p v tail (head_dim % L dims, none for 64/80/128 with
// AVX-512) is a scalar loop. Qt is packed through L x L register transposes.
//
// Tile sizes: Bq = Bk = the largest multiple of L (at most 64) with Bq * head_dim <= 4096 floats,
// that is 16 KiB. The q k^T loop streams all of Qt (Bq x head_dim) once per R key rows, and the
// p v loop streams the v block (Bk x head_dim) once per R query rows: at 16 KiB each they fit a
// 32 KiB L1d. head_dim 64 -> 64, 80 -> 48, 128 -> 32 (AVX-512). The whole per-task working set
// (Qt, St, acc, m, l) is 36 to 48 KiB: L2-resident everywhere.
//
// Where p v takes at most one cache line of each v row per pass (C*L floats <= 16: AVX2, SSE2,
// NEON), the block's v rows are first copied into a contiguous tile (kFlashPackV). In place, the
// rows sit kv_heads * head_dim floats apart (4 KiB for 8 kv heads of 128): a pass reads one line
// from each of Bk rows that all fall in the same L1 set (8 ways), so the block cannot stay in L1
// from one pass to the next. Measured on Zen 4 (bench_attention, -march=x86-64-v3, one thread):
// the copy makes the whole kernel 1.5x faster at head_dim 128. AVX-512's pass reads four
// consecutive lines per row and runs 3-6% faster in place.
//
// Memory: one slot of that working set per running chunk, O(tile x threads) and independent of
// seq_len (see flash_attention_scratch_bytes): on each thread's stack for head_dim <= 256, so a
// call allocates nothing; from one heap buffer per call for wider heads. A chunk of
// tasks borrows a free slot for its duration; nothing in a slot survives from one task to the
// next, so which slot a task gets cannot change its result.
//
// Determinism: task boundaries depend only on the shape, each output row is produced by one task
// walking its key blocks in a fixed order => bit-identical results for any thread count. Tasks
// are numbered heaviest-first (last query blocks see the most keys under causal masking) because
// the pool hands chunks out in index order: cheap tasks fill the gaps at the end.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <type_traits>
#include <vector>

#include "sgt/core/invariant.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/sdpa.hpp"

namespace sgt::kernels {
namespace detail {
SGT_ISA_BEGIN

inline constexpr std::size_t kFlashLanes = simd::kFloatLanes;
// Accumulator registers per micro-kernel. With 32 registers, half of them: 16 accumulators, up to
// 4 loaded vectors and the broadcast. With 16 (AVX2, SSE2): 12 accumulators, 2 loaded vectors and
// the broadcast make 15. Half the file, 8, is exactly the FMA latency x throughput of two 4-cycle
// FMA pipes (no slack for a late load), and R = 4 rows issue 8 FMAs per 6 loads where R = 6 issue
// 12 per 8; measured up to 5% faster on Zen 4.
inline constexpr int kFlashAccumulators = simd::kVectorRegisters >= 32 ? 16 : 12;
// Query vectors (q k^T) or head_dim vectors (p v) per micro-kernel call.
inline constexpr int kFlashMaxVectors = simd::kVectorRegisters >= 32 ? 4 : 2;
// Whether p v reads a key block's v rows from a packed copy (see "Where p v takes" at the top).
inline constexpr bool kFlashPackV = kFlashMaxVectors * kFlashLanes <= 16;
inline constexpr std::size_t kFlashMaxBlock = 64;
inline constexpr std::size_t kFlashTileFloats = 4096;  // 16 KiB: half of a 32 KiB L1d
struct FlashTiles {
  std::size_t query_block = 0;  // Bq, a multiple of kFlashLanes
  std::size_t key_block = 0;    // Bk
};

constexpr FlashTiles flash_tiles(std::size_t head_dim) noexcept {
  std::size_t block = head_dim == 0 ? kFlashMaxBlock : kFlashTileFloats / head_dim;
  block = block / kFlashLanes * kFlashLanes;
  block = std::clamp(block, kFlashLanes, kFlashMaxBlock);
  return {block, block};
}

constexpr std::size_t round_up(std::size_t n, std::size_t multiple) noexcept {
  return (n + multiple - 1) / multiple * multiple;
}

// One slot of scratch, in floats; every region starts on a 64-byte boundary.
struct FlashSlotLayout {
  std::size_t qt = 0, st = 0, acc = 0, v = 0, row_max = 0, row_sum = 0, alpha = 0, floats = 0;
};

constexpr FlashSlotLayout flash_slot_layout(std::size_t head_dim) noexcept {
  const FlashTiles t = flash_tiles(head_dim);
  FlashSlotLayout s;
  std::size_t at = 0;
  auto region = [&at](std::size_t floats) {
    const std::size_t begin = at;
    at += round_up(floats, 16);
    return begin;
  };
  s.qt = region(head_dim * t.query_block);
  s.st = region(t.key_block * t.query_block);
  s.acc = region(t.query_block * head_dim);
  s.v = region(kFlashPackV ? t.key_block * head_dim : 0);
  s.row_max = region(t.query_block);
  s.row_sum = region(t.query_block);
  s.alpha = region(t.query_block);
  s.floats = at;
  return s;
}

// A slot (q^T tile, scores tile, accumulator tile, the packed v tile where kFlashPackV, three row
// vectors) fits in this many floats for every head_dim up to 256, the tiles being sized to
// kFlashTileFloats (50 KiB on the stack, 66 KiB with the v tile).
inline constexpr std::size_t kFlashStackSlotFloats =
    (kFlashPackV ? 4 : 3) * kFlashTileFloats + 3 * kFlashMaxBlock + 64;

// The largest slot of any head_dim in [1, max_head_dim].
constexpr std::size_t flash_max_slot_floats(std::size_t max_head_dim) noexcept {
  std::size_t most = 0;
  for (std::size_t hd = 1; hd <= max_head_dim; ++hd)
    most = std::max(most, flash_slot_layout(hd).floats);
  return most;
}
static_assert(flash_max_slot_floats(256) <= kFlashStackSlotFloats,
              "every head_dim up to 256 must run on the stack slot (flash_attention allocates "
              "nothing there)");

inline std::size_t flash_num_tasks(const AttentionShape& shape) noexcept {
  const std::size_t bq = flash_tiles(shape.head_dim).query_block;
  return shape.batch * shape.num_heads * ((shape.seq_len + bq - 1) / bq);
}

inline std::size_t flash_num_slots(const AttentionShape& shape, std::size_t num_threads) noexcept {
  return std::max<std::size_t>(
      1, std::min(std::max<std::size_t>(1, num_threads), flash_num_tasks(shape)));
}

// Calls f(std::integral_constant<int, n>) for a runtime n in [1, Max].
template <int Max, class F>
inline void flash_with_count(std::size_t n, F&& f) {
  if constexpr (Max > 1) {
    if (n < static_cast<std::size_t>(Max)) {
      flash_with_count<Max - 1>(n, f);
      return;
    }
  }
  f(std::integral_constant<int, Max>{});
}

// Rows of the next register tile, out of `left`, at most R: full tiles while two or more remain,
// then the rest in two near-equal tiles (R = 6, 32 rows: 6 6 6 6 4 4, not 6 6 6 6 6 2). A tile of
// r rows runs r x G independent FMA chains; a thin tail tile (r = 1 or 2) runs too few to cover
// the FMA latency and costs nearly as much as a full one.
template <int R>
constexpr std::size_t flash_tile_rows(std::size_t left) noexcept {
  if (left >= 2 * static_cast<std::size_t>(R) || left <= static_cast<std::size_t>(R)) {
    return std::min<std::size_t>(left, R);
  }
  return (left + 1) / 2;
}

// St[j][c0*L + g*L ..) = sum_d k[j][d] * Qt[d][c0*L + g*L ..) for R key rows and G query vectors.
template <int R, int G>
inline void flash_qk_tile(const float* qt, std::size_t qt_stride, const float* k_rows,
                          std::size_t k_stride, std::size_t head_dim, float* st,
                          std::size_t st_stride) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = kFlashLanes;
  FloatBatch acc[R][G];
  SGT_SIMD_UNROLL
  for (int r = 0; r < R; ++r) {
    SGT_SIMD_UNROLL
    for (int g = 0; g < G; ++g) acc[r][g] = FloatBatch(0.0f);
  }
  for (std::size_t d = 0; d < head_dim; ++d) {
    FloatBatch qv[G];
    SGT_SIMD_UNROLL
    for (int g = 0; g < G; ++g) {
      qv[g] = FloatBatch::load_aligned(qt + d * qt_stride + g * L);
      simd::keep_in_register(qv[g]);
    }
    SGT_SIMD_UNROLL
    for (int r = 0; r < R; ++r) {
      const FloatBatch kb(k_rows[r * k_stride + d]);
      SGT_SIMD_UNROLL
      for (int g = 0; g < G; ++g) acc[r][g] = simd::multiply_add(kb, qv[g], acc[r][g]);
    }
  }
  SGT_SIMD_UNROLL
  for (int r = 0; r < R; ++r) {
    SGT_SIMD_UNROLL
    for (int g = 0; g < G; ++g) acc[r][g].store_aligned(st + r * st_stride + g * L);
  }
}

template <int G>
inline void flash_qk_block(const float* qt, std::size_t qt_stride, const float* k_rows,
                           std::size_t k_stride, std::size_t num_keys, std::size_t head_dim,
                           float* st, std::size_t st_stride) noexcept {
  constexpr int R = kFlashAccumulators / G;
  for (std::size_t j = 0; j < num_keys;) {
    const std::size_t rows = flash_tile_rows<R>(num_keys - j);
    flash_with_count<R>(rows, [&](auto r) {
      flash_qk_tile<decltype(r)::value, G>(qt, qt_stride, k_rows + j * k_stride, k_stride, head_dim,
                                           st + j * st_stride, st_stride);
    });
    j += rows;
  }
}

// acc[r][c*L ..) += sum_j St[j][r] * v[j][c*L ..) for R query rows and C head_dim vectors.
template <int R, int C>
inline void flash_pv_tile(const float* pt, std::size_t pt_stride, const float* v_rows,
                          std::size_t v_stride, std::size_t num_keys, float* acc,
                          std::size_t acc_stride) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = kFlashLanes;
  FloatBatch a[R][C];
  SGT_SIMD_UNROLL
  for (int r = 0; r < R; ++r) {
    SGT_SIMD_UNROLL
    for (int c = 0; c < C; ++c) a[r][c] = FloatBatch::load_unaligned(acc + r * acc_stride + c * L);
  }
  for (std::size_t j = 0; j < num_keys; ++j) {
    FloatBatch vv[C];
    SGT_SIMD_UNROLL
    for (int c = 0; c < C; ++c) {
      vv[c] = FloatBatch::load_unaligned(v_rows + j * v_stride + c * L);
      simd::keep_in_register(vv[c]);
    }
    SGT_SIMD_UNROLL
    for (int r = 0; r < R; ++r) {
      const FloatBatch p(pt[j * pt_stride + r]);
      SGT_SIMD_UNROLL
      for (int c = 0; c < C; ++c) a[r][c] = simd::multiply_add(p, vv[c], a[r][c]);
    }
  }
  SGT_SIMD_UNROLL
  for (int r = 0; r < R; ++r) {
    SGT_SIMD_UNROLL
    for (int c = 0; c < C; ++c) a[r][c].store_unaligned(acc + r * acc_stride + c * L);
  }
}

template <int C>
inline void flash_pv_block(const float* pt, std::size_t pt_stride, const float* v_rows,
                           std::size_t v_stride, std::size_t num_keys, std::size_t num_rows,
                           float* acc, std::size_t acc_stride) noexcept {
  constexpr int R = kFlashAccumulators / C;
  for (std::size_t r = 0; r < num_rows;) {
    const std::size_t rows = flash_tile_rows<R>(num_rows - r);
    flash_with_count<R>(rows, [&](auto n) {
      flash_pv_tile<decltype(n)::value, C>(pt + r, pt_stride, v_rows, v_stride, num_keys,
                                           acc + r * acc_stride, acc_stride);
    });
    r += rows;
  }
}

// Hands out at most num_slots scratch slots to concurrently running chunks.
class FlashSlots {
 public:
  FlashSlots(float* base, std::size_t slot_floats, std::size_t num_slots)
      : base_(base), slot_floats_(slot_floats) {
    free_.reserve(num_slots);
    for (std::size_t s = num_slots; s-- > 0;) free_.push_back(s);
  }
  float* acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    // A pool runs at most num_threads chunks at once and we made that many slots.
    sgt::detail::invariant(!free_.empty(),
                           "flash_attention: more concurrent chunks than scratch slots");
    const std::size_t s = free_.back();
    free_.pop_back();
    return base_ + s * slot_floats_;
  }
  void release(float* slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(static_cast<std::size_t>(slot - base_) / slot_floats_);
  }

 private:
  float* base_;
  std::size_t slot_floats_;
  std::mutex mutex_;
  std::vector<std::size_t> free_;
};

// The scratch of one task, carved out of its slot (flash_slot_layout), and the task's width.
struct FlashTaskTiles {
  float* qt;       // [D][bq]: Qt[d][r] = scale * q[i0 + r][d]
  float* st;       // [Bk][bq]: scores, then probabilities, of one key block
  float* acc;      // [nq][D]: unnormalized output rows
  float* v;        // [Bk][D]: v rows of the current key block, packed (kFlashPackV; else null)
  float* row_max;  // [ncols]: running max m per query
  float* row_sum;  // [ncols]: running sum l per query
  float* alpha;    // [ncols]: acc's rescale for this block, exp(m_old - m_new); 1 while acc is 0
  std::size_t bq;  // row stride of Qt and St
  std::size_t head_dim;
  std::size_t nq;     // queries of the task
  std::size_t nqv;    // query vectors in use
  std::size_t ncols;  // columns of St in use (nqv * L); [nq, ncols) are filler

  FlashTaskTiles(float* slot, std::size_t d, std::size_t queries) noexcept {
    const FlashSlotLayout layout = flash_slot_layout(d);
    qt = slot + layout.qt;
    st = slot + layout.st;
    acc = slot + layout.acc;
    v = kFlashPackV ? slot + layout.v : nullptr;
    row_max = slot + layout.row_max;
    row_sum = slot + layout.row_sum;
    alpha = slot + layout.alpha;
    bq = flash_tiles(d).query_block;
    head_dim = d;
    nq = queries;
    nqv = (nq + kFlashLanes - 1) / kFlashLanes;
    ncols = nqv * kFlashLanes;
  }
};

inline constexpr float kFlashMasked = -std::numeric_limits<float>::infinity();

// Packs Qt[d][r] = scale * q[i0 + r][d] (q_rows: the task's first query row, stride q_stride);
// filler columns are 0 (finite scores, masked later). Resets the running max, sum and output.
inline void flash_pack_scaled_q(const FlashTaskTiles& t, const float* q_rows, std::size_t q_stride,
                                float scale) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = kFlashLanes;
  const std::size_t D = t.head_dim, BQ = t.bq;
  // L x L blocks of q go through a register transpose (q rows are num_heads * head_dim floats
  // apart: an element-wise transposing copy is a strided scalar store per element); the query
  // and head_dim tails element by element. The same product scale * q either way.
  const std::size_t full_rows = t.nq / L * L, full_dims = D / L * L;
  const FloatBatch scale_batch(scale);
  for (std::size_t r0 = 0; r0 < full_rows; r0 += L) {
    const void* rows[L];
    for (std::size_t j = 0; j < L; ++j) rows[j] = q_rows + (r0 + j) * q_stride;
    for (std::size_t d0 = 0; d0 < full_dims; d0 += L) {
      simd::PairBatch columns[L];
      simd::load_transposed_words(rows, d0 * sizeof(float), columns);
      for (std::size_t i = 0; i < L; ++i)
        (scale_batch * simd::words_as_float(columns[i])).store_aligned(t.qt + (d0 + i) * BQ + r0);
    }
    for (std::size_t r = r0; r < r0 + L; ++r)
      for (std::size_t d = full_dims; d < D; ++d)
        t.qt[d * BQ + r] = scale * q_rows[r * q_stride + d];
  }
  for (std::size_t r = full_rows; r < t.ncols; ++r) {
    if (r < t.nq) {
      const float* q_r = q_rows + r * q_stride;
      for (std::size_t d = 0; d < D; ++d) t.qt[d * BQ + r] = scale * q_r[d];
    } else {
      for (std::size_t d = 0; d < D; ++d) t.qt[d * BQ + r] = 0.0f;
    }
  }
  std::fill(t.row_max, t.row_max + t.ncols, kFlashMasked);
  std::fill(t.row_sum, t.row_sum + t.ncols, 0.0f);
  std::fill(t.acc, t.acc + t.nq * D, 0.0f);
}

// s = (scale * q) k^T for the nk keys (k_rows, stride k_stride) x ncols queries of one block.
inline void flash_scores_block(const FlashTaskTiles& t, const float* k_rows, std::size_t k_stride,
                               std::size_t nk) noexcept {
  constexpr std::size_t L = kFlashLanes;
  for (std::size_t c0 = 0; c0 < t.nqv; c0 += kFlashMaxVectors) {
    flash_with_count<kFlashMaxVectors>(
        std::min<std::size_t>(kFlashMaxVectors, t.nqv - c0), [&](auto g) {
          flash_qk_block<decltype(g)::value>(t.qt + c0 * L, t.bq, k_rows, k_stride, nk, t.head_dim,
                                             t.st + c0 * L, t.bq);
        });
  }
}

// Logit soft-capping of the block's scores, s = cap * tanh(s / cap), before the mask: vertical
// SIMD over the nk x ncols tile (filler columns included: finite, masked later), so the cap costs
// one vector tanh per score and never a score row.
inline void flash_softcap_block(const FlashTaskTiles& t, std::size_t nk, float cap) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = kFlashLanes;
  const FloatBatch c(cap);
  for (std::size_t jj = 0; jj < nk; ++jj) {
    float* row = t.st + jj * t.bq;
    for (std::size_t i = 0; i < t.ncols; i += L)
      (c * simd::tanh(FloatBatch::load_aligned(row + i) / c)).store_aligned(row + i);
  }
}

// Mask of the block of keys [j0, j0 + nk) for the task's queries [i0, i0 + nq): key j is visible
// to local query columns [lo, hi); everything else becomes -inf.
inline void flash_mask_block(const FlashTaskTiles& t, const AttentionOptions& options,
                             const std::uint8_t* mask_row, std::size_t i0, std::size_t j0,
                             std::size_t nk) noexcept {
  const std::size_t nq = t.nq;
  for (std::size_t jj = 0; jj < nk; ++jj) {
    const std::size_t j = j0 + jj;
    float* st_row = t.st + jj * t.bq;
    std::size_t lo = 0, hi = nq;
    if (mask_row && mask_row[j] == 0) {
      hi = 0;
    } else {
      if (options.causal && j > i0) lo = std::min(nq, j - i0);  // queries i >= j
      if (options.sliding_window != 0) {                        // queries i < j + W
        const std::size_t end = j + options.sliding_window;
        hi = end > i0 ? std::min(nq, end - i0) : 0;
      }
      lo = std::min(lo, hi);
    }
    std::fill(st_row, st_row + lo, kFlashMasked);
    std::fill(st_row + hi, st_row + t.ncols, kFlashMasked);
  }
}

// Online softmax over one block of nk keys, L queries at a time: new running max, rescale factor,
// probabilities in place of the scores, new running sum; then the output rows are rescaled.
inline void flash_online_softmax_block(const FlashTaskTiles& t, std::size_t nk) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = kFlashLanes;
  const std::size_t BQ = t.bq, D = t.head_dim;
  float* st = t.st;
  for (std::size_t c = 0; c < t.ncols; c += L) {
    FloatBatch block_max(kFlashMasked);
    for (std::size_t jj = 0; jj < nk; ++jj)
      block_max = simd::max(block_max, FloatBatch::load_aligned(st + jj * BQ + c));
    const FloatBatch old_max = FloatBatch::load_aligned(t.row_max + c);
    const FloatBatch new_max = simd::max(old_max, block_max);
    // A query that has seen no key yet keeps max -inf; subtract 0 instead so that exp gets
    // -inf - 0 = -inf (-> 0), not -inf - -inf = NaN.
    const FloatBatch ref =
        simd::select(new_max == FloatBatch(kFlashMasked), FloatBatch(0.0f), new_max);
    const FloatBatch a = simd::exp(old_max - ref);
    FloatBatch sum(0.0f);
    for (std::size_t jj = 0; jj < nk; ++jj) {
      const FloatBatch p = simd::exp(FloatBatch::load_aligned(st + jj * BQ + c) - ref);
      p.store_aligned(st + jj * BQ + c);
      sum += p;
    }
    simd::multiply_add(FloatBatch::load_aligned(t.row_sum + c), a, sum)
        .store_aligned(t.row_sum + c);
    new_max.store_aligned(t.row_max + c);
    // A row that had seen no key has acc = +0, which alpha (0) would leave +0: its rescale is
    // marked as the no-op it is, so the first block of every row skips it too.
    simd::select(old_max == FloatBatch(kFlashMasked), FloatBatch(1.0f), a)
        .store_aligned(t.alpha + c);
  }
  for (std::size_t r = 0; r < t.nq; ++r) {
    // alpha == 1 once a row's max has settled: most blocks of a long row skip this.
    if (t.alpha[r] == 1.0f) continue;
    float* acc_r = t.acc + r * D;
    for (std::size_t d = 0; d < D; ++d) acc_r[d] *= t.alpha[r];
  }
}

// acc += p v for `num_keys` consecutive keys: p_rows are their rows of St, v_rows their v rows
// (stride v_stride).
inline void flash_accumulate_pv(const FlashTaskTiles& t, const float* p_rows, const float* v_rows,
                                std::size_t v_stride, std::size_t num_keys) noexcept {
  constexpr std::size_t L = kFlashLanes;
  const std::size_t BQ = t.bq, D = t.head_dim, nq = t.nq;
  const std::size_t full_vectors = D / L;
  for (std::size_t c0 = 0; c0 < full_vectors; c0 += kFlashMaxVectors) {
    flash_with_count<kFlashMaxVectors>(
        std::min<std::size_t>(kFlashMaxVectors, full_vectors - c0), [&](auto cv) {
          flash_pv_block<decltype(cv)::value>(p_rows, BQ, v_rows + c0 * L, v_stride, num_keys, nq,
                                              t.acc + c0 * L, D);
        });
  }
  if (full_vectors * L == D) return;
  for (std::size_t r = 0; r < nq; ++r) {  // head_dim % L tail
    float* acc_r = t.acc + r * D;
    for (std::size_t jj = 0; jj < num_keys; ++jj) {
      const float p = p_rows[jj * BQ + r];
      const float* v_j = v_rows + jj * v_stride;
      for (std::size_t d = full_vectors * L; d < D; ++d) acc_r[d] += p * v_j[d];
    }
  }
}

// Copies the `count` v rows at v_rows (stride v_stride) to rows [first, first + count) of the
// packed tile t.v (stride head_dim).
inline void flash_pack_v_rows(const FlashTaskTiles& t, const float* v_rows, std::size_t v_stride,
                              std::size_t first, std::size_t count) noexcept {
  const std::size_t D = t.head_dim;
  for (std::size_t jj = 0; jj < count; ++jj)
    std::memcpy(t.v + (first + jj) * D, v_rows + jj * v_stride, D * sizeof(float));
}

// acc += p v over the block of nk keys whose v rows start at v_block, over the runs of real keys:
// a padded key's p is exactly 0, but skipping it keeps whatever its v holds (a NaN from a garbage
// pad embedding, say) out of 0 * v, and makes padding free. Splitting the j loop into runs does
// not change the order of the additions into any acc element. mask_block: the block's entries of
// the attention mask, or null.
inline void flash_accumulate_pv_block(const FlashTaskTiles& t, const float* v_block,
                                      std::size_t v_stride, const std::uint8_t* mask_block,
                                      std::size_t nk) noexcept {
  auto run = [&](std::size_t jb, std::size_t je) {
    if constexpr (kFlashPackV) {
      flash_pack_v_rows(t, v_block + jb * v_stride, v_stride, jb, je - jb);
      flash_accumulate_pv(t, t.st + jb * t.bq, t.v + jb * t.head_dim, t.head_dim, je - jb);
    } else {
      flash_accumulate_pv(t, t.st + jb * t.bq, v_block + jb * v_stride, v_stride, je - jb);
    }
  };
  if (!mask_block) {
    run(0, nk);
    return;
  }
  for (std::size_t jj = 0; jj < nk;) {
    while (jj < nk && mask_block[jj] == 0) ++jj;
    const std::size_t run_begin = jj;
    while (jj < nk && mask_block[jj] != 0) ++jj;
    if (jj > run_begin) run(run_begin, jj);
  }
}

// out row r = acc row r / l (out_rows: the task's first output row, stride out_stride).
inline void flash_write_rows(const FlashTaskTiles& t, float* out_rows,
                             std::size_t out_stride) noexcept {
  const std::size_t D = t.head_dim;
  for (std::size_t r = 0; r < t.nq; ++r) {
    float* out_r = out_rows + r * out_stride;
    const float* acc_r = t.acc + r * D;
    // l == 0 exactly when the row saw no key (a seen key contributes exp(0) = 1 at its row's
    // max). A NaN l (NaN in q or k) must come out as NaN, not as a silent 0: hence != 0, not > 0.
    if (t.row_sum[r] != 0.0f) {
      const float inv_sum = 1.0f / t.row_sum[r];
      for (std::size_t d = 0; d < D; ++d) out_r[d] = acc_r[d] * inv_sum;
    } else {
      std::fill(out_r, out_r + D, 0.0f);  // saw no key: 0 by contract
    }
  }
}

// One task: batch row b, query head h, queries [i0, i0 + nq). `slot` is flash_slot_layout floats.
inline void flash_attention_task(const AttentionShape& shape, const AttentionOptions& options,
                                 const float* q, const float* k, const float* v,
                                 const std::uint8_t* attention_mask, float* out, std::size_t b,
                                 std::size_t h, std::size_t i0, std::size_t nq, float* slot) {
  const std::size_t S = shape.seq_len, D = shape.head_dim;
  const std::size_t q_row = shape.num_heads * D, kv_row = shape.num_kv_heads * D;
  const std::size_t kv_head = h / (shape.num_heads / shape.num_kv_heads);
  const std::size_t key_block = flash_tiles(D).key_block;
  const FlashTaskTiles tiles(slot, D, nq);

  flash_pack_scaled_q(tiles, q + (b * S + i0) * q_row + h * D, q_row, options.scale);

  const float* k_head = k + b * S * kv_row + kv_head * D;
  const float* v_head = v + b * S * kv_row + kv_head * D;
  const std::uint8_t* mask_row = attention_mask ? attention_mask + b * S : nullptr;

  // Keys any query of [i0, i0 + nq) can see, before padding: see the picture at the top.
  const std::size_t last_i = i0 + nq - 1;
  const std::size_t keys_end = options.causal ? last_i + 1 : S;
  const std::size_t keys_begin = visible_key_span(options, S, i0).begin;

  for (std::size_t j0 = keys_begin; j0 < keys_end; j0 += key_block) {
    const std::size_t nk = std::min(key_block, keys_end - j0);
    if (mask_row &&
        std::all_of(mask_row + j0, mask_row + j0 + nk, [](std::uint8_t m) { return m == 0; }))
      continue;  // all padding: contributes nothing to anyone
    flash_scores_block(tiles, k_head + j0 * kv_row, kv_row, nk);
    if (options.logit_softcap != 0.0f) flash_softcap_block(tiles, nk, options.logit_softcap);
    flash_mask_block(tiles, options, mask_row, i0, j0, nk);
    flash_online_softmax_block(tiles, nk);
    flash_accumulate_pv_block(tiles, v_head + j0 * kv_row, kv_row,
                              mask_row ? mask_row + j0 : nullptr, nk);
  }

  flash_write_rows(tiles, out + (b * S + i0) * q_row + h * D, q_row);
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Bytes of scratch flash_attention allocates for a call with this shape on num_threads threads
// (a null pool is 1 thread): O(tile x threads), independent of seq_len.
inline std::size_t flash_attention_scratch_bytes(const AttentionShape& shape,
                                                 std::size_t num_threads) noexcept {
  const std::size_t slots = detail::flash_num_slots(shape, num_threads);
  // + 16 floats to align the buffer's start to 64 bytes.
  return (slots * detail::flash_slot_layout(shape.head_dim).floats + 16) * sizeof(float);
}

inline void flash_attention(const AttentionShape& shape, const AttentionOptions& options,
                            TensorView<const float> q, TensorView<const float> k,
                            TensorView<const float> v, const std::uint8_t* attention_mask,
                            TensorView<float> out, ThreadPool* pool = nullptr) {
  detail::check_attention_args("flash_attention", shape, options, q, k, v, out);
  if (shape.batch == 0 || shape.seq_len == 0) return;
  const std::size_t bq = detail::flash_tiles(shape.head_dim).query_block;
  const std::size_t num_q_blocks = (shape.seq_len + bq - 1) / bq;
  const std::size_t heads = shape.batch * shape.num_heads;
  const std::size_t num_tasks = heads * num_q_blocks;

  auto run_tasks = [&](std::size_t task_begin, std::size_t task_end, float* slot) {
    for (std::size_t task = task_begin; task < task_end; ++task) {
      // Heaviest first: the last query block sees the most keys under causal masking.
      const std::size_t q_block = num_q_blocks - 1 - task / heads;
      const std::size_t b = task % heads / shape.num_heads, h = task % shape.num_heads;
      const std::size_t i0 = q_block * bq;
      detail::flash_attention_task(shape, options, q.data(), k.data(), v.data(), attention_mask,
                                   out.data(), b, h, i0, std::min(bq, shape.seq_len - i0), slot);
    }
  };

  // Every head_dim up to 256: each running chunk keeps its tile scratch on its own thread's
  // stack (50 or 66 KiB), so the call allocates nothing -- it runs once per layer.
  const std::size_t slot_floats = detail::flash_slot_layout(shape.head_dim).floats;
  if (slot_floats <= detail::kFlashStackSlotFloats) {
    parallel_for(pool, num_tasks, 1, [&](std::size_t task_begin, std::size_t task_end) {
      alignas(64) float slot[detail::kFlashStackSlotFloats];
      run_tasks(task_begin, task_end, slot);
    });
    return;
  }

  // Wider heads: one heap buffer per call, a slot of tile scratch per thread.
  const std::size_t num_threads = pool ? pool->num_threads() : 1;
  const std::size_t num_slots = detail::flash_num_slots(shape, num_threads);
  std::vector<float> scratch(flash_attention_scratch_bytes(shape, num_threads) / sizeof(float));
  float* base = scratch.data();
  base += (64 - reinterpret_cast<std::uintptr_t>(base) % 64) % 64 / sizeof(float);
  detail::FlashSlots slots(base, slot_floats, num_slots);

  parallel_for(pool, num_tasks, 1, [&](std::size_t task_begin, std::size_t task_end) {
    float* slot = slots.acquire();
    struct Release {
      detail::FlashSlots& slots;
      float* slot;
      ~Release() { slots.release(slot); }
    } release{slots, slot};
    run_tasks(task_begin, task_end, slot);
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
