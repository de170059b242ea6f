// Kernel swiglu_mlp: against Hugging Face's LlamaMLP (tools/fixtures/kernel_matmul_fixtures.py)
// with and without mlp_bias and F32 / BF16 / mixed weights, optimized against reference on random
// data over awkward shapes, the fused gate/up equal bit for bit to the unfused composition,
// bit-identical results for 1, 2 and 3 threads, out == x in place, and the errors bad input gets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/core/thread_pool.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/kernels/matmul.hpp>
#include <sgt/kernels/block_features.hpp>
#include <sgt/kernels/swiglu.hpp>

#include "support/kernel_harness.hpp"
#include "support/stored_tensor.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_kernels_swiglu {

namespace {

using sgt_test::dot_product_tolerance;
using sgt_test::error_of;
using sgt_test::expect_bit_identical;
using sgt_test::expect_matches;
using sgt_test::expect_thread_invariant;
using sgt_test::max_abs;
using sgt_test::require_bit_identical;
using sgt_test::require_matches;
using sgt_test::StoredTensor;
using sgt_test::to_f32;
using sgt_test::uniform_values;

using sgt::AnyTensorView;
using sgt::DType;
using sgt::TensorView;
namespace k = sgt::kernels;

const std::string kDataDir = std::string(SGT_TEST_DATA_DIR) + "/kernels/matmul/";
constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};

// Error budget of the MLP, propagated through its three stages. Each dot product of length K gets
// dot_product_tolerance(kPerDot, ...) (test_kernels_matmul.cpp uses 1e-5, ~60x over what f32
// accumulation does); g and u carry that into h = silu(g) * u (|silu'| <= 1.1), and down sums I
// such errors (random-walk: sqrt(I)) on top of its own. Built from maxima, the propagation
// overestimates by another ~50x, hence the smaller per-dot budget here: the observed error stays
// below 1% of the budget, while one dropped or doubled term anywhere is far above it. g, u and h
// come from the reference, so the budget follows the data.
// With h_rounded (Precision::Bf16, BF16 down_proj) h is rounded to bf16 before down: where the
// optimized h and the reference's double-precision h fall on two sides of a rounding boundary,
// one term moves by a bf16 ulp (2^-8 relative); two such flips per output are allowed.
double mlp_tolerance(const std::vector<float>& x, const k::SwiGluWeights& w, std::size_t tokens,
                     bool h_rounded = false) {
  const std::size_t hidden = w.gate.dim(1), inter = w.gate.dim(0);
  std::vector<float> g(tokens * inter), u(tokens * inter);
  const TensorView<const float> xv(x.data(), {tokens, hidden});
  k::matmul_reference(xv, w.gate, w.gate_bias, TensorView<float>(g.data(), {tokens, inter}));
  k::matmul_reference(xv, w.up, w.up_bias, TensorView<float>(u.data(), {tokens, inter}));
  double max_silu_g = 0.0, max_h = 0.0;
  for (std::size_t e = 0; e < g.size(); ++e) {
    const double s = g[e] / (1.0 + std::exp(-static_cast<double>(g[e])));
    max_silu_g = std::max(max_silu_g, std::fabs(s));
    max_h = std::max(max_h, std::fabs(s * u[e]));
  }
  const double si = std::sqrt(static_cast<double>(inter) + 1.0);
  constexpr double kPerDot = 2e-6;
  const double e_g = dot_product_tolerance(kPerDot, hidden, max_abs(x), max_abs(to_f32(w.gate)),
                                           max_abs(to_f32(w.gate_bias)));
  const double e_u = dot_product_tolerance(kPerDot, hidden, max_abs(x), max_abs(to_f32(w.up)),
                                           max_abs(to_f32(w.up_bias)));
  const double e_h = 1.1 * e_g * max_abs(u) + e_u * max_silu_g + 1e-6 * max_h;
  const double max_down = max_abs(to_f32(w.down));
  const double flips = h_rounded ? 2.0 * std::ldexp(max_h, -8) * max_down : 0.0;
  return si * e_h * max_down + flips +
         dot_product_tolerance(kPerDot, inter, max_h, max_down, max_abs(to_f32(w.down_bias)));
}

// A random MLP; biases only when asked, dtypes per projection.
struct RandomMlp {
  StoredTensor gate, up, down, gate_bias, up_bias, down_bias;
  k::SwiGluWeights weights() const {
    k::SwiGluWeights w{gate.view(), up.view(), down.view(), {}, {}, {}};
    if (!gate_bias.half_bits.empty() || !gate_bias.f32.empty()) {
      w.gate_bias = gate_bias.view();
      w.up_bias = up_bias.view();
      w.down_bias = down_bias.view();
    }
    return w;
  }
};

RandomMlp random_mlp(std::size_t hidden, std::size_t inter, DType dg, DType du, DType dd, bool bias,
                     std::mt19937& rng) {
  RandomMlp m;
  const float s_in = 1.0f / std::sqrt(static_cast<float>(hidden));
  const float s_out = 1.0f / std::sqrt(static_cast<float>(inter));
  m.gate = StoredTensor(dg, uniform_values(inter * hidden, rng, 2.0f * s_in), {inter, hidden});
  m.up = StoredTensor(du, uniform_values(inter * hidden, rng, 2.0f * s_in), {inter, hidden});
  m.down = StoredTensor(dd, uniform_values(hidden * inter, rng, 2.0f * s_out), {hidden, inter});
  if (bias) {
    m.gate_bias = StoredTensor(dg, uniform_values(inter, rng, 0.5f), {inter});
    m.up_bias = StoredTensor(du, uniform_values(inter, rng, 0.5f), {inter});
    m.down_bias = StoredTensor(dd, uniform_values(hidden, rng, 0.5f), {hidden});
  }
  return m;
}

}  // namespace

TEST_CASE("swiglu_mlp matches Hugging Face LlamaMLP") {
  const sgt::SafetensorsFile file(kDataDir + "mlp.safetensors");
  const auto it = file.metadata().find("cases");
  REQUIRE(it != file.metadata().end());
  const nlohmann::json cases = nlohmann::json::parse(it->second);
  REQUIRE(cases.size() == 3);
  sgt::ThreadPool pool(3);
  int biased = 0, mixed = 0, checked = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"].get<std::string>();
    const bool bias = c["mlp_bias"].get<bool>();
    k::SwiGluWeights w{file.tensor(name + "/gate_proj.weight"),
                       file.tensor(name + "/up_proj.weight"),
                       file.tensor(name + "/down_proj.weight"),
                       {},
                       {},
                       {}};
    if (bias) {
      w.gate_bias = file.tensor(name + "/gate_proj.bias");
      w.up_bias = file.tensor(name + "/up_proj.bias");
      w.down_bias = file.tensor(name + "/down_proj.bias");
    }
    biased += bias;
    mixed += w.gate.dtype() != w.up.dtype();
    const std::size_t hidden = c["hidden"].get<std::size_t>(),
                      inter = c["intermediate"].get<std::size_t>();
    REQUIRE(w.gate.dim(0) == inter);
    REQUIRE(w.down.dim(0) == hidden);
    for (std::size_t t : c["tokens"].get<std::vector<std::size_t>>()) {
      const TensorView<const float> x = file.tensor(name + "/x/T" + std::to_string(t)).as<float>();
      const TensorView<const float> expected =
          file.tensor(name + "/y/T" + std::to_string(t)).as<float>();
      REQUIRE(x.dim(0) == t);
      std::vector<float> out(t * hidden), out_ref(t * hidden);
      std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
      k::swiglu_mlp(x, w, TensorView<float>(out.data(), {t, hidden}), scratch.data(), &pool);
      k::swiglu_mlp_reference(x, w, TensorView<float>(out_ref.data(), {t, hidden}), scratch.data());
      const double tol = mlp_tolerance(std::vector<float>(x.data(), x.data() + x.size()), w, t);
      const std::string describe = name + " T " + std::to_string(t);
      expect_matches(out, expected, tol, "swiglu_mlp, " + describe);
      expect_matches(out_ref, expected, tol, "swiglu_mlp_reference, " + describe);
      ++checked;
    }
  }
  CHECK(biased == 2);
  CHECK(mixed == 1);
  CHECK(checked == 24);
}

TEST_CASE(
    "swiglu_mlp agrees with swiglu_mlp_reference over awkward shapes, dtypes and precisions") {
  std::mt19937 rng(17);
  // 300 tokens: two token blocks (kMlpTokenBlock = 256), the second one partial.
  const std::size_t tokens[] = {1, 4, 5, 17, 65, 300};
  const std::size_t hiddens[] = {1, 16, 17, 48};
  const std::size_t inters[] = {1, 3, 7, 37, 130};
  std::size_t cases = 0;
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (std::size_t hidden : hiddens) {
    for (std::size_t inter : inters) {
      for (int variant = 0; variant < 4; ++variant) {
        // Same dtype everywhere (the fused path) or mixed gate/up dtypes (two tiles per step).
        const DType dg = kDtypes[variant % 3];
        const DType du = variant == 3 ? DType::F16 : dg;
        const DType dd = kDtypes[(variant + 1) % 3];
        const bool bias = (variant + inter) % 2 == 1;
        const RandomMlp m = random_mlp(hidden, inter, dg, du, dd, bias, rng);
        const k::SwiGluWeights w = m.weights();
        for (std::size_t t : tokens) {
          const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
          std::vector<float> out(t * hidden, -1.0f), out_ref(t * hidden, -2.0f);
          std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
          const TensorView<const float> xv(x.data(), {t, hidden});
          k::swiglu_mlp(xv, w, TensorView<float>(out.data(), {t, hidden}), scratch.data(),
                        nullptr, precision);
          k::swiglu_mlp_reference(xv, w, TensorView<float>(out_ref.data(), {t, hidden}),
                                  scratch.data(), nullptr, precision);
          const bool h_rounded = precision == sgt::Precision::Bf16 && dd == DType::BF16;
          require_matches(out, out_ref, mlp_tolerance(x, w, t, h_rounded), [&](std::ostream& os) {
            os << sgt::precision_name(precision) << " T " << t << " H " << hidden << " I " << inter << " dtypes "
               << sgt::dtype_name(dg) << "/" << sgt::dtype_name(du) << "/" << sgt::dtype_name(dd)
               << " bias " << bias;
          });
          ++cases;
        }
      }
    }
  }
  CHECK(cases == 2 * 4 * 5 * 4 * 6);
}

TEST_CASE("fused gate/up equals matmul + silu * up + matmul bit for bit") {
  // The fusion only moves the epilogue; every sum is formed exactly as matmul forms it, and h is
  // handed to down already packed, with the values matmul would have packed.
  std::mt19937 rng(23);
  // The second shape has gate/up run K (the hidden size) in blocks (TileGrid::blocked) for f32
  // packing on every instruction set.
  struct Dims {
    std::size_t t, hidden, inter;
  };
  for (const Dims dims : {Dims{37, 70, 131}, Dims{40, 8195, 24}})
  for (int variant = 0; variant < 4; ++variant) {
    const std::size_t t = dims.t, hidden = dims.hidden, inter = dims.inter;
    const DType dg = kDtypes[variant % 3], du = variant == 3 ? DType::BF16 : dg;
    const RandomMlp m = random_mlp(hidden, inter, dg, du, DType::BF16, variant % 2 == 0, rng);
    const k::SwiGluWeights w = m.weights();
    const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
    const TensorView<const float> xv(x.data(), {t, hidden});
    std::vector<float> g(t * inter), u(t * inter), h(t * inter), expected(t * hidden);
    k::matmul(xv, w.gate, w.gate_bias, TensorView<float>(g.data(), {t, inter}));
    k::matmul(xv, w.up, w.up_bias, TensorView<float>(u.data(), {t, inter}));
    h = g;
    k::detail::silu_times(h.data(), u.data(), h.size());
    k::matmul(TensorView<const float>(h.data(), {t, inter}), w.down, w.down_bias,
              TensorView<float>(expected.data(), {t, hidden}));
    std::vector<float> out(t * hidden), scratch(k::swiglu_scratch_floats(t, hidden, inter));
    k::swiglu_mlp(xv, w, TensorView<float>(out.data(), {t, hidden}), scratch.data());
    const std::string describe =
        "variant " + std::to_string(variant) + ", hidden " + std::to_string(hidden);
    require_bit_identical(out, expected, describe);
  }
}

TEST_CASE("swiglu_mlp is bit-identical for 1, 2 and 3 threads, and works in place") {
  std::mt19937 rng(29);
  // Several token blocks (T > 256) and several feature chunks in both phases.
  const std::size_t t = 270, hidden = 200, inter = 330;
  sgt::ThreadPool pool2(2);
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : kDtypes) {
    const std::string describe = std::string("dtype ") + sgt::dtype_name(dtype) + " precision " +
                                 sgt::precision_name(precision);
    const RandomMlp m = random_mlp(hidden, inter, dtype, dtype, dtype, true, rng);
    const k::SwiGluWeights w = m.weights();
    const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
    const TensorView<const float> xv(x.data(), {t, hidden});
    std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
    const auto run = [&](sgt::ThreadPool* pool) {
      std::vector<float> out(t * hidden, 0.0f);
      k::swiglu_mlp(xv, w, TensorView<float>(out.data(), {t, hidden}), scratch.data(), pool, precision);
      return out;
    };
    expect_thread_invariant(run, {1, 2, 3}, describe);
    const std::vector<float> serial = run(nullptr);
    // out may be x itself: x is fully consumed by gate/up before down writes out.
    std::vector<float> inplace = x;
    k::swiglu_mlp(TensorView<const float>(inplace.data(), {t, hidden}), w,
                  TensorView<float>(inplace.data(), {t, hidden}), scratch.data(), &pool2, precision);
    expect_bit_identical(inplace, serial, describe + ", in place on 2 threads");
  }
}

TEST_CASE("swiglu_mlp on a few tokens (the narrow path) equals the batch's rows bit for bit") {
  // Up to kNarrowMaxTokens tokens run gate/up and down on the narrow path when their weights allow
  // (F16 keeps the tile): every mix of paths must give the rows of a large batch exactly.
  std::mt19937 rng(31);
  const std::size_t t = 2 * k::kTileTokens + 5, hidden = 67, inter = 45;
  struct Mix {
    DType gate, up, down;
  };
  const Mix mixes[] = {{DType::BF16, DType::BF16, DType::BF16}, {DType::F32, DType::F32, DType::F32},
                       {DType::BF16, DType::BF16, DType::F16},  {DType::F16, DType::BF16, DType::BF16},
                       {DType::F32, DType::BF16, DType::BF16}};
  sgt::ThreadPool pool(2);
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (const Mix& mix : mixes)
  for (bool bias : {false, true}) {
    const std::string describe = std::string("gate ") + sgt::dtype_name(mix.gate) + " up " +
                                 sgt::dtype_name(mix.up) + " down " + sgt::dtype_name(mix.down) +
                                 " precision " + sgt::precision_name(precision) +
                                 (bias ? " bias" : "");
    const RandomMlp m = random_mlp(hidden, inter, mix.gate, mix.up, mix.down, bias, rng);
    const k::SwiGluWeights w = m.weights();
    const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
    std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
    std::vector<float> batch(t * hidden);
    k::swiglu_mlp(TensorView<const float>(x.data(), {t, hidden}), w,
                  TensorView<float>(batch.data(), {t, hidden}), scratch.data(), nullptr, precision);
    for (std::size_t rows = 1; rows <= k::kNarrowMaxTokens + 1; ++rows) {
      const std::size_t first = t - rows - 1;
      std::vector<float> few(rows * hidden);
      k::swiglu_mlp(TensorView<const float>(x.data() + first * hidden, {rows, hidden}), w,
                    TensorView<float>(few.data(), {rows, hidden}), scratch.data(),
                    rows % 2 ? &pool : nullptr, precision);
      require_bit_identical(few, {batch.data() + first * hidden, rows * hidden},
                            describe + ", " + std::to_string(rows) + " rows");
    }
  }
}

TEST_CASE("swiglu_mlp on weights in feature blocks gives the bits of row-major weights") {
  // gate, up and down in feature blocks (block_features) against the same MLP row-major: the
  // tile (t tokens), the narrow path (1 .. kNarrowMaxTokens), with and without a pool; inter = 130
  // spans three blocks, the last one padded. gate and up in different layouts are refused.
  std::mt19937 rng(43);
  const std::size_t t = 2 * k::kTileTokens + 5, hidden = 67, inter = 130;
  sgt::ThreadPool pool(2);
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
  for (DType dtype : {DType::F32, DType::BF16})
  for (bool bias : {false, true}) {
    const std::string describe = std::string(sgt::dtype_name(dtype)) + " precision " +
                                 sgt::precision_name(precision) + (bias ? " bias" : "");
    const RandomMlp m = random_mlp(hidden, inter, dtype, dtype, dtype, bias, rng);
    const k::SwiGluWeights w = m.weights();
    const k::FeatureBlockedWeight gate = k::block_features(w.gate), up = k::block_features(w.up),
                                  down = k::block_features(w.down);
    k::SwiGluWeights wb = w;
    wb.gate = gate.view();
    wb.up = up.view();
    wb.down = down.view();
    const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
    std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
    for (std::size_t rows : {std::size_t{1}, std::size_t{2}, k::kNarrowMaxTokens, t})
    for (sgt::ThreadPool* p : {static_cast<sgt::ThreadPool*>(nullptr), &pool}) {
      std::vector<float> row_major(rows * hidden), in_blocks(rows * hidden);
      const TensorView<const float> xv(x.data(), {rows, hidden});
      k::swiglu_mlp(xv, w, TensorView<float>(row_major.data(), {rows, hidden}), scratch.data(), p,
                    precision);
      k::swiglu_mlp(xv, wb, TensorView<float>(in_blocks.data(), {rows, hidden}), scratch.data(),
                    p, precision);
      require_bit_identical(in_blocks, row_major, describe + ", " + std::to_string(rows) + " rows");
    }
    k::SwiGluWeights mixed = w;
    mixed.gate = gate.view();
    std::vector<float> out(hidden);
    CHECK(error_of([&] {
            k::swiglu_mlp(TensorView<const float>(x.data(), {1, hidden}), mixed,
                          TensorView<float>(out.data(), {1, hidden}), scratch.data());
          }).find("share a layout") != std::string::npos);
  }
}

TEST_CASE("swiglu scratch size and errors") {
  // Packed x and h of one token block (whole tiles): the scratch stops growing at kMlpTokenBlock.
  const std::size_t tiles_130 = (130 + k::kTileTokens - 1) / k::kTileTokens;
  CHECK(k::swiglu_scratch_floats(130, 64, 176) == tiles_130 * k::kTileTokens * (64 + 176));
  CHECK(k::swiglu_scratch_floats(0, 64, 176) == 0);
  CHECK(k::swiglu_scratch_floats(100000, 64, 176) ==
        k::swiglu_scratch_floats(k::kMlpTokenBlock, 64, 176));
  CHECK(k::swiglu_scratch_floats(100000, 64, 176) == k::kMlpTokenBlock * (64 + 176));
  CHECK_THROWS_AS(k::swiglu_scratch_floats(256, std::size_t{1} << 62, std::size_t{1} << 62),
                  sgt::Error);

  std::mt19937 rng(31);
  const std::size_t t = 3, hidden = 16, inter = 40;
  const RandomMlp m = random_mlp(hidden, inter, DType::BF16, DType::BF16, DType::BF16, true, rng);
  const k::SwiGluWeights good = m.weights();
  std::vector<float> x(t * hidden, 0.5f), out(t * hidden),
      scratch(k::swiglu_scratch_floats(t, hidden, inter));
  const TensorView<const float> xv(x.data(), {t, hidden});
  const TensorView<float> ov(out.data(), {t, hidden});
  using Fn = void (*)(TensorView<const float>, const k::SwiGluWeights&, TensorView<float>, float*,
                      sgt::ThreadPool*, sgt::Precision, k::GatedActivation);
  for (Fn f : {static_cast<Fn>(&k::swiglu_mlp), static_cast<Fn>(&k::swiglu_mlp_reference)}) {
    CHECK(error_of([&] { f(xv, good, ov, scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu); }) == "<no sgt::Error>");

    k::SwiGluWeights w = good;
    const StoredTensor up_bad(DType::BF16, std::vector<float>(41 * hidden), {41, hidden});
    w.up = up_bad.view();
    std::string e = error_of([&] { f(xv, w, ov, scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu); });
    CHECK(e.find("up_proj [41, 16]") != std::string::npos);
    CHECK(e.find("gate_proj [40, 16]") != std::string::npos);

    w = good;
    const StoredTensor down_bad(DType::F32, std::vector<float>(hidden * 39), {hidden, 39});
    w.down = down_bad.view();
    e = error_of([&] { f(xv, w, ov, scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu); });
    CHECK(e.find("down_proj") != std::string::npos);
    CHECK(e.find("[3, 40]") != std::string::npos);
    CHECK(e.find("[16, 39]") != std::string::npos);

    w = good;
    const StoredTensor bias_bad(DType::F32, std::vector<float>(39), {39});
    w.gate_bias = bias_bad.view();
    e = error_of([&] { f(xv, w, ov, scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu); });
    CHECK(e.find("gate_proj") != std::string::npos);
    CHECK(e.find("bias [39]") != std::string::npos);

    const std::vector<float> x17(t * 17);
    e = error_of([&] {
      f(TensorView<const float>(x17.data(), {t, 17}), good, ov, scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu);
    });
    CHECK(e.find("x [3, 17]") != std::string::npos);
    CHECK(e.find("[40, 16]") != std::string::npos);

    std::vector<float> out4(4 * hidden);
    e = error_of([&] {
      f(xv, good, TensorView<float>(out4.data(), {4, hidden}), scratch.data(), nullptr, sgt::Precision::F32, k::GatedActivation::Silu);
    });
    CHECK(e.find("out [4, 16]") != std::string::npos);

    CHECK(error_of([&] { f(xv, good, ov, nullptr, nullptr, sgt::Precision::F32, k::GatedActivation::Silu); }).find("scratch") !=
          std::string::npos);
    CHECK(error_of([&] {
            f(xv, good, ov, const_cast<float*>(x.data()), nullptr, sgt::Precision::F32, k::GatedActivation::Silu);
          }).find("overlaps") != std::string::npos);
  }
}

TEST_CASE("silu_times: within a few ulp of silu(g) * u in double, and position does not matter") {
  // g from -100 to 100 (exp(-g) overflows below -88: the result must still be the -0 limit), u = 1
  // and u = -3, every length from 1 to 3 registers so that the partial tail is exercised.
  std::vector<float> g;
  for (float x = -100.0f; x <= 100.0f; x += 0.0371f) g.push_back(x);
  g.push_back(0.0f);
  g.push_back(-0.0f);
  g.push_back(1e-30f);
  for (float uval : {1.0f, -3.0f}) {
    std::vector<float> u(g.size(), uval), got = g;
    k::detail::silu_times(got.data(), u.data(), got.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      const double gd = g[i];
      const double exact = gd / (1.0 + std::exp(-gd)) * uval;
      CAPTURE(g[i]);
      // Below g = -88.38 (xsimd's overflow threshold for exp) the result is the -0 limit, where
      // the exact value is under 2e-36 in magnitude.
      CHECK(std::fabs(got[i] - exact) <= 4 * 0x1p-24 * std::fabs(exact) + 2e-36);
    }
    for (std::size_t n = 1; n <= 3 * sgt::simd::kFloatLanes; ++n) {
      std::vector<float> part(g.begin() + 1000, g.begin() + 1000 + n);
      k::detail::silu_times(part.data(), u.data(), n);
      CAPTURE(n);
      CHECK(std::memcmp(part.data(), got.data() + 1000, n * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("GeGLU (gelu_pytorch_tanh): gelu_tanh_times within a few ulp of double, position-free") {
  std::vector<float> g;
  for (float x = -12.0f; x <= 12.0f; x += 0.00731f) g.push_back(x);
  g.push_back(0.0f);
  for (float uval : {1.0f, -2.5f}) {
    std::vector<float> u(g.size(), uval), got = g;
    k::detail::gelu_tanh_times(got.data(), u.data(), got.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      const double gd = g[i];
      // PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
      const double exact =
          0.5 * gd * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (gd + 0.044715 * gd * gd * gd))) *
          uval;
      CAPTURE(g[i]);
      // Near the negative tail the result is a difference of nearly equal terms (1 + tanh -> 0):
      // a few ulp of the terms, not of the result.
      CHECK(std::fabs(got[i] - exact) <= 8 * 0x1p-24 * (std::fabs(exact) + std::fabs(gd * uval)));
    }
    for (std::size_t n = 1; n <= 3 * sgt::simd::kFloatLanes; ++n) {
      std::vector<float> part(g.begin() + 700, g.begin() + 700 + n);
      k::detail::gelu_tanh_times(part.data(), u.data(), n);
      CHECK(std::memcmp(part.data(), got.data() + 700, n * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("GeGLU: swiglu_mlp with GeluTanh agrees with its reference, tile and narrow paths") {
  std::mt19937 rng(41);
  const std::size_t hidden = 48, inter = 37;
  for (sgt::Precision precision : {sgt::Precision::F32, sgt::Precision::Bf16})
    for (DType dtype : {DType::F32, DType::BF16}) {
      const RandomMlp m = random_mlp(hidden, inter, dtype, dtype, dtype, false, rng);
      const k::SwiGluWeights w = m.weights();
      for (std::size_t t : {1u, 3u, 65u}) {
        const std::vector<float> x = uniform_values(t * hidden, rng, 2.0f);
        std::vector<float> out(t * hidden), out_ref(t * hidden), silu(t * hidden);
        std::vector<float> scratch(k::swiglu_scratch_floats(t, hidden, inter));
        const TensorView<const float> xv(x.data(), {t, hidden});
        k::swiglu_mlp(xv, w, TensorView<float>(out.data(), {t, hidden}), scratch.data(), nullptr,
                      precision, k::GatedActivation::GeluTanh);
        k::swiglu_mlp_reference(xv, w, TensorView<float>(out_ref.data(), {t, hidden}),
                                scratch.data(), nullptr, precision, k::GatedActivation::GeluTanh);
        k::swiglu_mlp(xv, w, TensorView<float>(silu.data(), {t, hidden}), scratch.data(), nullptr,
                      precision);
        const bool h_rounded = precision == sgt::Precision::Bf16 && dtype == DType::BF16;
        const double tol = mlp_tolerance(x, w, t, h_rounded);
        require_matches(out, out_ref, tol, [&](std::ostream& os) {
          os << sgt::precision_name(precision) << " " << sgt::dtype_name(dtype) << " T " << t;
        });
        CHECK(sgt_test::max_error(out, silu) > 10 * tol);  // the activation does matter
      }
    }
}

}  // namespace test_kernels_swiglu
