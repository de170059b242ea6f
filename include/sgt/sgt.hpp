// sgt-cpp: the umbrella header. Include this and link sgt::sgt.
//
// Layers, each a folder; a header includes only its own layer and those below it (a ctest checks
// it, tests/layering): core <- io, kernels, random <- model. See docs/architecture.md.
//   core/     errors, dtypes, tensor views, the SIMD shim, the thread pool, the log hook, wiped
//             buffers
//   io/       the JSON front door, safetensors (mmap, sharded), the writers (safetensors, torch
//             .pt, vLLM request bodies), requests (IN.json)
//   kernels/  one op per header, each with its plain reference
//   random/   secure and torch-compatible normal generators
//   model/    model families, config structs and loader, weights, activations, decoder layer,
//             estimator, Transform; CausalLM (a Hugging Face LM with a KV cache) and greedy
//             generation
#pragma once

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/invariant.hpp"
#include "sgt/core/log.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

#include "sgt/io/atomic_file.hpp"
#include "sgt/io/base64.hpp"
#include "sgt/io/crc32.hpp"
#include "sgt/io/encoded_tensor.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/mapped_file.hpp"
#include "sgt/io/pickle_writer.hpp"
#include "sgt/io/png_writer.hpp"
#include "sgt/io/request.hpp"
#include "sgt/io/safetensors.hpp"
#include "sgt/io/safetensors_writer.hpp"
#include "sgt/io/sequence_rows.hpp"
#include "sgt/io/tensor_store.hpp"
#include "sgt/io/torch_archive_writer.hpp"
#include "sgt/io/torch_pt_writer.hpp"
#include "sgt/io/transform_input.hpp"
#include "sgt/io/vllm_request_writer.hpp"

#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/cached_attention.hpp"
#include "sgt/kernels/embedding.hpp"
#include "sgt/kernels/flash_attention.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/nearest_rows.hpp"
#include "sgt/kernels/noise_formula.hpp"
#include "sgt/kernels/overlap.hpp"
#include "sgt/kernels/parameterization.hpp"
#include "sgt/kernels/residual.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/rope_positions.hpp"
#include "sgt/kernels/sdpa.hpp"
#include "sgt/kernels/swiglu.hpp"

#include "sgt/random/chacha20.hpp"
#include "sgt/random/os_entropy.hpp"
#include "sgt/random/secure_normal.hpp"
#include "sgt/random/torch_normal.hpp"

#include "sgt/model/activations.hpp"
#include "sgt/model/audit.hpp"
#include "sgt/model/cached_decoder_layer.hpp"
#include "sgt/model/causal_lm.hpp"
#include "sgt/model/causal_lm_config.hpp"
#include "sgt/model/causal_lm_config_json.hpp"
#include "sgt/model/causal_lm_weights.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/config_json.hpp"
#include "sgt/model/decoder_layer.hpp"
#include "sgt/model/estimator.hpp"
#include "sgt/model/families.hpp"
#include "sgt/model/generate.hpp"
#include "sgt/model/token_sampler.hpp"
#include "sgt/model/kv_cache.hpp"
#include "sgt/model/lm_workspace.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/transform.hpp"
#include "sgt/model/utility_audit.hpp"
#include "sgt/model/weights.hpp"
