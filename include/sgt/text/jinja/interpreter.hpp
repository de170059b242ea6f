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
//
// The builtins -- globals, filters, tests, and the methods of str, dict and list -- are tables of
// functions by name in builtins.hpp; the evaluator looks a name up there and reports one that no
// table holds.
#pragma once

#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
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

// ---- the builtins' tables (builtins.hpp, included at the end of this file)
// ---------------------------------------------------------------------------

class Interpreter;
// A builtin runs as the name it was looked up by (lstrip and rstrip share a function).
using GlobalFn = Value (*)(Interpreter& in, CallArgs& a);
using FilterFn = Value (*)(Interpreter& in, const std::string& name, const Value& v, CallArgs& a);
using TestFn = bool (*)(Interpreter& in, const std::string& name, const Value& v,
                        const CallArgs& a);
using MethodFn = Value (*)(Interpreter& in, const std::string& name, const Value& obj, CallArgs& a);
template <typename Fn>
using BuiltinTable = std::unordered_map<std::string_view, Fn>;

inline const BuiltinTable<GlobalFn>& builtin_globals();
inline const BuiltinTable<FilterFn>& builtin_filters();
inline const BuiltinTable<TestFn>& builtin_tests();
// The methods of a str, a dict or a list, by receiver; nullptr for other values (no methods).
inline const BuiltinTable<MethodFn>* builtin_methods(const Value& receiver);

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
  friend struct Builtins;  // builtins.hpp: the builtins call the helpers below
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
      case Value::Kind::kDict:
        if (has_method(obj, name)) return bound_method(obj, name);
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      case Value::Kind::kNamespace:
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      case Value::Kind::kString:
      case Value::Kind::kList:
        if (has_method(obj, name)) return bound_method(obj, name);
        return Value::undefined(name);
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

  // ---- builtins (builtins.hpp) ----
  void install_builtins() {
    for (const auto& g : builtin_globals()) {
      const GlobalFn fn = g.second;
      builtins_[std::string(g.first)] =
          Value::function(std::string(g.first), [this, fn](CallArgs& a) { return fn(*this, a); });
    }
  }

  // A method is an attribute of its receiver: the sandbox's refused methods (list.append,
  // dict.update, ...) are found too, so that calling one says why it fails.
  static bool has_method(const Value& obj, const std::string& name) {
    const auto* methods = builtin_methods(obj);
    return methods && methods->count(name) != 0;
  }
  Value bound_method(const Value& obj, const std::string& name) {
    return Value::function(name,
                           [this, obj, name](CallArgs& a) { return call_method(obj, name, a); });
  }

  Value call_method(const Value& obj, const std::string& name, CallArgs& a) {
    a.what = "method '" + name + "'";
    if (const auto* methods = builtin_methods(obj)) {
      const auto it = methods->find(name);
      if (it != methods->end()) return it->second(*this, name, obj, a);
    }
    throw TemplateError("method '" + name + "' of " + type_name(obj) + " is not supported");
  }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    const auto it = builtin_filters().find(name);
    if (it == builtin_filters().end()) throw TemplateError("unknown filter '" + name + "'");
    return it->second(*this, name, v, a);
  }

  bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
    const auto it = builtin_tests().find(name);
    if (it == builtin_tests().end()) throw TemplateError("unknown test '" + name + "'");
    return it->second(*this, name, v, a);
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

#include "sgt/text/jinja/builtins.hpp"  // the tables declared above
