// Embedding lookup: out[i, :] = table[ids[i], :], widened to f32; and the embedding scale of
// families that multiply the rows by a constant (scale_embedding_rows).
//
// The table is a stored weight ([vocab, hidden], F32, BF16 or F16, as loaded); the output is the
// f32 activation every later kernel reads. Widening bf16/f16 -> f32 is exact, so the optimized
// kernel and the reference agree bit for bit, and both agree with torch's `nn.Embedding` followed
// by `.float()`.
//
// Every id is checked before a single row is written: a bad id throws sgt::Error at its position
// and leaves `out` untouched, so a caller never sees half a batch of embeddings. The work is pure
// memory traffic (2 or 4 bytes read and 4 written per element); rows are handed to threads in
// chunks of a fixed number of rows, so results do not depend on the thread count (there is no
// arithmetic to reorder anyway).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {
namespace detail {
SGT_ISA_BEGIN

// Shapes and ids, checked once for both implementations. Returns the hidden size.
inline std::size_t check_embedding_args(const AnyTensorView& table, const std::int64_t* ids,
                                        std::size_t count, const TensorView<float>& out) {
  if (table.rank() != 2)
    throw Error("embedding: table must have rank 2 [vocab, hidden], got " + table.shape_string());
  const std::size_t vocab = table.dim(0);
  const std::size_t hidden = table.dim(1);
  if (out.rank() == 0 || out.rows() != count || out.cols() != hidden)
    throw Error("embedding: out " + out.shape_string() + " does not match " +
                std::to_string(count) + " ids of hidden size " + std::to_string(hidden) +
                " (expected [" + std::to_string(count) + ", " + std::to_string(hidden) + "])");
  if (count > 0 && ids == nullptr)
    throw Error("embedding: ids is null, expected " + std::to_string(count) + " ids");
  if (count > 0 && hidden > 0 && (table.data() == nullptr || out.data() == nullptr))
    throw Error("embedding: table and out must have data, got a null pointer");
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t id = ids[i];
    if (id < 0 || static_cast<std::uint64_t>(id) >= vocab)
      throw Error("embedding: token id " + std::to_string(id) +
                  " is out of range for a vocabulary of " + std::to_string(vocab) +
                  " (valid ids: 0.." + (vocab ? std::to_string(vocab - 1) : std::string("none")) +
                  ")")
          .at_position(static_cast<std::int64_t>(i));
  }
  return hidden;
}

inline void widen_row(const float* src, float* dst, std::size_t n) noexcept {
  std::memcpy(dst, src, n * sizeof(float));
}

// bf16/f16 -> f32, one register at a time; the conversion is exact, so the scalar tail gives the
// same bits as the vector body.
template <class T>
inline void widen_row(const T* src, float* dst, std::size_t n) noexcept {
  constexpr std::size_t L = simd::kFloatLanes;
  std::size_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {  // two registers per trip: keeps two loads in flight
    simd::load_as_float(src + j).store_unaligned(dst + j);
    simd::load_as_float(src + j + L).store_unaligned(dst + j + L);
  }
  for (; j + L <= n; j += L) simd::load_as_float(src + j).store_unaligned(dst + j);
  for (; j < n; ++j) dst[j] = to_float(src[j]);
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// table [V, H] (any stored dtype), ids[count] in [0, V), out [count, H] (any rank whose leading
// dimensions flatten to count rows, e.g. [B, S, H] for count = B * S).
inline void embedding_lookup(const AnyTensorView& table, const std::int64_t* ids, std::size_t count,
                             TensorView<float> out, ThreadPool* pool = nullptr) {
  const std::size_t hidden = detail::check_embedding_args(table, ids, count, out);
  if (count == 0 || hidden == 0) return;
  // ~64 KiB of output per chunk: large enough to amortize the hand-off, small enough that a few
  // hundred ids still spread over every thread.
  const std::size_t grain = std::max<std::size_t>(1, 16384 / hidden);
  visit_dtype(table.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* base = static_cast<const T*>(table.data());
    parallel_for(pool, count, grain, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        detail::widen_row(base + static_cast<std::size_t>(ids[i]) * hidden, out.row(i), hidden);
    });
  });
}

// rows *= scale, with the rounding of transformers' scaled embedding modules (Gemma's
// `E[ids] * embed_scale.to(E.dtype)`): the scale is rounded to the table's dtype, the product is
// computed in f32 and rounded back to the table's dtype, then widened again. `rows` holds rows of
// a `table_dtype` table, widened (what embedding_lookup wrote); a BF16 or F16 product of two such
// values is exact in f32, so the one rounding is torch's. No arithmetic is reordered, so the
// result does not depend on the thread count, and there is no separate reference.
inline void scale_embedding_rows(DType table_dtype, float scale, TensorView<float> rows,
                                 ThreadPool* pool = nullptr) {
  if (rows.size() == 0) return;
  if (rows.data() == nullptr) throw Error("scale_embedding_rows: rows have no data");
  visit_dtype(table_dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const float s = to_float(from_float<T>(scale));
    float* x = rows.data();
    parallel_for(pool, rows.size(), 16384, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) x[i] = to_float(from_float<T>(x[i] * s));
    });
  });
}

// The plain version: one element at a time through sgt::to_float.
inline void embedding_lookup_reference(const AnyTensorView& table, const std::int64_t* ids,
                                       std::size_t count, TensorView<float> out,
                                       ThreadPool* pool = nullptr) {
  (void)pool;
  const std::size_t hidden = detail::check_embedding_args(table, ids, count, out);
  visit_dtype(table.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* base = static_cast<const T*>(table.data());
    for (std::size_t i = 0; i < count; ++i) {
      const T* src = base + static_cast<std::size_t>(ids[i]) * hidden;
      for (std::size_t j = 0; j < hidden; ++j) out(i, j) = to_float(src[j]);
    }
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
