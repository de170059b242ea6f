// sgt::text::Tokenizer: reads a Hugging Face tokenizer.json and encodes / decodes exactly like the
// Python `tokenizers` package (tests/data/text/tokenizers holds what the reference produced).
//
// The pipeline is tokenizer.json's, one type per stage, composed in its order:
//
//   added tokens (added_tokens.hpp)  -> normalizer (normalizer.hpp) -> pre-tokenizer
//   (pre_tokenizer.hpp) -> BPE model (bpe.hpp) -> post-processor (tokenizer_post_processor.hpp)
//
// and decode runs the decoder (decoder.hpp). Every stage moves the offsets: each byte of the
// rewritten text remembers the span of the original input it came from (tokenizer_normalized.hpp),
// so a token's span is a byte range [begin, end) of the ORIGINAL UTF-8 input -- what the noise mask
// needs. Regexes run on Oniguruma and NFC on utf8proc, like the reference.
//
// Anything in the file this reader does not implement (a component type, an option value, BPE
// dropout, truncation or padding) is refused at load with an sgt::Error naming the file and the
// component's path. A loaded Tokenizer is immutable: encode and decode may run concurrently.
//
// The work and memory of one input are bounded by TokenizerLimits (limits.hpp), given at load
// (they also bound the normalization of the added tokens there) or to one encode.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/io/json.hpp"
#include "sgt/text/tokenizer/added_tokens.hpp"
#include "sgt/text/tokenizer/bpe.hpp"
#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/decoder.hpp"
#include "sgt/text/tokenizer/limits.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/normalizer.hpp"
#include "sgt/text/tokenizer/post_processor.hpp"
#include "sgt/text/tokenizer/pre_tokenizer.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text {

// A token's span: bytes [begin, end) of the original UTF-8 input. Special tokens added by the
// post-processor's template have [0, 0).
struct TokenSpan {
  std::size_t begin = 0, end = 0;
};

struct Encoding {
  std::vector<std::int32_t> ids;
  std::vector<TokenSpan> offsets;  // one per id
};

class Tokenizer {
 public:
  // tokenizer.json files of real models are a few MB (Llama 3: 9 MB); 256 MiB is far beyond.
  static constexpr std::size_t kMaxFileBytes = std::size_t{256} << 20;

  static Tokenizer load(const std::string& tokenizer_json_path,
                        const TokenizerLimits& limits = TokenizerLimits()) {
    try {
      return from_json_text(read_text_file(tokenizer_json_path, kMaxFileBytes), tokenizer_json_path,
                            limits);
    } catch (Error& e) {
      e.at_file(tokenizer_json_path);
      throw;
    }
  }

  // `what` names the text in errors (the file's path, or "tokenizer.json").
  static Tokenizer from_json_text(std::string_view json, const std::string& what,
                                  const TokenizerLimits& limits = TokenizerLimits()) {
    try {
      JsonReadOptions options;
      options.what = what.c_str();
      options.max_depth = 64;  // Sequence inside Sequence inside ... : real files need about 6
      const detail::Json doc = parse_json_checked(json.data(), json.data() + json.size(), options);
      Tokenizer t;
      t.impl_ = std::make_shared<Impl>(doc, what, limits);
      return t;
    } catch (const Error& e) {
      throw printable_error(e, what);
    } catch (const nlohmann::json::exception& e) {  // a type mismatch the readers did not foresee
      throw printable_error(Error(std::string("malformed tokenizer.json: ") + e.what()), what);
    }
  }

  // Encodes on the limits given at load, or on `limits`. An input that exceeds one throws an
  // sgt::Error naming tokenizer.json, the component and the input's byte position.
  Encoding encode(std::string_view utf8, bool add_special_tokens) const {
    return encode(utf8, add_special_tokens, impl_->limits);
  }
  Encoding encode(std::string_view utf8, bool add_special_tokens,
                  const TokenizerLimits& limits) const {
    if (utf8.size() > limits.max_input_bytes)
      throw Error("text to encode is " + std::to_string(utf8.size()) +
                  " bytes, more than TokenizerLimits::max_input_bytes (" +
                  std::to_string(limits.max_input_bytes) + ")");
    const std::size_t bad = unicode::first_invalid_byte(utf8);
    if (bad != std::string_view::npos)
      throw Error("text to encode is not valid UTF-8").at_position(static_cast<std::int64_t>(bad));
    return impl_->encode(utf8, add_special_tokens, limits);
  }

  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const {
    return impl_->decode(ids, skip_special_tokens);
  }

  const TokenizerLimits& limits() const noexcept { return impl_->limits; }

  // Distinct tokens of the model's vocabulary and the added tokens together (tokenizers'
  // get_vocab_size(with_added_tokens=True)).
  std::size_t vocab_size() const { return impl_->vocab_size; }
  const std::string& model_type() const { return impl_->model_type; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    if (auto id = impl_->added.token_to_id(token)) return id;
    return impl_->model.token_to_id(token);
  }
  std::optional<std::string> id_to_token(std::int32_t id) const {
    if (const std::string* t = impl_->token_string(id)) return *t;
    return std::nullopt;
  }
  // Added tokens marked special, in id order.
  std::vector<std::string> special_tokens() const {
    std::vector<std::string> out;
    for (const auto& kv : impl_->added.by_id())
      if (kv.second.special) out.push_back(kv.second.content);
    return out;
  }

 private:
  // `e` at `file`, with every field printable: a message may quote the file's bytes (the JSON
  // reader quotes the byte it stopped at), and raw invalid UTF-8 must not reach a terminal or a
  // log. Bytes that are not valid UTF-8, and controls, become \xNN.
  static Error printable_error(const Error& e, const std::string& file) {
    Error out(detail::printable(e.message(), 1000));
    out.at_file(detail::printable(e.file().empty() ? file : e.file(), 1000));
    if (!e.key().empty()) out.at_key(detail::printable(e.key(), 1000));
    if (e.position()) out.at_position(*e.position());
    if (!e.tensor().empty()) out.at_tensor(detail::printable(e.tensor(), 1000));
    return out;
  }

  struct Impl {
    detail::BpeModel model;
    detail::AddedVocabulary added;
    std::optional<detail::Normalizer> normalizer;
    std::optional<detail::PreTokenizer> pre_tokenizer;
    std::optional<detail::PostProcessor> post_processor;
    std::optional<detail::Decoder> decoder;
    std::size_t vocab_size = 0;
    std::string model_type = "BPE";
    std::string file;  // for errors at encode
    TokenizerLimits limits;

    Impl(const detail::Json& doc, const std::string& what, const TokenizerLimits& l)
        : file(what), limits(l) {
      using detail::optional_member;
      for (const char* key : {"truncation", "padding"})
        if (optional_member(doc, key))
          detail::fail_at(key, "must be null (truncation and padding are not supported)");
      model = detail::BpeModel::from_json(detail::member(doc, "model", ""), "model");
      if (const auto* n = optional_member(doc, "normalizer"))
        normalizer = detail::Normalizer::from_json(*n, "normalizer");
      if (const auto* p = optional_member(doc, "pre_tokenizer"))
        pre_tokenizer = detail::PreTokenizer::from_json(*p, "pre_tokenizer");
      if (const auto* p = optional_member(doc, "post_processor"))
        post_processor = detail::PostProcessor::from_json(*p, "post_processor");
      if (const auto* d = optional_member(doc, "decoder"))
        decoder = detail::Decoder::from_json(*d, "decoder");
      if (const auto* a = optional_member(doc, "added_tokens"))
        added.load(*a, "added_tokens", model, normalizer, limits);
      vocab_size = model.vocab_size();
      for (const auto& kv : added.by_id())
        if (!model.token_to_id(kv.second.content)) ++vocab_size;
    }

    const std::string* token_string(std::int32_t id) const {
      if (const detail::AddedToken* t = added.find(id)) return &t->text;
      return model.id_to_token(id);
    }

    Encoding encode(std::string_view text, bool add_special_tokens,
                    const TokenizerLimits& encode_limits) const {
      detail::WorkBudget budget(encode_limits, text.size());
      std::deque<std::string> keep;  // normalized text that added tokens' pieces refer to
      std::vector<detail::Piece> pieces;
      detail::TokenList list;
      list.original = text;
      std::vector<detail::PieceToken> piece_tokens;
      // The model's tokens of one pre-tokenized piece, appended as the piece comes out.
      const auto tokenize = [&](detail::NormalizedText&& t) {
        piece_tokens.clear();
        model.tokenize(t.text(), piece_tokens);
        for (const detail::PieceToken& pt : piece_tokens) {
          list.ids.push_back(pt.id);
          const std::string* s = model.id_to_token(pt.id);
          list.tokens.push_back(s ? std::string_view(*s) : std::string_view());
          list.offsets.push_back(t.original_span(pt.begin, pt.end));
        }
      };
      try {
        pieces = added.extract_and_normalize(text, normalizer, budget, keep);
        for (detail::Piece& p : pieces) {
          if (p.added_id) {
            list.ids.push_back(*p.added_id);
            list.tokens.push_back(p.added_text);
            list.offsets.push_back(p.added_span);
          } else if (pre_tokenizer) {
            pre_tokenizer->for_each_piece(std::move(p.text), budget, tokenize);
          } else {
            tokenize(std::move(p.text));
          }
          p.text = detail::NormalizedText();  // its memory back before the next piece
        }
      } catch (const Error& e) {  // a limit of a component of this file (the input's position)
        throw printable_error(e, file);
      }
      if (post_processor) post_processor->process(list, add_special_tokens);
      Encoding out;
      out.ids = std::move(list.ids);
      out.offsets.reserve(list.offsets.size());
      for (const detail::Span& s : list.offsets) out.offsets.push_back({s.begin, s.end});
      return out;
    }

    std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const {
      std::vector<std::string> tokens;
      tokens.reserve(ids.size());
      std::size_t bytes = 0;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        // An id the tokenizer lacks decodes to nothing, as in `tokenizers`: a model's embedding
        // table is often padded past its vocabulary (Qwen2.5: 151936 rows, 151665 tokens), and
        // a sampled padding row must not end an answer or lose an audit report.
        const std::string* t = token_string(ids[i]);
        if (!t) continue;
        if (skip_special_tokens && added.is_special(*t)) continue;
        tokens.push_back(*t);
        bytes += t->size();
      }
      if (!decoder) {
        std::string out;
        for (std::size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
        return out;
      }
      detail::WorkBudget budget(limits, bytes);
      std::string out;
      try {
        for (const std::string& s : decoder->decode_chain(std::move(tokens), budget)) out += s;
      } catch (const Error& e) {
        throw printable_error(e, file);
      }
      return out;
    }
  };

  Tokenizer() = default;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace sgt::text
