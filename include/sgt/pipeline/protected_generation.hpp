// Protected generation: the client's transform and the server's model in one session, text in,
// text out -- what `sgt generate --protect` runs and what a server endpoint calls.
//
//   sgt::ProtectedGeneration session("base_dir", "sgt_dir");    // sgt_dir "": no protection
//   auto prompt = session.encode(source);                       // the base model's tokenizer
//   auto r = session.generate(prompt, options, [](std::string_view piece) { ... });
//   // r.ids, r.text, r.stop_reason, r.timings
//
// With a transform, the base model never sees the prompt's ids: it is fed the transform's
// protected embeddings of them (inputs_embeds), as a server with prompt embeddings is. Without
// one it answers from the ids. A prompt can also be embeddings stored by `sgt transform`.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/stored_tensors.hpp"
#include "sgt/lm/base_compatibility.hpp"
#include "sgt/lm/causal_lm.hpp"
#include "sgt/lm/config_json.hpp"
#include "sgt/lm/generate.hpp"
#include "sgt/lm/token_sampler.hpp"
#include "sgt/model/transform.hpp"
#include "sgt/pipeline/prompt_source.hpp"
#include "sgt/random/os_entropy.hpp"
#include "sgt/text/tokenizer/decode_stream.hpp"
#include "sgt/text/tokenizer/tokenizer.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct ProtectedGenerationOptions {
  ThreadPool* pool = nullptr;  // null: the calling thread
  Precision precision = Precision::Auto;
  std::size_t max_new_tokens = 32;
  std::size_t max_transform_tokens = kDefaultMaxTransformTokens;  // RunOptions::max_tokens
  SamplingOptions sampling;  // temperature 0 (the default): greedy
  // Sampling's key; none: drawn from the OS for each call (ignored when greedy).
  std::optional<std::uint64_t> sampling_seed;
  // The protection's noise: none is secure (keyed from the OS); a seed gives torch-seeded noise,
  // for tests and reproductions only.
  std::optional<std::uint64_t> noise_seed;
};

struct GenerationTimings {
  double transform_ms = 0;  // the protection (0 without a transform)
  double prefill_ms = 0;    // to the first new token
  double decode_ms = 0;     // the tokens after it
  double decode_tokens_per_second(std::size_t new_tokens) const noexcept {
    return new_tokens > 1 ? 1000.0 * double(new_tokens - 1) / decode_ms : 0.0;
  }
};

struct ProtectedGenerationResult {
  std::size_t prompt_tokens = 0;
  std::optional<std::size_t> protected_tokens;  // with a transform
  std::vector<std::int32_t> ids;                // the new tokens
  std::string text;                             // their text, special tokens skipped
  StopReason stop_reason = StopReason::MaxNewTokens;
  SamplingOptions sampling;  // as run (with the seed that was drawn)
  Precision precision = Precision::F32;
  GenerationTimings timings;
};

// The answer as one JSON document (`sgt generate --json`): {prompt_ids (null for a prompt given
// as embeddings), protected_tokens (null without a transform), new_ids, answer, stop, sampling
// ("greedy" or {temperature, top_p, seed}), precision}.
inline nlohmann::ordered_json to_json(const ProtectedGenerationResult& r,
                                      const std::vector<std::int64_t>* prompt_ids) {
  using json = nlohmann::ordered_json;
  json j;
  j["prompt_ids"] = prompt_ids ? json(*prompt_ids) : json(nullptr);
  j["protected_tokens"] = r.protected_tokens ? json(*r.protected_tokens) : json(nullptr);
  j["new_ids"] = r.ids;
  j["answer"] = r.text;
  j["stop"] = enum_name(kStopReasonNames, r.stop_reason);
  j["sampling"] = TokenSampler(r.sampling).greedy() ? json("greedy")
                                                    : json{{"temperature", r.sampling.temperature},
                                                           {"top_p", r.sampling.top_p},
                                                           {"seed", r.sampling.seed}};
  j["precision"] = precision_name(r.precision);
  return j;
}

// Called with each piece of the answer's text as soon as it is complete UTF-8.
using OnText = std::function<void(std::string_view piece)>;

class ProtectedGeneration {
 public:
  // base_dir: a Hugging Face causal LM with its tokenizer (and generation_config.json's eos);
  // protect_dir: an SGT model made for that base model, or empty for clean generation.
  explicit ProtectedGeneration(const std::string& base_dir, const std::string& protect_dir = "")
      : base_dir_(base_dir),
        lm_(CausalLM::load(base_dir)),
        tokenizer_(text::Tokenizer::load(base_dir + "/tokenizer.json")),
        stop_tokens_(load_eos_token_ids(base_dir)) {
    if (protect_dir.empty()) return;
    transform_.emplace(protect_dir);
    check_base_compatible(*transform_, lm_);
  }

  const CausalLM& lm() const noexcept { return lm_; }
  // CausalLM::choose_decode_weights: whether decode steps read a copy of the Linear weights in
  // feature blocks (faster where the core, not memory, bounds them; about the weights' size in
  // memory). Returns whether they do.
  bool choose_decode_weights(DecodeWeights choice, ThreadPool* pool = nullptr) {
    return lm_.choose_decode_weights(choice, pool);
  }
  const text::Tokenizer& tokenizer() const noexcept { return tokenizer_; }
  const Transform* transform() const noexcept { return transform_ ? &*transform_ : nullptr; }

  // The prompt through the base model's tokenizer; a chat is answered, so the template's
  // assistant header goes last.
  text::EncodedPrompt encode(PromptSource source) const {
    if (!source.chat_path.empty()) source.add_generation_prompt = true;
    return encode_prompt(base_dir_, tokenizer_, source);
  }

  ProtectedGenerationResult generate(const text::EncodedPrompt& prompt,
                                     const ProtectedGenerationOptions& options,
                                     const OnText& on_text = {}) const {
    const TransformInput& in = prompt.input;
    const std::size_t S = in.seq_len;
    if (S == 0 || in.batch != 1) throw Error("the prompt has no tokens");
    for (std::size_t s = 0; s < in.input_ids.size(); ++s)
      if (in.input_ids[s] < 0 || static_cast<std::uint64_t>(in.input_ids[s]) >= lm_.vocab_size())
        throw Error("the tokenizer's id " + std::to_string(in.input_ids[s]) +
                    " is outside the model's vocabulary (vocab_size " +
                    std::to_string(lm_.vocab_size()) + ")")
            .at_file(base_dir_ + "/tokenizer.json")
            .at_position(static_cast<std::int64_t>(s));
    LmInput lm_in;
    lm_in.batch = 1;
    lm_in.seq_len = S;
    if (!transform_) {
      lm_in.input_ids = in.input_ids;
      return run(lm_in, options, on_text, 0.0, std::nullopt);
    }
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    RunOptions run_options;
    run_options.pool = options.pool;
    run_options.precision = options.precision;
    run_options.max_tokens = options.max_transform_tokens;
    if (options.noise_seed) {
      run_options.noise = NoiseSource::Torch;
      run_options.seed = *options.noise_seed;
    }
    const TransformResult protected_prompt = transform_->run(in, run_options);
    const double transform_ms =
        std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    std::size_t protected_tokens = 0;
    for (std::size_t t = 0; t < in.batch * in.seq_len; ++t) protected_tokens += in.is_protected(t);
    lm_in.inputs_embeds =
        TensorView<const float>(protected_prompt.transformed.data(), {1, S, lm_.hidden_size()});
    return run(lm_in, options, on_text, transform_ms, protected_tokens);
  }

  // A prompt given as embeddings ([S, H], e.g. read_stored_embeddings of what `sgt transform`
  // wrote): the base model answers them as they are.
  ProtectedGenerationResult generate(const StoredEmbeddings& prompt,
                                     const ProtectedGenerationOptions& options,
                                     const OnText& on_text = {}) const {
    if (prompt.seq_len == 0) throw Error("the prompt has no tokens");
    LmInput lm_in;
    lm_in.batch = 1;
    lm_in.seq_len = prompt.seq_len;
    lm_in.inputs_embeds =
        TensorView<const float>(prompt.values.data(), {1, prompt.seq_len, lm_.hidden_size()});
    return run(lm_in, options, on_text, 0.0, std::nullopt);
  }

 private:
  ProtectedGenerationResult run(const LmInput& in, const ProtectedGenerationOptions& options,
                                const OnText& on_text, double transform_ms,
                                std::optional<std::size_t> protected_tokens) const {
    using clock = std::chrono::steady_clock;
    using ms = std::chrono::duration<double, std::milli>;
    ProtectedGenerationResult r;
    r.prompt_tokens = in.seq_len;
    r.protected_tokens = protected_tokens;
    r.precision = lm_.resolve_precision(options.precision);
    r.timings.transform_ms = transform_ms;
    GenerateOptions g;
    g.max_new_tokens = options.max_new_tokens;
    g.stop_tokens = stop_tokens_;
    g.sampling = options.sampling;
    if (!TokenSampler(options.sampling).greedy()) {
      if (options.sampling_seed)
        g.sampling.seed = *options.sampling_seed;
      else
        fill_os_entropy(&g.sampling.seed, sizeof(g.sampling.seed));
    }
    r.sampling = g.sampling;
    g.run.pool = options.pool;
    g.run.precision = options.precision;

    const std::size_t positions = cache_positions_needed(in.seq_len, options.max_new_tokens);
    const std::size_t trained = lm_.config().decoder.max_position_embeddings;
    if (trained && positions > trained)
      throw Error("a prompt of " + std::to_string(in.seq_len) + " tokens and " +
                  std::to_string(options.max_new_tokens) + " new ones need " +
                  std::to_string(positions) + " positions, more than max_position_embeddings " +
                  std::to_string(trained))
          .at_file(base_dir_ + "/config.json");
    KvCache cache = lm_.make_cache(1, positions);
    LmWorkspace ws;
    std::optional<text::DecodeStream> stream;
    if (on_text) stream.emplace(tokenizer_, /*skip_special_tokens=*/true);
    const auto t1 = clock::now();
    clock::time_point first_token;
    const auto rows = sgt::generate(lm_, in, g, cache, ws, [&](std::size_t, std::int64_t id) {
      if (r.ids.empty()) first_token = clock::now();
      r.ids.push_back(static_cast<std::int32_t>(id));
      if (!stream) return;
      if (const std::optional<std::string> piece = stream->step(static_cast<std::int32_t>(id)))
        on_text(*piece);
    });
    const auto t2 = clock::now();
    r.timings.prefill_ms = ms(first_token - t1).count();
    r.timings.decode_ms = ms(t2 - first_token).count();
    r.stop_reason = stop_reason(rows.at(0), g);
    r.text = tokenizer_.decode(r.ids, true);
    return r;
  }

  std::string base_dir_;
  CausalLM lm_;
  text::Tokenizer tokenizer_;
  std::vector<std::int64_t> stop_tokens_;
  std::optional<Transform> transform_;
};

SGT_ISA_END
}  // namespace sgt
