// The kernels as the model layer sees them: one object that carries the thread pool, the choice
// between optimized and reference kernels (and between SDPA and flash attention), and the kernel
// table of an instruction set, so the model code calls ops by name and reads as the formula. Every
// kernel the model runs goes through here: with `reference` set, every one of them runs its plain
// reference implementation (as ggml's use_ref switch does), which is how the end-to-end tests
// isolate a kernel bug; with sgt::dispatch, every one of them runs on the instruction set the
// dispatcher chose.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/embedding.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"

namespace sgt {
SGT_ISA_BEGIN

// How a call runs, whatever it computes: the transform's RunOptions, the causal LM's LmRunOptions
// and the audit's AuditOptions all derive from it, so a caller sets the pool or the precision the
// same way everywhere and Ops::from_options turns it into kernel calls in one place.
struct ExecOptions {
  ThreadPool* pool = nullptr;             // null: run on the calling thread
  Precision precision = Precision::Auto;  // Auto: the model's resolve_precision decides
  AttentionAlgorithm attention = AttentionAlgorithm::Auto;
  bool reference_kernels = false;  // every kernel on its plain reference implementation
};

// KernelContext: pool, reference, attention_algorithm, precision (kernels/kernel_table.hpp).
struct Ops : kernels::KernelContext {
  // The kernels: this build's instruction set, or the dispatcher's choice (isa_kernel_table.hpp).
  const kernels::KernelTable* table = &kernels::default_kernel_table();

  const kernels::KernelTable& kernels() const noexcept { return *table; }

  // The ops of one call: `options` with its precision resolved by the model (F32 or Bf16). Not
  // noexcept: the kernel table is chosen on first use, and an SGT_ISA naming no instruction set
  // of the build is refused there with an sgt::Error.
  static Ops from_options(const ExecOptions& options, Precision resolved_precision) {
    Ops ops;
    ops.pool = options.pool;
    ops.reference = options.reference_kernels;
    ops.precision = resolved_precision;
    ops.attention_algorithm = options.attention;
    return ops;
  }

  // out[t] = table[ids[t]] * scale for t < count, the product rounded to the table's dtype as
  // transformers' scaled embeddings round it (kernels::scale_embedding_rows); no pass at scale 1.
  void embedding(const AnyTensorView& embedding_table, const std::int64_t* ids, std::size_t count,
                 TensorView<float> out, float scale = 1.0f) const {
    table->embedding(*this, embedding_table, ids, count, out);
    if (scale != 1.0f) kernels::scale_embedding_rows(embedding_table.dtype(), scale, out, pool);
  }
  void rms_norm(TensorView<const float> x, const AnyTensorView& w, float eps,
                kernels::RmsNormStyle style, TensorView<float> out) const {
    table->rms_norm(*this, x, w, eps, style, out);
  }
  // y = x W^T + b at `precision`. `pack` holds kernels().packed_activation_floats(tokens, K)
  // floats and overlaps neither x nor y (the Workspace's pack buffer).
  void matmul(TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& bias,
              TensorView<float> y, float* pack) const {
    table->matmul(*this, x, w, bias, y, pack);
  }
  struct Linear {
    const AnyTensorView& w;
    const AnyTensorView& bias;
    TensorView<float> y;
  };
  // Several Linears of one input (q, k and v): x is packed once into `pack` and shared, unless
  // their weights' dtypes ask for different packings.
  void matmuls(TensorView<const float> x, float* pack,
               std::initializer_list<Linear> linears) const {
    kernels::LinearTarget targets[4];
    std::size_t n = 0;
    for (const Linear& l : linears) {
      if (n == 4) {  // flush: the table takes a bounded list (q, k, v is the longest)
        table->matmuls(*this, x, pack, targets, n);
        n = 0;
      }
      targets[n++] = kernels::LinearTarget{&l.w, &l.bias, l.y};
    }
    table->matmuls(*this, x, pack, targets, n);
  }
  void apply_rope(TensorView<float> x, std::size_t heads, std::size_t head_dim,
                  const kernels::RopeTable& rope) const {
    table->apply_rope(*this, x, heads, head_dim, rope);
  }
  // RoPE with token t of every batch row at positions[t] (a KV cache's cache_position).
  void apply_rope_at(TensorView<float> x, std::size_t heads, std::size_t head_dim,
                     const kernels::RopeTable& rope, const std::size_t* positions) const {
    table->apply_rope_at(*this, x, heads, head_dim, rope, positions);
  }
  // Flash attention, or SDPA (which materializes every score row) when attention_algorithm or
  // reference asks for it.
  void attention(const kernels::AttentionShape& shape, const kernels::AttentionOptions& options,
                 TensorView<const float> q, TensorView<const float> k, TensorView<const float> v,
                 const std::uint8_t* attention_mask, TensorView<float> out) const {
    table->attention(*this, shape, options, q, k, v, attention_mask, out);
  }
  // T new queries against a KV cache holding positions [0, positions[t]] of each row.
  void cached_attention(const kernels::CachedAttentionShape& shape,
                        const kernels::AttentionOptions& options, TensorView<const float> q,
                        TensorView<const float> k_cache, TensorView<const float> v_cache,
                        const std::size_t* positions, TensorView<float> out) const {
    table->cached_attention(*this, shape, options, q, k_cache, v_cache, positions, out);
  }
  // out = down(act(gate(x)) * up(x)): SwiGLU, or GeGLU with act = GeluTanh.
  void swiglu(TensorView<const float> x, const kernels::SwiGluWeights& w,
              kernels::GatedActivation act, TensorView<float> out, float* scratch) const {
    table->swiglu(*this, x, w, act, out, scratch);
  }
  void add(TensorView<float> acc, TensorView<const float> delta) const {
    table->add(*this, acc, delta);
  }
  void parameterization(const kernels::Parameterization& p, TensorView<float> values) const {
    table->parameterization(*this, p, values);
  }
  // out = clamp(select(protect, x + mu + sigma * eps, x)), per [tokens, hidden] row.
  void apply_noise(TensorView<const float> x, TensorView<const float> mu,
                   TensorView<const float> sigma, TensorView<const float> eps,
                   const std::uint8_t* protect, const kernels::ValueRange& range,
                   TensorView<float> out) const {
    table->apply_noise(*this, x, mu, sigma, eps, protect, range, out);
  }
};

SGT_ISA_END
}  // namespace sgt
