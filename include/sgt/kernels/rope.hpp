// Rotary position embedding (RoPE), Hugging Face layout: cos/sin tables and the in-place rotation.
//
// Tables. For rotary_dim = int(head_dim * partial_rotary_factor) and i in [0, rotary_dim / 2):
//     inv_freq[i] = 1 / theta^(2i / rotary_dim)                     (f32, as HF computes it)
//     linear:  inv_freq[i] /= factor
//     llama3:  HF `_compute_llama3_parameters`: wavelengths above original_max / low_freq_factor
//              are divided by factor, those below original_max / high_freq_factor kept, the band
//              in between interpolated by the smooth factor
//     longrope: HF `_compute_longrope_parameters`: inv_freq[i] = 1 / (ext[i] * theta^(2i / dim)),
//              ext the short or the long factors (see below)
//     angle = f32(position) * inv_freq[i]                           (one f32 rounding)
//     cos[p][i] = cos[p][i + rotary_dim/2] = cos(angle) * attention_factor   (emb = cat(freqs,
//              freqs); the factor is 1 except for longrope, and multiplies in f32 as torch does)
//
// longrope has two tables: transformers' longrope_frequency_update picks, per forward call, the
// long factors when that call's positions reach past original_max_position_embeddings
// (max(position_ids) + 1 > original) and the short ones otherwise, for every position of the call
// (rope_uses_long_factors). A table is built for one of the two sets (RopeTable::long_factors).
// Every f32 step of HF is reproduced with exactly one rounding per operation (detail::f32_*), so
// the build's -ffp-contract cannot fuse two of them into an FMA and shift an angle. Two known
// differences from torch, both at the ulp level: pow, cos and sin are evaluated in double and
// rounded once (correctly rounded f32, give or take a double rounding), where torch uses SLEEF's
// 1-ulp f32 versions. For some (theta, dim) pairs torch's inv_freq is therefore one ulp away from
// ours (theta 1e6, dim 128: i = 37), which moves an angle by position * inv_freq * 6e-8 rad.
//
// Rotation (`rotate_half`): for each head, with h = rotary_dim / 2 and i < h,
//     out[i]     = x[i]     * cos[i] - x[i + h] * sin[i]
//     out[i + h] = x[i + h] * cos[i] + x[i]     * sin[i]
// and the dimensions [rotary_dim, head_dim) pass through (partial rotary). Each output is
// fma(x, cos, +-(x' * sin)): one rounding fewer than torch's `q * cos + rotate_half(q) * sin`, and
// explicit so that the optimized kernel and the reference give the same bits on every build.
// The kernel is a pure stream over x (8 bytes per element, read + write) with the table row of
// the token's position kept in L1 for all heads of the token.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

enum class RopeType { Default, Linear, Llama3, LongRope };

struct RopeParameters {
  std::size_t head_dim = 64;
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  RopeType type = RopeType::Default;
  double factor = 1.0;                                  // linear and llama3
  double low_freq_factor = 1.0;                         // llama3
  double high_freq_factor = 4.0;                        // llama3
  std::size_t original_max_position_embeddings = 8192;  // llama3 and longrope
  // longrope: rotary_dim / 2 factors each (f32, as HF's torch.tensor(..., dtype=float32)), and
  // the multiplier of cos and sin (HF's attention_factor, resolved by the config loader).
  std::vector<float> short_factor, long_factor;
  double attention_factor = 1.0;
};

// Whether a forward call whose positions end at `context_end` (its last position + 1) uses
// longrope's long factors: transformers' rule, seq_len = max(position_ids) + 1 > original.
// Always false for the other types, which have one table.
inline bool rope_uses_long_factors(const RopeParameters& p, std::size_t context_end) noexcept {
  return p.type == RopeType::LongRope && context_end > p.original_max_position_embeddings;
}

// Equal parameters give equal tables (a Workspace rebuilds its table only when they differ).
inline bool operator==(const RopeParameters& a, const RopeParameters& b) noexcept {
  return a.head_dim == b.head_dim && a.theta == b.theta &&
         a.partial_rotary_factor == b.partial_rotary_factor && a.type == b.type &&
         a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings &&
         a.short_factor == b.short_factor && a.long_factor == b.long_factor &&
         a.attention_factor == b.attention_factor;
}

namespace detail {

// One f32 operation with one rounding, immune to FMA contraction. The operation runs in double
// (exact for a product of two floats; for + - / a double result rounded to f32 equals the directly
// rounded f32 result, because 53 >= 2 * 24 + 2) and the rounded value is pinned by a volatile
// store: without it GCC narrows `(float)((double)a * b)` back to an f32 multiply and, under
// -ffp-contract=fast (its default in GNU modes), fuses it with the next addition -- which moved
// llama3's smoothed inv_freq by one ulp. Only the table build uses these; it is not a hot path.
inline float pinned_f32(double v) noexcept {
  volatile float rounded = static_cast<float>(v);
  return rounded;
}
inline float f32_mul(float a, float b) noexcept {
  return pinned_f32(static_cast<double>(a) * static_cast<double>(b));
}
inline float f32_div(float a, float b) noexcept {
  return pinned_f32(static_cast<double>(a) / static_cast<double>(b));
}
inline float f32_add(float a, float b) noexcept {
  return pinned_f32(static_cast<double>(a) + static_cast<double>(b));
}
inline float f32_sub(float a, float b) noexcept {
  return pinned_f32(static_cast<double>(a) - static_cast<double>(b));
}

inline std::size_t rope_rotary_dim(const RopeParameters& p) {
  if (p.head_dim == 0) throw Error("rope: head_dim must be > 0");
  if (!(p.partial_rotary_factor > 0.0 && p.partial_rotary_factor <= 1.0))
    throw Error("rope: partial_rotary_factor must be in (0, 1], got " +
                std::to_string(p.partial_rotary_factor));
  // Python's int(head_dim * partial_rotary_factor): the product in double, truncated.
  const auto rotary_dim =
      static_cast<std::size_t>(static_cast<double>(p.head_dim) * p.partial_rotary_factor);
  if (rotary_dim == 0 || rotary_dim % 2 != 0)
    throw Error("rope: rotary dimension int(head_dim * partial_rotary_factor) = " +
                std::to_string(rotary_dim) + " must be even and > 0 (head_dim " +
                std::to_string(p.head_dim) + ", partial_rotary_factor " +
                std::to_string(p.partial_rotary_factor) + ")");
  return rotary_dim;
}

inline void check_longrope_parameters(const RopeParameters& p, std::size_t rotary_dim) {
  for (const std::vector<float>* f : {&p.short_factor, &p.long_factor}) {
    const char* name = f == &p.short_factor ? "short_factor" : "long_factor";
    if (f->size() != rotary_dim / 2)
      throw Error(std::string("rope: longrope ") + name + " has " + std::to_string(f->size()) +
                  " values, the rotary dimension " + std::to_string(rotary_dim) + " needs " +
                  std::to_string(rotary_dim / 2));
    for (float v : *f)
      if (!(v > 0.0f) || !std::isfinite(v))
        throw Error(std::string("rope: longrope ") + name + " values must be finite and > 0, got " +
                    std::to_string(v));
  }
  if (!(p.attention_factor > 0.0) || !std::isfinite(p.attention_factor))
    throw Error("rope: longrope attention_factor must be finite and > 0, got " +
                std::to_string(p.attention_factor));
  if (p.original_max_position_embeddings == 0)
    throw Error("rope: longrope original_max_position_embeddings must be > 0");
}

inline void check_rope_parameters(const RopeParameters& p, std::size_t rotary_dim) {
  if (!(p.theta > 0.0) || !std::isfinite(p.theta))
    throw Error("rope: theta must be finite and > 0, got " + std::to_string(p.theta));
  if (p.type == RopeType::Default) return;
  if (p.type == RopeType::LongRope) return check_longrope_parameters(p, rotary_dim);
  if (!(p.factor > 0.0) || !std::isfinite(p.factor))
    throw Error("rope: scaling factor must be finite and > 0, got " + std::to_string(p.factor));
  if (p.type != RopeType::Llama3) return;
  if (!(p.low_freq_factor > 0.0) || !std::isfinite(p.low_freq_factor))
    throw Error("rope: llama3 low_freq_factor must be finite and > 0, got " +
                std::to_string(p.low_freq_factor));
  if (!(p.high_freq_factor > p.low_freq_factor) || !std::isfinite(p.high_freq_factor))
    throw Error("rope: llama3 high_freq_factor (" + std::to_string(p.high_freq_factor) +
                ") must be finite and greater than low_freq_factor (" +
                std::to_string(p.low_freq_factor) + ")");
  if (p.original_max_position_embeddings == 0)
    throw Error("rope: llama3 original_max_position_embeddings must be > 0");
}

// HF's inverse frequencies, f32 operation by f32 operation (see the file comment); for longrope
// with the long factors when `long_factors`, else the short ones.
inline std::vector<float> rope_inv_freq(const RopeParameters& p, std::size_t rotary_dim,
                                        bool long_factors) {
  const std::size_t half = rotary_dim / 2;
  const float dim_f = static_cast<float>(rotary_dim);
  const float theta_f = static_cast<float>(p.theta);  // `base ** f32_tensor` computes in f32
  const std::vector<float>& ext = long_factors ? p.long_factor : p.short_factor;
  std::vector<float> inv(half);
  for (std::size_t i = 0; i < half; ++i) {
    const float exponent = f32_div(static_cast<float>(2 * i), dim_f);
    const auto power = static_cast<float>(std::pow(static_cast<double>(theta_f), exponent));
    // longrope: 1.0 / (ext_factors * base ** inv_freq_shape)
    inv[i] = f32_div(1.0f, p.type == RopeType::LongRope ? f32_mul(ext[i], power) : power);
  }
  if (p.type == RopeType::Linear) {
    const float factor = static_cast<float>(p.factor);
    for (float& v : inv) v = f32_div(v, factor);
  } else if (p.type == RopeType::Llama3) {
    // Python scalars meet f32 tensors: each is cast to f32 at the operation. Python's own
    // arithmetic between scalars (old / low, high - low, 2 * pi) happens in double first.
    const auto old_context = static_cast<double>(p.original_max_position_embeddings);
    const float factor = static_cast<float>(p.factor);
    const float low = static_cast<float>(p.low_freq_factor);
    const float low_freq_wavelen = static_cast<float>(old_context / p.low_freq_factor);
    const float high_freq_wavelen = static_cast<float>(old_context / p.high_freq_factor);
    const float band = static_cast<float>(p.high_freq_factor - p.low_freq_factor);
    const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
    const float old_context_f = static_cast<float>(old_context);
    for (float& v : inv) {
      // `scalar / tensor` is torch's __rtruediv__: tensor.reciprocal() * scalar.
      const float wavelen = f32_mul(f32_div(1.0f, v), two_pi);
      const float scaled = wavelen > low_freq_wavelen ? f32_div(v, factor) : v;
      const float smooth =
          f32_div(f32_sub(f32_mul(f32_div(1.0f, wavelen), old_context_f), low), band);
      // (1 - smooth) * inv / factor + smooth * inv, left to right.
      const float smoothed =
          f32_add(f32_div(f32_mul(f32_sub(1.0f, smooth), scaled), factor), f32_mul(smooth, scaled));
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      v = medium ? smoothed : scaled;
    }
  }
  return inv;
}

}  // namespace detail

// cos/sin for positions [0, num_positions), built once (in double, see above) and reused by every
// layer and call. Memory: 2 * num_positions * rotary_dim floats. `long_factors` picks longrope's
// set (rope_uses_long_factors); other types ignore it.
class RopeTable {
 public:
  RopeTable(const RopeParameters& p, std::size_t num_positions, bool long_factors = false)
      : params_(p),
        rotary_dim_(detail::rope_rotary_dim(p)),
        num_positions_(num_positions),
        long_factors_(p.type == RopeType::LongRope && long_factors) {
    detail::check_rope_parameters(p, rotary_dim_);
    if (num_positions > std::numeric_limits<std::size_t>::max() / 2 / rotary_dim_ / sizeof(float))
      throw Error("rope: a table of " + std::to_string(num_positions) +
                  " positions overflows size_t");
    inv_freq_ = detail::rope_inv_freq(p, rotary_dim_, long_factors_);
    const std::size_t half = rotary_dim_ / 2;
    // cos() * attention_scaling: a Python float times an f32 tensor multiplies in f32.
    const auto scaling =
        static_cast<float>(p.type == RopeType::LongRope ? p.attention_factor : 1.0);
    cos_.resize(num_positions * rotary_dim_);
    sin_.resize(num_positions * rotary_dim_);
    for (std::size_t pos = 0; pos < num_positions; ++pos) {
      // position_ids.float(): exact below 2^24, rounded like torch above.
      const auto pos_f = static_cast<float>(pos);
      float* c = cos_.data() + pos * rotary_dim_;
      float* s = sin_.data() + pos * rotary_dim_;
      for (std::size_t i = 0; i < half; ++i) {
        const double angle = detail::f32_mul(pos_f, inv_freq_[i]);
        c[i] = c[i + half] = detail::f32_mul(static_cast<float>(std::cos(angle)), scaling);
        s[i] = s[i + half] = detail::f32_mul(static_cast<float>(std::sin(angle)), scaling);
      }
    }
  }

  std::size_t rotary_dim() const noexcept { return rotary_dim_; }
  std::size_t num_positions() const noexcept { return num_positions_; }
  const RopeParameters& parameters() const noexcept { return params_; }
  // The longrope factor set of the table (false for every other type).
  bool long_factors() const noexcept { return long_factors_; }
  // Whether this table is the one a call of these parameters, ending at context_end, uses.
  bool serves(const RopeParameters& p, std::size_t context_end) const noexcept {
    return params_ == p && long_factors_ == rope_uses_long_factors(p, context_end);
  }
  // rotary_dim / 2 inverse frequencies (after scaling), f32 as HF's `inv_freq` buffer.
  const float* inv_freq() const noexcept { return inv_freq_.data(); }
  // rotary_dim values each; position < num_positions().
  const float* cos(std::size_t position) const noexcept {
    return cos_.data() + position * rotary_dim_;
  }
  const float* sin(std::size_t position) const noexcept {
    return sin_.data() + position * rotary_dim_;
  }

 private:
  RopeParameters params_;
  std::size_t rotary_dim_;
  std::size_t num_positions_;
  bool long_factors_;
  std::vector<float> inv_freq_;
  // Positions only, nothing of the prompt; wiped anyway so that every block a Workspace releases
  // is zero, one rule that is simple to state and to test.
  WipedVector<float> cos_;
  WipedVector<float> sin_;
};

namespace detail {
SGT_ISA_BEGIN

inline void check_apply_rope_args(const TensorView<float>& x, std::size_t num_heads,
                                  std::size_t head_dim, const RopeTable& table) {
  if (x.rank() != 3)
    throw Error("apply_rope: x must have rank 3 [batch, seq, heads * head_dim], got " +
                x.shape_string());
  if (num_heads == 0 || head_dim == 0)
    throw Error("apply_rope: num_heads and head_dim must be > 0");
  if (x.dim(2) != num_heads * head_dim)
    throw Error("apply_rope: x " + x.shape_string() + " does not hold " +
                std::to_string(num_heads) + " heads of " + std::to_string(head_dim) +
                " (expected a last dimension of " + std::to_string(num_heads * head_dim) + ")");
  if (table.parameters().head_dim != head_dim)
    throw Error("apply_rope: head_dim " + std::to_string(head_dim) +
                " differs from the rope table's head_dim " +
                std::to_string(table.parameters().head_dim));
  if (x.dim(1) > table.num_positions())
    throw Error("apply_rope: sequence length " + std::to_string(x.dim(1)) +
                " exceeds the rope table's " + std::to_string(table.num_positions()) +
                " positions");
  if (!x.empty() && x.data() == nullptr) throw Error("apply_rope: x has no data");
}

// Rotates the first 2 * half values of one head in place. cos/sin: the first half of a table row
// (the second half repeats it).
inline void rope_rotate_head(float* v, const float* cos, const float* sin,
                             std::size_t half) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  float* v2 = v + half;
  std::size_t i = 0;
  for (; i + L <= half; i += L) {
    const FloatBatch x1 = FloatBatch::load_unaligned(v + i);
    const FloatBatch x2 = FloatBatch::load_unaligned(v2 + i);
    const FloatBatch c = FloatBatch::load_unaligned(cos + i);
    const FloatBatch s = FloatBatch::load_unaligned(sin + i);
    simd::fma(x1, c, -(x2 * s)).store_unaligned(v + i);
    simd::fma(x2, c, x1 * s).store_unaligned(v2 + i);
  }
  for (; i < half; ++i) {
    const float x1 = v[i];
    const float x2 = v2[i];
    v[i] = std::fma(x1, cos[i], -(x2 * sin[i]));
    v2[i] = std::fma(x2, cos[i], x1 * sin[i]);
  }
}

// The rotation of every head of x [B, S, num_heads * head_dim], token s of every batch row at
// position position_of(s): the body of apply_rope (positions 0..S-1) and apply_rope_at (a cache's
// positions, kernels/rope_positions.hpp), so the two give the same bits at the same position.
template <class PositionOf>
inline void rotate_heads(TensorView<float> x, std::size_t num_heads, std::size_t head_dim,
                         const RopeTable& table, ThreadPool* pool, PositionOf position_of) {
  const std::size_t seq = x.dim(1);
  const std::size_t tokens = x.dim(0) * seq;
  if (tokens == 0) return;
  const std::size_t width = num_heads * head_dim;
  const std::size_t half = table.rotary_dim() / 2;
  // ~16 K elements per chunk; elementwise work, so any split gives the same bits.
  const std::size_t grain = std::max<std::size_t>(1, 16384 / width);
  parallel_for(pool, tokens, grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      const std::size_t pos = position_of(t % seq);
      const float* c = table.cos(pos);
      const float* s = table.sin(pos);
      float* row = x.data() + t * width;
      for (std::size_t h = 0; h < num_heads; ++h) rope_rotate_head(row + h * head_dim, c, s, half);
    }
  });
}

// The plain version, written as HF writes it: out = x * cos + rotate_half(x) * sin over the full
// rotary_dim-wide table rows, through a copy of the head.
template <class PositionOf>
inline void rotate_heads_reference(TensorView<float> x, std::size_t num_heads, std::size_t head_dim,
                                   const RopeTable& table, PositionOf position_of) {
  const std::size_t batch = x.dim(0);
  const std::size_t seq = x.dim(1);
  const std::size_t rotary_dim = table.rotary_dim();
  const std::size_t half = rotary_dim / 2;
  std::vector<float> head(head_dim);
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::size_t s = 0; s < seq; ++s) {
      const float* cos = table.cos(position_of(s));
      const float* sin = table.sin(position_of(s));
      for (std::size_t h = 0; h < num_heads; ++h) {
        float* v = x.data() + ((b * seq + s) * num_heads + h) * head_dim;
        std::copy(v, v + head_dim, head.begin());
        for (std::size_t d = 0; d < rotary_dim; ++d) {
          const float rotated = d < half ? -head[d + half] : head[d - half];  // rotate_half
          v[d] = std::fma(head[d], cos[d], rotated * sin[d]);
        }
        // d >= rotary_dim: unchanged.
      }
    }
  }
}
SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// x [B, S, num_heads * head_dim], rotated in place; token s of every batch row is at position s.
inline void apply_rope(TensorView<float> x, std::size_t num_heads, std::size_t head_dim,
                       const RopeTable& table, ThreadPool* pool = nullptr) {
  detail::check_apply_rope_args(x, num_heads, head_dim, table);
  detail::rotate_heads(x, num_heads, head_dim, table, pool, [](std::size_t s) { return s; });
}

// The plain version (detail::rotate_heads_reference).
inline void apply_rope_reference(TensorView<float> x, std::size_t num_heads, std::size_t head_dim,
                                 const RopeTable& table, ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_apply_rope_args(x, num_heads, head_dim, table);
  detail::rotate_heads_reference(x, num_heads, head_dim, table, [](std::size_t s) { return s; });
}

SGT_ISA_END
}  // namespace sgt::kernels
