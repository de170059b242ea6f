// How much of a request a transform protected, and how far the protected embeddings moved from
// the clean ones: the one-line summary `sgt transform` prints, for any front end.
//
// The clean embeddings are looked up again one row at a time, so that a transform call need not
// keep a copy of all of them (keep_intermediates) just for this.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>

#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/request.hpp"
#include "sgt/kernels/embedding.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct ProtectionSummary {
  std::size_t real_tokens = 0, protected_tokens = 0;
  // Over the protected tokens (0 when there are none): the L2 distance clean -> protected and the
  // clean embedding's L2 norm, averaged, and the distances' sum over the norms' sum.
  double mean_distance = 0, mean_clean_norm = 0, distance_ratio = 0;
  // Protected share of the real tokens, in percent.
  double protected_percent() const noexcept {
    return real_tokens ? 100.0 * double(protected_tokens) / double(real_tokens) : 0.0;
  }
};

inline ProtectionSummary summarize_protection(const Transform& model, const TransformInput& in,
                                              const TransformResult& r) {
  const std::size_t H = r.hidden;
  ProtectionSummary s;
  double dist = 0, norm = 0;
  WipedVector<float> clean(H);
  for (std::size_t t = 0; t < r.batch * r.seq_len; ++t) {
    s.real_tokens += in.is_real(t);
    if (!in.is_protected(t)) continue;
    ++s.protected_tokens;
    model.embed(&in.input_ids[t], 1, TensorView<float>(clean.data(), {1, H}));
    double d2 = 0, n2 = 0;
    for (std::size_t i = 0; i < H; ++i) {
      const double d = double(r.transformed[t * H + i]) - double(clean[i]);
      d2 += d * d;
      n2 += double(clean[i]) * clean[i];
    }
    dist += std::sqrt(d2);
    norm += std::sqrt(n2);
  }
  if (s.protected_tokens) {
    s.mean_distance = dist / double(s.protected_tokens);
    s.mean_clean_norm = norm / double(s.protected_tokens);
  }
  s.distance_ratio = norm > 0 ? dist / norm : 0.0;
  return s;
}

// The summary for people: the protected share and the noise's source, and how far the protected
// embeddings moved (when any token is protected).
inline std::string to_text(const ProtectionSummary& s, NoiseSource noise) {
  const char* source =
      noise == NoiseSource::Torch ? "torch-seeded" : enum_name(kNoiseSourceNames, noise);
  char line[256];
  std::snprintf(line, sizeof line, "protected tokens: %zu of %zu real (%.0f%%), noise: %s\n",
                s.protected_tokens, s.real_tokens, s.protected_percent(), source);
  std::string out = line;
  if (s.protected_tokens) {
    std::snprintf(line, sizeof line,
                  "mean L2 distance clean -> protected: %.4f (clean norm %.4f, ratio %.2f)\n",
                  s.mean_distance, s.mean_clean_norm, s.distance_ratio);
    out += line;
  }
  return out;
}

SGT_ISA_END
}  // namespace sgt
