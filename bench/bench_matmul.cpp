// matmul and swiglu_mlp on the layer shapes of Llama-3.2-1B (hidden 2048, 32 heads, 8 kv heads,
// head_dim 64, intermediate 8192) and Llama-3.1-8B (hidden 4096, 32 / 8 heads, head_dim 128,
// intermediate 14336), for T = 1, 16, 128, 512, 2048 tokens, BF16 and F32 weights, 1 and 2
// threads; BF16 weights at Precision::Bf16 (bf16 activations, vdpbf16ps where the CPU has it) and
// Precision::F32.
//
//   q_o   [N, K] = [heads * head_dim, hidden]; o_proj has the transposed shape, the same size
//   k_v   [kv_heads * head_dim, hidden]
//   mlp   swiglu_mlp: gate, up [intermediate, hidden], down [hidden, intermediate]
//
// GFLOP/s counts 2 * T * N * K per Linear (3 Linears for the MLP; silu is not counted), to be
// read against bench_fma_peak's figure for the same machine. "weight GB/s" is the stored weight
// bytes streamed per second -- the figure that matters at T = 1, where the product is a
// memory-bound matrix-vector product.
//
// Also, for the record of the choice made in sgt/kernels/matmul.hpp, two alternatives on the
// q_o shape of Llama-3.2-1B (alt_*): Eigen's GEMM on an Eigen::Map of F32 weights, and BF16
// weight panels widened into a per-thread f32 buffer followed by Eigen on the panel.
//
// Before timing, each benchmark compares the optimized kernel with its reference on its own
// inputs (three rows: first, middle, last -- the reference is a scalar double loop) and skips with
// an error if they disagree. Wall-clock time (UseRealTime), as threads are involved. The largest
// shapes run one iteration per repetition.
//
// Run: bench_matmul --benchmark_repetitions=7 --benchmark_report_aggregates_only=true
//      (about 10 minutes on 2 cores; --benchmark_filter narrows it)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <sgt/core/dtype.hpp>
#include <sgt/core/precision.hpp>
#include <sgt/core/simd.hpp>
#include <sgt/core/thread_pool.hpp>
#include <sgt/kernels/matmul.hpp>
#include <sgt/kernels/swiglu.hpp>

namespace {

using sgt::AnyTensorView;
using sgt::DType;
using sgt::TensorView;
namespace k = sgt::kernels;

struct Model {
  const char* name;
  std::size_t hidden, heads, kv_heads, head_dim, intermediate;
};
const Model kModels[] = {{"Llama-3.2-1B", 2048, 32, 8, 64, 8192},
                         {"Llama-3.1-8B", 4096, 32, 8, 128, 14336}};
const std::size_t kTokens[] = {1, 16, 128, 512, 2048};
const DType kDtypes[] = {DType::BF16, DType::F32};

enum class Op { q_o, k_v, mlp };
const char* op_name(Op op) {
  return op == Op::q_o ? "q_o" : op == Op::k_v ? "k_v" : "mlp";
}

// Deterministic, fast fill (a 2^32 LCG; quality is irrelevant, speed matters for 8B weights).
void fill_uniform(float* p, std::size_t n, std::uint32_t seed, float scale) {
  std::uint32_t s = seed * 2654435761u + 1u;
  for (std::size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = scale * (static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

// A weight [rows, cols] in one stored dtype; owns its bytes.
struct Weight {
  DType dtype = DType::F32;
  std::size_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<std::uint16_t> half_bits;
  double max_abs_bound = 0.0;  // bound on |w|, rounding to the stored dtype included

  Weight(DType d, std::size_t r, std::size_t c, std::uint32_t seed) : dtype(d), rows(r), cols(c) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(c));
    max_abs_bound = 1.01 * scale;
    if (d == DType::F32) {
      f32.resize(r * c);
      fill_uniform(f32.data(), f32.size(), seed, scale);
    } else {
      half_bits.resize(r * c);
      std::vector<float> row(c);
      for (std::size_t i = 0; i < r; ++i) {
        fill_uniform(row.data(), c, seed + static_cast<std::uint32_t>(i) * 7919u, scale);
        for (std::size_t j = 0; j < c; ++j)
          half_bits[i * c + j] =
              d == DType::BF16 ? sgt::to_bfloat16(row[j]).bits : sgt::to_float16(row[j]).bits;
      }
    }
  }
  const void* data() const {
    return dtype == DType::F32 ? static_cast<const void*>(f32.data())
                               : static_cast<const void*>(half_bits.data());
  }
  AnyTensorView view() const {
    return AnyTensorView(data(), dtype, sgt::Shape{rows, cols, 0, 0}, 2);
  }
  double bytes() const { return static_cast<double>(rows * cols * sgt::dtype_size(dtype)); }
};

// The weights of one (model, dtype); only the latest set is kept (8B F32 is ~1 GB), benchmarks
// are registered grouped by it.
struct ModelWeights {
  std::unique_ptr<Weight> q_o, k_v, gate, up, down;
};
ModelWeights& weights_for(std::size_t model, DType dtype) {
  static std::size_t cached_model = ~std::size_t{0};
  static DType cached_dtype = DType::F32;
  static ModelWeights w;
  if (model != cached_model || dtype != cached_dtype || !w.q_o) {
    w = ModelWeights{};
    const Model& m = kModels[model];
    const auto seed = static_cast<std::uint32_t>(model * 1000 + static_cast<int>(dtype) * 100);
    w.q_o = std::make_unique<Weight>(dtype, m.heads * m.head_dim, m.hidden, seed + 1);
    w.k_v = std::make_unique<Weight>(dtype, m.kv_heads * m.head_dim, m.hidden, seed + 2);
    w.gate = std::make_unique<Weight>(dtype, m.intermediate, m.hidden, seed + 3);
    w.up = std::make_unique<Weight>(dtype, m.intermediate, m.hidden, seed + 4);
    w.down = std::make_unique<Weight>(dtype, m.hidden, m.intermediate, seed + 5);
    cached_model = model;
    cached_dtype = dtype;
  }
  return w;
}

std::vector<float> activations(std::size_t tokens, std::size_t cols, std::uint32_t seed) {
  std::vector<float> x(tokens * cols);
  fill_uniform(x.data(), x.size(), seed, 1.0f);
  return x;
}

float max_abs(const float* p, std::size_t n) {
  float m = 0.0f;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(p[i]));
  return m;
}

// Compares rows {0, T/2, T-1} of `y` with `reference(row)` (which fills one row); returns an
// error message, empty when they agree within `tolerance(row_ref)`.
template <class Reference, class Tolerance>
std::string check_rows(const std::vector<float>& y, std::size_t tokens, std::size_t cols,
                       Reference&& reference, Tolerance&& tolerance) {
  std::vector<float> ref(cols);
  for (std::size_t row : {std::size_t{0}, tokens / 2, tokens - 1}) {
    reference(row, ref.data());
    const double tol = tolerance(ref);
    for (std::size_t c = 0; c < cols; ++c) {
      const double d = std::fabs(static_cast<double>(y[row * cols + c]) - ref[c]);
      if (!(d <= tol))
        return "row " + std::to_string(row) + " col " + std::to_string(c) + ": optimized " +
               std::to_string(y[row * cols + c]) + " vs reference " + std::to_string(ref[c]);
    }
  }
  return {};
}

// Whether this (benchmark, inputs) pair was already checked: the check runs once, not on every
// repetition.
bool first_time(const std::string& key) {
  static std::set<std::string> seen;
  return seen.insert(key).second;
}

void set_counters(benchmark::State& state, double flops, double weight_bytes) {
  const auto iters = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9 * iters, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes * 1e-9 * iters, benchmark::Counter::kIsRate);
}

void BM_matmul(benchmark::State& state, std::size_t model, Op op, DType dtype,
               sgt::Precision precision) {
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  const std::size_t threads = static_cast<std::size_t>(state.range(1));
  const ModelWeights& mw = weights_for(model, dtype);
  const Weight& w = op == Op::q_o ? *mw.q_o : *mw.k_v;
  const std::vector<float> x = activations(tokens, w.cols, 17);
  std::vector<float> y(tokens * w.rows);
  sgt::ThreadPool pool(threads);
  const TensorView<const float> xv(x.data(), {tokens, w.cols});
  const TensorView<float> yv(y.data(), {tokens, w.rows});

  std::vector<float> pack(k::packed_activation_floats(tokens, w.cols));
  if (first_time(std::string(kModels[model].name) + op_name(op) + sgt::dtype_name(dtype) +
                 sgt::precision_name(precision) + std::to_string(tokens))) {
    k::matmul(xv, w.view(), AnyTensorView(), yv, &pool, precision, pack.data());
    // The tests' budget for f32 accumulation: 1e-5 * sqrt(K) * max|x| * max|w|.
    const double tol = 1e-5 * std::sqrt(static_cast<double>(w.cols)) * max_abs(x.data(), x.size()) *
                       w.max_abs_bound;
    const std::string error = check_rows(
        y, tokens, w.rows,
        [&](std::size_t row, float* out) {
          k::matmul_reference(TensorView<const float>(x.data() + row * w.cols, {1, w.cols}),
                              w.view(), AnyTensorView(), TensorView<float>(out, {1, w.rows}),
                              nullptr, precision);
        },
        [&](const std::vector<float>&) { return tol; });
    if (!error.empty()) {
      state.SkipWithError(("matmul disagrees with matmul_reference: " + error).c_str());
      return;
    }
  }
  for (auto _ : state) {
    k::matmul(xv, w.view(), AnyTensorView(), yv, &pool, precision, pack.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * static_cast<double>(tokens * w.rows * w.cols), w.bytes());
}

void BM_swiglu(benchmark::State& state, std::size_t model, DType dtype, sgt::Precision precision) {
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  const std::size_t threads = static_cast<std::size_t>(state.range(1));
  const Model& m = kModels[model];
  const ModelWeights& mw = weights_for(model, dtype);
  const k::SwiGluWeights w{mw.gate->view(), mw.up->view(), mw.down->view(), {}, {}, {}};
  const std::vector<float> x = activations(tokens, m.hidden, 29);
  std::vector<float> out(tokens * m.hidden);
  std::vector<float> scratch(k::swiglu_scratch_floats(tokens, m.hidden, m.intermediate));
  sgt::ThreadPool pool(threads);
  const TensorView<const float> xv(x.data(), {tokens, m.hidden});
  const TensorView<float> ov(out.data(), {tokens, m.hidden});

  if (first_time(std::string(m.name) + "mlp" + sgt::dtype_name(dtype) +
                 sgt::precision_name(precision) + std::to_string(tokens))) {
    k::swiglu_mlp(xv, w, ov, scratch.data(), &pool, precision);
    std::vector<float> scratch_row(k::swiglu_scratch_floats(1, m.hidden, m.intermediate));
    const std::string error = check_rows(
        out, tokens, m.hidden,
        [&](std::size_t row, float* o) {
          k::swiglu_mlp_reference(TensorView<const float>(x.data() + row * m.hidden, {1, m.hidden}),
                                  w, TensorView<float>(o, {1, m.hidden}), scratch_row.data(),
                                  nullptr, precision);
        },
        // Relative to the row's magnitude: random data, no cancellation to speak of.
        [&](const std::vector<float>& ref) {
          return 1e-4 * max_abs(ref.data(), ref.size()) + 1e-7;
        });
    if (!error.empty()) {
      state.SkipWithError(("swiglu_mlp disagrees with swiglu_mlp_reference: " + error).c_str());
      return;
    }
  }
  for (auto _ : state) {
    k::swiglu_mlp(xv, w, ov, scratch.data(), &pool, precision);
    benchmark::ClobberMemory();
  }
  set_counters(state, 6.0 * static_cast<double>(tokens * m.hidden * m.intermediate),
               mw.gate->bytes() + mw.up->bytes() + mw.down->bytes());
}

// --- Alternatives kept for the record (see the header comment of sgt/kernels/matmul.hpp). ---

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Y[:, n0:n1] = X * W[n0:n1, :]^T with Eigen, on f32 rows of W.
void eigen_panel(const float* x, std::size_t tokens, std::size_t cols, const float* w_rows,
                 std::size_t n0, std::size_t n1, float* y, std::size_t n_total) {
  const Eigen::Map<const RowMajor> xm(x, static_cast<Eigen::Index>(tokens),
                                      static_cast<Eigen::Index>(cols));
  const Eigen::Map<const RowMajor> wm(w_rows, static_cast<Eigen::Index>(n1 - n0),
                                      static_cast<Eigen::Index>(cols));
  Eigen::Map<RowMajor, 0, Eigen::OuterStride<>> ym(
      y + n0, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n1 - n0),
      Eigen::OuterStride<>(static_cast<Eigen::Index>(n_total)));
  ym.noalias() = xm * wm.transpose();
}

void BM_alt(benchmark::State& state, bool bf16_panel) {
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  const ModelWeights& mw = weights_for(0, bf16_panel ? DType::BF16 : DType::F32);
  const Weight& w = *mw.q_o;
  const std::vector<float> x = activations(tokens, w.cols, 17);
  std::vector<float> y(tokens * w.rows), y_kernel(tokens * w.rows);
  constexpr std::size_t kPanelRows = 64;
  auto run = [&] {
    for (std::size_t n0 = 0; n0 < w.rows; n0 += kPanelRows) {
      const std::size_t n1 = std::min(w.rows, n0 + kPanelRows);
      if (!bf16_panel) {
        eigen_panel(x.data(), tokens, w.cols, w.f32.data() + n0 * w.cols, n0, n1, y.data(), w.rows);
      } else {
        // Grows once to the panel size, then reused: no allocation after the first call.
        thread_local std::vector<float> panel;
        panel.resize((n1 - n0) * w.cols);
        const auto* src = reinterpret_cast<const sgt::bfloat16*>(w.half_bits.data()) + n0 * w.cols;
        for (std::size_t i = 0; i < panel.size(); i += sgt::simd::kFloatLanes)
          sgt::simd::load_as_float(src + i).store_unaligned(panel.data() + i);
        eigen_panel(x.data(), tokens, w.cols, panel.data(), n0, n1, y.data(), w.rows);
      }
    }
  };
  if (first_time(std::string("alt") + (bf16_panel ? "bf16" : "f32") + std::to_string(tokens))) {
    run();
    k::matmul(TensorView<const float>(x.data(), {tokens, w.cols}), w.view(), AnyTensorView(),
              TensorView<float>(y_kernel.data(), {tokens, w.rows}));
    for (std::size_t i = 0; i < y.size(); ++i)
      if (!(std::fabs(y[i] - y_kernel[i]) <= 1e-4f)) {
        state.SkipWithError("alternative disagrees with matmul");
        return;
      }
  }
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * static_cast<double>(tokens * w.rows * w.cols), w.bytes());
}

// BF16 weights run at both precisions; F32 weights at F32 (Bf16 changes nothing for them).
std::vector<sgt::Precision> precisions_for(DType dtype) {
  if (dtype == DType::BF16) return {sgt::Precision::Bf16, sgt::Precision::F32};
  return {sgt::Precision::F32};
}

// Registration, grouped by (model, dtype) so that one set of weights is alive at a time.
const bool kRegistered = [] {
  for (std::size_t model = 0; model < 2; ++model) {
    for (DType dtype : kDtypes) {
      const std::string suffix =
          std::string("/") + kModels[model].name + "/" + sgt::dtype_name(dtype);
      for (sgt::Precision precision : precisions_for(dtype))
      for (Op op : {Op::q_o, Op::k_v, Op::mlp}) {
        for (std::size_t tokens : kTokens) {
          for (int threads : {1, 2}) {
            const std::string name = std::string(op == Op::mlp ? "swiglu_mlp" : "matmul") + suffix +
                                     "/" + sgt::precision_name(precision) + "/" + op_name(op);
            auto* b = op == Op::mlp ? benchmark::RegisterBenchmark(name.c_str(), BM_swiglu, model,
                                                                   dtype, precision)
                                    : benchmark::RegisterBenchmark(name.c_str(), BM_matmul, model,
                                                                   op, dtype, precision);
            b->ArgNames({"T", "threads"})->Args({static_cast<long>(tokens), threads});
            b->UseRealTime()->Unit(benchmark::kMillisecond);
            // ~10 GFLOP and more per call: one call per repetition is plenty.
            const double flops =
                op == Op::mlp ? 6.0 * tokens * kModels[model].hidden * kModels[model].intermediate
                              : 2.0 * tokens * kModels[model].hidden * kModels[model].hidden;
            if (flops > 1e10) {
              b->Iterations(1);
            } else {
              b->MinTime(0.1);
            }
          }
        }
      }
      if (model == 0) {
        for (std::size_t tokens : {std::size_t{1}, std::size_t{128}, std::size_t{512}}) {
          const bool panel = dtype == DType::BF16;
          benchmark::RegisterBenchmark(
              (std::string(panel ? "alt_eigen_bf16_panel" : "alt_eigen_f32") + suffix + "/q_o")
                  .c_str(),
              BM_alt, panel)
              ->ArgNames({"T"})
              ->Args({static_cast<long>(tokens)})
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond)
              ->MinTime(0.1);
        }
      }
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
