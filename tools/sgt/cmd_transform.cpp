// `sgt transform MODEL_DIR (--input IN.json | --text T | --chat CHAT.json) --output OUT`: a
// request's protected embeddings as safetensors, torch .pt or a vLLM request body.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <sgt/audit/protection_summary.hpp>
#include <sgt/core/thread_pool.hpp>
#include <sgt/io/stored_tensors.hpp>
#include <sgt/io/transform_output.hpp>
#include <sgt/kernels/isa_kernel_table.hpp>
#include <sgt/model/transform.hpp>

#include "commands.hpp"
#include "flags.hpp"
#include "text_front_end.hpp"

namespace sgt_cli {

// Named, not anonymous: the tool builds as one translation unit (tools/CMakeLists.txt).
namespace cmd_transform {

struct TransformArgs {
  std::string dir, output, noise_path;
  PromptFlags prompt;
  RunFlags run;
  std::optional<std::uint64_t> seed;
  std::optional<std::string> rng;
  sgt::AttentionAlgorithm attention = sgt::AttentionAlgorithm::Auto;
  bool dump_intermediates = false;
  sgt::TransformOutputOptions out;
  std::optional<sgt::DType> dtype;
  std::optional<std::uint64_t> max_tokens;
  std::string model_name;  // vllm-completions: default MODEL_DIR's base name
};

void declare(CLI::App& app, TransformArgs& t) {
  add_model_dir(app, t.dir, "MODEL_DIR", "the SGT model's directory");
  add_prompt_flags(app, t.prompt);
  add_run_flags(app, t.run);
  add_value_flag(app, "--output", "OUT", "the file to write", [&t](auto& v) { t.output = v; });
  add_value_flag(app, "--noise", "NOISE.safetensors", "eps itself: F32 tensor 'noise' [B, S, H]",
                 [&t](auto& v) { t.noise_path = v; });
  add_value_flag(app, "--seed", "N", "torch-seeded noise (parity checks, never production)",
                 [&t](auto& v) { t.seed = parse_u64("--seed", v); });
  add_value_flag(app, "--rng", "secure|torch", "the noise generator (default secure)",
                 [&t](auto& v) {
                   if (v != "secure" && v != "torch")
                     throw UsageError("--rng must be secure or torch, got '" + v + "'");
                   t.rng = v;
                 });
  add_value_flag(app, "--attention", "auto|sdpa|flash", "the attention kernel", [&t](auto& v) {
    t.attention = parse_enum("--attention", v, sgt::kAttentionAlgorithmNames);
  });
  app.add_flag("--dump-intermediates", t.dump_intermediates,
               "also write embeddings, mean, std and noise (safetensors)");
  add_value_flag(
      app, "--format", "safetensors|torch|vllm-completions", "what to write (default safetensors)",
      [&t](auto& v) { t.out.format = parse_enum("--format", v, sgt::kOutputFormatNames); });
  add_value_flag(
      app, "--output-dtype", "f32|bf16|f16", "default f32 for safetensors, bf16 otherwise",
      [&t](auto& v) { t.dtype = parse_enum("--output-dtype", v, sgt::kOutputDTypeNames); });
  add_value_flag(app, "--model-name", "NAME",
                 "vllm-completions: the request's model (default MODEL_DIR's base name)",
                 [&t](auto& v) {
                   if (v.empty()) throw UsageError("--model-name must not be empty");
                   t.model_name = v;
                 });
  add_value_flag(app, "--max-tokens", "N",
                 "vllm-completions: the request's max_tokens (default 16)", [&t](auto& v) {
                   t.max_tokens = parse_u64("--max-tokens", v);
                   if (*t.max_tokens == 0) throw UsageError("--max-tokens must be at least 1");
                 });
}

void check(TransformArgs& t) {
  if (t.dir.empty()) throw UsageError("transform needs MODEL_DIR");
  check_prompt_flags(t.prompt, true, "transform");
  if (t.output.empty()) throw UsageError("transform needs --output OUT");
  const sgt::OutputFormat format = t.out.format;
  t.out.dtype = t.dtype.value_or(sgt::default_output_dtype(format));
  if (t.dump_intermediates && format != sgt::OutputFormat::Safetensors)
    throw UsageError("--dump-intermediates needs --format safetensors");
  if (format != sgt::OutputFormat::VllmCompletions && (!t.model_name.empty() || t.max_tokens))
    throw UsageError("--model-name and --max-tokens need --format vllm-completions");
  t.out.request.model = t.model_name.empty() ? directory_base_name(t.dir) : t.model_name;
  t.out.request.max_tokens = t.max_tokens.value_or(16);
  if (!t.noise_path.empty() && (t.seed || t.rng))
    throw UsageError("--noise gives eps itself: it cannot be combined with --seed or --rng");
  if (t.rng == "torch" && !t.seed) throw UsageError("--rng torch needs --seed N");
  if (t.rng == "secure" && t.seed)
    throw UsageError("--rng secure takes no seed: it is keyed from the OS");
}

int run(const TransformArgs& t) {
  sgt::check_output_folder(t.output);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const sgt::Transform model(t.dir);
  const sgt::TransformInput in = load_request(t.dir, t.prompt);

  sgt::RunOptions options;
  options.attention = t.attention;
  options.precision = t.run.precision;
  options.max_tokens = t.run.max_prompt_tokens;
  // Intermediates only when they are written: on a long prompt they are 4 more [S, H] buffers.
  options.keep_intermediates = t.dump_intermediates;
  std::optional<sgt::StoredF32Tensor> noise;
  if (!t.noise_path.empty()) {
    noise = sgt::open_f32_tensor(t.noise_path, "noise");
    options.noise = sgt::NoiseSource::Injected;
    options.injected_noise = noise->view;
  } else if (t.seed) {
    options.noise = sgt::NoiseSource::Torch;
    options.seed = *t.seed;
  }
  sgt::ThreadPool pool(t.run.threads);
  options.pool = &pool;
  const auto t1 = clock::now();
  const sgt::TransformResult r =
      sgt::naming_stored_tensor(noise, [&] { return model.run(in, options); });
  const auto t2 = clock::now();
  sgt::write_transform_output(t.output, t.out,
                              sgt::output_arrays(r, in.attention_mask, t.dump_intermediates));
  const sgt::ProtectionSummary s = sgt::summarize_protection(model, in, r);
  using ms = std::chrono::duration<double, std::milli>;
  std::printf("transformed [%zu, %zu, %zu] -> %s\n", r.batch, r.seq_len, r.hidden,
              t.output.c_str());
  std::fputs(sgt::to_text(s, options.noise).c_str(), stdout);
  std::printf("time: load %.1f ms, transform %.1f ms (%zu threads, %s, precision %s)\n",
              ms(t1 - t0).count(), ms(t2 - t1).count(), pool.num_threads(),
              sgt::kernels::default_kernel_table().isa,
              sgt::precision_name(model.resolve_precision(options.precision)));
  return 0;
}

}  // namespace cmd_transform

Command add_transform_command(CLI::App& sgt) {
  return make_command<cmd_transform::TransformArgs>(
      sgt, "transform", "the protected embeddings of a request", cmd_transform::declare,
      cmd_transform::check, cmd_transform::run);
}

}  // namespace sgt_cli
