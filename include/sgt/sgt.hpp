// sgt-cpp: the umbrella header. Include this and link sgt::sgt.
//
// Layers, each a folder; a header includes only its own layer and those below it (a ctest checks
// it, tests/layering): core <- io, kernels, random <- model <- lm <- audit. See
// docs/architecture.md. The text front end (sgt/text/, target sgt::text) and the pipelines built
// on it (sgt/pipeline/) are not included here: they need Oniguruma and utf8proc.
//   core/     errors, dtypes, tensor views, the SIMD shim, the thread pool, the log hook, wiped
//             buffers
//   io/       the JSON front door, safetensors (mmap, sharded), the writers (safetensors, torch
//             .pt, vLLM request bodies), requests (IN.json)
//   kernels/  one op per header, each with its plain reference
//   random/   secure and torch-compatible normal generators
//   model/    model families, config structs and loader, weights, activations, decoder layer,
//             estimator, Transform
//   lm/       CausalLM (a Hugging Face LM with a static KV cache), the sampler, generation
//   audit/    what a transform protects (nearest-neighbour recovery) and what it costs a base LM
//   convert/  other formats into model directories the library loads (GGUF import), and a
//             transform made from a base model (make_transform)
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
#include "sgt/io/gguf.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/mapped_file.hpp"
#include "sgt/io/ordered_json.hpp"
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
#include "sgt/model/config.hpp"
#include "sgt/model/config_json.hpp"
#include "sgt/model/decoder_layer.hpp"
#include "sgt/model/estimator.hpp"
#include "sgt/model/families.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/transform.hpp"
#include "sgt/model/weights.hpp"

#include "sgt/lm/cached_decoder_layer.hpp"
#include "sgt/lm/causal_lm.hpp"
#include "sgt/lm/config.hpp"
#include "sgt/lm/config_json.hpp"
#include "sgt/lm/decode_weights.hpp"
#include "sgt/lm/generate.hpp"
#include "sgt/lm/kv_cache.hpp"
#include "sgt/lm/token_sampler.hpp"
#include "sgt/lm/weights.hpp"
#include "sgt/lm/workspace.hpp"

#include "sgt/audit/recovery_audit.hpp"
#include "sgt/audit/utility_audit.hpp"

#include "sgt/convert/gguf_import.hpp"
#include "sgt/convert/gguf_tokenizer.hpp"
#include "sgt/convert/make_transform.hpp"
#include "sgt/convert/new_directory.hpp"
