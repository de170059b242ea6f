// The BPE model of tokenizer.json, as tokenizers runs it: each pre-tokenized piece is cut into
// characters (with continuing_subword_prefix / end_of_word_suffix, byte fallback to <0xNN>
// tokens, and unknown characters as unk_token, fused when fuse_unk), then pairs are merged by
// rank with a priority queue (lowest rank first, leftmost first among equal ranks), exactly the
// order of tokenizers' Word::merge_all. With ignore_merges a piece that is itself in the
// vocabulary is one token.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

// A token of one piece: id and byte range [begin, end) in the piece's (normalized) text.
struct PieceToken {
  std::int32_t id;
  std::size_t begin, end;
};

class BpeModel {
 public:
  static BpeModel from_json(const Json& j, const std::string& path) {
    const std::string type = component_type(j, path);
    if (type != "BPE") unsupported_type(path, type);
    BpeModel m;
    if (const Json* dropout = optional_member(j, "dropout")) {
      if (!dropout->is_number() || dropout->get<double>() != 0.0)
        fail_at(sgt::detail::key_path(path, "dropout"),
                "must be null (BPE dropout is random, and not supported), got " +
                    sgt::detail::json_excerpt(*dropout));
    }
    auto optional_string = [&](const char* key) -> std::optional<std::string> {
      if (!optional_member(j, key)) return std::nullopt;
      return string_member(j, key, path);
    };
    m.unk_token_ = optional_string("unk_token");
    m.prefix_ = optional_string("continuing_subword_prefix").value_or("");
    m.suffix_ = optional_string("end_of_word_suffix").value_or("");
    m.fuse_unk_ = bool_member(j, "fuse_unk", path, false);
    m.byte_fallback_ = bool_member(j, "byte_fallback", path, false);
    m.ignore_merges_ = bool_member(j, "ignore_merges", path, false);
    // tokenizers would give the fallback bytes of the affixes spans past the piece.
    if (m.byte_fallback_ && (!m.prefix_.empty() || !m.suffix_.empty()))
      fail_at(
          sgt::detail::key_path(path, "byte_fallback"),
          "byte_fallback with continuing_subword_prefix or end_of_word_suffix is not supported");

    const std::string vocab_path = sgt::detail::key_path(path, "vocab");
    const Json& vocab = require_object(member(j, "vocab", path), vocab_path);
    m.vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const Json& v = it.value();
      if (!v.is_number_unsigned() ||
          v.get<std::uint64_t>() > std::numeric_limits<std::int32_t>::max())
        fail_at(sgt::detail::key_path(vocab_path, sgt::detail::abbreviate(it.key())),
                "must be a token id in [0, 2147483647], got " + sgt::detail::json_excerpt(v));
      const auto id = static_cast<std::int32_t>(v.get<std::uint64_t>());
      m.vocab_[it.key()] = id;
      m.vocab_r_[id] = it.key();
    }
    if (m.unk_token_ && !m.vocab_.count(*m.unk_token_))
      fail_at(sgt::detail::key_path(path, "unk_token"),
              "\"" + sgt::detail::abbreviate(*m.unk_token_) + "\" is not in the vocabulary");

    const std::string merges_path = sgt::detail::key_path(path, "merges");
    const Json* merges = optional_member(j, "merges");
    if (merges) require_array(*merges, merges_path);
    for (std::size_t rank = 0; merges && rank < merges->size(); ++rank) {
      const Json& mj = (*merges)[rank];
      const std::string at = index_path(merges_path, rank);
      std::string a, b;
      if (mj.is_string()) {
        const std::string s = mj.get<std::string>();
        const std::size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          fail_at(at, "must be two tokens separated by one space, got " +
                          sgt::detail::json_excerpt(mj));
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
        a = mj[0].get<std::string>();
        b = mj[1].get<std::string>();
      } else {
        fail_at(at, "must be \"a b\" or [\"a\", \"b\"], got " + sgt::detail::json_excerpt(mj));
      }
      const auto ia = m.vocab_.find(a), ib = m.vocab_.find(b);
      if (ia == m.vocab_.end() || ib == m.vocab_.end())
        fail_at(at,
                "merges a token that is not in the vocabulary: " + sgt::detail::json_excerpt(mj));
      if (b.size() < m.prefix_.size() ||
          (b.size() > m.prefix_.size() &&
           unicode::is_continuation(static_cast<unsigned char>(b[m.prefix_.size()]))))
        fail_at(at, "second token is shorter than continuing_subword_prefix");
      const auto inew = m.vocab_.find(a + b.substr(m.prefix_.size()));
      if (inew == m.vocab_.end())
        fail_at(at, "the merged token is not in the vocabulary: " + sgt::detail::json_excerpt(mj));
      m.merges_[pair_key(ia->second, ib->second)] = {static_cast<std::uint32_t>(rank),
                                                     inew->second};
    }
    return m;
  }

  std::size_t vocab_size() const noexcept { return vocab_.size(); }
  const std::unordered_map<std::string, std::int32_t>& vocab() const noexcept { return vocab_; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    const auto it = vocab_.find(std::string(token));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  const std::string* id_to_token(std::int32_t id) const {
    const auto it = vocab_r_.find(id);
    return it == vocab_r_.end() ? nullptr : &it->second;
  }

  // Appends the tokens of one piece (non-empty) to `out`.
  void tokenize(std::string_view piece, std::vector<PieceToken>& out) const {
    if (piece.empty()) return;
    if (ignore_merges_) {
      const auto it = vocab_.find(std::string(piece));
      if (it != vocab_.end()) {
        out.push_back({it->second, 0, piece.size()});
        return;
      }
    }
    const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
    if (cacheable) {
      std::shared_lock<std::shared_mutex> lock(cache_->mutex);
      const auto it = cache_->pieces.find(std::string(piece));
      if (it != cache_->pieces.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<Symbol> symbols = initial_symbols(piece);
    merge_all(symbols);
    const std::size_t first = out.size();
    std::size_t offset = 0;
    for (const Symbol& s : symbols) {
      if (s.len == 0) continue;
      out.push_back({s.id, offset, offset + s.len});
      offset += s.len;
    }
    if (cacheable) {
      std::unique_lock<std::shared_mutex> lock(cache_->mutex);
      if (cache_->pieces.size() < kCacheCapacity)
        cache_->pieces.emplace(
            std::string(piece),
            std::vector<PieceToken>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
    }
  }

 private:
  struct Symbol {
    std::int32_t id;
    std::ptrdiff_t prev, next;
    std::size_t len;
  };
  struct MergeInfo {
    std::uint32_t rank;
    std::int32_t new_id;
  };

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }

  void add_symbol(std::vector<Symbol>& symbols, std::int32_t id, std::size_t len) const {
    const auto n = static_cast<std::ptrdiff_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, len});
  }

  // tokenizers' BPE::merge_word before merging.
  std::vector<Symbol> initial_symbols(std::string_view w) const {
    std::vector<Symbol> symbols;
    symbols.reserve(w.size());
    // A pending unknown run (id, byte length). Plain variables: g++ 12 sees an optional<pair>
    // here as maybe-uninitialized.
    bool unk = false;
    std::int32_t unk_id = 0;
    std::size_t unk_len = 0;
    std::string s;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t n = unicode::char_length(static_cast<unsigned char>(w[i]));
      const bool is_first = i == 0, is_last = i + n >= w.size();
      s.assign(w.substr(i, n));
      if (!is_first) s.insert(0, prefix_);
      if (is_last) s += suffix_;
      const std::size_t byte_len = n;
      i += n;
      const auto it = vocab_.find(s);
      if (it != vocab_.end()) {
        if (unk) {
          add_symbol(symbols, unk_id, unk_len);
          unk = false;
        }
        add_symbol(symbols, it->second, byte_len);
        continue;
      }
      if (byte_fallback_) {
        std::vector<std::int32_t> ids;
        for (unsigned char b : s) {
          static const char* hex = "0123456789ABCDEF";
          const std::string code = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
          const auto bt = vocab_.find(code);
          if (bt == vocab_.end()) break;
          ids.push_back(bt->second);
        }
        if (ids.size() == s.size()) {  // (a pending unknown is not flushed first: as tokenizers)
          for (std::int32_t id : ids) add_symbol(symbols, id, 1);
          continue;
        }
      }
      if (unk_token_) {
        if (unk && fuse_unk_) {
          unk_len += byte_len;
        } else {
          if (unk) add_symbol(symbols, unk_id, unk_len);
          unk = true;
          unk_id = vocab_.at(*unk_token_);
          unk_len = byte_len;
        }
      }
    }
    if (unk) add_symbol(symbols, unk_id, unk_len);
    if (!symbols.empty()) symbols.back().next = -1;
    return symbols;
  }

  // tokenizers' Word::merge_all (without dropout).
  void merge_all(std::vector<Symbol>& symbols) const {
    struct Candidate {
      std::uint32_t rank;
      std::size_t pos;
      std::int32_t new_id;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    const auto lookup = [&](std::int32_t a, std::int32_t b) -> const MergeInfo* {
      const auto it = merges_.find(pair_key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
      if (const MergeInfo* m = lookup(symbols[i].id, symbols[i + 1].id))
        queue.push({m->rank, i, m->new_id});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& cur = symbols[top.pos];
      if (cur.len == 0 || cur.next == -1) continue;
      const auto next_pos = static_cast<std::size_t>(cur.next);
      const Symbol right = symbols[next_pos];
      const MergeInfo* m = lookup(cur.id, right.id);
      if (!m || m->new_id != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      symbols[next_pos].len = 0;
      if (right.next > -1 && static_cast<std::size_t>(right.next) < symbols.size())
        symbols[static_cast<std::size_t>(right.next)].prev = static_cast<std::ptrdiff_t>(top.pos);
      if (cur.prev >= 0) {
        const auto prev = static_cast<std::size_t>(cur.prev);
        if (const MergeInfo* pm = lookup(symbols[prev].id, cur.id))
          queue.push({pm->rank, prev, pm->new_id});
      }
      if (cur.next >= 0 && static_cast<std::size_t>(cur.next) < symbols.size()) {
        if (const MergeInfo* nm = lookup(cur.id, symbols[static_cast<std::size_t>(cur.next)].id))
          queue.push({nm->rank, top.pos, nm->new_id});
      }
    }
  }

  // Pieces already merged (words repeat): a pure function of the piece, so sharing it between
  // threads only needs the lock. Bounded like tokenizers' cache; full means no more inserts.
  static constexpr std::size_t kCacheCapacity = 10000;
  static constexpr std::size_t kMaxCachedPieceBytes = 256;
  struct Cache {
    std::shared_mutex mutex;
    std::unordered_map<std::string, std::vector<PieceToken>> pieces;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();

  std::unordered_map<std::string, std::int32_t> vocab_;
  std::unordered_map<std::int32_t, std::string> vocab_r_;
  std::unordered_map<std::uint64_t, MergeInfo> merges_;
  std::optional<std::string> unk_token_;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace sgt::text::detail
