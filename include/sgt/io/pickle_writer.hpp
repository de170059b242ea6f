// The few opcodes of Python's pickle protocol 2 that torch.save's `data.pkl` uses, emitted exactly
// as CPython's pickler emits them (the smallest integer opcode, BINPUT/LONG_BINPUT for memo
// indices below/above 256), so a pickle written here is byte-identical to Python's for the same
// object graph. The caller decides what is memoized, as the pickler would: every tuple, global,
// string and reduce result is put in the memo when first written, and written again as a memo get.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"

namespace sgt {

class PickleWriter {
 public:
  PickleWriter() {
    op(0x80);  // PROTO 2
    byte(2);
  }

  void mark() { op('('); }
  void stop() { op('.'); }
  void empty_list() { op(']'); }
  void empty_tuple() { op(')'); }
  void appends() { op('e'); }
  void append() { op('a'); }
  void reduce() { op('R'); }
  void new_false() { op(0x89); }
  void binpersid() { op('Q'); }
  // TUPLE1..3 for up to three items on the stack, else TUPLE back to the mark (as Python does).
  void tuple(std::size_t items) {
    if (items == 0) throw Error("pickle: an empty tuple is empty_tuple(), not tuple(0)");
    if (items <= 3)
      op(static_cast<unsigned char>(0x85 + items - 1));  // TUPLE1 TUPLE2 TUPLE3
    else
      op('t');
  }
  // A tuple of more than three items starts with a mark.
  void tuple_start(std::size_t items) {
    if (items > 3) mark();
  }

  void global(const std::string& module, const std::string& name) {
    op('c');
    out_.insert(out_.end(), module.begin(), module.end());
    byte('\n');
    out_.insert(out_.end(), name.begin(), name.end());
    byte('\n');
  }

  void unicode(const std::string& utf8) {
    if (utf8.size() > 0xffffffffu) throw Error("pickle: string too long");
    op('X');
    le(utf8.size(), 4);
    out_.insert(out_.end(), utf8.begin(), utf8.end());
  }

  // A non-negative int: BININT1, BININT2, BININT, or LONG1 beyond 2^31 - 1.
  void integer(std::uint64_t v) {
    if (v <= 0xff) {
      op('K'), byte(static_cast<unsigned char>(v));
    } else if (v <= 0xffff) {
      op('M'), le(v, 2);
    } else if (v <= 0x7fffffff) {
      op('J'), le(v, 4);
    } else {
      // encode_long: two's complement, little-endian, bit_length / 8 + 1 bytes.
      std::size_t bits = 0;
      for (std::uint64_t x = v; x; x >>= 1) ++bits;
      const std::size_t n = bits / 8 + 1;
      op(0x8a), byte(static_cast<unsigned char>(n));
      for (std::size_t i = 0; i < n; ++i)
        byte(i < 8 ? static_cast<unsigned char>(v >> (8 * i)) : 0);
    }
  }

  // Puts the top of the stack in the memo; returns its index for get().
  std::size_t memoize() {
    const std::size_t index = memo_size_++;
    if (index < 256) {
      op('q'), byte(static_cast<unsigned char>(index));
    } else {
      op('r'), le(index, 4);
    }
    return index;
  }
  void get(std::size_t index) {
    if (index < 256) {
      op('h'), byte(static_cast<unsigned char>(index));
    } else {
      op('j'), le(index, 4);
    }
  }

  const std::vector<unsigned char>& bytes() const noexcept { return out_; }

 private:
  void op(unsigned char c) { out_.push_back(c); }
  void byte(unsigned char c) { out_.push_back(c); }
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<unsigned char>(v >> (8 * i)));
  }

  std::vector<unsigned char> out_;
  std::size_t memo_size_ = 0;
};

}  // namespace sgt
