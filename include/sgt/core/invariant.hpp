// sgt::detail::invariant: the channel for programming errors, as sgt::Error is the one for errors
// a caller can provoke.
//
// An invariant is something the library itself guarantees -- a pool never runs more chunks than
// the scratch slots made for it, a K block is never shorter than its peeled head -- so breaking
// one is a bug in sgt, not a bad argument, and must not be reported (or caught) as sgt::Error.
// It is checked in every build and aborts with the message: the call sites are per work chunk or
// per tile, never per element, so the branch costs nothing measurable, and a check that depended
// on NDEBUG would give this inline function two definitions in a program whose translation units
// disagree on NDEBUG (an ODR violation a header-only library cannot rule out).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace sgt::detail {

inline void invariant(bool holds, const char* what) noexcept {
  if (!holds) {
    std::fprintf(stderr, "sgt: internal invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace sgt::detail
