// A causal LM's tensors, as Hugging Face names them (docs/format.md, "CausalLM"):
//
//   model.embed_tokens.weight            [V, H]
//   model.layers.N.*                      the decoder layers, named as an estimator's
//   model.norm.weight                     [H]
//   lm_head.weight                        [V, H], absent with tie_word_embeddings
//
// One list, for_each_causal_lm_tensor(), states every name and shape; the check and the loader
// both walk it (as model/weights.hpp does for the SGT format, whose decoder-layer list this reuses
// with the prefix "model"). Weights are views into the memory-mapped safetensors files.
#pragma once

#include <string>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/lm/config.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct CausalLmWeights {
  AnyTensorView embed_tokens;   // [V, H]
  DecoderStackWeights decoder;  // layers and final_norm (no head)
  AnyTensorView lm_head;        // [V, H]: embed_tokens when tied
};

// The decoder stack as the estimator tensor list sees it: final norm, no head.
inline EstimatorConfig causal_lm_decoder_stack(const CausalLmConfig& c) {
  EstimatorConfig e;
  e.decoder = c.decoder;
  e.final_norm = true;
  e.has_head = false;
  return e;
}

// Calls visit(name, shape, slot) for every stored tensor the config implies.
template <class Visit>
void for_each_causal_lm_tensor(const CausalLmConfig& c, CausalLmWeights& w, Visit&& visit) {
  const std::uint64_t vocab = c.vocab_size, hidden = c.hidden_size();
  visit(std::string("model.embed_tokens.weight"), TensorShape{vocab, hidden}, w.embed_tokens);
  for_each_estimator_tensor(causal_lm_decoder_stack(c), "model", w.decoder, visit);
  if (!c.tie_word_embeddings)
    visit(std::string("lm_head.weight"), TensorShape{vocab, hidden}, w.lm_head);
}

// Checks `store` (sgt::TensorStore or SafetensorsFile) against the config with
// check_tensor_store (model/weights.hpp) and takes a view of every tensor. A missing tensor or a
// wrong shape is an sgt::Error naming the tensor and `where` (the safetensors file or index);
// tensors the config does not use are ignored with one warning (a stored lm_head.weight of a tied
// model, the rotary_emb.inv_freq buffers of old checkpoints): no name is the format's alone.
template <class Store>
CausalLmWeights load_causal_lm_weights(const CausalLmConfig& config, const Store& store,
                                       const std::string& where) {
  check_tensor_store(
      store,
      [&](auto&& visit) {
        CausalLmWeights unused;
        for_each_causal_lm_tensor(config, unused, visit);
      },
      {}, where);
  CausalLmWeights w;
  for_each_causal_lm_tensor(config, w,
                            [&](const std::string& name, const TensorShape&, AnyTensorView& slot) {
                              slot = store.tensor(name);
                            });
  if (config.tie_word_embeddings) w.lm_head = w.embed_tokens;
  return w;
}

SGT_ISA_END
}  // namespace sgt
