// sgt::simd: the only door from the kernels to the instruction set.
//
// What it offers, for the build's best instruction set (xsimd's default_arch: AVX-512, AVX2/FMA,
// SSE2, NEON, or xsimd's scalar fallback):
//  - the batch types (FloatBatch, Batch<T>) and their lane count kFloatLanes;
//  - elementwise fma (single rounding on every build), multiply_add (fused where the hardware
//    can), max, select, exp, tanh, and map_in_place to run such a function over one array (or
//    two, the second read-only);
//  - loads that widen any stored dtype (f32, bf16, f16) to f32: a full register (load_as_float)
//    or its first `count` lanes, zero-padded (load_partial_as_float);
//  - horizontal sums: of one register (reduce_add), or of several accumulators at once
//    (reduce_accumulators, a transposing tree on AVX-512);
//  - keep_in_register, which stops GCC from folding a reused load into every FMA.
// Every function has a path for every instruction set: an intrinsic where one does the job, else
// a store to an aligned lane array and a scalar loop. Kernels (include/sgt/kernels) call these and
// never xsimd or intrinsics directly, for two reasons: the xsimd API is not stable (below), and
// the one place that knows which instructions a result depends on is this file, so a test
// (tests/test_core.cpp) can check each path against scalar code and a move to another SIMD
// library touches one file.
//
// Debian 12 ships xsimd 8.1, whose API differs from xsimd 10+ in a few spots that kernels need:
//  - horizontal sum: 8.1 calls it `hadd`, newer releases `reduce_add`;
//  - fma on AVX-512: 8.1 has no AVX-512 fma kernel and falls back to `x * y + z`, two roundings
//    and two instructions; we call the intrinsic ourselves.
// Everything is compiled for the build's -march: xsimd's default_arch is the best instruction set
// the compiler was allowed to use.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "sgt/core/dtype.hpp"
#include "sgt/core/isa.hpp"

// For helpers that hand registers back through an array (load_transposed_words): inlined, the
// array stays in registers; called, it goes through memory. GCC declines to inline them once a
// kernel calls them several times per loop (the narrow matmul's items), measured 1.8x slower.
#if defined(__GNUC__)
#define SGT_SIMD_ALWAYS_INLINE inline __attribute__((always_inline))
#define SGT_SIMD_INLINE_LAMBDA __attribute__((always_inline))
#else
#define SGT_SIMD_ALWAYS_INLINE inline
#define SGT_SIMD_INLINE_LAMBDA
#endif

// Unrolls the next loop (of a constant trip count) completely. Loops that index an array of
// registers must be unrolled for the array to stay in registers; GCC does that by itself at -O3
// but not at -O2 (CMake's RelWithDebInfo), where the 1B-shaped transform then took 1.7x (AVX-512)
// and 2.6x (AVX2) as long (bench/README.md). Where clang cannot honour the pragma at -O1 (a loop
// around large lambda bodies; it warns), unroll with a pack expansion instead (the narrow
// matmul's for_items).
#if defined(__clang__)
#define SGT_SIMD_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define SGT_SIMD_UNROLL _Pragma("GCC unroll 32")
#else
#define SGT_SIMD_UNROLL
#endif

namespace sgt::simd {
SGT_ISA_BEGIN

using Arch = xsimd::default_arch;
template <class T, class A = Arch>
using Batch = xsimd::batch<T, A>;
using FloatBatch = Batch<float>;

// Number of f32 lanes in one register of the build's instruction set (1 when xsimd found none).
inline constexpr std::size_t kFloatLanes = FloatBatch::size;

// Vector registers the instruction set has: 32 with AVX-512 and on aarch64, 16 with AVX2, AVX and
// SSE2 on x86-64 (what a kernel's register tile must fit).
#if defined(__AVX512F__) || defined(__aarch64__)
inline constexpr std::size_t kVectorRegisters = 32;
#else
inline constexpr std::size_t kVectorRegisters = 16;
#endif

// Name of the instruction set the kernels were compiled for ("avx512bw", "avx2", "sse2", ...).
inline const char* arch_name() noexcept {
  return Arch::name();
}

// Sum of the lanes of b.
#if XSIMD_VERSION_MAJOR >= 10
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& b) noexcept {
  return xsimd::reduce_add(b);
}
#else
template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& b) noexcept {
  return xsimd::hadd(b);
}
#endif

// Whether the target has a fused multiply-add instruction: x86 FMA3 (x86-64-v3 and up), AArch64
// (always), 32-bit ARM with VFPv4. Without it (x86-64 baseline SSE2, xsimd's scalar fallback)
// xsimd 8.1's fma is `x * y + z`, two roundings.
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
inline constexpr bool kHasHardwareFma = true;
#else
inline constexpr bool kHasHardwareFma = false;
#endif

// x * y + z, fused (one rounding) wherever the hardware has FMA and two roundings elsewhere: the
// fastest multiply-add, for accumulations whose results are compared with tolerances (matmul,
// attention dot products, sums of squares). Where the bits must not depend on the instruction set,
// use fma below.
template <class A>
inline xsimd::batch<float, A> multiply_add(const xsimd::batch<float, A>& x,
                                           const xsimd::batch<float, A>& y,
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

// x * y + z with a single rounding on every build, the same bits as std::fma lane by lane. With
// hardware FMA this is multiply_add; without it each lane calls std::fma (correctly rounded in
// software: exact, and much slower), so kernels whose docs promise the reference's bits on every
// instruction set (RoPE) keep that promise on SSE2 too.
template <class A>
inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& x, const xsimd::batch<float, A>& y,
                                  const xsimd::batch<float, A>& z) noexcept {
  if constexpr (kHasHardwareFma) {
    return multiply_add(x, y, z);
  } else {
    constexpr std::size_t n = xsimd::batch<float, A>::size;
    alignas(64) float xs[n], ys[n], zs[n];
    x.store_aligned(xs);
    y.store_aligned(ys);
    z.store_aligned(zs);
    for (std::size_t i = 0; i < n; ++i) xs[i] = std::fma(xs[i], ys[i], zs[i]);
    return xsimd::batch<float, A>::load_aligned(xs);
  }
}

// Lane-wise max(a, b) (IEEE maxNum is not promised for NaN: a NaN lane may give either operand).
template <class T, class A>
inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept {
  return xsimd::max(a, b);
}

// Lane-wise cond ? a : b; cond comes from a comparison of batches (a < b, a == b, ...).
template <class T, class A>
inline xsimd::batch<T, A> select(const xsimd::batch_bool<T, A>& cond, const xsimd::batch<T, A>& a,
                                 const xsimd::batch<T, A>& b) noexcept {
  return xsimd::select(cond, a, b);
}

// Vectorized exp. xsimd's is the Cephes-style range reduction + polynomial (about 1 ulp), and
// maps -inf to exactly 0, which the masked attention scores rely on. Same name in xsimd 8 and 10+.
template <class A>
inline xsimd::batch<float, A> exp(const xsimd::batch<float, A>& x) noexcept {
  return xsimd::exp(x);
}

// Vectorized tanh: xsimd's (a polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above, with
// x's sign). Within 1 ulp of tanh in double over [-30, 30] (glibc's tanhf: 2 ulps), about 30 times
// faster than calling tanhf per element; +-inf give +-1 and NaN stays NaN.
template <class A>
inline xsimd::batch<float, A> tanh(const xsimd::batch<float, A>& x) noexcept {
  return xsimd::tanh(x);
}

// Applies f (a FloatBatch -> FloatBatch function) to p[0, n) in place. The last partial register
// goes through a zero-padded lane array, so an element's bits depend on its value alone and not on
// where it sits: chunked and whole-range calls agree bit for bit.
template <class F>
inline void map_in_place(float* p, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + kFloatLanes <= n; i += kFloatLanes)
    f(FloatBatch::load_unaligned(p + i)).store_unaligned(p + i);
  if (i < n) {
    alignas(64) float lanes[kFloatLanes] = {};
    std::memcpy(lanes, p + i, (n - i) * sizeof(float));
    f(FloatBatch::load_aligned(lanes)).store_aligned(lanes);
    std::memcpy(p + i, lanes, (n - i) * sizeof(float));
  }
}

// The same with a second, read-only operand: p[i] = f(p[i], q[i]) (SwiGLU's silu(g) * u). Both
// tails go through zero-padded lane arrays, so again an element's bits depend on p[i] and q[i]
// alone.
template <class F>
inline void map_in_place(float* p, const float* q, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + kFloatLanes <= n; i += kFloatLanes)
    f(FloatBatch::load_unaligned(p + i), FloatBatch::load_unaligned(q + i)).store_unaligned(p + i);
  if (i < n) {
    alignas(64) float lanes[kFloatLanes] = {}, q_lanes[kFloatLanes] = {};
    std::memcpy(lanes, p + i, (n - i) * sizeof(float));
    std::memcpy(q_lanes, q + i, (n - i) * sizeof(float));
    f(FloatBatch::load_aligned(lanes), FloatBatch::load_aligned(q_lanes)).store_aligned(lanes);
    std::memcpy(p + i, lanes, (n - i) * sizeof(float));
  }
}

// Pins a value to a vector register. GCC folds a loaded vector into every FMA that uses it (one
// memory operand per FMA), which turns an FMA-bound micro-kernel load-bound: 28 loads per K step
// instead of 10 in the matmul tile (measured 2x slower), 20 instead of 8 per 16 FMAs in flash
// attention's. An empty asm statement that claims to modify the register makes the compiler load
// it once and keep it. It emits no instruction, so results do not depend on it. A no-op where the
// "v" (any vector register) constraint of x86 GCC/Clang is not available.
template <class A>
inline void keep_in_register(xsimd::batch<float, A>& b) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
  auto reg = static_cast<typename xsimd::batch<float, A>::register_type>(b);
  asm("" : "+v"(reg));
  b = xsimd::batch<float, A>(reg);
#else
  (void)b;
#endif
}

// Loads kFloatLanes consecutive elements of any stored dtype, widened to f32. The pointer needs
// no alignment beyond that of its element type.
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

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

// The portable partial load: a zeroed lane array, `count` scalar widenings, one aligned load.
template <class T>
inline FloatBatch load_partial_via_lanes(const T* p, std::size_t count) noexcept {
  alignas(64) float buf[kFloatLanes] = {};
  for (std::size_t i = 0; i < count; ++i) buf[i] = to_float(p[i]);
  return FloatBatch::load_aligned(buf);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// Mask of the first `count` (<= 16) lanes.
inline __mmask16 first_lanes(std::size_t count) noexcept {
  return static_cast<__mmask16>((1u << count) - 1u);
}
#endif

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// The first `count` (< kFloatLanes) values at p, widened and zero-padded to one full register;
// nothing at or after p + count is read. AVX-512 (BW + VL) has masked loads, which neither read
// nor fault past `count`; elsewhere a zeroed lane array filled by a scalar loop.
inline FloatBatch load_partial_as_float(const float* p, std::size_t count) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  static_assert(kFloatLanes == 16, "xsimd picked a non-AVX-512 arch under __AVX512F__");
  return FloatBatch(_mm512_maskz_loadu_ps(detail::first_lanes(count), p));
#else
  return detail::load_partial_via_lanes(p, count);
#endif
}

inline FloatBatch load_partial_as_float(const bfloat16* p, std::size_t count) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  const __m256i h = _mm256_maskz_loadu_epi16(detail::first_lanes(count), p);
  return FloatBatch(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
#else
  return detail::load_partial_via_lanes(p, count);
#endif
}

inline FloatBatch load_partial_as_float(const float16* p, std::size_t count) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  return FloatBatch(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(detail::first_lanes(count), p)));
#else
  return detail::load_partial_via_lanes(p, count);
#endif
}

// One element of any stored dtype, widened to f32 and copied to every lane: the weight operand of
// the matmul tile, which broadcasts one weight against kFloatLanes tokens.
inline FloatBatch broadcast_as_float(const float* p) noexcept {
  return FloatBatch(*p);
}
inline FloatBatch broadcast_as_float(const bfloat16* p) noexcept {
#if defined(__AVX2__) && !defined(__AVX512F__)
  // A 16-bit broadcast and a shift (each lane holds the value twice; the shift keeps it in the
  // high half), not a scalar load, shift, move and broadcast: the f32 tile on BF16 weights widens
  // one weight per FMA pair on AVX2.
  std::int16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return FloatBatch(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_set1_epi16(bits), 16)));
#else
  return FloatBatch(to_float(*p));
#endif
}
inline FloatBatch broadcast_as_float(const float16* p) noexcept {
  return FloatBatch(to_float(*p));
}

// p[0] widened and broadcast like broadcast_as_float(p), for a p that has an element before it:
// on AVX2 one 32-bit broadcast of p[-1] and p[0] (a plain load) and one AND that clears p[-1]'s
// half, where broadcast_as_float takes a 16-bit broadcast and a shift, both on the ports of the
// FMAs' second pipe on Zen 3.
inline FloatBatch broadcast_as_float_after(const bfloat16* p) noexcept {
#if defined(__AVX2__) && !defined(__AVX512F__)
  std::int32_t bits;
  std::memcpy(&bits, p - 1, sizeof bits);
  return FloatBatch(_mm256_castsi256_ps(
      _mm256_and_si256(_mm256_set1_epi32(bits), _mm256_set1_epi32(static_cast<int>(0xffff0000u)))));
#else
  return broadcast_as_float(p);
#endif
}

// ---- bf16 dot products -------------------------------------------------------------------------
//
// Precision::Bf16 multiplies bf16 activations by bf16 weights and accumulates in f32, two k values
// at a time: a "pair" is a 32-bit word holding the bf16 of element 2i in its low half and of
// element 2i + 1 in its high half (the layout of AVX512-BF16's vdpbf16ps, and of two consecutive
// bf16 values in memory on a little-endian machine). dot_bf16_pairs computes, lane by lane,
//     acc += x_odd * w_odd;  acc += x_even * w_even
// each step one fused multiply-add (the product of two bf16 values is exact in f32, so it is also
// an exact product followed by one rounded addition). That is vdpbf16ps's definition (Intel SDM:
// odd element first, round to nearest even, denormal inputs read as zero, denormal results flushed
// to zero). Without the instruction the same steps run as two f32 FMAs on the widened halves: the
// same bits, except that the emulation keeps denormal partial sums (|acc| < 2^-126) that the
// instruction flushes to zero. Denormal weights read as zero in both; activations are rounded by
// bf16_round_bits, which flushes denormals like the instruction set's conversion.
#if defined(__AVX512BF16__) && defined(__AVX512F__)
inline constexpr bool kHasBf16DotProduct = true;
#else
inline constexpr bool kHasBf16DotProduct = false;
#endif

// Pairs of bf16 values, kFloatLanes per register.
using PairBatch = Batch<std::uint32_t>;

// f32 -> bf16 bits, round to nearest even, as vcvtne2ps2bf16 does: a NaN stays a NaN (its top
// half, made quiet), a denormal input becomes a zero of its sign, infinities stay infinite,
// values that round past the largest bf16 become infinities.
inline std::uint16_t bf16_round_bits(float value) noexcept {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  if ((bits & 0x7f800000u) == 0) return static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

// The pair of two f32 values (low = element 2i, high = element 2i + 1), each rounded to bf16.
inline std::uint32_t bf16_round_pair(float even, float odd) noexcept {
  return static_cast<std::uint32_t>(bf16_round_bits(even)) |
         (static_cast<std::uint32_t>(bf16_round_bits(odd)) << 16);
}

// The kFloatLanes pairs of the 2 * kFloatLanes floats at p: out[i] = bf16_round_pair(p[2i],
// p[2i + 1]). With AVX512-BF16 one vcvtne2ps2bf16, whose bits equal bf16_round_bits' (checked on
// every finite, infinite, NaN and denormal class by tests/test_core.cpp); elsewhere the scalar loop.
inline void bf16_round_pairs(const float* p, std::uint32_t* out) noexcept {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(p));
  std::memcpy(out, &r, sizeof r);
#else
  for (std::size_t i = 0; i < kFloatLanes; ++i) out[i] = bf16_round_pair(p[2 * i], p[2 * i + 1]);
#endif
}

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN
inline float float_from_bits(std::uint32_t bits) noexcept {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
// The high / low bf16 of a pair, widened; a denormal weight reads as a zero of its sign (DAZ).
inline float pair_odd(std::uint32_t pair) noexcept {
  const std::uint32_t bits = pair & 0xffff0000u;
  return float_from_bits((bits & 0x7f800000u) == 0 ? bits & 0x80000000u : bits);
}
inline float pair_even(std::uint32_t pair) noexcept {
  const std::uint32_t bits = pair << 16;
  return float_from_bits((bits & 0x7f800000u) == 0 ? bits & 0x80000000u : bits);
}
SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// The emulation, on every build (the tests compare it with the instruction where there is one).
inline FloatBatch dot_bf16_pairs_emulated(const FloatBatch& acc, const PairBatch& x_pairs,
                                          std::uint32_t w_pair) noexcept {
  const FloatBatch x_odd = xsimd::bitwise_cast<FloatBatch>(x_pairs & PairBatch(0xffff0000u));
  const FloatBatch x_even = xsimd::bitwise_cast<FloatBatch>(x_pairs << 16);
  const FloatBatch step = fma(x_odd, FloatBatch(detail::pair_odd(w_pair)), acc);
  return fma(x_even, FloatBatch(detail::pair_even(w_pair)), step);
}

// acc + x_odd * w_odd + x_even * w_even per lane (see above); w_pair is broadcast to every lane.
inline FloatBatch dot_bf16_pairs(const FloatBatch& acc, const PairBatch& x_pairs,
                                 std::uint32_t w_pair) noexcept {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  const __m512i x = x_pairs, w = _mm512_set1_epi32(static_cast<int>(w_pair));
  return FloatBatch(_mm512_dpbf16_ps(acc, reinterpret_cast<const __m512bh&>(x),
                                     reinterpret_cast<const __m512bh&>(w)));
#else
  return dot_bf16_pairs_emulated(acc, x_pairs, w_pair);
#endif
}

// Two consecutive bf16 weights p[0], p[1], widened to f32 and broadcast to every lane: one 32-bit
// broadcast and two integer operations, where two separate widenings would take a scalar load,
// shift, move and broadcast each (the f32 matmul tile on BF16 weights is ALU-bound without this).
inline void broadcast_bf16_pair_as_float(const bfloat16* p, FloatBatch& even,
                                         FloatBatch& odd) noexcept {
  std::uint32_t pair;
  std::memcpy(&pair, p, sizeof pair);
#if defined(__AVX512F__)
  const __m512i b = _mm512_set1_epi32(static_cast<int>(pair));
  even = FloatBatch(_mm512_castsi512_ps(_mm512_slli_epi32(b, 16)));
  odd = FloatBatch(_mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32(-65536))));
#elif defined(__AVX2__)
  const __m256i b = _mm256_set1_epi32(static_cast<int>(pair));
  even = FloatBatch(_mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
  odd = FloatBatch(_mm256_castsi256_ps(_mm256_and_si256(b, _mm256_set1_epi32(-65536))));
#else
  even = FloatBatch(to_float(p[0]));
  odd = FloatBatch(to_float(p[1]));
#endif
}

// The pair at p (two consecutive bf16 values), read without alignment requirements.
inline std::uint32_t load_bf16_pair(const bfloat16* p) noexcept {
  std::uint32_t pair;
  std::memcpy(&pair, p, sizeof pair);
  return pair;
}

// acc + x_odd * w_odd + x_even * w_even per lane, with the roles of dot_bf16_pairs swapped: the
// weight pairs are the vector (one output feature per lane) and the activation pair is broadcast.
// The same bits as dot_bf16_pairs(acc, broadcast x_pair, w_pairs[lane]) lane by lane: both
// products are exact in f32, so which operand is broadcast does not matter, and the emulation
// reads denormal weights as zero here too. The matmul's narrow path (few tokens) uses it.
inline FloatBatch dot_bf16_weight_pairs_emulated(const FloatBatch& acc, const PairBatch& w_pairs,
                                                 std::uint32_t x_pair) noexcept {
  // Denormal weights read as zero of their sign, as pair_odd / pair_even read the broadcast one:
  // |w| < FLT_MIN (false for NaN) becomes w * 0. Float compares only: xsimd 8.1's integer
  // unsigned 32-bit compares do not build for avx512bw (-march=x86-64-v4).
  const FloatBatch smallest_normal(1.17549435e-38f), zero(0.0f);
  FloatBatch odd = xsimd::bitwise_cast<FloatBatch>(w_pairs & PairBatch(0xffff0000u));
  FloatBatch even = xsimd::bitwise_cast<FloatBatch>(w_pairs << 16);
  odd = xsimd::select(xsimd::abs(odd) < smallest_normal, odd * zero, odd);
  even = xsimd::select(xsimd::abs(even) < smallest_normal, even * zero, even);
  const FloatBatch step = fma(odd, FloatBatch(detail::pair_odd(x_pair)), acc);
  return fma(even, FloatBatch(detail::pair_even(x_pair)), step);
}

inline FloatBatch dot_bf16_weight_pairs(const FloatBatch& acc, const PairBatch& w_pairs,
                                        std::uint32_t x_pair) noexcept {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  return dot_bf16_pairs(acc, w_pairs, x_pair);  // vdpbf16ps treats both operands alike
#else
  return dot_bf16_weight_pairs_emulated(acc, w_pairs, x_pair);
#endif
}

// The bits of a register of f32 lanes, and back.
inline FloatBatch words_as_float(const PairBatch& words) noexcept {
  return xsimd::bitwise_cast<FloatBatch>(words);
}

// A register of bf16 pairs widened to f32: `even` holds the low halves, `odd` the high ones
// (exactly, as load_as_float widens bf16).
inline void widen_bf16_pairs(const PairBatch& pairs, FloatBatch& even, FloatBatch& odd) noexcept {
  even = xsimd::bitwise_cast<FloatBatch>(pairs << 16);
  odd = xsimd::bitwise_cast<FloatBatch>(pairs & PairBatch(0xffff0000u));
}

// Hint that the cache line at p will be read soon, fetched into L2 (prefetcht1 on x86: a kernel
// streaming many rows 4 KiB apart would evict its own prefetches from L1). No instruction where
// the compiler has no prefetch builtin. Never faults, whatever p is.
inline void prefetch_read(const void* p) noexcept {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

#if defined(__AVX512F__)
// 16 x 16 transpose of 32-bit words: four rounds of two-source shuffles (unpack 32, unpack 64,
// two 128-bit lane shuffles), 64 instructions for 256 words.
SGT_SIMD_ALWAYS_INLINE void transpose16(__m512i* r) noexcept {
  __m512i t[16], u[16];
  SGT_SIMD_UNROLL
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], 128-bit lane l: rows 4g..4g+3 of column 4l + c.
  SGT_SIMD_UNROLL
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  SGT_SIMD_UNROLL
  for (int c = 0; c < 4; ++c) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
    r[c] = _mm512_shuffle_i32x4(v0, w0, _MM_SHUFFLE(2, 0, 2, 0));
    r[8 + c] = _mm512_shuffle_i32x4(v0, w0, _MM_SHUFFLE(3, 1, 3, 1));
    r[4 + c] = _mm512_shuffle_i32x4(v1, w1, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + c] = _mm512_shuffle_i32x4(v1, w1, _MM_SHUFFLE(3, 1, 3, 1));
  }
}
#elif defined(__AVX2__)
// 8 x 8 transpose of 32-bit words: unpack, shuffle, then 128-bit halves; 24 instructions.
SGT_SIMD_ALWAYS_INLINE void transpose8(__m256* r) noexcept {
  __m256 t[8], u[8];
  SGT_SIMD_UNROLL
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  SGT_SIMD_UNROLL
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  SGT_SIMD_UNROLL
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}
#endif

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Reads kFloatLanes 32-bit words at byte offset `offset` of each of kFloatLanes rows (any
// alignment) and transposes them: lane j of out[i] is word i of rows[j]. The matmul's narrow path
// turns kFloatLanes weight rows (output features) into registers that hold one k for every
// feature, so one broadcast activation multiplies them all.
SGT_SIMD_ALWAYS_INLINE void load_transposed_words(const void* const* rows, std::size_t offset,
                                                  PairBatch* out) noexcept {
#if defined(__AVX512F__)
  __m512i r[16];
  SGT_SIMD_UNROLL
  for (int j = 0; j < 16; ++j)
    r[j] = _mm512_loadu_si512(static_cast<const unsigned char*>(rows[j]) + offset);
  detail::transpose16(r);
  SGT_SIMD_UNROLL
  for (int i = 0; i < 16; ++i) out[i] = PairBatch(r[i]);
#elif defined(__AVX2__)
  __m256 r[8];
  SGT_SIMD_UNROLL
  for (int j = 0; j < 8; ++j)
    r[j] = _mm256_loadu_ps(reinterpret_cast<const float*>(
        static_cast<const unsigned char*>(rows[j]) + offset));
  detail::transpose8(r);
  SGT_SIMD_UNROLL
  for (int i = 0; i < 8; ++i) out[i] = PairBatch(_mm256_castps_si256(r[i]));
#else
  alignas(64) std::uint32_t cols[kFloatLanes][kFloatLanes];
  for (std::size_t j = 0; j < kFloatLanes; ++j)
    for (std::size_t i = 0; i < kFloatLanes; ++i)
      std::memcpy(&cols[i][j],
                  static_cast<const unsigned char*>(rows[j]) + offset + i * sizeof(std::uint32_t),
                  sizeof(std::uint32_t));
  SGT_SIMD_UNROLL
  for (std::size_t i = 0; i < kFloatLanes; ++i) out[i] = PairBatch::load_aligned(cols[i]);
#endif
}

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

#if defined(__AVX512F__)
inline __m512 reduce_pairs_lanes(__m512 a, __m512 b) noexcept {
  return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}
inline __m512 reduce_pairs_64(__m512 a, __m512 b) noexcept {
  const __m512d ad = _mm512_castps_pd(a), bd = _mm512_castps_pd(b);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(ad, bd)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(ad, bd)));
}
inline __m512 reduce_pairs_128(__m512 a, __m512 b) noexcept {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
// 16 accumulators -> one register holding their 16 sums, in order.
inline __m512 reduce16(const __m512* a) noexcept {
  __m512 l1[8], l2[4], l3[2];
  SGT_SIMD_UNROLL
  for (int i = 0; i < 8; ++i) l1[i] = reduce_pairs_lanes(a[2 * i], a[2 * i + 1]);
  SGT_SIMD_UNROLL
  for (int i = 0; i < 4; ++i) l2[i] = reduce_pairs_64(l1[2 * i], l1[2 * i + 1]);
  SGT_SIMD_UNROLL
  for (int i = 0; i < 2; ++i) l3[i] = reduce_pairs_128(l2[2 * i], l2[2 * i + 1]);
  return reduce_pairs_128(l3[0], l3[1]);
}
#endif

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Horizontal sums of `Count` accumulators: out[a] = sum of the lanes of acc[a]. On AVX-512 a
// transposing tree reduces 16 registers with 15 (shuffle, shuffle, add) triples, ~3 instructions
// per sum instead of ~10 for one hadd each. Every accumulator goes through the same tree (lanes
// i and i + 2, then 64-bit, 128-bit and 256-bit halves) whatever its position or the group size,
// so the sum of one output does not depend on how many are reduced together. Elsewhere one
// reduce_add per accumulator, which is likewise independent of Count.
template <std::size_t Count>
inline void reduce_accumulators(const FloatBatch* acc, float* out) noexcept {
#if defined(__AVX512F__)
  static_assert(kFloatLanes == 16, "AVX-512 build with a non-16-lane FloatBatch");
  std::size_t a = 0;
  for (; a + 16 <= Count; a += 16) {
    __m512 group[16];
    SGT_SIMD_UNROLL
    for (std::size_t i = 0; i < 16; ++i) group[i] = acc[a + i];
    _mm512_storeu_ps(out + a, detail::reduce16(group));
  }
  if (a < Count) {
    // A partial group is padded with zero registers; their sums are dropped.
    __m512 group[16];
    for (std::size_t i = 0; i < 16; ++i)
      group[i] = a + i < Count ? __m512(acc[a + i]) : _mm512_setzero_ps();
    alignas(64) float sums[16];
    _mm512_store_ps(sums, detail::reduce16(group));
    for (std::size_t i = 0; a + i < Count; ++i) out[a + i] = sums[i];
  }
#else
  for (std::size_t a = 0; a < Count; ++a) out[a] = reduce_add(acc[a]);
#endif
}

SGT_ISA_END
}  // namespace sgt::simd
