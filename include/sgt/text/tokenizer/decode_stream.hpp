// DecodeStream: text of generated tokens as they arrive, for printing an answer while it is being
// generated. Decoding token by token is not concatenating each token's text: a byte-level token
// can hold half of a UTF-8 character, Metaspace turns a leading "▁" into a space only inside a
// sequence, and a decoder may strip or join across tokens.
//
// The rule is tokenizers' DecodeStream (its `step`): keep the ids since the last emitted text plus
// a few before them (the "prefix"); after each new id decode prefix + new ids, and when that text
// is longer than the prefix's own decoding and does not end in U+FFFD (an incomplete character:
// the decoders turn stray bytes into U+FFFD), emit what follows the prefix's text, and make the new
// ids the next prefix. So the emitted pieces join to exactly what decoding all the ids at once
// gives whenever the decoding of a prefix is a prefix of the decoding of the whole -- true of the
// byte-level, Metaspace and ByteFallback decoders -- and a piece is never a broken character.
// When it is not (a Strip decoder that removes a leading space mid-stream, say), the piece is what
// follows the prefix's decoding where that still is a prefix, and an error otherwise, rather than
// text that disagrees with the full decode.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/text/tokenizer/tokenizer.hpp"

namespace sgt::text {

class DecodeStream {
 public:
  DecodeStream(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // The text that token `id` completes, if any.
  std::optional<std::string> step(std::int32_t id) {
    ids_.push_back(id);
    std::string text = tokenizer_->decode(ids_, skip_special_tokens_);
    static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
    const bool incomplete = text.size() >= 3 && text.compare(text.size() - 3, 3, kReplacement) == 0;
    if (text.size() <= prefix_.size() || incomplete) return std::nullopt;
    if (text.compare(0, prefix_.size(), prefix_) != 0)
      throw Error("decode stream: decoding token " + std::to_string(id) +
                  " changed the text of the tokens before it (this tokenizer's decoder does not "
                  "decode prefixes to prefixes)");
    std::string piece = text.substr(prefix_.size());
    // The new prefix: the ids after the old prefix (they decoded to at least `piece`).
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_ids_));
    prefix_ids_ = ids_.size();
    prefix_ = tokenizer_->decode(ids_, skip_special_tokens_);
    return piece;
  }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<std::int32_t> ids_;  // the prefix's ids, then those not yet emitted
  std::size_t prefix_ids_ = 0;     // how many of ids_ are the prefix
  std::string prefix_;             // decode(prefix ids)
};

}  // namespace sgt::text
