// A GGUF file's vocabulary (the `tokenizer.ggml.*` keys) as the tokenizer.json and
// tokenizer_config.json that transformers' GGUF loader builds from it
// (transformers/integrations/gguf/gguf_tokenizer_mapping.py), by `tokenizer.ggml.model`:
//   - `gpt2`: the byte-level BPE vocabulary and merges, its control tokens as special added
//     tokens, and the pre-tokenizer of the original model chosen by `tokenizer.ggml.pre` (the
//     regexes are those of the models' own tokenizer.json files, which llama.cpp's llama-vocab.cpp
//     reproduces per name). A name not in the table is refused, never guessed: a wrong regex
//     silently tokenizes differently from what the model was trained on;
//   - `llama`: SentencePiece's BPE as transformers' LlamaTokenizer builds it -- a Metaspace
//     pre-tokenizer (spaces become U+2581, one is put before the text), a BPE with byte fallback
//     (a character outside the vocabulary becomes its UTF-8 bytes, tokens `<0xNN>`), and merges
//     from the file or, when it has none (SentencePiece stores scores, not merges), derived from
//     the vocabulary and its scores as transformers' `generate_merges` derives them.
// Any other model is refused by name. The metadata is untrusted: array lengths must agree with
// each other and with the embedding's rows, token types be llama.cpp's, strings UTF-8, and the
// work of deriving merges is bounded before it starts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/io/gguf.hpp"

namespace sgt {

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

// llama.cpp's token types (llama_token_type): 0 undefined, 1 normal, 2 unknown, 3 control (a
// special token), 4 user-defined (an added token that is not special), 5 unused, 6 byte.
inline constexpr std::int64_t kGgufTokenControl = 3, kGgufTokenUserDefined = 4,
                              kGgufTokenTypeMax = 6;

// The work of deriving SentencePiece merges: each token is cut at every character boundary and
// both halves are looked up, so a token of n bytes costs about n * n. Real vocabularies need a few
// million (Llama 2's 32000 tokens: 1.3 million); a file whose tokens would need more than
// this is refused before any of it is done.
inline constexpr std::uint64_t kGgufMaxMergeDerivationWork = 1ull << 28;

// The tokens and their types, checked against each other and the embedding's rows.
struct GgufVocabulary {
  const std::vector<std::string>* tokens = nullptr;
  std::vector<std::int64_t> types;  // empty when the file has none

  std::size_t size() const noexcept { return tokens->size(); }
  const std::string& operator[](std::size_t id) const { return (*tokens)[id]; }
};

inline GgufVocabulary gguf_vocabulary(const GgufFile& f, std::uint64_t rows) {
  GgufVocabulary v;
  v.tokens = &f.strings("tokenizer.ggml.tokens");
  if (v.tokens->size() != rows)
    throw Error(std::to_string(v.tokens->size()) + " tokens, but token_embd.weight has " +
                std::to_string(rows) + " rows")
        .at_key("tokenizer.ggml.tokens");
  if (f.contains("tokenizer.ggml.token_type")) {
    v.types = f.integers("tokenizer.ggml.token_type");
    if (v.types.size() != v.tokens->size())
      throw Error(std::to_string(v.types.size()) + " types for " +
                  std::to_string(v.tokens->size()) + " tokens")
          .at_key("tokenizer.ggml.token_type");
    for (std::size_t id = 0; id < v.types.size(); ++id)
      if (v.types[id] < 0 || v.types[id] > kGgufTokenTypeMax)
        throw Error("token " + std::to_string(id) + " has type " + std::to_string(v.types[id]) +
                    " (llama.cpp's types are 0 to " + std::to_string(kGgufTokenTypeMax) + ")")
            .at_key("tokenizer.ggml.token_type");
  }
  return v;
}

// The token `tokenizer.ggml.<key>` names, or null when the key is absent.
inline nlohmann::ordered_json gguf_special_token(const GgufFile& f, const GgufVocabulary& v,
                                                 const char* key) {
  const std::string k = std::string("tokenizer.ggml.") + key;
  if (!f.contains(k)) return nullptr;
  const std::uint64_t id = f.unsigned_integer(k);
  if (id >= v.size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                std::to_string(v.size()))
        .at_key(k);
  return require_utf8(v[id], k, "token " + std::to_string(id));
}

// tokenizer.json's "vocab" as a Python dict built from the list: a token stored twice is listed
// where it first appears, with its last id. Appended to the object's entries directly: the
// ordered object's own insertion searches it, quadratic in a vocabulary of 10^5 tokens.
inline nlohmann::ordered_json vocabulary_json(const std::vector<std::string>& spellings) {
  std::unordered_map<std::string_view, std::size_t> last;
  last.reserve(spellings.size());
  for (std::size_t id = 0; id < spellings.size(); ++id) last[spellings[id]] = id;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  auto& entries = vocab.get_ref<nlohmann::ordered_json::object_t&>();
  entries.reserve(last.size());
  std::unordered_set<std::string_view> seen;
  seen.reserve(last.size());
  for (const std::string& token : spellings)
    if (seen.insert(token).second) entries.push_back({token, last.at(token)});
  return vocab;
}

inline bool gguf_flag(const GgufFile& f, const std::string& key, bool absent) {
  return f.contains(key) ? f.boolean(key) : absent;
}

inline nlohmann::ordered_json added_token_json(std::uint64_t id, const std::string& content,
                                               bool special) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

inline nlohmann::ordered_json tokenizer_config_json(const GgufFile& f, const GgufVocabulary& v,
                                                    bool add_bos, bool add_eos,
                                                    std::uint64_t context) {
  nlohmann::ordered_json c;
  c["add_bos_token"] = add_bos;
  c["add_eos_token"] = add_eos;
  c["bos_token"] = gguf_special_token(f, v, "bos_token_id");
  c["eos_token"] = gguf_special_token(f, v, "eos_token_id");
  c["unk_token"] = gguf_special_token(f, v, "unknown_token_id");
  c["pad_token"] = gguf_special_token(f, v, "padding_token_id");
  if (f.contains("tokenizer.chat_template"))
    c["chat_template"] = require_utf8(f.string("tokenizer.chat_template"),
                                      "tokenizer.chat_template", "the template");
  c["clean_up_tokenization_spaces"] = false;
  c["model_max_length"] = context;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  return c;
}

}  // namespace detail

// tokenizer.json and tokenizer_config.json, and what they were built from.
struct GgufTokenizerFiles {
  nlohmann::ordered_json tokenizer, tokenizer_config;
  std::string model, pre_tokenizer;  // tokenizer.ggml.model and .pre ("(absent)" when absent)
};

inline GgufTokenizerFiles gguf_byte_level_tokenizer(const GgufFile& f, std::uint64_t rows,
                                                    std::uint64_t context) {
  const std::string pre_name =
      f.contains("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : std::string("(absent)");
  const GgufPreTokenizer* pre = nullptr;
  for (const GgufPreTokenizer& p : kGgufPreTokenizers)
    if (pre_name == p.name) pre = &p;
  if (!pre)
    throw Error("pre-tokenizer '" + pre_name + "' is not supported (" +
                detail::gguf_known_pre_tokenizers() + " are)")
        .at_key("tokenizer.ggml.pre");
  const detail::GgufVocabulary tokens = detail::gguf_vocabulary(f, rows);

  nlohmann::ordered_json t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = nlohmann::ordered_json::array();
  // Control and user-defined tokens are matched before the BPE, as tokenizers' added vocabulary
  // is.
  std::vector<bool> spelled(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id)
    spelled[id] = detail::in_byte_level_alphabet(tokens[id]);
  for (std::size_t id = 0; id < tokens.types.size(); ++id) {
    const std::int64_t type = tokens.types[id];
    if ((type == detail::kGgufTokenControl || type == detail::kGgufTokenUserDefined) && spelled[id])
      t["added_tokens"].push_back(
          detail::added_token_json(id, tokens[id], type == detail::kGgufTokenControl));
  }
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
  const bool add_bos = detail::gguf_flag(f, "tokenizer.ggml.add_bos_token", false);
  const nlohmann::ordered_json bos = detail::gguf_special_token(f, tokens, "bos_token_id");
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
  std::vector<std::string> spellings(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id)
    spellings[id] = spelled[id] ? tokens[id] : detail::byte_level_spelling(tokens[id]);
  t["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", detail::vocabulary_json(spellings)},
                {"merges", merges}};
  return {
      std::move(t),
      detail::tokenizer_config_json(
          f, tokens, add_bos, detail::gguf_flag(f, "tokenizer.ggml.add_eos_token", false), context),
      "gpt2", pre_name};
}

namespace detail {

// The number of characters (code points) of well-formed UTF-8.
inline std::size_t utf8_length(std::string_view s) noexcept {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// transformers' generate_merges(vocab, scores) (tokenization_utils_base.py), which its GGUF
// loader runs on a SentencePiece vocabulary without merges: every cut of a token into two tokens
// of the vocabulary is a merge, with the token's score; all are ordered by score, longer left half,
// longer right half, each descending, equal keys keeping the tokens' order (Python's stable sort).
// generate_merges first orders a token's own merges by the ids of their halves; that order never
// survives, since each cut of one token has a left half of another length. A token stored twice
// counts once, where it first appears, with the score and id of its last copy (a Python dict built
// from the list).
inline std::vector<std::pair<std::string_view, std::string_view>> sentencepiece_merges(
    const std::vector<std::string>& tokens, const std::vector<double>& scores) {
  std::unordered_map<std::string_view, std::size_t> last;  // token -> its last id
  last.reserve(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id) last[tokens[id]] = id;
  std::uint64_t work = 0;
  for (const auto& [token, id] : last) work += std::uint64_t(token.size()) * utf8_length(token);
  if (work > kGgufMaxMergeDerivationWork)
    throw Error("deriving merges from these tokens would take " + std::to_string(work) +
                " steps (the limit is " + std::to_string(kGgufMaxMergeDerivationWork) +
                "; are some tokens very long?)")
        .at_key("tokenizer.ggml.tokens");

  struct Merge {
    std::size_t left, right;  // ids (the last copies)
    double score;
    std::size_t left_chars, right_chars;
  };
  std::vector<Merge> merges;
  std::unordered_set<std::string_view> seen;
  seen.reserve(last.size());
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    const std::string_view token = tokens[id];
    if (!seen.insert(token).second) continue;
    const double score = scores[last.at(token)];
    std::size_t chars = 0;
    const std::size_t total = utf8_length(token);
    for (std::size_t cut = 1; cut < token.size(); ++cut) {
      if ((static_cast<unsigned char>(token[cut]) & 0xC0) == 0x80) continue;
      ++chars;
      const auto l = last.find(token.substr(0, cut)), r = last.find(token.substr(cut));
      if (l != last.end() && r != last.end())
        merges.push_back({l->second, r->second, score, chars, total - chars});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    return a.right_chars > b.right_chars;
  });
  std::vector<std::pair<std::string_view, std::string_view>> out;
  out.reserve(merges.size());
  for (const Merge& m : merges) out.emplace_back(tokens[m.left], tokens[m.right]);
  return out;
}

// transformers' TemplateProcessing for these flags (TokenizersBackend.update_post_processor):
// single "[bos:0] $A:0 [eos:0]", pair "... [bos:1] $B:1 [eos:1]".
inline nlohmann::ordered_json template_processing(const std::string* bos, std::uint64_t bos_id,
                                                  const std::string* eos, std::uint64_t eos_id) {
  auto special = [](const std::string& t, int type_id) {
    return nlohmann::ordered_json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) {
    return nlohmann::ordered_json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  nlohmann::ordered_json single = nlohmann::ordered_json::array(), pair;
  if (bos) single.push_back(special(*bos, 0));
  single.push_back(sequence("A", 0));
  if (eos) single.push_back(special(*eos, 0));
  pair = single;
  if (bos) pair.push_back(special(*bos, 1));
  pair.push_back(sequence("B", 1));
  if (eos) pair.push_back(special(*eos, 1));
  nlohmann::ordered_json specials = nlohmann::ordered_json::object();
  if (bos) specials[*bos] = {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}};
  if (eos) specials[*eos] = {{"id", *eos}, {"ids", {eos_id}}, {"tokens", {*eos}}};
  return {{"type", "TemplateProcessing"},
          {"single", std::move(single)},
          {"pair", std::move(pair)},
          {"special_tokens", std::move(specials)}};
}

}  // namespace detail

// A `llama` (SentencePiece) vocabulary, as transformers' LlamaTokenizer holds it after its GGUF
// loader: no normalizer; Metaspace (U+2581 for spaces, one before the text's first piece, the
// non-legacy "first" scheme); BPE with byte fallback over the tokens as stored; the decoder
// undoing both. Added tokens: control ones (type 3) special, user-defined ones (type 4) not, then
// bos/eos/unk/pad as special. BOS is added unless `tokenizer.ggml.add_bos_token` is false
// (llama.cpp adds it to a SentencePiece vocabulary that does not say), EOS when `add_eos_token` is
// true.
//
// One difference, on purpose: transformers ignores `tokenizer.ggml.add_space_prefix`; a file that
// sets it false (its SentencePiece model had no dummy prefix) gets no U+2581 before the text here,
// as in llama.cpp and in LlamaTokenizer(add_prefix_space=False).
inline GgufTokenizerFiles gguf_sentencepiece_tokenizer(const GgufFile& f, std::uint64_t rows,
                                                       std::uint64_t context) {
  const std::string pre_name =
      f.contains("tokenizer.ggml.pre") ? f.string("tokenizer.ggml.pre") : std::string("(absent)");
  if (pre_name != "(absent)" && pre_name != "default")
    throw Error("pre-tokenizer '" + pre_name +
                "' is not supported with a llama (SentencePiece) vocabulary (default is)")
        .at_key("tokenizer.ggml.pre");
  const detail::GgufVocabulary tokens = detail::gguf_vocabulary(f, rows);
  for (std::size_t id = 0; id < tokens.size(); ++id)
    detail::require_utf8(tokens[id], "tokenizer.ggml.tokens", "token " + std::to_string(id));
  const bool has_merges = f.contains("tokenizer.ggml.merges");
  std::vector<double> scores;
  if (f.contains("tokenizer.ggml.scores") || !has_merges) {
    scores = f.numbers("tokenizer.ggml.scores");
    if (scores.size() != tokens.size())
      throw Error(std::to_string(scores.size()) + " scores for " + std::to_string(tokens.size()) +
                  " tokens")
          .at_key("tokenizer.ggml.scores");
    for (std::size_t id = 0; id < scores.size(); ++id)
      if (std::isnan(scores[id]))
        throw Error("the score of token " + std::to_string(id) + " is NaN")
            .at_key("tokenizer.ggml.scores");
  }

  // The ids of the vocabulary (vocabulary_json): a token stored twice has its last id.
  std::unordered_map<std::string_view, std::size_t> id_of;
  id_of.reserve(tokens.size());
  for (std::size_t id = 0; id < tokens.size(); ++id) id_of[tokens[id]] = id;

  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  if (has_merges) {
    const std::vector<std::string>& stored = f.strings("tokenizer.ggml.merges");
    for (std::size_t i = 0; i < stored.size(); ++i) {
      const std::string& m =
          detail::require_utf8(stored[i], "tokenizer.ggml.merges", "merge " + std::to_string(i));
      const std::size_t space = m.find(' ');
      if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
        throw Error("merge " + std::to_string(i) + " is not two tokens separated by one space")
            .at_key("tokenizer.ggml.merges");
      merges.push_back({m.substr(0, space), m.substr(space + 1)});
    }
  } else {
    for (const auto& [a, b] : detail::sentencepiece_merges(*tokens.tokens, scores))
      merges.push_back({std::string(a), std::string(b)});
  }

  // tokenizers' added vocabulary: an empty token is never added; one added again with other flags
  // takes them (AddedVocabulary::add_tokens); the id is the vocabulary's.
  std::vector<std::pair<std::string_view, bool>> added;  // content, special
  std::unordered_map<std::string_view, std::size_t> added_index;
  auto add = [&](std::string_view content, bool special, bool override_flags) {
    if (content.empty()) return;
    const auto [it, fresh] = added_index.emplace(content, added.size());
    if (fresh)
      added.emplace_back(content, special);
    else if (override_flags)
      added[it->second].second = special;
  };
  for (std::size_t id = 0; id < tokens.types.size(); ++id)
    if (tokens.types[id] == detail::kGgufTokenControl) add(tokens[id], true, true);
  for (std::size_t id = 0; id < tokens.types.size(); ++id)
    if (tokens.types[id] == detail::kGgufTokenUserDefined) add(tokens[id], false, true);
  const char* special_keys[] = {"bos_token_id", "eos_token_id", "unknown_token_id",
                                "padding_token_id"};
  nlohmann::ordered_json special_tokens[4];
  for (int k = 0; k < 4; ++k) {
    special_tokens[k] = detail::gguf_special_token(f, tokens, special_keys[k]);
    if (!special_tokens[k].is_null())
      add(*special_tokens[k].get_ptr<const std::string*>(), true, false);
  }
  std::vector<std::pair<std::size_t, std::size_t>> by_id;  // id, index in `added`
  for (std::size_t i = 0; i < added.size(); ++i) by_id.emplace_back(id_of.at(added[i].first), i);
  std::sort(by_id.begin(), by_id.end());

  nlohmann::ordered_json t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = nlohmann::ordered_json::array();
  for (const auto& [id, i] : by_id)
    t["added_tokens"].push_back(
        detail::added_token_json(id, std::string(added[i].first), added[i].second));
  const bool prefix_space = detail::gguf_flag(f, "tokenizer.ggml.add_space_prefix", true);
  t["normalizer"] = nullptr;
  t["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", prefix_space ? "first" : "never"},
                        {"split", false}};
  // transformers turns a flag off when its token is absent.
  const std::string* bos =
      special_tokens[0].is_null() ? nullptr : special_tokens[0].get_ptr<const std::string*>();
  const std::string* eos =
      special_tokens[1].is_null() ? nullptr : special_tokens[1].get_ptr<const std::string*>();
  const bool add_bos = bos && detail::gguf_flag(f, "tokenizer.ggml.add_bos_token", true);
  const bool add_eos = eos && detail::gguf_flag(f, "tokenizer.ggml.add_eos_token", false);
  t["post_processor"] =
      detail::template_processing(add_bos ? bos : nullptr, add_bos ? id_of.at(*bos) : 0,
                                  add_eos ? eos : nullptr, add_eos ? id_of.at(*eos) : 0);
  nlohmann::ordered_json steps = {
      {{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
      {{"type", "ByteFallback"}},
      {{"type", "Fuse"}}};
  if (prefix_space)
    steps.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  t["decoder"] = {{"type", "Sequence"}, {"decoders", std::move(steps)}};
  t["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", detail::vocabulary_json(*tokens.tokens)},
                {"merges", std::move(merges)}};
  return {std::move(t), detail::tokenizer_config_json(f, tokens, add_bos, add_eos, context),
          "llama", pre_name};
}

// The tokenizer files of a GGUF file whose embedding has `rows` rows, by `tokenizer.ggml.model`.
inline GgufTokenizerFiles gguf_tokenizer_files(const GgufFile& f, std::uint64_t rows,
                                               std::uint64_t context) {
  const std::string model = f.string("tokenizer.ggml.model");
  if (model == "gpt2") return gguf_byte_level_tokenizer(f, rows, context);
  if (model == "llama") return gguf_sentencepiece_tokenizer(f, rows, context);
  throw Error("tokenizer model '" + model +
              "' is not supported (gpt2, byte-level BPE, and llama, SentencePiece BPE, are)")
      .at_key("tokenizer.ggml.model");
}

}  // namespace sgt
