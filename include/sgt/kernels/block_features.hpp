// block_features: a row-major F32 or BF16 weight [N, K] copied into feature blocks
// (core/feature_blocks.hpp), the layout a decode step reads at the memory's speed. Made once per
// weight at load; matmul and swiglu_mlp read the copy with the same bits as the original.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/feature_blocks.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

// One weight in feature blocks, owned; view() is what the kernels take. Moves, never copies.
class FeatureBlockedWeight {
 public:
  FeatureBlockedWeight() = default;

  AnyTensorView view() const noexcept {
    return AnyTensorView(data_.get(), dtype_, Shape{n_len_, k_len_, 0, 0}, 2,
                         WeightLayout::FeatureBlocks);
  }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  struct Free {
    void operator()(unsigned char* p) const noexcept {
      ::operator delete(p, std::align_val_t(kFeatureBlock));
    }
  };
  friend FeatureBlockedWeight block_features(const AnyTensorView& w, ThreadPool* pool);

  std::unique_ptr<unsigned char, Free> data_;
  DType dtype_ = DType::F32;
  std::size_t n_len_ = 0, k_len_ = 0, bytes_ = 0;
};

namespace detail {

// Block b of `dst` from the rows of `src` (row-major [n_len, k_len]): per feature, a run of
// kStepsPerRun steps (64 bytes of its row) at a time, so the reads are whole cache lines and the
// writes stay in kStepsPerRun x 256 bytes.
template <class WT>
inline void block_features_block(const WT* src, std::size_t n_len, std::size_t k_len,
                                 std::size_t b, WT* dst) noexcept {
  constexpr std::size_t per = kFeatureBlockPer<WT>;
  constexpr std::size_t kStepsPerRun = 16;
  const std::size_t steps = feature_block_steps(k_len, per);
  WT* block = dst + b * steps * kFeatureBlock * per;
  std::memset(static_cast<void*>(block), 0, steps * kFeatureBlock * per * sizeof(WT));
  for (std::size_t s0 = 0; s0 < steps; s0 += kStepsPerRun) {
    const std::size_t s1 = s0 + kStepsPerRun < steps ? s0 + kStepsPerRun : steps;
    for (std::size_t f = 0; f < kFeatureBlock; ++f) {
      const std::size_t n = b * kFeatureBlock + f;
      if (n >= n_len) break;  // padding features stay zero
      const WT* row = src + n * k_len;
      for (std::size_t s = s0; s < s1; ++s)
        for (std::size_t e = 0; e < per; ++e) {
          const std::size_t k = s * per + e;
          if (k < k_len) block[(s * kFeatureBlock + f) * per + e] = row[k];
        }
    }
  }
}

}  // namespace detail

// Copies w (rank 2, row-major, F32 or BF16) into feature blocks, a block per parallel_for item.
// Throws sgt::Error for another dtype, rank or layout, or a size that overflows. The copy pads N
// up to a multiple of 64: a caller copying shapes from an untrusted config bounds that first
// (feature_blocks_at_most_double; [1, K] would take 64 times its size).
inline FeatureBlockedWeight block_features(const AnyTensorView& w, ThreadPool* pool = nullptr) {
  if (w.rank() != 2)
    throw Error("block_features: the weight must be [N, K], got " + w.shape_string());
  if (!w.row_major()) throw Error("block_features: the weight is already in feature blocks");
  if (w.dtype() != DType::F32 && w.dtype() != DType::BF16)
    throw Error(std::string("block_features: F32 or BF16 weights only, got ") +
                dtype_name(w.dtype()));
  const std::size_t n_len = w.dim(0), k_len = w.dim(1);
  std::size_t elements = 0;
  if (!feature_blocks_elements(n_len, k_len, w.dtype(), elements) ||
      elements > SIZE_MAX / dtype_size(w.dtype()))
    throw Error("block_features: the weight " + w.shape_string() + " is too large");
  if (w.data() == nullptr && w.size() != 0) throw Error("block_features: the weight has no data");
  FeatureBlockedWeight out;
  out.dtype_ = w.dtype();
  out.n_len_ = n_len;
  out.k_len_ = k_len;
  out.bytes_ = elements * dtype_size(w.dtype());
  out.data_.reset(static_cast<unsigned char*>(::operator new(
      out.bytes_ == 0 ? kFeatureBlock : out.bytes_, std::align_val_t(kFeatureBlock))));
  const std::size_t blocks = n_len / kFeatureBlock + (n_len % kFeatureBlock != 0 ? 1 : 0);
  visit_dtype(w.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<WT, float16>) {
      const WT* src = static_cast<const WT*>(w.data());
      WT* dst = reinterpret_cast<WT*>(out.data_.get());
      parallel_for(pool, blocks, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t b = begin; b < end; ++b)
          detail::block_features_block(src, n_len, k_len, b, dst);
      });
    }
  });
  return out;
}

}  // namespace sgt::kernels
