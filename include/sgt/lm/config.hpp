// What a Hugging Face causal LM's config.json says (docs/format.md, "CausalLM"), as a typed struct
// with no JSON in sight; the loader is lm/config_json.hpp.
//
// The decoder stack is the same DecoderConfig the estimators use, resolved by the same family rows
// (model/families.hpp): a causal LM of a family is its decoder plus the embedding table and the LM
// head.
#pragma once

#include <cstddef>

#include "sgt/core/isa.hpp"
#include "sgt/model/config.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct CausalLmConfig {
  // model_type, sizes (num_hidden_layers, heads, head_dim, ...), RoPE and the family's switches.
  DecoderConfig decoder;
  std::size_t vocab_size = 0;
  // The LM head is the embedding table (HF's tie_word_embeddings): lm_head.weight is not stored.
  bool tie_word_embeddings = false;
  // E[input_ids] is multiplied by this (Gemma: sqrt(hidden_size) as an f32, as transformers'
  // scaled embedding module rounds it; the product rounded to the table's dtype); the caller's
  // inputs_embeds are not, as in transformers.
  float embedding_scale = 1.0f;

  std::size_t hidden_size() const noexcept { return decoder.hidden_size; }
  std::size_t num_layers() const noexcept { return decoder.num_hidden_layers; }
  std::size_t kv_width() const noexcept { return decoder.num_key_value_heads * decoder.head_dim; }
};

SGT_ISA_END
}  // namespace sgt
