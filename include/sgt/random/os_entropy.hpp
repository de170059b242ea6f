// fill_os_entropy: bytes from the operating system's cryptographic random generator.
//
// Linux: the getrandom(2) system call (flags 0: blocks until the kernel pool is initialized, then
// never blocks), called through syscall() so that any libc works. macOS and the BSDs:
// getentropy(3), at most 256 bytes per call. Anything else: no source is known, and every call
// throws.
//
// Fail closed: if the OS gives no entropy -- the call is missing (ENOSYS), refused (seccomp:
// EPERM), or fails in any other way -- fill_os_entropy throws sgt::Error. There is no fallback to
// time, addresses or any other predictable seed. Interrupted calls (EINTR) are retried, short
// reads continued; a call that returns 0 bytes is an error rather than a reason to spin.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "sgt/core/error.hpp"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(__APPLE__)
#include <sys/random.h>  // getentropy
#include <unistd.h>
#elif defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <unistd.h>  // getentropy
#endif

namespace sgt {

namespace detail {

// getrandom(2)'s contract: fills up to `len` bytes, returns how many, or -1 with errno set.
using EntropySource = long (*)(void* buf, std::size_t len);

inline long os_entropy_source(void* buf, std::size_t len) {
#if defined(__linux__) && defined(SYS_getrandom)
  return syscall(SYS_getrandom, buf, len, 0);
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
  if (len > 256) len = 256;  // getentropy's limit per call
  return getentropy(buf, len) == 0 ? static_cast<long>(len) : -1;
#else
  (void)buf;
  (void)len;
  errno = ENOSYS;
  return -1;
#endif
}

// The loop of fill_os_entropy over any source with getrandom's contract (tests inject failures).
inline void fill_entropy_from(EntropySource source, void* out, std::size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    errno = 0;
    const long got = source(p, n);
    if (got < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      std::memset(out, 0, static_cast<std::size_t>(p - static_cast<unsigned char*>(out)));
      throw Error(std::string("the operating system gave no entropy (getrandom: ") +
                  (err ? std::strerror(err) : "unknown error") +
                  "); refusing to fall back to a predictable seed");
    }
    if (got == 0 || static_cast<std::size_t>(got) > n) {
      std::memset(out, 0, static_cast<std::size_t>(p - static_cast<unsigned char*>(out)));
      throw Error("the operating system's entropy source returned " + std::to_string(got) +
                  " bytes for a request of " + std::to_string(n) +
                  "; refusing to fall back to a predictable seed");
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

}  // namespace detail

// Fills out[0, n) with cryptographically secure random bytes from the OS, or throws sgt::Error.
inline void fill_os_entropy(void* out, std::size_t n) {
  detail::fill_entropy_from(&detail::os_entropy_source, out, n);
}

}  // namespace sgt
