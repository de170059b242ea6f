// Jinja2's builtins, each a function found by name in a table: the globals (range, namespace,
// dict, raise_exception, strftime_now), the filters, the tests, and the methods of str, dict and
// list. The interpreter looks every filter, test and method up here, so a builtin is one function
// and one row of its table, and a name no table holds is reported by the interpreter.
//
// The builtins call the evaluator's private helpers (iterate, charge, getitem, ...) and the
// evaluator calls the tables, so each needs the other: interpreter.hpp declares the tables and
// includes this file at its end, and this file includes interpreter.hpp, so that either header
// may be included first.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sgt/text/jinja/interpreter.hpp"
#include "sgt/text/jinja/value.hpp"

namespace sgt::text::jinja {

// ---- string operations that keep provenance
// ------------------------------------------------------

namespace strops {

inline bool in_chars(std::uint32_t cp, const std::vector<std::uint32_t>* chars) {
  if (!chars) return utf8::is_python_space(cp);
  return std::find(chars->begin(), chars->end(), cp) != chars->end();
}

inline std::vector<std::uint32_t> code_points(const std::string& s) {
  std::vector<std::uint32_t> cps;
  for (std::size_t p = 0; p < s.size();) {
    std::size_t n = 1;
    cps.push_back(utf8::decode(s, p, &n));
    p += n;
  }
  return cps;
}

// str.strip / lstrip / rstrip, with Python's whitespace or a set of characters.
inline PString strip(const PString& s, bool left, bool right,
                     const std::vector<std::uint32_t>* chars = nullptr) {
  const auto b = utf8::boundaries(s.text);
  std::size_t first = 0, last = b.size() - 1;  // code point indices [first, last)
  auto cp_at = [&](std::size_t k) {
    std::size_t n = 1;
    return utf8::decode(s.text, b[k], &n);
  };
  if (left)
    while (first < last && in_chars(cp_at(first), chars)) ++first;
  if (right)
    while (last > first && in_chars(cp_at(last - 1), chars)) --last;
  return s.substr(b[first], b[last] - b[first]);
}

// Each part is counted against the list limit and charged before it is made: splitting 16 MiB of
// separators would otherwise make 16 million strings first.
inline void add_part(std::vector<PString>& parts, PString part, Budget& b) {
  b.check_items(parts.size() + 1);
  b.charge_items(1);
  b.charge(part.size());
  parts.push_back(std::move(part));
}

inline std::vector<PString> split(const PString& s, const PString* sep, std::int64_t maxsplit,
                                  Budget& b) {
  std::vector<PString> parts;
  b.charge(s.size());
  if (sep) {
    if (sep->empty()) throw TemplateError("split: empty separator");
    const TextSearcher searcher(sep->text);
    std::size_t start = 0;
    while (maxsplit != 0) {
      const std::size_t hit = searcher.find(s.text, start);
      if (hit == std::string::npos) break;
      add_part(parts, s.substr(start, hit - start), b);
      start = hit + sep->size();
      if (maxsplit > 0) --maxsplit;
    }
    add_part(parts, s.substr(start), b);
    return parts;
  }
  // Runs of whitespace separate; leading/trailing whitespace gives no empty part.
  b.charge_items(s.size() / 2);  // the offsets: 8 bytes per code point
  const auto bounds = utf8::boundaries(s.text);
  std::size_t k = 0;
  const std::size_t n = bounds.size() - 1;
  auto space = [&](std::size_t i) {
    std::size_t len = 1;
    return utf8::is_python_space(utf8::decode(s.text, bounds[i], &len));
  };
  while (k < n) {
    while (k < n && space(k)) ++k;
    if (k == n) break;
    if (maxsplit == 0) {
      // the rest, with trailing whitespace removed
      std::size_t end = n;
      while (end > k && space(end - 1)) --end;
      add_part(parts, s.substr(bounds[k], bounds[end] - bounds[k]), b);
      break;
    }
    const std::size_t start = k;
    while (k < n && !space(k)) ++k;
    add_part(parts, s.substr(bounds[start], bounds[k] - bounds[start]), b);
    if (maxsplit > 0) --maxsplit;
  }
  return parts;
}

// str.replace: the result's size is known (or bounded) before it is built, and checked first.
inline PString replace(const PString& s, const PString& old, const PString& repl,
                       std::int64_t count, Budget& b) {
  const std::size_t max = b.limits().max_output_bytes;
  b.charge(s.size() + old.size());
  PString out;
  if (old.empty()) {
    // Python inserts repl between every code point (and at both ends).
    const std::size_t cps = utf8::length(s.text);
    const std::size_t inserts =
        count < 0 ? cps + 1 : std::min(cps + 1, static_cast<std::size_t>(count));
    if (repl.size() && inserts > (max - std::min(max, s.size())) / repl.size())
      b.check_bytes(max + 1);
    b.grow(out.text, s.size() + inserts * repl.size());
    std::size_t done = 0;
    for (std::size_t p = 0; p < s.size();) {
      if (done < inserts) out.append(repl), ++done;
      const std::size_t len = utf8::offset_of(s.text.substr(p, 4), 1);
      out.append(s.substr(p, len));
      p += len;
    }
    if (done < inserts) out.append(repl);
    return out;
  }
  const TextSearcher searcher(old.text);
  std::size_t start = 0;
  while (count != 0) {
    const std::size_t hit = searcher.find(s.text, start);
    if (hit == std::string::npos) break;
    b.grow(out.text, hit - start + repl.size());
    out.append(s.substr(start, hit - start));
    out.append(repl);
    start = hit + old.size();
    if (count > 0) --count;
  }
  b.grow(out.text, s.size() - start);
  out.append(s.substr(start));
  return out;
}

// ASCII case mapping (non-ASCII bytes are kept as they are: see docs/format.md).
inline PString map_case(const PString& s, int mode /*0 lower 1 upper*/) {
  PString r = s;
  for (char& c : r.text)
    c = static_cast<char>(mode ? std::toupper(static_cast<unsigned char>(c))
                               : std::tolower(static_cast<unsigned char>(c)));
  return r;
}
inline bool is_alpha(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0;
}

// Python's str.title(): a letter after a letter is lowered, any other letter raised.
inline PString python_title(const PString& s) {
  PString r = s;
  bool prev_cased = false;
  for (char& c : r.text) {
    if (is_alpha(c)) {
      c = static_cast<char>(prev_cased ? std::tolower(static_cast<unsigned char>(c))
                                       : std::toupper(static_cast<unsigned char>(c)));
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return r;
}

// jinja2's title filter: words start after runs of [-\s({\[<].
inline PString jinja_title(const PString& s) {
  PString r = s;
  bool start = true;
  for (char& c : r.text) {
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
                     std::isspace(static_cast<unsigned char>(c));
    if (sep) {
      start = true;
      continue;
    }
    c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  return r;
}

inline PString capitalize(const PString& s) {
  PString r = map_case(s, 0);
  if (!r.text.empty())
    r.text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(r.text[0])));
  return r;
}

// str.splitlines() (without keepends).
inline std::vector<PString> splitlines(const PString& s, Budget& b) {
  b.charge(s.size());
  std::vector<PString> lines;
  std::size_t start = 0, k = 0;
  while (k < s.text.size()) {
    std::size_t len = 1;
    const std::uint32_t cp = utf8::decode(s.text, k, &len);
    const bool br = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C ||
                    cp == 0x1D || cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (br) {
      add_part(lines, s.substr(start, k - start), b);
      k += len;
      if (cp == '\r' && k < s.text.size() && s.text[k] == '\n') ++k;
      start = k;
    } else {
      k += len;
    }
  }
  if (start < s.text.size()) add_part(lines, s.substr(start), b);
  return lines;
}

}  // namespace strops

// ---- the builtins
// ----------------------------------------------------------------------------------

// A friend of Interpreter: each builtin takes the interpreter whose limits it charges and whose
// helpers it calls. A function that serves several names (lstrip and rstrip, select and reject)
// is told which one it runs as, for its behaviour and its error messages.
struct Builtins {
  using In = Interpreter;

  // ---- helpers ----
  // Python's generator objects (what map, select, reject, unique, items and reverse return).
  static Value generator(List items) {
    Value v = Value::make_list(std::move(items));
    v.generator_consumed = std::make_shared<bool>(false);
    return v;
  }

  static const PString& arg_string(const CallArgs& a, std::size_t k, const char* kw) {
    static const PString empty;
    for (const auto& kv : a.keyword)
      if (kv.first == kw) {
        if (!kv.second.is_string())
          throw TemplateError(a.what + ": argument '" + kw + "' must be a string");
        return *kv.second.s;
      }
    if (k < a.positional.size()) {
      if (!a.positional[k].is_string())
        throw TemplateError(a.what + ": argument " + std::to_string(k + 1) + " must be a string");
      return *a.positional[k].s;
    }
    (void)empty;
    throw TemplateError(a.what + ": missing argument '" + kw + "'");
  }

  static std::int64_t arg_int(const CallArgs& a, std::size_t k, const char* kw,
                              std::int64_t fallback) {
    const Value v = a.get(k, kw, Value::none());
    if (v.is_none()) return fallback;
    if (!In::is_intlike(v))
      throw TemplateError(a.what + ": argument '" + kw + "' must be an integer");
    return In::as_int(v);
  }

  // The parts were counted and charged as they were made (strops::add_part).
  static Value string_list(std::vector<PString> parts) {
    List items;
    items.reserve(parts.size());
    for (auto& p : parts) items.push_back(Value::string(std::move(p)));
    return Value::make_list(std::move(items));
  }

  static Value attribute_of(In& in, const Value& v, const Value& attr) {
    if (!attr.is_string() && !In::is_intlike(attr))
      throw TemplateError("attribute must be a string or an integer");
    if (In::is_intlike(attr)) return in.getitem(v, attr);
    // jinja2's make_attrgetter: dotted paths, integers as indices
    Value cur = v;
    std::size_t start = 0;
    const std::string& path = attr.str();
    while (true) {
      const std::size_t dot = path.find('.', start);
      const std::string part =
          path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          }))
        cur = in.getitem(cur, Value::integer(std::atoll(part.c_str())));
      else
        cur = in.getitem(cur, Value::plain(part));
      if (dot == std::string::npos) return cur;
      start = dot + 1;
    }
  }

  // Every comparison is charged (In::order).
  template <typename KeyFn>
  static void sort_values(In& in, List& items, KeyFn key, bool reverse) {
    in.budget_.charge_items(2 * items.size());
    std::vector<std::pair<Value, Value>> keyed;
    keyed.reserve(items.size());
    for (auto& x : items) keyed.emplace_back(key(x), x);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& p, const auto& q) {
      return reverse ? in.order(q.first, p.first, "sort") < 0
                     : in.order(p.first, q.first, "sort") < 0;
    });
    for (std::size_t k = 0; k < items.size(); ++k) items[k] = keyed[k].second;
  }

  // ---- globals ----
  static Value global_range(In& in, CallArgs& a) {
    std::int64_t start = 0, stop = 0, step = 1;
    auto num = [&](std::size_t k) {
      if (!In::is_intlike(a.positional[k]))
        throw TemplateError("range: arguments must be integers");
      return In::as_int(a.positional[k]);
    };
    if (a.positional.size() == 1)
      stop = num(0);
    else if (a.positional.size() == 2)
      start = num(0), stop = num(1);
    else if (a.positional.size() == 3)
      start = num(0), stop = num(1), step = num(2);
    else
      throw TemplateError("range expects 1 to 3 arguments");
    if (step == 0) throw TemplateError("range: step must not be zero");
    // The length is computed (in unsigned arithmetic, where stop - start cannot overflow) and
    // checked before anything is built.
    std::uint64_t count = 0;
    const auto ustart = static_cast<std::uint64_t>(start), ustop = static_cast<std::uint64_t>(stop);
    if (step > 0 && start < stop)
      count = (ustop - ustart - 1) / static_cast<std::uint64_t>(step) + 1;
    else if (step < 0 && start > stop)
      count = (ustart - ustop - 1) / (static_cast<std::uint64_t>(-(step + 1)) + 1) + 1;
    in.budget_.build_items(static_cast<std::size_t>(
        std::min<std::uint64_t>(count, std::numeric_limits<std::size_t>::max())));
    List out;
    out.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t k = 0; k < count; ++k)
      out.push_back(Value::integer(static_cast<std::int64_t>(
          ustart + k * static_cast<std::uint64_t>(step))));  // in [start, stop): no wrap
    return Value::make_list(std::move(out));
  }

  // A dict copied, then keyword arguments set into it: each set searches the dict (charged).
  static Dict dict_with_keywords(In& in, const CallArgs& a, const char* what) {
    Dict d;
    for (const auto& p : a.positional) {
      if (!p.is_dict())
        throw TemplateError(std::string(what) + ": positional argument must be a dict");
      in.budget_.build_items(p.dict->size());
      d = *p.dict;
    }
    in.budget_.build_items(d.size() + a.keyword.size());
    for (const auto& kv : a.keyword) {
      in.charge(d.size());
      bool found = false;
      for (auto& e : d)
        if (e.first == kv.first) e.second = kv.second, found = true;
      if (!found) d.push_back(kv);
    }
    return d;
  }

  // A namespace's depth counts what it holds, as a dict's does (value.hpp).
  static Value global_namespace(In& in, CallArgs& a) {
    for (const auto& kv : a.keyword)
      if (!kv.first.empty() && kv.first[0] == '_')
        throw TemplateError("namespace attributes may not start with '_'");
    Dict d = dict_with_keywords(in, a, "namespace");
    Value ns;
    ns.kind = Value::Kind::kNamespace;
    ns.depth = Value::depth_of(d);
    ns.dict = std::make_shared<Dict>(std::move(d));
    in.budget_.charge_items(1);
    in.remember_namespace(ns.dict);
    return ns;
  }

  static Value global_dict(In& in, CallArgs& a) {
    return Value::make_dict(dict_with_keywords(in, a, "dict"));
  }

  static Value global_raise_exception(In& in, CallArgs& a) {
    throw TemplateError("raise_exception: " + (a.positional.empty()
                                                   ? std::string()
                                                   : to_pstring(a.positional[0], in.budget_).text));
  }

  static Value global_strftime_now(In& in, CallArgs& a) {
    if (a.positional.size() != 1 || !a.positional[0].is_string())
      throw TemplateError("strftime_now expects one format string");
    char buf[256];
    const std::size_t n = std::strftime(buf, sizeof buf, a.positional[0].str().c_str(), &in.date_);
    if (n == 0 && !a.positional[0].str().empty())
      throw TemplateError("strftime_now: format too long or empty result");
    return Value::plain(std::string(buf, n));
  }

  // ---- methods of str ----
  // strip, lstrip, rstrip
  static Value str_strip(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    in.budget_.charge_items(s.size() / 8);  // strip's offsets: 8 bytes per code point
    in.build_bytes(s.size());
    const Value chars = a.get(0, "chars", Value::none());
    std::vector<std::uint32_t> set;
    if (!chars.is_none()) {
      if (!chars.is_string()) throw TemplateError(a.what + ": chars must be a string");
      set = strops::code_points(chars.str());
    }
    return Value::string(
        strops::strip(s, name != "rstrip", name != "lstrip", chars.is_none() ? nullptr : &set));
  }

  // split, rsplit
  static Value str_split(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    const Value sep = a.get(0, "sep", Value::none());
    const std::int64_t maxsplit = arg_int(a, 1, "maxsplit", -1);
    if (name == "rsplit" && maxsplit >= 0)
      throw TemplateError("rsplit with maxsplit is not supported");
    if (!sep.is_none() && !sep.is_string()) throw TemplateError(a.what + ": sep must be a string");
    return string_list(
        strops::split(s, sep.is_none() ? nullptr : sep.s.get(), maxsplit, in.budget_));
  }

  // startswith, endswith
  static Value str_startswith(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    const Value p = a.get(0, "prefix", Value::none());
    std::vector<const std::string*> options;
    if (p.is_string())
      options.push_back(&p.str());
    else if (p.is_list())
      for (const auto& x : *p.list) {
        if (!x.is_string()) throw TemplateError(a.what + ": tuple items must be strings");
        options.push_back(&x.str());
      }
    else
      throw TemplateError(a.what + ": argument must be a string or a tuple of strings");
    if (a.positional.size() > 1)
      throw TemplateError(a.what + ": start/end arguments are not supported");
    in.charge(options.size());
    for (const std::string* option : options) {
      const std::string& o = *option;
      if (o.size() > s.size()) continue;
      in.charge(o.size());
      if (name == "startswith" ? s.text.compare(0, o.size(), o) == 0
                               : s.text.compare(s.size() - o.size(), o.size(), o) == 0)
        return Value::boolean(true);
    }
    return Value::boolean(false);
  }

  // upper, lower
  static Value str_upper(In& in, const std::string& name, const Value& obj, CallArgs&) {
    in.build_bytes(obj.s->size());
    return Value::string(strops::map_case(*obj.s, name == "upper"));
  }

  static Value str_title(In& in, const std::string&, const Value& obj, CallArgs&) {
    in.build_bytes(obj.s->size());
    return Value::string(strops::python_title(*obj.s));
  }

  static Value str_capitalize(In& in, const std::string&, const Value& obj, CallArgs&) {
    in.build_bytes(obj.s->size());
    return Value::string(strops::capitalize(*obj.s));
  }

  static Value str_replace(In& in, const std::string&, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    return Value::string(strops::replace(s, arg_string(a, 0, "old"), arg_string(a, 1, "new"),
                                         arg_int(a, 2, "count", -1), in.budget_));
  }

  // find, rfind, index, count: linear-time searches (TextSearcher), charged by what they scan.
  static Value str_find(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    const std::string& sub = arg_string(a, 0, "sub").text;
    if (a.positional.size() > 1)
      throw TemplateError(a.what + ": start/end arguments are not supported");
    in.charge(2 * s.size() + sub.size());
    const TextSearcher searcher(sub);
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<std::int64_t>(utf8::length(s.text) + 1));
      std::int64_t n = 0;
      for (std::size_t p = searcher.find(s.text); p != std::string::npos;
           p = searcher.find(s.text, p + sub.size()))
        ++n;
      return Value::integer(n);
    }
    const std::size_t p = name == "rfind" ? searcher.rfind(s.text) : searcher.find(s.text);
    if (p == std::string::npos) {
      if (name == "index") throw TemplateError("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<std::int64_t>(utf8::length(s.text.substr(0, p))));
  }

  // removeprefix, removesuffix
  static Value str_removeprefix(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    const PString& x = arg_string(a, 0, "prefix");
    in.build_bytes(s.size());
    if (name == "removeprefix" && s.text.compare(0, x.size(), x.text) == 0)
      return Value::string(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && x.size() <= s.size() &&
        s.text.compare(s.size() - x.size(), x.size(), x.text) == 0)
      return Value::string(s.substr(0, s.size() - x.size()));
    return obj;
  }

  static Value str_join(In& in, const std::string&, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    PString out;
    const Items items = in.iterate(a.get(0, "iterable"), "join");
    for (std::size_t k = 0; k < items->size(); ++k) {
      const Value& item = (*items)[k];
      if (!item.is_string())
        throw TemplateError("join: sequence item " + std::to_string(k) + " is not a string");
      in.budget_.grow(out.text, (k ? s.size() : 0) + item.s->size());
      if (k) out.append(s);
      out.append(*item.s);
    }
    return Value::string(std::move(out));
  }

  static Value str_splitlines(In& in, const std::string&, const Value& obj, CallArgs&) {
    return string_list(strops::splitlines(*obj.s, in.budget_));
  }

  // isdigit, isalpha, isalnum, isspace, islower, isupper
  static Value str_isdigit(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const PString& s = *obj.s;
    in.charge(s.size());
    if (s.empty()) return Value::boolean(false);
    bool any_cased = false;
    for (char c : s.text) {
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x80) throw TemplateError(a.what + " on non-ASCII text is not supported");
      if (name == "isdigit" && !std::isdigit(u)) return Value::boolean(false);
      if (name == "isalpha" && !std::isalpha(u)) return Value::boolean(false);
      if (name == "isalnum" && !std::isalnum(u)) return Value::boolean(false);
      if (name == "isspace" && !utf8::is_python_space(u)) return Value::boolean(false);
      if (name == "islower" && std::isupper(u)) return Value::boolean(false);
      if (name == "isupper" && std::islower(u)) return Value::boolean(false);
      any_cased = any_cased || std::isalpha(u);
    }
    return Value::boolean((name != "islower" && name != "isupper") || any_cased);
  }

  // str.format with {} / {0} / {name} fields (no format specs).
  static PString format(In& in, const PString& fmt, const CallArgs& a) {
    PString out;
    in.charge(fmt.size());
    std::size_t auto_index = 0;
    for (std::size_t k = 0; k < fmt.size(); ++k) {
      const char c = fmt.text[k];
      if (c == '{' && k + 1 < fmt.size() && fmt.text[k + 1] == '{') {
        in.budget_.grow(out.text, 1);
        out.append(fmt.substr(k, 1));
        ++k;
        continue;
      }
      if (c == '}' && k + 1 < fmt.size() && fmt.text[k + 1] == '}') {
        in.budget_.grow(out.text, 1);
        out.append(fmt.substr(k, 1));
        ++k;
        continue;
      }
      if (c != '{') {
        in.budget_.grow(out.text, 1);
        out.append(fmt.substr(k, 1));
        continue;
      }
      const std::size_t close = fmt.text.find('}', k);
      if (close == std::string::npos) throw TemplateError("format: single '{' in format string");
      const std::string field = fmt.text.substr(k + 1, close - k - 1);
      if (field.find_first_of(":!.[") != std::string::npos)
        throw TemplateError("format: format specs are not supported");
      Value v;
      if (field.empty())
        v = a.get(auto_index++, "\x01");
      else if (std::isdigit(static_cast<unsigned char>(field[0])))
        v = a.get(static_cast<std::size_t>(std::atoi(field.c_str())), "\x01");
      else
        v = a.get(static_cast<std::size_t>(-1), field.c_str());
      if (v.is_undefined()) throw TemplateError("format: no argument for field '{" + field + "}'");
      if (v.is_string()) {
        in.budget_.grow(out.text, v.s->size());
        out.append(*v.s);
      } else {
        repr_into(v, out, in.budget_);
      }
      k = close;
    }
    return out;
  }

  static Value str_format(In& in, const std::string&, const Value& obj, CallArgs& a) {
    return Value::string(format(in, *obj.s, a));
  }

  // ---- methods of dict and list ----
  // items, keys, values
  static Value dict_items(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    if (!a.positional.empty() || !a.keyword.empty())
      throw TemplateError(a.what + " takes no arguments");
    in.budget_.build_items(obj.dict->size());
    if (name == "items") in.budget_.charge_items(2 * obj.dict->size());  // the pairs' items
    List out;
    out.reserve(obj.dict->size());
    for (const auto& kv : *obj.dict) {
      if (name == "keys")
        out.push_back(Value::plain(kv.first));
      else if (name == "values")
        out.push_back(kv.second);
      else {
        Value pair = Value::make_list({Value::plain(kv.first), kv.second});
        pair.is_tuple = true;
        out.push_back(std::move(pair));
      }
    }
    return Value::make_list(std::move(out));
  }

  static Value dict_get(In& in, const std::string&, const Value& obj, CallArgs& a) {
    if (a.positional.empty() || !a.positional[0].is_string()) {
      if (!a.positional.empty()) return a.get(1, "default", Value::none());
      throw TemplateError("get: missing key");
    }
    if (const Value* v = in.find_key(obj, a.positional[0].str())) return *v;
    return a.get(1, "default", Value::none());
  }

  // index, count
  // Every comparison is charged (equals), deep ones by their size.
  static Value list_index(In& in, const std::string& name, const Value& obj, CallArgs& a) {
    const Value x = a.get(0, "value");
    std::int64_t n = 0;
    in.charge(obj.list->size());
    for (std::size_t k = 0; k < obj.list->size(); ++k)
      if (equals((*obj.list)[k], x, in.budget_)) {
        if (name == "index") return Value::integer(static_cast<std::int64_t>(k));
        ++n;
      }
    if (name == "index") throw TemplateError("index: value is not in list");
    return Value::integer(n);
  }

  // The methods that would modify their object, which the sandbox refuses as transformers'
  // ImmutableSandboxedEnvironment does, and copy, which is not supported.
  static Value method_sandboxed(In&, const std::string& name, const Value& obj, CallArgs&) {
    throw TemplateError("'" + std::string(type_name(obj)) + "." + name +
                        "' modifies its object, which the sandbox forbids (unsafe)");
  }
  static Value method_unsupported(In&, const std::string& name, const Value& obj, CallArgs&) {
    throw TemplateError("method '" + name + "' of " + type_name(obj) + " is not supported");
  }

  // ---- filters ----
  static Value filter_trim(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value chars = a.get(0, "chars", Value::none());
    const PString s = to_pstring(v, in.budget_);
    in.budget_.charge_items(s.size() / 8);  // strip's offsets: 8 bytes per code point
    in.build_bytes(s.size());
    if (chars.is_none()) return Value::string(strops::strip(s, true, true));
    if (!chars.is_string()) throw TemplateError("trim: chars must be a string");
    in.charge(chars.s->size());
    const auto set = strops::code_points(chars.str());
    return Value::string(strops::strip(s, true, true, &set));
  }

  static Value filter_tojson(In& in, const std::string&, const Value& v, CallArgs& a) {
    JsonDumpOptions o;
    o.ensure_ascii = truthy(a.get(0, "ensure_ascii", Value::boolean(false)));
    const Value indent = a.get(1, "indent", Value::none());
    if (!indent.is_none()) {
      o.has_indent = true;
      if (In::is_intlike(indent))
        o.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(
                                   0, std::min<std::int64_t>(In::as_int(indent), 64))),
                               ' ');
      else if (indent.is_string())
        o.indent = indent.str();
      else
        throw TemplateError("tojson: indent must be an integer or a string");
      o.item_separator = ",";
    }
    const Value seps = a.get(2, "separators", Value::none());
    if (!seps.is_none()) {
      if (!seps.is_list() || seps.list->size() != 2 || !(*seps.list)[0].is_string() ||
          !(*seps.list)[1].is_string())
        throw TemplateError("tojson: separators must be a pair of strings");
      o.item_separator = (*seps.list)[0].str();
      o.key_separator = (*seps.list)[1].str();
    }
    o.sort_keys = truthy(a.get(3, "sort_keys", Value::boolean(false)));
    PString out;
    json_dump_into(v, out, o, 0, in.budget_);  // every piece checked before it is appended
    return Value::string(std::move(out));
  }

  // length, count
  static Value filter_length(In& in, const std::string& name, const Value& v, CallArgs&) {
    if (v.generator_consumed)
      throw TemplateError(name + ": object of type 'generator' has no len()");
    switch (v.kind) {
      case Value::Kind::kUndefined:
        return Value::integer(0);
      case Value::Kind::kString:
        in.charge(v.s->size());
        return Value::integer(static_cast<std::int64_t>(utf8::length(v.str())));
      case Value::Kind::kList:
        return Value::integer(static_cast<std::int64_t>(v.list->size()));
      case Value::Kind::kDict:
        return Value::integer(static_cast<std::int64_t>(v.dict->size()));
      default:
        throw TemplateError(std::string("length: object of type '") + type_name(v) +
                            "' has no len()");
    }
  }

  // first, last
  static Value filter_first(In& in, const std::string& name, const Value& v, CallArgs&) {
    if (name == "last" && v.generator_consumed)
      throw TemplateError("last: 'generator' object is not reversible");
    const Items items = in.iterate(v, name.c_str());
    if (items->empty()) return Value::undefined(name + " of an empty sequence");
    return name == "first" ? items->front() : items->back();
  }

  static Value filter_join(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value sep = a.get(0, "d", Value::plain(""));
    const Value attr = a.get(1, "attribute", Value::none());
    PString out;
    const PString sep_s = to_pstring(sep, in.budget_);
    const Items items = in.iterate(v, "join");
    for (std::size_t k = 0; k < items->size(); ++k) {
      if (k) {
        in.budget_.grow(out.text, sep_s.size());
        out.append(sep_s);
      }
      const Value item = attr.is_none() ? (*items)[k] : attribute_of(in, (*items)[k], attr);
      if (item.is_string()) {
        in.budget_.grow(out.text, item.s->size());
        out.append(*item.s);
      } else {
        repr_into(item, out, in.budget_);
      }
    }
    return Value::string(std::move(out));
  }

  // default, d
  static Value filter_default(In&, const std::string&, const Value& v, CallArgs& a) {
    const bool boolean = truthy(a.get(1, "boolean", Value::boolean(false)));
    if (v.is_undefined() || (boolean && !truthy(v)))
      return a.get(0, "default_value", Value::plain(""));
    return v;
  }

  // upper, lower
  // A string result the size of `s`, refused or charged before it is built.
  static PString sized(In& in, PString s) {
    in.build_bytes(s.size());
    return s;
  }

  static Value filter_upper(In& in, const std::string& name, const Value& v, CallArgs&) {
    return Value::string(strops::map_case(sized(in, to_pstring(v, in.budget_)), name == "upper"));
  }

  static Value filter_capitalize(In& in, const std::string&, const Value& v, CallArgs&) {
    return Value::string(strops::capitalize(sized(in, to_pstring(v, in.budget_))));
  }

  static Value filter_title(In& in, const std::string&, const Value& v, CallArgs&) {
    return Value::string(strops::jinja_title(sized(in, to_pstring(v, in.budget_))));
  }

  static Value filter_replace(In& in, const std::string&, const Value& v, CallArgs& a) {
    if (!v.is_string() && v.is_undefined()) return Value::plain("");
    return Value::string(strops::replace(
        to_pstring(v, in.budget_), to_pstring(a.get(0, "old"), in.budget_),
        to_pstring(a.get(1, "new"), in.budget_), arg_int(a, 2, "count", -1), in.budget_));
  }

  static Value filter_list(In& in, const std::string&, const Value& v, CallArgs&) {
    const Items items = in.iterate(v, "list");
    if (items == v.list) in.budget_.build_items(items->size());  // a copy of the list's items
    return Value::make_list(*items);
  }

  static Value filter_string(In& in, const std::string&, const Value& v, CallArgs&) {
    return Value::string(to_pstring(v, in.budget_));
  }

  static Value filter_safe(In& in, const std::string&, const Value& v, CallArgs&) {
    Value r = v.is_string() ? v : Value::string(to_pstring(v, in.budget_));
    r.markup = true;
    return r;
  }

  static Value filter_int(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value dflt = a.get(0, "default", Value::integer(0));
    if (In::is_intlike(v)) return Value::integer(In::as_int(v));
    if (v.kind == Value::Kind::kFloat) {
      if (!std::isfinite(v.f) || std::fabs(v.f) > 9.2e18) return dflt;
      return Value::integer(static_cast<std::int64_t>(v.f));
    }
    if (v.is_string()) {
      in.charge(v.s->size());
      const std::string t = strops::strip(*v.s, true, true).text;
      char* end = nullptr;
      errno = 0;
      const long long x = std::strtoll(t.c_str(), &end, 10);
      if (!t.empty() && end && *end == 0 && errno == 0) return Value::integer(x);
      const double d = std::strtod(t.c_str(), &end);
      if (!t.empty() && end && *end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18)
        return Value::integer(static_cast<std::int64_t>(d));
    }
    return dflt;
  }

  static Value filter_float(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value dflt = a.get(0, "default", Value::floating(0.0));
    if (v.is_number()) return Value::floating(as_double(v));
    if (v.is_string()) {
      in.charge(v.s->size());
      const std::string t = strops::strip(*v.s, true, true).text;
      char* end = nullptr;
      const double d = std::strtod(t.c_str(), &end);
      if (!t.empty() && end && *end == 0) return Value::floating(d);
    }
    return dflt;
  }

  static Value filter_abs(In&, const std::string&, const Value& v, CallArgs&) {
    if (v.kind == Value::Kind::kFloat) return Value::floating(std::fabs(v.f));
    if (In::is_intlike(v)) {
      if (In::as_int(v) == std::numeric_limits<std::int64_t>::min())
        throw TemplateError("integer overflow");
      return Value::integer(std::llabs(In::as_int(v)));
    }
    throw TemplateError(std::string("abs: bad operand type '") + type_name(v) + "'");
  }

  // jinja2's round: Python's round(x, precision) for "common" (the exact binary value rounded
  // half to even), math.ceil / math.floor of x * 10**precision over 10**precision otherwise.
  static Value filter_round(In&, const std::string&, const Value& v, CallArgs& a) {
    if (!v.is_number()) throw TemplateError("round: argument must be a number");
    const std::int64_t precision = arg_int(a, 0, "precision", 0);
    const Value method = a.get(1, "method", Value::plain("common"));
    const double x = as_double(v);
    if (!method.is_string() ||
        (method.str() != "common" && method.str() != "ceil" && method.str() != "floor"))
      throw TemplateError("round: method must be common, ceil or floor");
    if (method.str() == "common" && In::is_intlike(v)) {
      // Python's round(int, n): the int itself for n >= 0, else the nearest multiple of 10^-n,
      // half to even.
      const std::int64_t i = In::as_int(v);
      if (precision >= 0) return Value::integer(i);
      if (precision < -18) return Value::integer(0);
      std::int64_t unit = 1;
      for (std::int64_t k = 0; k < -precision; ++k) unit *= 10;
      std::int64_t q = i / unit, r = i % unit;
      if (r < 0) r += unit, --q;  // floor division
      if (2 * r > unit || (2 * r == unit && q % 2 != 0)) ++q;
      std::int64_t out = 0;
      if (__builtin_mul_overflow(q, unit, &out)) throw TemplateError("integer overflow");
      return Value::integer(out);
    }
    if (method.str() == "common") {
      if (!std::isfinite(x)) return Value::floating(x);
      // CPython's float.__round__: past 323 digits every double is already exact, and below
      // -308 every double rounds to (signed) zero.
      if (precision > 323) return Value::floating(x);
      if (precision < -308) return Value::floating(std::copysign(0.0, x));
      if (precision >= 0) {
        // printf rounds the exact binary value, half to even, as Python does (2.675 is
        // 2.67499..., so 2.67); 309 integer digits and 323 decimals fit the buffer.
        char buf[700];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);
        return Value::floating(std::strtod(buf, nullptr));
      }
      const double scale = std::pow(10.0, static_cast<double>(-precision));
      return Value::floating(std::copysign(std::nearbyint(x / scale) * scale, x));
    }
    // Python raises OverflowError where 10**precision or the scaled value has no float.
    const double scale = std::pow(10.0, static_cast<double>(std::max<std::int64_t>(
                                            -400, std::min<std::int64_t>(precision, 400))));
    const double scaled = x * scale;
    if (!std::isfinite(scale) || !std::isfinite(scaled) || scale == 0)
      throw TemplateError("round: precision " + std::to_string(precision) +
                          " is out of range for " + python_float_repr(x));
    const double r = method.str() == "ceil" ? std::ceil(scaled) : std::floor(scaled);
    return Value::floating(r / scale);
  }

  static Value filter_items(In& in, const std::string&, const Value& v, CallArgs&) {
    if (v.is_undefined()) return generator({});
    if (!v.is_dict()) throw TemplateError("items: argument must be a mapping");
    CallArgs none;
    return generator(*in.call_method(v, "items", none).list);
  }

  // The result's size is computed from the lines and checked before it is built: a 16 MiB indent
  // string before each of a million lines would otherwise be built first.
  static Value filter_indent(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value width = a.get(0, "width", Value::integer(4));
    const bool first = truthy(a.get(1, "first", Value::boolean(false)));
    const bool blank = truthy(a.get(2, "blank", Value::boolean(false)));
    std::string ind;
    if (In::is_intlike(width))
      ind.assign(static_cast<std::size_t>(
                     std::max<std::int64_t>(0, std::min<std::int64_t>(In::as_int(width), 256))),
                 ' ');
    else if (width.is_string())
      ind = width.str();
    else
      throw TemplateError("indent: width must be an integer or a string");
    PString s = to_pstring(v, in.budget_);
    in.budget_.grow(s.text, 1);
    s.append_plain("\n");
    std::vector<PString> lines = strops::splitlines(s, in.budget_);
    std::size_t indented = first ? 1 : 0;
    for (std::size_t k = 1; k < lines.size(); ++k) indented += blank || !lines[k].empty();
    const std::size_t max = in.budget_.limits().max_output_bytes;
    if (ind.size() && indented > max / ind.size()) in.budget_.check_bytes(max + 1);
    in.budget_.grow(s.text, indented * ind.size());
    PString out;
    if (blank) {
      for (std::size_t k = 0; k < lines.size(); ++k) {
        if (k) {
          out.append_plain("\n");
          out.append_plain(ind);
        }
        out.append(lines[k]);
      }
    } else if (!lines.empty()) {
      out = lines[0];
      for (std::size_t k = 1; k < lines.size(); ++k) {
        out.append_plain("\n");
        if (!lines[k].empty()) out.append_plain(ind);
        out.append(lines[k]);
      }
    }
    if (first) {
      PString r(ind);
      r.append(out);
      out = std::move(r);
    }
    return Value::string(std::move(out));
  }

  static Value filter_dictsort(In& in, const std::string&, const Value& v, CallArgs& a) {
    if (!v.is_dict()) throw TemplateError("dictsort: argument must be a mapping");
    const bool case_sensitive = truthy(a.get(0, "case_sensitive", Value::boolean(false)));
    const Value by = a.get(1, "by", Value::plain("key"));
    const bool reverse = truthy(a.get(2, "reverse", Value::boolean(false)));
    const bool by_value = by.is_string() && by.str() == "value";
    in.budget_.build_items(3 * v.dict->size());
    List pairs;
    for (const auto& kv : *v.dict) {
      Value pair = Value::make_list({Value::plain(kv.first), kv.second});
      pair.is_tuple = true;
      pairs.push_back(std::move(pair));
    }
    sort_values(
        in, pairs,
        [&](const Value& p) {
          Value key = (*p.list)[by_value ? 1 : 0];
          if (!case_sensitive && key.is_string())
            key = Value::string(strops::map_case(sized(in, *key.s), 0));
          return key;
        },
        reverse);
    return Value::make_list(std::move(pairs));
  }

  static Value filter_sort(In& in, const std::string&, const Value& v, CallArgs& a) {
    const bool reverse = truthy(a.get(0, "reverse", Value::boolean(false)));
    const bool case_sensitive = truthy(a.get(1, "case_sensitive", Value::boolean(false)));
    const Value attr = a.get(2, "attribute", Value::none());
    const Items all = in.iterate(v, "sort");
    in.budget_.build_items(all->size());
    List items = *all;
    sort_values(
        in, items,
        [&](const Value& x) {
          Value key = attr.is_none() ? x : attribute_of(in, x, attr);
          if (!case_sensitive && key.is_string())
            key = Value::string(strops::map_case(sized(in, *key.s), 0));
          return key;
        },
        reverse);
    return Value::make_list(std::move(items));
  }

  // String keys (what templates pass) are found in a hash set; other keys are compared with each
  // kept key of theirs, every comparison charged.
  static Value filter_unique(In& in, const std::string&, const Value& v, CallArgs& a) {
    const bool case_sensitive = truthy(a.get(0, "case_sensitive", Value::boolean(false)));
    const Value attr = a.get(1, "attribute", Value::none());
    List out, seen;
    std::unordered_set<std::string> seen_strings;
    const Items items = in.iterate(v, "unique");
    for (const auto& x : *items) {
      Value key = attr.is_none() ? x : attribute_of(in, x, attr);
      bool dup = false;
      if (key.is_string()) {
        in.charge(2 * key.s->size());
        dup = !seen_strings.insert(case_sensitive ? key.str() : strops::map_case(*key.s, 0).text)
                   .second;
      } else {
        in.charge(seen.size());
        for (const auto& s : seen)
          if (equals(s, key, in.budget_)) {
            dup = true;
            break;
          }
        if (!dup) seen.push_back(key);
      }
      if (!dup) {
        in.budget_.charge_items(2);
        out.push_back(x);
      }
    }
    return generator(std::move(out));
  }

  static Value filter_reverse(In& in, const std::string&, const Value& v, CallArgs&) {
    if (v.is_string()) return in.slice(v, Value::none(), Value::none(), Value::integer(-1));
    if (v.generator_consumed) throw TemplateError("reverse: 'generator' object is not reversible");
    const Items all = in.iterate(v, "reverse");
    in.budget_.build_items(all->size());
    List items(all->rbegin(), all->rend());
    return generator(std::move(items));
  }

  static Value filter_sum(In& in, const std::string&, const Value& v, CallArgs& a) {
    const Value attr = a.get(0, "attribute", Value::none());
    Value total = a.get(1, "start", Value::integer(0));
    const Items items = in.iterate(v, "sum");
    for (const auto& x : *items)
      total = in.binary("+", total, attr.is_none() ? x : attribute_of(in, x, attr));
    return total;
  }

  // min, max
  static Value filter_min(In& in, const std::string& name, const Value& v, CallArgs&) {
    const Items all = in.iterate(v, name.c_str());
    const List& items = *all;
    if (items.empty()) return Value::undefined(name + " of an empty sequence");
    Value best = items[0];
    for (const auto& x : items) {
      const int c = in.order(x, best, name);
      if (name == "min" ? c < 0 : c > 0) best = x;
    }
    return best;
  }

  static Value filter_map(In& in, const std::string&, const Value& v, CallArgs& a) {
    List out;
    const Value attr = a.get(static_cast<std::size_t>(-1), "attribute", Value::none());
    if (!attr.is_none()) {
      const Value dflt = a.get(static_cast<std::size_t>(-1), "default");
      if (truthy(v)) {  // jinja2: `if seq:` -- none maps to nothing
        const Items items = in.iterate(v, "map");
        for (const auto& x : *items) {
          in.budget_.charge_items(1);
          Value r = attribute_of(in, x, attr);
          out.push_back(r.is_undefined() && !dflt.is_undefined() ? dflt : r);
        }
      }
      return generator(std::move(out));
    }
    if (a.positional.empty() || !a.positional[0].is_string())
      throw TemplateError("map: expects a filter name or attribute=");
    const std::string filter = a.positional[0].str();
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    rest.what = "filter '" + filter + "'";
    if (truthy(v)) {
      const Items items = in.iterate(v, "map");
      for (const auto& x : *items) {
        in.budget_.charge_items(1);
        out.push_back(in.apply_filter(filter, x, rest));
      }
    }
    return generator(std::move(out));
  }

  // select, reject, selectattr, rejectattr
  static Value filter_select(In& in, const std::string& name, const Value& v, CallArgs& a) {
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "select" || name == "selectattr";
    std::size_t k = 0;
    Value attr;
    if (by_attr) {
      if (a.positional.empty()) throw TemplateError(name + ": missing attribute");
      attr = a.positional[k++];
    }
    std::string test;
    if (k < a.positional.size()) {
      if (!a.positional[k].is_string()) throw TemplateError(name + ": test name must be a string");
      test = a.positional[k++].str();
    }
    CallArgs rest;
    rest.positional.assign(
        a.positional.begin() + static_cast<std::ptrdiff_t>(std::min(k, a.positional.size())),
        a.positional.end());
    rest.keyword = a.keyword;
    rest.what = "test '" + test + "'";
    List out;
    if (truthy(v)) {  // jinja2: `if seq:` -- none selects nothing
      const Items items = in.iterate(v, name.c_str());
      for (const auto& x : *items) {
        const Value subject = by_attr ? attribute_of(in, x, attr) : x;
        const bool r = test.empty() ? truthy(subject) : in.apply_test(test, subject, rest);
        if (r == keep_if) {
          in.budget_.charge_items(1);
          out.push_back(x);
        }
      }
    }
    return generator(std::move(out));
  }

  // jinja2's other builtin filters: refused by name rather than reported as unknown, so that the
  // message says the template is valid Jinja2 that this engine does not run.
  static Value filter_unsupported(In&, const std::string& name, const Value&, CallArgs&) {
    throw TemplateError("filter '" + name + "' is not supported");
  }

  // ---- tests ----
  // The value a test compares with (the 2 of `x is divisibleby 2`).
  static Value test_arg(const std::string& name, const CallArgs& a) {
    if (a.positional.empty()) throw TemplateError("test '" + name + "' needs an argument");
    return a.positional[0];
  }
  static bool test_defined(In&, const std::string&, const Value& v, const CallArgs&) {
    return !v.is_undefined();
  }
  static bool test_undefined(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_undefined();
  }
  static bool test_none(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_none();
  }
  static bool test_string(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_string();
  }
  static bool test_mapping(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_dict();
  }
  static bool test_iterable(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  }
  static bool test_sequence(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_string() || (v.is_list() && !v.generator_consumed) || v.is_dict() ||
           v.is_undefined();
  }
  static bool test_number(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.is_number();
  }
  static bool test_integer(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kInt;
  }
  static bool test_float(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kFloat;
  }
  static bool test_boolean(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kBool;
  }
  static bool test_true(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kBool && v.b;
  }
  static bool test_false(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kBool && !v.b;
  }
  static bool test_callable(In&, const std::string&, const Value& v, const CallArgs&) {
    return v.kind == Value::Kind::kFunction;
  }
  // odd, even
  static bool test_odd(In&, const std::string& name, const Value& v, const CallArgs&) {
    if (!In::is_intlike(v)) In::bad_operands("%", v, Value::integer(2));
    const bool odd = (In::as_int(v) % 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  static bool test_divisibleby(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    const Value d = test_arg(name, a);
    if (!In::is_intlike(v) || !In::is_intlike(d)) In::bad_operands("%", v, d);
    if (In::as_int(d) == 0) throw TemplateError("integer division or modulo by zero");
    return in.binary("%", v, d).i == 0;
  }
  // equalto, eq, ==
  static bool test_eq(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return equals(v, test_arg(name, a), in.budget_);
  }
  // ne, !=
  static bool test_ne(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return !equals(v, test_arg(name, a), in.budget_);
  }
  // lt, lessthan, <
  static bool test_lt(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return in.order(v, test_arg(name, a), "<") < 0;
  }
  // le, <=
  static bool test_le(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return in.order(v, test_arg(name, a), "<=") <= 0;
  }
  // gt, greaterthan, >
  static bool test_gt(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return in.order(v, test_arg(name, a), ">") > 0;
  }
  // ge, >=
  static bool test_ge(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return in.order(v, test_arg(name, a), ">=") >= 0;
  }
  static bool test_in(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    return in.contains(test_arg(name, a), v);
  }
  static bool test_sameas(In& in, const std::string& name, const Value& v, const CallArgs& a) {
    const Value o = test_arg(name, a);
    if (v.kind != o.kind) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.kind == Value::Kind::kBool) return v.b == o.b;
    if (v.is_list()) return v.list == o.list;
    if (v.is_dict() || v.kind == Value::Kind::kNamespace) return v.dict == o.dict;
    return equals(v, o, in.budget_);
  }
  // lower, upper
  static bool test_lower(In& in, const std::string& name, const Value& v, const CallArgs&) {
    if (!v.is_string()) return false;
    const PString& s = *v.s;
    in.build_bytes(s.size());
    return s.text == strops::map_case(s, name == "upper").text;
  }
};

// ---- the tables
// ------------------------------------------------------------------------------------

inline const BuiltinTable<GlobalFn>& builtin_globals() {
  static const BuiltinTable<GlobalFn> table{
      {"range", Builtins::global_range},
      {"namespace", Builtins::global_namespace},
      {"dict", Builtins::global_dict},
      {"raise_exception", Builtins::global_raise_exception},
      {"strftime_now", Builtins::global_strftime_now},
  };
  return table;
}

inline const BuiltinTable<MethodFn>* builtin_methods(const Value& receiver) {
  using B = Builtins;
  static const BuiltinTable<MethodFn> str{
      {"strip", B::str_strip},
      {"lstrip", B::str_strip},
      {"rstrip", B::str_strip},
      {"split", B::str_split},
      {"rsplit", B::str_split},
      {"startswith", B::str_startswith},
      {"endswith", B::str_startswith},
      {"upper", B::str_upper},
      {"lower", B::str_upper},
      {"title", B::str_title},
      {"capitalize", B::str_capitalize},
      {"replace", B::str_replace},
      {"find", B::str_find},
      {"rfind", B::str_find},
      {"index", B::str_find},
      {"count", B::str_find},
      {"removeprefix", B::str_removeprefix},
      {"removesuffix", B::str_removeprefix},
      {"join", B::str_join},
      {"splitlines", B::str_splitlines},
      {"isdigit", B::str_isdigit},
      {"isalpha", B::str_isdigit},
      {"isalnum", B::str_isdigit},
      {"isspace", B::str_isdigit},
      {"islower", B::str_isdigit},
      {"isupper", B::str_isdigit},
      {"format", B::str_format},
  };
  static const BuiltinTable<MethodFn> dict{
      {"items", B::dict_items},         {"keys", B::dict_items},
      {"values", B::dict_items},        {"get", B::dict_get},
      {"pop", B::method_sandboxed},     {"update", B::method_sandboxed},
      {"clear", B::method_sandboxed},   {"setdefault", B::method_sandboxed},
      {"popitem", B::method_sandboxed}, {"fromkeys", B::method_sandboxed},
      {"copy", B::method_unsupported},
  };
  static const BuiltinTable<MethodFn> list{
      {"index", B::list_index},        {"count", B::list_index},
      {"append", B::method_sandboxed}, {"pop", B::method_sandboxed},
      {"extend", B::method_sandboxed}, {"insert", B::method_sandboxed},
      {"remove", B::method_sandboxed}, {"clear", B::method_sandboxed},
      {"sort", B::method_sandboxed},   {"reverse", B::method_sandboxed},
      {"copy", B::method_unsupported},
  };
  switch (receiver.kind) {
    case Value::Kind::kString:
      return &str;
    case Value::Kind::kDict:
      return &dict;
    case Value::Kind::kList:
      return &list;
    default:
      return nullptr;
  }
}

inline const BuiltinTable<FilterFn>& builtin_filters() {
  using B = Builtins;
  static const BuiltinTable<FilterFn> table{
      {"trim", B::filter_trim},
      {"tojson", B::filter_tojson},
      {"length", B::filter_length},
      {"count", B::filter_length},
      {"first", B::filter_first},
      {"last", B::filter_first},
      {"join", B::filter_join},
      {"default", B::filter_default},
      {"d", B::filter_default},
      {"upper", B::filter_upper},
      {"lower", B::filter_upper},
      {"capitalize", B::filter_capitalize},
      {"title", B::filter_title},
      {"replace", B::filter_replace},
      {"list", B::filter_list},
      {"string", B::filter_string},
      {"safe", B::filter_safe},
      {"int", B::filter_int},
      {"float", B::filter_float},
      {"abs", B::filter_abs},
      {"round", B::filter_round},
      {"items", B::filter_items},
      {"indent", B::filter_indent},
      {"dictsort", B::filter_dictsort},
      {"sort", B::filter_sort},
      {"unique", B::filter_unique},
      {"reverse", B::filter_reverse},
      {"sum", B::filter_sum},
      {"min", B::filter_min},
      {"max", B::filter_min},
      {"map", B::filter_map},
      {"select", B::filter_select},
      {"reject", B::filter_select},
      {"selectattr", B::filter_select},
      {"rejectattr", B::filter_select},
      {"center", B::filter_unsupported},
      {"truncate", B::filter_unsupported},
      {"wordwrap", B::filter_unsupported},
      {"urlencode", B::filter_unsupported},
      {"escape", B::filter_unsupported},
      {"e", B::filter_unsupported},
      {"format", B::filter_unsupported},
      {"batch", B::filter_unsupported},
      {"slice", B::filter_unsupported},
      {"groupby", B::filter_unsupported},
      {"xmlattr", B::filter_unsupported},
      {"pprint", B::filter_unsupported},
      {"filesizeformat", B::filter_unsupported},
      {"striptags", B::filter_unsupported},
      {"forceescape", B::filter_unsupported},
      {"random", B::filter_unsupported},
      {"attr", B::filter_unsupported},
      {"urlize", B::filter_unsupported},
      {"wordcount", B::filter_unsupported},
  };
  return table;
}

inline const BuiltinTable<TestFn>& builtin_tests() {
  using B = Builtins;
  static const BuiltinTable<TestFn> table{
      {"defined", B::test_defined},
      {"undefined", B::test_undefined},
      {"none", B::test_none},
      {"string", B::test_string},
      {"mapping", B::test_mapping},
      {"iterable", B::test_iterable},
      {"sequence", B::test_sequence},
      {"number", B::test_number},
      {"integer", B::test_integer},
      {"float", B::test_float},
      {"boolean", B::test_boolean},
      {"true", B::test_true},
      {"false", B::test_false},
      {"callable", B::test_callable},
      {"odd", B::test_odd},
      {"even", B::test_odd},
      {"divisibleby", B::test_divisibleby},
      {"equalto", B::test_eq},
      {"eq", B::test_eq},
      {"==", B::test_eq},
      {"ne", B::test_ne},
      {"!=", B::test_ne},
      {"lt", B::test_lt},
      {"lessthan", B::test_lt},
      {"<", B::test_lt},
      {"le", B::test_le},
      {"<=", B::test_le},
      {"gt", B::test_gt},
      {"greaterthan", B::test_gt},
      {">", B::test_gt},
      {"ge", B::test_ge},
      {">=", B::test_ge},
      {"in", B::test_in},
      {"sameas", B::test_sameas},
      {"lower", B::test_lower},
      {"upper", B::test_lower},
  };
  return table;
}

}  // namespace sgt::text::jinja
