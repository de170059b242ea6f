// One transform call's input, as the library takes it: B rows of S token ids with their masks. A
// plain struct with no JSON: the model (model/transform.hpp) and the request parser
// (io/transform_input.hpp) both include it, and neither needs the other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sgt {

// Row-major [B, S]. Masks hold 0/1 (any non-zero is 1).
struct TransformInput {
  std::size_t batch = 0;
  std::size_t seq_len = 0;
  std::vector<std::int64_t> input_ids;       // [B * S]
  std::vector<std::uint8_t> noise_mask;      // [B * S]: 1 = protect this token
  std::vector<std::uint8_t> attention_mask;  // [B * S]: 1 = real token; empty = all real

  // Token t (flat, b * S + t) is a real token, not padding.
  bool is_real(std::size_t t) const noexcept {
    return attention_mask.empty() || attention_mask[t] != 0;
  }
  // Token t gets noise: a real token the noise mask selects (an empty noise mask, as single()
  // takes it, selects every token). The library decides it here only: the transform and the audits.
  bool is_protected(std::size_t t) const noexcept {
    return is_real(t) && (noise_mask.empty() || noise_mask[t] != 0);
  }

  // A single sequence (B = 1). An empty noise_mask protects every token.
  static TransformInput single(std::vector<std::int64_t> ids,
                               std::vector<std::uint8_t> noise_mask = {}) {
    TransformInput in;
    in.batch = 1;
    in.seq_len = ids.size();
    if (noise_mask.empty()) noise_mask.assign(ids.size(), 1);
    in.input_ids = std::move(ids);
    in.noise_mask = std::move(noise_mask);
    return in;
  }
};

}  // namespace sgt
