// UTF-8 and the few Unicode properties the tokenizer pipeline needs, with the exact semantics of
// the Rust code Hugging Face `tokenizers` runs: validity as Rust's `str` (no surrogates, no
// overlong forms, nothing past U+10FFFF), `char::is_whitespace` (White_Space), `char::is_numeric`
// (Nd, Nl, No), regex `\w`, and `String::from_utf8_lossy` for decoding bytes that are not UTF-8.
// Categories come from utf8proc, the same tables the NFC normalizer uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <utf8proc.h>

namespace sgt::text::unicode {

inline bool is_continuation(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// The length of the well-formed UTF-8 sequence at s[i], or 0 if it is not one. When it is not,
// *bad_length (if given) receives the length of its maximal ill-formed prefix (at least 1): the
// unit that Rust's from_utf8_lossy (and the Unicode recommendation) replaces with one U+FFFD.
inline std::size_t sequence_length(std::string_view s, std::size_t i,
                                   std::size_t* bad_length = nullptr) {
  const auto at = [&](std::size_t k) -> int {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1;
  };
  const int b0 = at(0);
  std::size_t good = 1;
  auto fail = [&](std::size_t n) -> std::size_t {
    if (bad_length) *bad_length = n;
    return 0;
  };
  if (b0 < 0x80) return 1;
  int width = 0, lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return fail(1);
  }
  const int b1 = at(1);
  if (b1 < lo || b1 > hi) return fail(good);
  ++good;
  for (int k = 2; k < width; ++k) {
    const int b = at(static_cast<std::size_t>(k));
    if (b < 0 || !is_continuation(static_cast<unsigned char>(b))) return fail(good);
    ++good;
  }
  return static_cast<std::size_t>(width);
}

// The byte position of the first ill-formed sequence, or npos when `s` is valid UTF-8.
inline std::size_t first_invalid_byte(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// Decodes the (valid) sequence at s[i]; *length receives its byte count.
inline char32_t decode(std::string_view s, std::size_t i, std::size_t* length) {
  const auto b = [&](std::size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]));
  };
  const char32_t b0 = b(0);
  if (b0 < 0x80) {
    *length = 1;
    return b0;
  }
  if (b0 < 0xE0) {
    *length = 2;
    return ((b0 & 0x1F) << 6) | (b(1) & 0x3F);
  }
  if (b0 < 0xF0) {
    *length = 3;
    return ((b0 & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  }
  *length = 4;
  return ((b0 & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

// The byte length of the (valid) character starting with byte b0.
inline std::size_t char_length(unsigned char b0) {
  return b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

// Rust's char::is_whitespace: the White_Space property.
inline bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

inline utf8proc_category_t category(char32_t c) {
  return static_cast<utf8proc_category_t>(utf8proc_category(static_cast<utf8proc_int32_t>(c)));
}

// Rust's char::is_numeric: general categories Nd, Nl, No.
inline bool is_numeric(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

// Regex `\w` in Unicode mode: letters, marks, decimal digits, connector punctuation, joiners
// (letter numbers count as alphabetic).
inline bool is_word_character(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return c == 0x200C || c == 0x200D;
  }
}

// Rust's String::from_utf8_lossy: every maximal ill-formed subsequence becomes one U+FFFD.
inline std::string lossy_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    std::size_t bad = 0;
    const std::size_t n = sequence_length(bytes, i, &bad);
    if (n) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

}  // namespace sgt::text::unicode
