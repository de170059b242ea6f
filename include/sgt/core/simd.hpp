// The one place that knows which xsimd we build against.
//
// Debian 12 ships xsimd 8.1, whose API differs from xsimd 10+ in a few spots that kernels need:
//  - horizontal sum: 8.1 calls it `hadd`, newer releases `reduce_add`;
//  - horizontal max: `hmax` / `reduce_max`;
//  - fma on AVX-512: 8.1 has no AVX-512 fma kernel and falls back to `x * y + z`, two roundings
//    and two instructions; we call the intrinsic ourselves.
// Kernels include this header and call sgt::simd::*, never those xsimd names directly, so a move
// to a newer xsimd touches one file. Everything is compiled for the build's -march: xsimd's
// default_arch is the best instruction set the compiler was allowed to use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "sgt/core/dtype.hpp"

namespace sgt::simd {

using Arch = xsimd::default_arch;
template <class T>
using Batch = xsimd::batch<T, Arch>;
using FloatBatch = Batch<float>;

// Number of f32 lanes in one register of the build's instruction set (1 when xsimd found none).
inline constexpr std::size_t kFloatLanes = FloatBatch::size;

// Name of the instruction set the kernels were compiled for ("avx512bw", "avx2", "sse2", ...).
inline const char* arch_name() noexcept {
  return Arch::name();
}

#if XSIMD_VERSION_MAJOR >= 10
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& b) noexcept {
  return xsimd::reduce_add(b);
}
template <class T, class A>
inline T reduce_max(const xsimd::batch<T, A>& b) noexcept {
  return xsimd::reduce_max(b);
}
#else
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& b) noexcept {
  return xsimd::hadd(b);
}
template <class T, class A>
inline T reduce_max(const xsimd::batch<T, A>& b) noexcept {
  alignas(64) T lanes[xsimd::batch<T, A>::size];
  b.store_aligned(lanes);
  T m = lanes[0];
  for (std::size_t i = 1; i < xsimd::batch<T, A>::size; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}
#endif

// x * y + z with a single rounding wherever the hardware has FMA.
template <class A>
inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                  const xsimd::batch<float, A>& z) noexcept {
#if defined(__AVX512F__) && XSIMD_VERSION_MAJOR < 10
  if constexpr (xsimd::batch<float, A>::size == 16) {
    return xsimd::batch<float, A>(_mm512_fmadd_ps(x, y, z));
  } else {
    return xsimd::fma(x, y, z);
  }
#else
  return xsimd::fma(x, y, z);
#endif
}

// Loads FloatBatch::size consecutive elements of any stored dtype, widened to f32. The pointer
// needs no alignment beyond that of its element type.
inline FloatBatch load_as_float(const float* p) noexcept {
  return FloatBatch::load_unaligned(p);
}

inline FloatBatch load_as_float(const bfloat16* p) noexcept {
  // bf16 is the top half of an f32: zero-extend to 32 bits and shift left by 16.
#if defined(__AVX512F__)
  static_assert(kFloatLanes == 16, "xsimd picked a non-AVX-512 arch under __AVX512F__");
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return FloatBatch(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
#elif defined(__AVX2__)
  static_assert(kFloatLanes == 8, "xsimd picked a non-AVX arch under __AVX2__");
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return FloatBatch(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
#else
  alignas(64) float tmp[kFloatLanes];
  for (std::size_t i = 0; i < kFloatLanes; ++i) tmp[i] = to_float(p[i]);
  return FloatBatch::load_aligned(tmp);
#endif
}

inline FloatBatch load_as_float(const float16* p) noexcept {
#if defined(__AVX512F__)
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return FloatBatch(_mm512_cvtph_ps(h));
#elif defined(__F16C__) && defined(__AVX__)
  static_assert(kFloatLanes == 8, "xsimd picked a non-AVX arch under __AVX__");
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return FloatBatch(_mm256_cvtph_ps(h));
#else
  alignas(64) float tmp[kFloatLanes];
  for (std::size_t i = 0; i < kFloatLanes; ++i) tmp[i] = to_float(p[i]);
  return FloatBatch::load_aligned(tmp);
#endif
}

}  // namespace sgt::simd
