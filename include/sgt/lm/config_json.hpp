// Loading a Hugging Face causal LM's config.json into CausalLmConfig (lm/config.hpp).
//
// The file is the one `save_pretrained` writes for the XForCausalLM of a family of
// model/families.hpp (Llama, Mistral, Qwen2, Qwen3, SmolLM3, Gemma, Gemma 2, Gemma 3 text, Phi-3):
// model_type picks the family row, and the decoder keys are read by the same parser as an
// estimator's `config` (model/config_json.hpp), with the family's defaults for absent keys. Every
// error is an sgt::Error naming the file and the key; unknown keys are logged and ignored, as
// transformers ignores them.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/io/json.hpp"
#include "sgt/lm/config.hpp"
#include "sgt/model/config_json.hpp"
#include "sgt/model/families.hpp"

namespace sgt {
SGT_ISA_BEGIN

inline CausalLmConfig parse_causal_lm_config(const nlohmann::json& j) {
  JsonObjectReader c(j, "");
  const std::string type = c.string("model_type", std::nullopt);
  const ModelFamily* family = find_model_family(type);
  if (!family) c.fail("model_type", unsupported_model_type_message(type));
  CausalLmConfig out;
  // save_pretrained always writes vocab_size; a config without it is not one we should guess.
  out.vocab_size =
      static_cast<std::size_t>(c.integer("vocab_size", std::nullopt, 1, kMaxConfigDimension));
  // False in the Llama, Mistral and Qwen config classes, true in SmolLM3's and Gemma's.
  out.tie_word_embeddings = c.boolean("tie_word_embeddings", family->defaults.tie_word_embeddings);
  out.decoder = detail::parse_decoder_config(*family, c);
  out.embedding_scale = family_embedding_scale(*family, out.decoder.hidden_size);
  return out;
}

// Reads and parses DIR/config.json (or any path); errors carry the file.
inline CausalLmConfig load_causal_lm_config(const std::string& config_json_path) {
  return detail::parse_config_file(config_json_path, "config.json", [](const nlohmann::json& j) {
    return parse_causal_lm_config(j);
  });
}

// The ids that end an answer of the model in DIR: `eos_token_id` (an id or a list of ids) of
// generation_config.json, as transformers' generate reads it, else of config.json; empty if neither
// names one. Errors name the file and the key.
inline std::vector<std::int64_t> load_eos_token_ids(const std::string& dir) {
  for (const char* name : {"generation_config.json", "config.json"}) {
    const std::string path = dir + "/" + name;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) continue;
    std::optional<std::vector<std::int64_t>> ids =
        detail::parse_config_file(path, name, [](const nlohmann::json& j) {
          std::optional<std::vector<std::int64_t>> out;
          if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null())
            return out;
          const nlohmann::json& eos = j["eos_token_id"];
          out.emplace();
          for (const nlohmann::json& id : eos.is_array() ? eos : nlohmann::json::array({eos})) {
            if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
              throw Error("must be a token id or a list of token ids").at_key("eos_token_id");
            out->push_back(id.get<std::int64_t>());
          }
          return out;
        });
    if (ids) return *ids;
  }
  return {};
}

SGT_ISA_END
}  // namespace sgt
