// The residual connection h += f(h): an elementwise add kept as its own kernel so the decoder
// layer reads as the formula. Memory-bound; vectorized by the compiler.
#pragma once

#include <cstddef>
#include <string>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {
namespace detail {
SGT_ISA_BEGIN

inline void check_add_in_place(const char* op, const TensorView<float>& acc,
                               const TensorView<const float>& delta) {
  if (acc.size() != delta.size())
    throw Error(std::string(op) + ": delta " + delta.shape_string() +
                " must have as many elements as acc " + acc.shape_string() + " (expected " +
                std::to_string(acc.size()) + ", got " + std::to_string(delta.size()) + ")");
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

inline void add_in_place_reference(TensorView<float> acc, TensorView<const float> delta,
                                   ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_add_in_place("add_in_place_reference", acc, delta);
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += delta[i];
}

inline void add_in_place(TensorView<float> acc, TensorView<const float> delta,
                         ThreadPool* pool = nullptr) {
  detail::check_add_in_place("add_in_place", acc, delta);
  float* a = acc.data();
  const float* d = delta.data();
  parallel_for(pool, acc.size(), 1 << 14, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) a[i] += d[i];
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
