// A transform's output, written in one of the formats a consumer takes (docs/format.md section 6):
//
//   safetensors        "transformed" [B, S, H] (padding rows included, as the transform returns
//                      them), and with the intermediates "embeddings", "mean", "std", "noise";
//   torch              torch.save of one (T, H) tensor for B = 1, of a list of (T_b, H) tensors
//                      for B > 1;
//   vllm-completions   a vLLM Completions request body, one prompt_embeds string per sequence.
//
// The server formats drop padding rows (attention_mask 0): a server is sent only real tokens.
// The arrays come as plain pointers, not as a TransformResult, so that any front end (the CLI, a
// server, a C++ caller with buffers of its own) writes through the same code and io/ stays below
// model/. Every format is written through io/atomic_file.hpp: no partial file, and only a regular
// file or an absent one is replaced unless options.file.stream says to write into a FIFO or device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "sgt/core/dtype.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/encoded_tensor.hpp"
#include "sgt/io/safetensors_writer.hpp"
#include "sgt/io/sequence_rows.hpp"
#include "sgt/io/torch_pt_writer.hpp"
#include "sgt/io/vllm_request_writer.hpp"

namespace sgt {

enum class OutputFormat { Safetensors, Torch, VllmCompletions };

inline constexpr EnumName<OutputFormat> kOutputFormatNames[] = {
    {OutputFormat::Safetensors, "safetensors"},
    {OutputFormat::Torch, "torch"},
    {OutputFormat::VllmCompletions, "vllm-completions"},
};

// The output dtypes, as the command line spells them.
inline constexpr EnumName<DType> kOutputDTypeNames[] = {
    {DType::F32, "f32"},
    {DType::BF16, "bf16"},
    {DType::F16, "f16"},
};

// Safetensors keeps the transform's exact f32; the server formats are bf16, the dtype servers run
// models in (vLLM casts to the model's dtype anyway), at half the payload.
inline DType default_output_dtype(OutputFormat format) noexcept {
  return format == OutputFormat::Safetensors ? DType::F32 : DType::BF16;
}

struct TransformOutputOptions {
  OutputFormat format = OutputFormat::Safetensors;
  DType dtype = DType::F32;
  VllmCompletionsRequest request;  // vllm-completions: the request's model and max_tokens
  FileWriteOptions file;           // stream into a FIFO or device; fsync (io/atomic_file.hpp)
};

// What is written, [B, S, H] each, row-major f32.
struct TransformOutputArrays {
  std::size_t batch = 0, seq_len = 0, hidden = 0;
  const float* transformed = nullptr;
  // With the safetensors format, written beside "transformed" when set (all four or none).
  const float* embeddings = nullptr;
  const float* mean = nullptr;
  const float* sigma = nullptr;
  const float* noise = nullptr;
  // [B, S], 1 = a real token; empty: every token is real.
  std::vector<std::uint8_t> attention_mask;
};

// The arrays of a transform's result (model/transform.hpp's TransformResult, or any type with its
// fields), with the intermediates when asked for; the mask is the request's attention mask.
template <class Result>
TransformOutputArrays output_arrays(const Result& r,
                                    const std::vector<std::uint8_t>& attention_mask,
                                    bool with_intermediates) {
  TransformOutputArrays a;
  a.batch = r.batch;
  a.seq_len = r.seq_len;
  a.hidden = r.hidden;
  a.transformed = r.transformed.data();
  if (with_intermediates) {
    a.embeddings = r.embeddings.data();
    a.mean = r.mean.data();
    a.sigma = r.sigma.data();
    a.noise = r.noise.data();
  }
  a.attention_mask = attention_mask;
  return a;
}

// The output's folder must exist, and the output be a file the writers will replace (absent or
// regular; with options.stream also a FIFO, device or link: check_output_target), before anything
// runs: a typo in the path should not cost a model load and a transform. (The writers check again:
// the folder could vanish meanwhile.)
inline void check_output_folder(const std::string& path, const FileWriteOptions& options = {}) {
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!folder.empty() && !std::filesystem::is_directory(folder, ec))
    throw Error("cannot create: the folder " + folder.string() + " does not exist").at_file(path);
  check_output_target(path, options);
}

namespace detail {
// make(), with `path` added to the error it throws: the bytes are built for that file.
template <class Make>
auto naming_file(const std::string& path, Make&& make) {
  try {
    return make();
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
}
}  // namespace detail

inline void write_transform_output(const std::string& path, const TransformOutputOptions& options,
                                   const TransformOutputArrays& a) {
  const DType dtype = options.dtype;
  const std::size_t H = a.hidden, size = a.batch * a.seq_len * a.hidden;
  if (options.format == OutputFormat::Safetensors) {
    const std::vector<std::uint64_t> shape{a.batch, a.seq_len, a.hidden};
    SafetensorsWriter writer;
    writer.add_from_f32("transformed", dtype, shape, a.transformed);
    const bool intermediates = a.embeddings || a.mean || a.sigma || a.noise;
    if (intermediates && !(a.embeddings && a.mean && a.sigma && a.noise))
      throw Error("the intermediates are written all four or not at all").at_file(path);
    if (intermediates) {
      writer.add_from_f32("embeddings", dtype, shape, a.embeddings);
      writer.add_from_f32("mean", dtype, shape, a.mean);
      writer.add_from_f32("std", dtype, shape, a.sigma);
      writer.add_from_f32("noise", dtype, shape, a.noise);
    }
    const auto bytes = detail::naming_file(path, [&] { return writer.serialize(); });
    write_file_atomically(path, bytes.data(), bytes.size(), options.file);
    return;
  }
  const auto rows =
      real_token_rows(a.transformed, size, a.batch, a.seq_len, a.hidden, a.attention_mask);
  std::vector<EncodedTensor> sequences;
  for (const auto& row : rows)
    sequences.push_back(encode_tensor(dtype, {H ? row.size() / H : 0, H}, row.data()));
  if (options.format == OutputFormat::Torch) {
    const auto bytes = detail::naming_file(path, [&] {
      return sequences.size() == 1 ? torch_save_bytes(sequences[0], torch_archive_name(path))
                                   : torch_save_bytes(sequences, torch_archive_name(path));
    });
    write_file_atomically(path, bytes.data(), bytes.size(), options.file);
  } else {
    const std::string body = detail::naming_file(
        path, [&] { return vllm_completions_body(options.request, sequences); });
    write_file_atomically(path, body, options.file);
  }
}

}  // namespace sgt
