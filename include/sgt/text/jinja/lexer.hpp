// Jinja2 lexer: template source -> tokens, with Jinja2's whitespace rules applied here.
//
// transformers renders with trim_blocks=True and lstrip_blocks=True, so this lexer does what
// jinja2's does with those settings (jinja2/lexer.py, tokeniter):
//   - newlines \r\n and \r become \n, and one trailing newline of the source is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}` all after it;
//   - trim_blocks: a block or comment tag eats the one "\n" right after it;
//   - lstrip_blocks: spaces/tabs between a line start and a block or comment tag are removed
//     (not before `{{`, not with `{%+`); "line start" includes the text right after a tag that
//     consumed a newline, and the start of the template.
// Comments produce no token.
#pragma once

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/text/jinja/value.hpp"

namespace sgt::text::jinja {

struct SourcePos {
  std::size_t line = 1, column = 1;
};

// An error located in the template: carries line and column so that ChatTemplate can prefix
// "chat_template line L, column C".
struct LocatedError : TemplateError {
  LocatedError(std::string message, SourcePos at) : TemplateError(std::move(message)), pos(at) {}
  SourcePos pos;
};

struct Token {
  enum class Kind {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Kind kind;
  std::string value;  // text, name, decoded string literal, number text, operator
  SourcePos pos;
};

namespace detail {

// Length of the Python whitespace character (str.isspace, what jinja2's \s matches) at s[p],
// or 0.
inline std::size_t space_at(const std::string& s, std::size_t p) {
  if (p >= s.size()) return 0;
  std::size_t n = 1;
  return utf8::is_python_space(utf8::decode(s, p, &n)) ? n : 0;
}

// Python's str.rstrip(): Unicode whitespace included.
inline void rstrip_all(std::string& s) {
  while (!s.empty()) {
    std::size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (!space_at(s, start)) break;
    s.erase(start);
  }
}

// Skips whitespace from p (jinja2's `\s*` after `-%}`).
inline std::size_t skip_space(const std::string& s, std::size_t p) {
  while (std::size_t n = space_at(s, p)) p += n;
  return p;
}

// Decodes a Python string literal body the way jinja2 does ("unicode-escape"): unknown escapes
// are kept as written.
inline std::string decode_string_literal(const std::string& body, SourcePos pos) {
  std::string out;
  for (std::size_t k = 0; k < body.size(); ++k) {
    const char c = body[k];
    if (c != '\\' || k + 1 == body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++k];
    auto hex = [&](std::size_t digits) -> std::uint32_t {
      std::uint32_t v = 0;
      for (std::size_t d = 1; d <= digits; ++d) {
        if (k + d >= body.size()) throw LocatedError("truncated escape in a string literal", pos);
        const char h = body[k + d];
        v <<= 4;
        if (h >= '0' && h <= '9')
          v |= static_cast<std::uint32_t>(h - '0');
        else if (h >= 'a' && h <= 'f')
          v |= static_cast<std::uint32_t>(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
          v |= static_cast<std::uint32_t>(h - 'A' + 10);
        else
          throw LocatedError("bad hex digit in a string literal escape", pos);
      }
      k += digits;
      return v;
    };
    switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
        utf8::encode(hex(2), out);
        break;
      case 'u':
      case 'U': {
        const std::uint32_t cp = hex(e == 'u' ? 4 : 8);
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
          throw LocatedError("string literal escape is not a Unicode scalar value", pos);
        utf8::encode(cp, out);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          std::uint32_t v = static_cast<std::uint32_t>(e - '0');
          for (int d = 0; d < 2 && k + 1 < body.size() && body[k + 1] >= '0' && body[k + 1] <= '7';
               ++d)
            v = v * 8 + static_cast<std::uint32_t>(body[++k] - '0');
          utf8::encode(v, out);
        } else if (e == 'N') {
          throw LocatedError("\\N{...} escapes in string literals are not supported", pos);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

}  // namespace detail

inline std::vector<Token> tokenize(const std::string& raw_source) {
  // Newlines as jinja2 normalizes them, and one trailing newline dropped.
  std::string src;
  src.reserve(raw_source.size());
  for (std::size_t k = 0; k < raw_source.size(); ++k) {
    if (raw_source[k] == '\r') {
      src.push_back('\n');
      if (k + 1 < raw_source.size() && raw_source[k + 1] == '\n') ++k;
    } else {
      src.push_back(raw_source[k]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();

  std::vector<Token> tokens;
  std::size_t pos = 0, line = 1, line_start = 0;
  auto where = [&](std::size_t p) {
    // line/column of byte p (p >= line_start of the current line is tracked lazily)
    SourcePos sp;
    sp.line = line;
    sp.column = p - line_start + 1;
    return sp;
  };
  auto advance_to = [&](std::size_t p) {
    for (std::size_t k = pos; k < p; ++k)
      if (src[k] == '\n') {
        ++line;
        line_start = k + 1;
      }
    pos = p;
  };
  bool line_starting = true;  // the previous tag ended with a newline (or we are at the start)

  while (pos < src.size()) {
    // Find the next tag opening.
    std::size_t open = pos;
    char kind = 0;
    while (true) {
      open = src.find('{', open);
      if (open == std::string::npos || open + 1 >= src.size()) {
        open = std::string::npos;
        break;
      }
      const char n = src[open + 1];
      if (n == '{' || n == '%' || n == '#') {
        kind = n;
        break;
      }
      ++open;
    }
    std::string text = src.substr(pos, (open == std::string::npos ? src.size() : open) - pos);
    const SourcePos text_pos = where(pos);
    if (open == std::string::npos) {
      if (!text.empty()) tokens.push_back({Token::Kind::kText, text, text_pos});
      advance_to(src.size());
      break;
    }
    const char sign = open + 2 < src.size() ? src[open + 2] : 0;
    if (sign == '-') {
      detail::rstrip_all(text);
    } else if (sign != '+' && kind != '{') {
      const std::size_t nl = text.rfind('\n');
      const std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if (l_pos > 0 || line_starting) {
        if (l_pos < text.size() && detail::skip_space(text, l_pos) == text.size())
          text.erase(l_pos);
      }
    }
    if (!text.empty()) tokens.push_back({Token::Kind::kText, text, text_pos});
    advance_to(open);
    const SourcePos tag_pos = where(open);
    std::size_t p = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);

    if (kind == '#') {
      const std::size_t close = src.find("#}", p);
      if (close == std::string::npos)
        throw LocatedError("missing end of comment tag '#}'", tag_pos);
      std::size_t end = close + 2;
      if (close > p && src[close - 1] == '-') {
        end = detail::skip_space(src, end);
      } else if (!(close > p && src[close - 1] == '+') && end < src.size() && src[end] == '\n') {
        ++end;
      }
      line_starting = src[end - 1] == '\n';
      advance_to(end);
      continue;
    }

    const bool is_block = kind == '%';
    tokens.push_back({is_block ? Token::Kind::kBlockBegin : Token::Kind::kVarBegin, "", tag_pos});
    advance_to(p);
    int depth = 0;  // brackets: a '}}' or '%}' inside them is an operator, as in jinja2
    while (true) {
      p = detail::skip_space(src, p);
      advance_to(p);
      if (p >= src.size())
        throw LocatedError(is_block ? "missing end of block tag '%}'" : "missing end of '}}'",
                           tag_pos);
      const SourcePos tp = where(p);
      // The closing tag, possibly with '-' / '+'.
      if (depth == 0) {
        const char* close = is_block ? "%}" : "}}";
        std::size_t q = p;
        char csign = 0;
        if ((src[q] == '-' || (is_block && src[q] == '+')) && src.compare(q + 1, 2, close) == 0) {
          csign = src[q];
          ++q;
        }
        if (src.compare(q, 2, close) == 0) {
          std::size_t end = q + 2;
          if (csign == '-') {
            end = detail::skip_space(src, end);
          } else if (is_block && csign != '+' && end < src.size() && src[end] == '\n') {
            ++end;
          }
          line_starting = src[end - 1] == '\n';
          tokens.push_back({is_block ? Token::Kind::kBlockEnd : Token::Kind::kVarEnd, "", tp});
          advance_to(end);
          p = end;
          break;
        }
      }
      const char c = src[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t q = p;
        while (q < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[q])) || src[q] == '_'))
          ++q;
        tokens.push_back({Token::Kind::kName, src.substr(p, q - p), tp});
        p = q;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t q = p;
        auto digits = [&] {
          while (q < src.size() &&
                 (std::isdigit(static_cast<unsigned char>(src[q])) || src[q] == '_'))
            ++q;
        };
        digits();
        bool is_float = false;
        if (q + 1 < src.size() && src[q] == '.' &&
            std::isdigit(static_cast<unsigned char>(src[q + 1]))) {
          is_float = true;
          ++q;
          digits();
        }
        if (q < src.size() && (src[q] == 'e' || src[q] == 'E')) {
          std::size_t r = q + 1;
          if (r < src.size() && (src[r] == '+' || src[r] == '-')) ++r;
          if (r < src.size() && std::isdigit(static_cast<unsigned char>(src[r]))) {
            is_float = true;
            q = r;
            digits();
          }
        }
        std::string num;
        for (std::size_t k = p; k < q; ++k)
          if (src[k] != '_') num.push_back(src[k]);
        tokens.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInt, num, tp});
        p = q;
      } else if (c == '\'' || c == '"') {
        std::size_t q = p + 1;
        while (q < src.size() && src[q] != c) q += src[q] == '\\' ? 2 : 1;
        if (q >= src.size()) throw LocatedError("unterminated string literal", tp);
        tokens.push_back({Token::Kind::kString,
                          detail::decode_string_literal(src.substr(p + 1, q - p - 1), tp), tp});
        p = q + 1;
      } else {
        static const char* const ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                          "/",  "%",  "~",  "<",  ">",  "=",  ".", ",", ":",
                                          "|",  "(",  ")",  "[",  "]",  "{",  "}"};
        std::string op;
        for (const char* o : ops)
          if (src.compare(p, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        if (op.empty()) throw LocatedError(std::string("unexpected character '") + c + "'", tp);
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        tokens.push_back({Token::Kind::kOp, op, tp});
        p += op.size();
      }
      advance_to(p);
    }
  }
  tokens.push_back({Token::Kind::kEof, "", where(src.size())});
  return tokens;
}

}  // namespace sgt::text::jinja
