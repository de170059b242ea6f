// Added tokens (tokenizers' AddedVocabulary): the tokens of tokenizer.json's "added_tokens",
// special or not, recognized in the text BEFORE the model sees it. Tokens with normalized=false
// are matched in the original text; the rest of the text is then normalized piece by piece and
// the tokens with normalized=true are matched (by their normalized content) in those pieces.
// Matching is leftmost-longest, non-overlapping (tokenizers' Aho-Corasick), then single_word,
// lstrip and rstrip apply as in tokenizers' find_matches.
//
// Ids are assigned as tokenizers assigns them when it loads the file (the "id" written in the
// file is not trusted by the reference either): a token already in the model's vocabulary keeps
// that id, a new one gets the next id after the model's vocabulary and the added ones so far.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sgt/text/tokenizer/bpe.hpp"
#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/normalizer.hpp"
#include "sgt/text/tokenizer/pre_tokenizer.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

struct AddedToken {
  std::int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  // What id_to_token and decode give for it: tokenizers 0.23 answers with the normalized content
  // for a token with normalized=true (Llama 2's "<unk>" reads back as "\u2581<unk>"; a decode
  // with skip_special_tokens then keeps it, as that string is not a special token).
  std::string text;
};

// Leftmost-longest, non-overlapping matching of a set of strings (tokenizers builds an
// Aho-Corasick automaton with MatchKind::LeftmostLongest). The patterns are kept sorted; at each
// position the range of patterns that agree with the text so far narrows one byte at a time
// (binary search), so a file with tens of thousands of reserved tokens costs O(length * log P)
// per position, not O(P). Among identical patterns the first added wins.
class TokenMatcher {
 public:
  void add(std::string pattern, std::int32_t id) {
    if (pattern.empty()) return;  // an empty pattern would match everywhere: never useful
    entries_.push_back({std::move(pattern), id});
  }
  void finish() {
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const Entry& a, const Entry& b) { return a.pattern < b.pattern; });
  }

  struct Match {
    std::size_t begin, end;
    std::int32_t id;
  };
  std::vector<Match> find_all(std::string_view text) const {
    std::vector<Match> out;
    if (entries_.empty()) return out;
    for (std::size_t i = 0; i < text.size();) {
      const Entry* best = longest_at(text, i);
      if (best) {
        out.push_back({i, i + best->pattern.size(), best->id});
        i += best->pattern.size();
      } else {
        ++i;
      }
    }
    return out;
  }

 private:
  struct Entry {
    std::string pattern;
    std::int32_t id;
  };

  const Entry* longest_at(std::string_view text, std::size_t i) const {
    auto lo = entries_.begin(), hi = entries_.end();
    const Entry* best = nullptr;
    for (std::size_t k = 0; lo != hi; ++k) {
      // [lo, hi): the patterns that start with text[i, i + k). The one of length k sorts first.
      if (lo->pattern.size() == k) {
        best = &*lo;
        while (lo != hi && lo->pattern.size() == k) ++lo;
        if (lo == hi) break;
      }
      if (i + k >= text.size()) break;
      const auto c = static_cast<unsigned char>(text[i + k]);
      lo = std::lower_bound(lo, hi, c, [k](const Entry& e, unsigned char v) {
        return static_cast<unsigned char>(e.pattern[k]) < v;
      });
      hi = std::upper_bound(lo, hi, c, [k](unsigned char v, const Entry& e) {
        return v < static_cast<unsigned char>(e.pattern[k]);
      });
    }
    return best;
  }

  std::vector<Entry> entries_;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;

  void load(const Json& list, const std::string& path, const BpeModel& model,
            const std::optional<Normalizer>& normalizer) {
    require_array(list, path);
    const auto model_size = static_cast<std::int64_t>(model.vocab_size());
    std::int64_t max_added_id = -1;  // the largest id in by_content_ so far
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string at = index_path(path, i);
      const Json& j = require_object(list[i], at);
      AddedToken t;
      uint_member(j, "id", at, 0xFFFFFFFFull);  // checked, but the id is assigned as below
      t.content = string_member(j, "content", at);
      t.single_word = bool_member(j, "single_word", at, false);
      t.lstrip = bool_member(j, "lstrip", at, false);
      t.rstrip = bool_member(j, "rstrip", at, false);
      t.special = bool_member(j, "special", at, false);
      t.normalized = bool_member(j, "normalized", at, !t.special);
      if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
      if (t.special) specials_.insert(t.content);
      if (const auto it = by_content_.find(t.content); it != by_content_.end()) {
        t.id = it->second;
      } else if (const auto id = model.token_to_id(t.content)) {
        t.id = *id;
      } else if (by_content_.empty()) {
        t.id = static_cast<std::int32_t>(model_size);
      } else {
        const std::int64_t max = max_added_id;
        const std::int64_t next = (max >= model_size || model_size == 0) ? max + 1 : model_size;
        if (next > std::numeric_limits<std::int32_t>::max()) fail_at(at, "too many added tokens");
        t.id = static_cast<std::int32_t>(next);
      }
      t.text = t.content;
      if (t.normalized && normalizer) {
        NormalizedText content(t.content, 0);
        normalizer->normalize(content);
        t.text = content.text();
      }
      by_content_[t.content] = t.id;
      max_added_id = std::max<std::int64_t>(max_added_id, t.id);
      by_id_[t.id] = t;
    }
    // The matchers, from the final definitions (special tokens first, as tokenizers orders them).
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& kv : by_id_) {
        const AddedToken& t = kv.second;
        if ((pass == 0) != (specials_.count(t.content) > 0)) continue;
        if (!t.normalized) {
          raw_matcher_.add(t.content, t.id);
        } else {
          normalized_matcher_.add(t.text, t.id);
        }
      }
    }
    raw_matcher_.finish();
    normalized_matcher_.finish();
  }

  std::size_t size() const noexcept { return by_content_.size(); }
  const std::map<std::int32_t, AddedToken>& by_id() const noexcept { return by_id_; }
  bool is_special(const std::string& content) const { return specials_.count(content) > 0; }

  std::optional<std::int32_t> token_to_id(std::string_view content) const {
    const auto it = by_content_.find(std::string(content));
    if (it == by_content_.end()) return std::nullopt;
    return it->second;
  }
  const AddedToken* find(std::int32_t id) const {
    const auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &it->second;
  }

  // tokenizers' AddedVocabulary::extract_and_normalize: the input as pieces, added tokens
  // recognized, every other piece normalized.
  std::vector<Piece> extract_and_normalize(std::string_view input,
                                           const std::optional<Normalizer>& normalizer) const {
    std::vector<Piece> pieces;
    split_matches(NormalizedText(input, 0), raw_matcher_, pieces);
    std::vector<Piece> out;
    for (Piece& p : pieces) {
      if (p.added_id) {
        out.push_back(std::move(p));
        continue;
      }
      if (normalizer) normalizer->normalize(p.text);
      split_matches(p.text, normalized_matcher_, out);
    }
    return out;
  }

 private:
  static std::size_t leading_white_space(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
      std::size_t n = 0;
      if (!unicode::is_white_space(unicode::decode(s, i, &n))) break;
      i += n;
    }
    return i;
  }
  // Where the trailing white space of s begins.
  static std::size_t trailing_white_space_begin(std::string_view s) {
    std::size_t i = s.size();
    while (i > 0) {
      std::size_t b = i - 1;
      while (b > 0 && unicode::is_continuation(static_cast<unsigned char>(s[b]))) --b;
      std::size_t n = 0;
      if (!unicode::is_white_space(unicode::decode(s, b, &n))) break;
      i = b;
    }
    return i;
  }
  static bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    std::size_t b = s.size() - 1;
    while (b > 0 && unicode::is_continuation(static_cast<unsigned char>(s[b]))) --b;
    std::size_t n = 0;
    return unicode::is_word_character(unicode::decode(s, b, &n));
  }
  static bool starts_with_word(std::string_view s) {
    std::size_t n = 0;
    return !s.empty() && unicode::is_word_character(unicode::decode(s, 0, &n));
  }

  // tokenizers' find_matches + split_with_indices; appends the non-empty pieces to `out`.
  void split_matches(const NormalizedText& text, const TokenMatcher& matcher,
                     std::vector<Piece>& out) const {
    const std::string& s = text.text();
    if (s.empty()) return;
    std::size_t start_offset = 0;
    auto push = [&](std::size_t b, std::size_t e, std::optional<std::int32_t> id) {
      if (b < e) out.push_back(Piece{text.slice(b, e), id});
    };
    for (const TokenMatcher::Match& m : matcher.find_all(s)) {
      std::size_t start = m.begin, stop = m.end;
      const AddedToken& t = by_id_.at(m.id);
      if (t.single_word) {
        const bool start_space =
            start == 0 || !ends_with_word(std::string_view(s).substr(0, start));
        const bool stop_space =
            stop == s.size() || !starts_with_word(std::string_view(s).substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip)
        start = std::max(trailing_white_space_begin(std::string_view(s).substr(0, start)),
                         start_offset);
      if (t.rstrip) stop += leading_white_space(std::string_view(s).substr(stop));
      // After an rstrip, the next match may start inside the stripped white space: tokenizers
      // then emits overlapping pieces, and so do we (the fixtures pin it).
      if (start_offset < start) push(start_offset, start, std::nullopt);
      push(start, stop, m.id);
      start_offset = stop;
    }
    push(start_offset, s.size(), std::nullopt);
  }

  std::unordered_map<std::string, std::int32_t> by_content_;
  std::map<std::int32_t, AddedToken> by_id_;
  std::set<std::string> specials_;
  TokenMatcher raw_matcher_, normalized_matcher_;
};

}  // namespace sgt::text::detail
