// TorchNormalGenerator: the normals of `torch.manual_seed(seed); torch.randn(...)` on CPU.
//
// This is the deterministic noise of the spec (section 1.3, `--rng torch`): a parity tool, never
// the default -- MT19937 is not a secure generator. What ATen does for a float32 tensor of n
// elements (ATen/native/cpu/DistributionTemplates.h, normal_kernel / normal_fill):
//
//   n >= 16: u[i] = (mt() & 0xffffff) * 2^-24 for all i (float uniforms in [0, 1)); then
//            Box-Muller on every whole block of 16 in place: u[j] with u[j + 8], j < 8, gives
//            out[j] = r cos(theta), out[j + 8] = r sin(theta), r = sqrt(-2 log(1 - u[j])),
//            theta = 2 pi u[j + 8]; if n % 16 != 0 the last 16 elements are drawn again (16 new
//            uniforms) and transformed as one block, overwriting the tail of the previous blocks.
//   n < 16:  n draws of at::normal_distribution<double>: two 53-bit uniforms from two mt() each,
//            r = sqrt(-2 log1p(-u2)), theta = 2 pi u1, return r cos(theta) and cache r sin(theta)
//            in the generator for the next draw. The cache survives between calls (n >= 16 calls
//            neither read nor clear it); manual_seed clears it.
//
// The Box-Muller arithmetic of the n >= 16 path differs by CPU (TorchBoxMuller):
//   kAvx2:   ATen's AVX2 kernel, log256_ps / sincos256_ps of avx_mathfun.h (Cephes polynomials in
//            f32). x86-64 CPUs with AVX2 run it, AVX-512 ones too: ATen registers no AVX-512
//            normal kernel. Reproduced here bit for bit in portable code: the same f32 operations
//            in the same order, with the FMAs GCC put into torch's build where it put them (see
//            avx2_log). Checked against torch 2.15: exhaustively over all 2^24 inputs of each
//            function, and 9.3M torch.randn values matched bit for bit.
//   kScalar: the portable template: logf / cosf / sinf of the C library, f32 except theta, which
//            is computed in double and rounded. Non-x86 CPUs and ATEN_CPU_CAPABILITY=default run
//            it. Bit-exact where the C library is the one torch links (glibc on Linux).
// The two differ by up to ~2e-6 (theta rounded differently, times the radius), more than the
// spec's 1e-6, so the path matters; both are reproduced bit for bit, the default is the one torch
// runs on the CPU family the code is compiled for (kTorchBoxMullerNative).
// The n < 16 path is double arithmetic through the C library on every CPU.
//
// Seeds: ATen's mt19937 keeps the whole u64 as "the seed" but initializes its state from the low
// 32 bits only, so seeds s and s + 2^32 give the same stream, as in torch.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

#include "sgt/core/dtype.hpp"

namespace sgt {

enum class TorchBoxMuller {
  kAvx2,    // ATen's AVX2 normal_fill kernel (x86-64 with AVX2 / AVX-512)
  kScalar,  // ATen's portable normal_fill (other CPUs, ATEN_CPU_CAPABILITY=default)
};

// What torch itself runs on the CPU family this is compiled for.
#if defined(__x86_64__) || defined(_M_X64)
inline constexpr TorchBoxMuller kTorchBoxMullerNative = TorchBoxMuller::kAvx2;
#else
inline constexpr TorchBoxMuller kTorchBoxMullerNative = TorchBoxMuller::kScalar;
#endif

namespace detail {

// at::mt19937 (ATen/core/MT19937RNGEngine.h): the reference MT19937, seeded with init_genrand
// on the low 32 bits of the seed.
class TorchMt19937 {
 public:
  explicit TorchMt19937(std::uint64_t seed) {
    state_[0] = static_cast<std::uint32_t>(seed & 0xffffffffu);
    for (std::uint32_t j = 1; j < kN; ++j)
      state_[j] = 1812433253u * (state_[j - 1] ^ (state_[j - 1] >> 30)) + j;
    next_ = kN;  // regenerate on the first draw, as ATen's left_ = 1
  }

  std::uint32_t operator()() {
    if (next_ == kN) twist();
    std::uint32_t y = state_[next_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

  // CPUGeneratorImpl::random64: the first draw is the high half.
  std::uint64_t next64() {
    const std::uint64_t hi = (*this)();
    const std::uint64_t lo = (*this)();
    return (hi << 32) | lo;
  }

 private:
  static constexpr std::uint32_t kN = 624;
  static constexpr std::uint32_t kM = 397;

  static std::uint32_t twist_pair(std::uint32_t u, std::uint32_t v) {
    const std::uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (mixed >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
  }
  void twist() {
    for (std::uint32_t k = 0; k < kN - kM; ++k)
      state_[k] = state_[k + kM] ^ twist_pair(state_[k], state_[k + 1]);
    for (std::uint32_t k = kN - kM; k < kN - 1; ++k)
      state_[k] = state_[k + kM - kN] ^ twist_pair(state_[k], state_[k + 1]);
    state_[kN - 1] = state_[kM - 1] ^ twist_pair(state_[kN - 1], state_[0]);
    next_ = 0;
  }

  std::array<std::uint32_t, kN> state_{};
  std::uint32_t next_ = kN;
};

// at::uniform_real_distribution<float>(0, 1): the low 24 bits, scaled; exact in f32.
inline float torch_uniform_float(std::uint32_t r) {
  return static_cast<float>(r & 0xffffffu) * (1.0f / 16777216.0f);
}
// at::uniform_real_distribution<double>(0, 1): the low 53 bits of random64(), scaled.
inline double torch_uniform_double(std::uint64_t r) {
  return static_cast<double>(r & ((std::uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// The portable NormalFill16 (mean 0, std 1). `+ 0.0f` is ATen's fma(x, std, mean) with std = 1,
// mean = 0: exact, except that it turns -0 into +0.
inline void torch_normal_fill_16_scalar(float* data) {
  constexpr double kTwoPi = 2.0 * 3.14159265358979323846;
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + 8];
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float theta = static_cast<float>(kTwoPi * static_cast<double>(u2));
    data[j] = radius * std::cos(theta) + 0.0f;
    data[j + 8] = radius * std::sin(theta) + 0.0f;
  }
}

// The f32 operations of ATen's AVX2 build of avx_mathfun.h, one lane at a time. That build is
// compiled by GCC with -mavx2 -mfma under GCC's default -ffp-contract=fast, so GCC fused some of
// the intrinsics' separate multiplies and adds into FMAs (the pattern below is read from GCC's
// widening_mul dump of the vector code and checked against torch's output: exhaustively for
// both functions over all 2^24 inputs the f32 uniforms can give, and on torch.randn fixtures).
// Here every fused step is an explicit std::fma and every other product is consumed only as a
// multiplicand, an fma addend or by `+ 0.0f` (where fusing changes nothing), so no compiler's
// contraction can change what is computed.
// Without hardware FMA, std::fma is a (correctly rounded) library call: slower, same bits.
struct Avx2MathConstants {
  // The constants are double literals rounded to f32, as avx_mathfun.h's tables are.
  static constexpr float kSqrtHalf = static_cast<float>(0.707106781186547524);
  static constexpr float kLogP[9] = {
      static_cast<float>(7.0376836292E-2),  static_cast<float>(-1.1514610310E-1),
      static_cast<float>(1.1676998740E-1),  static_cast<float>(-1.2420140846E-1),
      static_cast<float>(+1.4249322787E-1), static_cast<float>(-1.6668057665E-1),
      static_cast<float>(+2.0000714765E-1), static_cast<float>(-2.4999993993E-1),
      static_cast<float>(+3.3333331174E-1)};
  static constexpr float kLogQ1 = static_cast<float>(-2.12194440e-4);
  static constexpr float kLogQ2 = static_cast<float>(0.693359375);
  static constexpr float kMinusDp1 = static_cast<float>(-0.78515625);
  static constexpr float kMinusDp2 = static_cast<float>(-2.4187564849853515625e-4);
  static constexpr float kMinusDp3 = static_cast<float>(-3.77489497744594108e-8);
  static constexpr float kSinP0 = static_cast<float>(-1.9515295891E-4);
  static constexpr float kSinP1 = static_cast<float>(8.3321608736E-3);
  static constexpr float kSinP2 = static_cast<float>(-1.6666654611E-1);
  static constexpr float kCosP0 = static_cast<float>(2.443315711809948E-005);
  static constexpr float kCosP1 = static_cast<float>(-1.388731625493765E-003);
  static constexpr float kCosP2 = static_cast<float>(4.166664568298827E-002);
  static constexpr float kFourOverPi = static_cast<float>(1.27323954473516);
  static constexpr float kTwoPi = static_cast<float>(2.0 * 3.14159265358979323846);
};

// log256_ps for one lane. Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
// log(m) by a degree-9 polynomial and e log 2 added in two parts (q2 + q1).
inline float avx2_log(float x) {
  using C = Avx2MathConstants;
  const bool invalid = !(x > 0.0f);  // _CMP_LE_OS: x <= 0 (NaN compares false there)
  x = x > bits_float(0x00800000u) ? x : bits_float(0x00800000u);  // _mm256_max_ps
  const std::int32_t exponent = static_cast<std::int32_t>(float_bits(x) >> 23) - 0x7f;
  x = bits_float((float_bits(x) & ~0x7f800000u) | float_bits(0.5f));
  float e = static_cast<float>(exponent) + 1.0f;
  const bool below = x < C::kSqrtHalf;
  const float tmp = below ? x : 0.0f;
  x = x - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = std::fma(x, C::kLogP[0], C::kLogP[1]);  // y = y * x + p_k, fused
  for (int k = 2; k < 9; ++k) y = std::fma(x, y, C::kLogP[k]);
  const float yx = x * y;
  y = std::fma(z, yx, e * C::kLogQ1);  // y * z + e * q1: the product y * z fused
  y = std::fma(-z, 0.5f, y);           // y - z * 0.5, fused
  x = x + y;
  x = std::fma(e, C::kLogQ2, x);  // x + e * q2, fused
  return invalid ? bits_float(0xffffffffu) : x;
}

// sincos256_ps for one lane: reduction by pi/4 in three parts, then the Cephes sine and cosine
// polynomials, selected and signed by the octant.
inline void avx2_sincos(float x, float* sin_out, float* cos_out) {
  using C = Avx2MathConstants;
  std::uint32_t sign_sin = float_bits(x) & 0x80000000u;
  x = bits_float(float_bits(x) & 0x7fffffffu);
  float y = x * C::kFourOverPi;
  // _mm256_cvttps_epi32: truncation; out of range or NaN gives INT32_MIN.
  std::int32_t j = y < 2147483648.0f ? static_cast<std::int32_t>(y) : INT32_MIN;
  j = static_cast<std::int32_t>((static_cast<std::uint32_t>(j) + 1u) & ~1u);
  y = static_cast<float>(j);
  const std::uint32_t swap_sign_sin = (static_cast<std::uint32_t>(j) & 4u) << 29;
  const bool poly_is_cos = (static_cast<std::uint32_t>(j) & 2u) == 0;
  x = std::fma(y, C::kMinusDp1, x);  // x - y * pi/4 in three parts, each fused
  x = std::fma(y, C::kMinusDp2, x);
  x = std::fma(y, C::kMinusDp3, x);
  const std::uint32_t sign_cos = (~(static_cast<std::uint32_t>(j) - 2u) & 4u) << 29;
  sign_sin ^= swap_sign_sin;

  const float z = x * x;
  float yc = std::fma(z, C::kCosP0, C::kCosP1);
  yc = std::fma(z, yc, C::kCosP2);
  const float zyc = z * yc;
  yc = std::fma(z, zyc, -(z * 0.5f));  // y * z - z * 0.5: the product y * z fused
  yc = yc + 1.0f;
  float ys = std::fma(z, C::kSinP0, C::kSinP1);
  ys = std::fma(z, ys, C::kSinP2);
  const float zys = z * ys;
  ys = std::fma(x, zys, x);  // y * x + x, fused

  // The vector code selects with and/andnot and then adds +0 to the kept value; replayed as is
  // (v + 0 = v for every v but -0, which becomes +0).
  const float sin_from_s = poly_is_cos ? ys : 0.0f;  // ysin2
  const float sin_from_c = poly_is_cos ? 0.0f : yc;  // ysin1
  ys = ys - sin_from_s;
  yc = yc - sin_from_c;
  *sin_out = bits_float(float_bits(sin_from_c + sin_from_s) ^ sign_sin);
  *cos_out = bits_float(float_bits(yc + ys) ^ sign_cos);
}

// NormalFill16<float> of ATen's AVX2 build (mean 0, std 1), lane by lane.
inline void torch_normal_fill_16_avx2(float* data) {
  using C = Avx2MathConstants;
  float out[16];
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + 8];
    const float radius = std::sqrt(-2.0f * avx2_log(u1));
    const float theta = C::kTwoPi * u2;
    float s, c;
    avx2_sincos(theta, &s, &c);
    out[j] = radius * c + 0.0f;  // _mm256_fmadd_ps(n, std = 1, mean = 0)
    out[j + 8] = radius * s + 0.0f;
  }
  std::memcpy(data, out, sizeof(out));
}

}  // namespace detail

class TorchNormalGenerator {
 public:
  // torch.manual_seed(seed): a fresh MT19937 and no cached normal.
  explicit TorchNormalGenerator(std::uint64_t seed,
                                TorchBoxMuller box_muller = kTorchBoxMullerNative)
      : engine_(seed), seed_(seed), box_muller_(box_muller) {}

  // Writes what the next torch.randn(n) on the default CPU generator would hold (any shape with
  // n elements: randn(B, S, H) is randn(B * S * H) reshaped). Consecutive calls continue like
  // consecutive torch.randn calls.
  void fill(float* out, std::size_t n) {
    if (n < 16) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(next_double_normal());
      return;
    }
    for (std::size_t i = 0; i < n; ++i) out[i] = detail::torch_uniform_float(engine_());
    for (std::size_t i = 0; i + 16 <= n; i += 16) box_muller_16(out + i);
    if (n % 16 != 0) {
      float* tail = out + n - 16;
      for (std::size_t i = 0; i < 16; ++i) tail[i] = detail::torch_uniform_float(engine_());
      box_muller_16(tail);
    }
  }

  std::uint64_t seed() const noexcept { return seed_; }
  TorchBoxMuller box_muller() const noexcept { return box_muller_; }

 private:
  void box_muller_16(float* data) const {
    if (box_muller_ == TorchBoxMuller::kAvx2) {
      detail::torch_normal_fill_16_avx2(data);
    } else {
      detail::torch_normal_fill_16_scalar(data);
    }
  }

  // at::normal_distribution<double>(0, 1) with CPUGeneratorImpl's cached second sample.
  double next_double_normal() {
    if (cached_normal_) {
      const double v = *cached_normal_;
      cached_normal_.reset();
      return v + 0.0;
    }
    constexpr double kTwoPi = 2.0 * 3.14159265358979323846;
    const double u1 = detail::torch_uniform_double(engine_.next64());
    const double u2 = detail::torch_uniform_double(engine_.next64());
    const double r = std::sqrt(-2.0 * std::log1p(-u2));
    const double theta = kTwoPi * u1;
    cached_normal_ = r * std::sin(theta);
    return r * std::cos(theta) + 0.0;
  }

  detail::TorchMt19937 engine_;
  std::uint64_t seed_;
  TorchBoxMuller box_muller_;
  std::optional<double> cached_normal_;
};

}  // namespace sgt
