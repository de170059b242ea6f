#include "text_front_end.hpp"

#include <filesystem>
#include <memory>

#include <sgt/pipeline/prompt_source.hpp>
#include <sgt/text/chat/tokenizer_config.hpp>
#include <sgt/text/tokenizer/tokenizer.hpp>

#include "prompt_source.hpp"

namespace sgt_cli {

sgt::PromptSource prompt_source(const PromptFlags& p) {
  sgt::PromptSource s;
  s.input_path = p.input;
  s.text = p.text;
  s.chat_path = p.chat;
  s.add_special_tokens = !p.no_special_tokens;
  s.add_generation_prompt = p.add_generation_prompt;
  s.policy.protected_roles = p.protect_roles;
  s.policy.protect_tool_schemas = !p.no_protect_tool_schemas;
  s.transform_all_tokens = p.transform_all_tokens;
  return s;
}

sgt::TransformInput load_request(const std::string& model_dir, const PromptFlags& p) {
  return sgt::load_request(model_dir, prompt_source(p));
}

sgt::TokenText token_text(const std::string& model_dir) {
  if (!std::filesystem::exists(model_dir + "/tokenizer.json")) return {};
  auto tokenizer = std::make_shared<sgt::text::Tokenizer>(
      sgt::text::Tokenizer::load(model_dir + "/tokenizer.json"));
  return [tokenizer](const std::vector<std::int32_t>& ids, bool skip_special) {
    return nlohmann::ordered_json(tokenizer->decode(ids, skip_special));
  };
}

nlohmann::ordered_json tokenizer_info(const std::string& dir) {
  if (!std::filesystem::exists(dir + "/tokenizer.json")) return nullptr;
  const auto tokenizer = sgt::text::Tokenizer::load(dir + "/tokenizer.json");
  nlohmann::ordered_json j;
  j["model_type"] = tokenizer.model_type();
  j["vocab_size"] = tokenizer.vocab_size();
  j["special_tokens"] = tokenizer.special_tokens();
  bool chat_template = false;
  if (std::filesystem::exists(dir + "/tokenizer_config.json")) {
    const sgt::text::TokenizerConfig c = sgt::text::read_tokenizer_config(dir);
    chat_template = c.chat_template.has_value();
    if (c.specials.bos_token) j["bos_token"] = *c.specials.bos_token;
    if (c.specials.eos_token) j["eos_token"] = *c.specials.eos_token;
  }
  j["chat_template"] = chat_template;
  return j;
}

}  // namespace sgt_cli
