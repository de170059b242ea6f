// The ZIP container torch.save writes (PyTorch's PyTorchStreamWriter over miniz), byte for byte:
//
//   - every record is stored (no compression) under one top-level folder `<archive>/`;
//   - each local header has zeroed CRC and sizes, the UTF-8 flag and (for a non-empty record) the
//     data-descriptor flag; its extra field "FB" + length + 'Z' padding puts the record's data at
//     a multiple of 64 bytes from the start of the file (so a reader can map tensors in place);
//   - a non-empty record is followed by a data descriptor (signature, CRC-32, sizes);
//   - finish() adds, as torch does at the end, `version` ("3\n") and `byteorder` ("little") when
//     absent, then `.data/serialization_id`, then the central directory, a ZIP64 end-of-central-
//     directory record and locator (miniz writes them whenever ZIP64 is enabled) and the classic
//     end record.
//
// The serialization id is torch's: 20 decimal digits of a combined hash of the record names, then
// 20 of a combined hash of the records' CRC-32s (c10::hash_combine). The name hashes are
// std::hash<std::string> combined in std::unordered_set iteration order, exactly torch's code; the
// result equals torch's where the standard library is libstdc++ (torch's Linux builds) and is a
// different, still deterministic, id elsewhere. No reader checks it.
//
// Archives of 4 GiB or more need ZIP64 local records; they are refused (sgt::Error) rather than
// written in a layout that was never compared with torch's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/io/crc32.hpp"

namespace sgt {

class TorchArchiveWriter {
 public:
  // What torch's reader expects its records' data to be aligned to (and what `.storage_alignment`
  // says).
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::uint64_t kSizeLimit = 0xffffffffu - (std::uint64_t(1) << 26);
  static constexpr std::size_t kMaxEntries = 65000;

  explicit TorchArchiveWriter(std::string archive_name) : prefix_(std::move(archive_name)) {
    if (prefix_.empty()) throw Error("torch archive: the archive name is empty");
    prefix_ += '/';
  }

  // Adds the record `<archive>/<name>`.
  void add_record(const std::string& name, const void* data, std::size_t size) {
    if (finished_) throw Error("torch archive: record added after finish()").at_key(name);
    if (name.empty() || written_.count(name))
      throw Error("torch archive: empty or repeated record name").at_key(name);
    if (size != 0 && data == nullptr) throw Error("torch archive: null record data").at_key(name);
    const std::string full = prefix_ + name;
    const std::uint64_t header_offset = out_.size();
    // The data starts after the 30-byte local header, the name and the 4-byte "FB" extra header.
    const std::uint64_t start = header_offset + 30 + full.size() + 4;
    const std::uint64_t padding = (kAlignment - start % kAlignment) % kAlignment;
    const std::uint64_t end = start + padding + size + (size ? 16 : 0);
    // From 0xFFFFFFFF on, miniz writes ZIP64 fields; kSizeLimit leaves room for what finish()
    // appends (three small records and the central directory).
    if (end >= kSizeLimit || entries_.size() >= kMaxEntries)
      throw Error("torch archive: 4 GiB or 65000 records or more (ZIP64 is not supported)")
          .at_key(name);
    if (full.size() > 0xffff) throw Error("torch archive: record name too long").at_key(name);

    const std::uint32_t crc = size ? crc32(data, size) : 0;
    // Bit 11: the name is UTF-8; bit 3: sizes and CRC follow in a data descriptor (miniz sets it
    // only when there is data to describe).
    const std::uint16_t flags = size ? 0x0808 : 0x0800;
    le(0x04034b50u, 4);
    le(0, 2);  // version needed (miniz writes 0)
    le(flags, 2);
    le(0, 2);  // stored
    le(0, 4);  // DOS time and date: 0
    le(0, 4);  // CRC (in the data descriptor)
    le(0, 4);  // compressed size
    le(0, 4);  // uncompressed size
    le(full.size(), 2);
    le(padding + 4, 2);
    out_.insert(out_.end(), full.begin(), full.end());
    out_.push_back('F');
    out_.push_back('B');
    le(padding, 2);
    out_.insert(out_.end(), padding, 'Z');
    const auto* p = static_cast<const unsigned char*>(data);
    if (size) out_.insert(out_.end(), p, p + size);
    if (size) {
      le(0x08074b50u, 4);
      le(crc, 4);
      le(size, 4);
      le(size, 4);
      // torch folds the CRC of every data descriptor it writes into the serialization id.
      crc_hash_ = hash_combine(crc_hash_, crc);
    }
    names_.push_back(name);
    entries_.push_back({full, header_offset, crc, size, flags});
    written_.insert(name);
  }

  void add_record(const std::string& name, const std::string& text) {
    add_record(name, text.data(), text.size());
  }

  bool has_record(const std::string& name) const { return written_.count(name) != 0; }

  // Ends the archive (see the header comment) and returns its bytes; the writer is then spent.
  std::vector<unsigned char> finish() {
    if (finished_) throw Error("torch archive: finish() called twice");
    if (!has_record(".data/version") && !has_record("version")) add_record("version", "3\n");
    if (!has_record("byteorder")) add_record("byteorder", "little");
    add_record(".data/serialization_id", serialization_id());
    finished_ = true;

    const std::uint64_t cd_offset = out_.size();
    for (const Entry& e : entries_) {
      le(0x02014b50u, 4);
      le(0, 2);  // version made by
      le(0, 2);  // version needed
      le(e.flags, 2);
      le(0, 2);  // stored
      le(0, 4);  // time, date
      le(e.crc, 4);
      le(e.size, 4);
      le(e.size, 4);
      le(e.name.size(), 2);
      le(0, 2);  // extra
      le(0, 2);  // comment
      le(0, 2);  // disk
      le(0, 2);  // internal attributes
      le(0, 4);  // external attributes
      le(e.header_offset, 4);
      out_.insert(out_.end(), e.name.begin(), e.name.end());
    }
    const std::uint64_t cd_size = out_.size() - cd_offset;
    const std::uint64_t eocd64_offset = out_.size();
    le(0x06064b50u, 4);  // ZIP64 end of central directory
    le(44, 8);           // size of the rest of this record
    le(0x031e, 2);       // made by: Unix, 3.0
    le(0x002d, 2);       // needed: 4.5
    le(0, 4);
    le(0, 4);
    le(entries_.size(), 8);
    le(entries_.size(), 8);
    le(cd_size, 8);
    le(cd_offset, 8);
    le(0x07064b50u, 4);  // ZIP64 locator
    le(0, 4);
    le(eocd64_offset, 8);
    le(1, 4);
    le(0x06054b50u, 4);  // end of central directory
    le(0, 2);
    le(0, 2);
    le(entries_.size(), 2);
    le(entries_.size(), 2);
    le(cd_size, 4);
    le(cd_offset, 4);
    le(0, 2);  // comment
    return std::move(out_);
  }

 private:
  struct Entry {
    std::string name;
    std::uint64_t header_offset;
    std::uint32_t crc;
    std::uint64_t size;
    std::uint16_t flags;
  };

  // c10::hash_combine.
  static std::uint64_t hash_combine(std::uint64_t seed, std::uint64_t value) noexcept {
    return seed ^ (value + 0x9e3779b9u + (seed << 6) + (seed >> 2));
  }

  std::string serialization_id() const {
    // torch keeps its record names in a std::unordered_set, inserted in write order, and combines
    // their std::hash values in the set's iteration order.
    std::unordered_set<std::string> names;
    for (const std::string& n : names_) names.insert(n);
    std::uint64_t name_hash = 0;
    for (const std::string& n : names)
      name_hash = hash_combine(name_hash, std::hash<std::string>{}(n));
    char buf[48];
    std::snprintf(buf, sizeof buf, "%020llu%020llu", static_cast<unsigned long long>(name_hash),
                  static_cast<unsigned long long>(crc_hash_));
    return buf;
  }

  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<unsigned char>(v >> (8 * i)));
  }

  std::string prefix_;
  std::vector<unsigned char> out_;
  std::vector<Entry> entries_;
  std::vector<std::string> names_;
  std::unordered_set<std::string> written_;
  std::uint64_t crc_hash_ = 0;
  bool finished_ = false;
};

}  // namespace sgt
