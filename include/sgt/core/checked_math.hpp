// Overflow-checked size arithmetic: sizes that come from files and callers are multiplied here,
// never with a bare `*`, so an absurd shape is an error that names it rather than a wrapped size.
#pragma once

#include <cstdint>
#include <limits>

namespace sgt {

// out = a * b; false (out untouched) when the product does not fit in T.
template <class T>
bool checked_mul(T a, T b, T& out) noexcept {
  static_assert(std::numeric_limits<T>::is_integer && !std::numeric_limits<T>::is_signed,
                "checked_mul takes unsigned sizes");
  if (a != 0 && b > std::numeric_limits<T>::max() / a) return false;
  out = a * b;
  return true;
}

// out = a + b; false (out untouched) when the sum does not fit in T.
template <class T>
bool checked_add(T a, T b, T& out) noexcept {
  static_assert(std::numeric_limits<T>::is_integer && !std::numeric_limits<T>::is_signed,
                "checked_add takes unsigned sizes");
  if (b > std::numeric_limits<T>::max() - a) return false;
  out = a + b;
  return true;
}

}  // namespace sgt
