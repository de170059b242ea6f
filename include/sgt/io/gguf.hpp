// Reading a GGUF file (versions 2 and 3, little-endian): its metadata and its tensors, dequantized
// to f32 exactly as ggml does.
//
// The file is memory-mapped and parsed front to back by a cursor that checks every read against
// the bytes left before it happens: a count, a string length, an array length or a tensor's
// dimensions are all compared with what the rest of the file could hold (and with GgufLimits)
// before anything is allocated for them, in u64 with checked products, so a lying header is one
// sgt::Error naming the key or tensor and the byte position, never a huge allocation or a read
// past the end. The checks, in order:
//   - magic "GGUF", version 2 or 3 (version 1 used 32-bit counts; a byte-swapped version is a
//     big-endian file, which we do not read);
//   - the tensor and metadata counts within GgufLimits, and each at least as small as the bytes
//     left divided by the smallest entry;
//   - each metadata entry: a UTF-8-agnostic key of at most max_string_bytes, seen once; a known
//     value type; arrays of a scalar or string type (no array of arrays, as ggml), at most
//     max_array_length long;
//   - general.alignment, if present, a u32 power of two (32 otherwise);
//   - each tensor: a name seen once, 1 to 4 dimensions (GGML_MAX_DIMS), a known ggml type, the
//     innermost dimension a multiple of the type's block, element and byte counts without
//     overflow, an offset that is a multiple of the alignment;
//   - the data area starts at the aligned end of the tensor infos, inside the file, and every
//     tensor's [offset, offset + bytes) lies within it without overlapping another.
//
// Dequantization follows ggml's reference kernels (ggml-quants.c, dequantize_row_*) and gguf-py's
// numpy ones (which transformers' GGUF loader calls): per element an f32 product of the quant and
// the block's f16 scale, plus Q4_1's f16 minimum. The product is exact in f32 (at most 8 + 11
// significant bits), so the one rounding is the sum's, and a compiler that fuses q * d + m into
// an FMA gives the same bits as numpy's two operations.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/mapped_file.hpp"

namespace sgt {

// What a GGUF file may hold before its reader refuses it (docs/reliability.md). Each is also
// bounded by the file's size: a count is never believed beyond what the remaining bytes could hold.
struct GgufLimits {
  std::uint64_t max_tensors = 65536;
  std::uint64_t max_metadata_entries = 65536;
  std::uint64_t max_string_bytes = 16ull * 1024 * 1024;  // a key, a value, one array element
  std::uint64_t max_array_length = 16ull * 1024 * 1024;  // elements of one metadata array
};

// The metadata value types of the GGUF format (gguf.md), by their numbers in the file.
enum class GgufValueType : std::uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

inline const char* gguf_value_type_name(GgufValueType t) noexcept {
  switch (t) {
    case GgufValueType::U8:
      return "u8";
    case GgufValueType::I8:
      return "i8";
    case GgufValueType::U16:
      return "u16";
    case GgufValueType::I16:
      return "i16";
    case GgufValueType::U32:
      return "u32";
    case GgufValueType::I32:
      return "i32";
    case GgufValueType::F32:
      return "f32";
    case GgufValueType::Bool:
      return "bool";
    case GgufValueType::String:
      return "string";
    case GgufValueType::Array:
      return "array";
    case GgufValueType::U64:
      return "u64";
    case GgufValueType::I64:
      return "i64";
    case GgufValueType::F64:
      return "f64";
  }
  return "?";
}

// One metadata value: a scalar, a string, or an array of one scalar or string type. Integers keep
// their bits in `integers` (signed types sign-extended), floats in `floats`, so every value of a
// valid file is represented exactly.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  GgufValueType element_type = GgufValueType::U8;  // the array's element type; else == type
  std::vector<std::uint64_t> integers;             // integer and bool elements
  std::vector<double> floats;                      // f32 and f64 elements
  std::vector<std::string> strings;                // string elements

  bool is_array() const noexcept { return type == GgufValueType::Array; }
  std::size_t length() const noexcept {
    return std::max(integers.size(), std::max(floats.size(), strings.size()));
  }
};

// The tensor types of ggml (ggml.h, enum ggml_type) this reader dequantizes.
enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 8,
  BF16 = 30,
};

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;
  std::uint64_t block_elements;  // elements per block
  std::uint64_t block_bytes;     // bytes per block
};

inline constexpr GgmlTypeTraits kGgmlTypes[] = {
    {GgmlType::F32, "F32", 1, 4},     {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", 32, 18}, {GgmlType::Q4_1, "Q4_1", 32, 20},
    {GgmlType::Q8_0, "Q8_0", 32, 34}, {GgmlType::BF16, "BF16", 1, 2},
};

// ggml's names of the types we do not read, so a refusal can say which one a file holds.
inline const char* ggml_type_name_of(std::uint32_t t) noexcept {
  for (const GgmlTypeTraits& k : kGgmlTypes)
    if (static_cast<std::uint32_t>(k.type) == t) return k.name;
  static const char* const kOthers[] = {nullptr,   nullptr, nullptr,  nullptr, "Q4_2",    "Q4_3",
                                        "Q5_0",    "Q5_1",  nullptr,  "Q8_1",  "Q2_K",    "Q3_K",
                                        "Q4_K",    "Q5_K",  "Q6_K",   "Q8_K",  "IQ2_XXS", "IQ2_XS",
                                        "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",   "IQ4_XS",
                                        "I8",      "I16",   "I32",    "I64",   "F64",     "IQ1_M"};
  if (t < sizeof(kOthers) / sizeof(kOthers[0]) && kOthers[t]) return kOthers[t];
  if (t == 34) return "TQ1_0";
  if (t == 35) return "TQ2_0";
  if (t == 39) return "MXFP4";
  return nullptr;
}

inline const GgmlTypeTraits* find_ggml_type(std::uint32_t t) noexcept {
  for (const GgmlTypeTraits& k : kGgmlTypes)
    if (static_cast<std::uint32_t>(k.type) == t) return &k;
  return nullptr;
}

struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> dims;  // ggml order: dims[0] is the innermost (a row's length)
  GgmlType type = GgmlType::F32;
  std::uint64_t offset = 0;  // in the data area
  std::uint64_t bytes = 0;
  std::uint64_t elements = 0;

  // PyTorch's order (outermost first): ggml's [576, 49152] is a [49152, 576] matrix.
  std::vector<std::uint64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
  std::uint64_t row_length() const noexcept { return dims.empty() ? 1 : dims[0]; }
};

// Dequantization of one block of each type (ggml-quants.c's dequantize_row_*), as plain loops.
namespace detail {

inline float gguf_f16(const unsigned char* p) noexcept {
  return to_float(float16{static_cast<std::uint16_t>(p[0] | (p[1] << 8))});
}

// Q8_0: an f16 scale d, then 32 signed bytes q; x = q * d.
inline void dequantize_q8_0_block(const unsigned char* b, float* out) noexcept {
  const float d = gguf_f16(b);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
}

// Q4_0: an f16 scale d, then 16 bytes whose low nibbles are elements 0-15 and high nibbles 16-31;
// x = (nibble - 8) * d.
inline void dequantize_q4_0_block(const unsigned char* b, float* out) noexcept {
  const float d = gguf_f16(b);
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    out[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

// Q4_1: an f16 scale d and an f16 minimum m, then 16 bytes of nibbles as Q4_0; x = nibble * d + m.
inline void dequantize_q4_1_block(const unsigned char* b, float* out) noexcept {
  const float d = gguf_f16(b);
  const float m = gguf_f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
    out[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

}  // namespace detail

// Dequantizes `count` elements (a multiple of the type's block) stored at `data` into out.
inline void dequantize_ggml(GgmlType type, const unsigned char* data, std::uint64_t count,
                            float* out) {
  const GgmlTypeTraits* t = find_ggml_type(static_cast<std::uint32_t>(type));
  if (!t || count % t->block_elements != 0)
    throw Error("dequantize_ggml: count " + std::to_string(count) + " is not whole blocks");
  const std::uint64_t blocks = count / t->block_elements;
  for (std::uint64_t i = 0; i < blocks; ++i) {
    const unsigned char* b = data + i * t->block_bytes;
    float* o = out + i * t->block_elements;
    switch (type) {
      case GgmlType::F32:
        std::memcpy(o, b, 4);
        break;
      case GgmlType::F16:
        *o = detail::gguf_f16(b);
        break;
      case GgmlType::BF16:
        *o = to_float(bfloat16{static_cast<std::uint16_t>(b[0] | (b[1] << 8))});
        break;
      case GgmlType::Q8_0:
        detail::dequantize_q8_0_block(b, o);
        break;
      case GgmlType::Q4_0:
        detail::dequantize_q4_0_block(b, o);
        break;
      case GgmlType::Q4_1:
        detail::dequantize_q4_1_block(b, o);
        break;
    }
  }
}

class GgufFile {
 public:
  explicit GgufFile(const std::string& path, const GgufLimits& limits = {})
      : map_(std::make_unique<MappedFile>(path)), limits_(limits) {
    try {
      parse();
    } catch (Error& e) {
      e.at_file(path);
      throw;
    }
  }

  const std::string& path() const noexcept { return map_->path(); }
  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }

  const std::map<std::string, GgufValue>& metadata() const noexcept { return metadata_; }
  const GgufValue* find(const std::string& key) const {
    auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }
  bool contains(const std::string& key) const { return metadata_.count(key) != 0; }

  // Typed reads of one key; a missing key or another type is an error naming the key.
  std::string string(const std::string& key) const {
    const GgufValue& v = scalar(key, "a string");
    if (v.type != GgufValueType::String) throw wrong_type(key, v, "a string");
    return v.strings[0];
  }
  // Any unsigned or non-negative signed integer type.
  std::uint64_t unsigned_integer(const std::string& key) const {
    const GgufValue& v = scalar(key, "an integer");
    if (!is_integer(v.type)) throw wrong_type(key, v, "an integer");
    if (is_signed(v.type) && static_cast<std::int64_t>(v.integers[0]) < 0)
      throw Error("is negative (" + std::to_string(static_cast<std::int64_t>(v.integers[0])) + ")")
          .at_key(key);
    return v.integers[0];
  }
  double number(const std::string& key) const {
    const GgufValue& v = scalar(key, "a number");
    if (v.type == GgufValueType::F32 || v.type == GgufValueType::F64) return v.floats[0];
    if (!is_integer(v.type)) throw wrong_type(key, v, "a number");
    return is_signed(v.type) ? static_cast<double>(static_cast<std::int64_t>(v.integers[0]))
                             : static_cast<double>(v.integers[0]);
  }
  bool boolean(const std::string& key) const {
    const GgufValue& v = scalar(key, "a bool");
    if (v.type != GgufValueType::Bool) throw wrong_type(key, v, "a bool");
    return v.integers[0] != 0;
  }
  const std::vector<std::string>& strings(const std::string& key) const {
    const GgufValue& v = value(key);
    if (!v.is_array() || v.element_type != GgufValueType::String)
      throw wrong_type(key, v, "an array of strings");
    return v.strings;
  }
  // An integer array's elements as signed values.
  std::vector<std::int64_t> integers(const std::string& key) const {
    const GgufValue& v = value(key);
    if (!v.is_array() || !is_integer(v.element_type))
      throw wrong_type(key, v, "an array of integers");
    std::vector<std::int64_t> out(v.integers.size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int64_t>(v.integers[i]);
    return out;
  }

  // A float array's elements (f32 or f64, held exactly).
  const std::vector<double>& numbers(const std::string& key) const {
    const GgufValue& v = value(key);
    if (!v.is_array() ||
        (v.element_type != GgufValueType::F32 && v.element_type != GgufValueType::F64))
      throw wrong_type(key, v, "an array of floats");
    return v.floats;
  }

  // In file order.
  const std::vector<GgufTensorInfo>& tensors() const noexcept { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const GgufTensorInfo& tensor(const std::string& name) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (!t) throw Error("no such tensor").at_tensor(name).at_file(path());
    return *t;
  }
  // The stored bytes of a tensor (checked at open to lie inside the file).
  const unsigned char* tensor_data(const GgufTensorInfo& t) const noexcept {
    return map_->data() + data_start_ + t.offset;
  }
  // The tensor's values as f32, in its row-major (PyTorch) order.
  std::vector<float> dequantize(const GgufTensorInfo& t) const {
    std::vector<float> out(static_cast<std::size_t>(t.elements));
    dequantize_ggml(t.type, tensor_data(t), t.elements, out.data());
    return out;
  }

 private:
  static bool is_integer(GgufValueType t) noexcept {
    switch (t) {
      case GgufValueType::U8:
      case GgufValueType::I8:
      case GgufValueType::U16:
      case GgufValueType::I16:
      case GgufValueType::U32:
      case GgufValueType::I32:
      case GgufValueType::U64:
      case GgufValueType::I64:
        return true;
      default:
        return false;
    }
  }
  static bool is_signed(GgufValueType t) noexcept {
    return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 ||
           t == GgufValueType::I64;
  }
  // Bytes of one scalar in the file; 0 for string and array.
  static std::uint64_t scalar_bytes(GgufValueType t) noexcept {
    switch (t) {
      case GgufValueType::U8:
      case GgufValueType::I8:
      case GgufValueType::Bool:
        return 1;
      case GgufValueType::U16:
      case GgufValueType::I16:
        return 2;
      case GgufValueType::U32:
      case GgufValueType::I32:
      case GgufValueType::F32:
        return 4;
      case GgufValueType::U64:
      case GgufValueType::I64:
      case GgufValueType::F64:
        return 8;
      default:
        return 0;
    }
  }
  static std::string describe(const GgufValue& v) {
    if (v.is_array()) return std::string("an array of ") + gguf_value_type_name(v.element_type);
    return std::string("a ") + gguf_value_type_name(v.type);
  }
  static Error wrong_type(const std::string& key, const GgufValue& v, const char* wanted) {
    return Error(std::string("must be ") + wanted + ", not " + describe(v)).at_key(key);
  }
  const GgufValue& value(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) throw Error("missing metadata key").at_key(key).at_file(path());
    return *v;
  }
  const GgufValue& scalar(const std::string& key, const char* wanted) const {
    const GgufValue& v = value(key);
    if (v.is_array()) throw wrong_type(key, v, wanted);
    return v;
  }

  // Reads from the mapping; every read is bounds-checked first.
  struct Cursor {
    const unsigned char* data;
    std::uint64_t size;
    std::uint64_t pos = 0;

    std::uint64_t left() const noexcept { return size - pos; }
    void need(std::uint64_t n, const char* what) const {
      if (n > left())
        throw Error(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
                    std::to_string(left()) + " left")
            .at_position(static_cast<std::int64_t>(pos));
    }
    std::uint64_t uint(unsigned bytes, const char* what) {
      need(bytes, what);
      std::uint64_t v = 0;
      for (unsigned i = 0; i < bytes; ++i)
        v |= static_cast<std::uint64_t>(data[pos + i]) << (8 * i);
      pos += bytes;
      return v;
    }
    std::string string(std::uint64_t max_bytes, const char* what) {
      const std::uint64_t at = pos;
      const std::uint64_t n = uint(8, what);
      if (n > max_bytes)
        throw Error(std::string(what) + " length " + std::to_string(n) + " exceeds the limit of " +
                    std::to_string(max_bytes) + " bytes")
            .at_position(static_cast<std::int64_t>(at));
      need(n, what);
      std::string s(reinterpret_cast<const char*>(data + pos), static_cast<std::size_t>(n));
      pos += n;
      return s;
    }
  };

  // A count read from the file, refused above `limit` or above what the remaining bytes could
  // hold at `min_bytes` per entry.
  static std::uint64_t checked_count(Cursor& c, const char* what, std::uint64_t limit,
                                     std::uint64_t min_bytes) {
    const std::uint64_t at = c.pos;
    const std::uint64_t n = c.uint(8, what);
    if (n > limit)
      throw Error(std::string(what) + " " + std::to_string(n) + " exceeds the limit of " +
                  std::to_string(limit))
          .at_position(static_cast<std::int64_t>(at));
    if (min_bytes != 0 && n > c.left() / min_bytes)
      throw Error(std::string(what) + " " + std::to_string(n) + " cannot fit in the " +
                  std::to_string(c.left()) + " bytes left")
          .at_position(static_cast<std::int64_t>(at));
    return n;
  }

  GgufValueType read_type(Cursor& c, const std::string& key) {
    const std::uint64_t at = c.pos;
    const std::uint64_t t = c.uint(4, "a value type");
    if (t > static_cast<std::uint32_t>(GgufValueType::F64))
      throw Error("unknown value type " + std::to_string(t))
          .at_key(key)
          .at_position(static_cast<std::int64_t>(at));
    return static_cast<GgufValueType>(t);
  }

  // One element of type t (not an array) appended to v.
  void read_element(Cursor& c, GgufValueType t, GgufValue& v) {
    switch (t) {
      case GgufValueType::String:
        v.strings.push_back(c.string(limits_.max_string_bytes, "a string"));
        return;
      case GgufValueType::F32: {
        const std::uint32_t bits = static_cast<std::uint32_t>(c.uint(4, "an f32"));
        float f;
        std::memcpy(&f, &bits, 4);
        v.floats.push_back(f);
        return;
      }
      case GgufValueType::F64: {
        const std::uint64_t bits = c.uint(8, "an f64");
        double d;
        std::memcpy(&d, &bits, 8);
        v.floats.push_back(d);
        return;
      }
      default: {
        const unsigned n = static_cast<unsigned>(scalar_bytes(t));
        std::uint64_t x = c.uint(n, "a value");
        if (is_signed(t) && n < 8 && (x >> (8 * n - 1)) != 0) x |= ~0ull << (8 * n);  // sign
        if (t == GgufValueType::Bool && x > 1)
          throw Error("bool value " + std::to_string(x) + " is neither 0 nor 1")
              .at_position(static_cast<std::int64_t>(c.pos - 1));
        v.integers.push_back(x);
        return;
      }
    }
  }

  GgufValue read_value(Cursor& c, const std::string& key) {
    GgufValue v;
    v.type = v.element_type = read_type(c, key);
    if (v.type != GgufValueType::Array) {
      read_element(c, v.type, v);
      return v;
    }
    v.element_type = read_type(c, key);
    if (v.element_type == GgufValueType::Array)
      throw Error("an array of arrays is not supported")
          .at_key(key)
          .at_position(static_cast<std::int64_t>(c.pos - 4));
    const std::uint64_t min =
        v.element_type == GgufValueType::String ? 8 : scalar_bytes(v.element_type);
    const std::uint64_t n = checked_count(c, "array length", limits_.max_array_length, min);
    if (v.element_type == GgufValueType::String)
      v.strings.reserve(static_cast<std::size_t>(n));
    else if (v.element_type == GgufValueType::F32 || v.element_type == GgufValueType::F64)
      v.floats.reserve(static_cast<std::size_t>(n));
    else
      v.integers.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) read_element(c, v.element_type, v);
    return v;
  }

  void parse() {
    Cursor c{map_->data(), map_->size()};
    if (c.size < 4 || std::memcmp(c.data, "GGUF", 4) != 0)
      throw Error("not a GGUF file (no \"GGUF\" magic at the start)");
    c.pos = 4;
    version_ = static_cast<std::uint32_t>(c.uint(4, "the version"));
    if (version_ == 1) throw Error("GGUF version 1 is not supported (2 and 3 are)");
    if (version_ != 2 && version_ != 3) {
      const bool swapped = (version_ & 0xFFFF) == 0 && (version_ >> 16) != 0;
      throw Error("GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are)" +
                  (swapped ? "; a big-endian file?" : ""));
    }
    // A tensor info takes at least 8 (name length) + 4 (dims) + 8 + 4 + 8 bytes; a metadata
    // entry 8 (key length) + 4 (type) + 1.
    const std::uint64_t n_tensors = checked_count(c, "tensor count", limits_.max_tensors, 32);
    const std::uint64_t n_kv =
        checked_count(c, "metadata entry count", limits_.max_metadata_entries, 13);
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const std::uint64_t at = c.pos;
      std::string key = c.string(limits_.max_string_bytes, "a metadata key");
      if (metadata_.count(key))
        throw Error("metadata key appears twice")
            .at_key(key)
            .at_position(static_cast<std::int64_t>(at));
      GgufValue v;
      try {
        v = read_value(c, key);
      } catch (Error& e) {
        e.at_key(key);
        throw;
      }
      metadata_.emplace(std::move(key), std::move(v));
    }
    if (const GgufValue* a = find("general.alignment")) {
      if (a->is_array() || a->type != GgufValueType::U32)
        throw Error("must be a u32, not " + describe(*a)).at_key("general.alignment");
      const std::uint64_t n = a->integers[0];
      if (n == 0 || (n & (n - 1)) != 0)
        throw Error("alignment " + std::to_string(n) + " is not a power of two")
            .at_key("general.alignment");
      alignment_ = n;
    }
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensorInfo t = read_tensor_info(c);
      if (tensor_index_.count(t.name)) throw Error("tensor named twice").at_tensor(t.name);
      tensor_index_[t.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    // The data area starts at the next multiple of the alignment (which may be the file's end
    // when there are no tensors).
    std::uint64_t start = c.pos;
    if (start % alignment_ != 0) start += alignment_ - start % alignment_;
    if (start > c.size && !tensors_.empty())
      throw Error("the data area (aligned to " + std::to_string(alignment_) + " at byte " +
                  std::to_string(start) + ") starts past the end of the file (" +
                  std::to_string(c.size) + " bytes)");
    data_start_ = std::min<std::uint64_t>(start, c.size);
    check_placement(c.size - data_start_);
  }

  GgufTensorInfo read_tensor_info(Cursor& c) {
    const std::uint64_t at = c.pos;
    GgufTensorInfo t;
    t.name = c.string(limits_.max_string_bytes, "a tensor name");
    try {
      const std::uint64_t n_dims = c.uint(4, "the dimension count");
      if (n_dims == 0 || n_dims > 4)
        throw Error(std::to_string(n_dims) + " dimensions (1 to 4 are allowed)");
      std::uint64_t elements = 1;
      for (std::uint64_t d = 0; d < n_dims; ++d) {
        const std::uint64_t dim = c.uint(8, "a dimension");
        if (dim > static_cast<std::uint64_t>(INT64_MAX))
          throw Error("dimension " + std::to_string(dim) + " is above 2^63 - 1");
        t.dims.push_back(dim);
        if (!checked_mul(elements, dim, elements))
          throw Error("element count of dimensions " + dims_string(t.dims) +
                      "... overflows 64 bits");
      }
      const std::uint64_t type = c.uint(4, "the tensor type");
      const GgmlTypeTraits* traits = find_ggml_type(static_cast<std::uint32_t>(type));
      if (!traits) {
        const char* known =
            type <= 0xFFFFFFFFull ? ggml_type_name_of(static_cast<std::uint32_t>(type)) : nullptr;
        throw Error("tensor type " +
                    (known ? std::string(known) : "number " + std::to_string(type)) +
                    " is not supported (F32, F16, BF16, Q8_0, Q4_0 and Q4_1 are)");
      }
      t.type = traits->type;
      t.elements = elements;
      if (t.dims[0] % traits->block_elements != 0)
        throw Error("row length " + std::to_string(t.dims[0]) + " is not a multiple of " +
                    traits->name + "'s block of " + std::to_string(traits->block_elements));
      if (!checked_mul(elements / traits->block_elements, traits->block_bytes, t.bytes))
        throw Error("byte count of dimensions " + dims_string(t.dims) + " overflows 64 bits");
      t.offset = c.uint(8, "the tensor offset");
      if (t.offset % alignment_ != 0)
        throw Error("offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                    std::to_string(alignment_));
    } catch (Error& e) {
      e.at_tensor(t.name).at_position(static_cast<std::int64_t>(at));
      throw;
    }
    return t;
  }

  static std::string dims_string(const std::vector<std::uint64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }

  // Every tensor inside the data area, none overlapping another (zero-size ones take no room).
  void check_placement(std::uint64_t data_size) const {
    std::vector<const GgufTensorInfo*> order;
    for (const GgufTensorInfo& t : tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
      return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
    });
    std::uint64_t cursor = 0;
    const GgufTensorInfo* previous = nullptr;
    for (const GgufTensorInfo* t : order) {
      std::uint64_t end = 0;
      if (!checked_add(t->offset, t->bytes, end) || end > data_size)
        throw Error("data [" + std::to_string(t->offset) + ", +" + std::to_string(t->bytes) +
                    ") runs past the end of the data area (" + std::to_string(data_size) +
                    " bytes)")
            .at_tensor(t->name);
      if (t->bytes == 0) continue;
      if (previous && t->offset < cursor)
        throw Error("data at offset " + std::to_string(t->offset) + " overlaps tensor '" +
                    previous->name + "', which ends at " + std::to_string(cursor))
            .at_tensor(t->name);
      previous = t;
      cursor = end;
    }
  }

  std::unique_ptr<MappedFile> map_;
  GgufLimits limits_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_start_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace sgt
