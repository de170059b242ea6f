// The one rule for "may this output alias that input", shared by every kernel's argument checks.
//
// Two byte ranges overlap when both are non-empty and each starts before the other ends. A kernel
// that reads an element only before writing the same element (rms_norm, say) may allow exact
// aliasing (out == x) and refuse every other overlap; one that reads x after writing parts of
// out (matmul) refuses any overlap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sgt::kernels::detail {

inline bool ranges_overlap(const void* a, std::size_t a_bytes, const void* b,
                           std::size_t b_bytes) noexcept {
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

}  // namespace sgt::kernels::detail
