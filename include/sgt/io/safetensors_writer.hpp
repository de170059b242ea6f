// Writing safetensors files (F32, BF16, F16), for the command-line tool, the tests and tools.
//
// The header is padded with spaces to a multiple of 8 bytes, as Python's `safetensors` does, so
// every tensor written here is aligned for its element type when the file is mapped. write() goes
// through a temporary file in the same directory and a rename: a failed or interrupted write
// leaves no partial file under the target name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"

namespace sgt {

class SafetensorsWriter {
 public:
  // Adds a tensor whose bytes are already in `dtype`; the bytes are copied.
  void add(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape, const void* data) {
    if (name.empty() || name == "__metadata__") throw Error("invalid tensor name").at_tensor(name);
    if (index_.count(name)) throw Error("tensor added twice").at_tensor(name);
    std::uint64_t count = 1;
    for (auto d : shape) count *= d;
    const std::size_t bytes = static_cast<std::size_t>(count * dtype_size(dtype));
    Pending p{name, dtype, shape, std::vector<unsigned char>(bytes)};
    if (bytes) std::memcpy(p.bytes.data(), data, bytes);
    index_[name] = pending_.size();
    pending_.push_back(std::move(p));
  }

  // Adds f32 values stored as `dtype` (rounded to nearest even for BF16 and F16).
  void add_from_f32(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape,
                    const float* values) {
    std::uint64_t count = 1;
    for (auto d : shape) count *= d;
    visit_dtype(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::vector<T> converted(static_cast<std::size_t>(count));
      for (std::size_t i = 0; i < converted.size(); ++i) converted[i] = from_float<T>(values[i]);
      add(name, dtype, shape, converted.data());
    });
  }

  template <class T>
  void add(const std::string& name, TensorView<const T> view) {
    std::vector<std::uint64_t> shape(view.shape().begin(), view.shape().begin() + view.rank());
    add(name, dtype_of_v<T>, shape, view.data());
  }

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // Serializes the whole file into memory (header length, header, data).
  std::vector<unsigned char> serialize() const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& p : pending_) {
      header[p.name] = {{"dtype", dtype_name(p.dtype)},
                        {"shape", p.shape},
                        {"data_offsets", {offset, offset + p.bytes.size()}}};
      offset += p.bytes.size();
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');
    std::vector<unsigned char> out(8 + text.size() + offset);
    const std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(n >> (8 * i));
    std::memcpy(out.data() + 8, text.data(), text.size());
    unsigned char* cursor = out.data() + 8 + text.size();
    for (const auto& p : pending_) {
      if (!p.bytes.empty()) std::memcpy(cursor, p.bytes.data(), p.bytes.size());
      cursor += p.bytes.size();
    }
    return out;
  }

  void write(const std::string& path) const {
    const std::vector<unsigned char> bytes = serialize();
    const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(std::string("cannot create: ") + std::strerror(errno)).at_file(path);
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    const bool closed = std::fclose(f) == 0;
    if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp.c_str());
      throw Error(std::string("cannot write: ") + std::strerror(err)).at_file(path);
    }
  }

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<std::uint64_t> shape;
    std::vector<unsigned char> bytes;
  };
  std::vector<Pending> pending_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sgt
