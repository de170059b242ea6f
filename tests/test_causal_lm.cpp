// sgt::CausalLM against transformers: tiny random models of each family, written with
// save_pretrained by tools/fixtures/causal_lm_fixtures.py, and HF's logits and greedy tokens for
// them (tests/data/causal_lm/*/expected.safetensors, described in that script).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/io/safetensors_writer.hpp>
#include <sgt/sgt.hpp>

#include "support/enum_table_check.hpp"
#include "support/kernel_harness.hpp"
#include "support/slow_run.hpp"
#include "support/stored_tensor.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_causal_lm {

namespace fs = std::filesystem;

namespace {

const fs::path kData = fs::path(SGT_TEST_DATA_DIR) / "causal_lm";
// The f32 families; the bf16 models are tested on their own below, and phi3_crossing, whose
// one-pass logits differ from a cached run by design (longrope), too.
const char* const kF32Models[] = {"llama",         "mistral", "qwen2_sharded", "qwen3_tied",
                                  "qwen2_sliding", "smollm3", "gemma2",        "gemma3_text",
                                  "phi3"};
// Models stored in bf16, whose reference is HF in f32 on the stored weights.
const char* const kBf16Models[] = {"llama_bf16", "gemma_bf16", "phi3_bf16"};

struct Expected {
  std::size_t batch = 0, prompt = 0, next = 0, turn2 = 0, turn2_len = 0, vocab = 0;
  std::vector<std::int64_t> prompt_ids, next_ids, turn2_ids, greedy_ids, greedy_ids_embeds;
  std::vector<float> logits, turn2_logits, logits_bf16, cached_logits;  // [B, rows, V]
};

std::vector<float> floats(const sgt::SafetensorsFile& f, const std::string& name) {
  const auto v = f.tensor(name).as<float>();
  return {v.data(), v.data() + v.size()};
}
std::vector<std::int64_t> ids(const sgt::SafetensorsFile& f, const std::string& name) {
  std::vector<std::int64_t> out;
  for (float x : floats(f, name)) out.push_back(static_cast<std::int64_t>(x));
  return out;
}

Expected expected(const std::string& model) {
  const sgt::SafetensorsFile f((kData / model / "expected.safetensors").string());
  Expected e;
  e.batch = f.info("prompt_ids").shape[0];
  e.prompt = f.info("prompt_ids").shape[1];
  e.next = f.info("next_ids").shape[1];
  e.turn2_len = f.info("turn2_ids").shape[1];
  e.vocab = f.info("logits").shape[2];
  e.prompt_ids = ids(f, "prompt_ids");
  e.next_ids = ids(f, "next_ids");
  e.turn2_ids = ids(f, "turn2_ids");
  e.greedy_ids = ids(f, "greedy_ids");
  e.turn2 = static_cast<std::size_t>(ids(f, "turn2_position")[0]);
  e.logits = floats(f, "logits");
  e.turn2_logits = floats(f, "turn2_logits");
  if (f.contains("logits_bf16")) e.logits_bf16 = floats(f, "logits_bf16");
  if (f.contains("cached_logits")) e.cached_logits = floats(f, "cached_logits");
  if (f.contains("greedy_ids_embeds")) e.greedy_ids_embeds = ids(f, "greedy_ids_embeds");
  return e;
}

// Rows [first, first + count) of each batch row of a [B, rows, V] tensor.
std::vector<float> rows_of(const std::vector<float>& x, std::size_t batch, std::size_t rows,
                           std::size_t vocab, std::size_t first, std::size_t count) {
  std::vector<float> out;
  for (std::size_t b = 0; b < batch; ++b)
    out.insert(out.end(), x.begin() + (b * rows + first) * vocab,
               x.begin() + (b * rows + first + count) * vocab);
  return out;
}

// Columns [first, first + count) of each row of a [B, rows] id matrix.
std::vector<std::int64_t> id_rows(const std::vector<std::int64_t>& x, std::size_t batch,
                                  std::size_t rows, std::size_t first, std::size_t count) {
  std::vector<std::int64_t> out;
  for (std::size_t b = 0; b < batch; ++b)
    out.insert(out.end(), x.begin() + b * rows + first, x.begin() + b * rows + first + count);
  return out;
}

sgt::LmInput ids_input(std::size_t batch, std::vector<std::int64_t> input_ids, std::size_t start,
                       sgt::LogitsFor which = sgt::LogitsFor::All) {
  sgt::LmInput in;
  in.batch = batch;
  in.seq_len = input_ids.size() / batch;
  in.input_ids = std::move(input_ids);
  for (std::size_t t = 0; t < in.seq_len; ++t)
    in.cache_position.push_back(static_cast<std::int64_t>(start + t));
  in.logits = which;
  return in;
}

// The logits of the whole first turn, [B, P + N, V], computed as a server would: the prompt in one
// prefill, then the N next tokens one decode step at a time; then the second turn's logits
// [B, M, V], starting at turn2 inside the cache. And the prompt's prefill with LogitsFor::Last on
// a cache of its own: [B, 1, V], the last layer pruned to the last token.
struct Turns {
  std::vector<float> first, second, prompt_last;
};

Turns run_turns(const sgt::CausalLM& lm, const Expected& e, const sgt::LmRunOptions& options) {
  const std::size_t B = e.batch, V = e.vocab, S = e.prompt + e.next;
  sgt::KvCache cache = lm.make_cache(B, S + 4);
  sgt::LmWorkspace ws;
  sgt::LmLogits out;
  Turns turns;
  turns.first.assign(B * S * V, 0.0f);
  auto put = [&](std::size_t first_row) {
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t r = 0; r < out.rows; ++r)
        std::copy(out.row(b, r), out.row(b, r) + V,
                  turns.first.begin() + (b * S + first_row + r) * V);
  };
  lm.forward(ids_input(B, e.prompt_ids, 0), cache, ws, options, out);
  put(0);
  for (std::size_t i = 0; i < e.next; ++i) {
    lm.forward(
        ids_input(B, id_rows(e.next_ids, B, e.next, i, 1), e.prompt + i, sgt::LogitsFor::Last),
        cache, ws, options, out);
    put(e.prompt + i);
  }
  CHECK(cache.length() == S);
  lm.forward(ids_input(B, e.turn2_ids, e.turn2), cache, ws, options, out);
  turns.second = out.values;
  CHECK(cache.length() == e.turn2 + e.turn2_len);
  sgt::KvCache own = lm.make_cache(B, e.prompt);
  lm.forward(ids_input(B, e.prompt_ids, 0, sgt::LogitsFor::Last), own, ws, options, out);
  turns.prompt_last = out.values;
  return turns;
}

// max |got - want| <= rel * max |want|: a tolerance scaled to the logits' magnitude.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  const std::string& what) {
  sgt_test::expect_matches(got, want, rel * sgt_test::max_abs(want), what);
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  return sgt_test::max_error(got, want) / sgt_test::max_abs(want);
}

std::string error_of(const std::function<void()>& f) {
  return sgt_test::error_of(f);
}

// A copy of a fixture folder to break, removed when the test ends.
struct ScratchCopy {
  fs::path dir;
  explicit ScratchCopy(const std::string& model) {
    dir = fs::temp_directory_path() /
          ("sgt_test_causal_lm_" + model + "_" + std::to_string(std::rand()));
    fs::remove_all(dir);
    fs::copy(kData / model, dir);
  }
  ~ScratchCopy() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  nlohmann::json config() const {
    std::ifstream f(dir / "config.json");
    return nlohmann::json::parse(f);
  }
  void write_config(const nlohmann::json& j) const {
    std::ofstream f(dir / "config.json");
    f << j.dump(2);
  }
};

}  // namespace

TEST_CASE("prefill, 8 decode steps and a second turn equal HF's full-sequence logits (f32)") {
  for (const char* model : kF32Models) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const Expected e = expected(model);
    REQUIRE(lm.vocab_size() == e.vocab);
    CHECK(lm.resolve_precision(sgt::Precision::Auto) == sgt::Precision::F32);
    // The prefill's flash and SDPA kernels, then every kernel on its reference.
    for (const auto& [attention, reference] :
         {std::pair{sgt::AttentionAlgorithm::Flash, false},
          std::pair{sgt::AttentionAlgorithm::Sdpa, false},
          std::pair{sgt::AttentionAlgorithm::Sdpa, true}}) {
      sgt::LmRunOptions options;
      options.attention = attention;
      options.reference_kernels = reference;
      const Turns turns = run_turns(lm, e, options);
      const std::string tag =
          std::string(model) + (reference ? " (reference kernels)"
                                : attention == sgt::AttentionAlgorithm::Sdpa ? " (sdpa)" : "");
      // 1e-4 of the logits' magnitude: f32 reassociation over 2 layers and a 64-term lm_head.
      MESSAGE(tag << ": prefill + decode " << relative_error(turns.first, e.logits)
                  << ", second turn " << relative_error(turns.second, e.turn2_logits));
      expect_close(turns.first, e.logits, 1e-4, tag + ": prefill + decode");
      expect_close(turns.second, e.turn2_logits, 1e-4, tag + ": second turn mid-cache");
      expect_close(turns.prompt_last,
                   rows_of(e.logits, e.batch, e.prompt + e.next, e.vocab, e.prompt - 1, 1), 1e-4,
                   tag + ": prefill, last position only");
    }
  }
}

// The LogitsFor::Last case below runs over 1000 combinations. Sanitizer builds and emulated ones
// (qemu, 10-40x slower) run each (threads, B) pair on a quarter of the (T, turn) pairs, in turn:
// every model, precision, kernel set, length and turn is still run, with both thread counts and
// both batches.
constexpr bool kEveryLastCase = !sgt_test::kSlowRun;

// LogitsFor::Last prunes the last layer to the last token of each sequence after its attention
// (CachedDecoderLayer::forward_last_tokens). The pruned steps are per row and the matmul gives a
// row the same bits alone as in a batch, so the logits must be exactly the matching rows of an
// unpruned (All) run, and the cache exactly its cache. T = 40 spans several matmul token tiles
// (kTileTokens is 16 or 32); T = 1 is the unpruned decode path, checked the same way.
TEST_CASE("LogitsFor::Last gives the bits of All's last rows and the same cache, for every model") {
  const std::size_t kMaxLen = 48, kHistory = 5, kTurnStart = 3;
  for (const char* model : {"llama", "llama_bf16", "mistral", "qwen2_sharded", "qwen3_tied",
                            "qwen2_sliding", "smollm3", "gemma_bf16", "gemma2", "gemma3_text",
                            "phi3", "phi3_bf16", "phi3_crossing"}) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const std::size_t V = lm.vocab_size();
    // Bf16 where the weights are BF16, whether or not Auto picks it on this CPU.
    std::vector<sgt::Precision> precisions = {sgt::Precision::F32};
    if (name == "llama_bf16" || name == "gemma_bf16" || name == "phi3_bf16")
      precisions.push_back(sgt::Precision::Bf16);
    // Ids from a fixed linear congruential sequence: any ids do, the two runs get the same.
    std::uint64_t state = 12345;
    auto some_ids = [&](std::size_t n) {
      std::vector<std::int64_t> out(n);
      for (std::int64_t& id : out) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        id = static_cast<std::int64_t>((state >> 33) % V);
      }
      return out;
    };
    auto cache_of = [](const sgt::KvCache& c) {
      std::vector<float> all;
      for (std::size_t l = 0; l < c.num_layers(); ++l) {
        all.insert(all.end(), c.keys(l).data(), c.keys(l).data() + c.keys(l).size());
        all.insert(all.end(), c.values(l).data(), c.values(l).data() + c.values(l).size());
      }
      return all;
    };
    sgt::ThreadPool two(2);
    sgt::LmWorkspace ws_all, ws_last;  // reused across runs, as a server would
    sgt::LmLogits all, last;
    const std::size_t lengths[] = {1, 2, 7, 40};
    for (sgt::Precision precision : precisions)
      for (bool reference : {false, true})
        for (sgt::ThreadPool* pool : {static_cast<sgt::ThreadPool*>(nullptr), &two})
          for (std::size_t B : {1u, 2u})
            for (std::size_t t = 0; t < 4; ++t)
              for (bool second_turn : {false, true}) {
                const std::size_t T = lengths[t];
                if (!kEveryLastCase && (pool ? 2 : 0) + (B - 1) != (t + 3 * second_turn) % 4)
                  continue;
                std::ostringstream what;
                what << name << ": precision "
                     << (precision == sgt::Precision::Bf16 ? "bf16" : "f32")
                     << (reference ? ", reference kernels" : "") << ", "
                     << (pool ? "2 threads" : "1 thread") << ", B " << B << ", T " << T
                     << (second_turn ? ", second turn from position 3" : ", fresh prefill");
                CAPTURE(what.str());
                sgt::LmRunOptions options;
                options.precision = precision;
                options.reference_kernels = reference;
                options.pool = pool;
                const std::vector<std::int64_t> history = some_ids(B * kHistory),
                                                turn = some_ids(B * T);
                const std::size_t start = second_turn ? kTurnStart : 0;
                sgt::KvCache cache_all = lm.make_cache(B, kMaxLen),
                             cache_last = lm.make_cache(B, kMaxLen);
                if (second_turn) {
                  lm.forward(ids_input(B, history, 0), cache_all, ws_all, options, all);
                  lm.forward(ids_input(B, history, 0), cache_last, ws_last, options, last);
                }
                lm.forward(ids_input(B, turn, start), cache_all, ws_all, options, all);
                lm.forward(ids_input(B, turn, start, sgt::LogitsFor::Last), cache_last, ws_last,
                           options, last);
                REQUIRE(all.rows == T);
                REQUIRE(last.rows == 1);
                REQUIRE(last.batch == B);
                sgt_test::expect_bit_identical(last.values, rows_of(all.values, B, T, V, T - 1, 1),
                                               what.str() + ": logits");
                CHECK(cache_last.length() == start + T);
                CHECK(cache_all.length() == start + T);
                sgt_test::expect_bit_identical(cache_of(cache_last), cache_of(cache_all),
                                               what.str() + ": KV cache");
              }
  }
}

// Gemma's models scale E[input_ids] by sqrt(hidden_size) inside their embedding module, so
// transformers takes inputs_embeds as given, scaled by the caller: the same holds here.
TEST_CASE("inputs_embeds give the logits of input_ids, bit for bit, in both turns") {
  for (const char* model : kF32Models) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const Expected e = expected(model);
    const std::size_t B = e.batch, H = lm.hidden_size();
    const auto table = lm.weights().embed_tokens.as<float>();
    const bool gemma = name.rfind("gemma", 0) == 0;
    // transformers: torch.tensor(hidden_size ** 0.5) in f32, times the f32 rows.
    const float scale = gemma ? static_cast<float>(std::sqrt(double(H))) : 1.0f;
    CHECK(lm.config().embedding_scale == scale);
    auto embeds = [&](const std::vector<std::int64_t>& x) {
      std::vector<float> out;
      for (std::int64_t id : x)
        for (std::size_t i = 0; i < H; ++i) out.push_back(table.data()[id * H + i] * scale);
      return out;
    };
    auto as_embeds = [&](sgt::LmInput in, const std::vector<float>& values) {
      in.input_ids.clear();
      in.inputs_embeds = sgt::TensorView<const float>(values.data(), {in.batch, in.seq_len, H});
      return in;
    };
    sgt::KvCache by_id = lm.make_cache(B, 20), by_embedding = lm.make_cache(B, 20);
    const sgt::LmInput prompt = ids_input(B, e.prompt_ids, 0);
    const std::vector<float> prompt_embeds = embeds(e.prompt_ids);
    sgt_test::expect_bit_identical(
        lm.forward(as_embeds(prompt, prompt_embeds), by_embedding).values,
        lm.forward(prompt, by_id).values, "prompt");
    const sgt::LmInput step = ids_input(B, id_rows(e.next_ids, B, e.next, 0, 1), e.prompt);
    const std::vector<float> step_embeds = embeds(step.input_ids);
    sgt_test::expect_bit_identical(lm.forward(as_embeds(step, step_embeds), by_embedding).values,
                                   lm.forward(step, by_id).values, "decode step");
    // Second turn from position 3, inside the cache.
    const sgt::LmInput turn2 = ids_input(B, e.turn2_ids, 3);
    const std::vector<float> turn2_embeds = embeds(e.turn2_ids);
    sgt_test::expect_bit_identical(lm.forward(as_embeds(turn2, turn2_embeds), by_embedding).values,
                                   lm.forward(turn2, by_id).values, "second turn");
  }
}

TEST_CASE("generate, greedy by default, gives HF generate's tokens (do_sample=False)") {
  std::vector<const char*> models(std::begin(kF32Models), std::end(kF32Models));
  models.insert(models.end(), std::begin(kBf16Models), std::end(kBf16Models));
  models.push_back("phi3_crossing");
  for (const char* model : models) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const Expected e = expected(model);
    sgt::GenerateOptions options;
    options.max_new_tokens = e.greedy_ids.size() / e.batch;
    // The bf16 models' reference is HF in f32 on the bf16 weights: our f32 precision.
    options.run.precision = sgt::Precision::F32;
    const auto tokens = sgt::generate(lm, ids_input(e.batch, e.prompt_ids, 0), options);
    REQUIRE(tokens.size() == e.batch);
    const std::size_t G = options.max_new_tokens;
    for (std::size_t b = 0; b < e.batch; ++b)
      CHECK(tokens[b] == std::vector<std::int64_t>(e.greedy_ids.begin() + b * G,
                                                   e.greedy_ids.begin() + (b + 1) * G));
  }
}

TEST_CASE("generate stops a row at a stop token and refuses a cache too short") {
  const sgt::CausalLM lm = sgt::CausalLM::load((kData / "llama").string());
  const Expected e = expected("llama");
  const std::size_t G = e.greedy_ids.size() / e.batch;
  sgt::GenerateOptions options;
  options.max_new_tokens = G;
  options.stop_tokens = {e.greedy_ids[2]};  // row 0's third token
  const auto tokens = sgt::generate(lm, ids_input(e.batch, e.prompt_ids, 0), options);
  const std::vector<std::int64_t> row0(e.greedy_ids.begin(), e.greedy_ids.begin() + 3);
  CHECK(tokens[0] == row0);
  sgt::KvCache small = lm.make_cache(e.batch, e.prompt + G - 2);
  sgt::LmWorkspace ws;
  options.stop_tokens.clear();
  CHECK_THROWS_AS(sgt::generate(lm, ids_input(e.batch, e.prompt_ids, 0), options, small, ws),
                  sgt::Error);
  // The prompt and every new token but the last: a cache of exactly that many positions does.
  CHECK(sgt::cache_positions_needed(e.prompt, G) == e.prompt + G - 1);
  CHECK(sgt::cache_positions_needed(e.prompt, 0) == e.prompt);
  sgt::KvCache exact = lm.make_cache(e.batch, sgt::cache_positions_needed(e.prompt, G));
  CHECK(sgt::generate(lm, ids_input(e.batch, e.prompt_ids, 0), options, exact, ws) ==
        sgt::generate(lm, ids_input(e.batch, e.prompt_ids, 0), options));
}

TEST_CASE("tied embeddings: lm_head is the embedding table") {
  const sgt::CausalLM lm = sgt::CausalLM::load((kData / "qwen3_tied").string());
  CHECK(lm.config().tie_word_embeddings);
  CHECK(lm.weights().lm_head.data() == lm.weights().embed_tokens.data());
  const sgt::CausalLM untied = sgt::CausalLM::load((kData / "llama").string());
  CHECK_FALSE(untied.config().tie_word_embeddings);
  CHECK(untied.weights().lm_head.data() != untied.weights().embed_tokens.data());
}

TEST_CASE("bf16 weights: f32 precision matches HF f32, bf16 precision within HF bf16's own error") {
  for (const char* model : kBf16Models) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const Expected e = expected(model);
    REQUIRE(lm.weights().lm_head.dtype() == sgt::DType::BF16);
    // Auto is Bf16 only on kernels with the CPU's bf16 dot product; emulated, F32.
    sgt::kernels::KernelTable with_dot = sgt::kernels::default_kernel_table(), emulated = with_dot;
    with_dot.bf16_dot_product = true;
    emulated.bf16_dot_product = false;
    CHECK(lm.resolve_precision(sgt::Precision::Auto, with_dot) == sgt::Precision::Bf16);
    CHECK(lm.resolve_precision(sgt::Precision::Auto, emulated) == sgt::Precision::F32);
    CHECK(lm.resolve_precision(sgt::Precision::Bf16, emulated) == sgt::Precision::Bf16);
    CHECK(lm.resolve_precision(sgt::Precision::Auto) ==
          (sgt::kernels::default_kernel_table().bf16_dot_product ? sgt::Precision::Bf16
                                                                 : sgt::Precision::F32));

    // The reference is HF in f32 on the stored bf16 weights: exact weights, f32 arithmetic.
    sgt::LmRunOptions f32;
    f32.precision = sgt::Precision::F32;
    const Turns exact = run_turns(lm, e, f32);
    expect_close(exact.first, e.logits, 1e-4, "bf16 weights, f32 precision");
    expect_close(exact.second, e.turn2_logits, 1e-4, "bf16 weights, f32 precision, second turn");
    expect_close(exact.prompt_last,
                 rows_of(e.logits, e.batch, e.prompt + e.next, e.vocab, e.prompt - 1, 1), 1e-4,
                 "bf16 weights, f32 precision, prefill, last position only");

    // Our bf16 precision rounds each matmul's input to bf16 (2^-9 relative), as HF's native bf16
    // run does -- which also rounds every other activation, the residual stream included. The
    // tolerance is therefore HF bf16's own distance from the f32 reference: serving the model in
    // bf16 with transformers costs that much, and ours must cost no more.
    const double hf_bf16_error = relative_error(e.logits_bf16, e.logits);
    MESSAGE("HF native bf16 vs f32: " << hf_bf16_error << " of the logits' magnitude");
    REQUIRE(hf_bf16_error > 0);
    for (sgt::Precision p : {sgt::Precision::Bf16, sgt::Precision::Auto}) {
      sgt::LmRunOptions options;
      options.precision = p;
      const Turns bf16 = run_turns(lm, e, options);
      const double ours = relative_error(bf16.first, e.logits);
      MESSAGE("sgt bf16 precision vs f32: " << ours);
      CHECK(ours <= hf_bf16_error);
      // It really ran in the precision it resolved to: bf16 is not the f32 bits, and Auto without
      // a bf16 dot product (an AVX2 CPU) is exactly them.
      if (lm.resolve_precision(p) == sgt::Precision::Bf16) {
        CHECK(sgt_test::max_error(bf16.first, exact.first) > 0);
      } else {
        CHECK(sgt_test::max_error(bf16.first, exact.first) == 0);
      }
    }
  }
}

// phi3_crossing: longrope with original_max_position_embeddings 10 inside the first turn. Each
// forward call picks its factor set by where it ends, and the cache keeps what earlier calls wrote:
// the prompt (7) and decode steps ending at <= 10 use the short factors, the later ones the long
// ones, with the short keys still in the cache -- what HF computes on a DynamicCache fed the same
// calls (cached_logits), and not its one-pass logits (all long). generate() re-runs the sequence
// where HF's generate does; the generate test above checks its tokens.
TEST_CASE("longrope: each call picks short or long factors by where it ends, as HF's cached run") {
  const sgt::CausalLM lm = sgt::CausalLM::load((kData / "phi3_crossing").string());
  const Expected e = expected("phi3_crossing");
  REQUIRE(lm.config().decoder.rope.type == sgt::RopeType::LongRope);
  REQUIRE(lm.config().decoder.rope.original_max_position_embeddings == 10);
  REQUIRE(e.prompt < 10);
  REQUIRE(e.prompt + e.next > 11);
  REQUIRE(!e.cached_logits.empty());
  CHECK(!sgt::restarts_longrope_at(lm, 9));
  CHECK(sgt::restarts_longrope_at(lm, 10));
  CHECK(!sgt::restarts_longrope_at(lm, 11));
  // Items, not structured bindings: clang 14 refuses to capture a binding in CAPTURE (C++17).
  for (const auto& path : {std::pair{sgt::AttentionAlgorithm::Flash, false},
                           std::pair{sgt::AttentionAlgorithm::Sdpa, false},
                           std::pair{sgt::AttentionAlgorithm::Sdpa, true}}) {
    const sgt::AttentionAlgorithm attention = path.first;
    const bool reference = path.second;
    CAPTURE(reference);
    sgt::LmRunOptions options;
    options.attention = attention;
    options.reference_kernels = reference;
    const Turns turns = run_turns(lm, e, options);
    MESSAGE("phi3_crossing, cached run vs HF's: " << relative_error(turns.first, e.cached_logits));
    expect_close(turns.first, e.cached_logits, 1e-4, "prefill + decode across original_max");
    // The one-pass logits use the long factors everywhere: the prompt's rows must differ.
    CHECK(relative_error(rows_of(turns.first, e.batch, e.prompt + e.next, e.vocab, 0, e.prompt),
                         rows_of(e.logits, e.batch, e.prompt + e.next, e.vocab, 0, e.prompt)) >
          1e-2);
  }
  // From an embeddings prompt HF's generate never re-runs the sequence (its check counts the
  // generated ids only), and neither does ours: other tokens than from the ids prompt.
  const std::size_t B = e.batch, H = lm.hidden_size(), G = e.greedy_ids_embeds.size() / B;
  const auto table = lm.weights().embed_tokens.as<float>();
  std::vector<float> embeds;
  for (std::int64_t id : e.prompt_ids)
    embeds.insert(embeds.end(), table.data() + id * H, table.data() + (id + 1) * H);
  sgt::LmInput prompt;
  prompt.batch = B;
  prompt.seq_len = e.prompt;
  prompt.inputs_embeds = sgt::TensorView<const float>(embeds.data(), {B, e.prompt, H});
  sgt::GenerateOptions options;
  options.max_new_tokens = G;
  options.run.precision = sgt::Precision::F32;
  const auto tokens = sgt::generate(lm, prompt, options);
  REQUIRE(e.greedy_ids_embeds != e.greedy_ids);
  for (std::size_t b = 0; b < B; ++b)
    CHECK(tokens[b] == std::vector<std::int64_t>(e.greedy_ids_embeds.begin() + b * G,
                                                 e.greedy_ids_embeds.begin() + (b + 1) * G));
}

// Where DecodeWeights::Auto makes the copy: with the kernels whose narrow path measured faster on
// the copy (AVX2 and SSE2, bench/RESULTS.md), not where it measured no faster (AVX-512) or was not
// measured (NEON). Copy and Mapped do what they say everywhere.
TEST_CASE("DecodeWeights::Auto makes the decode copy with the AVX2 and SSE2 kernels only") {
  for (const char* isa : {"sse2", "avx2", "avx512", "avx512bf16", "neon64"}) {
    CAPTURE(isa);
    const bool copies = std::string(isa) == "sse2" || std::string(isa) == "avx2";
    CHECK(sgt::wants_decode_copy(sgt::DecodeWeights::Auto, isa) == copies);
    CHECK(sgt::wants_decode_copy(sgt::DecodeWeights::Copy, isa));
    CHECK_FALSE(sgt::wants_decode_copy(sgt::DecodeWeights::Mapped, isa));
  }
}

TEST_CASE("the decode copy of the weights gives the logits of the stored weights, bit for bit") {
  // CausalLM::copy_decode_weights: a prefill of 7 tokens (the stored weights, the tile) and 3
  // decode steps (the copy in feature blocks, the narrow path), at every precision the weights
  // allow, with the optimized and the reference kernels, on one and two threads. qwen3_tied keeps
  // its tied head row-major; phi3's fused projections stay row-major beside blocked ones.
  const sgt::kernels::KernelTable& kernels = sgt::kernels::default_kernel_table();
  for (const char* model : {"llama", "llama_bf16", "qwen3_tied", "gemma_bf16", "phi3"}) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM stored = sgt::CausalLM::load((kData / model).string());
    sgt::CausalLM blocked = sgt::CausalLM::load((kData / model).string());
    CHECK(blocked.decode_weight_bytes() == 0);
    CHECK_FALSE(blocked.reads_decode_weights(1, sgt::Precision::F32, kernels));
    blocked.copy_decode_weights();
    const sgt::AnyTensorView& down = blocked.decode_weights().decoder.layers[0].mlp.down;
    CHECK(down.layout() == sgt::WeightLayout::FeatureBlocks);
    CHECK(blocked.weights().decoder.layers[0].mlp.down.row_major());
    CHECK(blocked.decode_weight_bytes() >= down.byte_size());
    std::size_t linear_bytes = blocked.weights().lm_head.byte_size();
    for (const sgt::DecoderLayerWeights& l : blocked.weights().decoder.layers)
      for (const sgt::AnyTensorView* w : {&l.attention.q_proj, &l.attention.k_proj,
                                          &l.attention.v_proj, &l.attention.o_proj, &l.mlp.gate,
                                          &l.mlp.up, &l.mlp.down})
        linear_bytes += w->byte_size();
    CHECK(blocked.decode_weight_bytes() <= 2 * linear_bytes);  // padding never more than doubles
    const void* first = down.data();
    blocked.copy_decode_weights();  // a second call keeps the first copy
    CHECK(blocked.decode_weights().decoder.layers[0].mlp.down.data() == first);
    if (kernels.float_lanes >= 4)  // a build with a narrow path
      CHECK(blocked.reads_decode_weights(1, sgt::Precision::F32, kernels));
    CHECK_FALSE(blocked.reads_decode_weights(7, sgt::Precision::F32, kernels));
    const std::size_t V = stored.vocab_size();
    std::vector<sgt::Precision> precisions = {sgt::Precision::F32};
    if (name == "llama_bf16" || name == "gemma_bf16") precisions.push_back(sgt::Precision::Bf16);
    std::vector<std::int64_t> ids(10);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i * 37 % V);
    sgt::ThreadPool two(2);
    for (sgt::Precision precision : precisions)
      for (bool reference : {false, true})
        for (sgt::ThreadPool* pool : {static_cast<sgt::ThreadPool*>(nullptr), &two}) {
          std::ostringstream what;
          what << name << ": precision " << (precision == sgt::Precision::Bf16 ? "bf16" : "f32")
               << (reference ? ", reference kernels" : "") << (pool ? ", 2 threads" : "");
          CAPTURE(what.str());
          sgt::LmRunOptions options;
          options.precision = precision;
          options.reference_kernels = reference;
          options.pool = pool;
          sgt::KvCache cache_a = stored.make_cache(1, 16), cache_b = blocked.make_cache(1, 16);
          sgt::LmWorkspace ws_a, ws_b;
          sgt::LmLogits a, b;
          std::size_t start = 0;
          for (std::size_t len : {7u, 1u, 1u, 1u}) {
            const std::vector<std::int64_t> turn(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                                 ids.begin() +
                                                     static_cast<std::ptrdiff_t>(start + len));
            stored.forward(ids_input(1, turn, start), cache_a, ws_a, options, a);
            blocked.forward(ids_input(1, turn, start), cache_b, ws_b, options, b);
            sgt_test::expect_bit_identical(b.values, a.values,
                                           what.str() + ", from position " +
                                               std::to_string(start));
            start += len;
          }
        }
  }
}

TEST_CASE("the decode copy leaves out the matrices that padding would more than double") {
  // A llama of hidden 16 with random f32 weights: q, k, v, o and down have 16 features (4x once
  // padded to a block of 64) and stay as stored; gate and up (32 features, 2x) and lm_head (40)
  // are copied. The logits are still the stored weights'.
  ScratchCopy dir("llama");
  nlohmann::json c = dir.config();
  c["hidden_size"] = 16;
  c["intermediate_size"] = 32;
  c["num_attention_heads"] = 1;
  c["num_key_value_heads"] = 1;
  c["head_dim"] = 16;
  c["vocab_size"] = 40;
  dir.write_config(c);
  const sgt::CausalLmConfig config = sgt::load_causal_lm_config((dir.dir / "config.json").string());
  sgt::SafetensorsWriter writer;
  std::mt19937 rng(53);
  sgt::CausalLmWeights unused;
  sgt::for_each_causal_lm_tensor(
      config, unused,
      [&](const std::string& name, const sgt::TensorShape& shape, sgt::AnyTensorView&) {
        std::size_t n = 1;
        for (std::uint64_t d : shape) n *= static_cast<std::size_t>(d);
        const std::vector<float> values = sgt_test::uniform_values(n, rng, 0.5f);
        writer.add_from_f32(name, sgt::DType::F32, shape, values.data());
      });
  writer.write((dir.dir / "model.safetensors").string());

  const sgt::CausalLM stored = sgt::CausalLM::load(dir.dir.string());
  sgt::CausalLM copied = sgt::CausalLM::load(dir.dir.string());
  copied.copy_decode_weights();
  for (const sgt::DecoderLayerWeights& l : copied.decode_weights().decoder.layers) {
    for (const sgt::AnyTensorView* w : {&l.attention.q_proj, &l.attention.k_proj,
                                        &l.attention.v_proj, &l.attention.o_proj, &l.mlp.down})
      CHECK(w->row_major());
    CHECK(l.mlp.gate.layout() == sgt::WeightLayout::FeatureBlocks);
    CHECK(l.mlp.up.layout() == sgt::WeightLayout::FeatureBlocks);
  }
  CHECK(copied.decode_weights().lm_head.layout() == sgt::WeightLayout::FeatureBlocks);
  // gate and up of every layer and lm_head: one padded block of 64 features x K = 16 floats each.
  const std::size_t block_bytes = 64 * 16 * sizeof(float);
  CHECK(copied.decode_weight_bytes() == (2 * config.num_layers() + 1) * block_bytes);

  sgt::LmRunOptions options;
  options.precision = sgt::Precision::F32;
  sgt::KvCache cache_a = stored.make_cache(1, 8), cache_b = copied.make_cache(1, 8);
  std::size_t start = 0;
  for (const std::vector<std::int64_t>& turn :
       {std::vector<std::int64_t>{3, 17, 39, 5}, std::vector<std::int64_t>{11},
        std::vector<std::int64_t>{23}}) {
    const sgt::LmLogits a = stored.forward(ids_input(1, turn, start), cache_a, options);
    const sgt::LmLogits b = copied.forward(ids_input(1, turn, start), cache_b, options);
    sgt_test::expect_bit_identical(b.values, a.values, "from position " + std::to_string(start));
    start += turn.size();
  }
}

TEST_CASE("decode weights: auto copies only with the AVX2 kernels, mapped never, copy always") {
  sgt_test::check_enum_table(sgt::kDecodeWeightsNames, 3);
  const std::string dir = (kData / "llama").string();
  sgt::kernels::KernelTable avx2 = sgt::kernels::default_kernel_table(), avx512 = avx2, neon = avx2;
  avx2.isa = "avx2";
  avx512.isa = "avx512bf16";
  neon.isa = "neon64";
  struct Case {
    sgt::DecodeWeights choice;
    const sgt::kernels::KernelTable* kernels;
    bool copies;
  };
  for (const Case& c : {Case{sgt::DecodeWeights::Auto, &avx2, true},
                        Case{sgt::DecodeWeights::Auto, &avx512, false},
                        Case{sgt::DecodeWeights::Auto, &neon, false},
                        Case{sgt::DecodeWeights::Mapped, &avx2, false},
                        Case{sgt::DecodeWeights::Copy, &avx512, true},
                        Case{sgt::DecodeWeights::Copy, &neon, true}}) {
    CAPTURE(sgt::decode_weights_name(c.choice));
    CAPTURE(c.kernels->isa);
    sgt::CausalLM lm = sgt::CausalLM::load(dir);
    CHECK(lm.choose_decode_weights(c.choice, nullptr, *c.kernels) == c.copies);
    CHECK((lm.decode_weight_bytes() != 0) == c.copies);
    // A later choice keeps a copy made before.
    CHECK(lm.choose_decode_weights(sgt::DecodeWeights::Mapped, nullptr, *c.kernels) == c.copies);
  }
}

TEST_CASE("logits are bit-identical for 1, 2 and 3 threads") {
  for (const char* model : {"llama", "qwen3_tied", "smollm3", "gemma_bf16", "gemma2",
                            "gemma3_text", "phi3", "phi3_crossing"}) {
    const std::string name = model;
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((kData / model).string());
    const Expected e = expected(model);
    sgt_test::expect_thread_invariant([&](sgt::ThreadPool* pool) {
      sgt::LmRunOptions options;
      options.pool = pool;
      Turns turns = run_turns(lm, e, options);
      turns.first.insert(turns.first.end(), turns.second.begin(), turns.second.end());
      turns.first.insert(turns.first.end(), turns.prompt_last.begin(), turns.prompt_last.end());
      return turns.first;
    });
  }
}

TEST_CASE("a cache longer than max_position_embeddings is refused before it is allocated") {
  const sgt::CausalLM lm = sgt::CausalLM::load((kData / "llama").string());
  REQUIRE(lm.config().decoder.max_position_embeddings == 64);
  CHECK_NOTHROW(lm.make_cache(1, 64));
  CHECK_THROWS_WITH(lm.make_cache(1, 65),
                    doctest::Contains("65 positions are more than the model's "
                                      "max_position_embeddings 64"));
  // A token count typed wrong (2^20 new tokens) fails here, not after allocating for it.
  CHECK_THROWS_AS(lm.make_cache(1, std::size_t{1} << 20), sgt::Error);
}

TEST_CASE("a cache that would overflow is refused with a clear error, nothing written") {
  const sgt::CausalLM lm = sgt::CausalLM::load((kData / "llama").string());
  const Expected e = expected("llama");
  const std::size_t B = e.batch, max_len = e.prompt + 2;
  sgt::KvCache cache = lm.make_cache(B, max_len);
  lm.forward(ids_input(B, e.prompt_ids, 0), cache);
  REQUIRE(cache.length() == e.prompt);
  auto snapshot = [&] {
    std::vector<float> all;
    for (std::size_t l = 0; l < cache.num_layers(); ++l) {
      const sgt::KvCache& c = cache;
      all.insert(all.end(), c.keys(l).data(), c.keys(l).data() + c.keys(l).size());
      all.insert(all.end(), c.values(l).data(), c.values(l).data() + c.values(l).size());
    }
    return all;
  };
  const std::vector<float> before = snapshot();

  // 4 tokens at prompt..prompt+3: position prompt+2 is past max_len.
  const sgt::LmInput overflow = ids_input(B, id_rows(e.next_ids, B, e.next, 0, 4), e.prompt);
  try {
    lm.forward(overflow, cache);
    FAIL("no error");
  } catch (const sgt::Error& err) {
    const std::string what = err.what();
    CHECK(err.key() == "cache_position");
    CHECK(what.find("position " + std::to_string(max_len)) != std::string::npos);
    CHECK(what.find("maximum length " + std::to_string(max_len)) != std::string::npos);
  }
  CHECK(cache.length() == e.prompt);
  sgt_test::expect_bit_identical(snapshot(), before, "cache after the refused call");

  // A start past the cache's length (a hole) is refused too; so are non-consecutive positions.
  sgt::LmInput hole = ids_input(B, id_rows(e.next_ids, B, e.next, 0, 1), e.prompt + 1);
  CHECK(error_of([&] { lm.forward(hole, cache); }).find("never computed") != std::string::npos);
  sgt::LmInput jump = ids_input(B, id_rows(e.next_ids, B, e.next, 0, 2), e.prompt);
  jump.cache_position[1] += 1;
  CHECK(error_of([&] { lm.forward(jump, cache); }).find("consecutive") != std::string::npos);
  sgt::LmInput bad_id = ids_input(B, id_rows(e.next_ids, B, e.next, 0, 1), e.prompt);
  bad_id.input_ids[1] = static_cast<std::int64_t>(e.vocab);
  CHECK(error_of([&] { lm.forward(bad_id, cache); }).find("vocabulary") != std::string::npos);
  CHECK(cache.length() == e.prompt);
  sgt_test::expect_bit_identical(snapshot(), before, "cache after the refused calls");

  // What fits still runs: the two last positions.
  lm.forward(ids_input(B, id_rows(e.next_ids, B, e.next, 0, 2), e.prompt), cache);
  CHECK(cache.length() == max_len);
}

TEST_CASE("bad config.json and missing tensors: the error names the file and the key") {
  SUBCASE("a config value that contradicts another") {
    ScratchCopy copy("llama");
    nlohmann::json j = copy.config();
    j["num_key_value_heads"] = 3;
    copy.write_config(j);
    try {
      sgt::CausalLM::load(copy.dir.string());
      FAIL("no error");
    } catch (const sgt::Error& err) {
      CHECK(err.key() == "num_key_value_heads");
      CHECK(err.file() == (copy.dir / "config.json").string());
    }
  }
  SUBCASE("no vocab_size") {
    ScratchCopy copy("qwen3_tied");
    nlohmann::json j = copy.config();
    j.erase("vocab_size");
    copy.write_config(j);
    try {
      sgt::CausalLM::load(copy.dir.string());
      FAIL("no error");
    } catch (const sgt::Error& err) {
      CHECK(err.key() == "vocab_size");
      CHECK(err.file() == (copy.dir / "config.json").string());
    }
  }
  SUBCASE("an unknown model_type") {
    ScratchCopy copy("llama");
    nlohmann::json j = copy.config();
    j["model_type"] = "gpt2";
    copy.write_config(j);
    const std::string what = error_of([&] { sgt::CausalLM::load(copy.dir.string()); });
    CHECK(what.find("gpt2") != std::string::npos);
    CHECK(what.find("llama") != std::string::npos);
  }
  SUBCASE("a family we know but cannot run: the missing feature") {
    ScratchCopy copy("phi3");
    nlohmann::json j = copy.config();
    for (const auto& item :
         {std::pair<std::string, std::string>{"phi", "parallel attention/MLP block"},
          {"phimoe", "mixture-of-experts"},
          {"mixtral", "mixture-of-experts"},
          {"qwen2_moe", "mixture-of-experts"}}) {
      const std::string& type = item.first;
      const std::string& feature = item.second;
      CAPTURE(type);
      j["model_type"] = type;
      copy.write_config(j);
      const std::string what = error_of([&] { sgt::CausalLM::load(copy.dir.string()); });
      CHECK(what.find("model_type '" + type + "': ") != std::string::npos);
      CHECK(what.find(feature) != std::string::npos);
      CHECK(what.find("config.json") != std::string::npos);
    }
  }
  SUBCASE("a layer more than the file holds: the missing tensor") {
    ScratchCopy copy("llama");
    nlohmann::json j = copy.config();
    j["num_hidden_layers"] = 3;
    copy.write_config(j);
    try {
      sgt::CausalLM::load(copy.dir.string());
      FAIL("no error");
    } catch (const sgt::Error& err) {
      CHECK(err.tensor() == "model.layers.2.input_layernorm.weight");
      CHECK(err.file() == (copy.dir / "model.safetensors").string());
    }
  }
  SUBCASE("untied config over a tied checkpoint: lm_head.weight is missing from the index") {
    ScratchCopy copy("qwen3_tied");
    nlohmann::json j = copy.config();
    j["tie_word_embeddings"] = false;
    copy.write_config(j);
    try {
      sgt::CausalLM::load(copy.dir.string());
      FAIL("no error");
    } catch (const sgt::Error& err) {
      CHECK(err.tensor() == "lm_head.weight");
      CHECK(err.file() == (copy.dir / "model.safetensors").string());
    }
  }
  SUBCASE("a sharded model names its index") {
    ScratchCopy copy("qwen2_sharded");
    nlohmann::json j = copy.config();
    j["intermediate_size"] = 96;
    copy.write_config(j);
    try {
      sgt::CausalLM::load(copy.dir.string());
      FAIL("no error");
    } catch (const sgt::Error& err) {
      CHECK(err.tensor() == "model.layers.0.mlp.gate_proj.weight");
      CHECK(err.file() == (copy.dir / "model.safetensors.index.json").string());
      CHECK(std::string(err.what()).find("[96, 64]") != std::string::npos);
    }
  }
}

}  // namespace test_causal_lm
