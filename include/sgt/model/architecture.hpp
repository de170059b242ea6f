// Decoder architectures as compile-time traits.
//
// The four supported families share one decoder layer (model/decoder_layer.hpp); they differ only
// in switches that change the code path, and those are the traits below. Everything that is just
// data -- sizes, which projections carry biases (Qwen2's q/k/v, Llama's attention_bias) -- comes
// from the config and the weights, and stays out of the type.
#pragma once

#include "sgt/core/error.hpp"
#include "sgt/io/config.hpp"

namespace sgt {

struct LlamaArchitecture {  // Llama 2, 3, 3.1, 3.2
  static constexpr const char* kName = "llama";
  static constexpr bool kQkNorm = false;
  static constexpr bool kSlidingWindow = false;
};

struct MistralArchitecture {  // Llama + a sliding attention window on every layer
  static constexpr const char* kName = "mistral";
  static constexpr bool kQkNorm = false;
  static constexpr bool kSlidingWindow = true;
};

struct Qwen2Architecture {  // Llama + q/k/v biases (present in the weights)
  static constexpr const char* kName = "qwen2";
  static constexpr bool kQkNorm = false;
  static constexpr bool kSlidingWindow = false;
};

struct Qwen3Architecture {  // Llama + per-head RMSNorm of q and k before RoPE
  static constexpr const char* kName = "qwen3";
  static constexpr bool kQkNorm = true;
  static constexpr bool kSlidingWindow = false;
};

// Calls f(Architecture{}) for the runtime model type: the one place it becomes a type.
template <class F>
decltype(auto) visit_architecture(ModelType type, F&& f) {
  switch (type) {
    case ModelType::Llama:
      return f(LlamaArchitecture{});
    case ModelType::Mistral:
      return f(MistralArchitecture{});
    case ModelType::Qwen2:
      return f(Qwen2Architecture{});
    case ModelType::Qwen3:
      return f(Qwen3Architecture{});
  }
  throw Error("unknown model type");
}

}  // namespace sgt
