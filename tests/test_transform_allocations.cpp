// A Transform call with a planned Workspace allocates nothing: every global operator new in this
// program is counted while a call runs.
#include <doctest/doctest.h>

#include <filesystem>
#include <optional>
#include <vector>

#include <sgt/sgt.hpp>

#include "support/allocation_counter.hpp"

using sgt_test::allocations_during;
using sgt_test::releases_during;

// The loop covers flash attention only: sdpa allocates its scores per task, and the reference
// kernels allocate.
TEST_CASE(
    "a call with a planned workspace and flash attention allocates nothing, for every noise "
    "source") {
  const auto root = std::filesystem::path(SGT_TEST_DATA_DIR) / "e2e";
  for (const char* name : {"llama_gqa_llama3", "qwen3_qk_norm", "mistral_sliding_window"}) {
    CAPTURE(name);
    const sgt::Transform model((root / name).string());
    const auto in = sgt::load_transform_input((root / name / "input.json").string());
    sgt::ThreadPool pool(2);
    std::vector<float> eps(in.batch * in.seq_len * model.hidden_size(), 0.25f);
    for (auto noise :
         {sgt::NoiseSource::Secure, sgt::NoiseSource::Torch, sgt::NoiseSource::Injected}) {
      sgt::RunOptions o;
      o.pool = &pool;
      o.noise = noise;
      o.seed = 5;
      o.injected_noise =
          sgt::TensorView<const float>(eps.data(), {in.batch, in.seq_len, model.hidden_size()});
      o.attention = sgt::AttentionAlgorithm::Flash;
      o.keep_intermediates = true;
      sgt::Workspace ws;
      sgt::TransformResult r;
      model.run(in, o, ws, r);  // plans
      CHECK(allocations_during([&] { model.run(in, o, ws, r); }).count == 0);
    }
  }
}

// Clean-prompt hygiene (core/secure_memory.hpp): the workspace and the result hold the clean
// embeddings and what was computed from them, and every one of their blocks is zero when it goes
// back to the allocator -- on destruction and when a growing buffer moves.
TEST_CASE("workspace and result buffers are wiped when released") {
  const auto root = std::filesystem::path(SGT_TEST_DATA_DIR) / "e2e" / "llama_gqa_llama3";
  const sgt::Transform model(root.string());
  const auto in = sgt::load_transform_input((root / "input.json").string());
  const std::size_t row_bytes = model.hidden_size() * sizeof(float);
  sgt::RunOptions o;
  o.noise = sgt::NoiseSource::Torch;
  o.seed = 3;
  o.keep_intermediates = true;
  // In place (not on the heap): the objects themselves hold pointers, not the prompt.
  std::optional<sgt::Workspace> ws(std::in_place);
  std::optional<sgt::TransformResult> r(std::in_place);
  model.run(in, o, *ws, *r);
  REQUIRE(r->embeddings.size() == in.batch * in.seq_len * model.hidden_size());
  // A longer request grows every buffer: the old blocks move out and are released.
  sgt::TransformInput longer = in;
  longer.seq_len = in.seq_len + 3;
  longer.input_ids.clear();
  longer.noise_mask.clear();
  longer.attention_mask.clear();
  for (std::size_t b = 0; b < in.batch; ++b)
    for (std::size_t t = 0; t < longer.seq_len; ++t) {
      longer.input_ids.push_back(std::int64_t((b * 7 + t * 3) % 10));
      longer.noise_mask.push_back(1);
      longer.attention_mask.push_back(1);
    }
  const auto grown = releases_during(row_bytes, [&] { model.run(longer, o, *ws, *r); });
  CHECK(grown.blocks > 0);
  CHECK(grown.not_wiped == 0);
  const auto released = releases_during(row_bytes, [&] {
    r.reset();
    ws.reset();
  });
  MESSAGE("blocks released: " << grown.blocks << " while growing, " << released.blocks
                              << " at destruction");
  CHECK(released.blocks >= 13);  // the workspace's 12 float buffers and the result's 5, at least
  CHECK(released.not_wiped == 0);

  // The check can fail: a plain std::vector with the same contents is released dirty.
  const auto plain = releases_during(row_bytes, [&] {
    std::vector<float> v(model.hidden_size(), 1.0f);
    (void)v;
  });
  CHECK(plain.blocks == 1);
  CHECK(plain.not_wiped == 1);
}

// The causal LM's decode loop: after its first step planned the LmWorkspace, a step allocates
// nothing (cached attention has no score row, the cache was allocated once); a second turn of a
// size seen before neither. The KV cache and the workspace are wiped when released.
TEST_CASE("CausalLM: a decode step with a planned workspace allocates nothing; buffers wiped") {
  const auto root = std::filesystem::path(SGT_TEST_DATA_DIR) / "causal_lm";
  for (const char* name : {"llama", "qwen3_tied"}) {
    CAPTURE(name);
    const sgt::CausalLM lm = sgt::CausalLM::load((root / name).string());
    sgt::ThreadPool pool(2);
    sgt::LmRunOptions o;
    o.pool = &pool;
    o.attention = sgt::AttentionAlgorithm::Flash;
    std::optional<sgt::KvCache> cache(std::in_place, lm.make_cache(2, 32));
    std::optional<sgt::LmWorkspace> ws(std::in_place);
    sgt::LmLogits out;
    sgt::LmInput in;
    in.batch = 2;
    in.seq_len = 6;
    in.input_ids = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    in.cache_position = {0, 1, 2, 3, 4, 5};
    lm.forward(in, *cache, *ws, o, out);  // prefill: plans for 6 tokens
    sgt::LmInput step;
    step.batch = 2;
    step.seq_len = 1;
    step.input_ids = {17, 18};
    step.cache_position = {6};
    step.logits = sgt::LogitsFor::Last;
    lm.forward(step, *cache, *ws, o, out);  // the first step sizes the logits
    step.cache_position = {7};
    CHECK(allocations_during([&] { lm.forward(step, *cache, *ws, o, out); }).count == 0);
    in.cache_position = {3, 4, 5, 6, 7, 8};  // a second turn from inside the cache
    in.logits = sgt::LogitsFor::Last;
    CHECK(allocations_during([&] { lm.forward(in, *cache, *ws, o, out); }).count == 0);

    const auto released = releases_during(lm.hidden_size() * sizeof(float), [&] {
      cache.reset();
      ws.reset();
    });
    CHECK(released.blocks >= 2);
    CHECK(released.not_wiped == 0);
  }
}
