// Element types of stored tensors: F32, BF16, F16.
//
// bfloat16 and float16 are storage types only: every kernel widens them to f32 before doing
// arithmetic. Widening is exact (both are subsets of f32). Narrowing rounds to nearest, ties to
// even, like PyTorch's `tensor.to(torch.bfloat16)` / `.half()`: our writer and the Python tools
// then agree bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>

#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"

namespace sgt {

struct bfloat16 {
  std::uint16_t bits;
};
struct float16 {
  std::uint16_t bits;
};

enum class DType : std::uint8_t { F32, BF16, F16 };

namespace detail {
inline std::uint32_t float_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(std::uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace detail

inline float to_float(float x) noexcept {
  return x;
}
inline float to_float(bfloat16 x) noexcept {
  return detail::bits_float(static_cast<std::uint32_t>(x.bits) << 16);
}
inline float to_float(float16 x) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t exp = (x.bits >> 10) & 0x1fu;
  const std::uint32_t mant = x.bits & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in f32.
    const float mag = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return detail::bits_float(detail::float_bits(mag) | sign);
  }
  if (exp == 31) return detail::bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return detail::bits_float(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

// f32 -> bf16, round to nearest even; NaN stays NaN (quieted), overflow rounds to inf.
inline bfloat16 to_bfloat16(float f) noexcept {
  const std::uint32_t u = detail::float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<std::uint16_t>(rounded >> 16)};
}

// f32 -> f16, round to nearest even, with f16 subnormals, overflow to inf and quiet NaN.
inline float16 to_float16(float f) noexcept {
  std::uint32_t u = detail::float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u) {
    const std::uint16_t nan_bits = static_cast<std::uint16_t>(0x7e00u | ((u >> 13) & 0x3ffu));
    return {static_cast<std::uint16_t>(sign | (u > 0x7f800000u ? nan_bits : 0x7c00u))};
  }
  if (u >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // >= 65520 -> inf
  if (u < 0x38800000u) {
    // Below the smallest normal (2^-14): adding 0.5 puts the value where one f32 ulp is 2^-24,
    // the f16 subnormal step, so the FPU's own round-to-nearest-even does the rounding.
    const float shifted = detail::bits_float(u) + 0.5f;
    return {static_cast<std::uint16_t>(sign | (detail::float_bits(shifted) - 0x3f000000u))};
  }
  const std::uint32_t mant_odd = (u >> 13) & 1u;
  u += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xfffu + mant_odd;
  return {static_cast<std::uint16_t>(sign | (u >> 13))};
}

template <class T>
T from_float(float f) noexcept;
template <>
inline float from_float<float>(float f) noexcept {
  return f;
}
template <>
inline bfloat16 from_float<bfloat16>(float f) noexcept {
  return to_bfloat16(f);
}
template <>
inline float16 from_float<float16>(float f) noexcept {
  return to_float16(f);
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> : std::integral_constant<DType, DType::F32> {};
template <>
struct dtype_of<bfloat16> : std::integral_constant<DType, DType::BF16> {};
template <>
struct dtype_of<float16> : std::integral_constant<DType, DType::F16> {};
template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

constexpr std::size_t dtype_size(DType d) noexcept {
  return d == DType::F32 ? 4 : 2;
}

// Names as they appear in safetensors headers.
inline constexpr EnumName<DType> kDTypeNames[] = {
    {DType::F32, "F32"}, {DType::BF16, "BF16"}, {DType::F16, "F16"}};

constexpr const char* dtype_name(DType d) noexcept {
  return enum_name(kDTypeNames, d);
}

inline std::optional<DType> parse_dtype(std::string_view name) noexcept {
  return enum_from_name(kDTypeNames, name);
}

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the C++ element type of `d`: the one place where a runtime dtype
// becomes a template argument.
template <class F>
decltype(auto) visit_dtype(DType d, F&& f) {
  switch (d) {
    case DType::F32:
      return f(TypeTag<float>{});
    case DType::BF16:
      return f(TypeTag<bfloat16>{});
    case DType::F16:
      return f(TypeTag<float16>{});
  }
  throw Error("unknown dtype");
}

}  // namespace sgt
