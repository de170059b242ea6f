// Jinja2 evaluator: runs a parsed template over Values, with Python's semantics and the
// sandbox transformers uses (ImmutableSandboxedEnvironment: no list.append, no dict.update).
//
// Undefined follows jinja2's default Undefined: a missing variable, dict key or list index
// gives Undefined, which renders as "", is falsy, iterates as empty and has length 0; reading
// an attribute of it, doing arithmetic with it or serializing it is an error.
//
// Limits (part of the contract, so that no template or chat can exhaust the stack, memory or
// time) are a jinja::Limits (limits.hpp) given to the interpreter: one work budget charged by
// every expression, statement, builtin and operator for what it visits and builds, the size of
// every string, list and the output checked before they are built, nesting bounded. Integer
// arithmetic is checked (no overflow, in `**`, slices, range and repetition alike).
//
// The builtins -- globals, filters, tests, and the methods of str, dict and list -- are tables of
// functions by name in builtins.hpp; the evaluator looks a name up there and reports one that no
// table holds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sgt/text/jinja/limits.hpp"
#include "sgt/text/jinja/parser.hpp"
#include "sgt/text/jinja/value.hpp"

namespace sgt::text::jinja {

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

// The items a loop or builtin iterates over: a list's own items (shared, not copied), or a
// list built from a dict's keys or a string's characters.
using Items = std::shared_ptr<const List>;

class Interpreter {
 public:
  // `globals` are the context variables (messages, tools, bos_token, ...). `date` is what
  // strftime_now formats (the render is deterministic: no clock is read).
  // `limits` bound what the render may spend (limits.hpp).
  Interpreter(const Body& program, std::vector<std::pair<std::string, Value>> globals, std::tm date,
              const Limits& limits = Limits{})
      : program_(program), date_(date), budget_(limits) {
    globals_.reserve(globals.size());
    for (auto& kv : globals) globals_[kv.first] = std::move(kv.second);
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

  // Work units spent so far (limits.hpp).
  std::size_t work_used() const noexcept { return budget_.used(); }

 private:
  friend struct Builtins;  // builtins.hpp: the builtins call the helpers below
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::vector<std::pair<std::string, Value>>;

  // ---- scopes ----
  // The template's top level (the context's variables, which a chat's extra_context can make
  // many, and the top-level `set`s) is a hash map; the scopes of loops and macro calls above it
  // hold the few names their bodies set.
  Value* find_var(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      for (auto& kv : *it)
        if (kv.first == name) return &kv.second;
    const auto g = globals_.find(name);
    return g == globals_.end() ? nullptr : &g->second;
  }
  void set_var(const std::string& name, Value v) {
    if (scopes_.empty()) {
      globals_[name] = std::move(v);
      return;
    }
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
  void check_output(std::size_t added) {
    const std::size_t max = budget_.limits().max_output_bytes;
    if (added > max || outputs_.back().size() > max - added)
      throw TemplateError("output larger than " + size_text(max));
    charge(added);
  }
  void emit(const PString& s) {
    check_output(s.size());
    outputs_.back().append(s);
  }
  void emit_plain(const std::string& s) {
    check_output(s.size());
    outputs_.back().append_plain(s);
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
      case Node::Kind::kOutput: {
        const Value v = eval(*n.expr);
        if (v.is_string()) {
          emit(*v.s);
        } else {
          // Printed straight into the output, whose size is checked as it grows: a list of
          // 100000 references to one 100000-item list would print 10^10 items.
          repr_into(v, outputs_.back(), budget_);
        }
        return Flow::kNormal;
      }
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
          charge(ns->dict->size());
          if (v.depth + 1 > Value::kMaxValueDepth)
            throw TemplateError("containers nested deeper than 128 levels");
          ns->depth = std::max(ns->depth, v.depth + 1);
          for (auto& kv : *ns->dict)
            if (kv.first == n.targets[1]) {
              kv.second = std::move(v);
              return Flow::kNormal;
            }
          budget_.charge_items(1);
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

  // The items of `v`, charged as visited (a list's own items) or as built (a dict's keys, a
  // string's characters).
  Items iterate(const Value& v, const char* what) {
    static const Items empty = std::make_shared<const List>();
    switch (v.kind) {
      case Value::Kind::kUndefined:
        return empty;
      case Value::Kind::kList:
        if (v.generator_consumed) {
          if (*v.generator_consumed) return empty;
          *v.generator_consumed = true;
        }
        charge(v.list->size());
        return v.list;
      case Value::Kind::kDict: {
        budget_.build_items(v.dict->size());
        auto keys = std::make_shared<List>();
        keys->reserve(v.dict->size());
        for (const auto& kv : *v.dict) keys->push_back(Value::plain(kv.first));
        return keys;
      }
      case Value::Kind::kString: {
        charge(v.s->size());
        const std::size_t n = utf8::length(v.str());
        budget_.build_items(n);
        charge(v.s->size());
        auto chars = std::make_shared<List>();
        chars->reserve(n);
        for (std::size_t p = 0; p < v.s->size();) {
          const std::size_t len = std::max<std::size_t>(
              1, std::min(utf8::sequence_length(static_cast<unsigned char>(v.str()[p])),
                          v.s->size() - p));
          chars->push_back(Value::string(v.s->substr(p, len)));
          p += len;
        }
        return chars;
      }
      default:
        throw TemplateError(std::string(what) + ": '" + type_name(v) + "' object is not iterable");
    }
  }

  // Python's str + str when one side is Markup (|safe): the other side is HTML-escaped.
  PString html_escape(const PString& s) {
    PString out;
    budget_.grow(out.text, s.size());
    std::size_t extra = 0;  // bytes the escapes add, checked before they are built
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
      const std::size_t rep_size = std::char_traits<char>::length(rep);
      extra += rep_size - 1;
      budget_.check_bytes(s.size() + extra);
      charge(rep_size - 1);
      out.text += rep;
      out.flags.append(std::char_traits<char>::length(rep), s.flags[k]);
    }
    return out;
  }

  void count_iteration() {
    const std::size_t max = budget_.limits().max_loop_iterations;
    if (++iterations_ > max)
      throw TemplateError("more than " + std::to_string(max) + " loop iterations in one render");
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      set_var(targets[0], item);
      return;
    }
    const Items parts = iterate(item, "for");
    if (parts->size() != targets.size())
      throw TemplateError("cannot unpack " + std::to_string(parts->size()) + " values into " +
                          std::to_string(targets.size()) + " loop variables");
    for (std::size_t k = 0; k < targets.size(); ++k) set_var(targets[k], (*parts)[k]);
  }

  Flow exec_for(const Node& n) {
    Items all = iterate(eval(*n.expr), "for");
    if (n.filter) {
      auto kept = std::make_shared<List>();
      for (const auto& it : *all) {
        count_iteration();
        ScopeGuard g(*this);
        bind_targets(n.targets, it);
        if (truthy(eval(*n.filter))) {
          budget_.charge_items(1);
          kept->push_back(it);
        }
      }
      all = std::move(kept);
    }
    const List& items = *all;
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
      // A call builds a frame, a scope and an output buffer: it is charged as that many items,
      // so that a tree of calls that prints nothing still runs out of budget in about a second.
      charge(kMacroCallWorkUnits);
      const std::size_t max_depth = budget_.limits().max_macro_depth;
      if (++call_depth_ > max_depth) {
        --call_depth_;
        throw TemplateError("macro calls nested deeper than " + std::to_string(max_depth));
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
      std::vector<Scope> saved = std::move(scopes_);
      scopes_.clear();
      scopes_.push_back(std::move(frame));
      outputs_.push_back({});
      struct Restore {
        Interpreter& in;
        std::vector<Scope>& saved;
        ~Restore() { in.scopes_ = std::move(saved); }
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
  // Each expression and statement evaluated is also one work unit: a macro that prints nothing,
  // called 2^40 times through a tree of calls, is charged for every call.
  struct RecursionGuard {
    explicit RecursionGuard(Interpreter& in) : in_(in) {
      const std::size_t max = in_.budget_.limits().max_recursion;
      if (++in_.recursion_ > max) {
        --in_.recursion_;
        throw TemplateError("template evaluation nested deeper than " + std::to_string(max) +
                            " levels");
      }
      in_.charge(1);
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
        budget_.build_items(e.args.size());
        List items;
        items.reserve(e.args.size());
        for (const auto& a : e.args) items.push_back(eval(*a));
        Value v = Value::make_list(std::move(items));
        v.is_tuple = e.kind == Expr::Kind::kTuple;
        return v;
      }
      case Expr::Kind::kDict: {
        budget_.build_items(e.args.size() / 2);
        Dict d;
        // A later duplicate key replaces the value in place, as Python's dict display does; the
        // index makes that linear in the literal's size.
        std::unordered_map<std::string, std::size_t> index;
        for (std::size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k]);
          if (!key.is_string()) throw TemplateError("dict literal keys must be strings");
          Value val = eval(*e.args[k + 1]);
          charge(key.s->size());
          const auto found = index.emplace(key.str(), d.size());
          if (found.second)
            d.emplace_back(key.str(), std::move(val));
          else
            d[found.first->second].second = std::move(val);
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
        if (callee.is_bound_method()) return call_method(callee.receiver(), callee.name, args);
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
          const Value v = eval(*a);
          if (v.is_string()) {
            budget_.grow(s.text, v.s->size());
            s.append(*v.s);
          } else {
            repr_into(v, s, budget_);
          }
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

  // Work done by one render (limits.hpp): a template that loops 1000000 times over a
  // 100000-item list, or grows a string quadratically, stops here instead of running for hours.
  void charge(std::size_t units) { budget_.charge(units); }
  // A string result of `bytes` bytes may be built: refused or charged first.
  void build_bytes(std::size_t bytes) {
    budget_.check_bytes(bytes);
    charge(bytes);
  }

  // ---- attribute, item, slice ----
  // A dict or namespace lookup is a linear search: charged by the size searched.
  const Value* find_key(const Value& obj, const std::string& key) {
    if (obj.dict) charge(obj.dict->size());
    return obj.find(key);
  }

  Value getattr(const Value& obj, const std::string& name) {
    switch (obj.kind) {
      case Value::Kind::kUndefined:
        throw TemplateError(
            (obj.name.empty() ? std::string("undefined value") : "'" + obj.name + "'") +
            " is undefined (reading attribute '" + name + "')");
      case Value::Kind::kDict:
        if (has_method(obj, name)) return bound_method(obj, name);
        if (const Value* v = find_key(obj, name)) return *v;
        return Value::undefined(name);
      case Value::Kind::kNamespace:
        if (const Value* v = find_key(obj, name)) return *v;
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
          if (const Value* v = find_key(obj, key.str())) return *v;
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
          const std::string& t = obj.str();
          const std::int64_t raw = key.kind == Value::Kind::kBool ? key.b : key.i;
          // s[i] walks to code point i; s[-i] counts the code points first.
          std::size_t length = static_cast<std::size_t>(-1);
          if (raw < 0) {
            charge(t.size());
            length = utf8::length(t);
          }
          const std::int64_t i = raw < 0 ? py_index(raw, length) : raw;
          if (i < 0 || (raw < 0 && i >= static_cast<std::int64_t>(length)))
            return Value::undefined("string index");
          const auto u = static_cast<std::size_t>(i);
          charge(std::min(t.size(), u));
          const std::size_t begin = utf8::offset_of(t, u);
          if (begin >= t.size()) return Value::undefined("string index");
          const std::size_t end = utf8::offset_of(t.substr(begin, 4), 1) + begin;
          return Value::string(obj.s->substr(begin, end - begin));
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

  // Python's slice.indices(): the selected positions are start + k * step for k < count. The
  // count is computed, not stepped to, so that no step (2^63 - 1 included) overflows.
  struct SliceRange {
    std::int64_t start = 0, step = 1;
    std::size_t count = 0;
    std::size_t at(std::size_t k) const {
      return static_cast<std::size_t>(start + static_cast<std::int64_t>(k) * step);
    }
  };
  static SliceRange slice_range(std::size_t size, const Value& start_v, const Value& stop_v,
                                const Value& step_v) {
    const std::int64_t n = static_cast<std::int64_t>(size);
    SliceRange r;
    r.step = step_v.is_none() ? 1 : slice_int(step_v, "step");
    if (r.step == 0) throw TemplateError("slice step cannot be zero");
    const std::int64_t step = r.step;
    auto clamp = [&](const Value& v, std::int64_t dflt, const char* what) {
      if (v.is_none()) return dflt;
      std::int64_t x = slice_int(v, what);
      if (x < 0) {
        x = x < -n ? -1 : x + n;
        if (x < 0) x = step < 0 ? -1 : 0;
      } else if (x >= n) {
        x = step < 0 ? n - 1 : n;
      }
      return x;
    };
    r.start = clamp(start_v, step < 0 ? n - 1 : 0, "start");
    const std::int64_t stop = clamp(stop_v, step < 0 ? -1 : n, "stop");
    // start and stop lie in [-1, n], so their difference fits; |step| as unsigned fits too.
    if (step > 0 && r.start < stop)
      r.count = static_cast<std::size_t>(
          (static_cast<std::uint64_t>(stop - r.start) - 1) / static_cast<std::uint64_t>(step) + 1);
    else if (step < 0 && r.start > stop)
      r.count = static_cast<std::size_t>((static_cast<std::uint64_t>(r.start - stop) - 1) /
                                             (static_cast<std::uint64_t>(-(step + 1)) + 1) +
                                         1);
    return r;
  }

  Value slice(const Value& obj, const Value& a, const Value& b, const Value& c) {
    if (obj.generator_consumed) throw TemplateError("'generator' object is not subscriptable");
    if (obj.is_list()) {
      const SliceRange r = slice_range(obj.list->size(), a, b, c);
      budget_.build_items(r.count);
      List out;
      out.reserve(r.count);
      for (std::size_t k = 0; k < r.count; ++k) out.push_back((*obj.list)[r.at(k)]);
      Value v = Value::make_list(std::move(out));
      v.is_tuple = obj.is_tuple;
      return v;
    }
    if (obj.is_string()) {
      const PString& s = *obj.s;
      charge(s.size());
      const std::size_t length = utf8::length(s.text);
      const SliceRange r = slice_range(length, a, b, c);
      PString out;
      if (length == s.size()) {  // ASCII: code points are bytes
        build_bytes(r.count);
        if (r.step == 1) return Value::string(s.substr(r.at(0), r.count));
        out.text.reserve(r.count);
        out.flags.reserve(r.count);
        for (std::size_t k = 0; k < r.count; ++k)
          out.append_byte(s.text[r.at(k)], s.flags[r.at(k)]);
        return Value::string(std::move(out));
      }
      budget_.charge_items(length / 2);  // the offsets below: 8 bytes per code point
      const auto bounds = utf8::boundaries(s.text);
      std::size_t bytes = 0;
      for (std::size_t k = 0; k < r.count; ++k) bytes += bounds[r.at(k) + 1] - bounds[r.at(k)];
      build_bytes(bytes);
      for (std::size_t k = 0; k < r.count; ++k) {
        const std::size_t p = r.at(k);
        out.append(s.substr(bounds[p], bounds[p + 1] - bounds[p]));
      }
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

  // seq * times: the result's size is checked (without overflow) and charged before it is built.
  Value repeat(const Value& seq, std::int64_t times) {
    const std::size_t n = seq.is_string() ? seq.s->size() : seq.list->size();
    const std::size_t t = times > 0 ? static_cast<std::size_t>(times) : 0;
    if (seq.is_string()) {
      if (n && t > budget_.limits().max_output_bytes / n)
        budget_.check_bytes(budget_.limits().max_output_bytes + 1);
      build_bytes(n * t);
      PString out;
      out.text.reserve(n * t);
      out.flags.reserve(n * t);
      for (std::size_t k = 0; k < t && n; ++k) out.append(*seq.s);
      return Value::string(std::move(out));
    }
    if (n && t > budget_.limits().max_list_items / n)
      budget_.check_items(budget_.limits().max_list_items + 1);
    budget_.build_items(n * t);
    List out;
    out.reserve(n * t);
    for (std::size_t k = 0; k < t && n; ++k)
      out.insert(out.end(), seq.list->begin(), seq.list->end());
    return Value::make_list(std::move(out));
  }

  // Python's int ** int (exponent >= 0) by squaring: at most 64 multiplications, each checked.
  static std::int64_t int_power(std::int64_t base, std::int64_t e) {
    if (base == 0) return e == 0 ? 1 : 0;
    if (base == 1) return 1;
    if (base == -1) return e % 2 ? -1 : 1;
    std::int64_t acc = 1;
    while (true) {
      if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
        throw TemplateError("integer overflow");
      e >>= 1;
      if (!e) return acc;
      // |base| >= 2 and a factor base^2 is still to come: its overflow is the result's.
      if (__builtin_mul_overflow(base, base, &base)) throw TemplateError("integer overflow");
    }
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
        PString s;
        if (markup && !l.markup) {
          s = html_escape(*l.s);
        } else {
          build_bytes(l.s->size());
          s = *l.s;
        }
        if (markup && !r.markup) {
          const PString e = html_escape(*r.s);
          budget_.grow(s.text, e.size());
          s.append(e);
        } else {
          budget_.grow(s.text, r.s->size());
          s.append(*r.s);
        }
        Value v = Value::string(std::move(s));
        v.markup = markup;
        return v;
      }
      if (l.is_list() && r.is_list() && !l.generator_consumed && !r.generator_consumed) {
        budget_.build_items(l.list->size() + r.list->size());
        List items;
        items.reserve(l.list->size() + r.list->size());
        items = *l.list;
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
      if ((l.is_string() || (l.is_list() && !l.generator_consumed)) && is_intlike(r))
        return repeat(l, as_int(r));
      if ((r.is_string() || (r.is_list() && !r.generator_consumed)) && is_intlike(l))
        return repeat(r, as_int(l));
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
      if (ints && as_int(r) >= 0) return Value::integer(int_power(as_int(l), as_int(r)));
      if (nums) return Value::floating(std::pow(as_double(l), as_double(r)));
      bad_operands(op, l, r);
    }
    throw TemplateError("unknown operator " + op);
  }

  // Python's <, for the types templates compare; charged like equals().
  int order(const Value& l, const Value& r, const std::string& op) {
    charge(1);
    if (l.is_number() && r.is_number()) {
      if (is_intlike(l) && is_intlike(r)) return as_int(l) < as_int(r) ? -1 : as_int(l) > as_int(r);
      const double a = as_double(l), b = as_double(r);
      return a < b ? -1 : a > b;
    }
    if (l.is_string() && r.is_string()) {
      charge(std::min(l.s->size(), r.s->size()));
      return l.str().compare(r.str()) < 0 ? -1 : l.str() != r.str();
    }
    if (l.is_list() && r.is_list()) {
      for (std::size_t k = 0; k < l.list->size() && k < r.list->size(); ++k)
        if (!equals((*l.list)[k], (*r.list)[k], budget_))
          return order((*l.list)[k], (*r.list)[k], op);
      return l.list->size() < r.list->size() ? -1 : l.list->size() > r.list->size();
    }
    bad_operands(op, l, r);
  }

  bool contains(const Value& container, const Value& item) {
    if (container.is_list()) charge(container.list->size());
    if (container.is_dict()) charge(container.dict->size());
    switch (container.kind) {
      case Value::Kind::kUndefined:
        return false;
      case Value::Kind::kString:
        if (!item.is_string())
          throw TemplateError(std::string("'in <string>' requires string as left operand, not ") +
                              type_name(item));
        charge(container.s->size() + item.s->size());
        return TextSearcher(item.str()).find(container.str()) != std::string::npos;
      case Value::Kind::kList:
        if (container.generator_consumed) {
          if (*container.generator_consumed) return false;
          *container.generator_consumed = true;
        }
        for (const auto& v : *container.list)
          if (equals(v, item, budget_)) return true;
        return false;
      case Value::Kind::kDict:
        return item.is_string() && container.find(item.str()) != nullptr;
      default:
        throw TemplateError(std::string("argument of type '") + type_name(container) +
                            "' is not iterable");
    }
  }

  bool compare(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equals(l, r, budget_);
    if (op == "!=") return !equals(l, r, budget_);
    if (op == "in") return contains(r, l);
    if (op == "not in") return !contains(r, l);
    const int c = order(l, r, op);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;  // ">="
  }

  // A namespace may hold itself, so the destructor empties every namespace still alive. Dead
  // ones are dropped from the list as it grows: a weak reference keeps the memory of a
  // namespace made with make_shared, and a loop can make millions.
  void remember_namespace(const std::shared_ptr<Dict>& ns) {
    if (namespaces_.size() >= 2 * namespaces_alive_ + 64) {
      namespaces_.erase(std::remove_if(namespaces_.begin(), namespaces_.end(),
                                       [](const std::weak_ptr<Dict>& w) { return w.expired(); }),
                        namespaces_.end());
      namespaces_alive_ = namespaces_.size();
    }
    namespaces_.push_back(ns);
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
  // The receiver is held as the method's one item (not captured by a closure), so that its
  // depth counts and it is freed without recursion.
  Value bound_method(const Value& obj, const std::string& name) {
    return Value::bound_method(name, obj);
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
  std::size_t namespaces_alive_ = 0;  // how many were alive when the list was last pruned
  Budget budget_;
  std::unordered_map<std::string, Value> globals_;  // the top-level scope
  std::vector<Scope> scopes_;                       // loops' and macro calls' scopes above it
  std::map<std::string, Value> builtins_;
  std::vector<PString> outputs_;
  SourcePos pos_;
  std::size_t iterations_ = 0;
  std::size_t recursion_ = 0;
  std::size_t call_depth_ = 0;
};

}  // namespace sgt::text::jinja

#include "sgt/text/jinja/builtins.hpp"  // the tables declared above
