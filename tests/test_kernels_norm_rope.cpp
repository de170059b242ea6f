// Kernels embedding_lookup, rms_norm and apply_rope / RopeTable: against Hugging Face fixtures
// (tools/fixtures/kernel_norm_rope_fixtures.py), optimized against reference on random data over
// awkward shapes, bit-identical results for 1, 2 and 3 threads, and the errors bad input gets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/core/thread_pool.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/kernels/embedding.hpp>
#include <sgt/kernels/rms_norm.hpp>
#include <sgt/kernels/rope.hpp>

#include "support/kernel_harness.hpp"
#include "support/stored_tensor.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_kernels_norm_rope {

namespace {

using sgt_test::expect_bit_identical;
using sgt_test::expect_thread_invariant;
using sgt_test::require_bit_identical;
using sgt_test::require_matches;
using sgt_test::StoredTensor;
using sgt_test::to_f32;
using sgt_test::ulp_distance;

using sgt::AnyTensorView;
using sgt::DType;
using sgt::TensorView;
namespace k = sgt::kernels;

const std::string kDataDir = std::string(SGT_TEST_DATA_DIR) + "/kernels/norm_rope/";

nlohmann::json fixture_cases(const sgt::SafetensorsFile& file) {
  const auto it = file.metadata().find("cases");
  REQUIRE(it != file.metadata().end());
  return nlohmann::json::parse(it->second);
}

// Values shaped like activations: mostly normal, some rows scaled far up or down.
std::vector<float> random_values(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * normal(rng);
  return v;
}

constexpr DType kAllDTypes[] = {DType::F32, DType::BF16, DType::F16};
constexpr std::size_t kAwkwardSizes[] = {1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 127, 130, 257, 2048};

}  // namespace

// ------------------------------------------------------------------------------------------------
// embedding_lookup
// ------------------------------------------------------------------------------------------------

TEST_CASE("embedding_lookup matches nn.Embedding exactly for f32, bf16 and f16 tables") {
  sgt::SafetensorsFile file(kDataDir + "embedding.safetensors");
  const auto cases = fixture_cases(file);
  REQUIRE(cases.size() >= 3);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    CAPTURE(name);
    const AnyTensorView table = file.tensor(name + ".table");
    CHECK(sgt::dtype_name(table.dtype()) == c["dtype"].get<std::string>());
    const std::vector<float> ids_f = to_f32(file.tensor(name + ".ids"));
    std::vector<std::int64_t> ids(ids_f.begin(), ids_f.end());
    const std::vector<float> expected = to_f32(file.tensor(name + ".out"));
    const std::size_t hidden = table.dim(1);
    REQUIRE(expected.size() == ids.size() * hidden);

    std::vector<float> out(expected.size(), -1.0f), ref(expected.size(), -2.0f);
    k::embedding_lookup(table, ids.data(), ids.size(),
                        TensorView<float>(out.data(), {ids.size(), hidden}));
    k::embedding_lookup_reference(table, ids.data(), ids.size(),
                                  TensorView<float>(ref.data(), {ids.size(), hidden}));
    expect_bit_identical(out, expected, "embedding_lookup");
    expect_bit_identical(ref, expected, "embedding_lookup_reference");
  }
}

// transformers' Gemma embedding modules: E[ids] * torch.tensor(sqrt(48)).to(E.dtype), in E's dtype
// (tools/fixtures/embedding_scale_fixtures.py; 48 so that the scale's rounding shows).
TEST_CASE("scale_embedding_rows rounds as Gemma's scaled embeddings do, for f32, bf16 and f16") {
  sgt::SafetensorsFile file(std::string(SGT_TEST_DATA_DIR) + "/embedding_scale/expected.safetensors");
  const std::vector<float> ids_f = to_f32(file.tensor("ids"));
  const std::vector<std::int64_t> ids(ids_f.begin(), ids_f.end());
  const float scale = static_cast<float>(std::sqrt(48.0));
  for (const char* dtype : {"f32", "bf16", "f16"}) {
    CAPTURE(dtype);
    const AnyTensorView table = file.tensor(std::string("table_") + dtype);
    const std::size_t hidden = table.dim(1);
    const std::vector<float> expected = to_f32(file.tensor(std::string("scaled_") + dtype));
    REQUIRE(expected.size() == ids.size() * hidden);
    auto run = [&](sgt::ThreadPool* pool) {
      std::vector<float> out(expected.size());
      const TensorView<float> view(out.data(), {ids.size(), hidden});
      k::embedding_lookup(table, ids.data(), ids.size(), view, pool);
      k::scale_embedding_rows(table.dtype(), scale, view, pool);
      return out;
    };
    expect_bit_identical(run(nullptr), expected, "scaled rows");
    sgt::ThreadPool pool(2);
    expect_bit_identical(run(&pool), expected, "scaled rows, 2 threads");
  }
}

TEST_CASE("embedding_lookup equals its reference over awkward widths, dtypes and output ranks") {
  std::mt19937 rng(11);
  for (DType dtype : kAllDTypes) {
    for (std::size_t hidden : kAwkwardSizes) {
      const std::size_t vocab = 37;
      StoredTensor table(dtype, random_values(vocab * hidden, rng), {vocab, hidden});
      for (std::size_t count : {std::size_t{1}, std::size_t{16}, std::size_t{65}}) {
        CAPTURE(sgt::dtype_name(dtype));
        CAPTURE(hidden);
        CAPTURE(count);
        std::uniform_int_distribution<std::int64_t> pick(0, vocab - 1);
        std::vector<std::int64_t> ids(count);
        for (auto& id : ids) id = pick(rng);
        std::vector<float> out(count * hidden), ref(count * hidden);
        // [1, count, H]: the model passes [B, S, H] views.
        k::embedding_lookup(table.view(), ids.data(), count,
                            TensorView<float>(out.data(), {1, count, hidden}));
        k::embedding_lookup_reference(table.view(), ids.data(), count,
                                      TensorView<float>(ref.data(), {count, hidden}));
        require_bit_identical(out, ref);
        // And the reference is the table row, by construction of to_float.
        const std::vector<float> widened = to_f32(table.view());
        for (std::size_t i = 0; i < count; ++i)
          require_bit_identical({&ref[i * hidden], hidden}, {&widened[ids[i] * hidden], hidden},
                                "id " + std::to_string(i));
      }
    }
  }
}

TEST_CASE("embedding_lookup is bit-identical for 1, 2 and 3 threads") {
  std::mt19937 rng(12);
  const std::size_t vocab = 300, hidden = 2048 + 7, count = 97;
  StoredTensor table(DType::BF16, random_values(vocab * hidden, rng), {vocab, hidden});
  std::vector<std::int64_t> ids(count);
  std::uniform_int_distribution<std::int64_t> pick(0, vocab - 1);
  for (auto& id : ids) id = pick(rng);
  expect_thread_invariant([&](sgt::ThreadPool* pool) {
    std::vector<float> out(count * hidden, 7.0f);
    k::embedding_lookup(table.view(), ids.data(), count,
                        TensorView<float>(out.data(), {count, hidden}), pool);
    return out;
  });
}

TEST_CASE("embedding_lookup refuses bad ids and shapes, leaving the output untouched") {
  std::mt19937 rng(13);
  const std::size_t vocab = 10, hidden = 16;
  StoredTensor table(DType::F16, random_values(vocab * hidden, rng), {vocab, hidden});
  std::vector<float> out(4 * hidden, 42.0f);
  const TensorView<float> out_view(out.data(), {4, hidden});
  sgt::ThreadPool pool(2);
  for (bool optimized : {true, false}) {
    auto lookup = [&](const std::vector<std::int64_t>& ids, TensorView<float> o) {
      if (optimized) {
        k::embedding_lookup(table.view(), ids.data(), ids.size(), o, &pool);
      } else {
        k::embedding_lookup_reference(table.view(), ids.data(), ids.size(), o);
      }
    };
    for (std::int64_t bad : {std::int64_t{10}, std::int64_t{-1}, std::int64_t{1} << 40}) {
      CAPTURE(bad);
      try {
        lookup({3, 9, bad, 0}, out_view);
        FAIL("no error for id " << bad);
      } catch (const sgt::Error& e) {
        REQUIRE(e.position().has_value());
        CHECK(*e.position() == 2);
        const std::string what = e.what();
        CHECK(what.find(std::to_string(bad)) != std::string::npos);
        CHECK(what.find("vocabulary of 10") != std::string::npos);
      }
      CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v == 42.0f; }));
    }
    CHECK_THROWS_AS(lookup({1, 2, 3}, out_view), sgt::Error);  // 3 ids, 4 rows
    std::vector<float> wide(4 * (hidden + 1));
    CHECK_THROWS_AS(lookup({1, 2, 3, 4}, TensorView<float>(wide.data(), {4, hidden + 1})),
                    sgt::Error);
  }
  // A table that is not [V, H].
  StoredTensor flat(DType::F32, random_values(vocab, rng), {vocab});
  const std::int64_t one = 1;
  CHECK_THROWS_AS(k::embedding_lookup(flat.view(), &one, 1, TensorView<float>(out.data(), {1, 1})),
                  sgt::Error);
  CHECK_THROWS_AS(k::embedding_lookup(table.view(), nullptr, 4, out_view), sgt::Error);
  // Zero ids is a valid, empty lookup.
  CHECK_NOTHROW(
      k::embedding_lookup(table.view(), nullptr, 0, TensorView<float>(out.data(), {0, hidden})));
}

// ------------------------------------------------------------------------------------------------
// rms_norm
// ------------------------------------------------------------------------------------------------

TEST_CASE("rms_norm matches HF LlamaRMSNorm, GemmaRMSNorm and Qwen3 q_norm") {
  sgt::SafetensorsFile file(kDataDir + "rms_norm.safetensors");
  const auto cases = fixture_cases(file);
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    CAPTURE(name);
    const AnyTensorView xa = file.tensor(name + ".x");
    const AnyTensorView weight = file.tensor(name + ".weight");
    CHECK(sgt::dtype_name(weight.dtype()) == c["weight_dtype"].get<std::string>());
    const std::vector<float> expected = to_f32(file.tensor(name + ".out"));
    const auto style =
        c["style"] == "one_plus_weight" ? k::RmsNormStyle::OnePlusWeight : k::RmsNormStyle::Weight;
    const auto eps = c["eps"].get<float>();
    // The fixture's own shape: [rows, H], or [tokens, heads, head_dim] for q_norm.
    const TensorView<const float> x = xa.as<float>();
    REQUIRE(x.cols() == c["hidden"].get<std::size_t>());
    REQUIRE(x.rows() == c["rows"].get<std::size_t>());

    std::vector<float> out(x.size()), ref(x.size());
    k::rms_norm(x, weight, eps, TensorView<float>(out.data(), x.shape(), x.rank()), style);
    k::rms_norm_reference(x, weight, eps, TensorView<float>(ref.data(), x.shape(), x.rank()),
                          style);
    // In place gives the same bits as out of place.
    std::vector<float> inplace(x.data(), x.data() + x.size());
    const TensorView<float> iv(inplace.data(), x.shape(), x.rank());
    k::rms_norm(iv, weight, eps, iv, style);
    expect_bit_identical(inplace, out, "in place vs out of place");

    // Products only (no cancellation): a relative bound. The variance differs from torch's by the
    // summation order, a few ulp; the output then by 1-4 ulp (observed: 2.7e-7 at most).
    const auto tol = [&](std::size_t i) { return 1e-6f * std::fabs(expected[i]) + 1e-30f; };
    require_matches(out, expected, tol, "rms_norm vs HF");
    require_matches(ref, expected, tol, "rms_norm_reference vs HF");
  }
}

TEST_CASE("rms_norm equals its reference over awkward widths, dtypes, styles and magnitudes") {
  std::mt19937 rng(21);
  for (DType dtype : kAllDTypes) {
    for (std::size_t hidden :
         {std::size_t{1}, std::size_t{2}, std::size_t{15}, std::size_t{16}, std::size_t{17},
          std::size_t{63}, std::size_t{64}, std::size_t{65}, std::size_t{80}, std::size_t{127},
          std::size_t{130}, std::size_t{1000}, std::size_t{2048}, std::size_t{4099}}) {
      for (auto style : {k::RmsNormStyle::Weight, k::RmsNormStyle::OnePlusWeight}) {
        const std::size_t rows = 5;
        std::vector<float> x;
        for (float scale : {1.0f, 1e-4f, 3e4f, 1e-20f, 1e15f}) {
          auto row = random_values(hidden, rng, scale);
          x.insert(x.end(), row.begin(), row.end());
        }
        std::vector<float> wv = random_values(hidden, rng, 0.5f);
        for (auto& w : wv) w += style == k::RmsNormStyle::Weight ? 1.0f : 0.0f;
        StoredTensor weight(dtype, wv, {hidden});
        std::vector<float> out(rows * hidden), ref(rows * hidden);
        const TensorView<const float> xv(x.data(), {rows, hidden});
        k::rms_norm(xv, weight.view(), 1e-6f, TensorView<float>(out.data(), {rows, hidden}), style);
        k::rms_norm_reference(xv, weight.view(), 1e-6f,
                              TensorView<float>(ref.data(), {rows, hidden}), style);
        require_matches(
            out, ref, [&](std::size_t i) { return 2e-6f * std::fabs(ref[i]) + 1e-30f; },
            [&](std::ostream& os) {
              os << sgt::dtype_name(dtype) << " hidden " << hidden << " style "
                 << static_cast<int>(style);
            });
      }
    }
  }
}

TEST_CASE("rms_norm: known values, zero rows, eps and the style") {
  // x = [3, 4]: mean(x^2) = 12.5; with eps 0, y = x / sqrt(12.5).
  const float x[2] = {3.0f, 4.0f};
  const float w[2] = {2.0f, -1.0f};
  const AnyTensorView wv(TensorView<const float>(w, {2}));
  float out[2];
  k::rms_norm(TensorView<const float>(x, {1, 2}), wv, 0.0f, TensorView<float>(out, {1, 2}));
  const float inv = 1.0f / std::sqrt(12.5f);
  CHECK(out[0] == 2.0f * (3.0f * inv));
  CHECK(out[1] == -1.0f * (4.0f * inv));
  k::rms_norm(TensorView<const float>(x, {1, 2}), wv, 0.0f, TensorView<float>(out, {1, 2}),
              k::RmsNormStyle::OnePlusWeight);
  CHECK(out[0] == 3.0f * (3.0f * inv));
  CHECK(out[1] == 0.0f);
  // eps enters under the square root: x = [1, 1], eps = 3 -> y = 1 / 2.
  const float ones[2] = {1.0f, 1.0f};
  k::rms_norm(TensorView<const float>(ones, {2}), wv, 3.0f, TensorView<float>(out, {2}));
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -0.5f);
  // A zero row stays zero (eps > 0), no NaN.
  std::vector<float> zeros(100, 0.0f), zout(100, 1.0f), wones(50, 1.0f);
  k::rms_norm(TensorView<const float>(zeros.data(), {2, 50}),
              AnyTensorView(TensorView<const float>(wones.data(), {50})), 1e-6f,
              TensorView<float>(zout.data(), {2, 50}));
  CHECK(std::all_of(zout.begin(), zout.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("rms_norm is bit-identical for 1, 2 and 3 threads") {
  std::mt19937 rng(22);
  for (std::size_t hidden : {std::size_t{2048}, std::size_t{130}}) {
    const std::size_t rows = hidden == 2048 ? 150 : 1000;  // many chunks either way
    const std::vector<float> x = random_values(rows * hidden, rng, 3.0f);
    StoredTensor weight(DType::BF16, random_values(hidden, rng), {hidden});
    const TensorView<const float> xv(x.data(), {rows, hidden});
    expect_thread_invariant(
        [&](sgt::ThreadPool* pool) {
          std::vector<float> out(x.size());
          k::rms_norm(xv, weight.view(), 1e-5f, TensorView<float>(out.data(), {rows, hidden}),
                      k::RmsNormStyle::Weight, pool);
          return out;
        },
        {1, 2, 3}, "hidden " + std::to_string(hidden));
  }
}

TEST_CASE("rms_norm refuses mismatched shapes, partial overlap and a bad eps") {
  std::vector<float> x(4 * 16, 1.0f), out(4 * 16), w(16, 1.0f), w15(15, 1.0f);
  const TensorView<const float> xv(x.data(), {4, 16});
  const AnyTensorView wv(TensorView<const float>(w.data(), {16}));
  const TensorView<float> ov(out.data(), {4, 16});
  for (bool optimized : {true, false}) {
    auto norm = [&](TensorView<const float> a, const AnyTensorView& wt, float eps,
                    TensorView<float> o) {
      if (optimized) {
        k::rms_norm(a, wt, eps, o);
      } else {
        k::rms_norm_reference(a, wt, eps, o);
      }
    };
    CHECK_THROWS_AS(norm(xv, AnyTensorView(TensorView<const float>(w15.data(), {15})), 1e-6f, ov),
                    sgt::Error);
    CHECK_THROWS_AS(norm(xv, AnyTensorView(TensorView<const float>(w.data(), {1, 16})), 1e-6f, ov),
                    sgt::Error);
    CHECK_THROWS_AS(norm(xv, wv, 1e-6f, TensorView<float>(out.data(), {2, 16})), sgt::Error);
    CHECK_THROWS_AS(norm(xv, wv, 1e-6f, TensorView<float>(out.data(), {4, 8, 2})), sgt::Error);
    CHECK_THROWS_AS(norm(xv, wv, -1.0f, ov), sgt::Error);
    CHECK_THROWS_AS(norm(xv, wv, std::numeric_limits<float>::quiet_NaN(), ov), sgt::Error);
    // out shifted by one row into x: a partial overlap.
    std::vector<float> buf(5 * 16, 1.0f);
    CHECK_THROWS_AS(norm(TensorView<const float>(buf.data(), {4, 16}), wv, 1e-6f,
                         TensorView<float>(buf.data() + 16, {4, 16})),
                    sgt::Error);
    // Same element count and rows, different leading split: fine ([4, 16] as [2, 2, 16]).
    CHECK_NOTHROW(norm(xv, wv, 1e-6f, TensorView<float>(out.data(), {2, 2, 16})));
  }
}

// ------------------------------------------------------------------------------------------------
// RopeTable and apply_rope
// ------------------------------------------------------------------------------------------------

namespace {

k::RopeParameters rope_parameters_from(const nlohmann::json& c) {
  k::RopeParameters p;
  p.head_dim = c["head_dim"].get<std::size_t>();
  p.theta = c["theta"].get<double>();
  const std::string type = c["type"];
  p.type = type == "linear"   ? k::RopeType::Linear
           : type == "llama3" ? k::RopeType::Llama3
                              : k::RopeType::Default;
  REQUIRE((type == "linear" || type == "llama3" || type == "default"));
  p.partial_rotary_factor = c.value("partial_rotary_factor", 1.0);
  p.factor = c.value("factor", 1.0);
  p.low_freq_factor = c.value("low_freq_factor", 1.0);
  p.high_freq_factor = c.value("high_freq_factor", 4.0);
  p.original_max_position_embeddings =
      c.value("original_max_position_embeddings", std::size_t{8192});
  return p;
}

}  // namespace

TEST_CASE("RopeTable reproduces HF inv_freq, cos and sin: default, linear, llama3, partial") {
  sgt::SafetensorsFile file(kDataDir + "rope_tables.safetensors");
  const auto cases = fixture_cases(file);
  REQUIRE(cases.size() >= 8);
  std::size_t off_by_one_ulp = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"];
    CAPTURE(name);
    const k::RopeParameters p = rope_parameters_from(c);
    const std::vector<float> inv_hf = to_f32(file.tensor(name + ".inv_freq"));
    const std::vector<float> positions = to_f32(file.tensor(name + ".positions"));
    const std::vector<float> cos_hf = to_f32(file.tensor(name + ".cos"));
    const std::vector<float> sin_hf = to_f32(file.tensor(name + ".sin"));
    const auto max_position = static_cast<std::size_t>(positions.back());
    const k::RopeTable table(p, max_position + 1);
    const std::size_t rd = table.rotary_dim();
    REQUIRE(rd == 2 * inv_hf.size());
    REQUIRE(cos_hf.size() == positions.size() * rd);
    CHECK(table.num_positions() == max_position + 1);

    // inv_freq: the llama3 band logic and the linear factor must land on HF's f32 values; only
    // torch's 1-ulp pow may leave a one-ulp difference.
    for (std::size_t i = 0; i < inv_hf.size(); ++i) {
      const auto d = ulp_distance(table.inv_freq()[i], inv_hf[i]);
      REQUIRE_MESSAGE(d <= 1,
                      "inv_freq[" << i << "] " << table.inv_freq()[i] << " vs HF " << inv_hf[i]);
      off_by_one_ulp += d != 0;
    }
    // cos/sin: both sides evaluate the same f32 angle to within 1 ulp, unless inv_freq differs by
    // its one ulp, which moves the angle by position * |d inv_freq| (plus the angle's rounding).
    // Element e is (row e / rd of the fixture's positions, dim e % rd).
    std::vector<float> cos_ours, sin_ours;
    for (float position : positions) {
      const auto pos = static_cast<std::size_t>(position);
      cos_ours.insert(cos_ours.end(), table.cos(pos), table.cos(pos) + rd);
      sin_ours.insert(sin_ours.end(), table.sin(pos), table.sin(pos) + rd);
    }
    const auto tol = [&](std::size_t e) {
      const float pos = positions[e / rd];
      const std::size_t i = e % rd % (rd / 2);
      const float dinv = std::fabs(table.inv_freq()[i] - inv_hf[i]);
      const float angle = pos * inv_hf[i];
      return 2.5e-7f + (dinv > 0 ? pos * dinv + 1.2e-7f * angle : 0.0f);
    };
    require_matches(cos_ours, cos_hf, tol, "cos");
    require_matches(sin_ours, sin_hf, tol, "sin");
  }
  // With this machine's torch, SLEEF's pow is one ulp off for (theta 1e6, dim 128, i = 37) and
  // nowhere else in the fixture. More would mean our f32 steps drifted (an FMA contraction in the
  // llama3 smoothing once moved two of them).
  CHECK(off_by_one_ulp <= 1);
}

TEST_CASE("apply_rope matches HF apply_rotary_pos_emb on q and k [B, S, heads, head_dim]") {
  sgt::SafetensorsFile tables(kDataDir + "rope_tables.safetensors");
  sgt::SafetensorsFile file(kDataDir + "rope_apply.safetensors");
  const auto configs = fixture_cases(tables);
  const auto cases = fixture_cases(file);
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const std::string config = c["config"];
    CAPTURE(name);
    CAPTURE(config);
    const auto cfg = std::find_if(configs.begin(), configs.end(),
                                  [&](const nlohmann::json& j) { return j["name"] == config; });
    REQUIRE(cfg != configs.end());
    const k::RopeParameters p = rope_parameters_from(*cfg);
    const std::size_t batch = c["batch"], seq = c["seq"];
    const k::RopeTable table(p, seq);  // exactly S positions: the boundary is inclusive
    const std::size_t rd = table.rotary_dim(), half = rd / 2, hd = p.head_dim;
    for (const char* which : {"q", "k"}) {
      CAPTURE(which);
      const std::size_t heads = c[std::string(which) + "_heads"];
      const std::vector<float> input = to_f32(file.tensor(name + "." + which));
      const std::vector<float> expected = to_f32(file.tensor(name + "." + which + "_out"));
      REQUIRE(input.size() == batch * seq * heads * hd);
      std::vector<float> out = input, ref = input;
      k::apply_rope(TensorView<float>(out.data(), {batch, seq, heads * hd}), heads, hd, table);
      k::apply_rope_reference(TensorView<float>(ref.data(), {batch, seq, heads * hd}), heads, hd,
                              table);
      expect_bit_identical(out, ref, "apply_rope vs apply_rope_reference");
      // One ulp of cos/sin and the final rounding, relative to the pair's magnitude; dims past
      // the rotary ones (partial rotary) must agree exactly.
      require_matches(out, expected, [&](std::size_t e) {
        const std::size_t d = e % hd;
        const float* x = &input[e - d];
        const float pair = std::fabs(x[d]) + std::fabs(x[d < half ? d + half : d - half]);
        return d >= rd ? 0.0f : 4e-7f * pair + 1e-30f;
      });
      // Partial rotary: those dims are passed through untouched, by us and by HF.
      for (std::size_t e = 0; e < out.size(); ++e) {
        if (e % hd < rd) continue;
        REQUIRE(out[e] == input[e]);
        REQUIRE(expected[e] == input[e]);
      }
    }
  }
}

TEST_CASE("apply_rope equals its reference over head sizes, sequence lengths and rope types") {
  std::mt19937 rng(31);
  const k::RopeType types[] = {k::RopeType::Default, k::RopeType::Linear, k::RopeType::Llama3};
  std::size_t checked = 0;
  for (std::size_t head_dim : {2, 16, 30, 32, 64, 80, 96, 128, 130, 256}) {
    for (double partial : {1.0, 0.5, 0.25}) {
      k::RopeParameters p;
      p.head_dim = head_dim;
      p.partial_rotary_factor = partial;
      p.type = types[checked % 3];
      p.theta = checked % 2 ? 500000.0 : 10000.0;
      p.factor = 8.0;
      p.original_max_position_embeddings = 64;  // so the llama3 band shows within 130 positions
      const auto rd = static_cast<std::size_t>(head_dim * partial);
      if (rd == 0 || rd % 2) {
        CHECK_THROWS_AS(k::RopeTable(p, 4), sgt::Error);
        continue;
      }
      const k::RopeTable table(p, 130);
      for (std::size_t seq : {1, 15, 16, 17, 63, 64, 65, 130}) {
        for (std::size_t heads : {1, 3}) {
          const std::size_t batch = seq < 64 ? 2 : 1;
          CAPTURE(head_dim);
          CAPTURE(partial);
          CAPTURE(seq);
          CAPTURE(heads);
          const std::vector<float> input = random_values(batch * seq * heads * head_dim, rng, 2.0f);
          std::vector<float> out = input, ref = input;
          const TensorView<float> ov(out.data(), {batch, seq, heads * head_dim});
          k::apply_rope(ov, heads, head_dim, table);
          k::apply_rope_reference(TensorView<float>(ref.data(), {batch, seq, heads * head_dim}),
                                  heads, head_dim, table);
          // Same operations in the same order (an explicit fma each): equal wherever the build's
          // SIMD fma is a true fused multiply-add, within one rounding where xsimd emulates it.
          // Dims past the rotary ones pass through untouched.
          require_matches(out, ref, [&](std::size_t e) {
            const std::size_t d = e % head_dim;
            return d >= rd ? 0.0f
                           : 1.2e-7f * (std::fabs(input[e]) +
                                        std::fabs(input[e - d + (d + rd / 2) % rd]));
          });
          for (std::size_t e = 0; e < out.size(); ++e)
            if (e % head_dim >= rd) REQUIRE(out[e] == input[e]);
          // Position 0 is the identity.
          for (std::size_t d = 0; d < heads * head_dim; ++d) REQUIRE(out[d] == input[d]);
          ++checked;
        }
      }
    }
  }
  CHECK(checked > 300);
}

TEST_CASE("apply_rope is bit-identical for 1, 2 and 3 threads") {
  std::mt19937 rng(32);
  k::RopeParameters p;
  p.head_dim = 64;
  p.theta = 500000.0;
  p.type = k::RopeType::Llama3;
  p.factor = 32.0;
  const k::RopeTable table(p, 200);
  const std::size_t batch = 2, seq = 130, heads = 32;
  const std::vector<float> input = random_values(batch * seq * heads * 64, rng);
  expect_thread_invariant([&](sgt::ThreadPool* pool) {
    std::vector<float> out = input;
    k::apply_rope(TensorView<float>(out.data(), {batch, seq, heads * 64}), heads, 64, table, pool);
    return out;
  });
}

TEST_CASE("apply_rope preserves each rotated pair's length; position s uses table row s") {
  std::mt19937 rng(33);
  k::RopeParameters p;
  p.head_dim = 32;
  const k::RopeTable table(p, 20);
  const std::size_t seq = 20;
  const std::vector<float> input = random_values(seq * 32, rng);
  std::vector<float> out = input;
  k::apply_rope(TensorView<float>(out.data(), {1, seq, 32}), 1, 32, table);
  for (std::size_t s = 0; s < seq; ++s) {
    for (std::size_t i = 0; i < 16; ++i) {
      const float* x = &input[s * 32];
      const float* y = &out[s * 32];
      const double before = std::hypot(double(x[i]), double(x[i + 16]));
      const double after = std::hypot(double(y[i]), double(y[i + 16]));
      REQUIRE(after == doctest::Approx(before).epsilon(1e-6));
      // The rotation by the table's angle, in double.
      const double c = table.cos(s)[i], sn = table.sin(s)[i];
      REQUIRE(y[i] == doctest::Approx(x[i] * c - x[i + 16] * sn).epsilon(1e-5).scale(before));
    }
  }
}

TEST_CASE("RopeTable and apply_rope refuse bad parameters and shapes") {
  k::RopeParameters p;
  p.head_dim = 0;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.head_dim = 64;
  p.partial_rotary_factor = 0.0;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.partial_rotary_factor = 1.5;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.partial_rotary_factor = 0.3;  // int(64 * 0.3) = 19: odd
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.partial_rotary_factor = 1.0;
  p.theta = 0.0;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.theta = 10000.0;
  p.type = k::RopeType::Linear;
  p.factor = 0.0;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.type = k::RopeType::Llama3;
  p.factor = 8.0;
  p.high_freq_factor = 1.0;  // == low_freq_factor: the smooth factor would divide by zero
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.high_freq_factor = 4.0;
  p.original_max_position_embeddings = 0;
  CHECK_THROWS_AS(k::RopeTable(p, 8), sgt::Error);
  p.original_max_position_embeddings = 8192;
  CHECK_THROWS_AS(k::RopeTable(p, std::numeric_limits<std::size_t>::max() / 4), sgt::Error);

  const k::RopeTable table(p, 16);
  CHECK(table.rotary_dim() == 64);
  CHECK(table.num_positions() == 16);
  CHECK(table.parameters().type == k::RopeType::Llama3);
  std::vector<float> x(2 * 17 * 2 * 64, 1.0f);
  for (bool optimized : {true, false}) {
    auto apply = [&](TensorView<float> v, std::size_t heads, std::size_t hd) {
      if (optimized) {
        k::apply_rope(v, heads, hd, table);
      } else {
        k::apply_rope_reference(v, heads, hd, table);
      }
    };
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {2, 17, 128}), 2, 64), sgt::Error);  // S > 16
    CHECK_NOTHROW(apply(TensorView<float>(x.data(), {2, 16, 128}), 2, 64));
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {2, 16, 130}), 2, 64), sgt::Error);
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {2, 16, 128}), 4, 32), sgt::Error);  // hd
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {32, 128}), 2, 64), sgt::Error);     // rank
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {2, 16, 2, 64}), 2, 64), sgt::Error);
    CHECK_THROWS_AS(apply(TensorView<float>(x.data(), {2, 16, 0}), 0, 64), sgt::Error);
  }
}

}  // namespace test_kernels_norm_rope
