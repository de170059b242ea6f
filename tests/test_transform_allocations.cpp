// A Transform call with a planned Workspace allocates nothing: every global operator new in this
// program is counted while a call runs.
#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

#include <sgt/sgt.hpp>

#include "support/allocation_counter.hpp"

using sgt_test::allocations_during;

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
