// `sgt generate BASE_DIR (--text T | --chat CHAT.json) [--protect SGT_DIR]`: the base model's
// answer (pipeline/protected_generation.hpp), streamed to stdout or, with --json, one JSON document
// at the end; a summary on stderr. Text builds only.
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <sgt/core/thread_pool.hpp>
#include <sgt/io/stored_tensors.hpp>
#include <sgt/kernels/isa_kernel_table.hpp>
#include <sgt/lm/decode_weights.hpp>
#include <sgt/pipeline/protected_generation.hpp>

#include "commands.hpp"
#include "flags.hpp"
#include "prompt_source.hpp"

namespace sgt_cli {

// Named, not anonymous: the tool builds as one translation unit (tools/CMakeLists.txt).
namespace cmd_generate {

struct GenerateArgs {
  std::string dir, protect_dir, inputs_embeds;
  PromptFlags prompt;
  RunFlags run;
  std::size_t max_new_tokens = 32;
  sgt::SamplingOptions sampling;
  std::optional<std::uint64_t> seed, noise_seed;
  bool have_top_p = false, json = false;
  sgt::DecodeWeights decode_weights = sgt::DecodeWeights::Auto;
};

void declare(CLI::App& app, GenerateArgs& g) {
  add_model_dir(app, g.dir, "BASE_DIR", "a Hugging Face causal LM with its tokenizer");
  add_prompt_flags(app, g.prompt);
  add_run_flags(app, g.run);
  add_value_flag(app, "--protect", "SGT_DIR", "feed the model SGT_DIR's protected embeddings",
                 [&g](auto& v) { g.protect_dir = v; });
  add_value_flag(app, "--inputs-embeds", "OUT.safetensors",
                 "the prompt as sgt transform wrote it (tensor 'transformed', F32/BF16/F16)",
                 [&g](auto& v) { g.inputs_embeds = v; });
  add_value_flag(app, "--noise-seed", "N", "torch-seeded protection noise (tests only)",
                 [&g](auto& v) { g.noise_seed = parse_u64("--noise-seed", v); });
  add_value_flag(app, "--max-new-tokens", "N", "the answer's length at most (default 32)",
                 [&g](auto& v) {
                   const std::uint64_t n = parse_u64("--max-new-tokens", v);
                   if (n == 0 || n > (1u << 20))
                     throw UsageError("--max-new-tokens must be between 1 and 1048576");
                   g.max_new_tokens = static_cast<std::size_t>(n);
                 });
  add_value_flag(app, "--temperature", "T", "sampling temperature (default 0: greedy)",
                 [&g](auto& v) {
                   g.sampling.temperature = parse_double("--temperature", v);
                   if (g.sampling.temperature < 0) throw UsageError("--temperature must be >= 0");
                 });
  add_value_flag(app, "--top-p", "P", "nucleus sampling (default 1)", [&g](auto& v) {
    g.sampling.top_p = parse_double("--top-p", v);
    if (!(g.sampling.top_p > 0 && g.sampling.top_p <= 1))
      throw UsageError("--top-p must be in (0, 1]");
    g.have_top_p = true;
  });
  add_value_flag(app, "--seed", "N", "sampling's seed (default: from the OS)",
                 [&g](auto& v) { g.seed = parse_u64("--seed", v); });
  app.add_flag("--json", g.json, "one JSON document at the end instead of streaming");
  add_value_flag(app, "--decode-weights", "auto|mapped|copy",
                 "what decode steps read: a copy of the weights in feature blocks (about their "
                 "size in extra memory) or the mapped file (default auto: the copy with the AVX2 "
                 "and SSE2 kernels, where it is faster)",
                 [&g](const std::string& v) {
                   g.decode_weights = parse_enum("--decode-weights", v, sgt::kDecodeWeightsNames);
                 });
}

void check(const GenerateArgs& g) {
  if (g.dir.empty()) throw UsageError("generate needs BASE_DIR");
  if (!g.inputs_embeds.empty()) {
    if (g.prompt.given() || !g.protect_dir.empty())
      throw UsageError(
          "--inputs-embeds is the whole prompt: it takes no --text, --chat or --protect");
  } else {
    check_prompt_flags(g.prompt, false, "generate");
  }
  if (g.sampling.temperature == 0 && (g.seed || g.have_top_p))
    throw UsageError("--seed and --top-p shape sampling: they need --temperature > 0");
  if (g.noise_seed && g.protect_dir.empty())
    throw UsageError("--noise-seed seeds the protection's noise: it needs --protect SGT_DIR");
}

int run(const GenerateArgs& g) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  sgt::ProtectedGeneration session(g.dir, g.protect_dir);
  sgt::ThreadPool pool(g.run.threads);
  session.choose_decode_weights(g.decode_weights, &pool);
  std::optional<sgt::text::EncodedPrompt> prompt;
  std::optional<sgt::StoredEmbeddings> embeds;
  if (g.inputs_embeds.empty())
    prompt = session.encode(prompt_source(g.prompt));
  else
    embeds =
        sgt::read_stored_embeddings(g.inputs_embeds, "transformed", session.lm().hidden_size());
  const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();

  sgt::ProtectedGenerationOptions options;
  options.pool = &pool;
  options.precision = g.run.precision;
  options.max_transform_tokens = g.run.max_prompt_tokens;
  options.max_new_tokens = g.max_new_tokens;
  options.sampling = g.sampling;
  options.sampling_seed = g.seed;
  options.noise_seed = g.noise_seed;
  sgt::OnText stream;
  if (!g.json)
    stream = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
  const sgt::ProtectedGenerationResult r = prompt ? session.generate(*prompt, options, stream)
                                                  : session.generate(*embeds, options, stream);
  if (g.json) {
    const auto j = sgt::to_json(r, prompt ? &prompt->input.input_ids : nullptr);
    std::printf("%s\n",
                j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  char decode_copy[64] = ", decode weights mapped";
  if (session.lm().decode_weight_bytes() != 0)
    std::snprintf(decode_copy, sizeof decode_copy, ", decode copy %.1f MiB",
                  static_cast<double>(session.lm().decode_weight_bytes()) / (1 << 20));
  std::string protection = "clean";
  if (embeds) protection = "embeddings from " + g.inputs_embeds;
  if (r.protected_tokens)
    protection = std::to_string(*r.protected_tokens) + " protected by " + g.protect_dir +
                 ", transform " + std::to_string(std::lround(r.timings.transform_ms)) + " ms";
  std::fprintf(stderr,
               "%zu prompt tokens (%s), %zu new tokens (stop: %s); load %.1f ms, prefill %.1f ms, "
               "decode %.1f ms (%.1f tokens/s); %zu threads, %s, precision %s%s\n",
               r.prompt_tokens, protection.c_str(), r.ids.size(),
               r.stop_reason == sgt::StopReason::StopToken ? "eos" : "max new tokens", load_ms,
               r.timings.prefill_ms, r.timings.decode_ms,
               r.timings.decode_tokens_per_second(r.ids.size()), pool.num_threads(),
               sgt::kernels::default_kernel_table().isa, sgt::precision_name(r.precision),
               decode_copy);
  return 0;
}

}  // namespace cmd_generate

Command add_generate_command(CLI::App& sgt) {
  return make_command<cmd_generate::GenerateArgs>(
      sgt, "generate", "a base model's answer, clean or protected", cmd_generate::declare,
      cmd_generate::check, cmd_generate::run);
}

}  // namespace sgt_cli
