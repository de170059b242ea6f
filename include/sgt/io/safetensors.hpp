// Reading one safetensors file: SafetensorsFile. (A model's tensors, in one file or sharded through
// model.safetensors.index.json, are a TensorStore: sgt/io/tensor_store.hpp.)
//
// A file is memory-mapped and its header checked against every rule of docs/format.md section 5
// before any pointer is handed out: a file that passes cannot make a later read go out of
// bounds. The rules, in the order they are checked:
//   - at least 8 bytes; a little-endian u64 header length N; N <= 100 MiB; 8 + N <= file size;
//   - the header is valid JSON (UTF-8) whose root is an object; no object in it repeats a key
//     (so no tensor name appears twice); it nests at most kMaxHeaderDepth levels;
//   - `__metadata__`, if present, maps strings to strings;
//   - every tensor has exactly `dtype` (F32, BF16 or F16), `shape` (non-negative integers) and
//     `data_offsets` ([begin, end], non-negative integers);
//   - element count and byte count are computed in u64 with overflow checks, and end - begin must
//     equal the byte count. The product of the NON-ZERO dimensions must fit in u64 too, so that
//     no partial product a kernel might form (rows * cols of [0, 2^40, 2^40]) can overflow;
//   - sorted by offset, the tensors tile the data area [0, file size - 8 - N) exactly: no gap, no
//     overlap, nothing past the end. Zero-size tensors take no room and may share an offset.
//
// Cost of a hostile header: the JSON is read twice (io/json.hpp), first by a small SAX pass
// (duplicate keys, nesting, root type: linear time, no DOM), then into a DOM. nlohmann's callback
// parser is not
// used: it rescans the parent container after every closed object, quadratic time on a header
// like `[{},{},...]` (a 100 MiB one would take days).
//
// Alignment: the format does not promise any. Stored data is used in place when it is aligned for
// its element type (the usual case: Python's writer pads the header to 8 bytes); a tensor that is
// not is copied once, at open, into an aligned buffer owned by the file, so kernels never read a
// misaligned float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/mapped_file.hpp"

namespace sgt {

inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;
// root object -> tensor entry -> shape array is 3 levels; one more lets a nested array inside a
// shape reach the per-field check (and its clearer message) instead of the depth limit.
inline constexpr std::size_t kMaxHeaderDepth = 4;

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // byte offsets in the data area
  std::uint64_t end = 0;

  std::uint64_t byte_size() const noexcept { return end - begin; }
  std::uint64_t element_count() const noexcept { return byte_size() / dtype_size(dtype); }
  std::string shape_string() const { return shape_to_string(shape); }
};

namespace detail {

inline std::uint64_t read_u64_le(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A repeated key in a header: a tensor named twice, a metadata key twice, or a field of one entry.
inline Error repeated_header_key(const std::vector<std::string>& path) {
  if (path.size() == 1)
    return Error("header names tensor '" + path[0] + "' twice").at_tensor(path[0]);
  if (path[0] == "__metadata__")
    return Error("__metadata__ has key '" + path.back() + "' twice").at_key("__metadata__");
  return Error("key '" + path.back() + "' appears twice")
      .at_tensor(path[0])
      .at_key(abbreviate(join_keys(std::vector<std::string>(path.begin() + 1, path.end()))));
}

// Parses a safetensors header through the library's checked JSON parse (see the file comment).
inline nlohmann::json parse_header_json(const char* begin, const char* end) {
  JsonReadOptions options;
  options.what = "header";
  options.max_depth = kMaxHeaderDepth;
  options.depth_note = "(a safetensors header needs 3)";
  options.describe_repeated_key = repeated_header_key;
  return parse_json_checked(begin, end, options);
}

// A JSON value that must be a non-negative integer below 2^64.
inline std::uint64_t json_u64(const nlohmann::json& v, const char* what) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  std::string why;
  if (v.is_number_integer() && v.get<std::int64_t>() == 0) {
    // nlohmann reads "-0" as a signed 0; Python's reader (serde) as the float -0.0, and refuses it.
    throw Error(std::string(what) + " -0 is not a non-negative integer");
  } else if (v.is_number_integer()) {
    why = "is negative";
  } else if (v.is_number_float()) {
    // nlohmann reads an integer literal above 2^64 - 1 as a double.
    const double d = v.get<double>();
    why = std::isfinite(d) && d == std::floor(d) && d >= 18446744073709551616.0
              ? "is too large (at most 2^64 - 1)"
              : "is not an integer";
  } else {
    why = "is not a number";
  }
  throw Error(std::string(what) + " " + describe_json(v) + " " + why);
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
  // Sorted by name.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& kv : tensors_) out.push_back(kv.first);
    return out;
  }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  const TensorInfo& info(const std::string& name) const { return entry(name).info; }

  // A view of the stored data (aligned for its dtype), valid as long as this object lives. Throws
  // for a rank above kMaxRank: such a tensor is a valid file entry, but no view can hold it.
  AnyTensorView tensor(const std::string& name) const {
    const Entry& e = entry(name);
    if (e.info.shape.size() > kMaxRank)
      throw Error("rank " + std::to_string(e.info.shape.size()) + " is above the supported " +
                  std::to_string(kMaxRank))
          .at_tensor(name)
          .at_file(path());
    Shape shape{};
    for (std::size_t i = 0; i < e.info.shape.size(); ++i)
      shape[i] = static_cast<std::size_t>(e.info.shape[i]);
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
      throw Error("header length " + std::to_string(header_len) +
                  " runs past the end of the file (" + std::to_string(file_size) + " bytes)");
    const char* hbegin = reinterpret_cast<const char*>(map_->data() + 8);
    parse_entries(detail::parse_header_json(hbegin, hbegin + header_len));
    const std::uint64_t data_size = file_size - 8 - header_len;
    check_tiling(data_size);
    place_data(map_->data() + 8 + header_len);
  }

  // The header's entries: __metadata__ and one TensorInfo per tensor.
  void parse_entries(const nlohmann::json& header) {
    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        parse_metadata(value);
        continue;
      }
      try {
        tensors_[name].info = parse_tensor(value);
      } catch (Error& e) {
        e.at_tensor(name);
        throw;
      }
    }
  }

  void parse_metadata(const nlohmann::json& value) {
    if (!value.is_object())
      throw Error("__metadata__ is not an object but " + detail::describe_json(value))
          .at_key("__metadata__");
    for (const auto& [k, v] : value.items()) {
      if (!v.is_string())
        throw Error("__metadata__ value " + detail::describe_json(v) + " is not a string")
            .at_key("__metadata__." + k);
      metadata_[k] = v.get<std::string>();
    }
  }

  // The tensors, sorted by offset, must tile the data area exactly. Ties (zero-size tensors at one
  // offset) are broken by end, then name, so the first error reported does not depend on the
  // sort's whims.
  void check_tiling(std::uint64_t data_size) const {
    std::vector<std::pair<const std::string*, const TensorInfo*>> order;
    order.reserve(tensors_.size());
    for (const auto& kv : tensors_) order.emplace_back(&kv.first, &kv.second.info);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      if (a.second->begin != b.second->begin) return a.second->begin < b.second->begin;
      if (a.second->end != b.second->end) return a.second->end < b.second->end;
      return *a.first < *b.first;
    });
    std::uint64_t cursor = 0;
    const std::string* previous = nullptr;
    for (const auto& [name, info] : order) {
      const std::string range =
          "[" + std::to_string(info->begin) + ", " + std::to_string(info->end) + "]";
      if (info->end > data_size)
        throw Error("data_offsets " + range + " run past the end of the data area (" +
                    std::to_string(data_size) + " bytes)")
            .at_tensor(*name);
      if (info->begin < cursor)
        throw Error("data_offsets " + range + " overlap tensor '" + *previous +
                    "', which ends at " + std::to_string(cursor))
            .at_tensor(*name);
      if (info->begin > cursor)
        throw Error("gap of " + std::to_string(info->begin - cursor) +
                    " bytes in the data area before this tensor's data_offsets " + range)
            .at_tensor(*name);
      if (info->end > info->begin || previous == nullptr) previous = name;
      cursor = info->end;
    }
    if (cursor != data_size)
      throw Error(std::to_string(data_size - cursor) +
                  " trailing bytes after the last tensor belong to no tensor (data area is " +
                  std::to_string(data_size) + " bytes, tensors cover " + std::to_string(cursor) +
                  ")");
  }

  // Hands out in-place pointers where aligned, copies where not.
  void place_data(const unsigned char* data_area) {
    for (auto& [name, e] : tensors_) {
      const unsigned char* p = data_area + e.info.begin;
      const std::size_t align = dtype_size(e.info.dtype);
      if (reinterpret_cast<std::uintptr_t>(p) % align == 0) {
        e.data = p;
      } else {
        const std::size_t bytes = static_cast<std::size_t>(e.info.byte_size());
        // u64 storage: aligned for every element type we read.
        auto& buf = realigned_.emplace_back(std::make_unique<std::uint64_t[]>(bytes / 8 + 1));
        std::memcpy(buf.get(), p, bytes);
        e.data = buf.get();
      }
    }
  }

  static TensorInfo parse_tensor(const nlohmann::json& value) {
    if (!value.is_object())
      throw Error("entry is " + detail::describe_json(value) +
                  ", not an object with dtype, shape and data_offsets");
    for (const auto& [k, v] : value.items()) {
      (void)v;
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        throw Error("unknown field '" + detail::abbreviate(k) +
                    "' (an entry has only dtype, shape and data_offsets)");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) throw Error(std::string("entry is missing '") + field + "'");

    const auto& dt = value["dtype"];
    if (!dt.is_string()) throw Error("dtype " + detail::describe_json(dt) + " is not a string");
    const auto dtype = parse_dtype(dt.get<std::string>());
    if (!dtype)
      throw Error("unsupported dtype '" + detail::abbreviate(dt.get<std::string>()) +
                  "' (F32, BF16 and F16 are)");

    TensorInfo info;
    info.dtype = *dtype;
    const auto& shape = value["shape"];
    if (!shape.is_array())
      throw Error("shape " + detail::describe_json(shape) + " is not an array");
    info.shape.reserve(shape.size());
    std::uint64_t count = 1;    // product of all dims
    std::uint64_t nonzero = 1;  // product of the non-zero dims: bounds every partial product
    for (const auto& d : shape) {
      const std::uint64_t dim = detail::json_u64(d, "shape dimension");
      info.shape.push_back(dim);
      if (dim != 0 && !checked_mul(nonzero, dim, nonzero))
        throw Error("element count of shape " + detail::abbreviate(info.shape_string()) +
                    " overflows 64 bits");
      count *= dim;  // cannot overflow: |count| <= nonzero, or count == 0
    }
    std::uint64_t bytes = 0;
    if (!checked_mul(count, dtype_size(info.dtype), bytes))
      throw Error("byte count of shape " + detail::abbreviate(info.shape_string()) + " of " +
                  dtype_name(info.dtype) + " overflows 64 bits");

    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      throw Error("data_offsets " +
                  (offsets.is_array() ? "has " + std::to_string(offsets.size()) + " value(s)"
                                      : "is " + detail::describe_json(offsets)) +
                  ", not a [begin, end] pair");
    info.begin = detail::json_u64(offsets[0], "data_offsets begin");
    info.end = detail::json_u64(offsets[1], "data_offsets end");
    if (info.end < info.begin)
      throw Error("data_offsets end " + std::to_string(info.end) + " is before begin " +
                  std::to_string(info.begin));
    if (info.end - info.begin != bytes)
      throw Error("data_offsets span " + std::to_string(info.end - info.begin) +
                  " bytes but shape " + detail::abbreviate(info.shape_string()) + " of " +
                  dtype_name(info.dtype) + " needs " + std::to_string(bytes));
    return info;
  }

  std::unique_ptr<MappedFile> map_;
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<std::uint64_t[]>> realigned_;
};

}  // namespace sgt
