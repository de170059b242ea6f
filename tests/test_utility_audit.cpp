// sgt::UtilityAudit / audit_with_utility (audit/utility_audit.hpp) against
// tests/data/audit/utility/expected.json, which tools/fixtures/utility_audit_fixtures.py computes
// with transformers: the demo base model (examples/models/demo_base, f32) run on the clean prompt
// (examples/prompt.json) and on the reference transform's output for each stored draw of
// tests/data/audit/noise_draws.safetensors, KL / top-1 / rank per position, and HF generate's
// greedy answers to the clean ids and to draw 0's inputs_embeds.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_utility_audit {

namespace fs = std::filesystem;

namespace {

const fs::path kExamples = fs::path(SGT_TEST_DATA_DIR) / ".." / ".." / "examples";
const fs::path kAuditData = fs::path(SGT_TEST_DATA_DIR) / "audit";

nlohmann::json read_expected() {
  return sgt_test::read_fixture_json("audit/utility/expected.json");
}

struct Fixture {
  sgt::Transform model{(kExamples / "models" / "demo").string()};
  sgt::CausalLM base = sgt::CausalLM::load((kExamples / "models" / "demo_base").string());
  sgt::TransformInput input = sgt::load_transform_input((kExamples / "prompt.json").string());
  sgt::SafetensorsFile draws_file{(kAuditData / "noise_draws.safetensors").string()};
  sgt::TensorView<const float> draws = draws_file.tensor("noise").as<float>();
};

// The reference computes in f32 (demo_base's bf16 weights widened), so both runs do.
sgt::AuditOptions audit_options(const Fixture& f) {
  sgt::AuditOptions o;
  o.precision = sgt::Precision::F32;
  o.injected_draws = f.draws;
  return o;
}
sgt::UtilityOptions utility_options(const nlohmann::json& e) {
  sgt::UtilityOptions o;
  o.run.precision = sgt::Precision::F32;
  o.new_tokens = e["max_new_tokens"].get<std::size_t>();
  o.stop_tokens = {e["eos_token_id"].get<std::int64_t>()};
  return o;
}

// Two f32 implementations of the same 2-layer model differ by ~1e-6..1e-5 in the logits: a rank is
// compared exactly only where the clean top-1's protected logit is further than this from every
// other logit (the fixture records that gap), else to within the few tokens inside the band.
constexpr double kLogitBand = 1e-4;

void check_against_expected(const sgt::UtilityReport& r, const nlohmann::json& e) {
  const std::size_t N = e["draws"].get<std::size_t>();
  const nlohmann::json& positions = e["positions"];
  REQUIRE(r.draws == N);
  REQUIRE(r.positions.size() == positions.size());
  double kl_sum = 0, agree_sum = 0, rank_sum = 0;
  std::size_t reached = 0, exact_ranks = 0;
  for (std::size_t t = 0; t < positions.size(); ++t) {
    CAPTURE(t);
    const sgt::PositionUtility& p = r.positions[t];
    const nlohmann::json& x = positions[t];
    CHECK(p.clean_top1 == x["clean_top1"].get<std::int64_t>());
    REQUIRE(p.kl.size() == N);
    for (std::size_t d = 0; d < N; ++d) {
      CAPTURE(d);
      const double kl = x["kl"][d].get<double>();
      CHECK(std::abs(p.kl[d] - kl) <= 1e-5 + 1e-3 * kl);
      const auto rank = static_cast<std::int64_t>(x["rank"][d].get<std::uint64_t>());
      const auto ours = static_cast<std::int64_t>(p.rank[d]);
      if (x["gap"][d].get<double>() > kLogitBand) {
        CHECK(ours == rank);
        CHECK((p.protected_top1[d] == p.clean_top1) == x["top1"][d].get<bool>());
        ++exact_ranks;
      } else {
        CHECK(std::abs(ours - rank) <= 3);
      }
      CHECK((p.rank[d] == 0) == (p.protected_top1[d] == p.clean_top1));
    }
    CHECK(p.mean_kl == doctest::Approx(x["mean_kl"].get<double>()).epsilon(1e-3));
    CHECK(p.top1_agreement == x["top1_agreement"].get<double>());
    // Reached: at or after the first protected token (examples/prompt.json leaves BOS clean).
    CHECK(p.reached == (t >= 1));
    if (p.reached) {
      ++reached;
      kl_sum += x["mean_kl"].get<double>();
      agree_sum += x["top1_agreement"].get<double>();
      rank_sum += x["mean_rank"].get<double>();
    }
  }
  // The fixture must pin most ranks exactly, or the rank check would test little.
  CHECK(exact_ranks * 4 >= 3 * N * positions.size());
  // Position 0 sees only the clean BOS through the causal mask: nothing changes there.
  CHECK(r.positions[0].mean_kl < 1e-6);
  REQUIRE(r.reached_positions == reached);
  CHECK(r.mean_kl == doctest::Approx(kl_sum / double(reached)).epsilon(1e-3));
  CHECK(r.top1_agreement == doctest::Approx(agree_sum / double(reached)).epsilon(1e-12));
  CHECK(r.mean_rank == doctest::Approx(rank_sum / double(reached)).epsilon(0.01));
  CHECK(r.clean_answer == e["clean_answer"]["new_ids"].get<std::vector<std::int64_t>>());
  CHECK(r.protected_answer == e["protected_answer"]["new_ids"].get<std::vector<std::int64_t>>());
}

}  // namespace

TEST_CASE("utility audit of the demo prompt and stored draws matches transformers") {
  Fixture f;
  const nlohmann::json e = read_expected();
  // The fixture discriminates: the noise moves the distributions, the two answers differ.
  REQUIRE(e["positions"][5]["mean_kl"].get<double>() > 0.1);
  REQUIRE(e["clean_answer"]["new_ids"] != e["protected_answer"]["new_ids"]);
  // Greedy answers are only a stable reference far from ties.
  REQUIRE(e["clean_answer"]["min_top2_gap"].get<double>() > 1e-2);
  REQUIRE(e["protected_answer"]["min_top2_gap"].get<double>() > 1e-2);

  SUBCASE("serial") {
    sgt::AuditReport audit;
    const sgt::UtilityReport r = sgt::audit_with_utility(f.model, f.base, f.input, audit,
                                                         audit_options(f), utility_options(e));
    check_against_expected(r, e);
    CHECK(audit.draws == r.draws);  // the nearest-neighbour audit ran on the same draws
    CHECK(audit.protected_tokens == 30);
  }
  SUBCASE("three threads give the same numbers") {
    sgt::AuditReport audit;
    const sgt::UtilityReport serial = sgt::audit_with_utility(f.model, f.base, f.input, audit,
                                                              audit_options(f), utility_options(e));
    sgt::ThreadPool pool(3);
    sgt::AuditOptions ao = audit_options(f);
    ao.pool = &pool;
    sgt::UtilityOptions uo = utility_options(e);
    uo.run.pool = &pool;
    const sgt::UtilityReport threaded =
        sgt::audit_with_utility(f.model, f.base, f.input, audit, ao, uo);
    check_against_expected(threaded, e);
    for (std::size_t t = 0; t < serial.positions.size(); ++t) {
      CHECK(threaded.positions[t].kl == serial.positions[t].kl);
      CHECK(threaded.positions[t].rank == serial.positions[t].rank);
    }
  }
}

TEST_CASE("audit_transform hands each draw's protected embeddings to on_draw, in order") {
  Fixture f;
  sgt::AuditOptions options = audit_options(f);
  std::vector<std::size_t> seen;
  std::vector<float> first;
  const std::size_t S = f.input.seq_len, H = f.model.hidden_size();
  options.on_draw = [&](std::size_t d, sgt::TensorView<const float> x) {
    seen.push_back(d);
    REQUIRE(x.shape_string() == "[1, " + std::to_string(S) + ", " + std::to_string(H) + "]");
    if (d == 0) first.assign(x.data(), x.data() + x.size());
  };
  sgt::audit_transform(f.model, f.input, options);
  CHECK(seen == std::vector<std::size_t>{0, 1, 2, 3});
  // Draw 0 is what a plain transform run with that noise gives.
  sgt::RunOptions run;
  run.precision = sgt::Precision::F32;
  run.noise = sgt::NoiseSource::Injected;
  run.injected_noise = sgt::TensorView<const float>(f.draws.data(), {1, S, H});
  const sgt::TransformResult direct = f.model.run(f.input, run);
  REQUIRE(first.size() == direct.transformed.size());
  for (std::size_t i = 0; i < first.size(); ++i) REQUIRE(first[i] == direct.transformed[i]);
}

TEST_CASE("utility audit: no draws, no answers, bad inputs") {
  Fixture f;
  const nlohmann::json e = read_expected();
  sgt::UtilityOptions options = utility_options(e);
  options.new_tokens = 0;
  sgt::UtilityAudit utility(f.base, f.input, options);
  CHECK(utility.report().draws == 0);
  CHECK(utility.report().clean_answer.empty());
  CHECK(utility.report().positions[3].clean_top1 ==
        e["positions"][3]["clean_top1"].get<std::int64_t>());

  // The clean ids as embeddings: the base model sees the same prompt, KL 0, every top-1 kept.
  const std::size_t S = f.input.seq_len, H = f.base.hidden_size();
  sgt::RunOptions run;
  run.keep_intermediates = true;
  const sgt::TransformResult clean = f.model.run(f.input, run);
  utility.add_draw(sgt::TensorView<const float>(clean.embeddings.data(), {1, S, H}));
  CHECK(utility.report().draws == 1);
  CHECK(utility.report().mean_kl < 1e-6);
  CHECK(utility.report().top1_agreement == 1.0);
  CHECK(utility.report().mean_rank == 0.0);
  CHECK(utility.report().protected_answer.empty());

  CHECK_THROWS_WITH_AS(
      utility.add_draw(sgt::TensorView<const float>(clean.embeddings.data(), {1, S - 1, H})),
      doctest::Contains("expected [1, 31, 256]"), sgt::Error);

  sgt::TransformInput two = f.input;
  two.batch = 2;
  two.seq_len = 2;
  two.input_ids.resize(4);
  two.noise_mask.resize(4);
  CHECK_THROWS_WITH_AS(sgt::UtilityAudit(f.base, two, options),
                       doctest::Contains("one sequence, the request has 2"), sgt::Error);

  sgt::TransformInput padded = f.input;
  padded.attention_mask.assign(S, 1);
  padded.attention_mask[0] = 0;
  CHECK_THROWS_WITH_AS(sgt::UtilityAudit(f.base, padded, options), doctest::Contains("padding"),
                       sgt::Error);

  // A base model of another vocabulary and width: both config.json named.
  const sgt::CausalLM other =
      sgt::CausalLM::load((fs::path(SGT_TEST_DATA_DIR) / "causal_lm" / "llama").string());
  sgt::AuditReport audit;
  CHECK_THROWS_WITH_AS(
      sgt::audit_with_utility(f.model, other, f.input, audit, audit_options(f), options),
      doctest::Contains("demo/config.json: the SGT model was not made for this base model: it "
                        "has vocab_size 1024, hidden_size 256; "), sgt::Error);
  CHECK_THROWS_WITH_AS(sgt::check_base_compatible(f.model, other),
                       doctest::Contains("llama/config.json has vocab_size 256, hidden_size 64"),
                       sgt::Error);
}

}  // namespace test_utility_audit
