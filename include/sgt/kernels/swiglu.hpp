// swiglu_mlp: out = down(act(gate(x)) * up(x)) -- Hugging Face's LlamaMLP with hidden_act "silu"
// (also Mistral's and Qwen's MLP), biases only when the config says mlp_bias; with act = the tanh
// approximation of GELU it is Gemma's GeGLU MLP (hidden_activation "gelu_pytorch_tanh").
//
//   x [T, H], gate_proj.weight [I, H], up_proj.weight [I, H], down_proj.weight [H, I],
//   h = silu(x gate^T + b_gate) * (x up^T + b_up)       [T, I]
//   out = h down^T + b_down                              [T, H]
//
// Built on matmul's tile (kernels/matmul.hpp). Tokens go through in blocks of kMlpTokenBlock:
// x's block is packed once for gate and up; for every (token tile, feature group) the tile runs
// gate's rows and then up's rows on it, and silu(g) * u is written straight into the packed layout
// that down reads (kernels/packed_activations.hpp) -- h is never stored token-major, and never
// for more than kMlpTokenBlock tokens, so the scratch does not grow with the prompt: 256 x (H + I)
// floats (10 MiB for Llama-3.2-1B) instead of T x I (a 32768-token prompt would need 1 GiB).
//
// Precision::Bf16: gate and up multiply bf16-rounded x when both are BF16; down multiplies
// bf16-rounded h when it is BF16 (h is rounded as it is packed). The rest is f32.
//
// silu(g) = g / (1 + exp(-g)), in f32 like PyTorch's CPU kernel, with simd's vector exp
// (detail::silu_times); exp(-g) overflows to inf for g < -88, which gives -0, the right limit.
// gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), PyTorch's
// gelu(approximate="tanh") in the same order of operations, with simd's vector tanh.
//
// Every g and u is matmul's chain plus the bias, and h is silu(g) * u in f32, so h is
// bit-identical to silu_times(matmul(x, gate), matmul(x, up)) and out to matmul(h, down); chunk
// boundaries depend on the shapes alone, so results are bit-identical for any thread count.
//
// swiglu_mlp_reference composes matmul_reference with a double-precision silu: the yardstick.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/overlap.hpp"
#include "sgt/kernels/packed_activations.hpp"

namespace sgt::kernels {

// The gate's activation: SwiGLU or GeGLU (tanh approximation).
enum class GatedActivation { Silu, GeluTanh };

// The weights of one MLP, as stored (F32, BF16 or F16, each tensor its own dtype). Biases are
// empty views (data() == nullptr) unless the config has mlp_bias.
struct SwiGluWeights {
  AnyTensorView gate, up, down;
  AnyTensorView gate_bias, up_bias, down_bias;
};

// Tokens per pass through the MLP (a multiple of kTileTokens on every instruction set).
inline constexpr std::size_t kMlpTokenBlock = 256;

SGT_ISA_BEGIN
// Floats of scratch that swiglu_mlp needs for `tokens` tokens, a hidden size of `hidden` and an
// intermediate size of `intermediate`: x and h of one token block, packed.
inline std::size_t swiglu_scratch_floats(std::size_t tokens, std::size_t hidden,
                                         std::size_t intermediate) {
  const std::size_t block = std::min(tokens, kMlpTokenBlock);
  std::size_t width = 0, floats = 0, bytes = 0;
  if (!checked_add(hidden, intermediate, width) ||
      !checked_mul(packed_tiles(block) * kTileTokens, width, floats) ||
      !checked_mul(floats, sizeof(float), bytes))
    throw Error("swiglu_scratch_floats: " + std::to_string(block) + " x (" +
                std::to_string(hidden) + " + " + std::to_string(intermediate) +
                ") floats overflow");
  return block == 0 ? 0 : packed_activation_floats(block, hidden) +
                              packed_activation_floats(block, intermediate);
}

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

// g[i] = silu(g[i]) * u[i] for i < n, silu(g) = g / (1 + exp(-g)) with simd's vector exp (within
// 2 ulp of the exact silu; libm's expf per element took 1% of a 512-token transform). An element's
// bits depend on its g and u alone (simd::map_in_place's tail is position-free), so the tile and
// the narrow path, whatever the split of their features, give the same h.
inline void silu_times(float* g, const float* u, std::size_t n) noexcept {
  using simd::FloatBatch;
  const FloatBatch one(1.0f);
  simd::map_in_place(g, u, n, [&](const FloatBatch& gv, const FloatBatch& uv) {
    return gv / (one + simd::exp(-gv)) * uv;
  });
}

// sqrt(2 / pi), as PyTorch's GeluType::Tanh kernel spells it (M_SQRT2 * M_2_SQRTPI * 0.5).
inline constexpr double kGeluTanhBeta = 0.7978845608028654;
inline constexpr double kGeluTanhKappa = 0.044715;

// g[i] = gelu_tanh(g[i]) * u[i], in f32 with simd's vector tanh (position-free, as silu_times).
inline void gelu_tanh_times(float* g, const float* u, std::size_t n) noexcept {
  using simd::FloatBatch;
  const FloatBatch half(0.5f), one(1.0f), beta(static_cast<float>(kGeluTanhBeta)),
      kappa(static_cast<float>(kGeluTanhKappa));
  simd::map_in_place(g, u, n, [&](const FloatBatch& gv, const FloatBatch& uv) {
    const FloatBatch inner = beta * (gv + kappa * (gv * gv * gv));
    return half * gv * (one + simd::tanh(inner)) * uv;
  });
}

inline void gate_times(GatedActivation act, float* g, const float* u, std::size_t n) noexcept {
  if (act == GatedActivation::GeluTanh)
    gelu_tanh_times(g, u, n);
  else
    silu_times(g, u, n);
}

// The packing of x for gate and up: bf16 pairs only when both are BF16 (one packed x serves both).
inline ActivationPacking gate_up_packing(Precision precision, const SwiGluWeights& w) noexcept {
  return w.gate.dtype() == w.up.dtype() ? packing_for(precision, w.gate.dtype())
                                        : ActivationPacking::F32;
}

// Checks every shape of the MLP against x and out, the data pointers and the scratch; returns
// the intermediate size I.
inline std::size_t check_swiglu(const char* op, const TensorView<const float>& x,
                                const SwiGluWeights& w, const TensorView<float>& out,
                                const float* scratch) {
  if (x.rank() != 2) throw Error(std::string(op) + ": x must be [T, H], got " + x.shape_string());
  if (w.gate.rank() != 2)
    throw Error(std::string(op) + ": gate_proj must be [I, H], got " + w.gate.shape_string());
  if (w.up.rank() != 2 || w.up.dim(0) != w.gate.dim(0) || w.up.dim(1) != w.gate.dim(1))
    throw Error(std::string(op) + ": up_proj " + w.up.shape_string() +
                " does not match gate_proj " + w.gate.shape_string());
  const std::size_t t_len = x.dim(0), i_len = w.gate.dim(0);
  // gate and up map x [T, H] to h [T, I]; down maps h to out [T, H].
  const Shape h_shape{t_len, i_len, 0, 0};
  check_linear_shapes(op, x.shape(), 2, w.gate, w.gate_bias, h_shape, 2, "x", "h", " gate_proj");
  check_linear_shapes(op, x.shape(), 2, w.up, w.up_bias, h_shape, 2, "x", "h", " up_proj");
  check_linear_shapes(op, h_shape, 2, w.down, w.down_bias, out.shape(), out.rank(), "h", "out",
                      " down_proj");
  if (out.dim(1) != x.dim(1))
    throw Error(std::string(op) + ": out " + out.shape_string() + " must have the shape of x " +
                x.shape_string());
  if (w.gate.layout() != w.up.layout())
    throw Error(std::string(op) + ": gate_proj and up_proj must share a layout (both row-major "
                                  "or both in feature blocks)");
  if (x.data() == nullptr && x.size() != 0) throw Error(std::string(op) + ": x has no data");
  if (out.data() == nullptr && out.size() != 0) throw Error(std::string(op) + ": out has no data");
  const std::size_t h_floats = swiglu_scratch_floats(t_len, x.dim(1), i_len);
  if (scratch == nullptr && h_floats != 0) throw Error(std::string(op) + ": scratch is null");
  if (ranges_overlap(scratch, h_floats * sizeof(float), x.data(), x.size() * sizeof(float)) ||
      ranges_overlap(scratch, h_floats * sizeof(float), out.data(), out.size() * sizeof(float)))
    throw Error(std::string(op) + ": scratch overlaps x or out");
  return i_len;
}

// h = silu(x gate^T + bg) * (x up^T + bu) for the packed block xp, written packed (h_packing)
// into h_buffer, tile by tile. kBlocked: gate and up are in feature blocks.
template <class GT, class UT, bool kBlocked>
inline void swiglu_gate_up(const PackedActivations& xp, const GT* gate, const UT* up,
                           const AnyTensorView& gate_bias, const AnyTensorView& up_bias,
                           std::size_t i_len, GatedActivation act, ActivationPacking h_packing,
                           float* h_buffer, ThreadPool* pool) {
  const std::size_t k_len = xp.k_len;
  const std::size_t h_words = packed_tile_words(i_len, h_packing);
  const TileGrid grid(xp.tokens, i_len, k_len, packed_tile_bytes(xp));
  constexpr std::size_t kTile = kTileFeatures * kTileTokens;
  grid.run<2 * kTile>(pool, [&](std::size_t tile, std::size_t group, KSpan span, float* slot) {
    float* g = slot;
    float* u = slot + kTile;
    const GT* gate_rows[kTileFeatures];
    const UT* up_rows[kTileFeatures];
    const std::size_t n0 = group * kTileFeatures;
    const std::size_t nr = i_len - n0 < kTileFeatures ? i_len - n0 : kTileFeatures;
    for (std::size_t j = 0; j < nr; ++j) {
      gate_rows[j] = weight_row<GT, kBlocked>(gate, n0 + j, k_len);
      up_rows[j] = weight_row<UT, kBlocked>(up, n0 + j, k_len);
    }
    run_tile<GT, kBlocked>(xp, tile, gate_rows, nr, span, g);
    run_tile<UT, kBlocked>(xp, tile, up_rows, nr, span, u);
    if (span.end != k_len) return;  // more K blocks to come
    // Every lane, padding tokens included: their h is finite (x = 0 there) and never stored.
    const bool has_bg = gate_bias.data() != nullptr, has_bu = up_bias.data() != nullptr;
    for (std::size_t j = 0; j < nr && (has_bg || has_bu); ++j) {
      const float bg = has_bg ? bias_at(gate_bias, n0 + j) : 0.0f;
      const float bu = has_bu ? bias_at(up_bias, n0 + j) : 0.0f;
      for (std::size_t lane = 0; lane < kTileTokens; ++lane) {
        if (has_bg) g[j * kTileTokens + lane] += bg;
        if (has_bu) u[j * kTileTokens + lane] += bu;
      }
    }
    gate_times(act, g, u, nr * kTileTokens);
    if (h_packing == ActivationPacking::F32) {
      float* dst = h_buffer + tile * h_words + n0 * kTileTokens;
      std::copy(g, g + nr * kTileTokens, dst);
    } else {
      // n0 is even (kTileFeatures is), so pairs never straddle two groups.
      std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(h_buffer) + tile * h_words +
                           n0 / 2 * kTileTokens;
      for (std::size_t j = 0; j < nr; j += 2, dst += kTileTokens)
        for (std::size_t lane = 0; lane < kTileTokens; ++lane)
          dst[lane] = simd::bf16_round_pair(g[j * kTileTokens + lane],
                                            j + 1 < nr ? g[(j + 1) * kTileTokens + lane] : 0.0f);
    }
  });
}

// The narrow path's gate and up (T <= kNarrowMaxTokens, xp narrow-packed): the same h, written
// into h_buffer in h's layout: narrow (h_narrow: `tokens` lanes) or one tile of kTileTokens lanes
// whose padding lanes are zeros (when down keeps the tile path). kBlocked: gate and up are in
// feature blocks, run in the units of that path.
template <class GT, class UT, bool kBlocked>
inline void swiglu_gate_up_narrow(const PackedActivations& xp, const GT* gate, const UT* up,
                                  const AnyTensorView& gate_bias, const AnyTensorView& up_bias,
                                  std::size_t i_len, GatedActivation act,
                                  ActivationPacking h_packing, bool h_narrow, float* h_buffer,
                                  ThreadPool* pool) {
  const std::size_t tokens = xp.tokens, lanes = h_narrow ? tokens : kTileTokens;
  const bool has_bg = gate_bias.data() != nullptr, has_bu = up_bias.data() != nullptr;
  const std::size_t unit_features =
      kBlocked ? narrow_block_unit_features(tokens) : narrow_unit_features(tokens);
  const std::size_t units = (i_len + unit_features - 1) / unit_features;
  constexpr std::size_t kOutFloats = kBlocked ? kNarrowBlockOutFloats : kNarrowOutFloats;
  parallel_for(pool, units, narrow_grain(units), [&](std::size_t begin, std::size_t end) {
    alignas(64) float g[kOutFloats], u[kOutFloats];
    for (std::size_t unit = begin; unit < end; ++unit) {
      const std::size_t n0 = unit * unit_features;
      const std::size_t nf = i_len - n0 < unit_features ? i_len - n0 : unit_features;
      if constexpr (kBlocked) {
        narrow_block_unit<GT>(xp, gate, n0, g);
        narrow_block_unit<UT>(xp, up, n0, u);
      } else {
        // Gate's unit is followed by up's, up's by gate's next one.
        narrow_unit<GT>(xp, gate, n0, nf, nf == unit_features ? up + n0 * xp.k_len : nullptr, g);
        narrow_unit<UT>(xp, up, n0, nf,
                        narrow_next_unit(gate, unit, end, unit_features, i_len, xp.k_len), u);
      }
      for (std::size_t t = 0; t < tokens && (has_bg || has_bu); ++t)
        for (std::size_t f = 0; f < nf; ++f) {
          if (has_bg) g[t * unit_features + f] += bias_at(gate_bias, n0 + f);
          if (has_bu) u[t * unit_features + f] += bias_at(up_bias, n0 + f);
        }
      if (nf == unit_features) {
        gate_times(act, g, u, tokens * unit_features);
      } else {
        for (std::size_t t = 0; t < tokens; ++t)
          gate_times(act, g + t * unit_features, u + t * unit_features, nf);
      }
      if (h_packing == ActivationPacking::F32) {
        for (std::size_t f = 0; f < nf; ++f) {
          float* dst = h_buffer + (n0 + f) * lanes;
          for (std::size_t t = 0; t < tokens; ++t) dst[t] = g[t * unit_features + f];
          for (std::size_t t = tokens; t < lanes; ++t) dst[t] = 0.0f;
        }
      } else {
        // n0 is even (unit_features is), so pairs never straddle two units.
        auto* words = reinterpret_cast<std::uint32_t*>(h_buffer);
        for (std::size_t f = 0; f < nf; f += 2) {
          std::uint32_t* dst = words + (n0 + f) / 2 * lanes;
          for (std::size_t t = 0; t < tokens; ++t)
            dst[t] = simd::bf16_round_pair(g[t * unit_features + f],
                                           f + 1 < nf ? g[t * unit_features + f + 1] : 0.0f);
          for (std::size_t t = tokens; t < lanes; ++t) dst[t] = 0;
        }
      }
    }
  });
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// out[T, H] = down(act(gate(x)) * up(x)). `scratch` holds swiglu_scratch_floats(T, H, I) floats
// and must not overlap x or out; out may be x itself (each token block of x is packed before the
// same rows of out are written). Throws sgt::Error, naming the projection and both shapes, when a
// shape disagrees.
inline void swiglu_mlp(TensorView<const float> x, const SwiGluWeights& w, TensorView<float> out,
                       float* scratch, ThreadPool* pool = nullptr,
                       Precision precision = Precision::F32,
                       GatedActivation act = GatedActivation::Silu) {
  const std::size_t i_len = detail::check_swiglu("swiglu_mlp", x, w, out, scratch);
  const std::size_t t_len = x.dim(0), h_len = x.dim(1);
  if (out.size() == 0) return;
  const ActivationPacking x_packing = detail::gate_up_packing(precision, w);
  const ActivationPacking h_packing = packing_for(precision, w.down.dtype());
  float* h_buffer = scratch + packed_activation_floats(std::min(t_len, kMlpTokenBlock), h_len);
  for (std::size_t t0 = 0; t0 < t_len; t0 += kMlpTokenBlock) {
    const std::size_t rows = std::min(kMlpTokenBlock, t_len - t0);
    // The narrow path (kernels/matmul_narrow.hpp) for a few tokens: for gate and up when both can
    // take it, and then for down when it can too.
    const bool x_narrow = narrow_path_applies(rows, w.gate.dtype(), x_packing) &&
                          narrow_path_applies(rows, w.up.dtype(), x_packing);
    const bool h_narrow = x_narrow && narrow_path_applies(rows, w.down.dtype(), h_packing);
    PackedActivations hp;
    hp.data = h_buffer;
    hp.tokens = rows;
    hp.k_len = i_len;
    hp.packing = h_packing;
    hp.narrow = h_narrow;
    if (i_len != 0) {
      const TensorView<const float> x_block(x.row(t0), {rows, h_len});
      const PackedActivations xp = x_narrow
                                       ? pack_activations_narrow(x_block, x_packing, scratch)
                                       : pack_activations(x_block, x_packing, scratch, pool);
      visit_dtype(w.gate.dtype(), [&](auto gate_tag) {
        using GT = typename decltype(gate_tag)::type;
        visit_dtype(w.up.dtype(), [&](auto up_tag) {
          using UT = typename decltype(up_tag)::type;
          const GT* gate = static_cast<const GT*>(w.gate.data());
          const UT* up = static_cast<const UT*>(w.up.data());
          if constexpr (!std::is_same_v<GT, float16> && !std::is_same_v<UT, float16>) {
            // check_swiglu refused F16 in feature blocks, and a layout gate and up do not share.
            const auto gate_up = [&](auto blocked) {
              constexpr bool kBlocked = decltype(blocked)::value;
              if (x_narrow)
                detail::swiglu_gate_up_narrow<GT, UT, kBlocked>(xp, gate, up, w.gate_bias,
                                                                w.up_bias, i_len, act, h_packing,
                                                                h_narrow, h_buffer, pool);
              else
                detail::swiglu_gate_up<GT, UT, kBlocked>(xp, gate, up, w.gate_bias, w.up_bias,
                                                         i_len, act, h_packing, h_buffer, pool);
            };
            if (w.gate.row_major())
              gate_up(std::false_type{});
            else
              gate_up(std::true_type{});
            return;
          }
          detail::swiglu_gate_up<GT, UT, false>(xp, gate, up, w.gate_bias, w.up_bias, i_len, act,
                                                h_packing, h_buffer, pool);
        });
      });
    }
    matmul_packed(hp, w.down, w.down_bias, TensorView<float>(out.row(t0), {rows, h_len}), pool);
  }
}

// The yardstick: matmul_reference for the three projections (at `precision`, rounding x and h as
// swiglu_mlp does), act(gate) * up in double, rounded to f32 (the precision of h). Allocates its
// own g, u and h; `scratch` is checked like swiglu_mlp's but not used.
inline void swiglu_mlp_reference(TensorView<const float> x, const SwiGluWeights& w,
                                 TensorView<float> out, float* scratch, ThreadPool* pool = nullptr,
                                 Precision precision = Precision::F32,
                                 GatedActivation act = GatedActivation::Silu) {
  (void)pool;
  const std::size_t i_len = detail::check_swiglu("swiglu_mlp_reference", x, w, out, scratch);
  const std::size_t t_len = x.dim(0);
  const Precision gate_up_precision =
      detail::gate_up_packing(precision, w) == ActivationPacking::Bf16Pairs ? Precision::Bf16
                                                                            : Precision::F32;
  WipedVector<float> g(t_len * i_len), u(t_len * i_len), h(t_len * i_len);
  matmul_reference(x, w.gate, w.gate_bias, TensorView<float>(g.data(), {t_len, i_len}), nullptr,
                   gate_up_precision);
  matmul_reference(x, w.up, w.up_bias, TensorView<float>(u.data(), {t_len, i_len}), nullptr,
                   gate_up_precision);
  for (std::size_t e = 0; e < t_len * i_len; ++e) {
    const double gd = g[e];
    const double a = act == GatedActivation::GeluTanh
                         ? 0.5 * gd *
                               (1.0 + std::tanh(detail::kGeluTanhBeta *
                                                (gd + detail::kGeluTanhKappa * gd * gd * gd)))
                         : gd / (1.0 + std::exp(-gd));
    h[e] = static_cast<float>(a * static_cast<double>(u[e]));
  }
  matmul_reference(TensorView<const float>(h.data(), {t_len, i_len}), w.down, w.down_bias, out,
                   nullptr, precision);
}

SGT_ISA_END
}  // namespace sgt::kernels
