// TokenSampler: the next token from a row of logits -- greedy, or temperature / top-p (nucleus)
// sampling with a seeded, reproducible draw. What `sgt generate` decodes with.
//
//   temperature 0      argmax; the lowest id wins a tie (torch.argmax's rule), so greedy decoding
//                      matches transformers' `generate(do_sample=False)`.
//   temperature T > 0  p = softmax(logits / T) (in double); top_p < 1 keeps the most probable
//                      tokens, highest first (ties: lower id first), up to and including the one
//                      whose cumulative probability reaches top_p -- at least one token, as
//                      transformers' TopPLogitsWarper does -- and renormalizes; then one uniform
//                      draw u in [0, 1) picks the token whose cumulative interval holds u.
//
// The draw for the k-th sampled token (k = 0, 1, ...) is 53 bits of ChaCha20 keystream block k
// under a key made from the seed: the same seed gives the same tokens on every machine and
// instruction set (the keystream is bit-identical everywhere), independent of how many tokens were
// greedy before. It is not torch's generator: a seeded answer does not reproduce transformers'
// `generate(do_sample=True)` token for token, only its distribution.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/random/chacha20.hpp"

namespace sgt {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;        // (0, 1]; 1: the whole vocabulary
  std::uint64_t seed = 0;    // the draws' key (temperature > 0)
};

SGT_ISA_BEGIN

class TokenSampler {
 public:
  explicit TokenSampler(const SamplingOptions& options) : options_(options) {
    if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature))
      throw Error("sampling: temperature must be a finite number >= 0, got " +
                  std::to_string(options.temperature));
    if (!(options.top_p > 0.0 && options.top_p <= 1.0))
      throw Error("sampling: top_p must be in (0, 1], got " + std::to_string(options.top_p));
    for (int i = 0; i < 8; ++i) key_[i] = static_cast<std::uint8_t>(options.seed >> (8 * i));
  }

  bool greedy() const noexcept { return options_.temperature == 0.0; }

  // The next token for one row of `vocab` logits. A NaN logit is an error (it would make every
  // comparison false and the answer arbitrary); +-inf are ordinary values.
  std::int32_t next(const float* logits, std::size_t vocab) {
    if (vocab == 0) throw Error("sampling: empty logits row");
    for (std::size_t v = 0; v < vocab; ++v)
      if (std::isnan(logits[v]))
        throw Error("sampling: the logit of token " + std::to_string(v) + " is NaN");
    if (greedy()) return argmax(logits, vocab);
    return sample(logits, vocab, uniform(draws_++));
  }

  // Lowest id among the maxima.
  static std::int32_t argmax(const float* logits, std::size_t vocab) {
    std::size_t best = 0;
    for (std::size_t v = 1; v < vocab; ++v)
      if (logits[v] > logits[best]) best = v;
    return static_cast<std::int32_t>(best);
  }

  // The distribution the next token is drawn from at temperature > 0: per id, its probability
  // after temperature and top_p (0 for the ids top_p removes); the rule above.
  const std::vector<double>& distribution(const float* logits, std::size_t vocab) {
    if (greedy()) throw Error("sampling: temperature 0 is greedy, it has no distribution");
    const double max_logit = logits[argmax(logits, vocab)];
    probs_.resize(vocab);
    double total = 0.0;
    for (std::size_t v = 0; v < vocab; ++v) {
      // max_logit = +inf: the infinite logits share the mass, everything else gets none.
      const double z = std::isinf(max_logit) && max_logit > 0
                           ? (logits[v] == max_logit ? 0.0 : -INFINITY)
                           : (double(logits[v]) - max_logit) / options_.temperature;
      probs_[v] = std::exp(z);
      total += probs_[v];
    }
    for (double& p : probs_) p /= total;
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), std::int32_t{0});
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::int32_t a, std::int32_t b) { return probs_[a] > probs_[b]; });
    // Tokens of probability 0 (a -inf logit, or one that underflows) are never drawn, not even
    // by a u that rounding leaves past the last interval.
    kept_ = vocab;
    while (kept_ > 1 && probs_[order_[kept_ - 1]] == 0.0) --kept_;
    if (options_.top_p < 1.0) {
      double cumulative = 0.0;
      for (std::size_t i = 0; i < kept_; ++i) {
        cumulative += probs_[order_[i]];
        if (cumulative >= options_.top_p) {
          kept_ = i + 1;
          break;
        }
      }
      double kept_mass = 0.0;
      for (std::size_t i = 0; i < kept_; ++i) kept_mass += probs_[order_[i]];
      for (std::size_t i = 0; i < vocab; ++i)
        probs_[order_[i]] = i < kept_ ? probs_[order_[i]] / kept_mass : 0.0;
    }
    return probs_;
  }

  // The token that draw u in [0, 1) picks from distribution(): the one whose interval holds u,
  // intervals laid out from the most probable token down; public for the tests.
  std::int32_t sample(const float* logits, std::size_t vocab, double u) {
    distribution(logits, vocab);
    double cumulative = 0.0;
    for (std::size_t i = 0; i < kept_; ++i) {
      cumulative += probs_[order_[i]];
      if (u < cumulative) return order_[i];
    }
    return order_[kept_ - 1];  // u just below 1 past a cumulative sum rounded below 1
  }

 private:
  // 53 bits of keystream block k as a double in [0, 1).
  double uniform(std::uint64_t k) const {
    std::uint8_t block[kChaCha20BlockBytes];
    chacha20_keystream_reference(key_, /*nonce=*/0x73616d706c696e67ull /* "sampling" */, k, 1,
                                 block);
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= std::uint64_t{block[i]} << (8 * i);
    return double(bits >> 11) * 0x1.0p-53;
  }

  SamplingOptions options_;
  ChaCha20Key key_{};
  std::uint64_t draws_ = 0;
  std::vector<double> probs_;
  std::vector<std::int32_t> order_;
  std::size_t kept_ = 0;
};

SGT_ISA_END
}  // namespace sgt
