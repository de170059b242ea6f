// sgt::Transform: the product. Loads a model directory (docs/format.md section 2) and maps token
// ids to protected input embeddings (docs/format.md section 1):
//
// clang-format off
//   x     = E[input_ids] * embedding_scale   (1 but for Gemma bases, docs/format.md 3.1)
//   mu    = MeanEstimator(x, attention_mask),  sigma = StdEstimator(x, attention_mask)
//   eps   ~ N(0, 1)            (secure by default; torch-seeded or injected on request)
//   out   = clamp(select(noise_mask & attention_mask, x + mu + sigma * eps, x), value_range)
// clang-format on
//
// At padding positions mu, sigma and eps are 0 and out is the clean embedding. A loaded Transform
// is immutable: any number of threads may call run() at once, each with its own Workspace (the
// convenience overload makes one per call).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/request.hpp"
#include "sgt/io/tensor_store.hpp"
#include "sgt/model/activations.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/config_json.hpp"
#include "sgt/model/estimator.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/weights.hpp"
#include "sgt/random/secure_normal.hpp"
#include "sgt/random/torch_normal.hpp"

namespace sgt {
SGT_ISA_BEGIN

// Where eps comes from.
enum class NoiseSource {
  // ChaCha20 keyed from the OS, fresh every call (the default; the only one for production).
  Secure,
  // Reproduces torch.manual_seed(seed); torch.randn(B, S, H): for parity checks.
  Torch,
  // The caller's eps: an f32 view of shape [B, S, H].
  Injected,
};

// Its spellings, for options read from text (flags, requests) and for reports.
inline constexpr EnumName<NoiseSource> kNoiseSourceNames[] = {{NoiseSource::Secure, "secure"},
                                                              {NoiseSource::Torch, "torch"},
                                                              {NoiseSource::Injected, "injected"}};

// Attention makes a call's time grow with the square of its length: on the demo model (one
// layer, hidden 256) 16384 tokens take 5 s of CPU and 32768 take 20 s (docs/reliability.md,
// "Cost of one input"), so a longer default would let one request from outside hold a core for
// tens of seconds. Callers with longer prompts raise it.
inline constexpr std::size_t kDefaultMaxTransformTokens = 16384;

// The pool, precision (resolved by resolve_precision()), attention and reference switch are
// ExecOptions' (model/ops.hpp).
struct RunOptions : ExecOptions {
  // The most tokens (batch x length) one call takes, checked before anything is planned: a call
  // holds about 10 x tokens x hidden floats (docs/architecture.md, "Memory"), so this bounds what
  // a request from outside can make the process allocate (16384 tokens of a 2048-wide model:
  // about 1.4 GB), and the time (above). Longer prompts than the estimators'
  // max_position_embeddings are refused too.
  std::size_t max_tokens = kDefaultMaxTransformTokens;
  bool keep_intermediates = false;  // fill TransformResult's embeddings, mean, std, noise
  NoiseSource noise = NoiseSource::Secure;
  std::uint64_t seed = 0;                  // NoiseSource::Torch
  TensorView<const float> injected_noise;  // NoiseSource::Injected: [B, S, H]
};

// The buffers are WipedVectors (core/secure_memory.hpp): zeroed when released, because together
// they reveal the prompt.
struct TransformResult {
  std::size_t batch = 0, seq_len = 0, hidden = 0;
  WipedVector<float> transformed;  // [B, S, H]
  // With keep_intermediates only (else empty):
  WipedVector<float> embeddings, mean, sigma, noise;
};

class Transform {
 public:
  // Loads MODEL_DIR: config.json plus model.safetensors or a sharded index. Every tensor is
  // checked against the config before anything runs; errors name the file, key or tensor.
  explicit Transform(const std::string& model_dir) : dir_(model_dir) {
    config_ = load_model_config(model_dir + "/config.json");
    store_ = std::make_unique<TensorStore>(model_dir);
    ModelWeights w = load_model_weights(config_, *store_);
    embed_ = w.embed_tokens;
    mean_ = Estimator(config_.mean_estimator, std::move(w.mean_estimator));
    std_ = Estimator(config_.std_estimator, std::move(w.std_estimator));
  }

  const std::string& directory() const noexcept { return dir_; }
  const ModelConfig& config() const noexcept { return config_; }
  const TensorStore& tensors() const noexcept { return *store_; }
  std::size_t hidden_size() const noexcept { return config_.hidden_size; }
  // E [vocab_size, hidden_size] as stored (F32, BF16 or F16): what audit/recovery_audit.hpp
  // searches. x is its rows times embedding_scale().
  const AnyTensorView& embedding_table() const noexcept { return embed_; }
  float embedding_scale() const noexcept { return config_.embedding_scale; }

  // out = E[ids] * embedding_scale for `count` ids: the clean embeddings run() starts from.
  void embed(const std::int64_t* ids, std::size_t count, TensorView<float> out,
             ThreadPool* pool = nullptr) const {
    Ops ops;
    ops.pool = pool;
    ops.embedding(embed_, ids, count, out, config_.embedding_scale);
  }

  // The precision a run with `requested` uses on `kernels` (the ones run() uses by default): Auto
  // becomes Bf16 when both estimators' Linear weights are all BF16 and the kernels have the CPU's
  // bf16 dot product, F32 otherwise (auto_precision, core/precision.hpp). Throws sgt::Error where
  // default_kernel_table() does (an SGT_ISA this CPU cannot run).
  Precision resolve_precision(
      Precision requested,
      const kernels::KernelTable& kernels = kernels::default_kernel_table()) const {
    if (requested != Precision::Auto) return requested;
    return auto_precision(mean_.linears_are_bf16() && std_.linears_are_bf16(),
                          kernels.bf16_dot_product);
  }

  TransformResult run(const TransformInput& in, const RunOptions& options = {}) const {
    Workspace ws;
    TransformResult result;
    run(in, options, ws, result);
    return result;
  }

  void run(const TransformInput& in, const RunOptions& options, Workspace& ws,
           TransformResult& result) const {
    validate(in, options);
    const std::size_t B = in.batch, S = in.seq_len, H = config_.hidden_size, T = B * S;
    const Ops ops = Ops::from_options(options, resolve_precision(options.precision));
    ws.plan(config_, B, S, ops.kernels());

    std::uint8_t* mask = ws.attention_mask();
    std::uint8_t* protect = ws.protect();
    for (std::size_t t = 0; t < T; ++t) {
      mask[t] = in.is_real(t);
      protect[t] = in.is_protected(t);
    }
    const SequenceBatch seq{B, S, mask};

    // x = E[input_ids] * embedding_scale
    TensorView<float> x = ws.embeddings();
    ops.embedding(embed_, in.input_ids.data(), T, TensorView<float>(x.data(), {T, H}),
                  config_.embedding_scale);
    // mu, sigma: both estimators see the clean embeddings of every real position.
    mean_.forward(x, seq, ws.mean_rope(), ws, ws.mean(), ops);
    std_.forward(x, seq, ws.std_rope(), ws, ws.sigma(), ops);
    // eps: in normed (free now) unless the caller keeps it
    TensorView<float> eps = options.keep_intermediates ? ws.noise() : ws.eps_scratch();
    draw_noise(options, eps);
    zero_padding_rows(seq, eps);
    // out = clamp(select(protect, x + mu + sigma * eps, x))
    result.batch = B;
    result.seq_len = S;
    result.hidden = H;
    result.transformed.resize(T * H);
    TensorView<float> out(result.transformed.data(), {B, S, H});
    ops.apply_noise(x, ws.mean(), ws.sigma(), eps, protect,
                    kernels::ValueRange{config_.value_min, config_.value_max}, out);

    if (options.keep_intermediates) {
      result.embeddings.assign(x.data(), x.data() + T * H);
      result.mean.assign(ws.mean().data(), ws.mean().data() + T * H);
      result.sigma.assign(ws.sigma().data(), ws.sigma().data() + T * H);
      result.noise.assign(eps.data(), eps.data() + T * H);
    } else {
      result.embeddings.clear();
      result.mean.clear();
      result.sigma.clear();
      result.noise.clear();
    }
  }

 private:
  // Everything about the call that can be wrong is found here, before any buffer is touched.
  void validate(const TransformInput& in, const RunOptions& options) const {
    if (in.batch == 0 || in.seq_len == 0)
      throw Error("empty input: batch " + std::to_string(in.batch) + ", length " +
                  std::to_string(in.seq_len));
    std::size_t T = 0, values = 0;
    if (!checked_mul(in.batch, in.seq_len, T) || !checked_mul(T, config_.hidden_size, values))
      throw Error("batch " + std::to_string(in.batch) + " x length " + std::to_string(in.seq_len) +
                  " x hidden " + std::to_string(config_.hidden_size) + " overflows size_t");
    if (T > options.max_tokens)
      throw Error("the request has " + std::to_string(T) + " tokens (batch " +
                  std::to_string(in.batch) + " x length " + std::to_string(in.seq_len) +
                  "), more than the limit of " + std::to_string(options.max_tokens) +
                  " (RunOptions::max_tokens)");
    for (const EstimatorConfig* e : {&config_.mean_estimator, &config_.std_estimator}) {
      const std::size_t positions = e->decoder.max_position_embeddings;
      if (positions && in.seq_len > positions)
        throw Error("the request's length " + std::to_string(in.seq_len) +
                    " is more than the estimators' max_position_embeddings " +
                    std::to_string(positions))
            .at_file(dir_ + "/config.json");
    }
    if (in.input_ids.size() != T)
      throw Error("holds " + std::to_string(in.input_ids.size()) +
                  " ids, expected batch x length = " + std::to_string(T))
          .at_key("input_ids");
    if (in.noise_mask.size() != T)
      throw Error("holds " + std::to_string(in.noise_mask.size()) + " values, expected " +
                  std::to_string(T))
          .at_key("noise_mask");
    if (!in.attention_mask.empty() && in.attention_mask.size() != T)
      throw Error("holds " + std::to_string(in.attention_mask.size()) + " values, expected " +
                  std::to_string(T))
          .at_key("attention_mask");
    const auto vocab = static_cast<std::int64_t>(config_.vocab_size);
    for (std::size_t t = 0; t < T; ++t) {
      const std::int64_t id = in.input_ids[t];
      if (id < 0 || id >= vocab)
        throw Error("row " + std::to_string(t / in.seq_len) + ", token " +
                    std::to_string(t % in.seq_len) + ": id " + std::to_string(id) +
                    " is outside the vocabulary [0, " + std::to_string(vocab) + ")")
            .at_key("input_ids")
            .at_position(static_cast<std::int64_t>(t % in.seq_len));
    }
    if (options.noise == NoiseSource::Injected) {
      const TensorView<const float>& n = options.injected_noise;
      if (n.rank() != 3 || n.dim(0) != in.batch || n.dim(1) != in.seq_len ||
          n.dim(2) != config_.hidden_size)
        throw Error("injected noise has shape " + n.shape_string() + ", expected [B, S, H] = [" +
                    std::to_string(in.batch) + ", " + std::to_string(in.seq_len) + ", " +
                    std::to_string(config_.hidden_size) + "]")
            .at_tensor("noise");
      if (!n.data()) throw Error("injected noise has no data").at_tensor("noise");
    }
  }

  void draw_noise(const RunOptions& options, TensorView<float> eps) const {
    switch (options.noise) {
      case NoiseSource::Secure: {
        SecureNormalGenerator generator;  // fresh key from the OS for every call
        generator.fill(eps.data(), eps.size());
        break;
      }
      case NoiseSource::Torch: {
        TorchNormalGenerator generator(options.seed);
        generator.fill(eps.data(), eps.size());
        break;
      }
      case NoiseSource::Injected:
        std::copy(options.injected_noise.data(), options.injected_noise.data() + eps.size(),
                  eps.data());
        break;
    }
  }

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<TensorStore> store_;
  AnyTensorView embed_;
  Estimator mean_, std_;
};

SGT_ISA_END
}  // namespace sgt
