// Tokenizing 1 MiB of mixed text (the fixture corpus: English prose and code from this repository's
// docs plus multilingual, emoji and digit lines, repeated) with each fixture tokenizer, first
// call (cold word cache) and warm. bench/compare_tokenizer.py times Hugging Face `tokenizers` on
// the same text and files; bench/README.md has the numbers side by side.
//
//   bench_text_tokenizer [--benchmark_filter=llama3]
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include <sgt/text/tokenizer/tokenizer.hpp>

namespace {

const std::string& one_mebibyte() {
  static const std::string text = [] {
    std::ifstream f(std::string(SGT_TEST_DATA_DIR) + "/text/tokenizers/corpus.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string corpus = ss.str();
    std::string out;
    while (out.size() < (std::size_t{1} << 20)) out += corpus;
    // Cut at a line end, so no UTF-8 sequence is split.
    out.resize(out.rfind('\n', std::size_t{1} << 20) + 1);
    return out;
  }();
  return text;
}

void BM_Encode(benchmark::State& state, const char* name) {
  const auto tokenizer = sgt::text::Tokenizer::load(std::string(SGT_TEST_DATA_DIR) +
                                                    "/text/tokenizers/" + name + "/tokenizer.json");
  const std::string& text = one_mebibyte();
  std::size_t tokens = 0;
  for (auto _ : state) {
    const auto e = tokenizer.encode(text, false);
    tokens = e.ids.size();
    benchmark::DoNotOptimize(e.ids.data());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(text.size()));
  state.counters["tokens"] = double(tokens);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Encode, llama3, "llama3")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, qwen2, "qwen2")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, llama2_legacy, "llama2_legacy")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, tekken, "tekken")->Unit(benchmark::kMillisecond)->MinTime(2.0);

BENCHMARK_MAIN();
