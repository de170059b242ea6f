// sgt::detail::invariant: the channel for programming errors, as sgt::Error is the one for errors
// a caller can provoke.
//
// An invariant is something the library itself guarantees -- a pool never runs more chunks than
// the scratch slots made for it, a K block is never shorter than its peeled head -- so breaking
// one is a bug in sgt, not a bad argument, and must not be reported (or caught) as sgt::Error.
// Debug builds check it and abort with the message; NDEBUG builds compile it away, like assert,
// without a macro. Arguments must be cheap and free of side effects.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace sgt::detail {

inline void invariant(bool holds, const char* what) noexcept {
#ifdef NDEBUG
  (void)holds;
  (void)what;
#else
  if (!holds) {
    std::fprintf(stderr, "sgt: internal invariant violated: %s\n", what);
    std::abort();
  }
#endif
}

}  // namespace sgt::detail
