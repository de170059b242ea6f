// torch.save's file format for a tensor or a list of tensors, written without Python: what
// `torch.load(path, weights_only=True, map_location="cpu")` reads back, and the bytes torch 2.13's
// own `torch.save` writes for the same tensors (see docs/output_formats.md).
//
// The archive (io/torch_archive_writer.hpp) holds, under `<archive>/`:
//   data.pkl             a protocol-2 pickle: `torch._utils._rebuild_tensor_v2(storage, 0, size,
//                        stride, False, collections.OrderedDict())` per tensor, the storage a
//                        persistent id ('storage', torch.<Float|BFloat16|Half>Storage, key,
//                        'cpu', numel); a list of tensors is a pickled list of those
//   .format_version      "1"
//   .storage_alignment   "64"
//   byteorder            "little"
//   data/<key>           each tensor's raw little-endian values, keys "0", "1", ...
//   version              "3\n"
//   .data/serialization_id
// Tensors are contiguous: stride[i] = prod(max(size[j], 1) for j > i), as torch computes it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/encoded_tensor.hpp"
#include "sgt/io/pickle_writer.hpp"
#include "sgt/io/torch_archive_writer.hpp"

namespace sgt {

// The archive name torch.save gives a file: its base name without the last extension
// ("out/prompt.pt" -> "prompt"); "archive" (torch's name for an in-memory buffer) when that is
// empty.
inline std::string torch_archive_name(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::size_t dot = base.rfind('.');
  if (dot != std::string::npos) base.resize(dot);
  return base.empty() ? "archive" : base;
}

namespace detail {

inline const char* torch_storage_class(DType d) {
  switch (d) {
    case DType::F32:
      return "FloatStorage";
    case DType::BF16:
      return "BFloat16Storage";
    case DType::F16:
      return "HalfStorage";
  }
  throw Error("unknown dtype");
}

// Pickles tensors as CPython's pickler does for torch.save's reduce tuples: what it writes once
// (the rebuild function, 'storage', the storage class, 'cpu', OrderedDict) is memoized and
// fetched from the memo afterwards.
class TorchPickler {
 public:
  void tensor(const EncodedTensor& t, const std::string& key) {
    memo_or_write(rebuild_, [&] { p_.global("torch._utils", "_rebuild_tensor_v2"); });
    p_.mark();
    p_.mark();  // the persistent id
    memo_or_write(storage_word_, [&] { p_.unicode("storage"); });
    std::size_t& cls = storage_class_[static_cast<int>(t.dtype)];
    memo_or_write(cls, [&] { p_.global("torch", torch_storage_class(t.dtype)); });
    p_.unicode(key);
    p_.memoize();
    memo_or_write(cpu_, [&] { p_.unicode("cpu"); });
    p_.integer(t.numel());
    p_.tuple(5);
    p_.memoize();
    p_.binpersid();
    p_.integer(0);  // storage offset
    std::vector<std::uint64_t> stride(t.shape.size());
    std::uint64_t s = 1;
    for (std::size_t i = t.shape.size(); i-- > 0;) {
      stride[i] = s;
      s *= t.shape[i] ? t.shape[i] : 1;
    }
    int_tuple(t.shape);
    int_tuple(stride);
    p_.new_false();  // requires_grad
    memo_or_write(ordered_dict_, [&] { p_.global("collections", "OrderedDict"); });
    p_.empty_tuple();
    p_.reduce();
    p_.memoize();
    p_.tuple(6);
    p_.memoize();
    p_.reduce();
    p_.memoize();
  }

  PickleWriter& writer() { return p_; }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  template <class Write>
  void memo_or_write(std::size_t& index, Write write) {
    if (index != kNone) {
      p_.get(index);
      return;
    }
    write();
    index = p_.memoize();
  }

  void int_tuple(const std::vector<std::uint64_t>& v) {
    if (v.empty()) {
      p_.empty_tuple();  // the empty tuple is never memoized
      return;
    }
    p_.tuple_start(v.size());
    for (const std::uint64_t x : v) p_.integer(x);
    p_.tuple(v.size());
    p_.memoize();
  }

  PickleWriter p_;
  std::size_t rebuild_ = kNone, storage_word_ = kNone, cpu_ = kNone, ordered_dict_ = kNone;
  std::size_t storage_class_[3] = {kNone, kNone, kNone};
};

// The pickle (one tensor or a list) and the data records, as torch.save orders them.
inline std::vector<unsigned char> torch_save_archive(const std::vector<EncodedTensor>& tensors,
                                                     bool as_list,
                                                     const std::string& archive_name) {
  if (!as_list && tensors.size() != 1) throw Error("torch.save of one tensor needs exactly one");
  TorchPickler pickler;
  PickleWriter& p = pickler.writer();
  if (as_list) {
    p.empty_list();
    p.memoize();
    // CPython appends in batches of 1000: MARK items APPENDS, or item APPEND for a batch of one.
    constexpr std::size_t kBatch = 1000;
    for (std::size_t begin = 0; begin < tensors.size(); begin += kBatch) {
      const std::size_t end = std::min(tensors.size(), begin + kBatch);
      if (end - begin > 1) p.mark();
      for (std::size_t i = begin; i < end; ++i) pickler.tensor(tensors[i], std::to_string(i));
      if (end - begin > 1)
        p.appends();
      else
        p.append();
    }
  } else {
    pickler.tensor(tensors[0], "0");
  }
  p.stop();

  TorchArchiveWriter archive(archive_name);
  archive.add_record("data.pkl", p.bytes().data(), p.bytes().size());
  archive.add_record(".format_version", "1");
  archive.add_record(".storage_alignment", std::to_string(TorchArchiveWriter::kAlignment));
  archive.add_record("byteorder", "little");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const EncodedTensor& t = tensors[i];
    if (t.bytes.size() != checked_element_count(t.shape, t.dtype) * dtype_size(t.dtype))
      throw Error("tensor " + std::to_string(i) + ": byte count does not match its shape");
    archive.add_record("data/" + std::to_string(i), t.bytes.data(), t.bytes.size());
  }
  return archive.finish();
}

}  // namespace detail

// The bytes of `torch.save(tensor, f)` (archive_name: torch_archive_name(f) for a file, "archive"
// for an in-memory buffer such as io.BytesIO).
inline std::vector<unsigned char> torch_save_bytes(const EncodedTensor& tensor,
                                                   const std::string& archive_name = "archive") {
  return detail::torch_save_archive({tensor}, false, archive_name);
}

// The bytes of `torch.save([t0, t1, ...], f)`.
inline std::vector<unsigned char> torch_save_bytes(const std::vector<EncodedTensor>& tensors,
                                                   const std::string& archive_name = "archive") {
  return detail::torch_save_archive(tensors, true, archive_name);
}

// Writes `torch.save(tensor, path)` (or of a list), never leaving a partial file at `path`.
inline void write_torch_file(const std::string& path, const EncodedTensor& tensor) {
  std::vector<unsigned char> bytes;
  try {
    bytes = torch_save_bytes(tensor, torch_archive_name(path));
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  write_file_atomically(path, bytes.data(), bytes.size());
}
inline void write_torch_file(const std::string& path, const std::vector<EncodedTensor>& tensors) {
  std::vector<unsigned char> bytes;
  try {
    bytes = torch_save_bytes(tensors, torch_archive_name(path));
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace sgt
