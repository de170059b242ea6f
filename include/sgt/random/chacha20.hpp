// ChaCha20 (D. J. Bernstein; RFC 8439): the keystream behind SecureNormalGenerator.
//
// The block function is RFC 8439's: 20 rounds (10 column + diagonal double rounds) over the
// 4x4 u32 state [constants | 256-bit key | 32-bit block counter (word 12) | 96-bit nonce (words
// 13-15)], then the input added back and the 16 words written little-endian.
//
// Two interfaces use it:
//   - the RFC one, chacha20_block(key, counter32, nonce96) and chacha20_xor(...), checked against
//     the RFC's test vectors. A 32-bit counter that would wrap is an error, as the RFC says.
//   - chacha20_keystream(key, nonce64, first_block, ...), the original ChaCha layout: a 64-bit
//     block counter in words 12-13 and a 64-bit nonce in words 14-15. It is the same function --
//     the RFC's (counter, nonce[0..3]) is the low and high half of the 64-bit counter -- with room
//     for 2^64 blocks per key. SecureNormalGenerator draws from it.
//
// chacha20_keystream computes kChaCha20Lanes blocks at once, one block per SIMD lane (16 with
// AVX-512, 8 with AVX2): the 16 state words are 16 registers, each holding that word of every
// block, so a quarter round is a handful of full-width adds, xors and rotates with no shuffles
// (a one-block SIMD layout would need three lane rotations per double round instead). The input
// words are broadcast again for the final addition rather than kept live: the 16 state registers
// plus temporaries then fit AVX-512's 32 registers. The price is a 16 x 16 word transpose on the
// way out, done through a small stack buffer. chacha20_keystream_reference is the plain
// one-block-at-a-time code the tests hold the fast one to (a whole-block remainder is computed
// by it too).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"

namespace sgt {
SGT_ISA_BEGIN

inline constexpr std::size_t kChaCha20KeyBytes = 32;
inline constexpr std::size_t kChaCha20NonceBytes = 12;
inline constexpr std::size_t kChaCha20BlockBytes = 64;

using ChaCha20Key = std::array<std::uint8_t, kChaCha20KeyBytes>;
using ChaCha20Nonce = std::array<std::uint8_t, kChaCha20NonceBytes>;  // RFC 8439's 96-bit nonce
using ChaCha20Block = std::array<std::uint8_t, kChaCha20BlockBytes>;

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

using ChaCha20Words = simd::Batch<std::uint32_t>;

inline std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}
inline void store_le32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}

// The 16 input words for block `counter` (64-bit, words 12-13) and the 64-bit nonce (14-15).
inline std::array<std::uint32_t, 16> chacha20_input(const ChaCha20Key& key, std::uint64_t nonce,
                                                    std::uint64_t counter) noexcept {
  std::array<std::uint32_t, 16> s{};
  s[0] = 0x61707865u;  // "expand 32-byte k"
  s[1] = 0x3320646eu;
  s[2] = 0x79622d32u;
  s[3] = 0x6b206574u;
  for (int i = 0; i < 8; ++i) s[4 + i] = load_le32(key.data() + 4 * i);
  s[12] = static_cast<std::uint32_t>(counter);
  s[13] = static_cast<std::uint32_t>(counter >> 32);
  s[14] = static_cast<std::uint32_t>(nonce);
  s[15] = static_cast<std::uint32_t>(nonce >> 32);
  return s;
}

inline std::uint32_t rotl32(std::uint32_t x, int n) noexcept {
  return (x << n) | (x >> (32 - n));
}

// Rotation of every lane: two shifts and an or, which GCC and Clang turn into one vprold on
// AVX-512 (xsimd 8.1 has no rotate). With GCC the shifts are written on the register as a GNU
// vector rather than through xsimd: xsimd's AVX-512 shifts are intrinsics that GCC 12 builds from
// an uninitialized register (GCC bug 105593), a hard -Werror=uninitialized under sanitizers.
template <int N>
inline ChaCha20Words rotl32(const ChaCha20Words& x) noexcept {
#if defined(__GNUC__)
  using Register = typename ChaCha20Words::register_type;
  typedef std::uint32_t Lanes __attribute__((vector_size(sizeof(Register))));
  const Register in = x;
  Lanes v;
  std::memcpy(&v, &in, sizeof(v));
  v = (v << N) | (v >> (32 - N));
  Register out;
  std::memcpy(&out, &v, sizeof(v));
  return ChaCha20Words(out);
#else
  return (x << N) | (x >> (32 - N));
#endif
}

template <class V>
inline void chacha20_quarter_round(V& a, V& b, V& c, V& d) noexcept {
  if constexpr (std::is_same_v<V, std::uint32_t>) {
    a += b, d ^= a, d = rotl32(d, 16);
    c += d, b ^= c, b = rotl32(b, 12);
    a += b, d ^= a, d = rotl32(d, 8);
    c += d, b ^= c, b = rotl32(b, 7);
  } else {
    a += b, d ^= a, d = rotl32<16>(d);
    c += d, b ^= c, b = rotl32<12>(b);
    a += b, d ^= a, d = rotl32<8>(d);
    c += d, b ^= c, b = rotl32<7>(b);
  }
}

// The 20 rounds, in place, on one block (V = u32) or on one block per lane (V = a SIMD batch).
template <class V>
inline void chacha20_rounds(V* x) noexcept {
  for (int i = 0; i < 10; ++i) {
    chacha20_quarter_round(x[0], x[4], x[8], x[12]);  // columns
    chacha20_quarter_round(x[1], x[5], x[9], x[13]);
    chacha20_quarter_round(x[2], x[6], x[10], x[14]);
    chacha20_quarter_round(x[3], x[7], x[11], x[15]);
    chacha20_quarter_round(x[0], x[5], x[10], x[15]);  // diagonals
    chacha20_quarter_round(x[1], x[6], x[11], x[12]);
    chacha20_quarter_round(x[2], x[7], x[8], x[13]);
    chacha20_quarter_round(x[3], x[4], x[9], x[14]);
  }
}

// One block: rounds over a copy of the input, input added back, words written little-endian.
inline void chacha20_block_words(const std::array<std::uint32_t, 16>& input,
                                 std::uint8_t* out) noexcept {
  std::uint32_t x[16];
  for (int i = 0; i < 16; ++i) x[i] = input[i];
  chacha20_rounds(x);
  for (int i = 0; i < 16; ++i) store_le32(out + 4 * i, x[i] + input[i]);
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Blocks computed together by chacha20_keystream (its natural unit of work).
inline constexpr std::size_t kChaCha20Lanes = detail::ChaCha20Words::size;

// RFC 8439 section 2.3: the serialized block for (key, 32-bit block counter, 96-bit nonce).
inline ChaCha20Block chacha20_block(const ChaCha20Key& key, std::uint32_t counter,
                                    const ChaCha20Nonce& nonce) {
  auto input = detail::chacha20_input(key, 0, 0);
  input[12] = counter;
  for (int i = 0; i < 3; ++i) input[13 + i] = detail::load_le32(nonce.data() + 4 * i);
  ChaCha20Block out;
  detail::chacha20_block_words(input, out.data());
  return out;
}

// Keystream blocks first_block, first_block + 1, ... (64-bit block counter, 64-bit nonce: the
// original ChaCha layout; the block counter wraps modulo 2^64), num_blocks * 64 bytes to `out`.
inline void chacha20_keystream_reference(const ChaCha20Key& key, std::uint64_t nonce,
                                         std::uint64_t first_block, std::size_t num_blocks,
                                         std::uint8_t* out) {
  for (std::size_t b = 0; b < num_blocks; ++b) {
    detail::chacha20_block_words(detail::chacha20_input(key, nonce, first_block + b),
                                 out + b * kChaCha20BlockBytes);
  }
}

inline void chacha20_keystream(const ChaCha20Key& key, std::uint64_t nonce,
                               std::uint64_t first_block, std::size_t num_blocks,
                               std::uint8_t* out) {
  using V = detail::ChaCha20Words;
  constexpr std::size_t L = kChaCha20Lanes;
  const auto input = detail::chacha20_input(key, nonce, first_block);
  std::size_t b = 0;
  for (; b + L <= num_blocks; b += L) {
    // Lane i computes block first_block + b + i; the 64-bit counter is split over words 12-13.
    alignas(64) std::uint32_t counter_lo[L];
    alignas(64) std::uint32_t counter_hi[L];
    for (std::size_t i = 0; i < L; ++i) {
      const std::uint64_t c = first_block + b + i;
      counter_lo[i] = static_cast<std::uint32_t>(c);
      counter_hi[i] = static_cast<std::uint32_t>(c >> 32);
    }
    V x[16];
    SGT_SIMD_UNROLL
    for (int w = 0; w < 16; ++w) x[w] = V(input[w]);
    x[12] = V::load_aligned(counter_lo);
    x[13] = V::load_aligned(counter_hi);
    detail::chacha20_rounds(x);
    x[12] += V::load_aligned(counter_lo);
    x[13] += V::load_aligned(counter_hi);
    SGT_SIMD_UNROLL
    for (int w = 0; w < 16; ++w) {
      if (w != 12 && w != 13) x[w] += V(input[w]);
    }
    // Transpose on the way out: word w of lane i is bytes [4w, 4w + 4) of block i.
    alignas(64) std::uint32_t lanes[16][L];
    SGT_SIMD_UNROLL
    for (int w = 0; w < 16; ++w) x[w].store_aligned(lanes[w]);
    std::uint8_t* dst = out + b * kChaCha20BlockBytes;
    for (std::size_t i = 0; i < L; ++i) {
      for (int w = 0; w < 16; ++w)
        detail::store_le32(dst + i * kChaCha20BlockBytes + 4 * w, lanes[w][i]);
    }
  }
  if (b < num_blocks) {
    chacha20_keystream_reference(key, nonce, first_block + b, num_blocks - b,
                                 out + b * kChaCha20BlockBytes);
  }
}

// RFC 8439 section 2.4: out = in XOR keystream(key, counter, nonce), n bytes (in == out is fine).
// Throws sgt::Error if the 32-bit block counter would wrap.
inline void chacha20_xor(const ChaCha20Key& key, std::uint32_t counter, const ChaCha20Nonce& nonce,
                         const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  const std::uint64_t blocks =
      (static_cast<std::uint64_t>(n) + kChaCha20BlockBytes - 1) / kChaCha20BlockBytes;
  if (blocks > (std::uint64_t{1} << 32) - counter)
    throw Error("ChaCha20: " + std::to_string(n) + " bytes from block " + std::to_string(counter) +
                " would wrap the 32-bit block counter");
  // The RFC's (counter, nonce[0..3]) is the 64-bit counter of the original layout; no wrap was
  // just checked, so the high half never changes.
  const std::uint64_t counter64 = counter | (std::uint64_t{detail::load_le32(nonce.data())} << 32);
  const std::uint64_t nonce64 = detail::load_le32(nonce.data() + 4) |
                                (std::uint64_t{detail::load_le32(nonce.data() + 8)} << 32);
  std::uint8_t ks[kChaCha20Lanes * kChaCha20BlockBytes];
  std::size_t done = 0;
  std::uint64_t block = counter64;
  while (done < n) {
    const std::size_t chunk_blocks =
        std::min<std::uint64_t>(kChaCha20Lanes, blocks - (block - counter64));
    chacha20_keystream(key, nonce64, block, chunk_blocks, ks);
    const std::size_t bytes = std::min(n - done, chunk_blocks * kChaCha20BlockBytes);
    for (std::size_t i = 0; i < bytes; ++i) out[done + i] = in[done + i] ^ ks[i];
    done += bytes;
    block += chunk_blocks;
  }
}

SGT_ISA_END
}  // namespace sgt
