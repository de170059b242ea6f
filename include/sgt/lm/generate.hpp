// Generation with a CausalLM (lm/causal_lm.hpp): prefill the prompt, then feed back the
// chosen token one step at a time, every step a T = 1 forward on the KV cache. The token is chosen
// by a TokenSampler (lm/token_sampler.hpp): greedy by default -- what transformers' generate
// does with do_sample=False, ties to the lowest token id as torch.argmax -- or temperature / top-p
// sampling with a seed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/lm/causal_lm.hpp"
#include "sgt/lm/token_sampler.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct GenerateOptions {
  std::size_t max_new_tokens = 16;
  // A row that produces one of these stops there (the token is kept); generation ends when every
  // row has stopped. Empty: always max_new_tokens tokens.
  std::vector<std::int64_t> stop_tokens;
  // temperature 0 (the default): greedy. Row b samples with seed + b, so rows draw independently
  // and a row's tokens do not depend on the batch around it.
  SamplingOptions sampling;
  LmRunOptions run;
};

// The KV cache positions a generation writes: the prompt's P, then every new token but the last,
// which is produced and never fed back -- P + N - 1. With N = 0 the prompt's P: generate() then
// runs nothing, but a caller that also runs the prompt on the cache (the utility audit, for all of
// its positions' logits) needs them. Every cache a generation is given or makes is sized here.
inline std::size_t cache_positions_needed(std::size_t prompt_len, std::size_t max_new_tokens) {
  std::size_t n = 0;
  if (!checked_add(prompt_len, std::max<std::size_t>(max_new_tokens, 1) - 1, n))
    throw Error("a prompt of " + std::to_string(prompt_len) + " tokens + " +
                std::to_string(max_new_tokens) + " new ones overflow size_t");
  return n;
}

// prompt: B rows, each given as ids ([B * P] in input_ids) or as embeddings ([B, P, H] in
// inputs_embeds), at positions [0, P) of `cache`, which must have room for
// cache_positions_needed(P, max_new_tokens) positions. on_token(row, id) is called for every new
// token as soon as it is chosen (to stream it). Returns the new tokens of each row.
template <class OnToken>
std::vector<std::vector<std::int64_t>> generate(const CausalLM& lm, LmInput prompt,
                                                const GenerateOptions& options, KvCache& cache,
                                                LmWorkspace& ws, OnToken&& on_token) {
  const std::size_t B = prompt.batch, P = prompt.seq_len;
  std::vector<TokenSampler> samplers;
  for (std::size_t b = 0; b < B; ++b) {
    SamplingOptions row = options.sampling;
    row.seed += b;
    samplers.emplace_back(row);
  }
  std::vector<std::vector<std::int64_t>> out(B);
  if (options.max_new_tokens == 0) return out;
  const std::size_t needed = cache_positions_needed(P, options.max_new_tokens);
  if (needed > cache.max_len())
    throw Error("prompt of " + std::to_string(P) + " tokens + " +
                std::to_string(options.max_new_tokens) + " new ones need " +
                std::to_string(needed) + " cache positions, the cache has " +
                std::to_string(cache.max_len()));
  auto stops = [&](std::int64_t id) {
    return std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) !=
           options.stop_tokens.end();
  };

  prompt.cache_position.resize(P);
  for (std::size_t t = 0; t < P; ++t) prompt.cache_position[t] = static_cast<std::int64_t>(t);
  prompt.logits = LogitsFor::Last;
  LmLogits logits;
  lm.forward(prompt, cache, ws, options.run, logits);

  LmInput step;
  step.batch = B;
  step.seq_len = 1;
  step.input_ids.resize(B);
  step.cache_position.resize(1);
  step.logits = LogitsFor::Last;
  std::vector<bool> stopped(B, false);
  for (std::size_t n = 0;; ++n) {
    bool all_stopped = true;
    for (std::size_t b = 0; b < B; ++b) {
      if (stopped[b]) continue;  // (its row still runs, on its last token: rows share positions)
      const std::int64_t id = samplers[b].next(logits.row(b, 0), logits.vocab);
      step.input_ids[b] = id;
      out[b].push_back(id);
      on_token(b, id);
      stopped[b] = stops(id);
      all_stopped = all_stopped && stopped[b];
    }
    if (all_stopped || n + 1 == options.max_new_tokens) break;
    step.cache_position[0] = static_cast<std::int64_t>(P + n);
    lm.forward(step, cache, ws, options.run, logits);
  }
  return out;
}

// The same without a callback.
inline std::vector<std::vector<std::int64_t>> generate(const CausalLM& lm, LmInput prompt,
                                                       const GenerateOptions& options,
                                                       KvCache& cache, LmWorkspace& ws) {
  return generate(lm, std::move(prompt), options, cache, ws, [](std::size_t, std::int64_t) {});
}

// The same with a cache and workspace of its own, sized for the prompt and the new tokens
// (greedy with the default options).
inline std::vector<std::vector<std::int64_t>> generate(const CausalLM& lm, const LmInput& prompt,
                                                       const GenerateOptions& options = {}) {
  KvCache cache =
      lm.make_cache(prompt.batch, cache_positions_needed(prompt.seq_len, options.max_new_tokens));
  LmWorkspace ws;
  return generate(lm, prompt, options, cache, ws);
}

// Why a row's generation ended: it produced a stop token (kept as its last token), or it reached
// max_new_tokens.
enum class StopReason { StopToken, MaxNewTokens };

inline constexpr EnumName<StopReason> kStopReasonNames[] = {
    {StopReason::StopToken, "eos"},
    {StopReason::MaxNewTokens, "max_new_tokens"},
};

// The stop reason of a row `generate` returned: generate stops a row at its first stop token, so
// the row ends with one exactly when it stopped there.
inline StopReason stop_reason(const std::vector<std::int64_t>& row_tokens,
                              const GenerateOptions& options) {
  const bool stopped = !row_tokens.empty() &&
                       std::find(options.stop_tokens.begin(), options.stop_tokens.end(),
                                 row_tokens.back()) != options.stop_tokens.end();
  return stopped ? StopReason::StopToken : StopReason::MaxNewTokens;
}

SGT_ISA_END
}  // namespace sgt
