// The KV-cache kernels: cached_attention against its plain reference and against sdpa (a full
// sequence is a cache filled from 0), and apply_rope_at against apply_rope (positions 0..S-1) and
// its reference (any positions).
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include <sgt/kernels/attention.hpp>
#include <sgt/kernels/cached_attention.hpp>
#include <sgt/kernels/rope.hpp>
#include <sgt/kernels/rope_positions.hpp>
#include <sgt/kernels/sdpa.hpp>

#include "support/kernel_harness.hpp"
#include "support/stored_tensor.hpp"

namespace {

using sgt::TensorView;
using sgt::kernels::AttentionOptions;
using sgt::kernels::CachedAttentionShape;
using sgt_test::uniform_values;

struct CacheProblem {
  CachedAttentionShape shape;
  AttentionOptions options;
  std::vector<float> q, k, v;  // q [B, T, H*D]; k, v [B, L, KV*D]
  std::vector<std::size_t> positions;

  std::vector<float> run(bool reference, sgt::ThreadPool* pool = nullptr) const {
    const CachedAttentionShape& s = shape;
    std::vector<float> out(q.size(), -1.0f);
    TensorView<const float> qv(q.data(), {s.batch, s.new_tokens, s.num_heads * s.head_dim});
    TensorView<const float> kv(k.data(), {s.batch, s.cache_len, s.num_kv_heads * s.head_dim});
    TensorView<const float> vv(v.data(), {s.batch, s.cache_len, s.num_kv_heads * s.head_dim});
    TensorView<float> ov(out.data(), {s.batch, s.new_tokens, s.num_heads * s.head_dim});
    if (reference)
      sgt::kernels::cached_attention_reference(s, options, qv, kv, vv, positions.data(), ov, pool);
    else
      sgt::kernels::cached_attention(s, options, qv, kv, vv, positions.data(), ov, pool);
    return out;
  }
  std::string describe() const {
    return "B " + std::to_string(shape.batch) + " T " + std::to_string(shape.new_tokens) + " L " +
           std::to_string(shape.cache_len) + " H " + std::to_string(shape.num_heads) + " KV " +
           std::to_string(shape.num_kv_heads) + " D " + std::to_string(shape.head_dim) + " start " +
           std::to_string(positions.empty() ? 0 : positions[0]) + " window " +
           std::to_string(options.sliding_window);
  }
};

CacheProblem cache_problem(CachedAttentionShape s, std::size_t start, std::size_t window,
                           unsigned seed) {
  std::mt19937 rng(seed);
  CacheProblem p;
  p.shape = s;
  p.options.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  p.options.sliding_window = window;
  p.q = uniform_values(s.batch * s.new_tokens * s.num_heads * s.head_dim, rng, 2.0f);
  p.k = uniform_values(s.batch * s.cache_len * s.num_kv_heads * s.head_dim, rng, 2.0f);
  p.v = uniform_values(s.batch * s.cache_len * s.num_kv_heads * s.head_dim, rng, 1.0f);
  for (std::size_t t = 0; t < s.new_tokens; ++t) p.positions.push_back(start + t);
  return p;
}

}  // namespace

TEST_CASE("cached_attention matches its reference: decode, mid-cache prefill, GQA, windows") {
  struct Case {
    CachedAttentionShape shape;
    std::size_t start, window;
  };
  const Case cases[] = {
      {{1, 1, 16, 4, 2, 16}, 0, 0},      // the first token: one key
      {{1, 1, 300, 4, 2, 16}, 299, 0},   // decode at the last position: several key blocks
      {{2, 1, 200, 8, 2, 64}, 130, 0},   // batch 2, 4 query heads per kv head
      {{2, 5, 100, 4, 4, 80}, 40, 0},    // a second turn: 5 tokens mid-cache, no GQA, odd D
      {{1, 7, 200, 6, 3, 24}, 150, 70},  // a window that cuts through a block
      {{3, 3, 40, 2, 1, 8}, 30, 5},      // a window shorter than the new tokens' span
  };
  for (const Case& c : cases) {
    const CacheProblem p = cache_problem(c.shape, c.start, c.window, 11);
    const std::vector<float> got = p.run(false), want = p.run(true);
    // A softmax-weighted mean of |v| <= 1: f32 reassociation of a D-term dot product, the online
    // rescale and a sum of up to L weights, each a few ulp of values of magnitude ~1.
    sgt_test::expect_matches(got, want, 2e-6 * std::sqrt(double(c.shape.cache_len)), p.describe());
  }
}

TEST_CASE("cached_attention over a cache filled from 0 equals sdpa on the full sequence") {
  const std::size_t B = 2, S = 90, H = 4, KV = 2, D = 32;
  for (std::size_t window : {0u, 17u}) {
    const CacheProblem full = cache_problem({B, S, S, H, KV, D}, 0, window, 5);
    std::vector<float> want(full.q.size());
    sgt::kernels::AttentionOptions o = full.options;
    o.causal = true;
    sgt::kernels::sdpa({B, S, H, KV, D}, o, TensorView<const float>(full.q.data(), {B, S, H * D}),
                       TensorView<const float>(full.k.data(), {B, S, KV * D}),
                       TensorView<const float>(full.v.data(), {B, S, KV * D}), nullptr,
                       TensorView<float>(want.data(), {B, S, H * D}));
    sgt_test::expect_matches(full.run(false), want, 1e-5, full.describe() + " vs sdpa");

    // The last query alone (a decode step) sees the same keys as the full sequence's last row.
    CacheProblem last = full;
    last.shape.new_tokens = 1;
    last.positions = {S - 1};
    last.q.clear();
    for (std::size_t b = 0; b < B; ++b)
      last.q.insert(last.q.end(), full.q.begin() + ((b * S + S - 1) * H * D),
                    full.q.begin() + ((b * S + S) * H * D));
    const std::vector<float> step = last.run(false);
    std::vector<float> want_last;
    for (std::size_t b = 0; b < B; ++b)
      want_last.insert(want_last.end(), want.begin() + ((b * S + S - 1) * H * D),
                       want.begin() + ((b * S + S) * H * D));
    sgt_test::expect_matches(step, want_last, 1e-5, last.describe() + " last row vs sdpa");
  }
}

TEST_CASE("cached_attention: bit-identical for 1, 2 and 3 threads; keys past a query unread") {
  const CacheProblem p = cache_problem({2, 4, 150, 4, 2, 48}, 100, 0, 3);
  sgt_test::expect_thread_invariant([&](sgt::ThreadPool* pool) { return p.run(false, pool); });
  // NaN in every cache slot after the last new position changes nothing.
  CacheProblem poisoned = p;
  const std::size_t kvw = p.shape.num_kv_heads * p.shape.head_dim;
  for (std::size_t b = 0; b < p.shape.batch; ++b)
    for (std::size_t j = 104; j < p.shape.cache_len; ++j)
      for (std::size_t d = 0; d < kvw; ++d) {
        poisoned.k[(b * p.shape.cache_len + j) * kvw + d] = NAN;
        poisoned.v[(b * p.shape.cache_len + j) * kvw + d] = NAN;
      }
  sgt_test::expect_bit_identical(poisoned.run(false), p.run(false), "NaN past the positions");
  sgt_test::expect_bit_identical(poisoned.run(true), p.run(true), "reference, NaN past");
}

TEST_CASE("cached_attention refuses a position outside the cache") {
  CacheProblem p = cache_problem({1, 2, 10, 2, 1, 8}, 8, 0, 1);
  p.positions = {9, 10};
  CHECK_THROWS_AS(p.run(false), sgt::Error);
  CHECK_THROWS_AS(p.run(true), sgt::Error);
  p.shape.num_kv_heads = 3;
  CHECK_THROWS_AS(p.run(false), sgt::Error);
}

TEST_CASE("apply_rope_at: positions 0..S-1 give apply_rope's bits; any positions its reference's") {
  sgt::kernels::RopeParameters params;
  params.head_dim = 40;
  params.theta = 10000.0;
  params.partial_rotary_factor = 0.8;  // 32 rotated, 8 passed through
  const sgt::kernels::RopeTable table(params, 64);
  const std::size_t B = 2, S = 9, H = 3, D = 40;
  std::mt19937 rng(9);
  const std::vector<float> x = uniform_values(B * S * H * D, rng, 3.0f);

  std::vector<float> a = x, b = x;
  std::vector<std::size_t> positions(S);
  for (std::size_t t = 0; t < S; ++t) positions[t] = t;
  sgt::kernels::apply_rope(TensorView<float>(a.data(), {B, S, H * D}), H, D, table);
  sgt::kernels::apply_rope_at(TensorView<float>(b.data(), {B, S, H * D}), H, D, table,
                              positions.data());
  sgt_test::expect_bit_identical(b, a, "positions 0..S-1");

  for (std::size_t t = 0; t < S; ++t) positions[t] = 50 + t;
  std::vector<float> fast = x, ref = x;
  sgt_test::expect_thread_invariant([&](sgt::ThreadPool* pool) {
    std::vector<float> y = x;
    sgt::kernels::apply_rope_at(TensorView<float>(y.data(), {B, S, H * D}), H, D, table,
                                positions.data(), pool);
    return y;
  });
  sgt::kernels::apply_rope_at(TensorView<float>(fast.data(), {B, S, H * D}), H, D, table,
                              positions.data());
  sgt::kernels::apply_rope_at_reference(TensorView<float>(ref.data(), {B, S, H * D}), H, D, table,
                                        positions.data());
  // Both compute fma(x, cos, +-(x' * sin)) with the same table values: the same bits.
  sgt_test::expect_bit_identical(fast, ref, "positions 50..58");
  // A token at position p rotates as the p-th token of a sequence does.
  std::vector<float> seq(B * 59 * H * D, 0.0f), one = x;
  for (std::size_t bb = 0; bb < B; ++bb)
    std::copy(x.begin() + bb * S * H * D, x.begin() + (bb * S + 1) * H * D,
              seq.begin() + (bb * 59 + 50) * H * D);
  sgt::kernels::apply_rope(TensorView<float>(seq.data(), {B, 59, H * D}), H, D, table);
  std::vector<std::size_t> p50 = {50};
  std::vector<float> first;
  for (std::size_t bb = 0; bb < B; ++bb)
    first.insert(first.end(), x.begin() + bb * S * H * D, x.begin() + (bb * S + 1) * H * D);
  sgt::kernels::apply_rope_at(TensorView<float>(first.data(), {B, 1, H * D}), H, D, table,
                              p50.data());
  std::vector<float> want;
  for (std::size_t bb = 0; bb < B; ++bb)
    want.insert(want.end(), seq.begin() + (bb * 59 + 50) * H * D,
                seq.begin() + (bb * 59 + 51) * H * D);
  sgt_test::expect_bit_identical(first, want, "position 50 alone vs the 50th of a sequence");

  positions[S - 1] = 64;  // outside the table
  CHECK_THROWS_AS(sgt::kernels::apply_rope_at(TensorView<float>(b.data(), {B, S, H * D}), H, D,
                                              table, positions.data()),
                  sgt::Error);
}

TEST_CASE("cached_attention with logit soft-capping matches its reference and sdpa") {
  const std::size_t B = 2, S = 75, H = 4, KV = 2, D = 16;
  for (std::size_t window : {0u, 11u}) {
    CacheProblem full = cache_problem({B, S, S, H, KV, D}, 0, window, 21);
    for (float& x : full.q) x *= 4.0f;  // scores beyond the cap, where tanh bends
    full.options.logit_softcap = 1.5f;
    std::vector<float> want(full.q.size());
    sgt::kernels::sdpa({B, S, H, KV, D}, full.options,
                       TensorView<const float>(full.q.data(), {B, S, H * D}),
                       TensorView<const float>(full.k.data(), {B, S, KV * D}),
                       TensorView<const float>(full.v.data(), {B, S, KV * D}), nullptr,
                       TensorView<float>(want.data(), {B, S, H * D}));
    sgt_test::expect_matches(full.run(false), want, 1e-5, full.describe() + " capped vs sdpa");
    sgt_test::expect_matches(full.run(true), want, 1e-5, full.describe() + " reference vs sdpa");
    CacheProblem uncapped = full;
    uncapped.options.logit_softcap = 0.0f;
    CHECK(sgt_test::max_error(uncapped.run(false), want) > 1e-3);
  }
}
