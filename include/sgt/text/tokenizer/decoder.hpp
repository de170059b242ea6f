// Decoders of tokenizer.json: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
// Each maps the list of token strings to a new list (tokenizers' decode_chain); the tokenizer
// joins the final list. Bytes that do not form UTF-8 become U+FFFD as in tokenizers (Rust's
// from_utf8_lossy for ByteLevel, one U+FFFD per byte for ByteFallback).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/limits.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/pattern.hpp"
#include "sgt/text/tokenizer/pre_tokenizer.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

class Decoder {
 public:
  enum class Kind { kByteLevel, kMetaspace, kByteFallback, kFuse, kStrip, kReplace, kSequence };

  static Decoder from_json(const Json& j, const std::string& path) {
    const std::string type = component_type(j, path);
    Decoder d;
    d.path_ = path;
    if (type == "ByteLevel") {
      d.kind_ = Kind::kByteLevel;
    } else if (type == "Metaspace") {
      d.kind_ = Kind::kMetaspace;
      d.metaspace_ = MetaspaceOptions::from_json(j, path);
    } else if (type == "ByteFallback") {
      d.kind_ = Kind::kByteFallback;
    } else if (type == "Fuse") {
      d.kind_ = Kind::kFuse;
    } else if (type == "Strip") {
      d.kind_ = Kind::kStrip;
      const std::string content = string_member(j, "content", path);
      std::size_t n = 0;
      if (content.empty() || (d.strip_char_ = unicode::decode(content, 0, &n), n != content.size()))
        fail_at(sgt::detail::key_path(path, "content"), "must be exactly one character");
      d.strip_start_ = uint_member(j, "start", path, 1u << 20);
      d.strip_stop_ = uint_member(j, "stop", path, 1u << 20);
    } else if (type == "Replace") {
      d.kind_ = Kind::kReplace;
      d.pattern_ =
          Pattern::from_json(member(j, "pattern", path), sgt::detail::key_path(path, "pattern"));
      d.content_ = string_member(j, "content", path);
    } else if (type == "Sequence") {
      d.kind_ = Kind::kSequence;
      const std::string list_path = sgt::detail::key_path(path, "decoders");
      const Json& list = require_array(member(j, "decoders", path), list_path);
      for (std::size_t i = 0; i < list.size(); ++i)
        d.steps_.push_back(from_json(list[i], index_path(list_path, i)));
    } else {
      unsupported_type(path, type);
    }
    return d;
  }

  // Replace's regex runs on the budget's retries and its growth is charged before it is built
  // (positions in messages are token indexes).
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, WorkBudget& budget) const {
    switch (kind_) {
      case Kind::kByteLevel:
        return {byte_level(tokens)};
      case Kind::kMetaspace:
        for (std::size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          for_each_char(tokens[i], [&](char32_t c, std::string_view raw) {
            if (c != metaspace_.replacement)
              out.append(raw);
            else if (!(i == 0 && metaspace_.scheme != PrependScheme::kNever))
              out += ' ';
          });
          tokens[i] = std::move(out);
        }
        return tokens;
      case Kind::kByteFallback:
        return byte_fallback(tokens);
      case Kind::kFuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        return {all};
      }
      case Kind::kStrip:
        for (auto& t : tokens) t = strip(t);
        return tokens;
      case Kind::kReplace:
        for (std::size_t i = 0; i < tokens.size(); ++i) {
          std::string& t = tokens[i];
          const std::vector<PatternPiece> pieces =
              pattern_.pieces(t, budget, [i](std::size_t) { return i; });
          std::size_t size = t.size();
          for (const PatternPiece& p : pieces)
            if (p.is_match) size = size - (p.end - p.begin) + content_.size();
          budget.charge_growth(t.size(), size, path_, i);
          NormalizedText n(t, 0);
          n.replace(pieces, content_);
          t = n.text();
        }
        return tokens;
      case Kind::kSequence:
        for (const Decoder& step : steps_) tokens = step.decode_chain(std::move(tokens), budget);
        return tokens;
    }
    return tokens;
  }

 private:
  template <class F>
  static void for_each_char(std::string_view s, F f) {
    for (std::size_t i = 0; i < s.size();) {
      std::size_t n = 0;
      const char32_t c = unicode::decode(s, i, &n);
      f(c, s.substr(i, n));
      i += n;
    }
  }

  static std::string byte_level(const std::vector<std::string>& tokens) {
    static const std::unordered_map<char32_t, unsigned char> char_to_byte = [] {
      std::unordered_map<char32_t, unsigned char> m;
      const auto& table = byte_to_char();
      for (int b = 0; b < 256; ++b)
        m[table[static_cast<std::size_t>(b)]] = static_cast<unsigned char>(b);
      return m;
    }();
    std::string bytes;
    for (const std::string& t : tokens) {
      std::string mapped;
      bool all = true;
      for_each_char(t, [&](char32_t c, std::string_view) {
        const auto it = char_to_byte.find(c);
        if (it == char_to_byte.end())
          all = false;
        else
          mapped += static_cast<char>(it->second);
      });
      bytes += all ? mapped : t;
    }
    return unicode::lossy_utf8(bytes);
  }

  // The byte of a "<0xNN>" token, as Rust's u8::from_str_radix(&token[3..5], 16) reads it.
  static int fallback_byte(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    const auto hex = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : -1;
    };
    if (t[3] == '+') return hex(t[4]);
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }

  static std::vector<std::string> byte_fallback(const std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string pending;
    const auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::first_invalid_byte(pending) == std::string_view::npos) {
        out.push_back(pending);
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (const std::string& t : tokens) {
      const int b = fallback_byte(t);
      if (b >= 0) {
        pending += static_cast<char>(b);
      } else {
        flush();
        out.push_back(t);
      }
    }
    flush();
    return out;
  }

  std::string strip(const std::string& t) const {
    std::vector<std::pair<std::size_t, std::size_t>> chars;  // byte begin, length
    std::vector<char32_t> cps;
    for (std::size_t i = 0; i < t.size();) {
      std::size_t n = 0;
      cps.push_back(unicode::decode(t, i, &n));
      chars.emplace_back(i, n);
      i += n;
    }
    std::size_t start_cut = 0;
    for (std::size_t i = 0; i < cps.size() && i < strip_start_; ++i) {
      if (cps[i] != strip_char_) break;
      start_cut = i + 1;
    }
    std::size_t stop_cut = cps.size();
    for (std::size_t i = 0; i < strip_stop_ && i < cps.size(); ++i) {
      const std::size_t index = cps.size() - i - 1;
      if (cps[index] != strip_char_) break;
      stop_cut = index;
    }
    if (stop_cut <= start_cut) return std::string();
    const std::size_t b = chars[start_cut].first;
    const std::size_t e = stop_cut == cps.size() ? t.size() : chars[stop_cut].first;
    return t.substr(b, e - b);
  }

  Kind kind_ = Kind::kSequence;
  std::string path_;  // in tokenizer.json, for messages
  MetaspaceOptions metaspace_;
  char32_t strip_char_ = U' ';
  std::uint64_t strip_start_ = 0, strip_stop_ = 0;
  Pattern pattern_;
  std::string content_;
  std::vector<Decoder> steps_;
};

}  // namespace sgt::text::detail
