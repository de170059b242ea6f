// KvCache: the static key/value cache of a causal LM (lm/causal_lm.hpp), as ExecuTorch's and
// transformers' StaticCache: for every layer, keys and values of B sequences x max_len positions,
// allocated once, f32, never resized.
//
// Positions [0, length()) hold the keys and values of every layer. A forward call writes its T new
// tokens at cache_position = [start, start + T), which must satisfy
//     start <= length()        no hole of unwritten positions before the new tokens
//     start + T <= max_len()   nothing past the end
// and then length() = start + T: a call starting before length() (a second turn that rewinds, a
// regenerated answer) overwrites from there and forgets what came after. Both rules are checked by
// check_append() before anything is written; write() checks again, so no caller can write past
// max_len.
//
// The cache holds values computed from the prompt: its memory is wiped when released.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/lm/config.hpp"

namespace sgt {
SGT_ISA_BEGIN

class KvCache {
 public:
  KvCache() = default;
  KvCache(const CausalLmConfig& config, std::size_t batch, std::size_t max_len)
      : layers_(config.num_layers()), batch_(batch), max_len_(max_len), width_(config.kv_width()) {
    if (batch == 0 || max_len == 0)
      throw Error("KV cache: batch (" + std::to_string(batch) + ") and max_len (" +
                  std::to_string(max_len) + ") must be positive");
    // Positions past the model's max_position_embeddings are outside what it was trained on
    // (and a caller's typo in a token count would allocate a cache for them up front).
    const std::size_t positions = config.decoder.max_position_embeddings;
    if (positions && max_len > positions)
      throw Error("KV cache: " + std::to_string(max_len) +
                  " positions are more than the model's max_position_embeddings " +
                  std::to_string(positions));
    std::size_t n = 0;
    if (!checked_mul(batch, max_len, per_layer_) || !checked_mul(per_layer_, width_, per_layer_) ||
        !checked_mul(per_layer_, 2 * layers_, n))
      throw Error("KV cache: " + std::to_string(layers_) + " layers x batch " +
                  std::to_string(batch) + " x max_len " + std::to_string(max_len) +
                  " overflows size_t");
    data_.resize(n);  // the one allocation
  }

  std::size_t num_layers() const noexcept { return layers_; }
  std::size_t batch() const noexcept { return batch_; }
  std::size_t max_len() const noexcept { return max_len_; }
  std::size_t kv_width() const noexcept { return width_; }
  // Positions [0, length()) hold keys and values.
  std::size_t length() const noexcept { return length_; }
  // Forgets everything (the memory stays allocated).
  void reset() noexcept { length_ = 0; }

  // Whether T new tokens may go at [start, start + T); an sgt::Error naming cache_position and the
  // offending position otherwise.
  void check_append(std::size_t start, std::size_t count) const {
    if (start > length_)
      throw Error("starts at " + std::to_string(start) + ", but the cache holds positions [0, " +
                  std::to_string(length_) + ") only: the positions in between were never computed")
          .at_key("cache_position")
          .at_position(static_cast<std::int64_t>(start));
    if (count > max_len_ || start > max_len_ - count) {
      const std::size_t first_past = start > max_len_ ? start : max_len_;
      throw Error("position " + std::to_string(first_past) + " is past the KV cache's maximum " +
                  "length " + std::to_string(max_len_) + " (positions 0.." +
                  std::to_string(max_len_ - 1) + "); nothing was written")
          .at_key("cache_position")
          .at_position(static_cast<std::int64_t>(first_past));
    }
  }

  // [B, max_len, kv_width] keys / values of `layer`.
  TensorView<float> keys(std::size_t layer) { return view(layer, 0); }
  TensorView<float> values(std::size_t layer) { return view(layer, 1); }
  TensorView<const float> keys(std::size_t layer) const { return view(layer, 0); }
  TensorView<const float> values(std::size_t layer) const { return view(layer, 1); }

  // Copies k, v [B, T, kv_width] to positions [start, start + T) of `layer`.
  void write(std::size_t layer, std::size_t start, TensorView<const float> k,
             TensorView<const float> v) {
    const std::size_t T = k.size() / (batch_ * width_);
    if (layer >= layers_ || k.size() != batch_ * T * width_ || v.size() != k.size())
      throw Error("KV cache: write of " + k.shape_string() + " to layer " + std::to_string(layer) +
                  " does not fit a cache of " + std::to_string(layers_) + " layers, batch " +
                  std::to_string(batch_) + ", width " + std::to_string(width_));
    check_append(start, T);
    for (std::size_t b = 0; b < batch_; ++b) {
      const std::size_t from = b * T * width_, to = (b * max_len_ + start) * width_;
      std::copy(k.data() + from, k.data() + from + T * width_, keys(layer).data() + to);
      std::copy(v.data() + from, v.data() + from + T * width_, values(layer).data() + to);
    }
  }

  // After every layer wrote [start, start + count): the cache now ends there.
  void commit(std::size_t start, std::size_t count) noexcept { length_ = start + count; }
  // After a failed call that may have overwritten [start, ...): keep only what is intact.
  void truncate(std::size_t length) noexcept {
    if (length < length_) length_ = length;
  }

 private:
  TensorView<float> view(std::size_t layer, std::size_t which) const {
    if (layer >= layers_)
      throw Error("KV cache: layer " + std::to_string(layer) + " of " + std::to_string(layers_));
    float* base = const_cast<float*>(data_.data()) + (2 * layer + which) * per_layer_;
    return TensorView<float>(base, {batch_, max_len_, width_});
  }

  std::size_t layers_ = 0, batch_ = 0, max_len_ = 0, width_ = 0, per_layer_ = 0, length_ = 0;
  WipedVector<float> data_;
};

SGT_ISA_END
}  // namespace sgt
