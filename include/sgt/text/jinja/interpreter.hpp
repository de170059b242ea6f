// Jinja2 evaluator: runs a parsed template over Values, with Python's semantics and the
// sandbox transformers uses (ImmutableSandboxedEnvironment: no list.append, no dict.update).
//
// Undefined follows jinja2's default Undefined: a missing variable, dict key or list index
// gives Undefined, which renders as "", is falsy, iterates as empty and has length 0; reading
// an attribute of it, doing arithmetic with it or serializing it is an error.
//
// Limits (part of the contract, so that no template or chat can exhaust the stack, memory or
// time): nesting of blocks/expressions and macro calls <= kMaxNesting (64), rendered output and
// any single string <= kMaxOutputBytes (16 MiB), lists built by the template (range, +, *)
// <= kMaxListItems (100000) items, loop iterations per render <= kMaxLoopIterations (1000000),
// and bytes built plus items visited per render <= kMaxWorkUnits (64 Mi).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sgt/text/jinja/parser.hpp"
#include "sgt/text/jinja/value.hpp"

namespace sgt::text::jinja {

inline constexpr std::size_t kMaxOutputBytes = std::size_t{16} << 20;
inline constexpr std::size_t kMaxListItems = 100000;
inline constexpr std::size_t kMaxLoopIterations = 1000000;
inline constexpr std::size_t kMaxWorkUnits = std::size_t{64} << 20;
inline constexpr std::size_t kMaxRecursion = 512;

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

inline std::vector<PString> split(const PString& s, const PString* sep, std::int64_t maxsplit) {
  std::vector<PString> parts;
  if (sep) {
    if (sep->empty()) throw TemplateError("split: empty separator");
    std::size_t start = 0;
    while (maxsplit != 0) {
      const std::size_t hit = s.text.find(sep->text, start);
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(start, hit - start));
      start = hit + sep->size();
      if (maxsplit > 0) --maxsplit;
    }
    parts.push_back(s.substr(start));
    return parts;
  }
  // Runs of whitespace separate; leading/trailing whitespace gives no empty part.
  const auto b = utf8::boundaries(s.text);
  std::size_t k = 0;
  const std::size_t n = b.size() - 1;
  auto space = [&](std::size_t i) {
    std::size_t len = 1;
    return utf8::is_python_space(utf8::decode(s.text, b[i], &len));
  };
  while (k < n) {
    while (k < n && space(k)) ++k;
    if (k == n) break;
    if (maxsplit == 0) {
      // the rest, with trailing whitespace removed
      std::size_t end = n;
      while (end > k && space(end - 1)) --end;
      parts.push_back(s.substr(b[k], b[end] - b[k]));
      break;
    }
    const std::size_t start = k;
    while (k < n && !space(k)) ++k;
    parts.push_back(s.substr(b[start], b[k] - b[start]));
    if (maxsplit > 0) --maxsplit;
  }
  return parts;
}

inline PString replace(const PString& s, const PString& old, const PString& repl,
                       std::int64_t count) {
  PString out;
  if (old.empty()) {
    // Python inserts repl between every code point (and at both ends).
    const auto b = utf8::boundaries(s.text);
    for (std::size_t k = 0; k + 1 < b.size(); ++k) {
      if (count < 0 || static_cast<std::int64_t>(k) < count) out.append(repl);
      out.append(s.substr(b[k], b[k + 1] - b[k]));
    }
    if (count < 0 || static_cast<std::int64_t>(b.size() - 1) < count) out.append(repl);
    return out;
  }
  std::size_t start = 0;
  while (count != 0) {
    const std::size_t hit = s.text.find(old.text, start);
    if (hit == std::string::npos) break;
    out.append(s.substr(start, hit - start));
    out.append(repl);
    if (out.size() > kMaxOutputBytes) throw TemplateError("replace: result larger than 16 MiB");
    start = hit + old.size();
    if (count > 0) --count;
  }
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
inline std::vector<PString> splitlines(const PString& s) {
  std::vector<PString> lines;
  std::size_t start = 0, k = 0;
  while (k < s.text.size()) {
    std::size_t len = 1;
    const std::uint32_t cp = utf8::decode(s.text, k, &len);
    const bool br = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C ||
                    cp == 0x1D || cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (br) {
      lines.push_back(s.substr(start, k - start));
      k += len;
      if (cp == '\r' && k < s.text.size() && s.text[k] == '\n') ++k;
      start = k;
    } else {
      k += len;
    }
  }
  if (start < s.text.size()) lines.push_back(s.substr(start));
  return lines;
}

}  // namespace strops

// ---- the evaluator
// ---------------------------------------------------------------------------------

struct RenderLimits {
  std::size_t max_output_bytes = kMaxOutputBytes;
  std::size_t max_loop_iterations = kMaxLoopIterations;
};

class Interpreter {
 public:
  // `globals` are the context variables (messages, tools, bos_token, ...). `date` is what
  // strftime_now formats (the render is deterministic: no clock is read).
  Interpreter(const Body& program, std::vector<std::pair<std::string, Value>> globals, std::tm date)
      : program_(program), date_(date) {
    scopes_.push_back({});
    for (auto& kv : globals) set_var(kv.first, std::move(kv.second));
    install_builtins();
  }

  ~Interpreter() {
    for (auto& w : namespaces_)
      if (auto d = w.lock()) {
        Dict doomed;
        doomed.swap(*d);
      }
  }
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders; a TemplateError escapes as a LocatedError at the node being evaluated.
  PString render() {
    outputs_.push_back({});
    try {
      exec_body(program_);
    } catch (const LocatedError&) {
      throw;
    } catch (const TemplateError& e) {
      throw LocatedError(e.message(), pos_);
    }
    return std::move(outputs_.back());
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::vector<std::pair<std::string, Value>>;

  // ---- scopes ----
  Value* find_var(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      for (auto& kv : *it)
        if (kv.first == name) return &kv.second;
    return nullptr;
  }
  void set_var(const std::string& name, Value v) {
    for (auto& kv : scopes_.back())
      if (kv.first == name) {
        kv.second = std::move(v);
        return;
      }
    scopes_.back().emplace_back(name, std::move(v));
  }
  struct ScopeGuard {
    ScopeGuard(Interpreter& in, Scope s = {}) : in_(in) { in_.scopes_.push_back(std::move(s)); }
    ~ScopeGuard() { in_.scopes_.pop_back(); }
    Interpreter& in_;
  };

  // ---- output ----
  void emit(const PString& s) {
    charge(s.size());
    PString& out = outputs_.back();
    out.append(s);
    if (out.size() > limits_.max_output_bytes) throw TemplateError("output larger than 16 MiB");
  }
  void emit_plain(const std::string& s) {
    PString& out = outputs_.back();
    out.append_plain(s);
    if (out.size() > limits_.max_output_bytes) throw TemplateError("output larger than 16 MiB");
  }

  // ---- statements ----
  Flow exec_body(const Body& body) {
    for (const auto& n : body) {
      const Flow f = exec(*n);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec(const Node& n) {
    RecursionGuard depth(*this);
    pos_ = n.pos;
    switch (n.kind) {
      case Node::Kind::kText:
        emit_plain(n.text);
        return Flow::kNormal;
      case Node::Kind::kOutput:
        emit(to_pstring(eval(*n.expr)));
        return Flow::kNormal;
      case Node::Kind::kIf:
        for (const auto& br : n.branches)
          if (truthy(eval(*br.first))) return exec_body(br.second);
        return exec_body(n.else_body);
      case Node::Kind::kFor:
        return exec_for(n);
      case Node::Kind::kSet: {
        Value v = eval(*n.expr);
        pos_ = n.pos;
        if (n.targets.size() == 1) {
          set_var(n.targets[0], std::move(v));
        } else {
          Value* ns = find_var(n.targets[0]);
          if (!ns || ns->kind != Value::Kind::kNamespace)
            throw TemplateError("cannot assign attribute '" + n.targets[1] + "' of '" +
                                n.targets[0] + "': it is not a namespace");
          if (!n.targets[1].empty() && n.targets[1][0] == '_')
            throw TemplateError("namespace attributes may not start with '_'");
          for (auto& kv : *ns->dict)
            if (kv.first == n.targets[1]) {
              kv.second = std::move(v);
              return Flow::kNormal;
            }
          ns->dict->emplace_back(n.targets[1], std::move(v));
        }
        return Flow::kNormal;
      }
      case Node::Kind::kSetBlock: {
        outputs_.push_back({});
        exec_body(n.body);
        PString captured = std::move(outputs_.back());
        outputs_.pop_back();
        set_var(n.name, Value::string(std::move(captured)));
        return Flow::kNormal;
      }
      case Node::Kind::kMacro:
        set_var(n.name, make_macro(n));
        return Flow::kNormal;
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
      case Node::Kind::kGeneration:
        return exec_body(n.body);
    }
    return Flow::kNormal;
  }

  std::vector<Value> iterate(const Value& v, const char* what) {
    if (v.is_list()) charge(v.list->size());
    if (v.is_dict()) charge(v.dict->size());
    if (v.is_string()) charge(v.s->size());
    switch (v.kind) {
      case Value::Kind::kUndefined:
        return {};
      case Value::Kind::kList:
        if (v.generator_consumed) {
          if (*v.generator_consumed) return {};
          *v.generator_consumed = true;
        }
        return *v.list;
      case Value::Kind::kDict: {
        std::vector<Value> keys;
        for (const auto& kv : *v.dict) keys.push_back(Value::plain(kv.first));
        return keys;
      }
      case Value::Kind::kString: {
        std::vector<Value> chars;
        const auto b = utf8::boundaries(v.str());
        for (std::size_t k = 0; k + 1 < b.size(); ++k)
          chars.push_back(Value::string(v.s->substr(b[k], b[k + 1] - b[k])));
        return chars;
      }
      default:
        throw TemplateError(std::string(what) + ": '" + type_name(v) + "' object is not iterable");
    }
  }

  static Value generator(List items) {
    Value v = Value::make_list(std::move(items));
    v.generator_consumed = std::make_shared<bool>(false);
    return v;
  }

  // Python's str + str when one side is Markup (|safe): the other side is HTML-escaped.
  static PString html_escape(const PString& s) {
    PString out;
    for (std::size_t k = 0; k < s.size(); ++k) {
      const char c = s.text[k];
      const char* rep = c == '&'    ? "&amp;"
                        : c == '<'  ? "&lt;"
                        : c == '>'  ? "&gt;"
                        : c == '"'  ? "&#34;"
                        : c == '\'' ? "&#39;"
                                    : nullptr;
      if (!rep) {
        out.append_byte(c, s.flags[k]);
        continue;
      }
      out.text += rep;
      out.flags.append(std::char_traits<char>::length(rep), s.flags[k]);
    }
    return out;
  }

  void count_iteration() {
    if (++iterations_ > limits_.max_loop_iterations)
      throw TemplateError("more than " + std::to_string(limits_.max_loop_iterations) +
                          " loop iterations in one render");
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      set_var(targets[0], item);
      return;
    }
    std::vector<Value> parts = iterate(item, "for");
    if (parts.size() != targets.size())
      throw TemplateError("cannot unpack " + std::to_string(parts.size()) + " values into " +
                          std::to_string(targets.size()) + " loop variables");
    for (std::size_t k = 0; k < targets.size(); ++k) set_var(targets[k], parts[k]);
  }

  Flow exec_for(const Node& n) {
    std::vector<Value> items = iterate(eval(*n.expr), "for");
    if (n.filter) {
      std::vector<Value> kept;
      for (auto& it : items) {
        count_iteration();
        ScopeGuard g(*this);
        bind_targets(n.targets, it);
        if (truthy(eval(*n.filter))) kept.push_back(std::move(it));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec_body(n.else_body);
      return Flow::kNormal;
    }
    const std::size_t len = items.size();
    auto index = std::make_shared<std::size_t>(0);
    Value loop = Value::make_dict({
        {"index", Value::integer(1)},
        {"index0", Value::integer(0)},
        {"revindex", Value::integer(0)},
        {"revindex0", Value::integer(0)},
        {"first", Value::boolean(true)},
        {"last", Value::boolean(false)},
        {"length", Value::integer(static_cast<std::int64_t>(len))},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"previtem", Value::undefined("loop.previtem")},
        {"nextitem", Value::undefined("loop.nextitem")},
        {"cycle", Value::function("loop.cycle",
                                  [index](CallArgs& a) {
                                    if (a.positional.empty())
                                      throw TemplateError("loop.cycle: no items");
                                    return a.positional[*index % a.positional.size()];
                                  })},
    });
    for (std::size_t k = 0; k < len; ++k) {
      count_iteration();
      ScopeGuard g(*this);
      // One loop object per loop, updated in place each iteration (as jinja2's LoopContext).
      Dict& d = *loop.dict;
      d[0].second.i = static_cast<std::int64_t>(k + 1);
      d[1].second.i = static_cast<std::int64_t>(k);
      d[2].second.i = static_cast<std::int64_t>(len - k);
      d[3].second.i = static_cast<std::int64_t>(len - k - 1);
      d[4].second.b = k == 0;
      d[5].second.b = k + 1 == len;
      d[9].second = k > 0 ? items[k - 1] : Value::undefined("loop.previtem");
      d[10].second = k + 1 < len ? items[k + 1] : Value::undefined("loop.nextitem");
      *index = k;
      set_var("loop", loop);
      bind_targets(n.targets, items[k]);
      const Flow f = exec_body(n.body);
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Value::function(n.name, [this, node](CallArgs& a) {
      if (++call_depth_ > kMaxNesting) {
        --call_depth_;
        throw TemplateError("macro calls nested deeper than " + std::to_string(kMaxNesting));
      }
      struct Down {
        std::size_t& d;
        ~Down() { --d; }
      } down{call_depth_};
      if (a.positional.size() > node->params.size())
        throw TemplateError("macro '" + node->name + "' takes " +
                            std::to_string(node->params.size()) + " arguments, got " +
                            std::to_string(a.positional.size()));
      Scope frame;
      for (std::size_t k = 0; k < node->params.size(); ++k) {
        const auto& p = node->params[k];
        Value v = Value::undefined(p.first);
        bool given = false;
        if (k < a.positional.size()) {
          v = a.positional[k];
          given = true;
        }
        for (const auto& kv : a.keyword)
          if (kv.first == p.first) {
            v = kv.second;
            given = true;
          }
        if (!given && p.second) v = eval(*p.second);
        frame.emplace_back(p.first, std::move(v));
      }
      for (const auto& kv : a.keyword) {
        bool known = false;
        for (const auto& p : node->params) known = known || p.first == kv.first;
        if (!known)
          throw TemplateError("macro '" + node->name + "' has no parameter '" + kv.first + "'");
      }
      // A macro sees the template's top-level variables and its own parameters.
      std::vector<Scope> saved(scopes_.begin() + 1, scopes_.end());
      scopes_.resize(1);
      scopes_.push_back(std::move(frame));
      outputs_.push_back({});
      struct Restore {
        Interpreter& in;
        std::vector<Scope>& saved;
        ~Restore() {
          in.scopes_.resize(1);
          for (auto& s : saved) in.scopes_.push_back(std::move(s));
        }
      } restore{*this, saved};
      try {
        exec_body(node->body);
      } catch (...) {
        outputs_.pop_back();
        throw;
      }
      PString out = std::move(outputs_.back());
      outputs_.pop_back();
      return Value::string(std::move(out));
    });
  }

  // ---- expressions ----
  struct PosGuard {
    PosGuard(Interpreter& in, SourcePos p) : in_(in), saved_(in.pos_) { in_.pos_ = p; }
    ~PosGuard() {
      if (!std::uncaught_exceptions()) in_.pos_ = saved_;
    }
    Interpreter& in_;
    SourcePos saved_;
  };

  [[noreturn]] static void undefined_error(const Value& v) {
    throw TemplateError(v.name.empty() ? "undefined value used" : "'" + v.name + "' is undefined");
  }

  // Evaluation and execution recurse; their combined depth (macros included) is bounded so
  // that the stack is too.
  struct RecursionGuard {
    explicit RecursionGuard(Interpreter& in) : in_(in) {
      if (++in_.recursion_ > kMaxRecursion) {
        --in_.recursion_;
        throw TemplateError("template evaluation nested deeper than " +
                            std::to_string(kMaxRecursion) + " levels");
      }
    }
    ~RecursionGuard() { --in_.recursion_; }
    Interpreter& in_;
  };

  Value eval(const Expr& e) {
    RecursionGuard depth(*this);
    PosGuard guard(*this, e.pos);
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName: {
        if (Value* v = find_var(e.name)) return *v;
        auto it = builtins_.find(e.name);
        if (it != builtins_.end()) return it->second;
        return Value::undefined(e.name);
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List items;
        for (const auto& a : e.args) items.push_back(eval(*a));
        Value v = Value::make_list(std::move(items));
        v.is_tuple = e.kind == Expr::Kind::kTuple;
        return v;
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (std::size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k]);
          if (!key.is_string()) throw TemplateError("dict literal keys must be strings");
          Value val = eval(*e.args[k + 1]);
          bool replaced = false;
          for (auto& kv : d)
            if (kv.first == key.str()) {
              kv.second = val;
              replaced = true;
            }
          if (!replaced) d.emplace_back(key.str(), std::move(val));
        }
        return Value::make_dict(std::move(d));
      }
      case Expr::Kind::kAttr: {
        Value obj = eval(*e.args[0]);
        pos_ = e.pos;
        return getattr(obj, e.name);
      }
      case Expr::Kind::kSubscript: {
        Value obj = eval(*e.args[0]);
        Value key = eval(*e.args[1]);
        pos_ = e.pos;
        return getitem(obj, key);
      }
      case Expr::Kind::kSlice: {
        Value obj = eval(*e.args[0]);
        Value parts[3];
        for (int k = 0; k < 3; ++k)
          parts[k] = e.args[static_cast<std::size_t>(k) + 1]
                         ? eval(*e.args[static_cast<std::size_t>(k) + 1])
                         : Value::none();
        pos_ = e.pos;
        return slice(obj, parts[0], parts[1], parts[2]);
      }
      case Expr::Kind::kCall: {
        Value callee = eval(*e.args[0]);
        CallArgs args = eval_args(e, 1);
        pos_ = e.pos;
        if (callee.kind != Value::Kind::kFunction) {
          if (callee.is_undefined()) undefined_error(callee);
          throw TemplateError(std::string("'") + type_name(callee) + "' object is not callable");
        }
        args.what = callee.name;
        return (*callee.fn)(args);
      }
      case Expr::Kind::kFilter: {
        Value obj = eval(*e.args[0]);
        CallArgs args = eval_args(e, 1);
        pos_ = e.pos;
        args.what = "filter '" + e.name + "'";
        return apply_filter(e.name, obj, args);
      }
      case Expr::Kind::kTest: {
        Value obj = eval(*e.args[0]);
        CallArgs args = eval_args(e, 1);
        pos_ = e.pos;
        args.what = "test '" + e.name + "'";
        const bool r = apply_test(e.name, obj, args);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        Value v = eval(*e.args[0]);
        pos_ = e.pos;
        if (v.is_undefined()) undefined_error(v);
        if (e.kind == Expr::Kind::kPos && v.is_number())
          return v.kind == Value::Kind::kBool ? Value::integer(v.b) : v;
        if (v.kind == Value::Kind::kFloat) return Value::floating(-v.f);
        if (v.kind == Value::Kind::kInt || v.kind == Value::Kind::kBool) {
          const std::int64_t x = v.kind == Value::Kind::kBool ? v.b : v.i;
          if (x == std::numeric_limits<std::int64_t>::min())
            throw TemplateError("integer overflow");
          return Value::integer(-x);
        }
        throw TemplateError(std::string("bad operand type for unary -: '") + type_name(v) + "'");
      }
      case Expr::Kind::kNot:
        return Value::boolean(!truthy(eval(*e.args[0])));
      case Expr::Kind::kAnd: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? eval(*e.args[1]) : l;
      }
      case Expr::Kind::kOr: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? l : eval(*e.args[1]);
      }
      case Expr::Kind::kCond: {
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undefined("conditional expression without else");
      }
      case Expr::Kind::kConcat: {
        PString s;
        for (const auto& a : e.args) {
          s.append(to_pstring(eval(*a)));
          check_size(s);
        }
        return Value::string(std::move(s));
      }
      case Expr::Kind::kBinary: {
        Value l = eval(*e.args[0]);
        Value r = eval(*e.args[1]);
        pos_ = e.pos;
        return binary(e.name, l, r);
      }
      case Expr::Kind::kCompare: {
        Value l = eval(*e.args[0]);
        for (std::size_t k = 0; k < e.ops.size(); ++k) {
          Value r = eval(*e.args[k + 1]);
          pos_ = e.pos;
          if (!compare(e.ops[k], l, r)) return Value::boolean(false);
          l = std::move(r);
        }
        return Value::boolean(true);
      }
    }
    throw TemplateError("unknown expression");
  }

  CallArgs eval_args(const Expr& e, std::size_t first) {
    CallArgs a;
    for (std::size_t k = first; k < e.args.size(); ++k) a.positional.push_back(eval(*e.args[k]));
    for (const auto& kv : e.kwargs) a.keyword.emplace_back(kv.first, eval(*kv.second));
    return a;
  }

  void check_size(const PString& s) {
    charge(s.size());
    if (s.size() > kMaxOutputBytes) throw TemplateError("string larger than 16 MiB");
  }
  // Work done by one render, in bytes built and items visited: a template that loops 1000000
  // times over a 100000-item list, or grows a string quadratically, stops here instead of
  // running for hours.
  void charge(std::size_t units) {
    work_ += units;
    if (work_ > kMaxWorkUnits)
      throw TemplateError("render too expensive (more than " + std::to_string(kMaxWorkUnits) +
                          " bytes built or items visited)");
  }
  static void check_items(std::size_t n) {
    if (n > kMaxListItems)
      throw TemplateError("list longer than " + std::to_string(kMaxListItems) + " items");
  }

  // ---- attribute, item, slice ----
  Value getattr(const Value& obj, const std::string& name) {
    switch (obj.kind) {
      case Value::Kind::kUndefined:
        throw TemplateError(
            (obj.name.empty() ? std::string("undefined value") : "'" + obj.name + "'") +
            " is undefined (reading attribute '" + name + "')");
      case Value::Kind::kDict: {
        static const char* const methods[] = {"items",      "keys",    "values",  "get",
                                              "pop",        "update",  "copy",    "clear",
                                              "setdefault", "popitem", "fromkeys"};
        for (const char* m : methods)
          if (name == m) return bound_method(obj, name);
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      }
      case Value::Kind::kNamespace:
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      case Value::Kind::kString: {
        static const char* const methods[] = {
            "strip",    "lstrip",       "rstrip",      "split",   "rsplit",     "startswith",
            "endswith", "upper",        "lower",       "replace", "title",      "capitalize",
            "find",     "rfind",        "count",       "join",    "splitlines", "isdigit",
            "isalpha",  "isalnum",      "isspace",     "islower", "isupper",    "format",
            "index",    "removeprefix", "removesuffix"};
        for (const char* m : methods)
          if (name == m) return bound_method(obj, name);
        return Value::undefined(name);
      }
      case Value::Kind::kList: {
        static const char* const methods[] = {"append", "pop",   "extend", "insert",
                                              "remove", "clear", "sort",   "reverse",
                                              "index",  "count", "copy"};
        for (const char* m : methods)
          if (name == m) return bound_method(obj, name);
        return Value::undefined(name);
      }
      default:
        return Value::undefined(name);
    }
  }

  static std::int64_t py_index(std::int64_t i, std::size_t size) {
    return i < 0 ? i + static_cast<std::int64_t>(size) : i;
  }

  Value getitem(const Value& obj, const Value& key) {
    switch (obj.kind) {
      case Value::Kind::kUndefined:
        throw TemplateError(
            (obj.name.empty() ? std::string("undefined value") : "'" + obj.name + "'") +
            " is undefined (subscripted)");
      case Value::Kind::kDict:
      case Value::Kind::kNamespace:
        if (key.is_string()) {
          if (const Value* v = obj.find(key.str())) return *v;
          if (obj.kind == Value::Kind::kDict) return getattr(obj, key.str());
        }
        return Value::undefined(key.is_string() ? key.str() : std::string());
      case Value::Kind::kList:
        if (obj.generator_consumed) return Value::undefined("generator item");
        if (key.kind == Value::Kind::kInt || key.kind == Value::Kind::kBool) {
          const std::int64_t i =
              py_index(key.kind == Value::Kind::kBool ? key.b : key.i, obj.list->size());
          if (i < 0 || i >= static_cast<std::int64_t>(obj.list->size()))
            return Value::undefined("list index");
          return (*obj.list)[static_cast<std::size_t>(i)];
        }
        if (key.is_string()) return getattr(obj, key.str());
        return Value::undefined();
      case Value::Kind::kString:
        if (key.kind == Value::Kind::kInt || key.kind == Value::Kind::kBool) {
          const auto b = utf8::boundaries(obj.str());
          const std::int64_t i =
              py_index(key.kind == Value::Kind::kBool ? key.b : key.i, b.size() - 1);
          if (i < 0 || i >= static_cast<std::int64_t>(b.size() - 1))
            return Value::undefined("string index");
          const auto u = static_cast<std::size_t>(i);
          return Value::string(obj.s->substr(b[u], b[u + 1] - b[u]));
        }
        if (key.is_string()) return getattr(obj, key.str());
        return Value::undefined();
      default:
        return Value::undefined();
    }
  }

  static std::int64_t slice_int(const Value& v, const char* what) {
    if (v.kind == Value::Kind::kInt) return v.i;
    if (v.kind == Value::Kind::kBool) return v.b;
    throw TemplateError(std::string("slice ") + what + " must be an integer or none, got " +
                        type_name(v));
  }

  // Python's slice.indices() then the selected positions.
  static std::vector<std::size_t> slice_positions(std::size_t size, const Value& start_v,
                                                  const Value& stop_v, const Value& step_v) {
    const std::int64_t n = static_cast<std::int64_t>(size);
    const std::int64_t step = step_v.is_none() ? 1 : slice_int(step_v, "step");
    if (step == 0) throw TemplateError("slice step cannot be zero");
    std::int64_t start, stop;
    auto clamp = [&](const Value& v, std::int64_t dflt, const char* what) {
      if (v.is_none()) return dflt;
      std::int64_t x = slice_int(v, what);
      if (x < 0) {
        x += n;
        if (x < 0) x = step < 0 ? -1 : 0;
      } else if (x >= n) {
        x = step < 0 ? n - 1 : n;
      }
      return x;
    };
    start = clamp(start_v, step < 0 ? n - 1 : 0, "start");
    stop = clamp(stop_v, step < 0 ? -1 : n, "stop");
    std::vector<std::size_t> pos;
    if (step > 0)
      for (std::int64_t k = start; k < stop; k += step) pos.push_back(static_cast<std::size_t>(k));
    else
      for (std::int64_t k = start; k > stop; k += step) pos.push_back(static_cast<std::size_t>(k));
    return pos;
  }

  Value slice(const Value& obj, const Value& a, const Value& b, const Value& c) {
    if (obj.generator_consumed) throw TemplateError("'generator' object is not subscriptable");
    if (obj.is_list()) {
      List out;
      for (std::size_t k : slice_positions(obj.list->size(), a, b, c))
        out.push_back((*obj.list)[k]);
      Value v = Value::make_list(std::move(out));
      v.is_tuple = obj.is_tuple;
      return v;
    }
    if (obj.is_string()) {
      const auto bounds = utf8::boundaries(obj.str());
      PString out;
      for (std::size_t k : slice_positions(bounds.size() - 1, a, b, c))
        out.append(obj.s->substr(bounds[k], bounds[k + 1] - bounds[k]));
      return Value::string(std::move(out));
    }
    if (obj.is_undefined()) undefined_error(obj);
    throw TemplateError(std::string("'") + type_name(obj) + "' object is not subscriptable");
  }

  // ---- operators ----
  static bool is_intlike(const Value& v) {
    return v.kind == Value::Kind::kInt || v.kind == Value::Kind::kBool;
  }
  static std::int64_t as_int(const Value& v) { return v.kind == Value::Kind::kBool ? v.b : v.i; }

  [[noreturn]] static void bad_operands(const std::string& op, const Value& l, const Value& r) {
    if (l.is_undefined()) undefined_error(l);
    if (r.is_undefined()) undefined_error(r);
    throw TemplateError("unsupported operand types for " + op + ": '" + type_name(l) + "' and '" +
                        type_name(r) + "'");
  }

  Value repeat(const Value& seq, std::int64_t times) {
    if (times < 0) times = 0;
    if (seq.is_string()) {
      if (seq.s->size() && static_cast<std::uint64_t>(times) > kMaxOutputBytes / seq.s->size())
        throw TemplateError("string larger than 16 MiB");
      PString out;
      for (std::int64_t k = 0; k < times; ++k) out.append(*seq.s);
      return Value::string(std::move(out));
    }
    if (seq.list->size() && static_cast<std::uint64_t>(times) > kMaxListItems / seq.list->size())
      check_items(kMaxListItems + 1);
    List out;
    for (std::int64_t k = 0; k < times; ++k)
      out.insert(out.end(), seq.list->begin(), seq.list->end());
    return Value::make_list(std::move(out));
  }

  Value binary(const std::string& op, const Value& l, const Value& r) {
    const bool ints = is_intlike(l) && is_intlike(r);
    const bool nums = l.is_number() && r.is_number();
    std::int64_t out = 0;
    if (op == "+") {
      if (ints) {
        if (__builtin_add_overflow(as_int(l), as_int(r), &out))
          throw TemplateError("integer overflow");
        return Value::integer(out);
      }
      if (nums) return Value::floating(as_double(l) + as_double(r));
      if (l.is_string() && r.is_string()) {
        const bool markup = l.markup || r.markup;
        PString s = markup && !l.markup ? html_escape(*l.s) : *l.s;
        s.append(markup && !r.markup ? html_escape(*r.s) : *r.s);
        check_size(s);
        Value v = Value::string(std::move(s));
        v.markup = markup;
        return v;
      }
      if (l.is_list() && r.is_list() && !l.generator_consumed && !r.generator_consumed) {
        check_items(l.list->size() + r.list->size());
        List items = *l.list;
        items.insert(items.end(), r.list->begin(), r.list->end());
        return Value::make_list(std::move(items));
      }
      bad_operands(op, l, r);
    }
    if (op == "-") {
      if (ints) {
        if (__builtin_sub_overflow(as_int(l), as_int(r), &out))
          throw TemplateError("integer overflow");
        return Value::integer(out);
      }
      if (nums) return Value::floating(as_double(l) - as_double(r));
      bad_operands(op, l, r);
    }
    if (op == "*") {
      if (ints) {
        if (__builtin_mul_overflow(as_int(l), as_int(r), &out))
          throw TemplateError("integer overflow");
        return Value::integer(out);
      }
      if (nums) return Value::floating(as_double(l) * as_double(r));
      if ((l.is_string() || l.is_list()) && is_intlike(r)) return repeat(l, as_int(r));
      if ((r.is_string() || r.is_list()) && is_intlike(l)) return repeat(r, as_int(l));
      bad_operands(op, l, r);
    }
    if (op == "/") {
      if (!nums) bad_operands(op, l, r);
      if (as_double(r) == 0) throw TemplateError("division by zero");
      return Value::floating(as_double(l) / as_double(r));
    }
    if (op == "//" || op == "%") {
      if (l.is_string() && op == "%")
        throw TemplateError("string formatting with '%' is not supported");
      if (!nums) bad_operands(op, l, r);
      if (ints) {
        const std::int64_t a = as_int(l), b = as_int(r);
        if (b == 0) throw TemplateError("integer division or modulo by zero");
        if (a == std::numeric_limits<std::int64_t>::min() && b == -1)
          throw TemplateError("integer overflow");
        std::int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {
          --q;
          m += b;
        }
        return Value::integer(op == "//" ? q : m);
      }
      const double a = as_double(l), b = as_double(r);
      if (b == 0) throw TemplateError("float division or modulo by zero");
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      if (op == "%") return Value::floating(m);
      return Value::floating(std::floor((a - m) / b + 0.5) == (a - m) / b ? (a - m) / b
                                                                          : std::floor(a / b));
    }
    if (op == "**") {
      if (ints && as_int(r) >= 0) {
        std::int64_t base = as_int(l), e = as_int(r), acc = 1;
        while (e-- > 0)
          if (__builtin_mul_overflow(acc, base, &acc)) throw TemplateError("integer overflow");
        return Value::integer(acc);
      }
      if (nums) return Value::floating(std::pow(as_double(l), as_double(r)));
      bad_operands(op, l, r);
    }
    throw TemplateError("unknown operator " + op);
  }

  // Python's <, for the types templates compare.
  static int order(const Value& l, const Value& r, const std::string& op) {
    if (l.is_number() && r.is_number()) {
      if (is_intlike(l) && is_intlike(r)) return as_int(l) < as_int(r) ? -1 : as_int(l) > as_int(r);
      const double a = as_double(l), b = as_double(r);
      return a < b ? -1 : a > b;
    }
    if (l.is_string() && r.is_string())
      return l.str().compare(r.str()) < 0 ? -1 : l.str() != r.str();
    if (l.is_list() && r.is_list()) {
      for (std::size_t k = 0; k < l.list->size() && k < r.list->size(); ++k)
        if (!equals((*l.list)[k], (*r.list)[k])) return order((*l.list)[k], (*r.list)[k], op);
      return l.list->size() < r.list->size() ? -1 : l.list->size() > r.list->size();
    }
    bad_operands(op, l, r);
  }

  bool contains(const Value& container, const Value& item) {
    if (container.is_list()) charge(container.list->size());
    if (container.is_dict()) charge(container.dict->size());
    if (container.is_string()) charge(container.s->size());
    switch (container.kind) {
      case Value::Kind::kUndefined:
        return false;
      case Value::Kind::kString:
        if (!item.is_string())
          throw TemplateError(std::string("'in <string>' requires string as left operand, not ") +
                              type_name(item));
        return container.str().find(item.str()) != std::string::npos;
      case Value::Kind::kList:
        if (container.generator_consumed) {
          if (*container.generator_consumed) return false;
          *container.generator_consumed = true;
        }
        for (const auto& v : *container.list)
          if (equals(v, item)) return true;
        return false;
      case Value::Kind::kDict:
        return item.is_string() && container.find(item.str()) != nullptr;
      default:
        throw TemplateError(std::string("argument of type '") + type_name(container) +
                            "' is not iterable");
    }
  }

  bool compare(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equals(l, r);
    if (op == "!=") return !equals(l, r);
    if (op == "in") return contains(r, l);
    if (op == "not in") return !contains(r, l);
    const int c = order(l, r, op);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;  // ">="
  }

  // ---- builtins: globals ----
  void install_builtins() {
    builtins_["range"] = Value::function("range", [this](CallArgs& a) {
      std::int64_t start = 0, stop = 0, step = 1;
      auto num = [&](std::size_t k) {
        if (!is_intlike(a.positional[k])) throw TemplateError("range: arguments must be integers");
        return as_int(a.positional[k]);
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
      List out;
      for (std::int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        check_items(out.size() + 1);
        charge(1);
        out.push_back(Value::integer(k));
        if ((step > 0 && k > std::numeric_limits<std::int64_t>::max() - step) ||
            (step < 0 && k < std::numeric_limits<std::int64_t>::min() - step))
          break;
      }
      return Value::make_list(std::move(out));
    });
    builtins_["namespace"] = Value::function("namespace", [this](CallArgs& a) {
      Value ns;
      ns.kind = Value::Kind::kNamespace;
      ns.dict = std::make_shared<Dict>();
      ns.depth = 1;
      namespaces_.push_back(ns.dict);
      for (const auto& p : a.positional) {
        if (!p.is_dict()) throw TemplateError("namespace: positional argument must be a dict");
        for (const auto& kv : *p.dict) ns.dict->push_back(kv);
      }
      for (const auto& kv : a.keyword) {
        if (!kv.first.empty() && kv.first[0] == '_')
          throw TemplateError("namespace attributes may not start with '_'");
        bool found = false;
        for (auto& e : *ns.dict)
          if (e.first == kv.first) e.second = kv.second, found = true;
        if (!found) ns.dict->push_back(kv);
      }
      return ns;
    });
    builtins_["dict"] = Value::function("dict", [](CallArgs& a) {
      Dict d;
      for (const auto& p : a.positional) {
        if (!p.is_dict()) throw TemplateError("dict: positional argument must be a dict");
        d = *p.dict;
      }
      for (const auto& kv : a.keyword) {
        bool found = false;
        for (auto& e : d)
          if (e.first == kv.first) e.second = kv.second, found = true;
        if (!found) d.push_back(kv);
      }
      return Value::make_dict(std::move(d));
    });
    builtins_["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
      throw TemplateError("raise_exception: " + (a.positional.empty()
                                                     ? std::string()
                                                     : to_pstring(a.positional[0]).text));
    });
    builtins_["strftime_now"] = Value::function("strftime_now", [this](CallArgs& a) {
      if (a.positional.size() != 1 || !a.positional[0].is_string())
        throw TemplateError("strftime_now expects one format string");
      char buf[256];
      const std::size_t n = std::strftime(buf, sizeof buf, a.positional[0].str().c_str(), &date_);
      if (n == 0 && !a.positional[0].str().empty())
        throw TemplateError("strftime_now: format too long or empty result");
      return Value::plain(std::string(buf, n));
    });
  }

  // ---- methods ----
  Value bound_method(const Value& obj, const std::string& name) {
    return Value::function(name,
                           [this, obj, name](CallArgs& a) { return call_method(obj, name, a); });
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
    if (!is_intlike(v)) throw TemplateError(a.what + ": argument '" + kw + "' must be an integer");
    return as_int(v);
  }

  Value string_list(std::vector<PString> parts) {
    check_items(parts.size());
    List items;
    for (auto& p : parts) items.push_back(Value::string(std::move(p)));
    return Value::make_list(std::move(items));
  }

  Value call_method(const Value& obj, const std::string& name, CallArgs& a) {
    a.what = "method '" + name + "'";
    if (obj.is_string()) {
      const PString& s = *obj.s;
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const Value chars = a.get(0, "chars", Value::none());
        std::vector<std::uint32_t> set;
        if (!chars.is_none()) {
          if (!chars.is_string()) throw TemplateError(a.what + ": chars must be a string");
          set = strops::code_points(chars.str());
        }
        return Value::string(
            strops::strip(s, name != "rstrip", name != "lstrip", chars.is_none() ? nullptr : &set));
      }
      if (name == "split" || name == "rsplit") {
        const Value sep = a.get(0, "sep", Value::none());
        const std::int64_t maxsplit = arg_int(a, 1, "maxsplit", -1);
        if (name == "rsplit" && maxsplit >= 0)
          throw TemplateError("rsplit with maxsplit is not supported");
        if (!sep.is_none() && !sep.is_string())
          throw TemplateError(a.what + ": sep must be a string");
        return string_list(strops::split(s, sep.is_none() ? nullptr : sep.s.get(), maxsplit));
      }
      if (name == "startswith" || name == "endswith") {
        const Value p = a.get(0, "prefix", Value::none());
        std::vector<std::string> options;
        if (p.is_string())
          options.push_back(p.str());
        else if (p.is_list())
          for (const auto& x : *p.list) {
            if (!x.is_string()) throw TemplateError(a.what + ": tuple items must be strings");
            options.push_back(x.str());
          }
        else
          throw TemplateError(a.what + ": argument must be a string or a tuple of strings");
        if (a.positional.size() > 1)
          throw TemplateError(a.what + ": start/end arguments are not supported");
        for (const auto& o : options) {
          if (o.size() > s.size()) continue;
          if (name == "startswith" ? s.text.compare(0, o.size(), o) == 0
                                   : s.text.compare(s.size() - o.size(), o.size(), o) == 0)
            return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "upper" || name == "lower")
        return Value::string(strops::map_case(s, name == "upper"));
      if (name == "title") return Value::string(strops::python_title(s));
      if (name == "capitalize") return Value::string(strops::capitalize(s));
      if (name == "replace")
        return Value::string(strops::replace(s, arg_string(a, 0, "old"), arg_string(a, 1, "new"),
                                             arg_int(a, 2, "count", -1)));
      if (name == "find" || name == "rfind" || name == "index" || name == "count") {
        const std::string& sub = arg_string(a, 0, "sub").text;
        if (a.positional.size() > 1)
          throw TemplateError(a.what + ": start/end arguments are not supported");
        if (name == "count") {
          if (sub.empty())
            return Value::integer(static_cast<std::int64_t>(utf8::length(s.text) + 1));
          std::int64_t n = 0;
          for (std::size_t p = s.text.find(sub); p != std::string::npos;
               p = s.text.find(sub, p + sub.size()))
            ++n;
          return Value::integer(n);
        }
        const std::size_t p = name == "rfind" ? s.text.rfind(sub) : s.text.find(sub);
        if (p == std::string::npos) {
          if (name == "index") throw TemplateError("substring not found");
          return Value::integer(-1);
        }
        return Value::integer(static_cast<std::int64_t>(utf8::length(s.text.substr(0, p))));
      }
      if (name == "removeprefix" || name == "removesuffix") {
        const PString& x = arg_string(a, 0, "prefix");
        if (name == "removeprefix" && s.text.compare(0, x.size(), x.text) == 0)
          return Value::string(s.substr(x.size()));
        if (name == "removesuffix" && !x.empty() && x.size() <= s.size() &&
            s.text.compare(s.size() - x.size(), x.size(), x.text) == 0)
          return Value::string(s.substr(0, s.size() - x.size()));
        return obj;
      }
      if (name == "join") {
        PString out;
        std::vector<Value> items = iterate(a.get(0, "iterable"), "join");
        for (std::size_t k = 0; k < items.size(); ++k) {
          if (k) out.append(s);
          if (!items[k].is_string())
            throw TemplateError("join: sequence item " + std::to_string(k) + " is not a string");
          out.append(*items[k].s);
          check_size(out);
        }
        return Value::string(std::move(out));
      }
      if (name == "splitlines") return string_list(strops::splitlines(s));
      if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
          name == "islower" || name == "isupper") {
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
      if (name == "format") return Value::string(format(s, a));
    }
    if (obj.is_dict()) {
      if (name == "items" || name == "keys" || name == "values") {
        if (!a.positional.empty() || !a.keyword.empty())
          throw TemplateError(a.what + " takes no arguments");
        List out;
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
      if (name == "get") {
        if (a.positional.empty() || !a.positional[0].is_string()) {
          if (!a.positional.empty()) return a.get(1, "default", Value::none());
          throw TemplateError("get: missing key");
        }
        if (const Value* v = obj.find(a.positional[0].str())) return *v;
        return a.get(1, "default", Value::none());
      }
    }
    if (obj.is_list() && (name == "index" || name == "count")) {
      const Value x = a.get(0, "value");
      std::int64_t n = 0;
      for (std::size_t k = 0; k < obj.list->size(); ++k)
        if (equals((*obj.list)[k], x)) {
          if (name == "index") return Value::integer(static_cast<std::int64_t>(k));
          ++n;
        }
      if (name == "index") throw TemplateError("index: value is not in list");
      return Value::integer(n);
    }
    if ((obj.is_list() || obj.is_dict()) && name != "copy")
      throw TemplateError("'" + std::string(type_name(obj)) + "." + name +
                          "' modifies its object, which the sandbox forbids (unsafe)");
    throw TemplateError("method '" + name + "' of " + type_name(obj) + " is not supported");
  }

  // str.format with {} / {0} / {name} fields (no format specs).
  PString format(const PString& fmt, const CallArgs& a) {
    PString out;
    std::size_t auto_index = 0;
    for (std::size_t k = 0; k < fmt.size(); ++k) {
      const char c = fmt.text[k];
      if (c == '{' && k + 1 < fmt.size() && fmt.text[k + 1] == '{') {
        out.append(fmt.substr(k, 1));
        ++k;
        continue;
      }
      if (c == '}' && k + 1 < fmt.size() && fmt.text[k + 1] == '}') {
        out.append(fmt.substr(k, 1));
        ++k;
        continue;
      }
      if (c != '{') {
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
      out.append(to_pstring(v));
      check_size(out);
      k = close;
    }
    return out;
  }

  // ---- filters ----
  Value attribute_of(const Value& v, const Value& attr) {
    if (!attr.is_string() && !is_intlike(attr))
      throw TemplateError("attribute must be a string or an integer");
    if (is_intlike(attr)) return getitem(v, attr);
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
        cur = getitem(cur, Value::integer(std::atoll(part.c_str())));
      else
        cur = getitem(cur, Value::plain(part));
      if (dot == std::string::npos) return cur;
      start = dot + 1;
    }
  }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    if (name == "trim") {
      const Value chars = a.get(0, "chars", Value::none());
      if (chars.is_none()) return Value::string(strops::strip(to_pstring(v), true, true));
      if (!chars.is_string()) throw TemplateError("trim: chars must be a string");
      const auto set = strops::code_points(chars.str());
      return Value::string(strops::strip(to_pstring(v), true, true, &set));
    }
    if (name == "tojson") return tojson(v, a);
    if (name == "length" || name == "count") {
      if (v.generator_consumed)
        throw TemplateError(name + ": object of type 'generator' has no len()");
      switch (v.kind) {
        case Value::Kind::kUndefined:
          return Value::integer(0);
        case Value::Kind::kString:
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
    if (name == "first" || name == "last") {
      if (name == "last" && v.generator_consumed)
        throw TemplateError("last: 'generator' object is not reversible");
      std::vector<Value> items = iterate(v, name.c_str());
      if (items.empty()) return Value::undefined(name + " of an empty sequence");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Value sep = a.get(0, "d", Value::plain(""));
      const Value attr = a.get(1, "attribute", Value::none());
      PString out;
      const PString sep_s = to_pstring(sep);
      std::vector<Value> items = iterate(v, "join");
      for (std::size_t k = 0; k < items.size(); ++k) {
        if (k) out.append(sep_s);
        out.append(to_pstring(attr.is_none() ? items[k] : attribute_of(items[k], attr)));
        check_size(out);
      }
      return Value::string(std::move(out));
    }
    if (name == "default" || name == "d") {
      const bool boolean = truthy(a.get(1, "boolean", Value::boolean(false)));
      if (v.is_undefined() || (boolean && !truthy(v)))
        return a.get(0, "default_value", Value::plain(""));
      return v;
    }
    if (name == "upper" || name == "lower")
      return Value::string(strops::map_case(to_pstring(v), name == "upper"));
    if (name == "capitalize") return Value::string(strops::capitalize(to_pstring(v)));
    if (name == "title") return Value::string(strops::jinja_title(to_pstring(v)));
    if (name == "replace") {
      if (!v.is_string() && v.is_undefined()) return Value::plain("");
      return Value::string(strops::replace(to_pstring(v), to_pstring(a.get(0, "old")),
                                           to_pstring(a.get(1, "new")),
                                           arg_int(a, 2, "count", -1)));
    }
    if (name == "list") {
      if (v.is_list() && !v.generator_consumed) return Value::make_list(*v.list);
      return Value::make_list(iterate(v, "list"));
    }
    if (name == "string") return Value::string(to_pstring(v));
    if (name == "safe") {
      Value r = v.is_string() ? v : Value::string(to_pstring(v));
      r.markup = true;
      return r;
    }
    if (name == "int") {
      const Value dflt = a.get(0, "default", Value::integer(0));
      if (is_intlike(v)) return Value::integer(as_int(v));
      if (v.kind == Value::Kind::kFloat) {
        if (!std::isfinite(v.f) || std::fabs(v.f) > 9.2e18) return dflt;
        return Value::integer(static_cast<std::int64_t>(v.f));
      }
      if (v.is_string()) {
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
    if (name == "float") {
      const Value dflt = a.get(0, "default", Value::floating(0.0));
      if (v.is_number()) return Value::floating(as_double(v));
      if (v.is_string()) {
        const std::string t = strops::strip(*v.s, true, true).text;
        char* end = nullptr;
        const double d = std::strtod(t.c_str(), &end);
        if (!t.empty() && end && *end == 0) return Value::floating(d);
      }
      return dflt;
    }
    if (name == "abs") {
      if (v.kind == Value::Kind::kFloat) return Value::floating(std::fabs(v.f));
      if (is_intlike(v)) {
        if (as_int(v) == std::numeric_limits<std::int64_t>::min())
          throw TemplateError("integer overflow");
        return Value::integer(std::llabs(as_int(v)));
      }
      throw TemplateError(std::string("abs: bad operand type '") + type_name(v) + "'");
    }
    if (name == "round") {
      if (!v.is_number()) throw TemplateError("round: argument must be a number");
      const std::int64_t precision = arg_int(a, 0, "precision", 0);
      const Value method = a.get(1, "method", Value::plain("common"));
      const double scale = std::pow(10.0, static_cast<double>(precision));
      const double x = as_double(v) * scale;
      double r;
      if (method.is_string() && method.str() == "common") {
        if (precision >= 0 && precision <= 17 && std::isfinite(as_double(v))) {
          // Python's round(x, n) rounds the exact binary value (2.675 is 2.67499..., so 2.67);
          // printf does the same exact decimal rounding.
          char buf[400];
          std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), as_double(v));
          return Value::floating(std::strtod(buf, nullptr));
        }
        r = std::nearbyint(x);  // half to even
      } else if (method.is_string() && method.str() == "ceil") {
        r = std::ceil(x);
      } else if (method.is_string() && method.str() == "floor") {
        r = std::floor(x);
      } else {
        throw TemplateError("round: method must be common, ceil or floor");
      }
      return Value::floating(r / scale);
    }
    if (name == "items") {
      if (v.is_undefined()) return generator({});
      if (!v.is_dict()) throw TemplateError("items: argument must be a mapping");
      CallArgs none;
      return generator(*call_method(v, "items", none).list);
    }
    if (name == "indent") return indent(v, a);
    if (name == "dictsort") {
      if (!v.is_dict()) throw TemplateError("dictsort: argument must be a mapping");
      const bool case_sensitive = truthy(a.get(0, "case_sensitive", Value::boolean(false)));
      const Value by = a.get(1, "by", Value::plain("key"));
      const bool reverse = truthy(a.get(2, "reverse", Value::boolean(false)));
      const bool by_value = by.is_string() && by.str() == "value";
      List pairs;
      for (const auto& kv : *v.dict) {
        Value pair = Value::make_list({Value::plain(kv.first), kv.second});
        pair.is_tuple = true;
        pairs.push_back(std::move(pair));
      }
      sort_values(
          pairs,
          [&](const Value& p) {
            Value key = (*p.list)[by_value ? 1 : 0];
            if (!case_sensitive && key.is_string())
              key = Value::string(strops::map_case(*key.s, 0));
            return key;
          },
          reverse);
      return Value::make_list(std::move(pairs));
    }
    if (name == "sort") {
      const bool reverse = truthy(a.get(0, "reverse", Value::boolean(false)));
      const bool case_sensitive = truthy(a.get(1, "case_sensitive", Value::boolean(false)));
      const Value attr = a.get(2, "attribute", Value::none());
      List items = iterate(v, "sort");
      sort_values(
          items,
          [&](const Value& x) {
            Value key = attr.is_none() ? x : attribute_of(x, attr);
            if (!case_sensitive && key.is_string())
              key = Value::string(strops::map_case(*key.s, 0));
            return key;
          },
          reverse);
      return Value::make_list(std::move(items));
    }
    if (name == "unique") {
      const bool case_sensitive = truthy(a.get(0, "case_sensitive", Value::boolean(false)));
      const Value attr = a.get(1, "attribute", Value::none());
      List out, seen;
      for (auto& x : iterate(v, "unique")) {
        Value key = attr.is_none() ? x : attribute_of(x, attr);
        if (!case_sensitive && key.is_string()) key = Value::string(strops::map_case(*key.s, 0));
        bool dup = false;
        for (const auto& s : seen) dup = dup || equals(s, key);
        if (!dup) {
          seen.push_back(key);
          out.push_back(x);
        }
      }
      return generator(std::move(out));
    }
    if (name == "reverse") {
      if (v.is_string()) {
        CallArgs none;
        return slice(v, Value::none(), Value::none(), Value::integer(-1));
      }
      if (v.generator_consumed)
        throw TemplateError("reverse: 'generator' object is not reversible");
      List items = iterate(v, "reverse");
      std::reverse(items.begin(), items.end());
      return generator(std::move(items));
    }
    if (name == "sum") {
      const Value attr = a.get(0, "attribute", Value::none());
      Value total = a.get(1, "start", Value::integer(0));
      for (auto& x : iterate(v, "sum"))
        total = binary("+", total, attr.is_none() ? x : attribute_of(x, attr));
      return total;
    }
    if (name == "min" || name == "max") {
      List items = iterate(v, name.c_str());
      if (items.empty()) return Value::undefined(name + " of an empty sequence");
      Value best = items[0];
      for (const auto& x : items) {
        const int c = order(x, best, name);
        if (name == "min" ? c < 0 : c > 0) best = x;
      }
      return best;
    }
    if (name == "map") {
      List out;
      const Value attr = a.get(static_cast<std::size_t>(-1), "attribute", Value::none());
      if (!attr.is_none()) {
        const Value dflt = a.get(static_cast<std::size_t>(-1), "default");
        if (truthy(v))  // jinja2: `if seq:` -- none maps to nothing
          for (auto& x : iterate(v, "map")) {
            Value r = attribute_of(x, attr);
            out.push_back(r.is_undefined() && !dflt.is_undefined() ? dflt : r);
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
      if (truthy(v))
        for (auto& x : iterate(v, "map")) out.push_back(apply_filter(filter, x, rest));
      return generator(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
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
        if (!a.positional[k].is_string())
          throw TemplateError(name + ": test name must be a string");
        test = a.positional[k++].str();
      }
      CallArgs rest;
      rest.positional.assign(
          a.positional.begin() + static_cast<std::ptrdiff_t>(std::min(k, a.positional.size())),
          a.positional.end());
      rest.keyword = a.keyword;
      rest.what = "test '" + test + "'";
      List out;
      if (truthy(v))  // jinja2: `if seq:` -- none selects nothing
        for (auto& x : iterate(v, name.c_str())) {
          const Value subject = by_attr ? attribute_of(x, attr) : x;
          const bool r = test.empty() ? truthy(subject) : apply_test(test, subject, rest);
          if (r == keep_if) out.push_back(x);
        }
      return generator(std::move(out));
    }
    if (name == "center" || name == "truncate" || name == "wordwrap" || name == "urlencode" ||
        name == "escape" || name == "e" || name == "format" || name == "batch" || name == "slice" ||
        name == "groupby" || name == "xmlattr" || name == "pprint" || name == "filesizeformat" ||
        name == "striptags" || name == "forceescape" || name == "random" || name == "attr" ||
        name == "urlize" || name == "wordcount")
      throw TemplateError("filter '" + name + "' is not supported");
    throw TemplateError("unknown filter '" + name + "'");
  }

  template <typename KeyFn>
  static void sort_values(List& items, KeyFn key, bool reverse) {
    std::vector<std::pair<Value, Value>> keyed;
    for (auto& x : items) keyed.emplace_back(key(x), x);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& p, const auto& q) {
      return reverse ? order(q.first, p.first, "sort") < 0 : order(p.first, q.first, "sort") < 0;
    });
    for (std::size_t k = 0; k < items.size(); ++k) items[k] = keyed[k].second;
  }

  Value tojson(const Value& v, const CallArgs& a) {
    JsonDumpOptions o;
    o.ensure_ascii = truthy(a.get(0, "ensure_ascii", Value::boolean(false)));
    const Value indent = a.get(1, "indent", Value::none());
    if (!indent.is_none()) {
      o.has_indent = true;
      if (is_intlike(indent))
        o.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(
                                   0, std::min<std::int64_t>(as_int(indent), 64))),
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
    json_dump_checked(v, out, o, 0);
    return Value::string(std::move(out));
  }

  void json_dump_checked(const Value& v, PString& out, const JsonDumpOptions& o, int depth) {
    if (depth > static_cast<int>(kMaxNesting)) throw TemplateError("tojson: nesting too deep");
    if (v.is_list() || v.is_dict()) {
      // Serialize children through this function so that depth and size are checked.
      PString inner;
      json_dump_into(v, inner, o, depth);
      out.append(inner);
    } else {
      json_dump_into(v, out, o, depth);
    }
    check_size(out);
  }

  Value indent(const Value& v, const CallArgs& a) {
    const Value width = a.get(0, "width", Value::integer(4));
    const bool first = truthy(a.get(1, "first", Value::boolean(false)));
    const bool blank = truthy(a.get(2, "blank", Value::boolean(false)));
    std::string ind;
    if (is_intlike(width))
      ind.assign(static_cast<std::size_t>(
                     std::max<std::int64_t>(0, std::min<std::int64_t>(as_int(width), 256))),
                 ' ');
    else if (width.is_string())
      ind = width.str();
    else
      throw TemplateError("indent: width must be an integer or a string");
    PString s = to_pstring(v);
    s.append_plain("\n");
    std::vector<PString> lines = strops::splitlines(s);
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
    check_size(out);
    return Value::string(std::move(out));
  }

  // ---- tests ----
  bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
    auto arg = [&]() {
      if (a.positional.empty()) throw TemplateError("test '" + name + "' needs an argument");
      return a.positional[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    if (name == "sequence")
      return v.is_string() || (v.is_list() && !v.generator_consumed) || v.is_dict() ||
             v.is_undefined();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind == Value::Kind::kInt;
    if (name == "float") return v.kind == Value::Kind::kFloat;
    if (name == "boolean") return v.kind == Value::Kind::kBool;
    if (name == "true") return v.kind == Value::Kind::kBool && v.b;
    if (name == "false") return v.kind == Value::Kind::kBool && !v.b;
    if (name == "callable") return v.kind == Value::Kind::kFunction;
    if (name == "odd" || name == "even") {
      if (!is_intlike(v)) bad_operands("%", v, Value::integer(2));
      const bool odd = (as_int(v) % 2) != 0;
      return name == "odd" ? odd : !odd;
    }
    if (name == "divisibleby") {
      const Value d = arg();
      if (!is_intlike(v) || !is_intlike(d)) bad_operands("%", v, d);
      if (as_int(d) == 0) throw TemplateError("integer division or modulo by zero");
      return binary("%", v, d).i == 0;
    }
    if (name == "equalto" || name == "eq" || name == "==") return equals(v, arg());
    if (name == "ne" || name == "!=") return !equals(v, arg());
    if (name == "lt" || name == "lessthan" || name == "<") return order(v, arg(), "<") < 0;
    if (name == "le" || name == "<=") return order(v, arg(), "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return order(v, arg(), ">") > 0;
    if (name == "ge" || name == ">=") return order(v, arg(), ">=") >= 0;
    if (name == "in") return contains(arg(), v);
    if (name == "sameas") {
      const Value o = arg();
      if (v.kind != o.kind) return false;
      if (v.is_none() || v.is_undefined()) return true;
      if (v.kind == Value::Kind::kBool) return v.b == o.b;
      if (v.is_list()) return v.list == o.list;
      if (v.is_dict() || v.kind == Value::Kind::kNamespace) return v.dict == o.dict;
      return equals(v, o);
    }
    if (name == "lower" || name == "upper") {
      if (!v.is_string()) return false;
      const PString& s = *v.s;
      return s.text == strops::map_case(s, name == "upper").text;
    }
    throw TemplateError("unknown test '" + name + "'");
  }

  const Body& program_;
  std::tm date_;
  // Every namespace made by this render: a namespace may hold itself (`set ns.x = ns`), so the
  // destructor empties them all to break such cycles.
  std::vector<std::weak_ptr<Dict>> namespaces_;
  RenderLimits limits_;
  std::vector<Scope> scopes_;
  std::map<std::string, Value> builtins_;
  std::vector<PString> outputs_;
  SourcePos pos_;
  std::size_t iterations_ = 0;
  std::size_t work_ = 0;
  std::size_t recursion_ = 0;
  std::size_t call_depth_ = 0;
};

}  // namespace sgt::text::jinja
