// A minimal PNG writer: 8-bit RGB, no compression -- enough for `sgt audit --plot`'s heat map
// without a zlib dependency.
//
// The image data is a zlib stream (RFC 1950) of "stored" deflate blocks (RFC 1951 3.2.4: BTYPE
// 00, at most 65535 bytes each) with its Adler-32, in one IDAT chunk; every scanline starts with
// filter byte 0 (none). Chunk CRCs use io/crc32.hpp (the same CRC-32 as PNG). Any PNG reader
// accepts it; the file is a few times larger than a compressed one, which a plot of tokens x
// draws can afford.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/crc32.hpp"

namespace sgt {

namespace detail {

inline void put_u32_be(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

inline void put_png_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32_be(out, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32_be(out, crc32(body.data(), body.size()));
}

}  // namespace detail

// The PNG bytes of a width x height RGB image; `rgb` holds height rows of width * 3 bytes.
inline std::string encode_png_rgb(std::size_t width, std::size_t height,
                                  const std::vector<std::uint8_t>& rgb) {
  if (width == 0 || height == 0 || width > (1u << 20) || height > (1u << 20))
    throw Error("PNG image of " + std::to_string(width) + " x " + std::to_string(height) +
                " pixels: each side must be between 1 and 1048576");
  if (rgb.size() != width * height * 3)
    throw Error("PNG image of " + std::to_string(width) + " x " + std::to_string(height) +
                " pixels needs " + std::to_string(width * height * 3) + " RGB bytes, got " +
                std::to_string(rgb.size()));
  std::string raw;  // scanlines, each behind filter byte 0
  raw.reserve(height * (width * 3 + 1));
  for (std::size_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(rgb.data() + y * width * 3), width * 3);
  }

  std::string z = "\x78\x01";  // zlib: deflate, 32 KiB window, no preset dictionary, level 0
  std::uint32_t a = 1, b = 0;  // Adler-32
  for (unsigned char c : raw) {
    a = (a + c) % 65521u;
    b = (b + a) % 65521u;
  }
  for (std::size_t pos = 0; pos < raw.size() || pos == 0;) {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);  // BFINAL, BTYPE 00
    z.push_back(static_cast<char>(n & 0xff));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xff));
    z.push_back(static_cast<char>((~n >> 8) & 0xff));
    z.append(raw, pos, n);
    pos += n;
    if (last) break;
  }
  detail::put_u32_be(z, (b << 16) | a);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  detail::put_u32_be(ihdr, static_cast<std::uint32_t>(width));
  detail::put_u32_be(ihdr, static_cast<std::uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, filter 0, no interlace
  detail::put_png_chunk(png, "IHDR", ihdr);
  detail::put_png_chunk(png, "IDAT", z);
  detail::put_png_chunk(png, "IEND", "");
  return png;
}

// An 8-bit RGB image, row-major, 3 bytes a pixel: what a plot is drawn into before it is written.
struct RgbImage {
  std::size_t width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // [height, width, 3]
};

// Writes the PNG to `path` atomically (io/atomic_file.hpp: never a partial file).
inline void write_png_rgb(const std::string& path, std::size_t width, std::size_t height,
                          const std::vector<std::uint8_t>& rgb) {
  write_file_atomically(path, encode_png_rgb(width, height, rgb));
}

inline void write_png(const std::string& path, const RgbImage& image) {
  write_png_rgb(path, image.width, image.height, image.pixels);
}

}  // namespace sgt
