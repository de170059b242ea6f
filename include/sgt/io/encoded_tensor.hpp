// A dense row-major tensor as an output file stores it: a dtype, a shape and the little-endian
// bytes of its values. encode_tensor() narrows f32 values with core/dtype.hpp's rounding (round to
// nearest even, as torch's `.to(torch.bfloat16)` / `.half()`), so every output format holds the
// same numbers for the same --output-dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"

namespace sgt {

struct EncodedTensor {
  DType dtype = DType::F32;
  std::vector<std::uint64_t> shape;
  std::vector<unsigned char> bytes;  // element count * dtype_size(dtype)

  std::uint64_t numel() const noexcept {
    std::uint64_t n = 1;
    for (const std::uint64_t d : shape) n *= d;
    return n;
  }
};

// The element count of `shape`, refusing one whose byte count in `dtype` would overflow.
inline std::size_t checked_element_count(const std::vector<std::uint64_t>& shape, DType dtype) {
  std::size_t n = 1, bytes = 0;
  for (const std::uint64_t d : shape)
    if (d > SIZE_MAX || !checked_mul<std::size_t>(n, static_cast<std::size_t>(d), n))
      throw Error("element count of the shape overflows");
  if (!checked_mul<std::size_t>(n, dtype_size(dtype), bytes))
    throw Error("byte count of the shape overflows");
  return n;
}

// `values` holds the shape's element count of f32 values (may be null when that count is 0).
inline EncodedTensor encode_tensor(DType dtype, std::vector<std::uint64_t> shape,
                                   const float* values) {
  const std::size_t count = checked_element_count(shape, dtype);
  if (count != 0 && values == nullptr) throw Error("null data for a non-empty tensor");
  EncodedTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(count * dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (std::size_t i = 0; i < count; ++i) {
      const T v = from_float<T>(values[i]);
      std::memcpy(t.bytes.data() + i * sizeof(T), &v, sizeof(T));  // little-endian hosts only
    }
  });
  return t;
}

}  // namespace sgt
