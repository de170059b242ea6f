// sgt::CausalLM: a Hugging Face decoder-only language model (Llama, Mistral, Qwen2, Qwen3) run with
// a static KV cache -- the server side of the protected-prompt pipeline (docs/format.md,
// "CausalLM"). As transformers' TorchExportableModuleWithStaticCache:
//
//   forward(input_ids or inputs_embeds [B, T], cache_position [T]) -> logits [B, T or 1, V]
//
//   h      = E[input_ids]  (or the caller's inputs_embeds, protected embeddings for instance)
//   h      = CachedDecoderLayer_i(h)  for each layer, appending the new keys/values to the cache
//   logits = lm_head(RMSNorm(h))      for every new position, or only the last one
//
// When only the last position's logits are wanted, the last layer drops the other positions right
// after its attention (CachedDecoderLayer::forward_last_tokens): their o_proj and MLP would feed
// neither the cache nor the logits. The logits are bit-identical to the last rows of
// LogitsFor::All.
//
// The loaded model is immutable and may serve any number of threads at once, each with its own
// KvCache and LmWorkspace.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/tensor_store.hpp"
#include "sgt/kernels/block_features.hpp"
#include "sgt/kernels/kernel_table.hpp"
#include "sgt/lm/cached_decoder_layer.hpp"
#include "sgt/lm/config.hpp"
#include "sgt/lm/config_json.hpp"
#include "sgt/lm/decode_weights.hpp"
#include "sgt/lm/kv_cache.hpp"
#include "sgt/lm/weights.hpp"
#include "sgt/lm/workspace.hpp"
#include "sgt/model/ops.hpp"

namespace sgt {
SGT_ISA_BEGIN

// Which positions get logits.
//
// Last also saves work: in the last decoder layer, once the attention has run on every new token
// (the cache needs all their keys and values), only the last token of each row goes through o_proj,
// the post-attention norm and the MLP, as llama.cpp does -- about a layer's worth of matmuls less
// for a prefill. The logits are bit-identical to the matching rows of All, and the cache to its
// cache, because everything after the attention is per row (norms, SwiGLU, residual adds) and our
// matmul gives a row the same bits alone as in any batch (tests/test_kernels_matmul.cpp); the
// pruned steps come after the cache write.
enum class LogitsFor {
  All,   // every new token: [B, T, V]
  Last,  // the last new token of each row: [B, 1, V] (what generation needs)
};

// One forward call: B rows of T new tokens, given as ids or as embeddings (exactly one of them).
struct LmInput {
  std::size_t batch = 1;
  std::size_t seq_len = 0;                   // T
  std::vector<std::int64_t> input_ids;       // [B * T], or empty with inputs_embeds
  TensorView<const float> inputs_embeds;     // [B, T, H] f32, or empty with input_ids
  std::vector<std::int64_t> cache_position;  // [T]: start, start + 1, ..., start + T - 1
  LogitsFor logits = LogitsFor::All;
};

// ExecOptions (model/ops.hpp): precision Auto is Bf16 when every Linear (and lm_head) is BF16 and
// the CPU has a bf16 dot product (resolve_precision); `attention` picks the kernel of a prefill from position 0.
struct LmRunOptions : ExecOptions {};

struct LmLogits {
  std::size_t batch = 0, rows = 0, vocab = 0;  // rows = T, or 1 for LogitsFor::Last
  std::vector<float> values;                   // [batch, rows, vocab]
  const float* row(std::size_t b, std::size_t r) const {
    return values.data() + (b * rows + r) * vocab;
  }
};

class CausalLM {
 public:
  // Loads DIR as save_pretrained writes it: config.json, and model.safetensors or
  // model.safetensors.index.json with its shards. Every tensor is checked against the config
  // first; errors name the file and the key or tensor.
  static CausalLM load(const std::string& dir) {
    namespace fs = std::filesystem;
    CausalLM lm;
    lm.dir_ = dir;
    lm.config_ = load_causal_lm_config((fs::path(dir) / "config.json").string());
    lm.store_ = std::make_unique<TensorStore>(dir);
    const fs::path single = fs::path(dir) / kSafetensorsSingleFile;
    std::error_code ec;
    const std::string where =
        (fs::exists(single, ec) ? single : fs::path(dir) / kSafetensorsIndexFile).string();
    lm.weights_ = load_causal_lm_weights(lm.config_, *lm.store_, where);
    return lm;
  }

  const std::string& directory() const noexcept { return dir_; }
  const CausalLmConfig& config() const noexcept { return config_; }
  const CausalLmWeights& weights() const noexcept { return weights_; }

  // Copies the Linear weights (F32 or BF16: q, k, v, o, gate, up, down, and lm_head unless it is
  // the tied embedding; fused projections are not copied) into feature blocks
  // (core/feature_blocks.hpp), for the calls whose matmuls all run the narrow path: a decode step
  // then reads its weights at the memory's speed with no transposes. Wider calls (a prefill) keep
  // reading the stored, mapped weights, on which the tile is faster. Same bits either way
  // (tests/test_causal_lm.cpp). The cost is memory: decode_weight_bytes() of anonymous memory
  // beside the mapped file, whose pages a prefill keeps reading. A matrix that padding to whole
  // blocks of 64 features would more than double (fewer than 32 features, as a hostile config's
  // [1, K]) is not copied, so the copy stays within twice the weights the file holds. Calling it
  // again does nothing.
  void copy_decode_weights(ThreadPool* pool = nullptr) {
    if (decode_weights_) return;
    auto decode = std::make_unique<CausalLmWeights>(weights_);
    std::vector<kernels::FeatureBlockedWeight> copies;
    bool f32 = false, bf16 = false;
    const auto blockable = [](const AnyTensorView& w) {
      return w.data() != nullptr && w.row_major() && w.rank() == 2 &&
             (w.dtype() == DType::F32 || w.dtype() == DType::BF16) &&
             feature_blocks_at_most_double(w.dim(0), w.dim(1), w.dtype());
    };
    const auto block = [&](AnyTensorView& w) {
      if (!blockable(w)) return;
      (w.dtype() == DType::F32 ? f32 : bf16) = true;
      copies.push_back(kernels::block_features(w, pool));
      w = copies.back().view();
    };
    for (DecoderLayerWeights& l : decode->decoder.layers) {
      AttentionWeights& a = l.attention;
      for (AnyTensorView* w : {&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &l.mlp.down}) block(*w);
      if (blockable(l.mlp.gate) && blockable(l.mlp.up)) {  // swiglu_mlp: one layout for both
        block(l.mlp.gate);
        block(l.mlp.up);
      }
    }
    if (!config_.tie_word_embeddings) block(decode->lm_head);
    decode_copies_ = std::move(copies);
    decode_weights_ = std::move(decode);
    decode_f32_ = f32;
    decode_bf16_ = bf16;
  }

  // copy_decode_weights where wants_decode_copy(choice, kernels.isa) (lm/decode_weights.hpp), with
  // the kernels the forward calls will run; a copy made before stays. Returns whether decode
  // steps read a copy.
  bool choose_decode_weights(
      DecodeWeights choice, ThreadPool* pool = nullptr,
      const kernels::KernelTable& kernels = kernels::default_kernel_table()) {
    if (wants_decode_copy(choice, kernels.isa)) copy_decode_weights(pool);
    return decode_weights_ != nullptr;
  }

  // The weights copy_decode_weights made (weights() before it), and their size in bytes.
  const CausalLmWeights& decode_weights() const noexcept {
    return decode_weights_ ? *decode_weights_ : weights_;
  }
  std::size_t decode_weight_bytes() const noexcept {
    std::size_t bytes = 0;
    for (const kernels::FeatureBlockedWeight& w : decode_copies_) bytes += w.bytes();
    return bytes;
  }

  // Whether a forward call's matmuls of `rows` rows (B x T, or the rows given to lm_head) read the
  // decode copy: only where `kernels` run every copied Linear of that many rows on the narrow
  // path at `precision` (resolved: F32 or Bf16).
  bool reads_decode_weights(std::size_t rows, Precision precision,
                            const kernels::KernelTable& kernels) const noexcept {
    if (decode_copies_.empty()) return false;
    const auto narrow = [&](DType dtype) {
      const auto packing = dtype == DType::BF16 && precision == Precision::Bf16
                               ? kernels::ActivationPacking::Bf16Pairs
                               : kernels::ActivationPacking::F32;
      return kernels.narrow_path_applies(rows, dtype, packing);
    };
    return (!decode_f32_ || narrow(DType::F32)) && (!decode_bf16_ || narrow(DType::BF16));
  }

  std::size_t vocab_size() const noexcept { return config_.vocab_size; }
  std::size_t hidden_size() const noexcept { return config_.hidden_size(); }

  // A cache for `batch` sequences of at most `max_len` positions, allocated once.
  KvCache make_cache(std::size_t batch, std::size_t max_len) const {
    return KvCache(config_, batch, max_len);
  }

  // Auto becomes Bf16 when every Linear weight, lm_head included, is stored as BF16 and `kernels`
  // (the ones forward() uses by default) have the CPU's bf16 dot product, F32 otherwise
  // (auto_precision, core/precision.hpp). Throws sgt::Error where default_kernel_table() does.
  Precision resolve_precision(
      Precision requested,
      const kernels::KernelTable& kernels = kernels::default_kernel_table()) const {
    if (requested != Precision::Auto) return requested;
    return auto_precision(linears_are_bf16(), kernels.bf16_dot_product);
  }

  // Runs the new tokens, appends their keys and values to `cache` at cache_position, and writes
  // the requested logits to `out`. Everything about the call that can be wrong (shapes, ids,
  // cache_position, the cache's room) is checked before the cache is touched. If a kernel fails
  // mid-way the cache keeps only the positions before cache_position.
  void forward(const LmInput& in, KvCache& cache, LmWorkspace& ws, const LmRunOptions& options,
               LmLogits& out) const {
    validate(in, cache);
    const std::size_t B = in.batch, T = in.seq_len, H = hidden_size(), V = vocab_size();
    const auto start = static_cast<std::size_t>(in.cache_position[0]);
    const Ops ops = Ops::from_options(options, resolve_precision(options.precision));
    // longrope: the call's factor set follows its end, start + T (kernels::rope_uses_long_factors).
    ws.plan(config_, B, T, cache.max_len(), ops.kernels(), start + T);
    std::size_t* positions = ws.positions();
    for (std::size_t t = 0; t < T; ++t) positions[t] = start + t;
    const CacheStep step{B, T, start, positions};

    try {
      // h = E[input_ids], or the caller's embeddings
      TensorView<float> h = ws.residual();
      if (in.input_ids.empty())
        std::copy(in.inputs_embeds.data(), in.inputs_embeds.data() + B * T * H, h.data());
      else
        embed_ids(in.input_ids.data(), B * T, TensorView<float>(h.data(), {B * T, H}), ops);
      const LayerBuffers buf = ws.layer_buffers();
      const DecoderConfig& d = config_.decoder;
      // Under LogitsFor::Last the last layer keeps only the last token of each sequence after its
      // attention (CachedDecoderLayer::forward_last_tokens); with T = 1 that is every row already.
      const bool prune = in.logits == LogitsFor::Last && T > 1;
      const CausalLmWeights& layers = weights_for(B * T, ops);
      const std::size_t last = layers.decoder.layers.size() - 1;  // the config has >= 1 layer
      for (std::size_t i = 0; i <= last; ++i) {
        const DecoderLayerWeights& layer = layers.decoder.layers[i];
        if (prune && i == last)
          CachedDecoderLayer::forward_last_tokens(d, layer, ws.rope().for_layer(d, i), step, cache,
                                                  i, h, buf, ws.last_rows(),
                                                  ws.last_token_buffers(), ops);
        else
          CachedDecoderLayer::forward(d, layer, ws.rope().for_layer(d, i), step, cache, i, h, buf,
                                      ops);
      }
      cache.commit(start, T);

      // logits = lm_head(RMSNorm(h)) for the rows asked for: every row of h, or the last token
      // of each sequence ([B, 1, H]: h itself when T = 1).
      const TensorView<float> rows = prune ? ws.last_rows() : h;
      const float eps = static_cast<float>(d.rms_norm_eps);
      ops.rms_norm(rows, weights_.decoder.final_norm, eps, d.norm_style, rows);
      out.batch = B;
      out.rows = in.logits == LogitsFor::Last ? 1 : T;
      out.vocab = V;
      out.values.resize(B * out.rows * V);
      ops.matmul(rows, weights_for(B * out.rows, ops).lm_head, AnyTensorView(),
                 TensorView<float>(out.values.data(), {B * out.rows, V}), ws.head_pack());
      // Gemma 2's final soft cap, cap * tanh(logits / cap), in f32 as transformers computes it.
      if (const float cap = d.final_logit_softcapping; cap != 0.0f)
        for (float& x : out.values) x = cap * std::tanh(x / cap);
    } catch (...) {
      cache.truncate(start);
      throw;
    }
  }

  // The same with a workspace of its own (allocates on every call).
  LmLogits forward(const LmInput& in, KvCache& cache, const LmRunOptions& options = {}) const {
    LmWorkspace ws;
    LmLogits out;
    forward(in, cache, ws, options, out);
    return out;
  }

 private:
  CausalLM() = default;

  const CausalLmWeights& weights_for(std::size_t rows, const Ops& ops) const noexcept {
    return reads_decode_weights(rows, ops.precision, ops.kernels()) ? *decode_weights_ : weights_;
  }

  // h = E[ids] * embedding_scale, rounded to the table's dtype as transformers rounds it; the
  // transform's x (model/transform.hpp) is the same call, so a protected prompt with nothing
  // protected reaches the layers with the bits of its ids.
  void embed_ids(const std::int64_t* ids, std::size_t count, TensorView<float> h,
                 const Ops& ops) const {
    ops.embedding(weights_.embed_tokens, ids, count, h, config_.embedding_scale);
  }

  // Every Linear weight, lm_head included, is stored as BF16.
  bool linears_are_bf16() const noexcept {
    auto bf16 = [](const AnyTensorView& w) {
      return w.data() == nullptr || w.dtype() == DType::BF16;
    };
    for (const DecoderLayerWeights& l : weights_.decoder.layers) {
      const AttentionWeights& a = l.attention;
      if (!bf16(a.q_proj) || !bf16(a.k_proj) || !bf16(a.v_proj) || !bf16(a.o_proj) ||
          !bf16(l.mlp.gate) || !bf16(l.mlp.up) || !bf16(l.mlp.down))
        return false;
    }
    return bf16(weights_.lm_head);
  }

  void validate(const LmInput& in, const KvCache& cache) const {
    const std::size_t B = in.batch, T = in.seq_len, H = hidden_size();
    if (B == 0 || T == 0)
      throw Error("empty input: batch " + std::to_string(B) + ", length " + std::to_string(T));
    std::size_t tokens = 0, values = 0;
    if (!checked_mul(B, T, tokens) || !checked_mul(tokens, H, values))
      throw Error("batch " + std::to_string(B) + " x length " + std::to_string(T) +
                  " overflows size_t");
    if (cache.num_layers() != config_.num_layers() || cache.kv_width() != config_.kv_width())
      throw Error("the KV cache was made for another model (" + std::to_string(cache.num_layers()) +
                  " layers of width " + std::to_string(cache.kv_width()) + ", this one has " +
                  std::to_string(config_.num_layers()) + " of " +
                  std::to_string(config_.kv_width()) + ")");
    if (cache.batch() != B)
      throw Error("the KV cache holds " + std::to_string(cache.batch()) + " sequences, the input " +
                  std::to_string(B));
    const bool ids = !in.input_ids.empty(), embeds = in.inputs_embeds.data() != nullptr;
    if (ids == embeds)
      throw Error(ids ? "give input_ids or inputs_embeds, not both"
                      : "give input_ids or inputs_embeds (both are empty)")
          .at_key("input_ids");
    if (ids) {
      if (in.input_ids.size() != tokens)
        throw Error("holds " + std::to_string(in.input_ids.size()) +
                    " ids, expected batch x length = " + std::to_string(tokens))
            .at_key("input_ids");
      const auto vocab = static_cast<std::int64_t>(vocab_size());
      for (std::size_t t = 0; t < tokens; ++t) {
        const std::int64_t id = in.input_ids[t];
        if (id < 0 || id >= vocab)
          throw Error("row " + std::to_string(t / T) + ", token " + std::to_string(t % T) +
                      ": id " + std::to_string(id) + " is outside the vocabulary [0, " +
                      std::to_string(vocab) + ")")
              .at_key("input_ids")
              .at_position(static_cast<std::int64_t>(t % T));
      }
    } else {
      const TensorView<const float>& e = in.inputs_embeds;
      if (e.size() != values || e.cols() != H)
        throw Error("shape " + e.shape_string() + ", expected [B, T, H] = [" + std::to_string(B) +
                    ", " + std::to_string(T) + ", " + std::to_string(H) + "]")
            .at_key("inputs_embeds");
    }
    if (in.cache_position.size() != T)
      throw Error("holds " + std::to_string(in.cache_position.size()) +
                  " positions, expected one per new token (" + std::to_string(T) + ")")
          .at_key("cache_position");
    if (in.cache_position[0] < 0)
      throw Error("position " + std::to_string(in.cache_position[0]) + " is negative")
          .at_key("cache_position")
          .at_position(in.cache_position[0]);
    // Room in the cache first: it also bounds the start, so start + t below cannot overflow.
    cache.check_append(static_cast<std::size_t>(in.cache_position[0]), T);
    for (std::size_t t = 1; t < T; ++t)
      if (in.cache_position[t] != in.cache_position[0] + static_cast<std::int64_t>(t))
        throw Error("positions must be consecutive (start, start + 1, ...), but entry " +
                    std::to_string(t) + " is " + std::to_string(in.cache_position[t]) + " after " +
                    std::to_string(in.cache_position[t - 1]))
            .at_key("cache_position")
            .at_position(in.cache_position[t]);
  }

  std::string dir_;
  CausalLmConfig config_;
  std::unique_ptr<TensorStore> store_;
  CausalLmWeights weights_;
  // copy_decode_weights: the Linear weights in feature blocks, and the dtypes among them.
  std::unique_ptr<CausalLmWeights> decode_weights_;
  std::vector<kernels::FeatureBlockedWeight> decode_copies_;
  bool decode_f32_ = false, decode_bf16_ = false;
};

SGT_ISA_END
}  // namespace sgt
