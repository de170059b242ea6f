// The values a chat template computes with, and the text that remembers where it came from.
//
// Chat templates are Jinja2 programs evaluated by Python, so every value here follows Python's
// rules: truthiness, `str()` and `repr()`, `==` across int/float/bool, and `json.dumps` for
// `tojson`. The one addition is provenance: a String is UTF-8 bytes plus one flag per byte that
// says whether the byte came from a message's content ("protected" text). Every operation that
// copies bytes copies their flags; bytes the template itself writes are never protected. That
// is how the renderer can say which output bytes are the user's words (the noise mask needs it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/text/jinja/limits.hpp"

namespace sgt::text::jinja {

// UTF-8 text with a protection flag per byte (flags.size() == text.size(), 0 or 1).
struct PString {
  std::string text;
  std::string flags;

  PString() = default;
  explicit PString(std::string plain) : text(std::move(plain)), flags(text.size(), '\0') {}
  PString(std::string t, bool is_protected)
      : text(std::move(t)), flags(text.size(), is_protected ? '\1' : '\0') {}

  std::size_t size() const noexcept { return text.size(); }
  bool empty() const noexcept { return text.empty(); }
  void append(const PString& o) {
    text += o.text;
    flags += o.flags;
  }
  void append_plain(const std::string& s) {
    text += s;
    flags.append(s.size(), '\0');
  }
  void append_byte(char c, char flag) {
    text.push_back(c);
    flags.push_back(flag);
  }
  PString substr(std::size_t pos, std::size_t n = std::string::npos) const {
    PString r;
    r.text = text.substr(pos, n);
    r.flags = flags.substr(pos, n);
    return r;
  }
};

// Thrown by the interpreter and caught at render(), which adds the template's name and the line
// and column of the node being evaluated.
struct TemplateError : Error {
  using Error::Error;
};

// A size in an error message: whole MiB as "16 MiB", anything else in bytes.
inline std::string size_text(std::size_t bytes) {
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// What one render has spent of its Limits (limits.hpp). Every operation that visits or builds
// something charges it first, so that a render stops before the work is done, not after.
class Budget {
 public:
  explicit Budget(const Limits& limits = Limits{}) : limits_(limits) {}
  const Limits& limits() const noexcept { return limits_; }
  std::size_t used() const noexcept { return work_; }

  void charge(std::size_t units) {
    if (units > limits_.max_work_units - work_) too_expensive();
    work_ += units;
  }
  // `n` items placed in a list or dict the render builds.
  void charge_items(std::size_t n) {
    charge(n > static_cast<std::size_t>(-1) / kItemWorkUnits ? static_cast<std::size_t>(-1)
                                                             : n * kItemWorkUnits);
  }
  void check_items(std::size_t n) const {
    if (n > limits_.max_list_items)
      throw TemplateError("list longer than " + std::to_string(limits_.max_list_items) + " items");
  }
  // A new list of `n` items: refused or charged before it is built.
  void build_items(std::size_t n) {
    check_items(n);
    charge_items(n);
  }
  void check_bytes(std::size_t n) const {
    if (n > limits_.max_output_bytes)
      throw TemplateError("string larger than " + size_text(limits_.max_output_bytes));
  }
  // `out` is about to grow by `added` bytes: refused or charged before the bytes are built.
  void grow(const std::string& out, std::size_t added) {
    if (added > limits_.max_output_bytes || out.size() > limits_.max_output_bytes - added)
      check_bytes(static_cast<std::size_t>(-1));
    charge(added);
  }

 private:
  [[noreturn]] void too_expensive() {
    work_ = limits_.max_work_units;
    throw TemplateError("render too expensive (more than " +
                        std::to_string(limits_.max_work_units) +
                        " work units: expressions evaluated, items visited, bytes built)");
  }

  Limits limits_;
  std::size_t work_ = 0;
};

struct Value;
using List = std::vector<Value>;
// Python dicts keep insertion order; templates' dicts are small, so a vector with linear lookup.
using Dict = std::vector<std::pair<std::string, Value>>;

class Interpreter;
struct CallArgs;
using NativeFunction = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kFunction
  };
  Kind kind = Kind::kUndefined;
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  bool is_tuple = false;  // a list written as a tuple: repr uses ( )
  // A list that Python would hold as a one-shot generator (what map, select, reject,
  // selectattr, rejectattr, unique, items and reverse return): always truthy, iterable once,
  // no len(), not JSON-serializable, not printable. The flag is shared by copies.
  std::shared_ptr<bool> generator_consumed;
  bool markup = false;               // a string marked |safe: `+` HTML-escapes a plain operand
  std::shared_ptr<const PString> s;  // kString
  // kList; for a kFunction that is a bound method (`x.count`), its receiver as the one item, so
  // that the receiver is counted in `depth` and freed like any container's item.
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;          // kDict, kNamespace
  std::shared_ptr<NativeFunction> fn;  // kFunction (null for a bound method)
  std::string name;                    // kUndefined: what was looked up; kFunction: its name
  // Container nesting: 1 + the deepest item, for lists, dicts, namespaces and bound methods. A
  // namespace counts what it holds when it is made and when an attribute is set; nothing that
  // recurses over values enters a namespace (it prints as <Namespace>, == is identity, tojson
  // refuses it), so only freeing does, and freeing does not recurse (below).
  std::uint32_t depth = 0;

  Value() = default;
  Value(const Value&) = default;
  Value(Value&&) noexcept = default;
  Value& operator=(const Value&) = default;
  Value& operator=(Value&&) noexcept = default;
  // Namespaces may nest without bound (a chain of a million is 160 bytes of template), so the
  // last owner of a namespace frees what it holds with a work list instead of recursing, which
  // would overflow the stack. Lists, dicts and bound methods free their items recursively: their
  // depth is exact (they cannot change) and at most kMaxValueDepth, and a namespace among their
  // items switches to the work list.
  ~Value() {
    if (kind == Kind::kNamespace && dict && dict.use_count() == 1) free_items();
  }

  static Value undefined(std::string what = {}) {
    Value v;
    v.name = std::move(what);
    return v;
  }
  static Value none() {
    Value v;
    v.kind = Kind::kNone;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.kind = Kind::kBool;
    v.b = x;
    return v;
  }
  static Value integer(std::int64_t x) {
    Value v;
    v.kind = Kind::kInt;
    v.i = x;
    return v;
  }
  static Value floating(double x) {
    Value v;
    v.kind = Kind::kFloat;
    v.f = x;
    return v;
  }
  static Value string(PString x) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::make_shared<const PString>(std::move(x));
    return v;
  }
  static Value plain(std::string x) { return string(PString(std::move(x))); }
  // Containers may nest kMaxValueDepth deep: printing, comparing and serializing recurse.
  static constexpr std::uint32_t kMaxValueDepth = 128;
  template <typename Items>
  static std::uint32_t depth_of(const Items& items) {
    std::uint32_t d = 0;
    for (const auto& it : items) d = std::max(d, item_value(it).depth);
    if (d + 1 > kMaxValueDepth) throw TemplateError("containers nested deeper than 128 levels");
    return d + 1;
  }
  static const Value& item_value(const Value& v) { return v; }
  static const Value& item_value(const std::pair<std::string, Value>& kv) { return kv.second; }
  static Value make_list(List x = {}) {
    Value v;
    v.depth = depth_of(x);
    v.kind = Kind::kList;
    v.list = std::make_shared<List>(std::move(x));
    return v;
  }
  static Value make_dict(Dict x = {}) {
    Value v;
    v.depth = depth_of(x);
    v.kind = Kind::kDict;
    v.dict = std::make_shared<Dict>(std::move(x));
    return v;
  }
  static Value function(std::string name, NativeFunction f) {
    Value v;
    v.kind = Kind::kFunction;
    v.name = std::move(name);
    v.fn = std::make_shared<NativeFunction>(std::move(f));
    return v;
  }

  // A bound method: calling it calls method `name` of `receiver`.
  static Value bound_method(std::string name, const Value& receiver) {
    Value v;
    v.kind = Kind::kFunction;
    v.name = std::move(name);
    List items{receiver};
    v.depth = depth_of(items);
    v.list = std::make_shared<List>(std::move(items));
    return v;
  }
  bool is_bound_method() const noexcept { return kind == Kind::kFunction && list != nullptr; }
  const Value& receiver() const { return (*list)[0]; }

  bool is_undefined() const noexcept { return kind == Kind::kUndefined; }
  bool is_none() const noexcept { return kind == Kind::kNone; }
  bool is_string() const noexcept { return kind == Kind::kString; }
  bool is_list() const noexcept { return kind == Kind::kList; }
  bool is_dict() const noexcept { return kind == Kind::kDict; }
  bool is_number() const noexcept {
    return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool;
  }
  const std::string& str() const { return s->text; }

  // A key of a dict or namespace, or nullptr.
  const Value* find(const std::string& key) const {
    if (!dict) return nullptr;
    for (const auto& kv : *dict)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }

 private:
  bool holds_container() const noexcept { return list || dict; }
  // Moves every item that holds a container out of the containers this value solely owns, then
  // releases them; items still shared elsewhere are only released (their last owner frees them).
  void free_items() noexcept {
    List pending;
    auto take = [&pending](Value& v) {
      if (v.list && v.list.use_count() == 1) {
        for (Value& item : *v.list)
          if (item.holds_container()) pending.push_back(std::move(item));
        v.list.reset();
      }
      if (v.dict && v.dict.use_count() == 1) {
        for (auto& kv : *v.dict)
          if (kv.second.holds_container()) pending.push_back(std::move(kv.second));
        v.dict.reset();
      }
    };
    take(*this);
    while (!pending.empty()) {
      Value v = std::move(pending.back());
      pending.pop_back();
      take(v);
    }
  }
};

// Call arguments of a filter, test, method or global: positional, then keyword.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  std::string what;  // "filter 'join'", "method 'split'": names the callee in errors

  // Positional index `index` or keyword `name`, else `fallback`.
  Value get(std::size_t index, const char* kw, Value fallback = Value::undefined()) const {
    for (const auto& kv : keyword)
      if (kv.first == kw) return kv.second;
    if (index < positional.size()) return positional[index];
    return fallback;
  }
  bool has(std::size_t index, const char* kw) const {
    for (const auto& kv : keyword)
      if (kv.first == kw) return true;
    return index < positional.size();
  }
};

inline const char* type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "undefined";
    case Value::Kind::kNone:
      return "none";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kList:
      return v.generator_consumed ? "generator" : v.is_tuple ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "namespace";
    case Value::Kind::kFunction:
      return "function";
  }
  return "value";
}

// Error messages quote pieces of the template or of the chat; keep them short.
inline std::string abbreviate(std::string s, std::size_t max_chars = 60) {
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

// ---- UTF-8 -------------------------------------------------------------------------------------

namespace utf8 {

inline std::size_t sequence_length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[pos] (valid UTF-8 assumed); sets *len.
inline std::uint32_t decode(const std::string& s, std::size_t pos, std::size_t* len) {
  const auto c = static_cast<unsigned char>(s[pos]);
  std::size_t n = sequence_length(c);
  if (pos + n > s.size()) n = 1;
  *len = n;
  if (n == 1) return c;
  std::uint32_t cp = c & (0x7F >> n);
  for (std::size_t k = 1; k < n; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  return cp;
}

inline void encode(std::uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Byte offset of every code point, plus the end: Python indexes strings by code point.
inline std::vector<std::size_t> boundaries(const std::string& s) {
  std::vector<std::size_t> b;
  b.reserve(s.size() + 1);
  for (std::size_t p = 0; p < s.size();) {
    b.push_back(p);
    p += std::max<std::size_t>(
        1, std::min(sequence_length(static_cast<unsigned char>(s[p])), s.size() - p));
  }
  b.push_back(s.size());
  return b;
}

// The number of code points (what boundaries() would find), without building the offsets.
inline std::size_t length(const std::string& s) {
  std::size_t n = 0;
  for (std::size_t p = 0; p < s.size(); ++n)
    p += std::max<std::size_t>(
        1, std::min(sequence_length(static_cast<unsigned char>(s[p])), s.size() - p));
  return n;
}

// Byte offset of code point `index` (0 <= index <= length), walking only as far as it.
inline std::size_t offset_of(const std::string& s, std::size_t index) {
  std::size_t p = 0;
  for (std::size_t k = 0; k < index && p < s.size(); ++k)
    p += std::max<std::size_t>(
        1, std::min(sequence_length(static_cast<unsigned char>(s[p])), s.size() - p));
  return p;
}

// Python's str.isspace() set (what str.strip() and str.split() with no argument remove).
inline bool is_python_space(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

inline bool is_valid(const std::string& s) {
  for (std::size_t p = 0; p < s.size();) {
    const auto c = static_cast<unsigned char>(s[p]);
    std::size_t n = 0;
    std::uint32_t min = 0;
    if (c < 0x80) {
      ++p;
      continue;
    }
    if ((c >> 5) == 0x6) {
      n = 2;
      min = 0x80;
    } else if ((c >> 4) == 0xE) {
      n = 3;
      min = 0x800;
    } else if ((c >> 3) == 0x1E) {
      n = 4;
      min = 0x10000;
    } else
      return false;
    if (p + n > s.size()) return false;
    std::uint32_t cp = c & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[p + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n;
  }
  return true;
}

}  // namespace utf8

// Substring search in time linear in the text and the needle (Knuth-Morris-Pratt), whatever the
// input: std::string::find tries the needle at every position, n * m steps in the worst case
// ("aaa...ab" in "aaa...a").
class TextSearcher {
 public:
  explicit TextSearcher(const std::string& needle) : needle_(needle) {
    if (needle_.size() < 2) return;
    fail_.assign(needle_.size(), 0);
    std::size_t k = 0;
    for (std::size_t i = 1; i < needle_.size(); ++i) {
      while (k > 0 && needle_[i] != needle_[k]) k = fail_[k - 1];
      if (needle_[i] == needle_[k]) ++k;
      fail_[i] = k;
    }
  }
  // The first occurrence at or after `from`, or npos.
  std::size_t find(const std::string& text, std::size_t from = 0) const {
    if (needle_.size() < 2) return text.find(needle_, from);  // memchr: linear already
    std::size_t k = 0;
    for (std::size_t i = from; i < text.size(); ++i) {
      while (k > 0 && text[i] != needle_[k]) k = fail_[k - 1];
      if (text[i] == needle_[k] && ++k == needle_.size()) return i + 1 - needle_.size();
    }
    return std::string::npos;
  }
  // The last occurrence, or npos.
  std::size_t rfind(const std::string& text) const {
    if (needle_.size() < 2) return text.rfind(needle_);
    std::size_t last = std::string::npos, k = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      while (k > 0 && text[i] != needle_[k]) k = fail_[k - 1];
      if (text[i] == needle_[k] && ++k == needle_.size()) {
        last = i + 1 - needle_.size();
        k = fail_[k - 1];
      }
    }
    return last;
  }

 private:
  std::string needle_;
  std::vector<std::size_t> fail_;
};

// ---- Python's str(), repr() and json.dumps()
// -----------------------------------------------------

// float.__repr__: the shortest decimal that reads back to the same double, in Python's layout
// (fixed notation for exponents in [-4, 16), else d.ddde+XX; always a '.0' on whole numbers).
inline std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  // buf = [-]d.ddde[+-]XX
  std::string s = buf;
  const bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  const std::size_t e = s.find('e');
  const int exponent = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (std::size_t k = 0; k < e; ++k)
    if (s[k] != '.') digits.push_back(s[k]);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<std::size_t>(exponent) + 1 >= digits.size()) {
      out =
          digits + std::string(static_cast<std::size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exponent) + 1) + "." +
            digits.substr(static_cast<std::size_t>(exponent) + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += eb;
  }
  return negative ? "-" + out : out;
}

// Appends `t` with every byte flagged `flag`, refused or charged first.
inline void put_checked(PString& out, const std::string& t, char flag, Budget& b) {
  b.grow(out.text, t.size());
  out.text += t;
  out.flags.append(t.size(), flag);
}
inline void put_plain(PString& out, const std::string& t, Budget& b) {
  put_checked(out, t, '\0', b);
}

inline void repr_into(const Value& v, PString& out, Budget& b);

// Python's repr() of a str: quotes chosen as Python does, escapes inherit the byte's flag.
inline void repr_string_into(const PString& s, PString& out, Budget& b) {
  const bool has_single = s.text.find('\'') != std::string::npos;
  const bool has_double = s.text.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  b.grow(out.text, s.size() + 2);  // the bytes and quotes; an escape's extra bytes are added below
  out.append_plain(std::string(1, quote));
  for (std::size_t k = 0; k < s.text.size(); ++k) {
    const char c = s.text[k];
    const char flag = s.flags[k];
    auto put = [&](const std::string& t) {
      b.grow(out.text, t.size() - 1);
      out.text += t;
      out.flags.append(t.size(), flag);
    };
    if (c == quote || c == '\\')
      put(std::string("\\") + c);
    else if (c == '\n')
      put("\\n");
    else if (c == '\r')
      put("\\r");
    else if (c == '\t')
      put("\\t");
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      char e[8];
      std::snprintf(e, sizeof e, "\\x%02x", static_cast<unsigned char>(c));
      put(e);
    } else {
      out.append_byte(c, flag);
    }
  }
  out.append_plain(std::string(1, quote));
}

inline void repr_into(const Value& v, PString& out, Budget& b) {
  if (v.generator_consumed)
    throw TemplateError(
        "printing a generator (the result of map/select/... without |list) is not supported");
  b.charge(1);
  switch (v.kind) {
    case Value::Kind::kString:
      repr_string_into(*v.s, out, b);
      return;
    case Value::Kind::kList: {
      put_plain(out, v.is_tuple ? "(" : "[", b);
      for (std::size_t k = 0; k < v.list->size(); ++k) {
        if (k) put_plain(out, ", ", b);
        repr_into((*v.list)[k], out, b);
      }
      if (v.is_tuple && v.list->size() == 1) put_plain(out, ",", b);
      put_plain(out, v.is_tuple ? ")" : "]", b);
      return;
    }
    case Value::Kind::kDict: {
      put_plain(out, "{", b);
      bool first = true;
      for (const auto& kv : *v.dict) {
        if (!first) put_plain(out, ", ", b);
        first = false;
        repr_string_into(PString(kv.first), out, b);
        put_plain(out, ": ", b);
        repr_into(kv.second, out, b);
      }
      put_plain(out, "}", b);
      return;
    }
    default:
      break;
  }
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return;  // str(Undefined) is empty
    case Value::Kind::kNone:
      put_plain(out, "None", b);
      return;
    case Value::Kind::kBool:
      put_plain(out, v.b ? "True" : "False", b);
      return;
    case Value::Kind::kInt:
      put_plain(out, std::to_string(v.i), b);
      return;
    case Value::Kind::kFloat:
      put_plain(out, python_float_repr(v.f), b);
      return;
    case Value::Kind::kNamespace:
      put_plain(out, "<Namespace>", b);
      return;
    case Value::Kind::kFunction:
      put_plain(out, "<function " + v.name + ">", b);
      return;
    default:
      return;
  }
}

// Python's str(): strings as they are, everything else as repr().
inline PString to_pstring(const Value& v, Budget& b) {
  if (v.kind == Value::Kind::kString) return *v.s;
  PString out;
  repr_into(v, out, b);
  return out;
}

// Python truthiness (Undefined is falsy).
inline bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.b;
    case Value::Kind::kInt:
      return v.i != 0;
    case Value::Kind::kFloat:
      return v.f != 0;
    case Value::Kind::kString:
      return !v.s->empty();
    case Value::Kind::kList:
      return v.generator_consumed ? true : !v.list->empty();
    case Value::Kind::kDict:
      return !v.dict->empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      return true;
  }
  return false;
}

inline double as_double(const Value& v) {
  return v.kind == Value::Kind::kFloat  ? v.f
         : v.kind == Value::Kind::kBool ? (v.b ? 1.0 : 0.0)
                                        : static_cast<double>(v.i);
}

// Python ==: deep, with True == 1 == 1.0; Undefined equals only Undefined. Charged per value
// and per byte compared: two lists of 100000 references to one 100000-item list are 10^10 items.
inline bool equals(const Value& a, const Value& b, Budget& budget) {
  budget.charge(1);
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::Kind::kFloat && b.kind != Value::Kind::kFloat) {
      const std::int64_t x = a.kind == Value::Kind::kBool ? a.b : a.i;
      const std::int64_t y = b.kind == Value::Kind::kBool ? b.b : b.i;
      return x == y;
    }
    return as_double(a) == as_double(b);
  }
  if (a.kind != b.kind) return false;
  if (a.generator_consumed || b.generator_consumed) return a.list == b.list;  // identity
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      if (a.s->size() != b.s->size()) return false;
      budget.charge(a.s->size());
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.list->size() != b.list->size()) return false;
      for (std::size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k], budget)) return false;
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& kv : *a.dict) {
        budget.charge(b.dict->size());  // the key's linear search
        const Value* o = b.find(kv.first);
        if (!o || !equals(kv.second, *o, budget)) return false;
      }
      return true;
    }
    default:
      return a.dict == b.dict && a.fn == b.fn && a.list == b.list;  // identity
  }
}

struct JsonDumpOptions {
  std::string indent;  // used when has_indent
  bool has_indent = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

inline void json_string_into(const PString& s, PString& out, bool ensure_ascii, Budget& b) {
  b.grow(out.text, s.size() + 2);  // the bytes and quotes; an escape's extra bytes are added below
  out.append_plain("\"");
  for (std::size_t k = 0; k < s.text.size();) {
    const char c = s.text[k];
    const char flag = s.flags[k];
    auto put = [&](const std::string& t, std::size_t replaced) {
      if (t.size() > replaced) b.grow(out.text, t.size() - replaced);
      out.text += t;
      out.flags.append(t.size(), flag);
    };
    const auto u = static_cast<unsigned char>(c);
    if (c == '"')
      put("\\\"", 1);
    else if (c == '\\')
      put("\\\\", 1);
    else if (c == '\n')
      put("\\n", 1);
    else if (c == '\r')
      put("\\r", 1);
    else if (c == '\t')
      put("\\t", 1);
    else if (c == '\b')
      put("\\b", 1);
    else if (c == '\f')
      put("\\f", 1);
    else if (u < 0x20 || (ensure_ascii && u == 0x7F)) {
      char e[8];
      std::snprintf(e, sizeof e, "\\u%04x", u);
      put(e, 1);
    } else if (ensure_ascii && u >= 0x80) {
      std::size_t len = 1;
      std::uint32_t cp = utf8::decode(s.text, k, &len);
      char e[16];
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else {
        std::snprintf(e, sizeof e, "\\u%04x", cp);
      }
      put(e, len);
      k += len;
      continue;
    } else {
      out.append_byte(c, flag);
    }
    ++k;
  }
  out.append_plain("\"");
}

// Python's json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...). Every
// piece is refused or charged before it is appended: an indent string repeated at each level can
// be far larger than the value.
inline void json_dump_into(const Value& v, PString& out, const JsonDumpOptions& o, int depth,
                           Budget& b) {
  if (v.generator_consumed)
    throw TemplateError("tojson: object of type generator is not JSON serializable");
  b.charge(1);
  auto newline = [&](int d) {
    put_plain(out, "\n", b);
    for (int k = 0; k < d; ++k) put_plain(out, o.indent, b);
  };
  switch (v.kind) {
    case Value::Kind::kNone:
      put_plain(out, "null", b);
      return;
    case Value::Kind::kBool:
      put_plain(out, v.b ? "true" : "false", b);
      return;
    case Value::Kind::kInt:
      put_plain(out, std::to_string(v.i), b);
      return;
    case Value::Kind::kFloat:
      put_plain(out,
                std::isnan(v.f)   ? "NaN"
                : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity")
                                  : python_float_repr(v.f),
                b);
      return;
    case Value::Kind::kString:
      json_string_into(*v.s, out, o.ensure_ascii, b);
      return;
    case Value::Kind::kList: {
      if (v.list->empty()) {
        put_plain(out, "[]", b);
        return;
      }
      put_plain(out, "[", b);
      for (std::size_t k = 0; k < v.list->size(); ++k) {
        if (k) put_plain(out, o.item_separator, b);
        if (o.has_indent) newline(depth + 1);
        json_dump_into((*v.list)[k], out, o, depth + 1, b);
      }
      if (o.has_indent) newline(depth);
      put_plain(out, "]", b);
      return;
    }
    case Value::Kind::kDict: {
      if (v.dict->empty()) {
        put_plain(out, "{}", b);
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      b.charge(v.dict->size());
      for (const auto& kv : *v.dict) items.push_back(&kv);
      if (o.sort_keys) {
        b.charge(v.dict->size() * 32);  // n log n comparisons, for the dicts a template can hold
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* x, const auto* y) { return x->first < y->first; });
      }
      put_plain(out, "{", b);
      bool first = true;
      for (const auto* kv : items) {
        if (!first) put_plain(out, o.item_separator, b);
        first = false;
        if (o.has_indent) newline(depth + 1);
        json_string_into(PString(kv->first), out, o.ensure_ascii, b);
        put_plain(out, o.key_separator, b);
        json_dump_into(kv->second, out, o, depth + 1, b);
      }
      if (o.has_indent) newline(depth);
      put_plain(out, "}", b);
      return;
    }
    default:
      throw TemplateError(std::string("tojson: object of type ") + type_name(v) +
                          " is not JSON serializable");
  }
}

}  // namespace sgt::text::jinja
