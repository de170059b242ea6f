// Where a request comes from, for every front end (the CLI's --input / --text / --chat, a
// server's chat): IN.json with ids and masks made elsewhere, or text or a chat that the model
// directory's tokenizer (and chat template) turn into ids and a noise mask (text/chat/
// prompt_encoder.hpp).
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/request.hpp"
#include "sgt/io/transform_input.hpp"
#include "sgt/text/chat/prompt_encoder.hpp"
#include "sgt/text/tokenizer/tokenizer.hpp"

namespace sgt {

struct PromptSource {
  std::string input_path;              // IN.json
  std::optional<std::string> text;     // plain text
  std::string chat_path;               // CHAT.json
  bool add_special_tokens = true;      // text: the post-processor's tokens (BOS)
  bool add_generation_prompt = false;  // chat: the template's assistant header last
  text::ChatMaskPolicy policy;         // chat: which contents are protected
  bool transform_all_tokens = false;   // protect every token, scaffolding included

  bool is_text_or_chat() const noexcept { return text.has_value() || !chat_path.empty(); }
};

// Text or a chat, through `tokenizer` and `model_dir`'s tokenizer_config.json (its template).
inline text::EncodedPrompt encode_prompt(const std::string& model_dir,
                                         const text::Tokenizer& tokenizer,
                                         const PromptSource& source) {
  if (!source.is_text_or_chat()) throw Error("the prompt is neither text nor a chat");
  text::EncodedPrompt e =
      source.text ? text::encode_text(tokenizer, *source.text, source.add_special_tokens)
                  : text::encode_chat_file(model_dir, tokenizer, source.chat_path,
                                           source.add_generation_prompt, source.policy);
  if (source.transform_all_tokens) text::protect_all_tokens(e);
  return e;
}

inline text::EncodedPrompt encode_prompt(const std::string& model_dir, const PromptSource& source) {
  const text::Tokenizer tokenizer = text::Tokenizer::load(model_dir + "/tokenizer.json");
  return encode_prompt(model_dir, tokenizer, source);
}

// The transform's request: IN.json as it is, or text / a chat encoded with the model's tokenizer.
inline TransformInput load_request(const std::string& model_dir, const PromptSource& source) {
  if (!source.input_path.empty()) return load_transform_input(source.input_path);
  return encode_prompt(model_dir, source).input;
}

// What `sgt tokenize` prints: the request as IN.json keys plus each token's byte span.
inline nlohmann::ordered_json tokenized_json(const text::EncodedPrompt& e) {
  nlohmann::ordered_json j;
  j["input_ids"] = e.input.input_ids;
  j["noise_mask"] = e.input.noise_mask;
  nlohmann::ordered_json offsets = nlohmann::ordered_json::array();
  for (const auto& o : e.offsets) offsets.push_back({o.begin, o.end});
  j["offsets"] = offsets;
  return j;
}

}  // namespace sgt
