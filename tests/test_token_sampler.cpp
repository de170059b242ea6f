// sgt::TokenSampler (sgt/lm/token_sampler.hpp) against transformers' sampling.
//
// tests/data/sampling/expected.json (tools/fixtures/sampling_fixtures.py) holds logits rows and,
// per temperature and top_p, the softmax transformers draws from after its TemperatureLogitsWarper
// and TopPLogitsWarper, and torch.argmax of each row. A sampler is checked to have that
// distribution, to pick by it (each draw u lands in its token's interval; 20000 seeded draws match
// it within 5 sigma), to be greedy at temperature 0, and to be reproducible per seed.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/lm/token_sampler.hpp>

#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_token_sampler {

using nlohmann::json;

namespace {

json fixture() { return sgt_test::read_fixture_json("sampling/expected.json"); }

std::vector<float> row(const json& j) {
  std::vector<float> out;
  for (const json& v : j)
    out.push_back(v.is_null() ? -std::numeric_limits<float>::infinity() : v.get<float>());
  return out;
}

}  // namespace

TEST_CASE("token sampler: greedy is torch.argmax (lowest id on a tie)") {
  const json f = fixture();
  for (std::size_t r = 0; r < f.at("logits").size(); ++r) {
    const std::vector<float> logits = row(f.at("logits")[r]);
    sgt::TokenSampler greedy(sgt::SamplingOptions{});
    CHECK(greedy.next(logits.data(), logits.size()) == f.at("argmax")[r].get<std::int32_t>());
  }
  const std::vector<float> tie = {1.f, 5.f, 5.f, -2.f};
  CHECK(sgt::TokenSampler::argmax(tie.data(), tie.size()) == 1);
}

TEST_CASE("token sampler: the distribution transformers samples from, temperature and top_p") {
  const json f = fixture();
  std::size_t checked = 0;
  for (const json& c : f.at("cases")) {
    const std::vector<float> logits = row(f.at("logits")[c.at("row").get<std::size_t>()]);
    sgt::SamplingOptions o;
    o.temperature = c.at("temperature").get<double>();
    o.top_p = c.at("top_p").get<double>();
    sgt::TokenSampler s(o);
    const std::vector<double> want = c.at("probs").get<std::vector<double>>();
    const std::vector<double> got = s.distribution(logits.data(), logits.size());
    INFO("row " << c.at("row") << " temperature " << o.temperature << " top_p " << o.top_p);
    REQUIRE(got.size() == want.size());
    for (std::size_t v = 0; v < want.size(); ++v) {
      CHECK(got[v] == doctest::Approx(want[v]).epsilon(1e-6));
      CHECK((got[v] == 0.0) == (want[v] == 0.0));  // the same tokens removed
    }
    // Every draw lands in its token's interval, most probable first.
    double lo = 0.0;
    std::vector<std::pair<double, std::int32_t>> by_prob;
    for (std::size_t v = 0; v < want.size(); ++v)
      if (got[v] > 0) by_prob.push_back({-got[v], static_cast<std::int32_t>(v)});
    std::stable_sort(by_prob.begin(), by_prob.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [neg_p, id] : by_prob) {
      const double mid = lo - neg_p / 2;
      // (intervals narrower than the rounding of the running sum cannot be hit on purpose)
      if (-neg_p > 1e-9) CHECK(s.sample(logits.data(), logits.size(), mid) == id);
      lo -= neg_p;
    }
    CHECK(s.sample(logits.data(), logits.size(), std::nextafter(1.0, 0.0)) ==
          by_prob.back().second);
    ++checked;
  }
  CHECK(checked == 48);
}

TEST_CASE("token sampler: seeded draws follow the distribution and repeat per seed") {
  const json f = fixture();
  const std::vector<float> logits = row(f.at("logits")[1]);
  sgt::SamplingOptions o;
  o.temperature = 1.0;
  o.top_p = 0.9;
  o.seed = 42;
  sgt::TokenSampler a(o), b(o);
  std::vector<double> counts(logits.size(), 0.0);
  const int n = 20000;
  std::vector<std::int32_t> first_a, first_b;
  for (int i = 0; i < n; ++i) {
    const std::int32_t t = a.next(logits.data(), logits.size());
    counts[t] += 1;
    if (i < 64) {
      first_a.push_back(t);
      first_b.push_back(b.next(logits.data(), logits.size()));
    }
  }
  CHECK(first_a == first_b);
  const std::vector<double> p = a.distribution(logits.data(), logits.size());
  for (std::size_t v = 0; v < p.size(); ++v) {
    const double sigma = std::sqrt(n * p[v] * (1 - p[v]));
    INFO("token " << v << " p " << p[v] << " count " << counts[v]);
    CHECK(std::abs(counts[v] - n * p[v]) <= 5 * sigma + 1e-9);
  }
  o.seed = 43;
  sgt::TokenSampler c(o);
  std::vector<std::int32_t> first_c;
  for (int i = 0; i < 64; ++i) first_c.push_back(c.next(logits.data(), logits.size()));
  CHECK(first_c != first_a);
}

TEST_CASE("token sampler: bad options and NaN logits are errors") {
  sgt::SamplingOptions o;
  o.temperature = -1;
  CHECK_THROWS_WITH_AS(sgt::TokenSampler{o}, doctest::Contains("temperature must be"), sgt::Error);
  o.temperature = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(sgt::TokenSampler{o}, sgt::Error);
  o.temperature = 1;
  o.top_p = 0;
  CHECK_THROWS_WITH_AS(sgt::TokenSampler{o}, doctest::Contains("top_p must be in (0, 1]"),
                       sgt::Error);
  o.top_p = 1.5;
  CHECK_THROWS_AS(sgt::TokenSampler{o}, sgt::Error);
  o.top_p = 1;
  sgt::TokenSampler s(o);
  const std::vector<float> nan_row = {0.f, std::numeric_limits<float>::quiet_NaN(), 1.f};
  CHECK_THROWS_WITH_AS(s.next(nan_row.data(), nan_row.size()),
                       doctest::Contains("the logit of token 1 is NaN"), sgt::Error);
  // +inf logits share all the mass.
  const std::vector<float> inf_row = {0.f, std::numeric_limits<float>::infinity(), 1.f,
                                      std::numeric_limits<float>::infinity()};
  const std::vector<double> p = s.distribution(inf_row.data(), inf_row.size());
  CHECK(p == std::vector<double>{0.0, 0.5, 0.0, 0.5});
}

}  // namespace test_token_sampler
