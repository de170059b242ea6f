// Building GGUF files byte by byte for the tests: valid ones (a tiny Llama), and, by editing the
// bytes or the parts, every kind of lie the reader must refuse.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace sgt_test {

class GgufBuilder {
 public:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;  // ggml order
    std::uint32_t type = 0;
    std::string data;              // its bytes
    std::uint64_t offset = ~0ull;  // ~0: placed after the previous one, aligned
  };

  std::uint32_t version = 3;
  std::uint64_t alignment = 32;
  std::vector<std::string> kvs;  // serialized key + type + value
  std::vector<Tensor> tensors;

  static void put_u32(std::string& s, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  }
  static void put_u64(std::string& s, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  }
  static void put_str(std::string& s, const std::string& v) {
    put_u64(s, v.size());
    s += v;
  }
  static void put_f32(std::string& s, float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    put_u32(s, u);
  }

  void kv_string(const std::string& key, const std::string& value) {
    std::string s;
    put_str(s, key);
    put_u32(s, 8);
    put_str(s, value);
    kvs.push_back(s);
  }
  void kv_u32(const std::string& key, std::uint32_t value) {
    std::string s;
    put_str(s, key);
    put_u32(s, 4);
    put_u32(s, value);
    kvs.push_back(s);
  }
  void kv_f32(const std::string& key, float value) {
    std::string s;
    put_str(s, key);
    put_u32(s, 6);
    put_f32(s, value);
    kvs.push_back(s);
  }
  void kv_bool(const std::string& key, bool value) {
    std::string s;
    put_str(s, key);
    put_u32(s, 7);
    s.push_back(value ? 1 : 0);
    kvs.push_back(s);
  }
  void kv_strings(const std::string& key, const std::vector<std::string>& values) {
    std::string s;
    put_str(s, key);
    put_u32(s, 9);
    put_u32(s, 8);
    put_u64(s, values.size());
    for (const auto& v : values) put_str(s, v);
    kvs.push_back(s);
  }
  void kv_i32s(const std::string& key, const std::vector<std::int32_t>& values) {
    std::string s;
    put_str(s, key);
    put_u32(s, 9);
    put_u32(s, 5);
    put_u64(s, values.size());
    for (auto v : values) put_u32(s, static_cast<std::uint32_t>(v));
    kvs.push_back(s);
  }
  void kv_f32s(const std::string& key, const std::vector<float>& values) {
    std::string s;
    put_str(s, key);
    put_u32(s, 9);
    put_u32(s, 6);
    put_u64(s, values.size());
    for (float v : values) put_f32(s, v);
    kvs.push_back(s);
  }
  // Removes the entry of `key` (its bytes start with the key's length and the key).
  void drop(const std::string& key) {
    std::string prefix;
    put_str(prefix, key);
    for (auto it = kvs.begin(); it != kvs.end();)
      it = it->compare(0, prefix.size(), prefix) == 0 ? kvs.erase(it) : it + 1;
  }
  void add_f32_tensor(const std::string& name, const std::vector<std::uint64_t>& dims,
                      const std::vector<float>& values) {
    Tensor t{name, dims, 0, {}};
    for (float v : values) put_f32(t.data, v);
    tensors.push_back(t);
  }

  std::string build() const {
    std::string s = "GGUF";
    put_u32(s, version);
    put_u64(s, tensors.size());
    put_u64(s, kvs.size() + (alignment != 32 ? 1 : 0));
    for (const auto& kv : kvs) s += kv;
    if (alignment != 32) {
      put_str(s, "general.alignment");
      put_u32(s, 4);
      put_u32(s, static_cast<std::uint32_t>(alignment));
    }
    std::vector<std::uint64_t> offsets;
    std::uint64_t cursor = 0;
    for (const auto& t : tensors) {
      const std::uint64_t at = t.offset != ~0ull ? t.offset : cursor;
      offsets.push_back(at);
      cursor = at + t.data.size();
      cursor = (cursor + alignment - 1) / alignment * alignment;
      put_str(s, t.name);
      put_u32(s, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) put_u64(s, d);
      put_u32(s, t.type);
      put_u64(s, at);
    }
    while (s.size() % alignment != 0) s.push_back(0);
    const std::size_t data_start = s.size();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (offsets[i] > (1u << 30)) continue;  // a lying offset: its data is nowhere
      if (s.size() < data_start + offsets[i]) s.resize(data_start + offsets[i], '\0');
      s.replace(data_start + offsets[i], tensors[i].data.size(), tensors[i].data);
    }
    return s;
  }

  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
};

}  // namespace sgt_test
