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
//   - tokenizer.json: the `gpt2` byte-level BPE vocabulary and merges, its control tokens as
//     special added tokens, and the pre-tokenizer of the original model chosen by
//     `tokenizer.ggml.pre` (the regexes are those of the models' own tokenizer.json files, which
//     llama.cpp's llama-vocab.cpp reproduces per name). A name not in the table is refused, never
//     guessed: a wrong regex silently tokenizes differently from what the model was trained on;
//   - tokenizer_config.json: the chat template and the bos/eos/unk/pad strings.
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

// The pre-tokenizers we rebuild, by `tokenizer.ggml.pre`.
struct GgufPreTokenizer {
  const char* name;
  const char* split_regex;  // null: ByteLevel's own (GPT-2) regex
  bool individual_digits;   // Digits(individual_digits) before ByteLevel
  bool nfc;                 // an NFC normalizer
};

inline constexpr const char* kLlama3SplitRegex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* kQwen2SplitRegex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

inline constexpr GgufPreTokenizer kGgufPreTokenizers[] = {
    {"gpt-2", nullptr, false, false},
    {"smollm", nullptr, true, false},
    {"llama-bpe", kLlama3SplitRegex, false, false},
    {"qwen2", kQwen2SplitRegex, false, true},
};

namespace detail {

inline std::string gguf_known_pre_tokenizers() {
  std::string s;
  for (const GgufPreTokenizer& p : kGgufPreTokenizers)
    s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

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

// GPT-2's byte-level alphabet (bytes_to_unicode): the code point that spells byte b.
inline std::uint32_t byte_level_code_point(unsigned char b) noexcept {
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  if (printable) return b;
  std::uint32_t n = 0;  // the rank of b among the bytes that are not printable
  for (unsigned x = 0; x < b; ++x)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) ++n;
  return 256 + n;
}

inline void append_utf8(std::string& s, std::uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {  // the alphabet stops at U+0143: two bytes
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Whether every character of `token` is in the byte-level alphabet (it is spelled as a GPT-2
// vocabulary spells tokens). llama.cpp writes some tokens raw (a token whose bytes are not UTF-8
// comes back as U+FFFD, say); transformers' loader respells those from their UTF-8 bytes so that
// the merges find them, and does not take one marked control as a special token. So do we.
inline bool in_byte_level_alphabet(const std::string& token) {
  for (std::size_t i = 0; i < token.size();) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    std::uint32_t cp = 0;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;  // three bytes and more are above U+0143
    }
    const bool printable = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) ||
                           (cp >= 174 && cp <= 255) || (cp >= 256 && cp <= 323);
    if (!printable) return false;
  }
  return true;
}

inline std::string byte_level_spelling(const std::string& token) {
  std::string out;
  for (const char c : token) append_utf8(out, byte_level_code_point(static_cast<unsigned char>(c)));
  return out;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
// what a JSON file may hold. GGUF strings are bytes, and nothing promises that.
inline bool is_utf8(const std::string& s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

inline const std::string& require_utf8(const std::string& s, const std::string& key,
                                       const std::string& what) {
  if (!is_utf8(s))
    throw Error(what + " is not valid UTF-8 (a JSON file cannot hold it)").at_key(key);
  return s;
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

// tokenizer.json and tokenizer_config.json of a `gpt2` vocabulary.
struct GgufTokenizerFiles {
  nlohmann::ordered_json tokenizer, tokenizer_config;
};

inline GgufTokenizerFiles gguf_tokenizer_files(const GgufFile& f, const GgufLlamaShape& s) {
  const std::string model = f.string("tokenizer.ggml.model");
  if (model != "gpt2")
    throw Error("tokenizer model '" + model + "' is not supported (gpt2, byte-level BPE, is)")
        .at_key("tokenizer.ggml.model");
  const std::string pre_name =
      f.contains("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : std::string("(absent)");
  const GgufPreTokenizer* pre = nullptr;
  for (const GgufPreTokenizer& p : kGgufPreTokenizers)
    if (pre_name == p.name) pre = &p;
  if (!pre)
    throw Error("pre-tokenizer '" + pre_name + "' is not supported (" +
                detail::gguf_known_pre_tokenizers() + " are)")
        .at_key("tokenizer.ggml.pre");
  const std::vector<std::string>& tokens = f.strings("tokenizer.ggml.tokens");
  if (tokens.size() != s.vocab)
    throw Error(std::to_string(tokens.size()) + " tokens, but token_embd.weight has " +
                std::to_string(s.vocab) + " rows")
        .at_key("tokenizer.ggml.tokens");
  std::vector<std::int64_t> types;
  if (f.contains("tokenizer.ggml.token_type")) {
    types = f.integers("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      throw Error(std::to_string(types.size()) + " types for " + std::to_string(tokens.size()) +
                  " tokens")
          .at_key("tokenizer.ggml.token_type");
  }
  auto token_of = [&](const char* key) -> nlohmann::ordered_json {
    const std::string k = std::string("tokenizer.ggml.") + key;
    if (!f.contains(k)) return nullptr;
    const std::uint64_t id = f.unsigned_integer(k);
    if (id >= tokens.size())
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                  std::to_string(tokens.size()))
          .at_key(k);
    return detail::require_utf8(tokens[id], k, "token " + std::to_string(id));
  };

  nlohmann::ordered_json t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = nlohmann::ordered_json::array();
  // llama.cpp's token types: 3 control (a special token), 4 user-defined (an added token that is
  // not special). Both are matched before the BPE, as tokenizers' added vocabulary is.
  std::vector<bool> spelled(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id)
    spelled[id] = detail::in_byte_level_alphabet(tokens[id]);
  for (std::size_t id = 0; id < types.size(); ++id)
    if ((types[id] == 3 || types[id] == 4) && spelled[id])
      t["added_tokens"].push_back({{"id", id},
                                   {"content", tokens[id]},
                                   {"single_word", false},
                                   {"lstrip", false},
                                   {"rstrip", false},
                                   {"normalized", false},
                                   {"special", types[id] == 3}});
  t["normalizer"] = pre->nfc ? nlohmann::ordered_json{{"type", "NFC"}} : nlohmann::ordered_json();
  nlohmann::ordered_json byte_level = {{"type", "ByteLevel"},
                                       {"add_prefix_space", false},
                                       {"trim_offsets", true},
                                       {"use_regex", pre->split_regex == nullptr}};
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  if (pre->individual_digits) steps.push_back({{"type", "Digits"}, {"individual_digits", true}});
  if (pre->split_regex)
    steps.push_back({{"type", "Split"},
                     {"pattern", {{"Regex", pre->split_regex}}},
                     {"behavior", "Isolated"},
                     {"invert", false}});
  steps.push_back(byte_level);
  t["pre_tokenizer"] = steps.size() == 1
                           ? byte_level
                           : nlohmann::ordered_json{{"type", "Sequence"}, {"pretokenizers", steps}};
  const bool add_bos =
      f.contains("tokenizer.ggml.add_bos_token") && f.boolean("tokenizer.ggml.add_bos_token");
  const nlohmann::ordered_json bos = token_of("bos_token_id");
  if (add_bos && !bos.is_null()) {
    const std::string b = bos.get<std::string>();
    const std::uint64_t bos_id = f.unsigned_integer("tokenizer.ggml.bos_token_id");
    t["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{b, {{"id", b}, {"ids", {bos_id}}, {"tokens", {b}}}}}}};
  } else {
    t["post_processor"] = {{"type", "ByteLevel"},
                           {"add_prefix_space", true},
                           {"trim_offsets", false},
                           {"use_regex", true}};
  }
  t["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  const std::vector<std::string> merges = f.contains("tokenizer.ggml.merges")
                                              ? f.strings("tokenizer.ggml.merges")
                                              : std::vector<std::string>{};
  for (std::size_t i = 0; i < merges.size(); ++i)
    detail::require_utf8(merges[i], "tokenizer.ggml.merges", "merge " + std::to_string(i));
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (std::size_t id = 0; id < tokens.size(); ++id)
    vocab[spelled[id] ? tokens[id] : detail::byte_level_spelling(tokens[id])] = id;
  t["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", f.contains("tokenizer.ggml.merges") ? f.strings("tokenizer.ggml.merges")
                                                               : std::vector<std::string>{}}};

  nlohmann::ordered_json c;
  c["add_bos_token"] = add_bos;
  c["add_eos_token"] =
      f.contains("tokenizer.ggml.add_eos_token") && f.boolean("tokenizer.ggml.add_eos_token");
  c["bos_token"] = bos;
  c["eos_token"] = token_of("eos_token_id");
  c["unk_token"] = token_of("unknown_token_id");
  c["pad_token"] = token_of("padding_token_id");
  if (f.contains("tokenizer.chat_template"))
    c["chat_template"] = detail::require_utf8(f.string("tokenizer.chat_template"),
                                              "tokenizer.chat_template", "the template");
  c["clean_up_tokenization_spaces"] = false;
  c["model_max_length"] = s.context;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  return {std::move(t), std::move(c)};
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
  const GgufTokenizerFiles tok = gguf_tokenizer_files(f, s);
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
  GgufImportSummary summary{"llama", "gpt2", f.string("tokenizer.ggml.pre"), by_hf_name.size(), 0};
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
