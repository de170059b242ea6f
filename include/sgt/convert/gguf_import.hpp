// A GGUF file (io/gguf.hpp) as a Hugging Face model directory that sgt::CausalLM and the text
// front end load: config.json, model.safetensors (f32 or bf16), tokenizer.json and
// tokenizer_config.json.
//
// What each file is built from, and why:
//   - config.json: the `llama.*` keys, named as transformers' GGUF loader names them
//     (integrations/ggml.py), with the vocabulary size and tie_word_embeddings taken from the
//     tensors (an absent `output.weight` is a tied head, as transformers decides it);
//   - model.safetensors: each tensor dequantized to f32 (io/gguf.hpp), renamed to transformers'
//     Llama names, with llama.cpp's Q/K row permutation undone. convert_hf_to_gguf.py permutes
//     q_proj and k_proj rows so that ggml's RoPE (which rotates adjacent pairs) matches
//     transformers' (which rotates the two halves of a head); transformers' loader undoes it
//     (`reverse_permute`), and so do we: within each head, GGUF row (i, half) is row (half, i);
//   - tokenizer.json and tokenizer_config.json: from the `tokenizer.ggml.*` keys, as
//     transformers' loader rebuilds them (convert/gguf_tokenizer.hpp: byte-level BPE and
//     SentencePiece vocabularies).
//
// No partial output (convert/new_directory.hpp): OUT_DIR must not exist or be an empty
// directory, and holds nothing until the import is complete.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/dtype.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/convert/gguf_tokenizer.hpp"
#include "sgt/convert/new_directory.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/gguf.hpp"
#include "sgt/io/safetensors_writer.hpp"

namespace sgt {

struct GgufImportOptions {
  DType dtype = DType::BF16;  // of model.safetensors: F32 keeps every dequantized value exactly
  GgufLimits limits;
};

// The dtypes model.safetensors can be written in, by the names `sgt import-gguf --dtype` takes.
inline constexpr EnumName<DType> kGgufImportDTypeNames[] = {{DType::BF16, "bf16"},
                                                            {DType::F32, "f32"}};

// What an import wrote.
struct GgufImportSummary {
  std::string architecture, tokenizer, pre_tokenizer;
  std::size_t tensors = 0;
  std::uint64_t parameters = 0;
};

namespace detail {

// The GGUF name of a Llama tensor -> transformers' name; throws for one we do not know.
inline std::string hf_llama_tensor_name(const std::string& name, std::uint64_t layers) {
  static const std::map<std::string, std::string> kTop = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string, std::string> kLayer = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  if (auto it = kTop.find(name); it != kTop.end()) return it->second;
  if (name.rfind("blk.", 0) == 0) {
    const std::size_t dot = name.find('.', 4);
    const std::string index = name.substr(4, dot == std::string::npos ? 0 : dot - 4);
    const bool digits = !index.empty() && index.size() <= 9 &&
                        index.find_first_not_of("0123456789") == std::string::npos &&
                        (index == "0" || index[0] != '0');
    if (digits && dot != std::string::npos) {
      const std::uint64_t layer = std::stoull(index);
      if (layer >= layers)
        throw Error("layer " + index + " is past llama.block_count (" + std::to_string(layers) +
                    ")")
            .at_tensor(name);
      if (auto it = kLayer.find(name.substr(dot + 1)); it != kLayer.end())
        return "model.layers." + index + "." + it->second;
    }
  }
  throw Error("unknown tensor (not one of a Llama model's)").at_tensor(name);
}

// Undoes convert_hf_to_gguf.py's permute() of q_proj / k_proj rows (see the file comment): a
// [heads * 2 * half, cols] matrix whose row (h, i, j) moves to (h, j, i), i < half, j < 2.
inline std::vector<float> reverse_llama_permutation(const std::vector<float>& w, std::uint64_t rows,
                                                    std::uint64_t cols, std::uint64_t heads,
                                                    const std::string& name) {
  if (heads == 0 || rows % (2 * heads) != 0)
    throw Error(std::to_string(rows) + " rows do not split into " + std::to_string(heads) +
                " heads of an even size")
        .at_tensor(name);
  const std::uint64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t j = 0; j < 2; ++j)
      for (std::uint64_t i = 0; i < half; ++i) {
        const float* src = w.data() + ((h * half + i) * 2 + j) * cols;
        float* dst = out.data() + ((h * 2 + j) * half + i) * cols;
        std::copy(src, src + cols, dst);
      }
  return out;
}

inline std::uint64_t gguf_positive(const GgufFile& f, const std::string& key,
                                   std::uint64_t max = 1ull << 31) {
  const std::uint64_t v = f.unsigned_integer(key);
  if (v == 0 || v > max)
    throw Error("must be between 1 and " + std::to_string(max) + ", got " + std::to_string(v))
        .at_key(key);
  return v;
}

}  // namespace detail

// The Llama shape a GGUF file describes, checked against its tensors.
struct GgufLlamaShape {
  std::uint64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
                head_dim = 0, context = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool tied = true;
};

inline GgufLlamaShape gguf_llama_shape(const GgufFile& f) {
  const std::string arch = f.string("general.architecture");
  if (arch != "llama")
    throw Error("architecture '" + arch + "' is not supported (llama is)")
        .at_key("general.architecture");
  GgufLlamaShape s;
  s.hidden = detail::gguf_positive(f, "llama.embedding_length");
  s.intermediate = detail::gguf_positive(f, "llama.feed_forward_length");
  s.layers = detail::gguf_positive(f, "llama.block_count", 4096);
  s.heads = detail::gguf_positive(f, "llama.attention.head_count", 65536);
  s.kv_heads = f.contains("llama.attention.head_count_kv")
                   ? detail::gguf_positive(f, "llama.attention.head_count_kv", 65536)
                   : s.heads;
  s.context =
      f.contains("llama.context_length") ? detail::gguf_positive(f, "llama.context_length") : 2048;
  if (s.hidden % s.heads != 0 || s.heads % s.kv_heads != 0)
    throw Error("embedding_length " + std::to_string(s.hidden) + ", head_count " +
                std::to_string(s.heads) + " and head_count_kv " + std::to_string(s.kv_heads) +
                " do not divide")
        .at_key("llama.attention.head_count");
  s.head_dim = s.hidden / s.heads;
  for (const char* key :
       {"llama.rope.dimension_count", "llama.attention.key_length", "llama.attention.value_length"})
    if (f.contains(key) && f.unsigned_integer(key) != s.head_dim)
      throw Error("is " + std::to_string(f.unsigned_integer(key)) + ", but the head size is " +
                  std::to_string(s.head_dim) + " (partial or odd-sized heads are not supported)")
          .at_key(key);
  if (f.contains("llama.rope.scaling.type") && f.string("llama.rope.scaling.type") != "none")
    throw Error("RoPE scaling '" + f.string("llama.rope.scaling.type") + "' is not supported")
        .at_key("llama.rope.scaling.type");
  if (f.contains("llama.attention.layer_norm_rms_epsilon"))
    s.rms_norm_eps = f.number("llama.attention.layer_norm_rms_epsilon");
  if (f.contains("llama.rope.freq_base")) s.rope_theta = f.number("llama.rope.freq_base");
  const GgufTensorInfo& embed = f.tensor("token_embd.weight");
  if (embed.dims.size() != 2 || embed.dims[0] != s.hidden)
    throw Error("shape " + shape_to_string(embed.shape()) + " is not [vocab, " +
                std::to_string(s.hidden) + "]")
        .at_tensor(embed.name);
  s.vocab = embed.dims[1];
  if (f.contains("llama.vocab_size") && f.unsigned_integer("llama.vocab_size") != s.vocab)
    throw Error("is " + std::to_string(f.unsigned_integer("llama.vocab_size")) +
                " but token_embd.weight has " + std::to_string(s.vocab) + " rows")
        .at_key("llama.vocab_size");
  s.tied = f.find_tensor("output.weight") == nullptr;
  return s;
}

inline nlohmann::ordered_json gguf_llama_config(const GgufFile& f, const GgufLlamaShape& s,
                                                DType dtype) {
  nlohmann::ordered_json c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["model_type"] = "llama";
  c["vocab_size"] = s.vocab;
  c["hidden_size"] = s.hidden;
  c["intermediate_size"] = s.intermediate;
  c["num_hidden_layers"] = s.layers;
  c["num_attention_heads"] = s.heads;
  c["num_key_value_heads"] = s.kv_heads;
  c["head_dim"] = s.head_dim;
  c["hidden_act"] = "silu";
  c["max_position_embeddings"] = s.context;
  c["rms_norm_eps"] = s.rms_norm_eps;
  c["rope_theta"] = s.rope_theta;
  c["attention_bias"] = false;
  c["mlp_bias"] = false;
  c["tie_word_embeddings"] = s.tied;
  for (const char* key : {"bos_token_id", "eos_token_id", "padding_token_id"}) {
    const std::string k = std::string("tokenizer.ggml.") + key;
    if (f.contains(k))
      c[std::string(key) == "padding_token_id" ? "pad_token_id" : key] = f.unsigned_integer(k);
  }
  c["torch_dtype"] = dtype == DType::F32 ? "float32" : "bfloat16";
  return c;
}

// The Hugging Face expected shape of each GGUF tensor of a Llama model (PyTorch order).
inline std::vector<std::uint64_t> gguf_llama_expected_shape(const std::string& hf_name,
                                                            const GgufLlamaShape& s) {
  const std::uint64_t q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  auto ends = [&](const char* suffix) {
    const std::string x(suffix);
    return hf_name.size() >= x.size() &&
           hf_name.compare(hf_name.size() - x.size(), x.size(), x) == 0;
  };
  if (ends("embed_tokens.weight") || ends("lm_head.weight")) return {s.vocab, s.hidden};
  if (ends("norm.weight") || ends("layernorm.weight")) return {s.hidden};
  if (ends("q_proj.weight")) return {q, s.hidden};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {kv, s.hidden};
  if (ends("o_proj.weight")) return {s.hidden, q};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {s.intermediate, s.hidden};
  return {s.hidden, s.intermediate};  // down_proj
}

// Writes the model directory into `dir` (which exists and is empty).
inline GgufImportSummary write_gguf_llama_directory(const GgufFile& f, const std::string& dir,
                                                    const GgufImportOptions& options) {
  const GgufLlamaShape s = gguf_llama_shape(f);
  const GgufTokenizerFiles tok = gguf_tokenizer_files(f, s.vocab, s.context);
  SafetensorsWriter writer;
  std::map<std::string, const GgufTensorInfo*> by_hf_name;
  for (const GgufTensorInfo& t : f.tensors()) {
    const std::string hf = detail::hf_llama_tensor_name(t.name, s.layers);
    const std::vector<std::uint64_t> want = gguf_llama_expected_shape(hf, s);
    if (t.shape() != want)
      throw Error("shape " + shape_to_string(t.shape()) + " is not the expected " +
                  shape_to_string(want))
          .at_tensor(t.name);
    by_hf_name[hf] = &t;
  }
  std::vector<std::string> required = {"model.embed_tokens.weight", "model.norm.weight"};
  for (std::uint64_t l = 0; l < s.layers; ++l)
    for (const char* p : {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                          "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      required.push_back("model.layers." + std::to_string(l) + "." + p + ".weight");
  for (const std::string& r : required)
    if (!by_hf_name.count(r)) throw Error("missing tensor (transformers' " + r + ")");
  GgufImportSummary summary{"llama", tok.model, tok.pre_tokenizer, by_hf_name.size(), 0};
  for (const auto& [hf, t] : by_hf_name) {
    summary.parameters += t->elements;
    std::vector<float> values = f.dequantize(*t);
    const std::vector<std::uint64_t> shape = t->shape();
    if (t->name.find(".attn_q.") != std::string::npos)
      values = detail::reverse_llama_permutation(values, shape[0], shape[1], s.heads, t->name);
    else if (t->name.find(".attn_k.") != std::string::npos)
      values = detail::reverse_llama_permutation(values, shape[0], shape[1], s.kv_heads, t->name);
    writer.add_from_f32(hf, options.dtype, shape, values.data());
  }
  writer.set_metadata("format", "pt");
  writer.write(dir + "/model.safetensors");
  auto write_json = [&](const char* name, const nlohmann::ordered_json& j) {
    std::string text;
    try {
      text = j.dump(2);
    } catch (const nlohmann::json::exception& e) {  // a string the checks above did not see
      throw Error(std::string("cannot write ") + name + ": " + e.what());
    }
    write_file_atomically(dir + "/" + name, text);
  };
  write_json("config.json", gguf_llama_config(f, s, options.dtype));
  write_json("tokenizer.json", tok.tokenizer);
  write_json("tokenizer_config.json", tok.tokenizer_config);
  return summary;
}

// Imports GGUF_PATH into a new directory OUT_DIR (see the file comment).
inline GgufImportSummary import_gguf(const std::string& gguf_path, const std::string& out_dir,
                                     const GgufImportOptions& options = {}) {
  if (options.dtype == DType::F16)
    throw Error("import_gguf writes f32 or bf16, not f16").at_file(out_dir);
  NewDirectoryOptions where;
  where.allow_empty = true;
  check_new_directory(out_dir, where);  // before reading a file of gigabytes
  const GgufFile file(gguf_path, options.limits);
  return write_new_directory(
      out_dir,
      [&](const std::string& tmp) {
        try {
          return write_gguf_llama_directory(file, tmp, options);
        } catch (Error& e) {
          e.at_file(gguf_path);
          throw;
        }
      },
      where);
}

}  // namespace sgt
