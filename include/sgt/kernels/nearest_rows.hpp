// NearestRows: for query vectors x, the nearest row of an embedding table E [V, H] by L2 distance
// and by cosine similarity, and the L2 rank of a given row -- the search behind `sgt audit`
// (audit/recovery_audit.hpp), which asks whether a protected embedding still points at its token.
//
// The search over the whole vocabulary is one matmul, Y = X E^T (kernels/matmul.hpp, threaded,
// E read in place in its stored dtype), followed by a scan of each row of Y:
//   L2:     ||x - e_v||^2 = ||x||^2 - 2 x.e_v + ||e_v||^2; ||x||^2 is the same for every v, so the
//           score is ||e_v||^2 - 2 x.e_v (smaller is nearer);
//   cosine: x.e_v / (|x| |e_v|); |x| > 0 is the same for every v, so the score is x.e_v / |e_v|
//           (larger is nearer), and 0 for a zero row e_v (its cosine is undefined).
// The row norms are computed once, in double, when the search is built.
//
// Ties: the lowest id wins (a strict comparison in increasing v). The L2 rank of a target row o
// is the number of rows that would win against it: #{v : s_v < s_o} + #{v < o : s_v == s_o}, so
// rank 0 means "o is the nearest". tools/check_audit.py re-implements exactly these rules.
//
// Memory: Y is [rows, V] floats. Callers feed at most block_rows() rows at a time, a block sized
// so that Y stays within a budget (a Llama-3 vocabulary of 128256 rows would need 0.5 MiB per
// query row); the caller's scratch is reused from block to block.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"

namespace sgt::kernels {

// What the search found for one query row.
struct NearestRowMatch {
  std::int32_t l2 = 0;        // id of the nearest row by L2 distance
  std::int32_t cosine = 0;    // id of the nearest row by cosine similarity
  std::uint64_t rank_l2 = 0;  // the target's L2 rank (0 = nearest)
};

SGT_ISA_BEGIN
class NearestRows {
 public:
  // Default budget for the score block Y: 16 Mi floats (64 MiB).
  static constexpr std::size_t kDefaultScoreFloats = std::size_t{1} << 24;

  // `table`: [V, H] in F32, BF16 or F16 (it must outlive the search). The norms are computed on
  // `pool` when given.
  // `kernels`: the matmul's instruction set (by default this build's, or the dispatcher's choice).
  explicit NearestRows(const AnyTensorView& table, ThreadPool* pool = nullptr,
                       std::size_t score_floats = kDefaultScoreFloats,
                       const KernelTable& kernels = default_kernel_table())
      : table_(table), kernels_(&kernels) {
    if (table.rank() != 2 || table.dim(0) == 0 || table.dim(1) == 0)
      throw Error("embedding table has shape " + table.shape_string() + ", expected [V, H]");
    if (!table.data()) throw Error("embedding table has no data");
    if (table.dim(0) > std::size_t{INT32_MAX})
      throw Error("embedding table has " + std::to_string(table.dim(0)) +
                  " rows, more than int32 ids can name");
    const std::size_t V = table.dim(0), H = table.dim(1);
    block_rows_ = std::clamp<std::size_t>(score_floats / V, 1, 256);
    sq_norm_.resize(V);
    inv_norm_.resize(V);
    visit_dtype(table.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* e = static_cast<const T*>(table.data());
      parallel_for(pool, V, 1024, [&](std::size_t begin, std::size_t end) {
        for (std::size_t v = begin; v < end; ++v) {
          double s = 0;
          for (std::size_t i = 0; i < H; ++i) {
            const double a = to_float(e[v * H + i]);
            s += a * a;
          }
          sq_norm_[v] = static_cast<float>(s);
          inv_norm_[v] = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.0f;
        }
      });
    });
  }

  std::size_t vocab_size() const noexcept { return table_.dim(0); }
  std::size_t hidden_size() const noexcept { return table_.dim(1); }
  // The most query rows one search() call takes.
  std::size_t block_rows() const noexcept { return block_rows_; }

  // x: [R, H] with R <= block_rows(); targets[R]: ids in [0, V) whose L2 rank is reported;
  // out[R]. `scores` is the caller's scratch for Y and the packed queries (resized here, reused
  // across calls).
  void search(TensorView<const float> x, const std::int64_t* targets, NearestRowMatch* out,
              WipedVector<float>& scores, ThreadPool* pool = nullptr) const {
    const std::size_t V = vocab_size(), H = hidden_size();
    if (x.rank() != 2 || x.dim(1) != H || x.dim(0) > block_rows_)
      throw Error("nearest-row queries have shape " + x.shape_string() + ", expected [R <= " +
                  std::to_string(block_rows_) + ", " + std::to_string(H) + "]");
    const std::size_t R = x.dim(0);
    if (R == 0) return;
    for (std::size_t r = 0; r < R; ++r)
      if (targets[r] < 0 || static_cast<std::uint64_t>(targets[r]) >= V)
        throw Error("nearest-row target " + std::to_string(targets[r]) +
                    " is outside the table [0, " + std::to_string(V) + ")");
    // Y and, after it, the packed queries (kernels/packed_activations.hpp): one wiped buffer.
    scores.resize(R * V + kernels_->packed_activation_floats(R, H));
    KernelContext context;
    context.pool = pool;
    context.precision = Precision::F32;
    kernels_->matmul(context, x, table_, AnyTensorView(), TensorView<float>(scores.data(), {R, V}),
                     scores.data() + R * V);
    parallel_for(pool, R, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) out[r] = scan(scores.data() + r * V, targets[r]);
    });
  }

 private:
  NearestRowMatch scan(const float* y, std::int64_t target) const {
    const std::size_t V = vocab_size();
    const auto o = static_cast<std::size_t>(target);
    const float target_l2 = sq_norm_[o] - 2.0f * y[o];
    NearestRowMatch m;
    float best_l2 = sq_norm_[0] - 2.0f * y[0];
    float best_cos = y[0] * inv_norm_[0];
    std::uint64_t rank = 0;
    for (std::size_t v = 0; v < V; ++v) {
      const float l2 = sq_norm_[v] - 2.0f * y[v];
      const float cos = y[v] * inv_norm_[v];
      if (l2 < best_l2) {
        best_l2 = l2;
        m.l2 = static_cast<std::int32_t>(v);
      }
      if (cos > best_cos) {
        best_cos = cos;
        m.cosine = static_cast<std::int32_t>(v);
      }
      rank += (l2 < target_l2) || (l2 == target_l2 && v < o);
    }
    m.rank_l2 = rank;
    return m;
  }

  AnyTensorView table_;
  const KernelTable* kernels_;
  std::size_t block_rows_ = 1;
  std::vector<float> sq_norm_, inv_norm_;
};

SGT_ISA_END
}  // namespace sgt::kernels
