// Times sgt::Transform on one model directory, for bench/compare/compare.py: the peer benchmark
// needs our side as a plain process it can start between the peers' runs (round-robin), with the
// same injected noise, so this is a small program rather than a Google Benchmark.
//
//   sgt_time_transform MODEL_DIR --seq S --threads N [--precision auto|f32|bf16]
//                      [--eps NOISE.safetensors] [--output OUT.safetensors]
//                      [--warmup W] [--repeat R] [--serve]
//
// Input ids: the fixed pseudo-random sequence (i * 7919 + 13) mod vocab, every token protected.
// --eps: F32 tensor "noise" [1, S, H] (injected, so the peers can be checked against us); without
// it the noise is all zeros, which costs the same. --output writes the last run's "transformed"
// [1, S, H] as F32. Prints one JSON line: median and min milliseconds of the R timed runs.
// The Workspace and TransformResult are reused across runs, as a long-lived caller would.
// --serve (what compare.py uses to interleave the systems without reloading the model): after the
// warm-up, every line read from stdin runs once and prints {"ms": ...}; end of input ends it, then
// --output is written and the summary printed as without --serve. Each reply also counts the page
// faults the run took ({"ms": ..., "major_faults": ..., "minor_faults": ...}): a major fault means
// the OS had dropped part of the mapped weights from its page cache (other processes needed the
// memory) and the run read it back from disk, so its time is not the transform's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sys/resource.h>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

namespace {

struct Args {
  std::string model_dir, eps_path, output_path, precision = "auto";
  std::size_t seq = 128, threads = 1, warmup = 1, repeat = 5;
  bool serve = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "sgt_time_transform: " << why
            << "\nusage: sgt_time_transform MODEL_DIR --seq S --threads N"
               " [--precision auto|f32|bf16] [--eps NOISE.safetensors] [--output FILE]"
               " [--warmup W] [--repeat R] [--serve]\n";
  std::exit(2);
}

std::size_t positive(const std::string& flag, const std::string& text, bool zero_ok = false) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || text[0] == '-' || (!zero_ok && v == 0))
    usage(flag + " takes a " + (zero_ok ? "non-negative" : "positive") + " integer, not '" + text +
          "'");
  return static_cast<std::size_t>(v);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--seq")
      a.seq = positive(arg, value());
    else if (arg == "--threads")
      a.threads = positive(arg, value());
    else if (arg == "--warmup")
      a.warmup = positive(arg, value(), true);
    else if (arg == "--repeat")
      a.repeat = positive(arg, value());
    else if (arg == "--precision")
      a.precision = value();
    else if (arg == "--eps")
      a.eps_path = value();
    else if (arg == "--output")
      a.output_path = value();
    else if (arg == "--serve")
      a.serve = true;
    else if (!arg.empty() && arg[0] == '-')
      usage("unknown option " + arg);
    else if (a.model_dir.empty())
      a.model_dir = arg;
    else
      usage("more than one model directory");
  }
  if (a.model_dir.empty()) usage("no model directory");
  if (a.precision != "auto" && a.precision != "f32" && a.precision != "bf16")
    usage("--precision takes auto, f32 or bf16");
  return a;
}

sgt::Precision precision_of(const std::string& name) {
  if (name == "f32") return sgt::Precision::F32;
  if (name == "bf16") return sgt::Precision::Bf16;
  return sgt::Precision::Auto;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const sgt::Transform model(args.model_dir);
  const std::size_t S = args.seq, H = model.hidden_size();
  const auto vocab = static_cast<std::size_t>(model.config().vocab_size);

  std::vector<std::int64_t> ids(S);
  for (std::size_t i = 0; i < S; ++i) ids[i] = static_cast<std::int64_t>((i * 7919 + 13) % vocab);
  const sgt::TransformInput in = sgt::TransformInput::single(ids);

  sgt::ThreadPool pool(args.threads);
  sgt::RunOptions options;
  options.pool = &pool;
  options.precision = precision_of(args.precision);
  options.noise = sgt::NoiseSource::Injected;
  std::unique_ptr<sgt::SafetensorsFile> eps_file;
  std::vector<float> zeros;
  if (!args.eps_path.empty()) {
    eps_file = std::make_unique<sgt::SafetensorsFile>(args.eps_path);
    if (!eps_file->contains("noise"))
      throw sgt::Error("has no tensor 'noise'").at_file(args.eps_path);
    options.injected_noise = eps_file->tensor("noise").as<float>();  // shape checked by run()
  } else {
    zeros.assign(S * H, 0.0f);
    options.injected_noise = sgt::TensorView<const float>(zeros.data(), {1, S, H});
  }

  sgt::Workspace ws;
  sgt::TransformResult result;
  for (std::size_t i = 0; i < args.warmup; ++i) model.run(in, options, ws, result);
  std::vector<double> ms;
  ms.reserve(args.repeat);
  auto timed_run = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    model.run(in, options, ws, result);
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    return ms.back();
  };
  auto faults = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return std::pair<long, long>(u.ru_majflt, u.ru_minflt);
  };
  if (args.serve) {
    std::cout << nlohmann::json{{"ready", true}}.dump() << std::endl;
    for (std::string line; std::getline(std::cin, line);) {
      const auto before = faults();
      const double run_ms = timed_run();
      const auto after = faults();
      std::cout << nlohmann::json{{"ms", run_ms},
                                  {"major_faults", after.first - before.first},
                                  {"minor_faults", after.second - before.second}}
                       .dump()
                << std::endl;
    }
  } else {
    for (std::size_t i = 0; i < args.repeat; ++i) timed_run();
  }

  if (!args.output_path.empty()) {
    sgt::SafetensorsWriter w;
    w.add("transformed", sgt::DType::F32, {1, S, H}, result.transformed.data());
    w.write(args.output_path);
  }

  if (ms.empty()) ms.push_back(timed_run());  // --serve with no request: still one figure
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  nlohmann::json j = {
      {"system", "sgt"},
      {"seq", S},
      {"threads", args.threads},
      {"precision", sgt::precision_name(model.resolve_precision(options.precision))},
      {"simd", sgt::simd::arch_name()},
      {"median_ms", median},
      {"min_ms", sorted.front()},
      {"ms", ms}};
  std::cout << j.dump() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::cerr << "sgt_time_transform: " << e.what() << "\n";
  return 1;
}
