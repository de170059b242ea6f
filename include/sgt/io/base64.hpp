// Standard base64 (RFC 4648 section 4: the alphabet A-Z a-z 0-9 + /, '=' padding, no line
// breaks), the encoding vLLM decodes prompt embeddings with (`b64decode(..., validate=True)`,
// which refuses anything else). The decoder is as strict: a server taking prompt embeddings
// accepts exactly what vLLM accepts.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/core/error.hpp"

namespace sgt {

inline std::string base64_encode(const void* data, std::size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const unsigned v = (unsigned(p[i]) << 16) | (unsigned(p[i + 1]) << 8) | p[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    const unsigned v = unsigned(p[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (size - i == 2) {
    const unsigned v = (unsigned(p[i]) << 16) | (unsigned(p[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// The bytes of `text`, refusing (sgt::Error, naming the offending character's position) a length
// that is not a multiple of 4, a character outside the alphabet, misplaced padding, and output
// longer than max_bytes -- checked from the length before anything is decoded.
inline std::vector<unsigned char> base64_decode(std::string_view text, std::size_t max_bytes) {
  if (text.size() % 4 != 0)
    throw Error("base64: the length " + std::to_string(text.size()) + " is not a multiple of 4");
  const std::size_t padding =
      text.empty() ? 0 : (text.back() == '=') + (text.size() >= 2 && text[text.size() - 2] == '=');
  const std::size_t size = text.size() / 4 * 3 - padding;
  if (size > max_bytes)
    throw Error("base64: " + std::to_string(size) + " bytes, more than the limit of " +
                std::to_string(max_bytes));
  auto value = [&](std::size_t i) -> unsigned {
    const char c = text[i];
    if (c >= 'A' && c <= 'Z') return unsigned(c - 'A');
    if (c >= 'a' && c <= 'z') return unsigned(c - 'a') + 26;
    if (c >= '0' && c <= '9') return unsigned(c - '0') + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    throw Error("base64: character " + std::to_string(i) + " is not in the alphabet");
  };
  std::vector<unsigned char> out;
  out.reserve(size);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const std::size_t pad = last ? padding : 0;
    unsigned v = (value(i) << 18) | (value(i + 1) << 12);
    if (pad < 2) v |= value(i + 2) << 6;
    if (pad < 1) v |= value(i + 3);
    // The bits padding drops must be zero (Python's decoder ignores them, but a canonical
    // encoding has none; refusing them keeps one spelling per byte string).
    if ((pad == 2 && (v & 0xffff)) || (pad == 1 && (v & 0xff)))
      throw Error("base64: non-zero bits before the padding at character " + std::to_string(i));
    out.push_back(static_cast<unsigned char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<unsigned char>(v >> 8));
    if (pad < 1) out.push_back(static_cast<unsigned char>(v));
  }
  return out;
}

}  // namespace sgt
