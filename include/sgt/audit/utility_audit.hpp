// UtilityAudit: what the noise costs the base model. audit/recovery_audit.hpp asks whether a
// protected prompt still reveals its tokens; this asks whether the base model (the CausalLM the
// transform protects prompts for) still understands it. For one sequence and every prompt position
// t, the base model's next-token distribution from the clean ids, P_t, is compared with the one
// from each draw's protected embeddings, Q_dt:
//
//   kl     KL(P_t || Q_dt) = sum_v P_t(v) (log P_t(v) - log Q_dt(v)), in nats; both log-softmaxes
//          in double from the f32 logits (max subtracted first), so no probability underflows
//   top1   argmax Q_dt == argmax P_t (the first index on ties, as torch.argmax)
//   rank   the rank of c = argmax P_t under Q_dt: #{v : q_v > q_c} + #{v < c : q_v == q_c}, so 0
//          exactly when top1 holds
//
// averaged over the draws per position, and over the positions the noise can reach (t at or after
// the first protected token: earlier positions see only clean tokens through the causal mask, so
// their numbers are 0 by construction and would only dilute the mean). Plus the first N greedy
// tokens of the answer to the clean prompt and to draw 0's protected prompt (lm/generate.hpp).
//
// Draws arrive one at a time (add_draw), so memory stays bounded by one draw whatever N is:
// audit_with_utility feeds it from audit_transform's per-draw callback. What it keeps: the clean
// logits [S, V] (f32) and their per-position log-sum-exp, the KV cache for S + N - 1 positions, and
// the per-draw numbers. B = 1 only: the base model's forward has no padding mask.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/audit/recovery_audit.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/request.hpp"
#include "sgt/lm/base_compatibility.hpp"
#include "sgt/lm/causal_lm.hpp"
#include "sgt/lm/generate.hpp"
#include "sgt/lm/token_sampler.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct UtilityOptions {
  std::size_t new_tokens = 16;            // greedy tokens of each answer (0: no answers)
  std::vector<std::int64_t> stop_tokens;  // an answer stops at one of these (kept), e.g. eos
  LmRunOptions run;                       // the base model's pool, precision, kernels
};

struct PositionUtility {
  std::int64_t clean_top1 = 0;  // argmax P_t
  bool reached = false;         // a protected token at or before t
  // Per draw:
  std::vector<double> kl;
  std::vector<std::int64_t> protected_top1;  // argmax Q_dt
  std::vector<std::uint64_t> rank;           // of clean_top1 under Q_dt
  // Over the draws:
  double mean_kl = 0, top1_agreement = 0, mean_rank = 0;
};

struct UtilityReport {
  std::size_t draws = 0, seq_len = 0, vocab_size = 0;
  std::size_t reached_positions = 0;       // positions at or after the first protected token
  std::vector<PositionUtility> positions;  // [S]
  // Over the reached positions and the draws (0 when no token is protected):
  double mean_kl = 0, top1_agreement = 0, mean_rank = 0;
  std::vector<std::int64_t> clean_answer;      // greedy new tokens from the clean ids
  std::vector<std::int64_t> protected_answer;  // greedy new tokens from draw 0's embeddings
};

class UtilityAudit {
 public:
  // Runs the clean prompt: its logits at every position and its greedy answer.
  UtilityAudit(const CausalLM& base, const TransformInput& in, UtilityOptions options = {})
      : base_(base), options_(std::move(options)) {
    if (in.batch != 1)
      throw Error("the utility audit takes one sequence, the request has " +
                  std::to_string(in.batch) + " (audit each row on its own)")
          .at_key("input_ids");
    const std::size_t S = in.seq_len, V = base.vocab_size();
    if (S == 0) throw Error("the utility audit needs a non-empty prompt").at_key("input_ids");
    for (std::size_t s = 0; s < in.attention_mask.size(); ++s)
      if (!in.is_real(s))
        throw Error("the utility audit runs the prompt without a padding mask: drop the padding")
            .at_key("attention_mask")
            .at_position(static_cast<std::int64_t>(s));
    report_.seq_len = S;
    report_.vocab_size = V;
    report_.positions.resize(S);
    bool reached = false;
    for (std::size_t s = 0; s < S; ++s) {
      reached = reached || in.is_protected(s);
      report_.positions[s].reached = reached;
      report_.reached_positions += reached;
    }
    cache_ = base.make_cache(1, cache_positions_needed(S, options_.new_tokens));

    LmInput clean = prompt_input(S);
    clean.input_ids = in.input_ids;
    base.forward(clean, cache_, ws_, options_.run, logits_);
    clean_logits_.assign(logits_.values.begin(), logits_.values.end());
    clean_lse_.resize(S);
    for (std::size_t s = 0; s < S; ++s) {
      const float* row = clean_logits_.data() + s * V;
      clean_lse_[s] = log_sum_exp(row, V);
      report_.positions[s].clean_top1 = TokenSampler::argmax(row, V);
    }
    report_.clean_answer = answer(clean);
  }

  // One draw's protected embeddings [1, S, H] (or [S, H]). Draw 0 also gets its greedy answer.
  void add_draw(TensorView<const float> protected_embeds) {
    const std::size_t S = report_.seq_len, V = report_.vocab_size, H = base_.hidden_size();
    if (protected_embeds.size() != S * H || protected_embeds.cols() != H)
      throw Error("protected embeddings have shape " + protected_embeds.shape_string() +
                  ", expected [1, " + std::to_string(S) + ", " + std::to_string(H) + "]")
          .at_key("inputs_embeds");
    LmInput noisy = prompt_input(S);
    noisy.inputs_embeds = TensorView<const float>(protected_embeds.data(), {1, S, H});
    base_.forward(noisy, cache_, ws_, options_.run, logits_);
    for (std::size_t s = 0; s < S; ++s) {
      PositionUtility& p = report_.positions[s];
      const float* clean = clean_logits_.data() + s * V;
      const float* q = logits_.row(0, s);
      const double lse_q = log_sum_exp(q, V);
      double kl = 0;
      for (std::size_t v = 0; v < V; ++v) {
        const double log_p = double(clean[v]) - clean_lse_[s];
        kl += std::exp(log_p) * (log_p - (double(q[v]) - lse_q));
      }
      // Rounding can leave a tiny negative sum for identical distributions; KL is >= 0.
      p.kl.push_back(std::max(kl, 0.0));
      p.protected_top1.push_back(TokenSampler::argmax(q, V));
      const auto c = static_cast<std::size_t>(p.clean_top1);
      std::uint64_t rank = 0;
      for (std::size_t v = 0; v < V; ++v) rank += q[v] > q[c] || (v < c && q[v] == q[c]);
      p.rank.push_back(rank);
    }
    if (report_.draws == 0) report_.protected_answer = answer(noisy);
    ++report_.draws;
    summarize();
  }

  const UtilityReport& report() const noexcept { return report_; }

 private:
  static LmInput prompt_input(std::size_t S) {
    LmInput in;
    in.batch = 1;
    in.seq_len = S;
    in.cache_position.resize(S);
    for (std::size_t s = 0; s < S; ++s) in.cache_position[s] = static_cast<std::int64_t>(s);
    in.logits = LogitsFor::All;
    return in;
  }

  static double log_sum_exp(const float* x, std::size_t n) {
    const double m = *std::max_element(x, x + n);
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - m);
    return m + std::log(sum);
  }

  std::vector<std::int64_t> answer(const LmInput& prompt) {
    if (options_.new_tokens == 0) return {};
    GenerateOptions g;  // greedy
    g.max_new_tokens = options_.new_tokens;
    g.stop_tokens = options_.stop_tokens;
    g.run = options_.run;
    return generate(base_, prompt, g, cache_, ws_).at(0);
  }

  void summarize() {
    const double n = double(report_.draws);
    report_.mean_kl = report_.top1_agreement = report_.mean_rank = 0;
    for (PositionUtility& p : report_.positions) {
      double kl = 0, agree = 0, rank = 0;
      for (std::size_t d = 0; d < report_.draws; ++d) {
        kl += p.kl[d];
        agree += p.protected_top1[d] == p.clean_top1;
        rank += double(p.rank[d]);
      }
      p.mean_kl = kl / n;
      p.top1_agreement = agree / n;
      p.mean_rank = rank / n;
      if (!p.reached) continue;
      report_.mean_kl += p.mean_kl;
      report_.top1_agreement += p.top1_agreement;
      report_.mean_rank += p.mean_rank;
    }
    divide_sums(report_.reached_positions,
                {&report_.mean_kl, &report_.top1_agreement, &report_.mean_rank});
  }

  const CausalLM& base_;
  UtilityOptions options_;
  UtilityReport report_;
  KvCache cache_;
  LmWorkspace ws_;
  LmLogits logits_;
  std::vector<float> clean_logits_;  // [S, V]
  std::vector<double> clean_lse_;    // [S]
};

// audit_transform (nearest-neighbour recovery) and the utility audit of the same draws in one
// pass: each draw's protected embeddings go to the base model as they are made.
inline UtilityReport audit_with_utility(const Transform& model, const CausalLM& base,
                                        const TransformInput& in, AuditReport& audit,
                                        AuditOptions audit_options = {},
                                        UtilityOptions utility_options = {}) {
  check_base_compatible(model, base);
  UtilityAudit utility(base, in, std::move(utility_options));
  audit_options.on_draw = [&](std::size_t, TensorView<const float> transformed) {
    utility.add_draw(transformed);
  };
  audit = audit_transform(model, in, audit_options);
  return utility.report();
}

SGT_ISA_END
}  // namespace sgt
