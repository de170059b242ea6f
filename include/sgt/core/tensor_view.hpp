// Non-owning, contiguous, row-major tensor views.
//
// TensorView<T> is what every kernel takes: a pointer and a shape of up to four dimensions, no
// strides. Contiguity is deliberate: kernels compute their own offsets (a head's slice of a
// [tokens, heads * head_dim] activation, say) and the view stays a plain pair that costs nothing
// to pass. AnyTensorView is the dtype-erased form for stored weights, whose element type is only
// known at load time; `as<T>()` turns it back into a typed view after checking the dtype. A
// weight may also be in feature blocks (core/feature_blocks.hpp): only the matmul kernels read
// that layout, and `as<T>()` refuses it.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/feature_blocks.hpp"

namespace sgt {

inline constexpr std::size_t kMaxRank = 4;

using Shape = std::array<std::size_t, kMaxRank>;

// "[2, 3, 4]": the one spelling of a shape in messages, for the sizes in [begin, end).
template <class It>
std::string shape_to_string(It begin, It end) {
  std::string s = "[";
  for (It it = begin; it != end; ++it) s += (it == begin ? "" : ", ") + std::to_string(*it);
  return s + "]";
}

// Any sequence of sizes (a std::vector<std::uint64_t> from a file, say).
template <class Dims>
std::string shape_to_string(const Dims& dims) {
  return shape_to_string(dims.begin(), dims.end());
}

// The first `rank` sizes of a view's shape.
inline std::string shape_to_string(const Shape& shape, std::size_t rank) {
  return shape_to_string(shape.begin(), shape.begin() + static_cast<std::ptrdiff_t>(rank));
}

template <class T>
class TensorView {
 public:
  using element_type = T;

  TensorView() = default;
  TensorView(T* data, std::initializer_list<std::size_t> shape) : data_(data) {
    if (shape.size() > kMaxRank) throw Error("tensor rank above " + std::to_string(kMaxRank));
    rank_ = shape.size();
    std::size_t i = 0;
    for (std::size_t d : shape) shape_[i++] = d;
  }
  TensorView(T* data, const Shape& shape, std::size_t rank)
      : data_(data), shape_(shape), rank_(rank) {
    if (rank > kMaxRank) throw Error("tensor rank above " + std::to_string(kMaxRank));
  }
  // A view of non-const elements converts to a view of const elements.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()), rank_(other.rank()) {}

  T* data() const noexcept { return data_; }
  std::size_t rank() const noexcept { return rank_; }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t dim(std::size_t i) const noexcept { return i < rank_ ? shape_[i] : 1; }
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) n *= shape_[i];
    return n;
  }
  bool empty() const noexcept { return size() == 0; }

  // Matrix interpretation: all leading dimensions flattened into rows, the last one is columns.
  std::size_t cols() const noexcept { return rank_ == 0 ? 1 : shape_[rank_ - 1]; }
  std::size_t rows() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i + 1 < rank_; ++i) n *= shape_[i];
    return n;
  }
  T* row(std::size_t r) const noexcept { return data_ + r * cols(); }

  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T& operator()(std::size_t r, std::size_t c) const noexcept { return data_[r * cols() + c]; }

  std::string shape_string() const { return shape_to_string(shape_, rank_); }

 private:
  T* data_ = nullptr;
  Shape shape_{};
  std::size_t rank_ = 0;
};

// A read-only view of stored data whose element type is a runtime DType.
class AnyTensorView {
 public:
  AnyTensorView() = default;
  AnyTensorView(const void* data, DType dtype, const Shape& shape, std::size_t rank,
                WeightLayout layout = WeightLayout::RowMajor)
      : data_(data), dtype_(dtype), shape_(shape), rank_(rank), layout_(layout) {}
  template <class T>
  AnyTensorView(TensorView<const T> v)  // NOLINT(google-explicit-constructor)
      : data_(v.data()), dtype_(dtype_of_v<T>), shape_(v.shape()), rank_(v.rank()) {}

  const void* data() const noexcept { return data_; }
  DType dtype() const noexcept { return dtype_; }
  // The shape is the logical [N, K] in either layout.
  WeightLayout layout() const noexcept { return layout_; }
  bool row_major() const noexcept { return layout_ == WeightLayout::RowMajor; }
  std::size_t rank() const noexcept { return rank_; }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t dim(std::size_t i) const noexcept { return i < rank_ ? shape_[i] : 1; }
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) n *= shape_[i];
    return n;
  }
  // Bytes the data spans (feature blocks include their padding; rank 2 there).
  std::size_t byte_size() const noexcept {
    std::size_t elements = size();
    if (!row_major() && !feature_blocks_elements(dim(0), dim(1), dtype_, elements)) return 0;
    return elements * dtype_size(dtype_);
  }
  std::string shape_string() const { return shape_to_string(shape_, rank_); }

  template <class T>
  TensorView<const T> as() const {
    if (!row_major()) throw Error("tensor " + shape_string() + " is stored in feature blocks");
    if (dtype_of_v<T> != dtype_)
      throw Error(std::string("tensor holds ") + dtype_name(dtype_) + ", not " +
                  dtype_name(dtype_of_v<T>));
    return TensorView<const T>(static_cast<const T*>(data_), shape_, rank_);
  }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_{};
  std::size_t rank_ = 0;
  WeightLayout layout_ = WeightLayout::RowMajor;
};

}  // namespace sgt
