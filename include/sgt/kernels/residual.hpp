// The residual connection h += f(h): an elementwise add kept as its own kernel so the decoder
// layer reads as the formula. Memory-bound; vectorized by the compiler.
#pragma once

#include <cstddef>

#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

inline void add_in_place_reference(TensorView<float> acc, TensorView<const float> delta,
                                   ThreadPool* pool = nullptr) {
  (void)pool;
  if (acc.size() != delta.size())
    throw Error("residual add: " + acc.shape_string() + " vs " + delta.shape_string());
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += delta[i];
}

inline void add_in_place(TensorView<float> acc, TensorView<const float> delta,
                         ThreadPool* pool = nullptr) {
  if (acc.size() != delta.size())
    throw Error("residual add: " + acc.shape_string() + " vs " + delta.shape_string());
  float* a = acc.data();
  const float* d = delta.data();
  parallel_for(pool, acc.size(), 1 << 14, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) a[i] += d[i];
  });
}

}  // namespace sgt::kernels
