// Attention kernels: sdpa (explicit scores) and flash_attention (tiled, online softmax) against
// PyTorch's scaled_dot_product_attention fixtures, against each other on random data over many
// awkward shapes, thread-count determinism, fully masked rows, block skipping, S = 32768 without
// a heap allocation, the heap scratch of wide heads, and argument errors.
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
#include <sgt/kernels/attention.hpp>
#include <sgt/kernels/flash_attention.hpp>
#include <sgt/kernels/sdpa.hpp>

#include "support/allocation_counter.hpp"
#include "support/kernel_harness.hpp"
#include "support/slow_run.hpp"

namespace {

using sgt::kernels::AttentionOptions;
using sgt::kernels::AttentionShape;
using sgt_test::allocations_during;
using sgt_test::expect_matches;
using sgt_test::expect_thread_invariant;
using sgt_test::max_abs;
using sgt_test::require_bit_identical;

using Kernel = void (*)(const AttentionShape&, const AttentionOptions&,
                        sgt::TensorView<const float>, sgt::TensorView<const float>,
                        sgt::TensorView<const float>, const std::uint8_t*, sgt::TensorView<float>,
                        sgt::ThreadPool*);

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Problem {
  AttentionShape shape;
  AttentionOptions options;
  std::vector<float> q, k, v;
  std::vector<std::uint8_t> mask;  // empty = no mask

  std::size_t rows() const { return shape.batch * shape.seq_len; }
  std::size_t q_cols() const { return shape.num_heads * shape.head_dim; }
  std::size_t kv_cols() const { return shape.num_kv_heads * shape.head_dim; }
  const std::uint8_t* mask_ptr() const { return mask.empty() ? nullptr : mask.data(); }

  // Runs `kernel` into a fresh output pre-filled with NaN: every element must be written.
  std::vector<float> run(Kernel kernel, sgt::ThreadPool* pool = nullptr) const {
    std::vector<float> out(rows() * q_cols(), kNaN);
    run_into(kernel, pool, out);
    return out;
  }
  // Runs `kernel` into `out` (rows() x q_cols() floats), allocating nothing itself.
  void run_into(Kernel kernel, sgt::ThreadPool* pool, std::vector<float>& out) const {
    kernel(shape, options, {q.data(), {shape.batch, shape.seq_len, q_cols()}},
           {k.data(), {shape.batch, shape.seq_len, kv_cols()}},
           {v.data(), {shape.batch, shape.seq_len, kv_cols()}}, mask_ptr(),
           {out.data(), {shape.batch, shape.seq_len, q_cols()}}, pool);
  }
};

Problem random_problem(AttentionShape shape, AttentionOptions options, std::uint32_t seed,
                       float q_magnitude = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p;
  p.shape = shape;
  p.options = options;
  p.q.resize(p.rows() * p.q_cols());
  p.k.resize(p.rows() * p.kv_cols());
  p.v.resize(p.rows() * p.kv_cols());
  for (float& x : p.q) x = q_magnitude * normal(rng);
  for (float& x : p.k) x = normal(rng);
  for (float& x : p.v) x = normal(rng);
  return p;
}

// Outputs are convex combinations of v rows; f32 errors come from the scores (relative ~1e-6 of
// |scale q.k|, which moves the softmax weights) and the accumulation over up to S rows of v.
// The bound is relative to the largest |v| (the scale of every output).
float tolerance(const Problem& p, float relative) {
  return relative * std::max(1.0f, static_cast<float>(max_abs(p.v)));
}

std::string describe(const Problem& p) {
  const auto& s = p.shape;
  return "B=" + std::to_string(s.batch) + " S=" + std::to_string(s.seq_len) +
         " H=" + std::to_string(s.num_heads) + " KV=" + std::to_string(s.num_kv_heads) +
         " D=" + std::to_string(s.head_dim) + " causal=" + std::to_string(p.options.causal) +
         " window=" + std::to_string(p.options.sliding_window) +
         " mask=" + std::to_string(!p.mask.empty());
}

const Kernel kSdpa = sgt::kernels::sdpa;
const Kernel kFlash = sgt::kernels::flash_attention;

}  // namespace

TEST_CASE("visible_key_span agrees with key_visible, the rule the kernels share") {
  for (bool causal : {true, false}) {
    for (std::size_t window : {0, 1, 2, 7, 64}) {
      AttentionOptions o{0.5f, causal, window};
      const std::size_t S = 40;
      for (std::size_t i = 0; i < S; ++i) {
        const auto span = sgt::kernels::detail::visible_key_span(o, S, i);
        for (std::size_t j = 0; j < S; ++j) {
          const bool in_span = j >= span.begin && j < span.end;
          REQUIRE(in_span == sgt::kernels::key_visible(o, nullptr, 0, S, i, j));
          // Spelled out: HF Mistral's kv_idx > q_idx - window, and causal's kv_idx <= q_idx.
          const auto si = static_cast<long>(i), sj = static_cast<long>(j);
          const bool expected = (!causal || sj <= si) && (window == 0 || sj > si - long(window));
          REQUIRE(in_span == expected);
        }
      }
    }
  }
  const std::uint8_t mask[] = {1, 0, 1, 1, 0, 0};  // batch row 1 is keys 3..5
  AttentionOptions o{1.0f, true, 0};
  CHECK(sgt::kernels::key_visible(o, mask, 1, 3, 2, 0));
  CHECK_FALSE(sgt::kernels::key_visible(o, mask, 1, 3, 2, 1));
  CHECK_FALSE(sgt::kernels::key_visible(o, mask, 0, 3, 2, 1));
}

TEST_CASE("sdpa and flash_attention match torch scaled_dot_product_attention fixtures (and "
          "transformers' eager soft-capped attention)") {
  const sgt::SafetensorsFile file(std::string(SGT_TEST_DATA_DIR) +
                                  "/kernels/attention/attention.safetensors");
  const auto cases = nlohmann::json::parse(file.metadata().at("cases"));
  REQUIRE(cases.size() >= 11);
  sgt::ThreadPool pool(2);
  std::size_t blind_rows_seen = 0, softcapped = 0;
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    CAPTURE(name);
    Problem p;
    p.shape = {c.at("batch"), c.at("seq_len"), c.at("num_heads"), c.at("num_kv_heads"),
               c.at("head_dim")};
    p.options = {c.at("scale").get<float>(), c.at("causal").get<bool>(), c.at("sliding_window"),
                 c.value("logit_softcap", 0.0f)};
    softcapped += p.options.logit_softcap != 0.0f;
    auto load = [&](const std::string& what) {
      const auto view = file.tensor(name + "." + what).as<float>();
      return std::vector<float>(view.data(), view.data() + view.size());
    };
    p.q = load("q");
    p.k = load("k");
    p.v = load("v");
    const std::vector<float> mask_f32 = load("attention_mask");
    for (float m : mask_f32) p.mask.push_back(m != 0.0f ? 1 : 0);
    const std::vector<float> expected = load("out");
    REQUIRE(p.q.size() == p.rows() * p.q_cols());
    REQUIRE(p.k.size() == p.rows() * p.kv_cols());
    REQUIRE(expected.size() == p.q.size());
    blind_rows_seen += c.at("blind_rows").get<std::size_t>();

    // The fixture is float64 rounded to f32: what remains is our f32 error alone.
    const float tol = tolerance(p, 5e-6f);
    for (Kernel kernel : {kSdpa, kFlash}) {
      for (sgt::ThreadPool* pl : {static_cast<sgt::ThreadPool*>(nullptr), &pool}) {
        expect_matches(p.run(kernel, pl), expected, tol, [&] {
          return describe(p) + (kernel == kFlash ? " flash_attention" : " sdpa") +
                 (pl ? " on 2 threads" : "");
        });
      }
    }
  }
  CHECK(blind_rows_seen > 0);  // the fixtures do exercise rows that see no key
  CHECK(softcapped == 2);      // and Gemma 2's logit soft cap, with and without a window
}

TEST_CASE("flash_attention matches sdpa on random data over awkward shapes") {
  const std::size_t seq_lens[] = {1,  2,  15, 16,  17,  31,  33,  47,
                                  63, 64, 65, 100, 129, 130, 257, 300};
  const std::size_t head_dims[] = {64, 80, 128, 1, 17, 48, 96, 72};
  struct Heads {
    std::size_t h, kv;
  };
  const Heads heads[] = {{1, 1}, {4, 1}, {8, 1}, {4, 2}, {3, 3}, {8, 2}};
  const std::size_t windows[] = {0, 1, 7, 64, 0, 200};
  sgt::ThreadPool pool(3);
  std::uint32_t seed = 1;
  std::size_t runs = 0;
  for (std::size_t si = 0; si < std::size(seq_lens); ++si) {
    for (std::size_t variant = 0; variant < 4; ++variant) {
      const std::size_t n = si * 4 + variant;
      const std::size_t S = seq_lens[si];
      const std::size_t D = head_dims[n % std::size(head_dims)];
      const Heads hd = heads[(n / 2) % std::size(heads)];
      const std::size_t B = 1 + n % 3;
      AttentionOptions o;
      o.scale = n % 5 == 0 ? 0.9f : sgt::kernels::default_attention_scale(D);
      o.causal = n % 7 != 3;
      o.sliding_window = windows[(n / 3) % std::size(windows)];
      Problem p = random_problem({B, S, hd.h, hd.kv, D}, o, seed++, n % 4 == 1 ? 3.0f : 1.0f);
      std::mt19937 rng(seed++);
      switch (n % 4) {
        case 0:  // no mask
          break;
        case 1:  // left padding in row 0, right padding in the last row
          p.mask.assign(B * S, 1);
          std::fill(p.mask.begin(), p.mask.begin() + std::min<std::size_t>(S, 1 + S / 3), 0);
          std::fill(p.mask.end() - std::min<std::size_t>(S, S / 4), p.mask.end(), 0);
          break;
        case 2:  // random holes
          p.mask.resize(B * S);
          for (auto& m : p.mask) m = rng() % 10 < 7;
          break;
        case 3:  // one batch row all padding, the others real
          p.mask.assign(B * S, 1);
          std::fill(p.mask.begin(), p.mask.begin() + S, 0);
          break;
      }
      expect_matches(p.run(kFlash, n % 2 ? &pool : nullptr), p.run(kSdpa), tolerance(p, 2e-5f),
                     [&] { return describe(p); });
      ++runs;
    }
  }
  CHECK(runs == 64);
}

// The register tiles' split of a block's rows (flash_tile_rows): every row exactly once, no tile
// over R, and no thin tail tile -- a tile of fewer than R / 2 rows runs too few FMA chains to hide
// their latency, so only a block of fewer rows than that may have one.
template <int R>
void check_tile_rows(std::size_t max_rows) {
  for (std::size_t n = 1; n <= max_rows; ++n) {
    std::size_t covered = 0, tiles = 0;
    while (covered < n) {
      const std::size_t rows = sgt::kernels::detail::flash_tile_rows<R>(n - covered);
      INFO("R=" << R << " rows=" << n << " tile " << tiles << " of " << rows);
      REQUIRE(rows >= 1);
      REQUIRE(rows <= static_cast<std::size_t>(R));
      CHECK(rows >= std::min<std::size_t>(n, R / 2));
      covered += rows;
      ++tiles;
    }
    CHECK(covered == n);
    CHECK(tiles == (n + R - 1) / R);  // as few tiles as full ones would take
  }
}

TEST_CASE("flash_attention's register tiles cover a block's rows once, without a thin tail") {
  check_tile_rows<4>(100);
  check_tile_rows<6>(100);
  check_tile_rows<8>(100);
  check_tile_rows<12>(100);
  check_tile_rows<16>(100);
  check_tile_rows<sgt::kernels::detail::kFlashAccumulators>(200);
}

TEST_CASE("results are bit-identical for 1, 2 and 3 threads") {
  for (std::size_t D : {80, 64}) {
    Problem p = random_problem({2, 200, 4, 2, D}, {0.11f, true, D == 64 ? 70u : 0u}, 7);
    p.mask.assign(p.rows(), 1);
    std::fill(p.mask.begin(), p.mask.begin() + 13, 0);
    std::fill(p.mask.end() - 40, p.mask.end(), 0);
    for (Kernel kernel : {kSdpa, kFlash}) {
      expect_thread_invariant(
          [&](sgt::ThreadPool* pool) { return p.run(kernel, pool); }, {1, 2, 3},
          [&] { return describe(p) + (kernel == kFlash ? " flash" : " sdpa"); });
    }
  }
}

TEST_CASE("a query row that sees no key outputs 0, never NaN") {
  SUBCASE("everything padded") {
    Problem p = random_problem({2, 70, 4, 1, 64}, {0.125f, true, 0}, 11);
    p.mask.assign(p.rows(), 0);
    for (Kernel kernel : {kSdpa, kFlash}) {
      const std::vector<float> out = p.run(kernel);
      CHECK(max_abs(out) == 0.0f);
      CHECK(std::none_of(out.begin(), out.end(), [](float x) { return std::isnan(x); }));
    }
  }
  SUBCASE("left padding: the padded queries see only padded keys") {
    Problem p = random_problem({1, 90, 2, 2, 80}, {0.1f, true, 0}, 12);
    p.mask.assign(p.rows(), 1);
    std::fill(p.mask.begin(), p.mask.begin() + 70, 0);  // crosses a 48-query block boundary
    for (Kernel kernel : {kSdpa, kFlash}) {
      const std::vector<float> out = p.run(kernel);
      for (std::size_t i = 0; i < 90; ++i) {
        const float* row = out.data() + i * p.q_cols();
        const float m = max_abs(std::vector<float>(row, row + p.q_cols()));
        CAPTURE(i);
        if (i < 70) {
          CHECK(m == 0.0f);
        } else {
          CHECK((m > 0.0f && std::isfinite(m)));
        }
      }
    }
  }
  SUBCASE("a window that only reaches padded keys") {
    Problem p = random_problem({1, 100, 1, 1, 64}, {0.125f, true, 5}, 13);
    p.mask.assign(p.rows(), 1);
    std::fill(p.mask.begin() + 40, p.mask.end(), 0);  // right padding: queries >= 44 see nothing
    for (Kernel kernel : {kSdpa, kFlash}) {
      const std::vector<float> out = p.run(kernel);
      CHECK(max_abs(std::vector<float>(out.begin() + 44 * 64, out.end())) == 0.0f);
      CHECK(max_abs(std::vector<float>(out.begin(), out.begin() + 44 * 64)) > 0.0f);
    }
  }
  SUBCASE("huge scores: the max-subtracted softmax neither overflows nor underflows to 0/0") {
    Problem p = random_problem({1, 150, 2, 1, 64}, {1.0f, true, 0}, 14, 30.0f);
    p.mask.assign(p.rows(), 1);
    p.mask[0] = 0;
    const std::vector<float> want = p.run(kSdpa);
    const std::vector<float> got = p.run(kFlash);
    CHECK(std::all_of(got.begin(), got.end(), [](float x) { return std::isfinite(x); }));
    // Scores of magnitude ~1e3: a relative 1e-7 error in a score is ~1e-4 in the exponent.
    expect_matches(got, want, tolerance(p, 1e-3f), describe(p));
  }
}

TEST_CASE("padded keys and skipped blocks are never read into the result") {
  const std::size_t D = 64;
  const std::size_t block = sgt::kernels::detail::flash_tiles(D).query_block;
  REQUIRE(block == 64 / sgt::simd::kFloatLanes * sgt::simd::kFloatLanes);
  const std::size_t S = 4 * block + 9;
  SUBCASE("NaN in the k and v of padded keys changes nothing") {
    Problem p = random_problem({2, S, 4, 2, D}, {0.125f, true, 0}, 21);
    p.mask.assign(p.rows(), 1);
    for (std::size_t j = 0; j < p.rows(); j += 5) p.mask[j] = 0;
    std::fill(p.mask.begin(), p.mask.begin() + 20, 0);
    for (Kernel kernel : {kSdpa, kFlash}) {
      const std::vector<float> clean = p.run(kernel);
      Problem poisoned = p;
      for (std::size_t r = 0; r < p.rows(); ++r) {
        if (p.mask[r]) continue;
        std::fill_n(poisoned.k.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
        std::fill_n(poisoned.v.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
      }
      require_bit_identical(poisoned.run(kernel), clean, kernel == kFlash ? "flash" : "sdpa");
    }
  }
  SUBCASE("causal: key blocks above the diagonal are not touched") {
    Problem p = random_problem({1, S, 2, 1, D}, {0.125f, true, 0}, 22);
    const std::vector<float> clean = p.run(kFlash);
    const std::size_t boundary = 2 * block;  // queries below it belong to blocks 0 and 1
    for (std::size_t r = boundary; r < S; ++r) {
      std::fill_n(p.k.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
      std::fill_n(p.v.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
    }
    const std::vector<float> got = p.run(kFlash);
    require_bit_identical({got.data(), boundary * p.q_cols()},
                          {clean.data(), boundary * p.q_cols()}, "queries below the poisoned keys");
    CHECK(std::isnan(got[boundary * p.q_cols()]));  // ... and the poison is real
  }
  SUBCASE("sliding window: key blocks behind every window are not touched") {
    const std::size_t window = 7;
    Problem p = random_problem({1, S, 2, 1, D}, {0.125f, true, window}, 23);
    const std::vector<float> clean = p.run(kFlash);
    const std::size_t poisoned_end = block;  // keys [0, block) get NaN
    for (std::size_t r = 0; r < poisoned_end; ++r) {
      std::fill_n(p.k.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
      std::fill_n(p.v.begin() + r * p.kv_cols(), p.kv_cols(), kNaN);
    }
    const std::vector<float> got = p.run(kFlash);
    // Query block 1 starts at `block`; its window reaches back to key block - 6, a poisoned key
    // that its early queries see. From query block 2 on, no window reaches the poison.
    const std::size_t clean_from = 2 * block;
    const std::size_t n = (S - clean_from) * p.q_cols();
    require_bit_identical({got.data() + clean_from * p.q_cols(), n},
                          {clean.data() + clean_from * p.q_cols(), n},
                          "query blocks no window reaches the poison from");
    CHECK(std::isnan(got[block * p.q_cols()]));
  }
}

TEST_CASE("flash_attention at S = 32768 allocates nothing and matches a double-precision softmax") {
  // head_dim 64 keeps each running chunk's tile scratch on its thread's stack: no heap scratch
  // at all, of any size, whatever seq_len (the heap path of wider heads is tested below).
  const AttentionShape shape{1, 32768, 1, 1, 64};

  // Full causal attention at S = 32768 is 137 GFLOP: seconds in an optimized build. Sanitizer
  // builds and emulated ones (qemu, SGT_TEST_EMULATED) run the same length with a 512-key window
  // (4 GFLOP).
  const std::size_t window = sgt_test::kSlowRun ? 512 : 0;
  Problem p = random_problem(shape, {0.125f, true, window}, 31);
  p.mask.assign(shape.seq_len, 1);
  std::fill(p.mask.begin(), p.mask.begin() + 3, 0);
  sgt::ThreadPool pool(2);
  std::vector<float> out(p.rows() * p.q_cols(), kNaN);
  CHECK(allocations_during([&] { p.run_into(kFlash, &pool, out); }).count == 0);
  CHECK(std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }));

  // Spot-check rows against the visibility rule evaluated directly (double precision).
  for (std::size_t i : {0, 2, 3, 100, 4095, 4096, 20000, 32767}) {
    CAPTURE(i);
    double max_s = -std::numeric_limits<double>::infinity();
    std::vector<double> s(shape.seq_len, 0.0);
    for (std::size_t j = 0; j < shape.seq_len; ++j) {
      if (!sgt::kernels::key_visible(p.options, p.mask.data(), 0, shape.seq_len, i, j)) continue;
      double dot = 0;
      for (std::size_t d = 0; d < 64; ++d) dot += double(p.q[i * 64 + d]) * p.k[j * 64 + d];
      s[j] = dot * p.options.scale;
      max_s = std::max(max_s, s[j]);
    }
    std::vector<double> want(64, 0.0);
    double sum = 0;
    for (std::size_t j = 0; j < shape.seq_len && std::isfinite(max_s); ++j) {
      if (!sgt::kernels::key_visible(p.options, p.mask.data(), 0, shape.seq_len, i, j)) continue;
      const double w = std::exp(s[j] - max_s);
      sum += w;
      for (std::size_t d = 0; d < 64; ++d) want[d] += w * p.v[j * 64 + d];
    }
    for (std::size_t d = 0; d < 64; ++d) {
      const double expected = sum > 0 ? want[d] / sum : 0.0;
      REQUIRE(std::fabs(out[i * 64 + d] - expected) <= 1e-4);
    }
  }
}

TEST_CASE("argument errors throw sgt::Error") {
  Problem p = random_problem({2, 5, 4, 2, 16}, {0.25f, true, 0}, 41);
  std::vector<float> out(p.rows() * p.q_cols());
  const sgt::TensorView<const float> q(p.q.data(), {2, 5, 64}), k(p.k.data(), {2, 5, 32}),
      v(p.v.data(), {2, 5, 32});
  const sgt::TensorView<float> o(out.data(), {2, 5, 64});
  for (Kernel kernel : {kSdpa, kFlash}) {
    CHECK_NOTHROW(kernel(p.shape, p.options, q, k, v, nullptr, o, nullptr));
    // [B*S, heads*hd] views are accepted too.
    CHECK_NOTHROW(kernel(p.shape, p.options, {p.q.data(), {10, 64}}, {p.k.data(), {10, 32}},
                         {p.v.data(), {10, 32}}, nullptr, {out.data(), {10, 64}}, nullptr));

    CHECK_THROWS_AS(kernel({2, 5, 4, 3, 16}, p.options, q, k, v, nullptr, o, nullptr), sgt::Error);
    CHECK_THROWS_AS(kernel({2, 5, 0, 2, 16}, p.options, q, k, v, nullptr, o, nullptr), sgt::Error);
    CHECK_THROWS_AS(kernel({2, 5, 4, 2, 0}, p.options, q, k, v, nullptr, o, nullptr), sgt::Error);
    AttentionOptions bad_scale = p.options;
    bad_scale.scale = kNaN;
    CHECK_THROWS_AS(kernel(p.shape, bad_scale, q, k, v, nullptr, o, nullptr), sgt::Error);
    try {
      kernel({2, 5, 4, 3, 16}, p.options, q, k, v, nullptr, o, nullptr);
      FAIL("no throw");
    } catch (const sgt::Error& e) {
      CHECK(std::string(e.what()).find("not a multiple of num_kv_heads") != std::string::npos);
    }

    auto tensor_of_error = [&](auto&& call) -> std::string {
      try {
        call();
      } catch (const sgt::Error& e) {
        return e.tensor();
      }
      return "(no error)";
    };
    // q with the kv width, k with one row too few, v with the right count but wrong last dim,
    // out of the wrong size, null data.
    CHECK(tensor_of_error([&] {
            kernel(p.shape, p.options, {p.q.data(), {2, 5, 32}}, k, v, nullptr, o, nullptr);
          }) == "q");
    CHECK(tensor_of_error([&] {
            kernel(p.shape, p.options, q, {p.k.data(), {9, 32}}, v, nullptr, o, nullptr);
          }) == "k");
    CHECK(tensor_of_error([&] {
            kernel(p.shape, p.options, q, k, {p.v.data(), {2, 10, 16}}, nullptr, o, nullptr);
          }) == "v");
    CHECK(tensor_of_error([&] {
            kernel(p.shape, p.options, q, k, v, nullptr, {out.data(), {2, 5, 63}}, nullptr);
          }) == "out");
    CHECK(tensor_of_error([&] {
            kernel(p.shape, p.options, q, {static_cast<const float*>(nullptr), {2, 5, 32}}, v,
                   nullptr, o, nullptr);
          }) == "k");
    // A shape whose element count overflows size_t.
    CHECK_THROWS_AS(kernel({std::size_t(1) << 40, std::size_t(1) << 40, 4, 2, 16}, p.options, q, k,
                           v, nullptr, o, nullptr),
                    sgt::Error);
  }
  // Empty batch or sequence: nothing to do, no error.
  CHECK_NOTHROW(sgt::kernels::flash_attention({0, 5, 4, 2, 16}, p.options, {nullptr, {0, 5, 64}},
                                              {nullptr, {0, 5, 32}}, {nullptr, {0, 5, 32}}, nullptr,
                                              {nullptr, {0, 5, 64}}, nullptr));
}

// The smallest power-of-two head_dim whose flash slot no longer fits the stack slot. The tiles
// shrink with the vector width (a query block is a multiple of the lane count), so where this
// happens depends on the instruction set: 512 with 16 lanes, 1024 with 8, 2048 with 4. 0 if no
// head_dim up to 8192 takes the heap path.
constexpr std::size_t smallest_heap_head_dim() {
  for (std::size_t hd = 256; hd <= 8192; hd *= 2)
    if (sgt::kernels::detail::flash_slot_layout(hd).floats >
        sgt::kernels::detail::kFlashStackSlotFloats)
      return hd;
  return 0;
}

TEST_CASE(
    "heads too wide for the stack slot take the heap-scratch path, of the advertised size, "
    "and match sdpa") {
  const std::size_t head_dim = smallest_heap_head_dim();
  MESSAGE("heap path from head_dim " << head_dim << " with " << sgt::kernels::detail::kFlashLanes
                                     << " lanes");
  REQUIRE(head_dim > 256);  // up to 256 the stack slot is promised (static_assert in the header)
  REQUIRE(sgt::kernels::detail::flash_slot_layout(head_dim).floats >
          sgt::kernels::detail::kFlashStackSlotFloats);
  AttentionOptions o;
  o.scale = sgt::kernels::default_attention_scale(head_dim);
  Problem p = random_problem({2, 70, 4, 2, head_dim}, o, 99);
  p.mask.assign(2 * 70, 1);
  std::fill(p.mask.begin(), p.mask.begin() + 9, 0);
  expect_matches(p.run(kFlash), p.run(kSdpa), tolerance(p, 2e-5f), describe(p));
  expect_thread_invariant([&](sgt::ThreadPool* pool) { return p.run(kFlash, pool); }, {1, 2, 3},
                          describe(p));

  // The one heap buffer is flash_attention_scratch_bytes: a slot of tile scratch per thread,
  // O(tile x threads) and independent of seq_len.
  sgt::ThreadPool pool(3);
  std::vector<float> out(p.rows() * p.q_cols(), kNaN);
  const auto counted = allocations_during([&] { p.run_into(kFlash, &pool, out); });
  const std::size_t scratch = sgt::kernels::flash_attention_scratch_bytes(p.shape, 3);
  MESSAGE("flash_attention scratch for head_dim " << head_dim << ", 3 threads: " << scratch
                                                  << " bytes");
  CHECK(counted.largest == scratch);
  // Three slots of at most four Bq x head_dim tiles each (Bq = 8 at head_dim 1024 on AVX2: 32 KiB
  // a tile, plus the packed v tile where kFlashPackV), nothing that grows with seq_len.
  CHECK(scratch < 3u * 100 * 1024);
  CHECK(scratch == sgt::kernels::flash_attention_scratch_bytes({2, 32768, 4, 2, head_dim}, 3));
  CHECK(scratch > sgt::kernels::flash_attention_scratch_bytes(p.shape, 1));
}

namespace {

// The formula of attention.hpp in double, soft cap included: the yardstick both kernels meet.
std::vector<float> plain_attention(const Problem& p) {
  const AttentionShape& s = p.shape;
  const std::size_t D = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const double cap = p.options.logit_softcap;
  std::vector<float> out(p.rows() * p.q_cols(), 0.0f);
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.num_heads; ++h)
      for (std::size_t i = 0; i < s.seq_len; ++i) {
        std::vector<double> w(s.seq_len, 0.0);
        double top = -INFINITY;
        for (std::size_t j = 0; j < s.seq_len; ++j) {
          if (!sgt::kernels::key_visible(p.options, p.mask_ptr(), b, s.seq_len, i, j)) continue;
          double dot = 0;
          for (std::size_t d = 0; d < D; ++d)
            dot += double(p.q[(b * s.seq_len + i) * p.q_cols() + h * D + d]) *
                   p.k[(b * s.seq_len + j) * p.kv_cols() + h / group * D + d];
          double score = p.options.scale * dot;
          if (cap != 0) score = cap * std::tanh(score / cap);
          w[j] = score;
          top = std::max(top, score);
        }
        if (top == -INFINITY) continue;
        double sum = 0;
        for (std::size_t j = 0; j < s.seq_len; ++j) {
          if (!sgt::kernels::key_visible(p.options, p.mask_ptr(), b, s.seq_len, i, j)) {
            w[j] = 0;
            continue;
          }
          w[j] = std::exp(w[j] - top);
          sum += w[j];
        }
        for (std::size_t d = 0; d < D; ++d) {
          double acc = 0;
          for (std::size_t j = 0; j < s.seq_len; ++j)
            if (w[j] != 0) acc += w[j] * p.v[(b * s.seq_len + j) * p.kv_cols() + h / group * D + d];
          out[(b * s.seq_len + i) * p.q_cols() + h * D + d] = static_cast<float>(acc / sum);
        }
      }
  return out;
}

}  // namespace

TEST_CASE(
    "logit soft-capping: sdpa and flash_attention match the plain formula, windows and "
    "padding included, and the cap changes the result") {
  struct Case {
    AttentionShape shape;
    AttentionOptions options;
  };
  // Gemma 2's cap is 50 on scores of ~|q||k|/sqrt(d); q of magnitude 6 here puts many scores near
  // and beyond a cap of 5, where tanh bends: a kernel that skipped or misplaced the cap fails.
  const Case cases[] = {
      {{2, 37, 4, 2, 16}, {0.25f, true, 0, 5.0f}},
      {{1, 70, 3, 3, 24}, {0.2f, true, 9, 5.0f}},     // a window shorter than the sequence
      {{2, 65, 8, 2, 64}, {0.125f, true, 16, 2.0f}},  // several key blocks, GQA 4:1
      {{1, 20, 2, 1, 7}, {0.4f, false, 0, 3.0f}},     // not causal, odd head_dim
  };
  sgt::ThreadPool pool(2);
  std::uint32_t seed = 900;
  for (const Case& c : cases) {
    Problem p = random_problem(c.shape, c.options, seed++, 6.0f);
    p.mask.assign(p.rows(), 1);
    std::fill(p.mask.begin(), p.mask.begin() + 3, 0);  // left padding of row 0
    const std::vector<float> want = plain_attention(p);
    for (Kernel kernel : {kSdpa, kFlash}) {
      const std::string what = describe(p) + " cap=" + std::to_string(c.options.logit_softcap) +
                               (kernel == kFlash ? " flash" : " sdpa");
      expect_matches(p.run(kernel), want, tolerance(p, 2e-5f), what);
      expect_thread_invariant([&](sgt::ThreadPool* pl) { return p.run(kernel, pl); }, {1, 2, 3},
                              [&] { return what; });
    }
    Problem uncapped = p;
    uncapped.options.logit_softcap = 0.0f;
    CHECK(sgt_test::max_error(uncapped.run(kFlash), want) > 100 * tolerance(p, 2e-5f));
  }
  AttentionOptions bad{0.5f, true, 0, -1.0f};
  Problem p = random_problem({1, 4, 1, 1, 8}, bad, 1);
  CHECK_THROWS_AS(p.run(kFlash), sgt::Error);
  CHECK_THROWS_AS(p.run(kSdpa), sgt::Error);
}
