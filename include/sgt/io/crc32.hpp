// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF), the
// checksum of ZIP entries, as zlib's crc32() computes it. Used by the torch archive writer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace sgt {

namespace detail {
inline const std::array<std::uint32_t, 256>& crc32_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}
}  // namespace detail

// `crc` continues a checksum over earlier bytes: crc32(b, nb, crc32(a, na)) == crc32 of a then b.
inline std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept {
  const auto& table = detail::crc32_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

}  // namespace sgt
