// The whole transform, end to end, on a model shaped like the SGT estimators people deploy: each
// estimator is one Llama-3.2-1B decoder layer (hidden 2048, 32 heads, 8 kv heads, head_dim 64,
// intermediate 8192, llama3 RoPE) plus final norm, a 2048 x 2048 head and its parameterization;
// BF16 weights. The model is written once into a temporary directory and loaded like any other.
//
// The Gemma-2-shaped row (gemma2 = 1): the same sizes as a gemma2 estimator -- its layer is a local
// one, with a sliding window of kGemmaWindow keys (shorter than the longest prompts) and the
// attention-logit soft cap of 50, query_pre_attn_scalar = head_dim, GeGLU, (1 + w) norms and the
// attention's and MLP's output norms -- so the cost of the soft cap inside flash attention and the
// window's skipped key blocks show next to the Llama row.
//
// Reported: tokens/s, and GFLOP/s counted as 2 * T * params of the projections plus the causal
// attention (4 * S^2 * head_dim * heads / 2 per layer), against bench_fma_peak's figure. Before
// timing, every configuration is compared with the reference-kernel path on a short prompt of
// the same model (the plain kernels at full length would take minutes) and skipped with an error
// if they disagree.
//
// Precision: bf16 = 1 runs Precision::Bf16 (the default for these BF16 weights), 0 Precision::F32.
//
// Run: bench_transform --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//      (--benchmark_filter=gemma2:1 for the Gemma-2-shaped row alone)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "bench_support.hpp"

namespace {

constexpr std::size_t kHidden = 2048, kHeads = 32, kKvHeads = 8, kHeadDim = 64, kInter = 8192,
                      kVocab = 4096;
constexpr std::size_t kGemmaWindow = 512;

enum class Family { Llama, Gemma2 };

nlohmann::json estimator_config(Family family, const char* parameterization) {
  nlohmann::json p = {{"type", parameterization}};
  if (std::string(parameterization) == "cloak") {
    p["scale"] = {0.0001, 2.0};
    p["shallow"] = 1.0;
  }
  nlohmann::json config = {
      {"hidden_size", kHidden},        {"intermediate_size", kInter},     {"num_hidden_layers", 1},
      {"num_attention_heads", kHeads}, {"num_key_value_heads", kKvHeads}, {"head_dim", kHeadDim},
      {"rms_norm_eps", 1e-5}};
  if (family == Family::Gemma2) {
    // Gemma2Config's own soft cap and pattern (layer 0 local); the window cut to kGemmaWindow.
    config.update({{"sliding_window", kGemmaWindow},
                   {"query_pre_attn_scalar", kHeadDim},
                   {"attn_logit_softcapping", 50.0},
                   {"hidden_activation", "gelu_pytorch_tanh"},
                   {"rope_theta", 10000.0},
                   {"max_position_embeddings", 8192}});
    return {{"model_type", "gemma2"},
            {"config", config},
            {"final_norm", true},
            {"head", {{"bias", true}}},
            {"parameterization", p}};
  }
  config.update(sgt_bench::llama3_rope_keys());
  return {{"model_type", "llama"},
          {"config", config},
          {"final_norm", true},
          {"head", {{"bias", true}}},
          {"parameterization", p}};
}

// Writes the models once per process, under one directory removed at exit; returns the family's.
std::string write_model(Family family) {
  static const std::filesystem::path root = [] {
    const auto path = std::filesystem::temp_directory_path() /
                      ("sgt_bench_transform_" + std::to_string(::getpid()));
    std::atexit([] { std::filesystem::remove_all(root); });
    return path;
  }();
  const auto path = root / (family == Family::Gemma2 ? "gemma2" : "llama");
  std::filesystem::create_directories(path);
  nlohmann::json config = {{"format", "sgt4t"},
                           {"format_version", 1},
                           {"vocab_size", kVocab},
                           {"hidden_size", kHidden},
                           {"mean_estimator", estimator_config(family, "bounded_tanh")},
                           {"std_estimator", estimator_config(family, "cloak")}};
  config["mean_estimator"]["parameterization"]["bound"] = 1.0;
  std::ofstream(path / "config.json") << config.dump(2);
  sgt_bench::RandomWeights w;
  for (const sgt::ExpectedTensor& t : sgt::expected_tensors(sgt::parse_model_config(config)))
    w.add_listed(t.name, t.shape);
  w.write((path / "model.safetensors").string());
  return path.string();
}

const sgt::Transform& model(Family family) {
  if (family == Family::Gemma2) {
    static const sgt::Transform gemma2(write_model(Family::Gemma2));
    return gemma2;
  }
  static const sgt::Transform llama(write_model(Family::Llama));
  return llama;
}

// Query-key pairs of a causal attention over `tokens` positions: S^2 / 2 without a window (the
// count the Llama row has always used), the keys each query's window leaves with one.
double attention_pairs(std::size_t tokens, std::size_t window) {
  if (window == 0) return static_cast<double>(tokens) * tokens / 2;
  double pairs = 0;
  for (std::size_t i = 0; i < tokens; ++i) pairs += static_cast<double>(std::min(i + 1, window));
  return pairs;
}

sgt::TransformInput prompt(std::size_t tokens) {
  std::vector<std::int64_t> ids(tokens);
  for (std::size_t i = 0; i < tokens; ++i) ids[i] = static_cast<std::int64_t>((i * 7919) % kVocab);
  return sgt::TransformInput::single(ids);
}

// Optimized vs reference kernels on a 17-token prompt, with the same injected noise, at the
// precision being timed (the reference kernels round bf16 activations the same way).
bool agrees_with_reference(const sgt::Transform& model, sgt::AttentionAlgorithm algorithm,
                           sgt::Precision precision, sgt::ThreadPool* pool) {
  const auto in = prompt(17);
  std::vector<float> eps(17 * kHidden, 0.5f);
  sgt::RunOptions o;
  o.noise = sgt::NoiseSource::Injected;
  o.injected_noise = sgt::TensorView<const float>(eps.data(), {1, 17, kHidden});
  o.attention = algorithm;
  o.precision = precision;
  o.pool = pool;
  const auto fast = model.run(in, o);
  o.reference_kernels = true;
  const auto ref = model.run(in, o);
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < fast.transformed.size(); ++i) {
    err = std::max(err, std::fabs(double(fast.transformed[i]) - ref.transformed[i]));
    scale = std::max(scale, std::fabs(double(ref.transformed[i])));
  }
  // Bf16: a bf16 rounding of an activation may flip between the two paths (1 ulp = 2^-8).
  return err <= (precision == sgt::Precision::Bf16 ? 1e-2 : 1e-4) * scale;
}

void BM_Transform(benchmark::State& state) {
  const auto tokens = static_cast<std::size_t>(state.range(0));
  const auto threads = static_cast<std::size_t>(state.range(1));
  const auto algorithm =
      state.range(2) ? sgt::AttentionAlgorithm::Flash : sgt::AttentionAlgorithm::Sdpa;
  const auto precision = state.range(3) ? sgt::Precision::Bf16 : sgt::Precision::F32;
  const Family family = state.range(4) ? Family::Gemma2 : Family::Llama;
  const sgt::Transform& model = ::model(family);
  sgt::ThreadPool pool(threads);
  if (!agrees_with_reference(model, algorithm, precision, &pool)) {
    state.SkipWithError("transform disagrees with its reference-kernel path");
    return;
  }
  const auto in = prompt(tokens);
  sgt::RunOptions o;
  o.pool = &pool;
  o.attention = algorithm;
  o.precision = precision;
  sgt::Workspace ws;
  sgt::TransformResult r;
  model.run(in, o, ws, r);  // plan the workspace once, as a long-lived caller would
  for (auto _ : state) {
    model.run(in, o, ws, r);
    benchmark::DoNotOptimize(r.transformed.data());
  }
  // Weights of both estimators' projections, MLPs and heads.
  const double params =
      2.0 * (2.0 * kHidden * kHeads * kHeadDim + 2.0 * kHidden * kKvHeads * kHeadDim +
             3.0 * kHidden * kInter + kHidden * kHidden);
  // Two flops (multiply, add) per weight and token, plus both estimators' causal attention: q k^T
  // and p v, 2 flops per dimension each, for every query-key pair the window leaves (~S^2 / 2
  // without one).
  const std::size_t window = family == Family::Gemma2 ? kGemmaWindow : 0;
  const double flops =
      2.0 * params * tokens + 2.0 * (4.0 * attention_pairs(tokens, window) * kHeadDim * kHeads);
  state.counters["tokens/s"] =
      benchmark::Counter(double(tokens) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(family == Family::Gemma2 ? "gemma2-shaped" : "llama-shaped") +
                 ", " + (state.range(2) ? "flash" : "sdpa") + ", " + sgt::simd::arch_name() +
                 ", precision " + sgt::precision_name(precision));
}

}  // namespace

BENCHMARK(BM_Transform)
    ->ArgNames({"tokens", "threads", "flash", "bf16", "gemma2"})
    ->ArgsProduct({{16, 128, 512, 2048}, {1, 2}, {1}, {1, 0}, {0, 1}})
    ->Args({512, 1, 0, 1, 0})
    ->Args({2048, 1, 0, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
