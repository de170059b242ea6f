// The transform end to end against the PyTorch + Hugging Face reference (tools/reference.py).
// Every case directory under tests/data/e2e holds a model, an input, the noise, and the
// reference's outputs; see tests/data/e2e/README.md for how they were made.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "support/kernel_harness.hpp"
#include "support/slow_run.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kE2e = fs::path(SGT_TEST_DATA_DIR) / "e2e";
const fs::path kExamples = fs::path(SGT_TEST_DATA_DIR) / ".." / ".." / "examples";

std::vector<fs::path> cases() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(kE2e))
    if (entry.is_directory() && fs::exists(entry.path() / "expected.safetensors"))
      out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<float> tensor_values(const sgt::SafetensorsFile& f, const std::string& name) {
  const auto v = f.tensor(name).as<float>();
  return {v.data(), v.data() + v.size()};
}

// max |a - b| over real positions, relative to the largest |b| there: a tolerance scaled to the
// magnitude of the values.
// (Vectors of either allocator: results are WipedVectors, expected values plain vectors.)
template <class A, class B>
double relative_error(const A& a, const B& b, const sgt::TransformInput& in, std::size_t hidden) {
  double err = 0, scale = 0;
  REQUIRE(a.size() == b.size());
  for (std::size_t t = 0; t < in.batch * in.seq_len; ++t) {
    if (!in.attention_mask.empty() && !in.attention_mask[t]) continue;
    for (std::size_t i = 0; i < hidden; ++i) {
      err = std::max(err, std::fabs(double(a[t * hidden + i]) - b[t * hidden + i]));
      scale = std::max(scale, std::fabs(double(b[t * hidden + i])));
    }
  }
  return err / std::max(scale, 1e-30);
}

template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Precision::Bf16 against the f32 reference: activations rounded to 8 significant bits before every
// BF16 Linear. PyTorch's own bf16 module (everything in bf16) is the yardstick it must beat; see
// docs/format.md, "Precision", for the measured values of both.
constexpr double kBf16Tolerance = 3e-2;

// A bf16 case's measured yardstick (bf16_yardstick.json, tools/fixtures/e2e_fixtures.py): PyTorch
// bf16's own error for the mean and the std estimator. The bound is the larger of it and
// kBf16Tolerance, so a model where bf16 costs more (Gemma: head_dim 256, (1 + w) norms) is held
// to what serving it in bf16 with PyTorch costs.
double bf16_bound(const fs::path& dir, const char* estimator) {
  std::ifstream f(dir / "bf16_yardstick.json");
  if (!f) return kBf16Tolerance;
  return std::max(kBf16Tolerance, nlohmann::json::parse(f).at(estimator).get<double>());
}

bool has_bf16_weights(const sgt::Transform& model) {
  for (const auto& name : model.tensors().names())
    if (model.tensors().info(name).dtype == sgt::DType::BF16) return true;
  return false;
}

double tolerance_for(const sgt::Transform& model) {
  // f32 weights: 1e-4; any 16-bit weight: 2e-3 (the reference runs on the same rounded weights,
  // but activations then sit where f32 reassociation moves more digits).
  for (const auto& name : model.tensors().names())
    if (model.tensors().info(name).dtype != sgt::DType::F32) return 2e-3;
  return 1e-4;
}

}  // namespace

TEST_CASE("every e2e case matches the PyTorch reference") {
  std::size_t compared = 0;
  for (const fs::path& dir : cases()) {
    if (!fs::exists(dir / "noise.safetensors")) continue;  // seeded cases are checked below
    ++compared;
    CAPTURE(dir.filename().string());
    const sgt::Transform model(dir.string());
    const auto in = sgt::load_transform_input((dir / "input.json").string());
    const sgt::SafetensorsFile noise((dir / "noise.safetensors").string());
    const sgt::SafetensorsFile expected((dir / "expected.safetensors").string());
    const std::size_t H = model.hidden_size();
    const double tol = tolerance_for(model);

    sgt::RunOptions options;
    options.keep_intermediates = true;
    options.noise = sgt::NoiseSource::Injected;
    options.injected_noise = noise.tensor("noise").as<float>();
    sgt::ThreadPool pool(2);
    options.pool = &pool;

    // Optimized kernels with either attention, then every kernel on its reference (which
    // always uses SDPA).
    struct Path {
      sgt::AttentionAlgorithm attention;
      bool reference;
    };
    // Precision::F32 is the reference's arithmetic. Precision::Bf16 rounds the activations of
    // BF16 Linears to bf16 (on f32-only models it is F32 itself); its distance from the f32
    // reference is bounded by kBf16Tolerance and reported (docs/format.md, "Precision").
    for (const sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
    for (const Path path :
         {Path{sgt::AttentionAlgorithm::Flash, false}, Path{sgt::AttentionAlgorithm::Sdpa, false},
          Path{sgt::AttentionAlgorithm::Sdpa, true}}) {
      CAPTURE(sgt::precision_name(precision));
      CAPTURE(int(path.attention));
      CAPTURE(path.reference);
      options.attention = path.attention;
      options.reference_kernels = path.reference;
      options.precision = precision;
      const bool rounds = precision == sgt::Precision::Bf16 && has_bf16_weights(model);
      const double bound = rounds ? kBf16Tolerance : tol;
      const auto r = model.run(in, options);
      CHECK(bitwise_equal(r.embeddings, tensor_values(expected, "embeddings")));
      CHECK(bitwise_equal(r.noise, tensor_values(expected, "noise")));
      const double e_mean = relative_error(r.mean, tensor_values(expected, "mean"), in, H);
      const double e_std = relative_error(r.sigma, tensor_values(expected, "std"), in, H);
      const double e_out =
          relative_error(r.transformed, tensor_values(expected, "transformed"), in, H);
      if (rounds && !path.reference && path.attention == sgt::AttentionAlgorithm::Flash)
        MESSAGE(dir.filename().string() << " at Precision::Bf16, error against the f32 reference: "
                << "mean " << e_mean << ", std " << e_std << ", transformed " << e_out);
      CHECK(e_mean <= (rounds ? bf16_bound(dir, "mean") : bound));
      CHECK(e_std <= (rounds ? bf16_bound(dir, "std") : bound));
      CHECK(e_out <= bound);

      // Unprotected and padding positions: exactly the clean embedding (clamped when a value
      // range is set); mean, std and noise are 0 at padding.
      const auto& cfg = model.config();
      for (std::size_t t = 0; t < in.batch * in.seq_len; ++t) {
        const bool real = in.attention_mask.empty() || in.attention_mask[t];
        if (real && in.noise_mask[t]) continue;
        for (std::size_t i = 0; i < H; ++i) {
          float x = r.embeddings[t * H + i];
          if (cfg.value_min) x = std::max(x, *cfg.value_min);
          if (cfg.value_max) x = std::min(x, *cfg.value_max);
          REQUIRE(std::memcmp(&r.transformed[t * H + i], &x, 4) == 0);
          if (!real)
            REQUIRE((r.mean[t * H + i] == 0 && r.sigma[t * H + i] == 0 && r.noise[t * H + i] == 0));
        }
      }
      // The std estimator's output is strictly positive at real positions.
      for (std::size_t t = 0; t < in.batch * in.seq_len; ++t)
        if (in.attention_mask.empty() || in.attention_mask[t])
          for (std::size_t i = 0; i < H; ++i) REQUIRE(r.sigma[t * H + i] > 0);
    }
  }
  // The injected-noise cases of tests/data/e2e/README.md; a lost fixture must not pass silently.
  CHECK(compared == 13);
}

// Sanitizer builds and emulated ones (qemu) run each case below with one of the two precisions, in
// turn: both still run, each on half the cases, every case with 1, 2 and 3 threads and a reused
// workspace. Under qemu the full product was 47 s, the longest test case of the aarch64 stage.
constexpr bool kEveryPrecisionOfEachCase = !sgt_test::kSlowRun;

TEST_CASE("results are bit-identical for 1, 2 and 3 threads and with a reused workspace") {
  const std::vector<fs::path> all = cases();
  for (const sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (std::size_t i = 0; i < all.size(); ++i) {
    const fs::path& dir = all[i];
    if (!fs::exists(dir / "noise.safetensors")) continue;
    if (!kEveryPrecisionOfEachCase && (i % 2 == 1) != (precision == sgt::Precision::Bf16)) continue;
    CAPTURE(dir.filename().string());
    CAPTURE(sgt::precision_name(precision));
    const sgt::Transform model(dir.string());
    const auto in = sgt::load_transform_input((dir / "input.json").string());
    sgt::RunOptions options;
    options.precision = precision;
    options.noise = sgt::NoiseSource::Torch;
    options.seed = 7;
    options.keep_intermediates = true;
    // transformed, mean and sigma, one after the other.
    auto run = [&](sgt::ThreadPool* pool) {
      sgt::RunOptions o = options;
      o.pool = pool;
      sgt::TransformResult r = model.run(in, o);
      std::vector<float> all(r.transformed.begin(), r.transformed.end());
      all.insert(all.end(), r.mean.begin(), r.mean.end());
      all.insert(all.end(), r.sigma.begin(), r.sigma.end());
      return all;
    };
    sgt_test::expect_thread_invariant(run, {1, 2, 3}, dir.filename().string());
    const auto serial = model.run(in, options);
    // A workspace first used for a longer input, then for this one, gives the same result.
    sgt::Workspace ws;
    sgt::TransformResult r;
    sgt::TransformInput longer = in;
    longer.seq_len = in.seq_len * 2;
    longer.input_ids.resize(in.batch * longer.seq_len, 1);
    longer.noise_mask.assign(in.batch * longer.seq_len, 1);
    longer.attention_mask.clear();
    options.pool = nullptr;
    model.run(longer, options, ws, r);
    model.run(in, options, ws, r);
    CHECK(bitwise_equal(r.transformed, serial.transformed));
  }
}

TEST_CASE("one model serves concurrent calls from several threads") {
  const auto dir = cases().front();
  const sgt::Transform model(dir.string());
  const auto in = sgt::load_transform_input((dir / "input.json").string());
  sgt::RunOptions options;
  options.noise = sgt::NoiseSource::Torch;
  options.seed = 3;
  const auto expected = model.run(in, options);
  std::vector<sgt::TransformResult> results(4);
  std::vector<std::thread> threads;
  for (auto& r : results) threads.emplace_back([&] { r = model.run(in, options); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) CHECK(bitwise_equal(r.transformed, expected.transformed));
}

// torch_seed has one expected output per Box-Muller path of torch's randn
// (random/torch_normal.hpp): expected.safetensors from the AVX2 kernel torch runs on x86-64,
// expected_scalar.safetensors from its portable kernel (ATEN_CPU_CAPABILITY=default; what torch
// runs on aarch64). The transform reproduces the path of the CPU it is compiled for; the other
// path's noise is checked through the generator directly, so both fixtures are used on every
// platform.
TEST_CASE("--seed with the torch generator reproduces the reference's torch.randn noise") {
  const fs::path dir = kE2e / "torch_seed";
  REQUIRE(fs::exists(dir / "seed.json"));
  std::ifstream f(dir / "seed.json");
  const auto seed = nlohmann::json::parse(f).at("seed").get<std::uint64_t>();
  const sgt::Transform model(dir.string());
  const auto in = sgt::load_transform_input((dir / "input.json").string());
  const bool native_is_avx2 = sgt::kTorchBoxMullerNative == sgt::TorchBoxMuller::kAvx2;
  const fs::path native_file =
      dir / (native_is_avx2 ? "expected.safetensors" : "expected_scalar.safetensors");
  const fs::path other_file =
      dir / (native_is_avx2 ? "expected_scalar.safetensors" : "expected.safetensors");
  CAPTURE(native_file);
  const sgt::SafetensorsFile expected(native_file.string());
  sgt::RunOptions options;
  options.noise = sgt::NoiseSource::Torch;
  options.seed = seed;
  options.keep_intermediates = true;
  const auto r = model.run(in, options);
  const auto ref_noise = tensor_values(expected, "noise");
  REQUIRE(r.noise.size() == ref_noise.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < r.noise.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(double(r.noise[i]) - ref_noise[i]));
  CHECK(max_diff <= 1e-6);
  CHECK(relative_error(r.transformed, tensor_values(expected, "transformed"), in,
                       model.hidden_size()) <= tolerance_for(model));

  // The other path: torch.randn(B, S, H) of that kernel, zeroed at padding.
  const sgt::TorchBoxMuller other =
      native_is_avx2 ? sgt::TorchBoxMuller::kScalar : sgt::TorchBoxMuller::kAvx2;
  std::vector<float> draws(r.noise.size());
  sgt::TorchNormalGenerator(seed, other).fill(draws.data(), draws.size());
  const auto other_noise = tensor_values(sgt::SafetensorsFile(other_file.string()), "noise");
  REQUIRE(other_noise.size() == draws.size());
  const std::size_t H = model.hidden_size();
  double other_diff = 0, paths_diff = 0;
  for (std::size_t i = 0; i < draws.size(); ++i) {
    const bool padding = !in.attention_mask.empty() && !in.attention_mask[i / H];
    other_diff =
        std::max(other_diff, std::fabs(double(padding ? 0.0f : draws[i]) - other_noise[i]));
    paths_diff = std::max(paths_diff, std::fabs(double(other_noise[i]) - ref_noise[i]));
  }
  CHECK(other_diff == 0.0);
  CHECK(paths_diff > 1e-7);  // the two fixtures differ, so each check above can fail
}

TEST_CASE("secure noise: fresh for every call, zero at padding, standard normal") {
  const auto dir = cases().front();
  const sgt::Transform model(dir.string());
  auto in = sgt::load_transform_input((dir / "input.json").string());
  sgt::RunOptions options;
  options.keep_intermediates = true;
  const auto a = model.run(in, options);
  const auto b = model.run(in, options);
  CHECK_FALSE(bitwise_equal(a.noise, b.noise));
  CHECK_FALSE(bitwise_equal(a.transformed, b.transformed));
  const std::size_t H = model.hidden_size();
  double sum = 0, sum2 = 0;
  std::size_t n = 0;
  for (std::size_t t = 0; t < in.batch * in.seq_len; ++t) {
    const bool real = in.attention_mask.empty() || in.attention_mask[t];
    for (std::size_t i = 0; i < H; ++i) {
      const float e = a.noise[t * H + i];
      if (!real) {
        REQUIRE(e == 0.0f);
        continue;
      }
      sum += e;
      sum2 += double(e) * e;
      ++n;
    }
  }
  REQUIRE(n > 100);
  const double mean = sum / n, var = sum2 / n - mean * mean;
  CHECK(std::fabs(mean) < 5.0 / std::sqrt(double(n)));
  CHECK(std::fabs(var - 1.0) < 5.0 * std::sqrt(2.0 / double(n)));
}

TEST_CASE("the bundled demo model transforms the sample prompt like the reference") {
  const sgt::Transform model((kExamples / "models" / "demo").string());
  const auto in = sgt::load_transform_input((kExamples / "prompt.json").string());
  const sgt::SafetensorsFile noise((kExamples / "prompt_noise.safetensors").string());
  const sgt::SafetensorsFile expected((kExamples / "prompt_expected.safetensors").string());
  sgt::RunOptions options;
  options.noise = sgt::NoiseSource::Injected;
  options.injected_noise = noise.tensor("noise").as<float>();
  options.keep_intermediates = true;
  // The demo's weights are BF16: Auto runs Bf16 on kernels with the CPU's bf16 dot product and
  // F32 (the reference's arithmetic) where bf16 would be emulated.
  sgt::kernels::KernelTable with_dot = sgt::kernels::default_kernel_table(), emulated = with_dot;
  with_dot.bf16_dot_product = true;
  emulated.bf16_dot_product = false;
  CHECK(model.resolve_precision(sgt::Precision::Auto, with_dot) == sgt::Precision::Bf16);
  CHECK(model.resolve_precision(sgt::Precision::Auto, emulated) == sgt::Precision::F32);
  CHECK(model.resolve_precision(sgt::Precision::Bf16, emulated) == sgt::Precision::Bf16);
  CHECK(model.resolve_precision(sgt::Precision::Auto) ==
        (sgt::kernels::default_kernel_table().bf16_dot_product ? sgt::Precision::Bf16
                                                       : sgt::Precision::F32));
  for (const sgt::Precision precision :
       {sgt::Precision::F32, sgt::Precision::Bf16, sgt::Precision::Auto}) {
    CAPTURE(sgt::precision_name(precision));
    options.precision = precision;
    const double bound =
        model.resolve_precision(precision) == sgt::Precision::F32 ? 2e-3 : kBf16Tolerance;
    const auto r = model.run(in, options);
    CHECK(relative_error(r.transformed, tensor_values(expected, "transformed"), in,
                         model.hidden_size()) <= bound);
    CHECK(relative_error(r.mean, tensor_values(expected, "mean"), in, model.hidden_size()) <=
          bound);
    CHECK(relative_error(r.sigma, tensor_values(expected, "std"), in, model.hidden_size()) <=
          bound);
  }
}

TEST_CASE("a request longer than RunOptions::max_tokens is refused before anything is planned") {
  const sgt::Transform model((kExamples / "models" / "demo").string());
  sgt::RunOptions options;
  options.max_tokens = 4;
  CHECK_NOTHROW(model.run(sgt::TransformInput::single({1, 2, 3, 4}), options));
  // 2 MiB of ids (a 2 MiB message through a byte-level tokenizer) under the default limit: refused
  // at once, not a bad_alloc after gigabytes.
  const std::vector<std::int64_t> ids(std::size_t{2} << 20, 7);
  CHECK_THROWS_WITH(model.run(sgt::TransformInput::single(ids)),
                    doctest::Contains("2097152 tokens (batch 1 x length 2097152), more than the "
                                      "limit of 16384"));
  CHECK_THROWS_WITH(model.run(sgt::TransformInput::single({1, 2, 3, 4, 5}), options),
                    doctest::Contains("RunOptions::max_tokens"));
}

TEST_CASE("run() refuses malformed input with errors that name the problem") {
  const auto dir = cases().front();
  const sgt::Transform model(dir.string());
  auto good = sgt::TransformInput::single({1, 2, 3});
  CHECK_NOTHROW(model.run(good));
  auto bad = good;
  bad.input_ids[1] = static_cast<std::int64_t>(model.config().vocab_size);
  try {
    model.run(bad);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.key() == "input_ids");
    CHECK(e.position() == 1);
  }
  bad = good;
  bad.noise_mask.pop_back();
  CHECK_THROWS_AS(model.run(bad), sgt::Error);
  bad = good;
  bad.attention_mask = {1, 1};
  CHECK_THROWS_AS(model.run(bad), sgt::Error);
  bad = good;
  bad.seq_len = 0;
  bad.input_ids.clear();
  CHECK_THROWS_AS(model.run(bad), sgt::Error);
  sgt::RunOptions options;
  options.noise = sgt::NoiseSource::Injected;
  std::vector<float> short_noise(5);
  options.injected_noise = sgt::TensorView<const float>(short_noise.data(), {5});
  CHECK_THROWS_AS(model.run(good, options), sgt::Error);
  // The right number of values in the wrong shape ([1, H, S] for [1, S, H]) is refused by the
  // library itself, naming both shapes.
  const std::size_t H = model.hidden_size();
  std::vector<float> noise(3 * H);
  options.injected_noise = sgt::TensorView<const float>(noise.data(), {1, H, 3});
  try {
    model.run(good, options);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.tensor() == "noise");
    const std::string expected =
        "[1, " + std::to_string(H) + ", 3], expected [B, S, H] = [1, 3, " + std::to_string(H) + "]";
    CHECK(std::string(e.what()).find(expected) != std::string::npos);
  }
  options.injected_noise = sgt::TensorView<const float>(noise.data(), {1, 3, H});
  CHECK_NOTHROW(model.run(good, options));
  // batch x length x hidden that overflows size_t is named as such, before any allocation.
  bad = good;
  bad.batch = SIZE_MAX / 2;
  try {
    model.run(bad);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(std::string(e.what()).find("overflows size_t") != std::string::npos);
    CHECK(std::string(e.what()).find("attention") == std::string::npos);
  }
  CHECK_THROWS_AS(sgt::Transform((kE2e / "does_not_exist").string()), sgt::Error);
}
