// sgt::audit_transform and kernels::NearestRows against tests/data/audit/expected.json, which
// tools/check_audit.py computes with the reference transform (PyTorch) and a float64 numpy search
// for the demo model, examples/prompt.json and the stored draws in noise_draws.safetensors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_audit {

namespace fs = std::filesystem;

namespace {

const fs::path kExamples = fs::path(SGT_TEST_DATA_DIR) / ".." / ".." / "examples";
const fs::path kAuditData = fs::path(SGT_TEST_DATA_DIR) / "audit";

nlohmann::json read_expected() { return sgt_test::read_fixture_json("audit/expected.json"); }

struct Fixture {
  sgt::Transform model{(kExamples / "models" / "demo").string()};
  sgt::TransformInput input = sgt::load_transform_input((kExamples / "prompt.json").string());
  sgt::SafetensorsFile draws_file{(kAuditData / "noise_draws.safetensors").string()};
  sgt::TensorView<const float> draws = draws_file.tensor("noise").as<float>();
};

void check_against_expected(const sgt::AuditReport& r, const nlohmann::json& e) {
  REQUIRE(r.draws == e["draws"].get<std::size_t>());
  REQUIRE(r.tokens.size() == e["tokens"].size());
  for (std::size_t t = 0; t < r.tokens.size(); ++t) {
    CAPTURE(t);
    const sgt::TokenAudit& a = r.tokens[t];
    const nlohmann::json& x = e["tokens"][t];
    CHECK(a.id == x["id"].get<std::int64_t>());
    REQUIRE(a.is_protected == x["protected"].get<bool>());
    if (!a.is_protected) {
      CHECK(a.nearest_l2.empty());
      continue;
    }
    CHECK(a.nearest_l2 == x["nearest_l2"].get<std::vector<std::int32_t>>());
    CHECK(a.nearest_cosine == x["nearest_cosine"].get<std::vector<std::int32_t>>());
    CHECK(a.rank_l2 == x["rank_l2"].get<std::vector<std::uint64_t>>());
    // Exact: fractions of 4 draws and means of integer ranks, computed the same way.
    CHECK(a.recovery_l2 == x["recovery_l2"].get<double>());
    CHECK(a.recovery_cosine == x["recovery_cosine"].get<double>());
    CHECK(a.mean_rank_l2 == x["mean_rank_l2"].get<double>());
    CHECK(a.mean_cosine == doctest::Approx(x["mean_cosine"].get<double>()).epsilon(1e-5));
  }
  const nlohmann::json& o = e["overall"];
  CHECK(r.protected_tokens == o["protected_tokens"].get<std::size_t>());
  CHECK(r.recovery_l2 == doctest::Approx(o["recovery_l2"].get<double>()).epsilon(1e-12));
  CHECK(r.recovery_cosine == doctest::Approx(o["recovery_cosine"].get<double>()).epsilon(1e-12));
  CHECK(r.mean_rank_l2 == doctest::Approx(o["mean_rank_l2"].get<double>()).epsilon(1e-12));
  CHECK(r.mean_cosine == doctest::Approx(o["mean_cosine"].get<double>()).epsilon(1e-5));
  CHECK(r.sigma_min == doctest::Approx(o["sigma"]["min"].get<double>()).epsilon(1e-5));
  CHECK(r.sigma_mean == doctest::Approx(o["sigma"]["mean"].get<double>()).epsilon(1e-5));
  CHECK(r.sigma_max == doctest::Approx(o["sigma"]["max"].get<double>()).epsilon(1e-5));
}

}  // namespace

TEST_CASE("audit of the demo prompt with stored draws matches the numpy re-implementation") {
  Fixture f;
  const nlohmann::json expected = read_expected();
  // The fixture is meant to discriminate: some tokens recovered in some draws, not in others.
  REQUIRE(expected["overall"]["recovery_l2"].get<double>() > 0.0);
  REQUIRE(expected["overall"]["recovery_l2"].get<double>() < 1.0);

  sgt::AuditOptions options;
  options.precision = sgt::Precision::F32;  // expected.json comes from the f32 reference
  options.injected_draws = f.draws;
  SUBCASE("serial, default score block") {
    check_against_expected(sgt::audit_transform(f.model, f.input, options), expected);
  }
  SUBCASE("three threads, score blocks of one and of seven rows") {
    sgt::ThreadPool pool(3);
    options.pool = &pool;
    const std::size_t V = f.model.config().vocab_size;
    for (std::size_t rows : {std::size_t{1}, std::size_t{7}}) {
      CAPTURE(rows);
      options.score_floats = rows * V;
      check_against_expected(sgt::audit_transform(f.model, f.input, options), expected);
    }
  }
}

TEST_CASE("audit reconstruction, batch layout and secure draws") {
  Fixture f;
  const nlohmann::json expected = read_expected();
  sgt::AuditOptions options;
  options.precision = sgt::Precision::F32;  // expected.json comes from the f32 reference
  options.injected_draws = f.draws;
  const sgt::AuditReport r = sgt::audit_transform(f.model, f.input, options);
  for (std::size_t d = 0; d < r.draws; ++d) {
    const std::vector<std::int32_t> ids = r.reconstructed_ids(d, 0, f.input);
    REQUIRE(ids.size() == f.input.input_ids.size());
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const nlohmann::json& x = expected["tokens"][t];
      CHECK(ids[t] == (x["protected"].get<bool>() ? x["nearest_l2"][d].get<std::int32_t>()
                                                  : x["id"].get<std::int32_t>()));
    }
  }

  // The same draws as [N, B = 1, S, H] give the same report.
  const sgt::TensorView<const float> rank4(f.draws.data(),
                                           {f.draws.dim(0), 1, f.draws.dim(1), f.draws.dim(2)});
  options.injected_draws = rank4;
  check_against_expected(sgt::audit_transform(f.model, f.input, options), expected);

  // Secure draws: counts and ranges only (the noise is fresh).
  sgt::AuditOptions secure;
  secure.draws = 2;
  const sgt::AuditReport s = sgt::audit_transform(f.model, f.input, secure);
  CHECK(s.draws == 2);
  CHECK(s.protected_tokens == r.protected_tokens);
  CHECK(s.recovery_l2 >= 0.0);
  CHECK(s.recovery_l2 <= 1.0);
  for (const auto& a : s.tokens) CHECK(a.nearest_l2.size() == (a.is_protected ? 2u : 0u));
  CHECK(s.sigma_mean == doctest::Approx(r.sigma_mean).epsilon(1e-6));  // sigma ignores the noise
}

TEST_CASE("audit rejects bad draws") {
  Fixture f;
  sgt::AuditOptions options;
  options.precision = sgt::Precision::F32;  // expected.json comes from the f32 reference
  options.draws = 0;
  CHECK_THROWS_WITH_AS(sgt::audit_transform(f.model, f.input, options),
                       doctest::Contains("at least one draw"), sgt::Error);
  // One position short.
  const sgt::TensorView<const float> short_draws(
      f.draws.data(), {f.draws.dim(0), f.draws.dim(1) - 1, f.draws.dim(2)});
  options.injected_draws = short_draws;
  CHECK_THROWS_WITH_AS(sgt::audit_transform(f.model, f.input, options),
                       doctest::Contains("noise draws have shape [4, 30, 256]"), sgt::Error);
  const sgt::TensorView<const float> flat(f.draws.data(), {f.draws.size()});
  options.injected_draws = flat;
  CHECK_THROWS_AS(sgt::audit_transform(f.model, f.input, options), sgt::Error);
}

TEST_CASE("NearestRows: lowest id wins ties, ranks count ties below the target") {
  // Rows 1 and 3 are the same vector; row 0 is zero (cosine 0 by definition).
  const std::vector<float> table = {0, 0, 0,  //
                                    1, 0, 0,  //
                                    0, 2, 0,  //
                                    1, 0, 0};
  const sgt::AnyTensorView t(sgt::TensorView<const float>(table.data(), {4, 3}));
  const sgt::kernels::NearestRows search(t);
  const std::vector<float> x = {1, 0, 0, 0.9f, 0.1f, 0};
  const std::vector<std::int64_t> targets = {3, 1};
  std::vector<sgt::kernels::NearestRowMatch> m(2);
  sgt::WipedVector<float> scores;
  search.search(sgt::TensorView<const float>(x.data(), {2, 3}), targets.data(), m.data(), scores);
  CHECK(m[0].l2 == 1);
  CHECK(m[0].cosine == 1);
  CHECK(m[0].rank_l2 == 1);  // row 1 ties with the target 3 and has the lower id
  CHECK(m[1].l2 == 1);
  CHECK(m[1].rank_l2 == 0);
  // A zero query: every cosine is 0, so id 0 wins.
  const std::vector<float> zero = {0, 0, 0};
  search.search(sgt::TensorView<const float>(zero.data(), {1, 3}), targets.data(), m.data(),
                scores);
  CHECK(m[0].cosine == 0);
  CHECK(m[0].l2 == 0);
  CHECK_THROWS_AS(search.search(sgt::TensorView<const float>(x.data(), {1, 3}),
                                std::vector<std::int64_t>{4}.data(), m.data(), scores),
                  sgt::Error);
}

TEST_CASE("NearestRows on the demo's BF16 table equals the search on its f32 widening") {
  Fixture f;
  const sgt::AnyTensorView table = f.model.embedding_table();
  REQUIRE(table.dtype() == sgt::DType::BF16);
  const std::size_t V = table.dim(0), H = table.dim(1);
  const auto bf = table.as<sgt::bfloat16>();
  std::vector<float> widened(V * H);
  for (std::size_t i = 0; i < V * H; ++i) widened[i] = sgt::to_float(bf.data()[i]);
  const sgt::kernels::NearestRows a(table);
  const sgt::kernels::NearestRows b(sgt::TensorView<const float>(widened.data(), {V, H}));
  const std::size_t R = std::min<std::size_t>(16, a.block_rows());
  std::vector<std::int64_t> targets(R);
  for (std::size_t r = 0; r < R; ++r) targets[r] = static_cast<std::int64_t>((r * 37) % V);
  const float* queries = f.draws.data();  // any vectors of width H
  std::vector<sgt::kernels::NearestRowMatch> ma(R), mb(R);
  sgt::WipedVector<float> scores;
  a.search(sgt::TensorView<const float>(queries, {R, H}), targets.data(), ma.data(), scores);
  b.search(sgt::TensorView<const float>(queries, {R, H}), targets.data(), mb.data(), scores);
  for (std::size_t r = 0; r < R; ++r) {
    CAPTURE(r);
    CHECK(ma[r].l2 == mb[r].l2);
    CHECK(ma[r].cosine == mb[r].cosine);
    CHECK(ma[r].rank_l2 == mb[r].rank_l2);
  }
}

TEST_CASE("PNG writer: chunks, stored deflate blocks, bad sizes") {
  // 200 x 120 RGB: 120 scanlines of 601 bytes = 72120 bytes, two stored blocks (65535 + 6585).
  const std::size_t w = 200, h = 120;
  std::vector<std::uint8_t> rgb(w * h * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(i * 7);
  const std::string png = sgt::encode_png_rgb(w, h, rgb);
  auto u32 = [&](std::size_t at) {
    return (std::uint32_t(std::uint8_t(png[at])) << 24) |
           (std::uint32_t(std::uint8_t(png[at + 1])) << 16) |
           (std::uint32_t(std::uint8_t(png[at + 2])) << 8) |
           std::uint32_t(std::uint8_t(png[at + 3]));
  };
  REQUIRE(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  // Walk the chunks: each CRC covers type + data.
  std::vector<std::string> types;
  std::string idat;
  for (std::size_t pos = 8; pos < png.size();) {
    const std::uint32_t n = u32(pos);
    REQUIRE(pos + 12 + n <= png.size());
    types.push_back(png.substr(pos + 4, 4));
    CHECK(sgt::crc32(png.data() + pos + 4, n + 4) == u32(pos + 8 + n));
    if (types.back() == "IDAT") idat = png.substr(pos + 8, n);
    if (types.back() == "IHDR") {
      CHECK(u32(pos + 8) == w);
      CHECK(u32(pos + 12) == h);
    }
    pos += 12 + n;
  }
  CHECK(types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
  // zlib header, then stored blocks whose payloads are the filtered scanlines.
  REQUIRE(idat.size() > 2 + 4);
  std::string raw;
  std::size_t pos = 2, blocks = 0;
  for (bool last = false; !last; ++blocks) {
    REQUIRE(pos + 5 <= idat.size());
    last = idat[pos] & 1;
    const std::size_t len = std::uint8_t(idat[pos + 1]) | (std::uint8_t(idat[pos + 2]) << 8);
    const std::size_t nlen = std::uint8_t(idat[pos + 3]) | (std::uint8_t(idat[pos + 4]) << 8);
    CHECK((len ^ nlen) == 0xffffu);
    raw += idat.substr(pos + 5, len);
    pos += 5 + len;
  }
  CHECK(blocks == 2);
  CHECK(pos + 4 == idat.size());  // the Adler-32 ends the stream
  REQUIRE(raw.size() == h * (w * 3 + 1));
  for (std::size_t y = 0; y < h; ++y) {
    CHECK(raw[y * (w * 3 + 1)] == 0);
    CHECK(std::memcmp(raw.data() + y * (w * 3 + 1) + 1, rgb.data() + y * w * 3, w * 3) == 0);
  }
  CHECK_THROWS_AS(sgt::encode_png_rgb(0, 1, {}), sgt::Error);
  CHECK_THROWS_AS(sgt::encode_png_rgb(2, 2, std::vector<std::uint8_t>(11)), sgt::Error);
}

}  // namespace test_audit
