// SecureNormalGenerator: standard normal f32 noise from a ChaCha20 keystream keyed by the OS.
//
// The default noise of the spec (section 1.3). Every generator draws a fresh 256-bit key from
// fill_os_entropy (which throws rather than fall back to anything predictable); nonce 0, block
// counter from 0 in the 64-bit layout, so one key covers 2^64 blocks and a stream never repeats.
// Each fill() continues the stream where the previous one stopped, so filling n values in pieces
// gives the same values as filling them at once. The key and the buffered keystream are wiped
// when the generator is destroyed or moved from. Not thread-safe: one generator per thread.
//
// The transform: Marsaglia's polar method, in double.
//   u, v = uniforms on the odd multiples of 2^-53 in (-1, 1): 2^53 values each, symmetric about 0,
//          never 0; one 64-bit keystream word each (the top 53 bits).
//   s    = u^2 + v^2; the pair is rejected unless s < 1 (probability pi/4 of acceptance).
//   x, y = u * sqrt(-2 ln(s) / s), v * sqrt(-2 ln(s) / s): two independent N(0, 1) values.
// Why this method:
//   - It is exact, not an approximation: conditional on acceptance (u, v) is uniform on the disc,
//     and the map is the Box-Muller transform written with u / sqrt(s), v / sqrt(s) in place of
//     (cos, sin) of a uniform angle and s in place of a uniform radius draw. The only errors are
//     the double rounding of s, ln, sqrt and the products (relative ~1e-16), far below the final
//     rounding to f32 (~6e-8).
//   - Its tails reach further than Box-Muller's from 53-bit uniforms: there the largest radius is
//     sqrt(-2 ln 2^-53) = 8.57 (a tail probability of ~1e-17 cut off); here s can be as small as
//     2^-105 and |x| reaches 11.6, and the 2^-53 grid of (u, v) only gets coarse where |x| > ~10
//     (probability 1.5e-23 per value). f32 holds all of it; no tail is cut at any level that a
//     simulation, let alone an attacker, could observe.
//   - No log(0): s > 0 always (u is never 0); no sin/cos: one log, one sqrt and one division per
//     accepted pair, which is what makes it fast (the keystream and the log dominate).
//   Ziggurat would be faster still, but its exactness rests on ~256-entry tables and a separate
//   tail sampler; the polar method's rests on three lines.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/random/chacha20.hpp"
#include "sgt/random/os_entropy.hpp"

namespace sgt {
namespace detail {
SGT_ISA_BEGIN

// Zeroes memory about to die in a way the compiler may not drop as a dead store: with GCC and
// Clang, memset followed by an empty asm that claims to read the memory (fast); elsewhere, stores
// through a volatile pointer.
inline void secure_wipe(void* p, std::size_t n) noexcept {
#if defined(__GNUC__)
  std::memset(p, 0, n);
  __asm__ __volatile__("" : : "r"(p) : "memory");
#else
  volatile unsigned char* b = static_cast<volatile unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = 0;
#endif
}

inline std::uint64_t load_le64(const std::uint8_t* p) noexcept {
  return std::uint64_t{load_le32(p)} | (std::uint64_t{load_le32(p + 4)} << 32);
}

// The top 53 bits of a keystream word as an odd multiple of 2^-53 in (-1, 1): (2k + 1 - 2^53)
// 2^-53 for k in [0, 2^53). Exact in double; symmetric about 0; never 0.
inline double polar_uniform(std::uint64_t word) noexcept {
  const std::int64_t k = static_cast<std::int64_t>(word >> 11);
  return static_cast<double>(2 * k + 1 - (std::int64_t{1} << 53)) * 0x1p-53;
}

// One step of the polar method on two keystream words: false if the pair is rejected (s >= 1),
// else two N(0, 1) values. Shared by the generator and its reference, so both round alike.
inline bool polar_pair(std::uint64_t word_u, std::uint64_t word_v, float* x, float* y) noexcept {
  const double u = polar_uniform(word_u);
  const double v = polar_uniform(word_v);
  const double s = u * u + v * v;
  if (s >= 1.0) return false;
  const double scale = std::sqrt(-2.0 * std::log(s) / s);
  *x = static_cast<float>(u * scale);
  *y = static_cast<float>(v * scale);
  return true;
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

class SecureNormalGenerator {
 public:
  // A fresh key from the operating system; throws sgt::Error if it has no entropy to give.
  SecureNormalGenerator() { fill_os_entropy(key_.data(), key_.size()); }

  // FOR TESTS ONLY: a generator whose noise anyone who knows `key` can reproduce, which defeats
  // the purpose of the noise. Never use it for a transform.
  static SecureNormalGenerator with_key_for_testing(const ChaCha20Key& key) {
    return SecureNormalGenerator(key, KnownKey{});
  }

  // Copying would hand out the same noise twice; moving transfers the stream and leaves the
  // source wiped and unusable (its fill throws).
  SecureNormalGenerator(const SecureNormalGenerator&) = delete;
  SecureNormalGenerator& operator=(const SecureNormalGenerator&) = delete;
  SecureNormalGenerator(SecureNormalGenerator&& other) noexcept { take(other); }
  SecureNormalGenerator& operator=(SecureNormalGenerator&& other) noexcept {
    if (this != &other) {
      wipe();
      take(other);
    }
    return *this;
  }
  ~SecureNormalGenerator() { wipe(); }

  // Writes the next n values of the stream: independent N(0, 1) samples, rounded to f32.
  void fill(float* out, std::size_t n) {
    if (!keyed_) throw Error("SecureNormalGenerator was moved from; it has no key");
    std::size_t i = 0;
    if (n > 0 && has_spare_) {
      out[i++] = spare_;
      has_spare_ = false;
    }
    while (i < n) {
      if (pos_ == kBufferBytes) refill();
      const std::uint64_t word_u = detail::load_le64(buffer_ + pos_);
      const std::uint64_t word_v = detail::load_le64(buffer_ + pos_ + 8);
      pos_ += 16;
      float second;
      if (!detail::polar_pair(word_u, word_v, out + i, &second)) continue;
      ++i;
      if (i < n) {
        out[i++] = second;
      } else {
        spare_ = second;
        has_spare_ = true;
      }
    }
  }

 private:
  // Keystream fetched per refill: a few SIMD-width batches, so the ChaCha20 kernel runs whole.
  static constexpr std::size_t kBufferBlocks = 4 * kChaCha20Lanes;
  static constexpr std::size_t kBufferBytes = kBufferBlocks * kChaCha20BlockBytes;
  static constexpr std::uint64_t kNonce = 0;

  struct KnownKey {};
  SecureNormalGenerator(const ChaCha20Key& key, KnownKey) : key_(key) {}

  void refill() {
    chacha20_keystream(key_, kNonce, next_block_, kBufferBlocks, buffer_);
    next_block_ += kBufferBlocks;
    pos_ = 0;
  }

  void wipe() noexcept {
    detail::secure_wipe(key_.data(), key_.size());
    detail::secure_wipe(buffer_, sizeof(buffer_));
    detail::secure_wipe(&spare_, sizeof(spare_));
    next_block_ = 0;
    pos_ = kBufferBytes;
    has_spare_ = false;
    keyed_ = false;
  }

  void take(SecureNormalGenerator& other) noexcept {
    key_ = other.key_;
    next_block_ = other.next_block_;
    std::memcpy(buffer_, other.buffer_, sizeof(buffer_));
    pos_ = other.pos_;
    spare_ = other.spare_;
    has_spare_ = other.has_spare_;
    keyed_ = other.keyed_;
    other.wipe();
  }

  ChaCha20Key key_{};
  std::uint64_t next_block_ = 0;
  alignas(64) std::uint8_t buffer_[kBufferBytes] = {};
  std::size_t pos_ = kBufferBytes;  // next unread byte of buffer_; kBufferBytes = empty
  float spare_ = 0.0f;              // the second value of a pair that did not fit the last fill
  bool has_spare_ = false;
  bool keyed_ = true;
};

// The first n values of the stream of SecureNormalGenerator::with_key_for_testing(key), computed
// the plain way: the reference keystream one block at a time, one pair at a time. fill() must
// give the same bits (tests and benchmarks check).
inline void secure_normal_fill_reference(const ChaCha20Key& key, float* out, std::size_t n) {
  std::uint8_t block[kChaCha20BlockBytes];
  std::uint64_t next_block = 0;
  std::size_t pos = kChaCha20BlockBytes;
  auto next_word = [&] {
    if (pos == kChaCha20BlockBytes) {
      chacha20_keystream_reference(key, 0, next_block++, 1, block);
      pos = 0;
    }
    pos += 8;
    return detail::load_le64(block + pos - 8);
  };
  std::size_t i = 0;
  while (i < n) {
    const std::uint64_t word_u = next_word();
    const std::uint64_t word_v = next_word();
    float x, y;
    if (!detail::polar_pair(word_u, word_v, &x, &y)) continue;
    out[i++] = x;
    if (i < n) out[i++] = y;
  }
  detail::secure_wipe(block, sizeof(block));
}

SGT_ISA_END
}  // namespace sgt
