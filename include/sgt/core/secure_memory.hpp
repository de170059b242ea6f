// Wiping memory that held a user's clean prompt.
//
// The clean embeddings, the activations computed from them, the noise and the protected output
// together reveal the prompt: the Workspace and the TransformResult keep them in WipedVector
// buffers, which are overwritten with zeros before their memory goes back to the allocator (on
// destruction, and when a growing buffer moves). A plain memset before a free is a dead store the
// compiler may remove; secure_wipe's compiler barrier makes the zeros a write it must keep.
// What this does not cover (docs/reliability.md): copies the caller makes, pages the OS swapped
// out, and registers or stack frames of the kernels.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace sgt {

// Sets n bytes at p to zero, in a way the optimizer cannot elide.
inline void secure_wipe(void* p, std::size_t n) noexcept {
  if (p == nullptr || n == 0) return;
  std::memset(p, 0, n);
#if defined(__GNUC__) || defined(__clang__)
  // The asm "reads" p and clobbers memory: the zeros must be in memory before it.
  __asm__ __volatile__("" : : "r"(p) : "memory");
#else
  volatile unsigned char* v = static_cast<volatile unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) v[i] = 0;
#endif
}

// std::allocator that wipes every block before releasing it.
template <class T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    secure_wipe(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const WipingAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const WipingAllocator<U>&) const noexcept {
    return false;
  }
};

// A std::vector whose memory is wiped when released.
template <class T>
using WipedVector = std::vector<T, WipingAllocator<T>>;

}  // namespace sgt
