// Post-processors of tokenizer.json: TemplateProcessing (the `single` template: special tokens
// around the sequence, only when special tokens are asked for), ByteLevel (offset trimming, always
// applied when trim_offsets), Sequence. Special tokens added by a template get the empty span
// [0, 0), as in tokenizers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/pre_tokenizer.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

// An encoding being built: ids, the token strings (the trimming rules read them; views of the
// vocabulary, the template or the matched text, which outlive the list), byte spans.
struct TokenList {
  std::vector<std::int32_t> ids;
  std::vector<std::string_view> tokens;
  std::vector<Span> offsets;
  std::string_view original;  // the input the offsets point into
};

class PostProcessor {
 public:
  enum class Kind { kTemplate, kByteLevel, kSequence };

  static PostProcessor from_json(const Json& j, const std::string& path) {
    const std::string type = component_type(j, path);
    PostProcessor p;
    if (type == "TemplateProcessing") {
      p.kind_ = Kind::kTemplate;
      const std::string specials_path = sgt::detail::key_path(path, "special_tokens");
      const Json& specials = require_object(member(j, "special_tokens", path), specials_path);
      const std::string single_path = sgt::detail::key_path(path, "single");
      const Json& single = require_array(member(j, "single", path), single_path);
      for (std::size_t i = 0; i < single.size(); ++i) {
        const std::string at = index_path(single_path, i);
        const Json& piece = require_object(single[i], at);
        if (piece.size() == 1 && piece.contains("Sequence")) {
          const Json& seq = require_object(piece["Sequence"], at + ".Sequence");
          if (string_member(seq, "id", at + ".Sequence") != "A")
            fail_at(at + ".Sequence.id", "the single template may only hold sequence \"A\"");
          p.items_.push_back(Item{true, {}, {}});
        } else if (piece.size() == 1 && piece.contains("SpecialToken")) {
          const std::string sp = at + ".SpecialToken";
          const std::string name =
              string_member(require_object(piece["SpecialToken"], sp), "id", sp);
          if (!specials.contains(name))
            fail_at(sp + ".id",
                    "\"" + sgt::detail::abbreviate(name) + "\" is not in special_tokens");
          const std::string def_path = sgt::detail::key_path(specials_path, name);
          const Json& def = require_object(specials[name], def_path);
          const Json& ids = require_array(member(def, "ids", def_path), def_path + ".ids");
          const Json& tokens = require_array(member(def, "tokens", def_path), def_path + ".tokens");
          if (ids.size() != tokens.size()) fail_at(def_path, "ids and tokens differ in length");
          Item item{false, {}, {}};
          for (std::size_t k = 0; k < ids.size(); ++k) {
            if (!ids[k].is_number_unsigned() || ids[k].get<std::uint64_t>() > 0x7FFFFFFFu)
              fail_at(index_path(def_path + ".ids", k),
                      "must be a token id, got " + sgt::detail::json_excerpt(ids[k]));
            if (!tokens[k].is_string())
              fail_at(index_path(def_path + ".tokens", k), "must be a string");
            item.ids.push_back(static_cast<std::int32_t>(ids[k].get<std::uint64_t>()));
            item.tokens.push_back(tokens[k].get<std::string>());
          }
          p.items_.push_back(std::move(item));
        } else {
          fail_at(at, "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        }
      }
      require_array(member(j, "pair", path),
                    sgt::detail::key_path(path, "pair"));  // pairs: not encoded
    } else if (type == "ByteLevel") {
      p.kind_ = Kind::kByteLevel;
      p.trim_offsets_ = bool_member(j, "trim_offsets", path, true);
      p.add_prefix_space_ = bool_member(j, "add_prefix_space", path, true);
    } else if (type == "Sequence") {
      p.kind_ = Kind::kSequence;
      const std::string list_path = sgt::detail::key_path(path, "processors");
      const Json& list = require_array(member(j, "processors", path), list_path);
      for (std::size_t i = 0; i < list.size(); ++i)
        p.steps_.push_back(from_json(list[i], index_path(list_path, i)));
    } else {
      unsupported_type(path, type);
    }
    return p;
  }

  // The template's special tokens, for checks at load.
  void collect_template_ids(std::vector<std::int32_t>& out) const {
    for (const Item& item : items_) out.insert(out.end(), item.ids.begin(), item.ids.end());
    for (const PostProcessor& s : steps_) s.collect_template_ids(out);
  }

  void process(TokenList& e, bool add_special_tokens) const {
    switch (kind_) {
      case Kind::kTemplate: {
        if (!add_special_tokens) return;
        TokenList out;
        for (const Item& item : items_) {
          if (item.is_sequence) {
            out.ids.insert(out.ids.end(), e.ids.begin(), e.ids.end());
            out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
            out.offsets.insert(out.offsets.end(), e.offsets.begin(), e.offsets.end());
          } else {
            out.ids.insert(out.ids.end(), item.ids.begin(), item.ids.end());
            out.tokens.insert(out.tokens.end(), item.tokens.begin(), item.tokens.end());
            out.offsets.insert(out.offsets.end(), item.ids.size(), Span{0, 0});
          }
        }
        e = std::move(out);
        return;
      }
      case Kind::kByteLevel:
        if (trim_offsets_) trim(e);
        return;
      case Kind::kSequence:
        for (const PostProcessor& s : steps_) s.process(e, add_special_tokens);
        return;
    }
  }

 private:
  struct Item {
    bool is_sequence;
    std::vector<std::int32_t> ids;
    std::vector<std::string> tokens;
  };

  // tokenizers' byte_level::process_offsets: leading and trailing spaces of a token ('Ġ' or
  // white space) are taken off its span. tokenizers counts them in characters of the original
  // text (Python offsets), and a token's 'Ġ' may stand for a longer character (the prefix space
  // ByteLevel adds takes the span of the character it precedes), so the arithmetic is done on
  // character offsets and converted back.
  void trim(TokenList& e) const {
    const char32_t space = byte_to_char()[' '];
    const auto is_space = [&](char32_t c) { return c == space || unicode::is_white_space(c); };
    std::vector<std::size_t> char_begin;  // byte offset of each character, then the end
    for (std::size_t i = 0; i < e.original.size();) {
      char_begin.push_back(i);
      i += unicode::char_length(static_cast<unsigned char>(e.original[i]));
    }
    char_begin.push_back(e.original.size());
    const auto to_char = [&](std::size_t byte) {
      return static_cast<std::size_t>(std::lower_bound(char_begin.begin(), char_begin.end(), byte) -
                                      char_begin.begin());
    };
    // Overlapping added-token pieces (rstrip) are suffixes of one run of white space: each is
    // counted from the one before it, so that the run costs its length and not its square.
    const char* run = nullptr;  // the last all-space token: where it starts, ends, its length
    const char* run_end = nullptr;
    std::size_t run_chars = 0;
    for (std::size_t i = 0; i < e.ids.size(); ++i) {
      std::size_t leading = 0, trailing = 0;
      const std::string_view t = e.tokens[i];
      if (run && !t.empty() && t.data() >= run && t.data() + t.size() == run_end) {
        for (const char* c = run; c < t.data(); ++c)
          run_chars -= !unicode::is_continuation(static_cast<unsigned char>(*c));
        run = t.data();
        leading = trailing = run_chars;
      } else {
        std::size_t count = 0;
        bool in_leading = true;
        for (std::size_t k = 0; k < t.size();) {
          std::size_t n = 0;
          const bool sp = is_space(unicode::decode(t, k, &n));
          k += n;
          ++count;
          if (in_leading && sp)
            ++leading;
          else
            in_leading = false;
          trailing = sp ? trailing + 1 : 0;
        }
        if (count > 0 && leading == count) {
          run = t.data();
          run_end = t.data() + t.size();
          run_chars = count;
        }
      }
      if (leading == 0 && trailing == 0) continue;
      std::size_t begin = to_char(e.offsets[i].begin), end = to_char(e.offsets[i].end);
      if (leading > 0) {
        const bool is_first = i == 0 || begin == 0;
        if (is_first && add_prefix_space_ && leading == 1) leading = 0;
        begin = std::min(begin + leading, end);
      }
      if (trailing > 0 && end >= trailing) end = std::max(end - trailing, begin);
      e.offsets[i] = {char_begin[std::min(begin, char_begin.size() - 1)],
                      char_begin[std::min(end, char_begin.size() - 1)]};
    }
  }

  Kind kind_ = Kind::kSequence;
  std::vector<Item> items_;
  bool trim_offsets_ = true, add_prefix_space_ = true;
  std::vector<PostProcessor> steps_;
};

}  // namespace sgt::text::detail
