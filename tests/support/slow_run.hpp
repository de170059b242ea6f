// Whether this test program runs many times slower than an optimized native build: under a
// sanitizer (ASan, TSan) or an emulator (qemu, SGT_TEST_EMULATED, set by tests/CMakeLists.txt when
// tests run through CMAKE_CROSSCOMPILING_EMULATOR). The few cases that cost the most there shrink
// when it is true, each in a way that keeps every dimension it covers (docs/reliability.md lists
// them).
#pragma once

namespace sgt_test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(SGT_TEST_EMULATED)
inline constexpr bool kSlowRun = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)  // clang
inline constexpr bool kSlowRun = true;
#else
inline constexpr bool kSlowRun = false;
#endif
#else
inline constexpr bool kSlowRun = false;
#endif

}  // namespace sgt_test
