// audit_transform: how well does the transform hide a prompt? It transforms the request N times
// (fresh secure noise per draw, or the caller's stored draws) and asks, for every protected token
// and draw, whether the protected embedding's nearest row of the embedding table is still the
// original token (kernels/nearest_rows.hpp: L2 and cosine, lowest id wins ties). Reported per
// protected token and averaged over them:
//   recovery_l2, recovery_cosine  fraction of draws whose nearest row is the original id; near 1
//                                 means the noise does not hide the token from a nearest-neighbour
//                                 inversion, near 0 means it does;
//   mean_rank_l2                  the original id's L2 rank (0 = nearest), averaged over draws;
//   mean_cosine                   cosine similarity of clean and protected embedding, averaged;
// plus min/mean/max of sigma over the protected tokens' elements (sigma does not depend on the
// noise), and the L2-nearest ids of every draw (reconstructions of the prompt).
// Unprotected tokens (noise_mask 0 or padding) are sent clean: they are listed, not searched.
// Any batch size works; tokens are indexed flat, b * S + s.
// AuditOptions::on_draw sees each draw's protected embeddings as soon as they are made (the utility
// audit of audit/utility_audit.hpp feeds them to the base model), so no caller has to keep N draws.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/request.hpp"
#include "sgt/kernels/nearest_rows.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {
SGT_ISA_BEGIN

// The pool, precision, attention and reference switch (ExecOptions, model/ops.hpp) are those of
// the transform runs; the pool also runs the nearest-row search.
struct AuditOptions : ExecOptions {
  std::size_t draws = 16;  // ignored when injected_draws is given (its first dimension counts)
  std::size_t max_tokens = kDefaultMaxTransformTokens;  // the transform's RunOptions::max_tokens
  // Stored eps for reproducible audits: [N, B, S, H], or [N, S, H] when B = 1. Empty: secure.
  TensorView<const float> injected_draws;
  std::size_t score_floats = kernels::NearestRows::kDefaultScoreFloats;  // see NearestRows
  // Called once per draw, in order, with that draw's protected embeddings [B, S, H]; the view is
  // valid only during the call (the next draw reuses the buffer). Empty: not called.
  std::function<void(std::size_t draw, TensorView<const float> transformed)> on_draw;
};

struct TokenAudit {
  std::int64_t id = 0;
  bool is_protected = false;
  // Protected tokens only (0 / empty otherwise):
  double recovery_l2 = 0, recovery_cosine = 0, mean_rank_l2 = 0, mean_cosine = 0;
  std::vector<std::int32_t> nearest_l2, nearest_cosine;  // per draw
  std::vector<std::uint64_t> rank_l2;                    // per draw: the original id's L2 rank
};

struct AuditReport {
  std::size_t draws = 0, batch = 0, seq_len = 0, vocab_size = 0, protected_tokens = 0;
  std::vector<TokenAudit> tokens;  // [B * S]
  // Averages over protected tokens (0 when there are none):
  double recovery_l2 = 0, recovery_cosine = 0, mean_rank_l2 = 0, mean_cosine = 0;
  // Over every element of sigma at protected tokens (0 when there are none):
  double sigma_min = 0, sigma_mean = 0, sigma_max = 0;

  // The prompt as draw `d`'s L2 nearest neighbours read it: protected tokens replaced by their
  // nearest id, the others as sent. Row b of the batch, padding left out.
  std::vector<std::int32_t> reconstructed_ids(std::size_t d, std::size_t b,
                                              const TransformInput& in) const {
    std::vector<std::int32_t> ids;
    for (std::size_t s = 0; s < seq_len; ++s) {
      const std::size_t t = b * seq_len + s;
      if (!in.is_real(t)) continue;
      const TokenAudit& a = tokens[t];
      ids.push_back(a.is_protected ? a.nearest_l2.at(d) : static_cast<std::int32_t>(a.id));
    }
    return ids;
  }
};

// Sums over `count` items become their means (they stay 0 when there are none).
inline void divide_sums(std::size_t count, std::initializer_list<double*> sums) {
  if (count == 0) return;
  for (double* s : sums) *s /= double(count);
}

inline AuditReport audit_transform(const Transform& model, const TransformInput& in,
                                   const AuditOptions& options = {}) {
  const std::size_t B = in.batch, S = in.seq_len, H = model.hidden_size(), T = B * S;
  std::size_t N = options.draws;
  const TensorView<const float>& stored = options.injected_draws;
  const bool injected = stored.data() != nullptr || stored.rank() != 0;
  if (injected) {
    const bool ok =
        (stored.rank() == 4 && stored.dim(1) == B && stored.dim(2) == S && stored.dim(3) == H) ||
        (stored.rank() == 3 && B == 1 && stored.dim(1) == S && stored.dim(2) == H);
    if (!ok || stored.dim(0) == 0 || !stored.data())
      throw Error("noise draws have shape " + stored.shape_string() + ", expected [N >= 1, " +
                  (B == 1 ? "" : std::to_string(B) + ", ") + std::to_string(S) + ", " +
                  std::to_string(H) + "]")
          .at_tensor("noise");
    N = stored.dim(0);
  }
  if (N == 0) throw Error("an audit needs at least one draw");

  AuditReport report;
  report.draws = N;
  report.batch = B;
  report.seq_len = S;
  report.vocab_size = model.config().vocab_size;
  report.tokens.resize(T);

  RunOptions run;
  static_cast<ExecOptions&>(run) = options;  // the transform runs as the audit was asked to
  run.keep_intermediates = true;             // the clean embeddings and sigma
  run.max_tokens = options.max_tokens;
  run.noise = injected ? NoiseSource::Injected : NoiseSource::Secure;

  const kernels::NearestRows search(model.embedding_table(), options.pool, options.score_floats);
  const float scale = model.embedding_scale();
  const std::size_t block = search.block_rows();
  WipedVector<float> queries(block * H), scores;
  std::vector<std::int64_t> targets(block);
  std::vector<std::size_t> query_token(block);
  std::vector<kernels::NearestRowMatch> matches(block);
  std::vector<std::uint64_t> rank_sum(T, 0);
  std::size_t pending = 0;
  auto flush = [&] {
    search.search(TensorView<const float>(queries.data(), {pending, H}), targets.data(),
                  matches.data(), scores, options.pool);
    for (std::size_t r = 0; r < pending; ++r) {
      TokenAudit& a = report.tokens[query_token[r]];
      a.nearest_l2.push_back(matches[r].l2);
      a.nearest_cosine.push_back(matches[r].cosine);
      a.rank_l2.push_back(matches[r].rank_l2);
      rank_sum[query_token[r]] += matches[r].rank_l2;
    }
    pending = 0;
  };

  std::vector<double> cosine_sum(T, 0);
  TransformResult result;
  Workspace ws;
  for (std::size_t d = 0; d < N; ++d) {
    if (injected)
      run.injected_noise = TensorView<const float>(stored.data() + d * T * H, {B, S, H});
    model.run(in, run, ws, result);
    if (options.on_draw)
      options.on_draw(d, TensorView<const float>(result.transformed.data(), {B, S, H}));
    for (std::size_t t = 0; t < T; ++t) {
      const bool is_protected = in.is_protected(t);
      TokenAudit& a = report.tokens[t];
      a.id = in.input_ids[t];
      a.is_protected = is_protected;
      if (!is_protected) continue;
      const float* clean = result.embeddings.data() + t * H;
      const float* noisy = result.transformed.data() + t * H;
      double dot = 0, nc = 0, nn = 0;
      for (std::size_t i = 0; i < H; ++i) {
        dot += double(clean[i]) * noisy[i];
        nc += double(clean[i]) * clean[i];
        nn += double(noisy[i]) * noisy[i];
      }
      cosine_sum[t] += (nc > 0 && nn > 0) ? dot / std::sqrt(nc * nn) : 0.0;
      // The search runs over the stored table E, and the transform's embeddings live on the
      // scaled table s E: ||y - s e||^2 = s^2 ||y / s - e||^2 and cosines ignore s, so y / s
      // ranks the rows as y ranks s E (up to the lookup's bf16 / f16 rounding of s e).
      float* query = queries.data() + pending * H;
      if (scale == 1.0f)
        std::copy(noisy, noisy + H, query);
      else
        for (std::size_t i = 0; i < H; ++i) query[i] = noisy[i] / scale;
      targets[pending] = a.id;
      query_token[pending] = t;
      if (++pending == block) flush();
    }
    if (d == 0) {  // sigma is the same in every draw
      double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
      std::size_t count = 0;
      for (std::size_t t = 0; t < T; ++t) {
        if (!report.tokens[t].is_protected) continue;
        for (std::size_t i = 0; i < H; ++i) {
          const double s = result.sigma[t * H + i];
          lo = std::min(lo, s);
          hi = std::max(hi, s);
          sum += s;
          ++count;
        }
      }
      if (count) {
        report.sigma_min = lo;
        report.sigma_max = hi;
        report.sigma_mean = sum / double(count);
      }
    }
  }
  if (pending) flush();

  for (std::size_t t = 0; t < T; ++t) {
    TokenAudit& a = report.tokens[t];
    if (!a.is_protected) continue;
    std::size_t hits_l2 = 0, hits_cos = 0;
    for (std::size_t d = 0; d < N; ++d) {
      hits_l2 += a.nearest_l2[d] == a.id;
      hits_cos += a.nearest_cosine[d] == a.id;
    }
    a.recovery_l2 = double(hits_l2) / double(N);
    a.recovery_cosine = double(hits_cos) / double(N);
    a.mean_rank_l2 = double(rank_sum[t]) / double(N);
    a.mean_cosine = cosine_sum[t] / double(N);
    ++report.protected_tokens;
    report.recovery_l2 += a.recovery_l2;
    report.recovery_cosine += a.recovery_cosine;
    report.mean_rank_l2 += a.mean_rank_l2;
    report.mean_cosine += a.mean_cosine;
  }
  divide_sums(report.protected_tokens, {&report.recovery_l2, &report.recovery_cosine,
                                        &report.mean_rank_l2, &report.mean_cosine});
  return report;
}

SGT_ISA_END
}  // namespace sgt
