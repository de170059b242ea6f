// Writing safetensors files (F32, BF16, F16), for the command-line tool, the tests and tools.
//
// The header is padded with spaces to a multiple of 8 bytes, as Python's `safetensors` does, so
// every tensor written here is aligned for its element type when the file is mapped. Tensors are
// stored in the order they were added. write() goes through write_file_atomically (a temporary
// file and a rename): a failed or interrupted write leaves no partial file under the target name.
//
// Everything a caller can get wrong (a repeated or reserved name, a shape whose byte count
// overflows, a null pointer for non-empty data, a name or metadata string that is not UTF-8)
// throws sgt::Error, never writes a file that SafetensorsFile would refuse.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/atomic_file.hpp"

namespace sgt {

class SafetensorsWriter {
 public:
  // Adds a tensor whose bytes are already in `dtype`; the bytes are copied.
  void add(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape,
           const void* data) {
    check_name(name);
    const std::size_t bytes = byte_count(name, dtype, shape);
    if (bytes != 0 && data == nullptr)
      throw Error("null data for a non-empty tensor").at_tensor(name);
    Pending p{name, dtype, shape, std::vector<unsigned char>(bytes)};
    if (bytes) std::memcpy(p.bytes.data(), data, bytes);
    index_[name] = pending_.size();
    pending_.push_back(std::move(p));
  }

  // Adds f32 values stored as `dtype` (rounded to nearest even for BF16 and F16, as torch's
  // `.to(dtype)` does).
  void add_from_f32(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape,
                    const float* values) {
    check_name(name);
    const std::size_t count = byte_count(name, dtype, shape) / dtype_size(dtype);
    if (count != 0 && values == nullptr)
      throw Error("null data for a non-empty tensor").at_tensor(name);
    visit_dtype(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::vector<T> converted(count);
      for (std::size_t i = 0; i < count; ++i) converted[i] = from_float<T>(values[i]);
      add(name, dtype, shape, converted.data());
    });
  }

  // Adds a typed view (const or not); the element type gives the dtype.
  template <class T>
  void add(const std::string& name, TensorView<T> view) {
    using Element = std::remove_const_t<T>;
    std::vector<std::uint64_t> shape(view.shape().begin(), view.shape().begin() + view.rank());
    add(name, dtype_of_v<Element>, shape, static_cast<const void*>(view.data()));
  }

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  std::size_t size() const noexcept { return pending_.size(); }

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
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& e) {  // a name or metadata string is not UTF-8
      throw Error(std::string("cannot write the header: ") + e.what());
    }
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
    std::vector<unsigned char> bytes;
    try {
      bytes = serialize();
    } catch (Error& e) {
      e.at_file(path);
      throw;
    }
    write_file_atomically(path, bytes.data(), bytes.size());
  }

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<std::uint64_t> shape;
    std::vector<unsigned char> bytes;
  };

  void check_name(const std::string& name) const {
    if (name.empty() || name == "__metadata__")
      throw Error("invalid tensor name (empty or __metadata__)").at_tensor(name);
    if (index_.count(name)) throw Error("tensor added twice").at_tensor(name);
  }

  // The byte count of `shape` in `dtype`, with the reader's overflow rule (the product of the
  // non-zero dims must fit), so the writer never produces a header the reader refuses.
  static std::size_t byte_count(const std::string& name, DType dtype,
                                const std::vector<std::uint64_t>& shape) {
    std::uint64_t nonzero = 1;
    bool empty = false;
    for (const std::uint64_t d : shape) {
      if (d == 0) {
        empty = true;
        continue;
      }
      if (!checked_mul(nonzero, d, nonzero))
        throw Error("element count of the shape overflows 64 bits").at_tensor(name);
    }
    std::size_t bytes = 0;
    if (!checked_mul<std::size_t>(nonzero, dtype_size(dtype), bytes))
      throw Error("byte count of the shape overflows").at_tensor(name);
    return empty ? 0 : bytes;
  }

  std::vector<Pending> pending_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sgt
