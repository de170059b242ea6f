// Counts heap allocations: replaces the global operator new / delete of the program that includes
// it, and allocations_during(f) reports how many allocations f made (on any thread) and the
// largest one. releases_during(f) reports what f gave back through sized operator delete (what
// std::allocator calls under GCC): how many blocks of at least `min_bytes` and how many of those
// still held a non-zero byte (memory that was not wiped). Replacement allocation functions may not be inline, so include this header from
// exactly one translation unit per test program (its test_*.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <new>

namespace sgt_test {
namespace detail {
inline std::atomic<bool> g_counting{false};
inline std::atomic<long> g_allocations{0};
inline std::atomic<std::size_t> g_largest_allocation{0};
inline std::atomic<bool> g_inspecting_releases{false};
inline std::atomic<std::size_t> g_release_min_bytes{0};
inline std::atomic<long> g_releases{0};
inline std::atomic<long> g_dirty_releases{0};

inline void inspect_release(const void* p, std::size_t n) {
  if (!g_inspecting_releases.load(std::memory_order_relaxed) || p == nullptr ||
      n < g_release_min_bytes.load(std::memory_order_relaxed))
    return;
  g_releases.fetch_add(1, std::memory_order_relaxed);
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != 0) {
      g_dirty_releases.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

inline void count_allocation(std::size_t n) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  std::size_t largest = g_largest_allocation.load(std::memory_order_relaxed);
  while (n > largest && !g_largest_allocation.compare_exchange_weak(largest, n)) {
  }
}
}  // namespace detail

struct AllocationCount {
  long count = 0;           // calls of any global operator new
  std::size_t largest = 0;  // bytes of the largest of them
};

inline AllocationCount allocations_during(const std::function<void()>& f) {
  detail::g_allocations = 0;
  detail::g_largest_allocation = 0;
  detail::g_counting = true;
  f();
  detail::g_counting = false;
  return {detail::g_allocations.load(), detail::g_largest_allocation.load()};
}

struct ReleaseCount {
  long blocks = 0;        // sized deletes of at least min_bytes
  long not_wiped = 0;     // of those, blocks that still held a non-zero byte
};

inline ReleaseCount releases_during(std::size_t min_bytes, const std::function<void()>& f) {
  detail::g_releases = 0;
  detail::g_dirty_releases = 0;
  detail::g_release_min_bytes = min_bytes;
  detail::g_inspecting_releases = true;
  f();
  detail::g_inspecting_releases = false;
  return {detail::g_releases.load(), detail::g_dirty_releases.load()};
}

}  // namespace sgt_test

// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  sgt_test::detail::count_allocation(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t n) noexcept {
  sgt_test::detail::inspect_release(p, n);
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void* operator new(std::size_t n, std::align_val_t a) {
  sgt_test::detail::count_allocation(n);
  const std::size_t align = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(align, (n + align - 1) / align * align)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return operator new(n, a);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t n, std::align_val_t) noexcept {
  sgt_test::detail::inspect_release(p, n);
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

#pragma GCC diagnostic pop
