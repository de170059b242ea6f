// What the model-level benchmarks share: the random weights they write (a fixed LCG, so every run
// writes the same model) and the Llama 3.2 RoPE scaling of the shapes they mimic.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

namespace sgt_bench {

class RandomWeights {
 public:
  // A BF16 tensor of uniform values in offset + [-scale, scale).
  void add(const std::string& name, std::vector<std::uint64_t> shape, float scale,
           float offset = 0.0f) {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) {
      state_ = state_ * 1664525u + 1013904223u;
      x = offset + scale * (static_cast<float>(state_ >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
    writer_.add_from_f32(name, sgt::DType::BF16, shape, v.data());
  }
  // A tensor of one of the library's lists (for_each_model_tensor, for_each_causal_lm_tensor), so
  // the benchmarks name no tensor themselves, with values of the size its role has in a trained
  // model: norm weights about 1, embeddings 0.05, biases 0.01, a Linear [out, in] 1/sqrt(in), and
  // a tenth of that for an estimator's head, which feeds the parameterization.
  void add_listed(const std::string& name, const std::vector<std::uint64_t>& shape) {
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with("norm.weight"))
      add(name, shape, 0.1f, 1.0f);
    else if (ends_with("embed_tokens.weight"))
      add(name, shape, 0.05f);
    else if (ends_with(".bias"))
      add(name, shape, 0.01f);
    else
      add(name, shape,
          (ends_with("estimator.head.weight") ? 0.1f : 1.0f) /
              std::sqrt(static_cast<float>(shape.at(1))));
  }
  void write(const std::string& path) { writer_.write(path); }

 private:
  sgt::SafetensorsWriter writer_;
  std::uint32_t state_ = 12345;
};

// rope_theta 500000 and Llama 3.2's llama3 scaling (factor 32, original max 8192).
inline nlohmann::json llama3_rope_keys() {
  return {{"rope_theta", 500000.0},
          {"rope_scaling",
           {{"rope_type", "llama3"},
            {"factor", 32.0},
            {"low_freq_factor", 1.0},
            {"high_freq_factor", 4.0},
            {"original_max_position_embeddings", 8192}}},
          {"max_position_embeddings", 131072}};
}

}  // namespace sgt_bench
