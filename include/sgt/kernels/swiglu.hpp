// swiglu_mlp: out = down(silu(gate(x)) * up(x)) -- Hugging Face's LlamaMLP with hidden_act "silu"
// (also Mistral's and Qwen's MLP), biases only when the config says mlp_bias.
//
//   x [T, H], gate_proj.weight [I, H], up_proj.weight [I, H], down_proj.weight [H, I],
//   h = silu(x gate^T + b_gate) * (x up^T + b_up)       [T, I], in the caller's scratch
//   out = h down^T + b_down                              [T, H]
//
// Fusion: gate and up read the same X tile, so one micro-kernel tile computes both: the 6 W rows
// of the matmul tile (sgt/kernels/matmul.hpp) are 3 rows of gate and the same 3 rows of up. The
// K-block sums of g and u stay in per-chunk arrays on the stack, and silu(g) * u is applied once
// a token tile has seen all of K. h is written once and never holds g or u, so the scratch is
// T x I floats instead of 2 x T x I, and there is no second pass over a [T, 2I] intermediate.
//
// silu(g) = g / (1 + exp(-g)), in f32 like PyTorch's CPU kernel; exp(-g) overflows to inf for
// g < -88, which gives -0, the right limit.
//
// Threads: the gate/up phase splits I into chunks, the down projection is a plain matmul; both
// use chunk boundaries that depend on the shapes alone, and every element of h and out is reduced
// the same way wherever it falls, so results are bit-identical for any thread count.
//
// swiglu_mlp_reference composes matmul_reference with a double-precision silu: the yardstick.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/overlap.hpp"

namespace sgt::kernels {

// The weights of one MLP, as stored (F32, BF16 or F16, each tensor its own dtype). Biases are
// empty views (data() == nullptr) unless the config has mlp_bias.
struct SwiGluWeights {
  AnyTensorView gate, up, down;
  AnyTensorView gate_bias, up_bias, down_bias;
};

// Floats of scratch that swiglu_mlp needs for `tokens` tokens and an intermediate size of
// `intermediate`: the activation h [T, I].
inline std::size_t swiglu_scratch_floats(std::size_t tokens, std::size_t intermediate) {
  std::size_t floats = 0, bytes = 0;
  if (!checked_mul(tokens, intermediate, floats) || !checked_mul(floats, sizeof(float), bytes))
    throw Error("swiglu_scratch_floats: " + std::to_string(tokens) + " x " +
                std::to_string(intermediate) + " floats overflow");
  return floats;
}

namespace detail {

inline float silu(float g) noexcept {
  return g / (1.0f + std::exp(-g));
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
  if (x.data() == nullptr && x.size() != 0) throw Error(std::string(op) + ": x has no data");
  if (out.data() == nullptr && out.size() != 0) throw Error(std::string(op) + ": out has no data");
  const std::size_t h_floats = swiglu_scratch_floats(t_len, i_len);
  if (scratch == nullptr && h_floats != 0) throw Error(std::string(op) + ": scratch is null");
  if (ranges_overlap(scratch, h_floats * sizeof(float), x.data(), x.size() * sizeof(float)) ||
      ranges_overlap(scratch, h_floats * sizeof(float), out.data(), out.size() * sizeof(float)))
    throw Error(std::string(op) + ": scratch overlaps x or out");
  return i_len;
}

// h[t, n] = silu(x gate[n]^T + bg[n]) * (x up[n]^T + bu[n]) for every t and n.
//
// A chunk is (token block) x (up to 16 * NH rows of gate and the same rows of up). Per token tile
// the chunk's rows are swept over all K blocks, with the block sums of g and u kept in small
// per-chunk arrays, then silu(g) * u is written to h: h is written once, and g and u never leave
// the chunk. The chunk's gate + up rows (~512 KiB) stay in L2 from one token tile to the next.
//
// Fused (gate and up of one dtype and one alignment, the usual case): one 4 x (3 + 3) tile per
// step, X loaded once for both. Otherwise gate and up each run their own 4 x 3 tiles, with their
// own K blocks. Either way every sum is formed exactly as matmul forms it (same peel, same K
// blocks, same order), so h is bit-identical to silu(matmul(x, gate)) * matmul(x, up).
template <class GT, class UT>
inline void swiglu_gate_up(TensorView<const float> x, const GT* gate, const UT* up,
                           const AnyTensorView& gate_bias, const AnyTensorView& up_bias, float* h,
                           std::size_t i_len, ThreadPool* pool) {
  constexpr std::size_t MR = kMatmulTileRows, NR = kMatmulTileCols, NH = NR / 2;
  constexpr std::size_t kMaxChunk = 16 * NH;  // chunk_rows' upper bound
  const std::size_t t_len = x.dim(0), k_len = x.dim(1);
  const std::size_t gate_peel = weight_peel(gate, k_len, sizeof(GT));
  const std::size_t up_peel = weight_peel(up, k_len, sizeof(UT));
  const bool fused = std::is_same_v<GT, UT> && gate_peel == up_peel;
  const ChunkGrid grid(t_len, i_len, chunk_rows(k_len * (sizeof(GT) + sizeof(UT)), NH));
  grid.run(
      pool, [&](std::size_t t_begin, std::size_t t_end, std::size_t n_begin, std::size_t n_end) {
        XTile<MR> x_tile;
        float g_sum[MR][kMaxChunk], u_sum[MR][kMaxChunk];
        // Adds the sums of one K block, tile by tile, into g_sum / u_sum (or sets them on the first
        // block) -- the same float additions matmul makes into y.
        auto accumulate = [&](float(*sums)[kMaxChunk], std::size_t mr, std::size_t n,
                              std::size_t nh, const float* out, std::size_t out_stride,
                              std::size_t out_offset, bool first) {
          for (std::size_t i = 0; i < mr; ++i)
            for (std::size_t j = 0; j < nh; ++j) {
              const float v = out[i * out_stride + out_offset + j];
              float& s = sums[i][n - n_begin + j];
              s = first ? v : s + v;
            }
        };
        // Sweeps the chunk's rows of w (and, fused, the same rows of w2) over all K blocks for the
        // token tile at t, sums into `sums` (and `sums2`). A tile holds nh rows of w followed,
        // fused, by the same nh rows of w2, so out[i * width + j] is w's result at (t + i, n + j)
        // and out[i * width + nh + j] is w2's.
        auto sweep = [&](auto* w, decltype(w) w2, std::size_t peel, float(*sums)[kMaxChunk],
                         float(*sums2)[kMaxChunk], std::size_t t, std::size_t mr) {
          using WT = std::remove_const_t<std::remove_pointer_t<decltype(w)>>;
          float out[MR * NR];
          const WT* rows[NR];
          for_each_k_block(
              k_len, peel, [&](std::size_t k0, std::size_t kc, std::size_t head, bool first, bool) {
                const float* xp = x_tile.pack(x.row(t) + k0, k_len, mr, kc, head);
                for (std::size_t n = n_begin; n < n_end; n += NH) {
                  const std::size_t nh = n_end - n < NH ? n_end - n : NH;
                  const std::size_t width = w2 != nullptr ? 2 * nh : nh;
                  for (std::size_t j = 0; j < nh; ++j) {
                    rows[j] = w + (n + j) * k_len + k0;
                    if (w2 != nullptr) rows[nh + j] = w2 + (n + j) * k_len + k0;
                  }
                  dot_tile_for<WT, MR, NR>(mr, width)(xp, XTile<MR>::kStride, rows, kc, head, out);
                  accumulate(sums, mr, n, nh, out, width, 0, first);
                  if (w2 != nullptr) accumulate(sums2, mr, n, nh, out, width, nh, first);
                }
              });
        };
        for (std::size_t t = t_begin; t < t_end; t += MR) {
          const std::size_t mr = t_end - t < MR ? t_end - t : MR;
          if constexpr (std::is_same_v<GT, UT>) {
            if (fused) sweep(gate, up, gate_peel, g_sum, u_sum, t, mr);
          }
          if (!fused) {
            sweep(gate, nullptr, gate_peel, g_sum, nullptr, t, mr);
            sweep(up, nullptr, up_peel, u_sum, nullptr, t, mr);
          }
          for (std::size_t i = 0; i < mr; ++i) {
            float* h_row = h + (t + i) * i_len;
            for (std::size_t n = n_begin; n < n_end; ++n) {
              float g = g_sum[i][n - n_begin], u = u_sum[i][n - n_begin];
              if (gate_bias.data() != nullptr) g += bias_at(gate_bias, n);
              if (up_bias.data() != nullptr) u += bias_at(up_bias, n);
              h_row[n] = silu(g) * u;
            }
          }
        }
      });
}

}  // namespace detail

// out[T, H] = down(silu(gate(x)) * up(x)). `scratch` holds swiglu_scratch_floats(T, I) floats and
// must not overlap x or out; out may be x itself (x is consumed before out is written). Throws
// sgt::Error, naming the projection and both shapes, when a shape disagrees.
inline void swiglu_mlp(TensorView<const float> x, const SwiGluWeights& w, TensorView<float> out,
                       float* scratch, ThreadPool* pool = nullptr) {
  const std::size_t i_len = detail::check_swiglu("swiglu_mlp", x, w, out, scratch);
  const std::size_t t_len = x.dim(0);
  if (out.size() == 0) return;
  if (t_len * i_len != 0) {
    visit_dtype(w.gate.dtype(), [&](auto gate_tag) {
      using GT = typename decltype(gate_tag)::type;
      visit_dtype(w.up.dtype(), [&](auto up_tag) {
        using UT = typename decltype(up_tag)::type;
        detail::swiglu_gate_up<GT, UT>(x, static_cast<const GT*>(w.gate.data()),
                                       static_cast<const UT*>(w.up.data()), w.gate_bias, w.up_bias,
                                       scratch, i_len, pool);
      });
    });
  }
  const TensorView<const float> h(scratch, {t_len, i_len});
  visit_dtype(w.down.dtype(), [&](auto tag) {
    using WT = typename decltype(tag)::type;
    detail::matmul_typed<WT>(h, static_cast<const WT*>(w.down.data()), w.down_bias, out, pool);
  });
}

// The yardstick: matmul_reference for the three projections, silu * up in double, rounded to f32
// (the precision of h). Allocates its own g and u; `scratch` receives h like the optimized one.
inline void swiglu_mlp_reference(TensorView<const float> x, const SwiGluWeights& w,
                                 TensorView<float> out, float* scratch,
                                 ThreadPool* pool = nullptr) {
  (void)pool;
  const std::size_t i_len = detail::check_swiglu("swiglu_mlp_reference", x, w, out, scratch);
  const std::size_t t_len = x.dim(0);
  std::vector<float> g(t_len * i_len), u(t_len * i_len);
  matmul_reference(x, w.gate, w.gate_bias, TensorView<float>(g.data(), {t_len, i_len}));
  matmul_reference(x, w.up, w.up_bias, TensorView<float>(u.data(), {t_len, i_len}));
  for (std::size_t e = 0; e < t_len * i_len; ++e) {
    const double gd = g[e];
    scratch[e] = static_cast<float>(gd / (1.0 + std::exp(-gd)) * static_cast<double>(u[e]));
  }
  matmul_reference(TensorView<const float>(scratch, {t_len, i_len}), w.down, w.down_bias, out);
}

}  // namespace sgt::kernels
