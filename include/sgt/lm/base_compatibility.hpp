// Whether a transform's output can be fed to a base model: protected embeddings reach the base as
// inputs_embeds, which it takes as given, so both must share the vocabulary (the ids), the hidden
// size and the embedding scale (the base does not scale inputs_embeds, so the transform's x must
// carry the scale the base gives its ids: Gemma's sqrt(hidden_size), docs/format.md 3.1). One rule
// for everything that pairs the two: the utility audit and protected generation.
#pragma once

#include <string>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/lm/causal_lm.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {
SGT_ISA_BEGIN

// Throws an sgt::Error naming the transform's config.json (and the key) when `model` was not made
// for `base`.
inline void check_base_compatible(const Transform& model, const CausalLM& base) {
  const std::string file = model.directory() + "/config.json";
  const std::size_t v = model.config().vocab_size, h = model.hidden_size();
  if (v != base.vocab_size() || h != base.hidden_size())
    throw Error("the SGT model was not made for this base model: it has vocab_size " +
                std::to_string(v) + ", hidden_size " + std::to_string(h) + "; " +
                base.directory() + "/config.json has vocab_size " +
                std::to_string(base.vocab_size()) + ", hidden_size " +
                std::to_string(base.hidden_size()))
        .at_file(file);
  if (model.embedding_scale() != base.config().embedding_scale)
    throw Error("the SGT model's embedding_scale " + std::to_string(model.embedding_scale()) +
                " is not the one the base model gives its embeddings (" +
                std::to_string(base.config().embedding_scale) +
                "): its protected embeddings would reach the base at the wrong size")
        .at_key("embedding_scale")
        .at_file(file);
}

SGT_ISA_END
}  // namespace sgt
