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
#include <deque>
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
#include "sgt/text/tokenizer/limits.hpp"
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
// Aho-Corasick automaton with MatchKind::LeftmostLongest), in time linear in the text whatever the
// patterns: an Aho-Corasick automaton of the REVERSED patterns runs over the text from its end, so
// that the state after reading text[i] names the longest pattern that starts at i. Then one pass
// from the left takes, at each position, the longest pattern starting there and skips past it.
// (Walking a sorted list or a trie forward from every position costs the length of the longest
// shared prefix at every byte: 4000 tokens sharing a long prefix made a 300 kB text take a
// minute.) Among identical patterns the first added wins.
class TokenMatcher {
 public:
  void add(std::string pattern, std::int32_t id) {
    if (pattern.empty()) return;  // an empty pattern would match everywhere: never useful
    patterns_.push_back({std::move(pattern), id});
  }

  void finish() {
    nodes_.assign(1, Node{});
    edges_.clear();
    root_.fill(0);
    if (patterns_.empty()) return;
    // The trie of the reversed patterns, built from them in sorted order: each shares with the one
    // before it the path of their common prefix.
    std::vector<std::string> reversed(patterns_.size());
    std::vector<std::uint32_t> order(patterns_.size());
    for (std::size_t p = 0; p < patterns_.size(); ++p) {
      reversed[p].assign(patterns_[p].text.rbegin(), patterns_[p].text.rend());
      order[p] = static_cast<std::uint32_t>(p);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return reversed[a] < reversed[b]; });
    struct BuildEdge {
      std::uint32_t from;
      unsigned char byte;
      std::uint32_t to;
    };
    std::vector<BuildEdge> build;
    std::vector<std::uint32_t> path{0};  // nodes of the previous pattern's path, root first
    const std::string* previous = nullptr;
    for (const std::uint32_t p : order) {
      const std::string& r = reversed[p];
      std::size_t common = 0;
      if (previous)
        while (common < r.size() && common < previous->size() && r[common] == (*previous)[common])
          ++common;
      path.resize(common + 1);
      for (std::size_t k = common; k < r.size(); ++k) {
        const auto node = static_cast<std::uint32_t>(nodes_.size());
        nodes_.push_back(Node{});
        build.push_back({path.back(), static_cast<unsigned char>(r[k]), node});
        path.push_back(node);
      }
      Node& end = nodes_[path.back()];
      if (end.pattern < 0)
        end.pattern = static_cast<std::int32_t>(p);  // sorted stably: first added
      previous = &r;
    }
    // Children as sorted ranges of one edge array (the build order is by parent, then byte,
    // except that a parent's edges may be interleaved with its descendants': sort them).
    std::stable_sort(build.begin(), build.end(), [](const BuildEdge& a, const BuildEdge& b) {
      return a.from != b.from ? a.from < b.from : a.byte < b.byte;
    });
    edges_.reserve(build.size());
    for (const BuildEdge& e : build) {
      Node& n = nodes_[e.from];
      if (n.edges_end == n.edges_begin)
        n.edges_begin = n.edges_end = static_cast<std::uint32_t>(edges_.size());
      edges_.push_back({e.byte, e.to});
      ++n.edges_end;
      if (e.from == 0) root_[e.byte] = e.to;
    }
    // Failure links and, per node, the longest pattern that is a suffix of its string, breadth
    // first (a node's failure target is shallower, so already done).
    std::vector<std::uint32_t> queue;
    queue.reserve(nodes_.size());
    for (std::size_t k = nodes_[0].edges_begin; k < nodes_[0].edges_end; ++k)
      queue.push_back(edges_[k].to);
    for (std::size_t q = 0; q < queue.size(); ++q) {
      const std::uint32_t u = queue[q];
      Node& nu = nodes_[u];
      if (nu.pattern >= 0)
        nu.longest = nu.pattern;
      else
        nu.longest = nodes_[nu.fail].longest;
      for (std::size_t k = nu.edges_begin; k < nu.edges_end; ++k) {
        const std::uint32_t v = edges_[k].to;
        nodes_[v].fail = u == 0 ? 0 : next(nodes_[u].fail, edges_[k].byte);
        queue.push_back(v);
      }
    }
  }

  struct Match {
    std::size_t begin, end;
    std::int32_t id;
  };
  std::vector<Match> find_all(std::string_view text) const {
    std::vector<Match> out;
    if (patterns_.empty()) return out;
    std::vector<std::pair<std::size_t, std::int32_t>> starts;  // (position, pattern), descending
    std::uint32_t state = 0;
    for (std::size_t i = text.size(); i-- > 0;) {
      state = next(state, static_cast<unsigned char>(text[i]));
      if (state != 0 && nodes_[state].longest >= 0) starts.push_back({i, nodes_[state].longest});
    }
    std::size_t from = 0;
    for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
      if (it->first < from) continue;
      const Pattern& p = patterns_[static_cast<std::size_t>(it->second)];
      out.push_back({it->first, it->first + p.text.size(), p.id});
      from = it->first + p.text.size();
    }
    return out;
  }

 private:
  struct Pattern {
    std::string text;
    std::int32_t id;
  };
  struct Node {  // 20 bytes: the automaton has a node per byte of the tokens (limits.hpp)
    std::uint32_t edges_begin = 0, edges_end = 0;  // children: edges_[edges_begin, edges_end)
    std::uint32_t fail = 0;
    std::int32_t pattern = -1;  // the pattern ending here (index in patterns_), or -1
    std::int32_t longest = -1;  // the longest pattern that is a suffix of this node's string
  };
  struct Edge {
    unsigned char byte;
    std::uint32_t to;
  };

  // The automaton's transition: the child for `byte`, else the failure chain's (amortized
  // constant per byte read).
  std::uint32_t next(std::uint32_t state, unsigned char byte) const {
    for (;;) {
      if (state == 0) return root_[byte];
      const Node& n = nodes_[state];
      const auto first = edges_.begin() + static_cast<std::ptrdiff_t>(n.edges_begin);
      const auto last = edges_.begin() + static_cast<std::ptrdiff_t>(n.edges_end);
      const auto it = std::lower_bound(first, last, byte,
                                       [](const Edge& e, unsigned char b) { return e.byte < b; });
      if (it != last && it->byte == byte) return it->to;
      state = n.fail;
    }
  }

  std::vector<Pattern> patterns_;
  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::array<std::uint32_t, 256> root_{};  // the root's children by byte (0: none)
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;

  // The contents of the tokens with normalized=true are normalized here, all on one budget (the
  // limits' allowance for the total bytes of the contents): a normalizer that grows text is
  // stopped at load as it would be at encode.
  void load(const Json& list, const std::string& path, const BpeModel& model,
            const std::optional<Normalizer>& normalizer, const TokenizerLimits& limits) {
    require_array(list, path);
    std::size_t content_bytes = 0;
    for (const Json& j : list)
      if (const Json* c = j.is_object() ? optional_member(j, "content") : nullptr)
        if (c->is_string()) content_bytes += c->get_ref<const std::string&>().size();
    // The matchers take about 30 bytes per byte of the tokens: checked before anything is built.
    if (content_bytes > limits.max_added_tokens_bytes)
      fail_at(path, "the added tokens' contents total " + std::to_string(content_bytes) +
                        " bytes, more than TokenizerLimits::max_added_tokens_bytes (" +
                        std::to_string(limits.max_added_tokens_bytes) + ")");
    WorkBudget budget(limits, content_bytes);
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
        try {
          normalizer->normalize(content, budget);
        } catch (Error& e) {
          e.at_key(sgt::detail::key_path(at, "content"));  // the normalizer's path is kept
          throw;
        }
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
  // recognized, every other piece normalized (on `budget`). An added token's piece refers to the
  // text it matched: `input` itself, or a normalized piece that this function stores in `keep`
  // (which must outlive the pieces).
  std::vector<Piece> extract_and_normalize(std::string_view input,
                                           const std::optional<Normalizer>& normalizer,
                                           WorkBudget& budget,
                                           std::deque<std::string>& keep) const {
    std::vector<Piece> pieces;
    split_raw(input, pieces);
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      if (p.added_id) {
        out.push_back(std::move(p));
        continue;
      }
      if (normalizer) normalizer->normalize(p.text, budget);
      split_normalized(std::move(p.text), keep, out);
      p.text = NormalizedText();  // its memory back before the next piece is normalized
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

  // tokenizers' find_matches: the pieces [begin, end) of `s` that `matcher` finds, with
  // single_word, lstrip and rstrip applied, and the id of each added token (or nullopt for the
  // text between them). An rstrip may run into the next match: tokenizers then emits overlapping
  // pieces, and so do we (the fixtures pin it); a run of white space is scanned once, not once per
  // match inside it, so that such a run costs its length and not its square.
  struct Cut {
    std::size_t begin, end;
    std::optional<std::int32_t> id;
  };
  std::vector<Cut> find_cuts(std::string_view s, const TokenMatcher& matcher) const {
    std::vector<Cut> cuts;
    std::size_t start_offset = 0;
    std::size_t ws_from = 1, ws_to = 0;  // a known run: from any position in it, white space
                                         // reaches ws_to (empty: none known)
    for (const TokenMatcher::Match& m : matcher.find_all(s)) {
      std::size_t start = m.begin, stop = m.end;
      const AddedToken& t = by_id_.at(m.id);
      if (t.single_word) {
        const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
        const bool stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        // tokenizers takes max(start of the white space before the match, start_offset): the
        // scan need not go below start_offset.
        std::size_t b = start;
        while (b > start_offset) {
          std::size_t c = b - 1;
          while (c > 0 && unicode::is_continuation(static_cast<unsigned char>(s[c]))) --c;
          std::size_t n = 0;
          if (!unicode::is_white_space(unicode::decode(s, c, &n))) break;
          b = c;
        }
        start = std::max(b, start_offset);
      }
      if (t.rstrip) {
        if (!(ws_from <= stop && stop <= ws_to)) {
          ws_from = stop;
          ws_to = stop + leading_white_space(s.substr(stop));
        }
        stop = ws_to;
      }
      if (start_offset < start) cuts.push_back({start_offset, start, std::nullopt});
      if (start < stop) cuts.push_back({start, stop, m.id});
      start_offset = stop;
    }
    if (start_offset < s.size()) cuts.push_back({start_offset, s.size(), std::nullopt});
    return cuts;
  }

  // The raw (normalized=false) tokens in the input: the pieces between them are built from the
  // input directly (what NormalizedText(input, 0).slice would give, without the whole copy).
  void split_raw(std::string_view input, std::vector<Piece>& out) const {
    for (const Cut& c : find_cuts(input, raw_matcher_)) {
      if (c.id)
        out.push_back(added_piece(input.substr(c.begin, c.end - c.begin), {c.begin, c.end}, *c.id));
      else
        out.push_back(
            Piece{NormalizedText(input.substr(c.begin, c.end - c.begin), c.begin), {}, {}, {}});
    }
  }

  // The normalized tokens in a normalized piece; a piece without any moves on whole.
  void split_normalized(NormalizedText&& text, std::deque<std::string>& keep,
                        std::vector<Piece>& out) const {
    if (text.empty()) return;
    const std::vector<Cut> cuts = find_cuts(text.text(), normalized_matcher_);
    if (cuts.size() == 1 && !cuts[0].id) {
      out.push_back(Piece{std::move(text), {}, {}, {}});
      return;
    }
    const std::string* source = nullptr;  // the piece's text, kept for the tokens' views
    for (const Cut& c : cuts) {
      if (!c.id) {
        out.push_back(Piece{text.slice(c.begin, c.end), {}, {}, {}});
        continue;
      }
      if (!source) source = &keep.emplace_back(text.text());
      out.push_back(added_piece(std::string_view(*source).substr(c.begin, c.end - c.begin),
                                text.original_span(c.begin, c.end), *c.id));
    }
  }

  static Piece added_piece(std::string_view matched, Span span, std::int32_t id) {
    Piece p;
    p.added_id = id;
    p.added_span = span;
    p.added_text = matched;
    return p;
  }

  std::unordered_map<std::string, std::int32_t> by_content_;
  std::map<std::int32_t, AddedToken> by_id_;
  std::set<std::string> specials_;
  TokenMatcher raw_matcher_, normalized_matcher_;
};

}  // namespace sgt::text::detail
