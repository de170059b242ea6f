// Test helpers shared by the kernel tests: weights stored in any dtype, random data, widening.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include <sgt/core/dtype.hpp>
#include <sgt/core/tensor_view.hpp>

namespace sgt_test {

using sgt::AnyTensorView;
using sgt::DType;

// A tensor stored in a given dtype, built from f32 values (rounded to nearest even); it owns its
// bytes and hands out AnyTensorViews. values() are the stored values widened back to f32.
struct StoredTensor {
  DType dtype = DType::F32;
  std::vector<float> f32;
  std::vector<std::uint16_t> half_bits;
  sgt::Shape shape{};
  std::size_t rank = 0;

  StoredTensor() = default;
  StoredTensor(DType d, const std::vector<float>& values, std::initializer_list<std::size_t> dims)
      : dtype(d) {
    for (std::size_t v : dims) shape[rank++] = v;
    if (d == DType::F32) {
      f32 = values;
    } else {
      half_bits.resize(values.size());
      for (std::size_t i = 0; i < values.size(); ++i)
        half_bits[i] =
            d == DType::BF16 ? sgt::to_bfloat16(values[i]).bits : sgt::to_float16(values[i]).bits;
    }
  }
  AnyTensorView view() const {
    const void* data = dtype == DType::F32 ? static_cast<const void*>(f32.data())
                                           : static_cast<const void*>(half_bits.data());
    return AnyTensorView(data, dtype, shape, rank);
  }
  std::vector<float> values() const {
    std::vector<float> out(dtype == DType::F32 ? f32.size() : half_bits.size());
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = dtype == DType::F32    ? f32[i]
               : dtype == DType::BF16 ? sgt::to_float(sgt::bfloat16{half_bits[i]})
                                      : sgt::to_float(sgt::float16{half_bits[i]});
    return out;
  }
};

inline std::vector<float> uniform_values(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// The stored values of a view, widened to f32 (empty view: empty vector).
inline std::vector<float> to_f32(const AnyTensorView& v) {
  std::vector<float> out(v.size());
  if (v.data() == nullptr) return out;
  sgt::visit_dtype(v.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = static_cast<const T*>(v.data());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = sgt::to_float(p[i]);
  });
  return out;
}

}  // namespace sgt_test
