// GGUF: the reader (io/gguf.hpp) on files built byte by byte -- metadata of every type, tensors,
// dequantization of hand-made blocks of each type against values worked out by hand, and one
// error for every kind of bad input (truncation at every byte, lying counts, lengths and offsets,
// unknown types, absurd dimensions); the import (convert/gguf_import.hpp): names, shapes, the Q/K
// permutation undone, f32 and bf16, both vocabularies (convert/gguf_tokenizer.hpp), and no output
// directory when it fails.
//
// The parity of a real import with transformers' GGUF loader is test_text_gguf_import.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sgt/convert/gguf_import.hpp>
#include <sgt/io/gguf.hpp>
#include <sgt/io/safetensors.hpp>

#include "support/scratch_dir.hpp"
#include "support/gguf_builder.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_gguf {

namespace fs = std::filesystem;
using sgt_test::GgufBuilder;

namespace {

// Each test's own folder.
struct ScratchDir : sgt_test::ScratchDir {
  ScratchDir() : sgt_test::ScratchDir("test_gguf") {}
};

std::string bytes_u16(std::uint16_t v) {
  return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
}

std::vector<float> dequantized(sgt::GgmlType type, const std::string& bytes, std::uint64_t count) {
  std::vector<float> out(count);
  sgt::dequantize_ggml(type, reinterpret_cast<const unsigned char*>(bytes.data()), count,
                       out.data());
  return out;
}

// The error message of opening `bytes` as a GGUF file ("" if it opens).
std::string open_error(const std::string& bytes) {
  ScratchDir dir;
  GgufBuilder::write(dir.file("m.gguf"), bytes);
  try {
    sgt::GgufFile f(dir.file("m.gguf"));
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A tiny Llama: hidden 32, 2 heads of 16, 1 KV head, intermediate 32, one layer, 8 tokens. Every
// tensor F32, each element its own value (tensor number * 1000 + row * 32 + column), so a moved row
// or a transposed matrix is seen.
GgufBuilder tiny_llama() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.kv_u32("llama.embedding_length", 32);
  b.kv_u32("llama.feed_forward_length", 32);
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.attention.head_count", 2);
  b.kv_u32("llama.attention.head_count_kv", 1);
  b.kv_u32("llama.context_length", 64);
  b.kv_u32("llama.rope.dimension_count", 16);
  b.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  b.kv_f32("llama.rope.freq_base", 100000.0f);
  b.kv_string("tokenizer.ggml.model", "gpt2");
  b.kv_string("tokenizer.ggml.pre", "smollm");
  b.kv_strings("tokenizer.ggml.tokens",
               {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "\xc4\xa0", "ab",
                "\xc4\xa0"
                "a"});
  b.kv_i32s("tokenizer.ggml.token_type", {3, 3, 3, 1, 1, 1, 1, 1});
  b.kv_strings("tokenizer.ggml.merges", {"a b", "\xc4\xa0 a"});
  b.kv_u32("tokenizer.ggml.bos_token_id", 1);
  b.kv_u32("tokenizer.ggml.eos_token_id", 2);
  b.kv_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}");
  int n = 0;
  auto add = [&](const std::string& name, std::vector<std::uint64_t> dims) {
    std::vector<float> v(dims[0] * (dims.size() > 1 ? dims[1] : 1));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(n * 1000 + i);
    ++n;
    b.add_f32_tensor(name, dims, v);
  };
  add("token_embd.weight", {32, 8});
  add("output_norm.weight", {32});
  add("blk.0.attn_norm.weight", {32});
  add("blk.0.attn_q.weight", {32, 32});
  add("blk.0.attn_k.weight", {32, 16});
  add("blk.0.attn_v.weight", {32, 16});
  add("blk.0.attn_output.weight", {32, 32});
  add("blk.0.ffn_norm.weight", {32});
  add("blk.0.ffn_gate.weight", {32, 32});
  add("blk.0.ffn_up.weight", {32, 32});
  add("blk.0.ffn_down.weight", {32, 32});
  return b;
}

// tiny_llama() with a SentencePiece vocabulary of its 8 rows: no merges, so they are derived from
// the scores ("\u2581a" scores better than "ab" though it comes later), no add_bos_token (BOS is
// then added, as llama.cpp does).
GgufBuilder tiny_llama_spm() {
  GgufBuilder b = tiny_llama();
  for (const char* key : {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                          "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"})
    b.drop(key);
  b.kv_string("tokenizer.ggml.model", "llama");
  b.kv_string("tokenizer.ggml.pre", "default");
  const std::string meta = "\xe2\x96\x81";  // U+2581, SentencePiece's space
  b.kv_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", meta, "a", "b", "ab", meta + "a"});
  b.kv_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -4, -3.5f});
  b.kv_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1});
  b.kv_u32("tokenizer.ggml.bos_token_id", 1);
  b.kv_u32("tokenizer.ggml.eos_token_id", 2);
  b.kv_u32("tokenizer.ggml.unknown_token_id", 0);
  return b;
}

// The entry of `key` replaced by the one `with` holds.
void replace_kv(GgufBuilder& b, const std::string& key, const GgufBuilder& with) {
  b.drop(key);
  b.kvs.push_back(with.kvs.at(0));
}

}  // namespace

TEST_CASE("gguf: each type's hand-made blocks dequantize to the values worked out by hand") {
  SUBCASE("Q8_0: q * d, q signed") {
    std::string block = bytes_u16(0x3800);  // d = 0.5
    for (int j = 0; j < 32; ++j)
      block.push_back(static_cast<char>(static_cast<std::int8_t>(j * 8 - 128)));
    const auto v = dequantized(sgt::GgmlType::Q8_0, block, 32);
    for (int j = 0; j < 32; ++j) CHECK(v[j] == static_cast<float>(j * 8 - 128) * 0.5f);
    CHECK(v[0] == -64.0f);
  }
  SUBCASE("Q4_0: (nibble - 8) * d, low nibbles first") {
    std::string block = bytes_u16(0x4000);  // d = 2
    for (int j = 0; j < 16; ++j) block.push_back(static_cast<char>(((15 - j) << 4) | j));
    const auto v = dequantized(sgt::GgmlType::Q4_0, block, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(v[j] == static_cast<float>((j - 8) * 2));
      CHECK(v[j + 16] == static_cast<float>((15 - j - 8) * 2));
    }
  }
  SUBCASE("Q4_1: nibble * d + m") {
    std::string block = bytes_u16(0x3400) + bytes_u16(0xBE00);  // d = 0.25, m = -1.5
    for (int j = 0; j < 16; ++j) block.push_back(static_cast<char>((j << 4) | (15 - j)));
    const auto v = dequantized(sgt::GgmlType::Q4_1, block, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(v[j] == (15 - j) * 0.25f - 1.5f);
      CHECK(v[j + 16] == j * 0.25f - 1.5f);
    }
    CHECK(v[0] == 2.25f);
  }
  SUBCASE("Q4_1 with an f16 scale and minimum that need all their bits") {
    // d = 0x3555 = 0.333251953125, m = 0xC155 = -2.666015625: q * d is exact in f32, the sum
    // rounds once.
    std::string block = bytes_u16(0x3555) + bytes_u16(0xC155);
    for (int j = 0; j < 16; ++j) block.push_back(static_cast<char>(0xF0 | 7));
    const auto v = dequantized(sgt::GgmlType::Q4_1, block, 32);
    CHECK(v[0] == static_cast<float>(7.0 * 0.333251953125 + -2.666015625));
    CHECK(v[16] == static_cast<float>(15.0 * 0.333251953125 + -2.666015625));
  }
  SUBCASE("F16, BF16 and F32") {
    const auto h = dequantized(
        sgt::GgmlType::F16,
        bytes_u16(0x3C00) + bytes_u16(0xC000) + bytes_u16(0x0001) + bytes_u16(0x7C00), 4);
    CHECK(h[0] == 1.0f);
    CHECK(h[1] == -2.0f);
    CHECK(h[2] == std::ldexp(1.0f, -24));
    CHECK(std::isinf(h[3]));
    const auto b = dequantized(sgt::GgmlType::BF16, bytes_u16(0x3F80) + bytes_u16(0xC040), 2);
    CHECK(b[0] == 1.0f);
    CHECK(b[1] == -3.0f);
    std::string f;
    GgufBuilder::put_f32(f, 0.1f);
    CHECK(dequantized(sgt::GgmlType::F32, f, 1)[0] == 0.1f);
  }
  SUBCASE("a count that is not whole blocks") {
    CHECK_THROWS_AS(dequantized(sgt::GgmlType::Q8_0, std::string(34, '\0'), 16), sgt::Error);
  }
}

TEST_CASE("gguf: metadata of every kind and tensor infos are read as written") {
  GgufBuilder b = tiny_llama();
  ScratchDir dir;
  GgufBuilder::write(dir.file("m.gguf"), b.build());
  const sgt::GgufFile f(dir.file("m.gguf"));
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.string("general.architecture") == "llama");
  CHECK(f.unsigned_integer("llama.block_count") == 1);
  CHECK(f.number("llama.attention.layer_norm_rms_epsilon") == static_cast<double>(1e-5f));
  CHECK(f.strings("tokenizer.ggml.tokens").size() == 8);
  CHECK(f.integers("tokenizer.ggml.token_type")[0] == 3);
  CHECK_THROWS_WITH_AS(f.string("llama.block_count"),
                       "key 'llama.block_count': must be a string, not a u32", sgt::Error);
  CHECK_THROWS_AS(f.string("no.such.key"), sgt::Error);
  REQUIRE(f.tensors().size() == 11);
  const sgt::GgufTensorInfo& q = f.tensor("blk.0.attn_k.weight");
  CHECK(q.shape() == std::vector<std::uint64_t>{16, 32});
  CHECK(q.bytes == 16 * 32 * 4);
  const std::vector<float> v = f.dequantize(q);
  CHECK(v[33] == 4033.0f);
}

TEST_CASE("gguf: a file cut at any byte is one error, never a crash or a read past the end") {
  const std::string full = tiny_llama().build();
  CHECK(open_error(full).empty());
  // Every cut inside the header and tensor infos, and a sample of cuts in the data.
  std::size_t checked = 0;
  for (std::size_t cut = 0; cut < full.size(); cut += cut < 1400 ? 1 : 97) {
    INFO("cut at " << cut);
    CHECK_FALSE(open_error(full.substr(0, cut)).empty());
    ++checked;
  }
  CHECK(checked > 1400);
}

TEST_CASE("gguf: lying counts, lengths, types, dimensions and offsets are each refused by name") {
  SUBCASE("magic and version") {
    CHECK(contains(open_error("GGML" + std::string(28, '\0')), "not a GGUF file"));
    GgufBuilder b;
    b.version = 1;
    CHECK(contains(open_error(b.build()), "version 1 is not supported"));
    b.version = 0x03000000;
    CHECK(contains(open_error(b.build()), "big-endian"));
  }
  SUBCASE("a tensor count the file cannot hold") {
    std::string s = tiny_llama().build();
    GgufBuilder::put_u64(s, 0);  // keep size; overwrite the count below
    std::uint64_t huge = 1ull << 40;
    std::memcpy(&s[8], &huge, 8);
    CHECK(contains(open_error(s), "tensor count 1099511627776 exceeds the limit of 65536"));
    huge = 60000;
    std::memcpy(&s[8], &huge, 8);
    CHECK(contains(open_error(s), "tensor count 60000 cannot fit"));
  }
  SUBCASE("a metadata count the file cannot hold") {
    std::string s = tiny_llama().build();
    const std::uint64_t huge = 50000;
    std::memcpy(&s[16], &huge, 8);
    CHECK(contains(open_error(s), "metadata entry count 50000 cannot fit"));
  }
  SUBCASE("a string length past the end, and one above the limit") {
    GgufBuilder b;
    std::string kv;
    GgufBuilder::put_u64(kv, 1ull << 62);  // the key's length
    b.kvs.push_back(kv + "xxxxxxxxxxxxxxxx");
    CHECK(contains(open_error(b.build()), "exceeds the limit"));
    b.kvs[0] = std::string();
    GgufBuilder::put_u64(b.kvs[0], 1000);
    b.kvs[0] += "abc";
    CHECK(contains(open_error(b.build()), "truncated: a metadata key needs 1000 bytes"));
  }
  SUBCASE("an array longer than the file") {
    GgufBuilder b;
    std::string kv;
    GgufBuilder::put_str(kv, "k");
    GgufBuilder::put_u32(kv, 9);
    GgufBuilder::put_u32(kv, 10);  // u64 elements
    GgufBuilder::put_u64(kv, 1000000);
    b.kvs.push_back(kv);
    const std::string e = open_error(b.build());
    CHECK(contains(e, "key 'k'"));
    CHECK(contains(e, "array length 1000000 cannot fit"));
  }
  SUBCASE("unknown value types, arrays of arrays, a bool that is not 0 or 1") {
    GgufBuilder b;
    std::string kv;
    GgufBuilder::put_str(kv, "k");
    GgufBuilder::put_u32(kv, 13);
    b.kvs = {kv + std::string(8, '\0')};
    CHECK(contains(open_error(b.build()), "unknown value type 13"));
    kv.resize(kv.size() - 4);
    GgufBuilder::put_u32(kv, 9);
    GgufBuilder::put_u32(kv, 9);
    b.kvs = {kv + std::string(8, '\0')};
    CHECK(contains(open_error(b.build()), "an array of arrays is not supported"));
    std::string kb;
    GgufBuilder::put_str(kb, "flag");
    GgufBuilder::put_u32(kb, 7);
    b.kvs = {kb + "\x02"};
    CHECK(contains(open_error(b.build()), "bool value 2"));
  }
  SUBCASE("a key twice, a tensor twice") {
    GgufBuilder b;
    b.kv_u32("a", 1);
    b.kv_u32("a", 2);
    CHECK(contains(open_error(b.build()), "key 'a': position 41: metadata key appears twice"));
    GgufBuilder t;
    t.add_f32_tensor("w", {1}, {1.0f});
    t.add_f32_tensor("w", {1}, {2.0f});
    CHECK(contains(open_error(t.build()), "tensor 'w': tensor named twice"));
  }
  SUBCASE("the alignment") {
    GgufBuilder b;
    b.kv_u32("general.alignment", 24);
    CHECK(contains(open_error(b.build()), "alignment 24 is not a power of two"));
    GgufBuilder z;
    z.kv_u32("general.alignment", 0);
    CHECK(contains(open_error(z.build()), "alignment 0 is not a power of two"));
  }
  SUBCASE("unknown tensor types are refused by name") {
    GgufBuilder b;
    b.tensors.push_back({"w", {256}, 12, std::string(144, '\0')});
    CHECK(contains(open_error(b.build()),
                   "tensor 'w': position 24: tensor type Q4_K is not supported"));
    b.tensors[0].type = 77;
    CHECK(contains(open_error(b.build()), "tensor type number 77 is not supported"));
  }
  SUBCASE("absurd dimensions") {
    GgufBuilder b;
    b.tensors.push_back({"w", {1ull << 40, 1ull << 40}, 0, ""});
    CHECK(contains(open_error(b.build()), "overflows 64 bits"));
    b.tensors[0].dims = {1ull << 20, 1ull << 20};
    CHECK(contains(open_error(b.build()), "runs past the end of the data area"));
    b.tensors[0].dims = {1, 1, 1, 1, 1};
    CHECK(contains(open_error(b.build()), "5 dimensions (1 to 4 are allowed)"));
    b.tensors[0].dims = {};
    CHECK(contains(open_error(b.build()), "0 dimensions"));
    b.tensors[0].dims = {16};
    b.tensors[0].type = 8;  // Q8_0: blocks of 32
    CHECK(contains(open_error(b.build()), "row length 16 is not a multiple of Q8_0's block of 32"));
  }
  SUBCASE("offsets: misaligned, past the end, overlapping") {
    GgufBuilder b;
    b.add_f32_tensor("a", {8}, std::vector<float>(8, 1.0f));
    b.add_f32_tensor("b", {8}, std::vector<float>(8, 2.0f));
    b.tensors[1].offset = 8;
    CHECK(contains(open_error(b.build()), "offset 8 is not a multiple of the alignment 32"));
    b.tensors[1].offset = 0;
    CHECK(contains(open_error(b.build()), "overlaps tensor 'a'"));
    b.tensors[1].offset = 1ull << 60;
    CHECK(contains(open_error(b.build()), "tensor 'b': data [1152921504606846976, +32) runs past"));
    b.tensors[1].offset = ~0ull - 31;  // offset + bytes wraps around 2^64
    CHECK(contains(open_error(b.build()), "runs past the end of the data area"));
  }
}

TEST_CASE("gguf import: names, shapes, the Q/K permutation undone, config and tokenizer files") {
  ScratchDir dir;
  GgufBuilder::write(dir.file("m.gguf"), tiny_llama().build());
  for (const sgt::DType dtype : {sgt::DType::F32, sgt::DType::BF16}) {
    const std::string out = dir.file(dtype == sgt::DType::F32 ? "f32" : "bf16");
    sgt::GgufImportOptions options;
    options.dtype = dtype;
    sgt::import_gguf(dir.file("m.gguf"), out, options);
    const sgt::SafetensorsFile st(out + "/model.safetensors");
    CHECK(st.size() == 11);
    CHECK(st.info("model.embed_tokens.weight").shape == std::vector<std::uint64_t>{8, 32});
    CHECK(st.info("model.layers.0.self_attn.k_proj.weight").shape ==
          std::vector<std::uint64_t>{16, 32});
    CHECK(st.info("model.layers.0.mlp.down_proj.weight").dtype == dtype);
    if (dtype == sgt::DType::F32) {
      // q: 2 heads of 16 rows; GGUF row (h, i, j) [i < 8, j < 2] holds transformers' row
      // (h, j, i). Tensor 3's value at (row, col) is 3000 + row * 32 + col.
      const auto q = st.tensor("model.layers.0.self_attn.q_proj.weight").as<float>();
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 2; ++j)
          for (int i = 0; i < 8; ++i) {
            const int hf_row = h * 16 + j * 8 + i, gguf_row = h * 16 + i * 2 + j;
            CHECK(q.data()[hf_row * 32 + 5] == 3000.0f + gguf_row * 32 + 5);
          }
      const auto k = st.tensor("model.layers.0.self_attn.k_proj.weight").as<float>();
      CHECK(k.data()[8 * 32] == 4000.0f + 1 * 32);  // row (0, 1, 0) came from GGUF row 1
      const auto v = st.tensor("model.layers.0.self_attn.v_proj.weight").as<float>();
      CHECK(v.data()[8 * 32] == 5000.0f + 8 * 32);  // v is not permuted
    }
    std::ifstream cf(out + "/config.json");
    const nlohmann::json config = nlohmann::json::parse(cf);
    CHECK(config["model_type"] == "llama");
    CHECK(config["num_key_value_heads"] == 1);
    CHECK(config["tie_word_embeddings"] == true);
    CHECK(config["rope_theta"] == 100000.0);
    CHECK(config["eos_token_id"] == 2);
    std::ifstream tf(out + "/tokenizer.json");
    const nlohmann::json tok = nlohmann::json::parse(tf);
    CHECK(tok["pre_tokenizer"]["pretokenizers"][0]["type"] == "Digits");
    CHECK(tok["added_tokens"].size() == 3);
    CHECK(tok["model"]["vocab"]["ab"] == 6);
    std::ifstream tcf(out + "/tokenizer_config.json");
    const nlohmann::json tc = nlohmann::json::parse(tcf);
    CHECK(tc["eos_token"] == "<|im_end|>");
    CHECK(tc["chat_template"] == "{% for m in messages %}{{ m.content }}{% endfor %}");
  }
}

TEST_CASE("gguf import: a SentencePiece vocabulary: merges from the scores, Metaspace, BOS") {
  ScratchDir dir;
  GgufBuilder::write(dir.file("m.gguf"), tiny_llama_spm().build());
  const sgt::GgufImportSummary s = sgt::import_gguf(dir.file("m.gguf"), dir.file("out"));
  CHECK(s.tokenizer == "llama");
  CHECK(s.pre_tokenizer == "default");
  std::ifstream tf(dir.file("out/tokenizer.json"));
  const nlohmann::json tok = nlohmann::json::parse(tf);
  // Every cut of a token into two tokens, best score first: "\u2581a" (-3.5) before "ab" (-4).
  CHECK(tok["model"]["merges"] == nlohmann::json::parse(R"([["\u2581", "a"], ["a", "b"]])"));
  CHECK(tok["model"]["byte_fallback"] == true);
  CHECK(tok["model"]["vocab"]["\u2581a"] == 7);
  CHECK(tok["pre_tokenizer"]["type"] == "Metaspace");
  CHECK(tok["pre_tokenizer"]["prepend_scheme"] == "first");
  CHECK(tok["post_processor"]["single"][0]["SpecialToken"]["id"] == "<s>");
  CHECK(tok["post_processor"]["special_tokens"]["<s>"]["ids"] == nlohmann::json::array({1}));
  // <s> and </s> are control tokens; <unk> (type 2) is added as the unknown token.
  CHECK(tok["added_tokens"].size() == 3);
  CHECK(tok["decoder"]["decoders"].back()["type"] == "Strip");
  std::ifstream tcf(dir.file("out/tokenizer_config.json"));
  const nlohmann::json tc = nlohmann::json::parse(tcf);
  CHECK(tc["add_bos_token"] == true);
  CHECK(tc["unk_token"] == "<unk>");

  // add_space_prefix false: nothing before the text, and nothing to strip when decoding.
  GgufBuilder b = tiny_llama_spm();
  b.kv_bool("tokenizer.ggml.add_space_prefix", false);
  b.kv_bool("tokenizer.ggml.add_bos_token", false);
  GgufBuilder::write(dir.file("no_prefix.gguf"), b.build());
  sgt::import_gguf(dir.file("no_prefix.gguf"), dir.file("no_prefix"));
  std::ifstream nf(dir.file("no_prefix/tokenizer.json"));
  const nlohmann::json no_prefix = nlohmann::json::parse(nf);
  CHECK(no_prefix["pre_tokenizer"]["prepend_scheme"] == "never");
  CHECK(no_prefix["decoder"]["decoders"].back()["type"] == "Fuse");
  CHECK(no_prefix["post_processor"]["single"].size() == 1);
}

TEST_CASE("gguf import: a refused file leaves no output directory, nor a temporary one") {
  auto refused = [](GgufBuilder b, const std::string& message) {
    ScratchDir dir;
    GgufBuilder::write(dir.file("m.gguf"), b.build());
    std::string error;
    try {
      sgt::import_gguf(dir.file("m.gguf"), dir.file("out"));
    } catch (const sgt::Error& e) {
      error = e.what();
    }
    INFO(error);
    CHECK(contains(error, message));
    CHECK(dir.entries() == std::vector<std::string>{"m.gguf"});
  };
  GgufBuilder b = tiny_llama();
  b.kvs[0].clear();
  GgufBuilder::put_str(b.kvs[0], "general.architecture");
  GgufBuilder::put_u32(b.kvs[0], 8);
  GgufBuilder::put_str(b.kvs[0], "mamba");
  refused(b, "architecture 'mamba' is not supported (llama is)");

  b = tiny_llama();
  b.kv_string("tokenizer.ggml.pre", "x");  // a second pre is a repeated key
  refused(b, "metadata key appears twice");

  b = tiny_llama();
  for (auto& kv : b.kvs)
    if (contains(kv, "tokenizer.ggml.pre")) {
      kv.clear();
      GgufBuilder::put_str(kv, "tokenizer.ggml.pre");
      GgufBuilder::put_u32(kv, 8);
      GgufBuilder::put_str(kv, "falcon");
    }
  refused(b, "pre-tokenizer 'falcon' is not supported (gpt-2, smollm, llama-bpe, qwen2 are)");

  b = tiny_llama();
  b.add_f32_tensor("rope_freqs.weight", {8}, std::vector<float>(8, 1.0f));
  refused(b, "tensor 'rope_freqs.weight': unknown tensor");

  b = tiny_llama();
  b.tensors.pop_back();
  refused(b, "missing tensor (transformers' model.layers.0.mlp.down_proj.weight)");

  b = tiny_llama();
  b.tensors[1].dims = {16};
  b.tensors[1].data.resize(64);
  refused(b, "tensor 'output_norm.weight': shape [16] is not the expected [32]");

  // GGUF strings are bytes; a JSON file must be UTF-8 (fuzz_gguf found the template case).
  b = tiny_llama();
  for (auto& kv : b.kvs)
    if (contains(kv, "tokenizer.chat_template")) {
      kv.clear();
      GgufBuilder::put_str(kv, "tokenizer.chat_template");
      GgufBuilder::put_u32(kv, 8);
      GgufBuilder::put_str(kv, "{{ x }}\xff");
    }
  refused(b, "key 'tokenizer.chat_template': the template is not valid UTF-8");
  b = tiny_llama();
  GgufBuilder merges;
  merges.kv_strings("tokenizer.ggml.merges", {"a b", "\xc4 a"});
  for (auto& kv : b.kvs)
    if (contains(kv, "tokenizer.ggml.merges")) kv = merges.kvs[0];
  refused(b, "key 'tokenizer.ggml.merges': merge 1 is not valid UTF-8");

  b = tiny_llama();
  b.tensors.back().data.resize(100);  // the file ends inside the last tensor
  refused(b, "runs past the end of the data area");

  // SentencePiece metadata: lengths that agree, llama.cpp's token types, scores, bounded work.
  auto spm_refused = [&](const std::string& key, const GgufBuilder& with, const std::string& m) {
    GgufBuilder spm = tiny_llama_spm();
    replace_kv(spm, key, with);
    refused(spm, m);
  };
  GgufBuilder kv;
  kv.kv_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -4});
  spm_refused("tokenizer.ggml.scores", kv, "key 'tokenizer.ggml.scores': 7 scores for 8 tokens");
  kv = GgufBuilder();
  kv.kv_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, std::nanf(""), -3, -4, -5});
  spm_refused("tokenizer.ggml.scores", kv,
              "key 'tokenizer.ggml.scores': the score of token 4 is NaN");
  kv = GgufBuilder();
  kv.kv_i32s("tokenizer.ggml.token_type", {2, 3, 3, 9, 1, 1, 1, 1});
  spm_refused("tokenizer.ggml.token_type", kv,
              "key 'tokenizer.ggml.token_type': token 3 has type 9 (llama.cpp's types are 0 to 6)");
  kv = GgufBuilder();
  kv.kv_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1});
  spm_refused("tokenizer.ggml.token_type", kv,
              "key 'tokenizer.ggml.token_type': 7 types for 8 tokens");
  kv = GgufBuilder();
  kv.kv_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "ab"});
  spm_refused("tokenizer.ggml.tokens", kv,
              "key 'tokenizer.ggml.tokens': 7 tokens, but token_embd.weight has 8 rows");
  kv = GgufBuilder();
  kv.kv_strings("tokenizer.ggml.tokens",
                {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "\xff", "b", "ab", "c"});
  spm_refused("tokenizer.ggml.tokens", kv,
              "key 'tokenizer.ggml.tokens': token 4 is not valid UTF-8");
  // One token of 20000 characters: 4 * 10^8 steps to cut and look up, refused before any (the
  // other tokens add 59).
  kv = GgufBuilder();
  kv.kv_strings("tokenizer.ggml.tokens",
                {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "ab", std::string(20000, 'a')});
  spm_refused("tokenizer.ggml.tokens", kv,
              "key 'tokenizer.ggml.tokens': deriving merges from these tokens would take "
              "400000059 steps (the limit is 268435456");
  kv = GgufBuilder();
  kv.kv_strings("tokenizer.ggml.merges", {"a b", "a  b"});
  {
    GgufBuilder spm = tiny_llama_spm();
    spm.kvs.push_back(kv.kvs[0]);
    refused(spm, "key 'tokenizer.ggml.merges': merge 1 is not two tokens separated by one space");
  }
  {
    GgufBuilder spm = tiny_llama_spm();
    spm.drop("tokenizer.ggml.scores");
    refused(spm, "key 'tokenizer.ggml.scores'");
  }
  kv = GgufBuilder();
  kv.kv_string("tokenizer.ggml.pre", "llama-bpe");
  spm_refused("tokenizer.ggml.pre", kv,
              "pre-tokenizer 'llama-bpe' is not supported with a llama (SentencePiece) vocabulary "
              "(default is)");
  kv = GgufBuilder();
  kv.kv_string("tokenizer.ggml.model", "bert");
  spm_refused("tokenizer.ggml.model", kv,
              "key 'tokenizer.ggml.model': tokenizer model 'bert' is not supported (gpt2, "
              "byte-level BPE, and llama, SentencePiece BPE, are)");
}

TEST_CASE("gguf import: an empty OUT_DIR is filled, as by make-transform; anything else refused") {
  ScratchDir dir;
  GgufBuilder::write(dir.file("m.gguf"), tiny_llama().build());
  fs::create_directory(dir.file("empty"));
  sgt::import_gguf(dir.file("m.gguf"), dir.file("empty"));
  CHECK(fs::exists(dir.file("empty/model.safetensors")));
  const std::string refusal =
      ": already exists and is not an empty directory (the command writes a new directory)";
  CHECK_THROWS_WITH_AS(sgt::import_gguf(dir.file("m.gguf"), dir.file("empty")),
                       (dir.file("empty") + refusal).c_str(), sgt::Error);
  std::ofstream(dir.file("file")) << "x";
  CHECK_THROWS_WITH_AS(sgt::import_gguf(dir.file("m.gguf"), dir.file("file")),
                       (dir.file("file") + refusal).c_str(), sgt::Error);
  fs::create_directory_symlink(dir.file("nowhere"), dir.file("link"));
  CHECK_THROWS_WITH_AS(sgt::import_gguf(dir.file("m.gguf"), dir.file("link")),
                       doctest::Contains("a symbolic link"), sgt::Error);
  // The checks come before the GGUF file is read: a missing file is not what is reported.
  CHECK_THROWS_WITH_AS(sgt::import_gguf(dir.file("absent.gguf"), dir.file("file")),
                       (dir.file("file") + refusal).c_str(), sgt::Error);
  CHECK(dir.entries().size() == 4);  // m.gguf, empty/, file, link: nothing left by the refusals
}

}  // namespace test_gguf
