// From text to the transform's input: token ids and the noise mask.
//
// The noise mask says which tokens the transform protects. Its rule (docs/format.md, "Noise
// mask"): a token is protected when its byte span in the tokenized string overlaps a protected
// span -- for a chat, the characters the template took from message contents (and, by policy,
// tool schemas); for plain text, the whole text. Tokens with an empty span (the post-processor's
// BOS and other added specials) and the template's scaffolding (role headers, end-of-turn markers,
// the generation prompt) keep their clean embeddings: the server needs them intact to recognise
// the conversation's structure.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/io/request.hpp"
#include "sgt/text/chat/chat_input.hpp"
#include "sgt/text/chat/chat_template.hpp"
#include "sgt/text/chat/tokenizer_config.hpp"
#include "sgt/text/tokenizer/tokenizer.hpp"

namespace sgt::text {

// A tokenized prompt, ready for Transform::run (B = 1), with what explains it.
struct EncodedPrompt {
  TransformInput input;
  std::vector<TokenSpan> offsets;  // per token: bytes of `text`
  std::string text;                // the string that was tokenized (a chat: the rendering)
};

// 1 for every token whose span [begin, end) overlaps one of `spans` (sorted, non-overlapping
// [begin, end) byte ranges), else 0. Empty token spans never overlap.
template <class Span>
std::vector<std::uint8_t> noise_mask_for_spans(const std::vector<TokenSpan>& tokens,
                                               const std::vector<Span>& spans) {
  std::vector<std::uint8_t> mask(tokens.size(), 0);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const TokenSpan tok = tokens[t];
    if (tok.begin >= tok.end) continue;
    // The first span that ends after the token begins; it overlaps if it begins before the token
    // ends.
    auto it = std::upper_bound(spans.begin(), spans.end(), tok.begin,
                               [](std::size_t pos, const Span& s) { return pos < s.end; });
    if (it != spans.end() && it->begin < tok.end) mask[t] = 1;
  }
  return mask;
}

// Protects every token, the template's scaffolding included (Stained Glass's
// `transform_all_tokens`).
inline void protect_all_tokens(EncodedPrompt& p) {
  std::fill(p.input.noise_mask.begin(), p.input.noise_mask.end(), std::uint8_t{1});
}

// Plain text, tokenized like `tokenizer(text)` in Python: with add_special_tokens the
// post-processor's tokens (BOS) are added, and they are not protected; every token of the text
// itself is (including special-token text a user typed: it is part of their text).
inline EncodedPrompt encode_text(const Tokenizer& tokenizer, std::string_view text,
                                 bool add_special_tokens) {
  EncodedPrompt p;
  p.text = std::string(text);
  Encoding e = tokenizer.encode(text, add_special_tokens);
  if (e.ids.empty()) throw Error("the text gives no tokens");
  struct Whole {
    std::size_t begin, end;
  };
  const std::vector<Whole> whole{{0, text.size()}};
  std::vector<std::int64_t> ids(e.ids.begin(), e.ids.end());
  p.input = TransformInput::single(std::move(ids), noise_mask_for_spans(e.offsets, whole));
  p.offsets = std::move(e.offsets);
  return p;
}

// A chat rendered with the model's template and tokenized once, exactly as transformers does for
// apply_chat_template(tokenize=True): the rendering already holds the BOS the template writes, so
// no post-processor tokens are added. noise_mask = 1 on every token overlapping protected text.
inline EncodedPrompt encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 const TokenizerSpecialStrings& specials, const ChatInput& chat,
                                 bool add_generation_prompt, const ChatMaskPolicy& policy = {}) {
  ChatTemplateOptions options;
  options.add_generation_prompt = add_generation_prompt || chat.add_generation_prompt;
  options.policy = policy;
  options.extra_context = chat.extra_context;
  RenderedChat rendered = chat_template.render(chat.messages, chat.tools, specials, options);
  Encoding e = tokenizer.encode(rendered.text, false);
  if (e.ids.empty()) throw Error("the chat renders to no tokens");
  EncodedPrompt p;
  std::vector<std::int64_t> ids(e.ids.begin(), e.ids.end());
  p.input = TransformInput::single(std::move(ids),
                                   noise_mask_for_spans(e.offsets, rendered.protected_spans));
  p.offsets = std::move(e.offsets);
  p.text = std::move(rendered.text);
  return p;
}

// encode_chat for a model directory (tokenizer.json, tokenizer_config.json with its chat template)
// and a CHAT.json file. Errors name the file that is missing or wrong.
inline EncodedPrompt encode_chat_file(const std::string& model_dir, const Tokenizer& tokenizer,
                                      const std::string& chat_json_path, bool add_generation_prompt,
                                      const ChatMaskPolicy& policy = {}) {
  const TokenizerConfig config = read_tokenizer_config(model_dir);
  if (!config.chat_template)
    throw Error("has no chat_template (and there is no chat_template.jinja beside it)")
        .at_file(model_dir + "/tokenizer_config.json");
  const ChatTemplate chat_template(*config.chat_template, config.chat_template_source);
  std::string text;
  try {
    text = read_text_file(chat_json_path, std::size_t{64} << 20);
  } catch (Error& e) {
    e.at_file(chat_json_path);
    throw;
  }
  const ChatInput chat = parse_chat_input(text, chat_json_path);
  try {
    return encode_chat(tokenizer, chat_template, config.specials, chat, add_generation_prompt,
                       policy);
  } catch (Error& e) {
    // What the renderer refuses in the chat's own values (a number too large for the template,
    // an extra_context key the renderer sets) is the chat file's fault; the template's errors
    // name the template.
    const std::string& key = e.key();
    for (const char* part : {"messages", "tools", "extra_context"})
      if (key.compare(0, std::strlen(part), part) == 0) e.at_file(chat_json_path);
    throw;
  }
}

}  // namespace sgt::text
