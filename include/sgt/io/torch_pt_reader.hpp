// The reader of io/torch_pt_writer.hpp: the bytes of `torch.save(tensor, f)` -- one dense tensor,
// F32, BF16 or F16 -- back into an EncodedTensor, as a server that takes vLLM's `prompt_embeds`
// must read them from anyone on the network.
//
// The bytes are untrusted, so this is not a general unpickler. It runs the few pickle opcodes
// torch.save writes for one tensor (protocol 2: PROTO, GLOBAL, MARK, the integer and string
// opcodes, TUPLE*, NEWFALSE, BINPERSID, REDUCE, the memo, STOP) on a typed stack, and accepts
// exactly three callables: torch._utils._rebuild_tensor_v2, collections.OrderedDict and the
// storage classes torch.FloatStorage / BFloat16Storage / HalfStorage. Anything else -- another
// global, a list of tensors, a dict, a nested object -- is refused by name, before any allocation
// it would size. The ZIP container must be what torch writes: stored records (no compression),
// a central directory, and every offset and size inside the buffer.
//
// Bounds, all checked before the work they bound: the pickle's length and opcode count, the stack
// and memo size, string lengths, the tensor's rank and element count (TorchReadLimits), and the
// storage record's size against the tensor's extent (offset + contiguous size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/encoded_tensor.hpp"

namespace sgt {

struct TorchReadLimits {
  std::size_t max_elements = std::size_t{1} << 28;  // 1 GiB of f32
  std::size_t max_rank = 8;
};

namespace detail {

inline std::uint64_t read_le(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

// The records of a stored ZIP archive, by name (without the top-level folder): where each one's
// data lies in the buffer.
struct ZipRecord {
  std::string name;  // "data.pkl", "data/0", ...
  const unsigned char* data = nullptr;
  std::size_t size = 0;
};

inline std::vector<ZipRecord> list_stored_zip(const unsigned char* bytes, std::size_t size) {
  constexpr std::size_t kMaxRecords = 64;  // torch writes 7 for one tensor
  auto fail = [](const std::string& what) { return Error("torch.save archive: " + what); };
  if (size < 22) throw fail("too short for a ZIP file");
  // The end-of-central-directory record, allowing a comment of up to 64 KiB after it.
  std::size_t eocd = std::string::npos;
  const std::size_t lowest = size > 22 + 0xffff ? size - 22 - 0xffff : 0;
  for (std::size_t i = size - 22 + 1; i-- > lowest;)
    if (read_le(bytes + i, 4) == 0x06054b50u) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) throw fail("no end-of-central-directory record");
  const std::uint64_t count = read_le(bytes + eocd + 10, 2);
  const std::uint64_t cd_size = read_le(bytes + eocd + 12, 4);
  const std::uint64_t cd_offset = read_le(bytes + eocd + 16, 4);
  if (count > kMaxRecords) throw fail(std::to_string(count) + " records, more than one tensor's");
  if (cd_offset > eocd || cd_size > eocd - cd_offset) throw fail("central directory out of bounds");
  std::vector<ZipRecord> records;
  std::size_t p = static_cast<std::size_t>(cd_offset);
  const std::size_t cd_end = static_cast<std::size_t>(cd_offset + cd_size);
  std::string prefix;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (cd_end - p < 46 || read_le(bytes + p, 4) != 0x02014b50u)
      throw fail("central directory entry " + std::to_string(k) + " is malformed");
    const std::uint64_t method = read_le(bytes + p + 10, 2);
    const std::uint64_t csize = read_le(bytes + p + 20, 4), usize = read_le(bytes + p + 24, 4);
    const std::size_t name_len = read_le(bytes + p + 28, 2), extra_len = read_le(bytes + p + 30, 2),
                      comment_len = read_le(bytes + p + 32, 2);
    const std::uint64_t local = read_le(bytes + p + 42, 4);
    if (cd_end - p - 46 < name_len + extra_len + comment_len)
      throw fail("central directory entry " + std::to_string(k) + " runs past the directory");
    std::string full(reinterpret_cast<const char*>(bytes + p + 46), name_len);
    p += 46 + name_len + extra_len + comment_len;
    if (method != 0) throw fail("record '" + full + "' is compressed (torch stores records)");
    if (csize != usize) throw fail("record '" + full + "' has two sizes");
    if (local > size || size - local < 30 || read_le(bytes + local, 4) != 0x04034b50u)
      throw fail("record '" + full + "' has no local header");
    const std::size_t data_start =
        static_cast<std::size_t>(local) + 30 + read_le(bytes + local + 26, 2) +
        read_le(bytes + local + 28, 2);
    if (data_start > size || size - data_start < usize)
      throw fail("record '" + full + "' runs past the end of the buffer");
    const std::size_t slash = full.find('/');
    if (slash == std::string::npos || slash == 0)
      throw fail("record '" + full + "' is outside the archive's folder");
    if (prefix.empty()) prefix = full.substr(0, slash + 1);
    if (full.compare(0, prefix.size(), prefix) != 0)
      throw fail("record '" + full + "' is outside the archive's folder '" + prefix + "'");
    records.push_back({full.substr(prefix.size()), bytes + data_start, static_cast<std::size_t>(usize)});
  }
  return records;
}

// A value on the restricted unpickler's stack.
struct PickleValue {
  enum class Kind { Mark, Int, Str, Bool, Tuple, Global, Storage, Dict, Tensor } kind = Kind::Int;
  std::uint64_t i = 0;          // Int, Bool
  std::string s;                // Str; Global: "module.name"
  std::vector<PickleValue> items;  // Tuple
  DType dtype = DType::F32;     // Storage
  std::string key;              // Storage: the data/<key> record
  EncodedTensor tensor;         // Tensor (shape and dtype; bytes filled at the end)
  std::uint64_t storage_offset = 0;
  std::vector<std::uint64_t> stride;
};

inline const char* pickle_kind_name(PickleValue::Kind k) {
  switch (k) {
    case PickleValue::Kind::Mark: return "mark";
    case PickleValue::Kind::Int: return "int";
    case PickleValue::Kind::Str: return "str";
    case PickleValue::Kind::Bool: return "bool";
    case PickleValue::Kind::Tuple: return "tuple";
    case PickleValue::Kind::Global: return "global";
    case PickleValue::Kind::Storage: return "storage";
    case PickleValue::Kind::Dict: return "OrderedDict";
    case PickleValue::Kind::Tensor: return "tensor";
  }
  return "?";
}

// Runs data.pkl; returns the one tensor it builds (shape, dtype, offset, stride, storage key).
inline PickleValue unpickle_one_tensor(const unsigned char* p, std::size_t n,
                                       const TorchReadLimits& limits) {
  using Kind = PickleValue::Kind;
  constexpr std::size_t kMaxPickleBytes = 64 * 1024, kMaxOps = 4096, kMaxStack = 64,
                        kMaxMemo = 256, kMaxString = 256;
  auto fail = [](const std::string& what, std::size_t at) {
    return Error("torch.save pickle: " + what + " (byte " + std::to_string(at) + ")");
  };
  if (n > kMaxPickleBytes) throw fail("larger than one tensor's pickle", 0);
  std::vector<PickleValue> stack, memo;
  std::size_t pos = 0, ops = 0;
  auto need = [&](std::size_t k) {
    if (n - pos < k) throw fail("truncated", pos);
  };
  auto push = [&](PickleValue v) {
    if (stack.size() >= kMaxStack) throw fail("stack deeper than one tensor needs", pos);
    stack.push_back(std::move(v));
  };
  auto pop = [&]() {
    if (stack.empty() || stack.back().kind == Kind::Mark) throw fail("stack underflow", pos);
    PickleValue v = std::move(stack.back());
    stack.pop_back();
    return v;
  };
  auto pop_to_mark = [&]() {
    std::size_t m = stack.size();
    while (m > 0 && stack[m - 1].kind != Kind::Mark) --m;
    if (m == 0) throw fail("no mark", pos);
    std::vector<PickleValue> items(std::make_move_iterator(stack.begin() + m),
                                   std::make_move_iterator(stack.end()));
    stack.resize(m - 1);
    return items;
  };
  auto tuple_of = [](std::vector<PickleValue> items) {
    PickleValue t;
    t.kind = Kind::Tuple;
    t.items = std::move(items);
    return t;
  };
  auto int_value = [](std::uint64_t v) {
    PickleValue x;
    x.kind = Kind::Int;
    x.i = v;
    return x;
  };
  auto line = [&]() {
    const std::size_t start = pos;
    while (pos < n && p[pos] != '\n') {
      if (pos - start > kMaxString) throw fail("name too long", start);
      ++pos;
    }
    if (pos == n) throw fail("truncated", start);
    return std::string(reinterpret_cast<const char*>(p + start), pos++ - start);
  };
  auto ints = [&](const PickleValue& t, const char* what, std::size_t at) {
    if (t.kind != Kind::Tuple) throw fail(std::string(what) + " is not a tuple", at);
    std::vector<std::uint64_t> v;
    for (const PickleValue& x : t.items) {
      if (x.kind != Kind::Int) throw fail(std::string(what) + " holds a non-integer", at);
      v.push_back(x.i);
    }
    return v;
  };

  while (true) {
    if (++ops > kMaxOps) throw fail("more opcodes than one tensor needs", pos);
    need(1);
    const std::size_t at = pos;
    const unsigned char op = p[pos++];
    switch (op) {
      case 0x80:  // PROTO
        need(1);
        if (p[pos] > 5) throw fail("unknown protocol " + std::to_string(p[pos]), at);
        ++pos;
        break;
      case '(': {  // MARK
        PickleValue m;
        m.kind = Kind::Mark;
        push(std::move(m));
        break;
      }
      case 'K':  // BININT1
        need(1);
        push(int_value(p[pos]));
        pos += 1;
        break;
      case 'M':  // BININT2
        need(2);
        push(int_value(read_le(p + pos, 2)));
        pos += 2;
        break;
      case 'J': {  // BININT (signed 32-bit)
        need(4);
        const auto v = static_cast<std::int32_t>(read_le(p + pos, 4));
        if (v < 0) throw fail("negative integer", at);
        push(int_value(static_cast<std::uint64_t>(v)));
        pos += 4;
        break;
      }
      case 0x8a: {  // LONG1: little-endian two's complement
        need(1);
        const std::size_t len = p[pos++];
        need(len);
        if (len > 8 && !(len == 9 && p[pos + 8] == 0)) throw fail("integer too large", at);
        if (len > 0 && len <= 8 && (p[pos + len - 1] & 0x80)) throw fail("negative integer", at);
        push(int_value(read_le(p + pos, static_cast<int>(len > 8 ? 8 : len))));
        pos += len;
        break;
      }
      case 'X':  // BINUNICODE
      case 0x8c: {  // SHORT_BINUNICODE (protocol 4)
        const int width = op == 'X' ? 4 : 1;
        need(width);
        const std::size_t len = read_le(p + pos, width);
        pos += width;
        if (len > kMaxString) throw fail("string too long", at);
        need(len);
        PickleValue s;
        s.kind = Kind::Str;
        s.s.assign(reinterpret_cast<const char*>(p + pos), len);
        pos += len;
        push(std::move(s));
        break;
      }
      case 'c': {  // GLOBAL
        std::string module = line();
        std::string name = line();
        const std::string full = module + "." + name;
        PickleValue g;
        g.kind = Kind::Global;
        g.s = full;
        if (full == "torch.FloatStorage" || full == "torch.BFloat16Storage" ||
            full == "torch.HalfStorage") {
          g.dtype = full == "torch.FloatStorage"      ? DType::F32
                    : full == "torch.BFloat16Storage" ? DType::BF16
                                                      : DType::F16;
        } else if (full != "torch._utils._rebuild_tensor_v2" && full != "collections.OrderedDict") {
          throw fail("refuses the global " + full + " (only a dense F32/BF16/F16 tensor is read)",
                     at);
        }
        push(std::move(g));
        break;
      }
      case ')':  // EMPTY_TUPLE
        push(tuple_of({}));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const std::size_t k = op - 0x84u;
        std::vector<PickleValue> items(k);
        for (std::size_t i = k; i-- > 0;) items[i] = pop();
        push(tuple_of(std::move(items)));
        break;
      }
      case 't':  // TUPLE
        push(tuple_of(pop_to_mark()));
        break;
      case 0x88:  // NEWTRUE
      case 0x89: {  // NEWFALSE
        PickleValue b;
        b.kind = Kind::Bool;
        b.i = op == 0x88;
        push(std::move(b));
        break;
      }
      case 'q':  // BINPUT
      case 'r': {  // LONG_BINPUT
        const int width = op == 'q' ? 1 : 4;
        need(width);
        const std::size_t index = read_le(p + pos, width);
        pos += width;
        if (stack.empty() || stack.back().kind == Kind::Mark) throw fail("memo of nothing", at);
        if (index >= kMaxMemo) throw fail("memo index too large", at);
        if (memo.size() <= index) memo.resize(index + 1);
        memo[index] = stack.back();
        break;
      }
      case 'h':  // BINGET
      case 'j': {  // LONG_BINGET
        const int width = op == 'h' ? 1 : 4;
        need(width);
        const std::size_t index = read_le(p + pos, width);
        pos += width;
        if (index >= memo.size() || memo[index].kind == Kind::Mark)
          throw fail("memo get of an unset index", at);
        push(memo[index]);
        break;
      }
      case 'Q': {  // BINPERSID: ('storage', StorageClass, key, location, numel)
        const PickleValue id = pop();
        if (id.kind != Kind::Tuple || id.items.size() != 5 || id.items[0].kind != Kind::Str ||
            id.items[0].s != "storage" || id.items[1].kind != Kind::Global ||
            id.items[1].s.find("Storage") == std::string::npos || id.items[2].kind != Kind::Str ||
            id.items[3].kind != Kind::Str || id.items[4].kind != Kind::Int)
          throw fail("a persistent id that is not a torch storage", at);
        PickleValue s;
        s.kind = Kind::Storage;
        s.dtype = id.items[1].dtype;
        s.key = id.items[2].s;
        s.i = id.items[4].i;
        push(std::move(s));
        break;
      }
      case 'R': {  // REDUCE
        PickleValue args = pop();
        PickleValue callable = pop();
        if (callable.kind != Kind::Global || args.kind != Kind::Tuple)
          throw fail("reduce of a " + std::string(pickle_kind_name(callable.kind)), at);
        if (callable.s == "collections.OrderedDict") {
          if (!args.items.empty()) throw fail("OrderedDict with arguments", at);
          PickleValue d;
          d.kind = Kind::Dict;
          push(std::move(d));
        } else if (callable.s == "torch._utils._rebuild_tensor_v2") {
          // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
          auto& a = args.items;
          if (a.size() < 6 || a.size() > 7 || a[0].kind != Kind::Storage || a[1].kind != Kind::Int ||
              a[4].kind != Kind::Bool || a[5].kind != Kind::Dict)
            throw fail("_rebuild_tensor_v2 with unexpected arguments", at);
          PickleValue t;
          t.kind = Kind::Tensor;
          t.tensor.dtype = a[0].dtype;
          t.tensor.shape = ints(a[2], "the size", at);
          t.stride = ints(a[3], "the stride", at);
          t.storage_offset = a[1].i;
          t.key = a[0].key;
          t.i = a[0].i;  // the storage's element count
          if (t.tensor.shape.size() > limits.max_rank || t.stride.size() != t.tensor.shape.size())
            throw fail("tensor rank beyond the limit or stride of another rank", at);
          push(std::move(t));
        } else {
          throw fail("a storage class called directly", at);
        }
        break;
      }
      case '.': {  // STOP
        if (stack.size() != 1 || stack.back().kind != Kind::Tensor)
          throw fail("the pickle holds something other than one tensor", at);
        if (pos != n) throw fail("bytes after STOP", pos);
        return std::move(stack.back());
      }
      default:
        throw fail("opcode 0x" + [&] {
          static constexpr char kHex[] = "0123456789abcdef";
          return std::string{kHex[op >> 4], kHex[op & 15]};
        }() + " is not one torch.save writes for a tensor", at);
    }
  }
}

}  // namespace detail

// One tensor from the bytes of torch.save; the values are copied out of the buffer (contiguous,
// little-endian). Errors (sgt::Error) say what is wrong and where.
inline EncodedTensor read_torch_tensor(const unsigned char* bytes, std::size_t size,
                                       const TorchReadLimits& limits = {}) {
  const std::vector<detail::ZipRecord> records = detail::list_stored_zip(bytes, size);
  auto find = [&](const std::string& name) -> const detail::ZipRecord* {
    for (const detail::ZipRecord& r : records)
      if (r.name == name) return &r;
    return nullptr;
  };
  const detail::ZipRecord* pkl = find("data.pkl");
  if (!pkl) throw Error("torch.save archive: no data.pkl record");
  if (const detail::ZipRecord* order = find("byteorder"))
    if (std::string(reinterpret_cast<const char*>(order->data), order->size) != "little")
      throw Error("torch.save archive: byteorder is not little");
  detail::PickleValue t = detail::unpickle_one_tensor(pkl->data, pkl->size, limits);
  EncodedTensor out = std::move(t.tensor);
  // Element count within the limit, and the stride that of a contiguous tensor of this shape:
  // then the tensor is storage[offset, offset + numel).
  std::size_t numel = 1;
  for (const std::uint64_t d : out.shape)
    if (d > limits.max_elements || !checked_mul<std::size_t>(numel, static_cast<std::size_t>(d), numel) ||
        numel > limits.max_elements)
      throw Error("torch.save tensor: more than " + std::to_string(limits.max_elements) +
                  " elements");
  std::uint64_t expect = 1;
  for (std::size_t i = out.shape.size(); i-- > 0;) {
    if (out.shape[i] > 1 && t.stride[i] != expect)
      throw Error("torch.save tensor: not contiguous (stride of dimension " + std::to_string(i) +
                  " is " + std::to_string(t.stride[i]) + ", expected " + std::to_string(expect) + ")");
    expect *= out.shape[i] ? out.shape[i] : 1;
  }
  const detail::ZipRecord* data = find("data/" + t.key);
  if (!data) throw Error("torch.save archive: no record data/" + t.key + " for the tensor");
  const std::size_t elem = dtype_size(out.dtype);
  if (data->size % elem != 0 || data->size / elem != t.i)
    throw Error("torch.save archive: record data/" + t.key + " holds " +
                std::to_string(data->size) + " bytes, not the storage's " + std::to_string(t.i) +
                " elements");
  if (t.storage_offset > t.i || t.i - t.storage_offset < numel)
    throw Error("torch.save tensor: offset " + std::to_string(t.storage_offset) + " + " +
                std::to_string(numel) + " elements run past its storage of " +
                std::to_string(t.i));
  out.bytes.assign(data->data + t.storage_offset * elem,
                   data->data + (t.storage_offset + numel) * elem);
  return out;
}

}  // namespace sgt
