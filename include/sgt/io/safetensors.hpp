// Reading safetensors files: SafetensorsFile (one file) and TensorStore (a model's tensors, in one
// file or sharded through model.safetensors.index.json).
//
// A file is memory-mapped and its header checked against every rule of the format spec (section
// 2.3) before any pointer is handed out: a file that passes cannot make a later read go out of
// bounds. The rules, in the order they are checked:
//   - at least 8 bytes; a little-endian u64 header length N; N <= 100 MiB; 8 + N <= file size;
//   - the header is valid JSON whose root is an object, with no duplicate names;
//   - `__metadata__`, if present, maps strings to strings;
//   - every tensor has exactly `dtype` (F32, BF16 or F16), `shape` (non-negative integers) and
//     `data_offsets` ([begin, end], non-negative integers);
//   - element count and byte count are computed in u64 with overflow checks, and end - begin must
//     equal the byte count;
//   - sorted by offset, the tensors tile the data area [0, file size - 8 - N) exactly: no gap, no
//     overlap, nothing past the end.
//
// Alignment: the format does not promise any. Stored data is used in place when it is aligned for
// its element type (the usual case: Python's writer pads the header to 8 bytes); a tensor that is
// not is copied once, at open, into an aligned buffer owned by the file, so kernels never read a
// misaligned float.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/mapped_file.hpp"

namespace sgt {

inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // byte offsets in the data area
  std::uint64_t end = 0;

  std::uint64_t byte_size() const noexcept { return end - begin; }
  std::string shape_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

namespace detail {

inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > UINT64_MAX / a) return false;
  out = a * b;
  return true;
}

inline std::uint64_t read_u64_le(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses a header, refusing duplicate keys in the root object (nlohmann would keep the last one).
inline nlohmann::json parse_header_json(const char* begin, const char* end) {
  std::set<std::string> seen;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second) duplicate = k;
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, end, callback);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw Error("header names tensor '" + duplicate + "' twice").at_tensor(duplicate);
  return j;
}

inline std::uint64_t json_u64(const nlohmann::json& v, const char* what) {
  if (!v.is_number_unsigned()) {
    std::string why = v.is_number_integer() ? "is negative"
                      : v.is_number_float() ? "is not an integer"
                                            : "is not a number";
    throw Error(std::string(what) + " " + v.dump() + " " + why);
  }
  return v.get<std::uint64_t>();
}

}  // namespace detail

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path) : map_(std::make_unique<MappedFile>(path)) {
    try {
      parse();
    } catch (Error& e) {
      e.at_file(path);
      throw;
    }
  }

  const std::string& path() const noexcept { return map_->path(); }
  std::size_t size() const noexcept { return tensors_.size(); }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& kv : tensors_) out.push_back(kv.first);
    return out;
  }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  const TensorInfo& info(const std::string& name) const { return entry(name).info; }

  AnyTensorView tensor(const std::string& name) const {
    const Entry& e = entry(name);
    if (e.info.shape.size() > kMaxRank)
      throw Error("rank " + std::to_string(e.info.shape.size()) + " is above the supported " +
                  std::to_string(kMaxRank))
          .at_tensor(name)
          .at_file(path());
    Shape shape{};
    for (std::size_t i = 0; i < e.info.shape.size(); ++i) shape[i] = static_cast<std::size_t>(e.info.shape[i]);
    return AnyTensorView(e.data, e.info.dtype, shape, e.info.shape.size());
  }

 private:
  struct Entry {
    TensorInfo info;
    const void* data = nullptr;
  };

  const Entry& entry(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error("no such tensor").at_tensor(name).at_file(path());
    return it->second;
  }

  void parse() {
    const std::size_t file_size = map_->size();
    if (file_size < 8)
      throw Error("file is " + std::to_string(file_size) +
                  " bytes, too short for the 8-byte header length");
    const std::uint64_t header_len = detail::read_u64_le(map_->data());
    if (header_len > kMaxSafetensorsHeaderBytes)
      throw Error("header length " + std::to_string(header_len) + " exceeds the 100 MiB limit");
    if (header_len > file_size - 8)
      throw Error("header length " + std::to_string(header_len) + " runs past the end of the file (" +
                  std::to_string(file_size) + " bytes)");
    const char* hbegin = reinterpret_cast<const char*>(map_->data() + 8);
    const nlohmann::json header = detail::parse_header_json(hbegin, hbegin + header_len);
    if (!header.is_object()) throw Error("header root is not a JSON object");

    const std::uint64_t data_size = file_size - 8 - header_len;
    const unsigned char* data_area = map_->data() + 8 + header_len;

    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        if (!value.is_object()) throw Error("__metadata__ is not an object").at_key("__metadata__");
        for (const auto& [k, v] : value.items()) {
          if (!v.is_string()) throw Error("__metadata__ value is not a string").at_key("__metadata__." + k);
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      try {
        tensors_[name].info = parse_tensor(value);
      } catch (Error& e) {
        e.at_tensor(name);
        throw;
      }
    }

    // The tensors, sorted by offset, must tile the data area exactly.
    std::vector<std::pair<const std::string*, const TensorInfo*>> order;
    order.reserve(tensors_.size());
    for (const auto& kv : tensors_) order.emplace_back(&kv.first, &kv.second.info);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.second->begin != b.second->begin ? a.second->begin < b.second->begin
                                                : a.second->end < b.second->end;
    });
    std::uint64_t cursor = 0;
    for (const auto& [name, info] : order) {
      if (info->end > data_size)
        throw Error("data_offsets [" + std::to_string(info->begin) + ", " + std::to_string(info->end) +
                    "] run past the end of the data area (" + std::to_string(data_size) + " bytes)")
            .at_tensor(*name);
      if (info->begin < cursor)
        throw Error("data overlaps the previous tensor (begins at " + std::to_string(info->begin) +
                    ", previous ends at " + std::to_string(cursor) + ")")
            .at_tensor(*name);
      if (info->begin > cursor)
        throw Error("gap of " + std::to_string(info->begin - cursor) + " bytes before this tensor's data")
            .at_tensor(*name);
      cursor = info->end;
    }
    if (cursor != data_size)
      throw Error(std::to_string(data_size - cursor) + " bytes after the last tensor belong to no tensor");

    // Hand out in-place pointers where aligned, copies where not.
    for (auto& [name, e] : tensors_) {
      const unsigned char* p = data_area + e.info.begin;
      const std::size_t align = dtype_size(e.info.dtype);
      if (reinterpret_cast<std::uintptr_t>(p) % align == 0) {
        e.data = p;
      } else {
        const std::size_t bytes = static_cast<std::size_t>(e.info.byte_size());
        auto& buf = realigned_.emplace_back(std::make_unique<std::uint64_t[]>(bytes / 8 + 1));
        std::memcpy(buf.get(), p, bytes);
        e.data = buf.get();
      }
    }
  }

  static TensorInfo parse_tensor(const nlohmann::json& value) {
    if (!value.is_object()) throw Error("entry is not an object");
    for (const auto& [k, v] : value.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets") throw Error("unknown field '" + k + "'");
    }
    if (!value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      throw Error("entry needs dtype, shape and data_offsets");
    const auto& dt = value["dtype"];
    if (!dt.is_string()) throw Error("dtype is not a string");
    const auto dtype = parse_dtype(dt.get<std::string>());
    if (!dtype) throw Error("unsupported dtype '" + dt.get<std::string>() + "' (F32, BF16 and F16 are)");

    TensorInfo info;
    info.dtype = *dtype;
    const auto& shape = value["shape"];
    if (!shape.is_array()) throw Error("shape is not an array");
    std::uint64_t count = 1;
    for (const auto& d : shape) {
      const std::uint64_t dim = detail::json_u64(d, "shape dimension");
      info.shape.push_back(dim);
      if (!detail::checked_mul(count, dim, count))
        throw Error("element count of shape " + shape.dump() + " overflows 64 bits");
    }
    std::uint64_t bytes = 0;
    if (!detail::checked_mul(count, dtype_size(info.dtype), bytes))
      throw Error("byte count of shape " + shape.dump() + " overflows 64 bits");

    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) throw Error("data_offsets is not a [begin, end] pair");
    info.begin = detail::json_u64(offsets[0], "data_offsets begin");
    info.end = detail::json_u64(offsets[1], "data_offsets end");
    if (info.end < info.begin)
      throw Error("data_offsets end " + std::to_string(info.end) + " is before begin " +
                  std::to_string(info.begin));
    if (info.end - info.begin != bytes)
      throw Error("data_offsets span " + std::to_string(info.end - info.begin) + " bytes but shape " +
                  shape.dump() + " of " + dtype_name(info.dtype) + " needs " + std::to_string(bytes));
    return info;
  }

  std::unique_ptr<MappedFile> map_;
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<std::uint64_t[]>> realigned_;
};

}  // namespace sgt
