// Jinja2 parser: tokens -> AST, with jinja2's operator precedence (jinja2/parser.py):
//
//   expr     := or ('if' or ('else' expr)?)*
//   or       := and ('or' and)*          and := not ('and' not)*       not := 'not' not | compare
//   compare  := math1 (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not' 'in') math1)*
//   math1    := concat (('+'|'-') concat)*         concat := math2 ('~' math2)*
//   math2    := pow (('*'|'/'|'//'|'%') pow)*      pow := unary ('**' unary)*
//   unary    := ('-'|'+') unary | primary postfix* (('|' filter) | ('is' test) | call)*
//
// so `~` binds tighter than `+`, and a filter binds tighter than everything but the postfix
// (`a + b | trim` trims b only). Statements: if/elif/else, for (with `if` filter, `else`,
// tuple targets, break/continue), set (name, namespace attribute, block form), macro, and
// transformers' `generation` block. Anything else is refused with its line and column.
// Nesting (of expressions and of blocks) is bounded by kMaxNesting so that no input can
// exhaust the stack.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sgt/text/jinja/lexer.hpp"
#include "sgt/text/jinja/value.hpp"

namespace sgt::text::jinja {

// How deep expressions and blocks may nest, and macros may call each other.
inline constexpr std::size_t kMaxNesting = 64;
// How tall one expression's tree may be (operator chains included).
inline constexpr std::size_t kMaxExpressionHeight = 128;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kList,
    kTuple,
    kDict,
    kAttr,
    kSubscript,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kNeg,
    kPos,
    kNot,
    kBinary,
    kCompare,
    kAnd,
    kOr,
    kCond,
    kConcat
  };
  Kind kind;
  SourcePos pos;
  Value literal;              // kLiteral
  std::string name;           // kName, kAttr, kFilter, kTest; kBinary: the operator
  std::vector<ExprPtr> args;  // operands / items / positional args (slot 0 = object)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // keyword args of a call/filter/test
  std::vector<std::string> ops;                         // kCompare: one operator per comparison
  bool negated = false;                                 // kTest: 'is not'
  std::size_t height = 1;                               // 1 + the tallest child
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    kText,
    kOutput,
    kIf,
    kFor,
    kSet,
    kSetBlock,
    kMacro,
    kBreak,
    kContinue,
    kGeneration
  };
  Kind kind;
  SourcePos pos;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf: condition + body
  Body body;                                       // kFor, kSetBlock, kMacro, kGeneration
  Body else_body;                                  // kIf, kFor
  std::vector<std::string> targets;                // kFor loop variables; kSet: name (+ attribute)
  ExprPtr filter;                                  // kFor: 'if' condition
  std::string name;                                // kSetBlock, kMacro
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro (default may be null)
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse_template() {
    Body body = parse_body({});
    if (cur().kind != Token::Kind::kEof) fail("unexpected '" + cur().value + "'");
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[i_]; }
  const Token& peek(std::size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  [[noreturn]] void fail(const std::string& message) const {
    throw LocatedError(message, cur().pos);
  }
  bool is_op(const char* op) const { return cur().kind == Token::Kind::kOp && cur().value == op; }
  bool is_name(const char* n) const { return cur().kind == Token::Kind::kName && cur().value == n; }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().kind != Token::Kind::kName) fail("expected a name, got " + describe(cur()));
    std::string n = cur().value;
    next();
    return n;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Token::Kind::kEof:
        return "end of template";
      case Token::Kind::kBlockEnd:
        return "end of tag '%}'";
      case Token::Kind::kVarEnd:
        return "end of '}}'";
      case Token::Kind::kText:
        return "template text";
      default:
        return "'" + abbreviate(t.value, 40) + "'";
    }
  }
  void expect_block_end() {
    if (cur().kind != Token::Kind::kBlockEnd)
      fail("expected end of tag '%}', got " + describe(cur()));
    next();
  }

  struct DepthGuard {
    DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting)
        p_.fail("nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  // ---- statements ----

  // Parses nodes until a block tag whose keyword is one of `enders` (left unconsumed: the
  // current token is then that keyword's name token) or the end of the template.
  Body parse_body(const std::vector<std::string>& enders) {
    DepthGuard guard(*this);
    Body body;
    while (cur().kind != Token::Kind::kEof) {
      const Token& tok = cur();
      if (tok.kind == Token::Kind::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->pos = tok.pos;
        n->text = tok.value;
        body.push_back(std::move(n));
        next();
      } else if (tok.kind == Token::Kind::kVarBegin) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->pos = tok.pos;
        next();
        n->expr = parse_expression();
        if (cur().kind != Token::Kind::kVarEnd)
          fail("expected end of '}}', got " + describe(cur()));
        next();
        body.push_back(std::move(n));
      } else if (tok.kind == Token::Kind::kBlockBegin) {
        const SourcePos pos = tok.pos;
        next();
        if (cur().kind != Token::Kind::kName)
          fail("expected a statement keyword, got " + describe(cur()));
        const std::string kw = cur().value;
        for (const auto& e : enders)
          if (kw == e) return body;
        body.push_back(parse_statement(kw, pos));
      } else {
        fail("unexpected " + describe(tok));
      }
    }
    if (!enders.empty()) {
      std::string list;
      for (const auto& e : enders) list += (list.empty() ? "'" : " or '") + e + "'";
      fail("missing " + list + " before the end of the template");
    }
    return body;
  }

  NodePtr parse_statement(const std::string& kw, SourcePos pos) {
    const SourcePos kw_pos = cur().pos;
    next();  // the keyword
    auto n = std::make_unique<Node>();
    n->pos = pos;
    if (kw == "if") {
      n->kind = Node::Kind::kIf;
      ExprPtr cond = parse_expression();
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"});
        n->branches.emplace_back(std::move(cond), std::move(b));
        const std::string end = cur().value;
        next();
        if (end == "elif") {
          cond = parse_expression();
          expect_block_end();
          continue;
        }
        if (end == "else") {
          expect_block_end();
          n->else_body = parse_body({"endif"});
          next();
        }
        expect_block_end();
        break;
      }
    } else if (kw == "for") {
      n->kind = Node::Kind::kFor;
      n->targets.push_back(expect_name());
      while (is_op(",")) {
        next();
        n->targets.push_back(expect_name());
      }
      if (!is_name("in")) fail("expected 'in' in a for loop, got " + describe(cur()));
      next();
      n->expr = parse_or_test();  // jinja2: parse_tuple(with_condexpr=False)
      if (is_name("if")) {
        next();
        n->filter = parse_expression();
      }
      if (is_name("recursive")) fail("recursive for loops are not supported");
      expect_block_end();
      n->body = parse_body({"else", "endfor"});
      if (cur().value == "else") {
        next();
        expect_block_end();
        n->else_body = parse_body({"endfor"});
      }
      next();
      expect_block_end();
    } else if (kw == "set") {
      std::string target = expect_name();
      if (is_op(".")) {
        next();
        n->targets = {target, expect_name()};
      } else {
        n->targets = {target};
      }
      if (is_op(",")) fail("tuple assignment in 'set' is not supported");
      if (is_op("=")) {
        next();
        n->kind = Node::Kind::kSet;
        n->expr = parse_expression();
        expect_block_end();
      } else {
        if (n->targets.size() != 1) fail("a block 'set' must assign a plain name");
        if (is_op("|")) fail("filters on a block 'set' are not supported");
        n->kind = Node::Kind::kSetBlock;
        n->name = target;
        expect_block_end();
        n->body = parse_body({"endset"});
        next();
        expect_block_end();
      }
    } else if (kw == "macro") {
      n->kind = Node::Kind::kMacro;
      n->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        std::string param = expect_name();
        ExprPtr def;
        if (is_op("=")) {
          next();
          def = parse_expression();
        }
        n->params.emplace_back(std::move(param), std::move(def));
        if (!is_op(")")) expect_op(",");
      }
      next();
      expect_block_end();
      n->body = parse_body({"endmacro"});
      next();
      expect_block_end();
    } else if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      expect_block_end();
    } else if (kw == "generation") {
      n->kind = Node::Kind::kGeneration;
      expect_block_end();
      n->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
    } else {
      throw LocatedError("unsupported tag '" + abbreviate(kw, 40) + "'", kw_pos);
    }
    return n;
  }

  // ---- expressions ----

  // Sets the height of a node whose children are attached, and bounds it: chains built by loops
  // (a + b + c ..., x|f|g ..., a.b.c ...) do not recurse in the parser but do in the evaluator
  // and in the destructor.
  ExprPtr finish(ExprPtr e) {
    std::size_t h = 0;
    for (const auto& a : e->args)
      if (a) h = std::max(h, a->height);
    for (const auto& kv : e->kwargs) h = std::max(h, kv.second->height);
    e->height = h + 1;
    if (e->height > kMaxExpressionHeight)
      throw LocatedError(
          "expression nested deeper than " + std::to_string(kMaxExpressionHeight) + " levels",
          e->pos);
    return e;
  }

  ExprPtr make(Expr::Kind k, SourcePos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  ExprPtr parse_expression() {
    DepthGuard guard(*this);
    ExprPtr e = parse_or_test();
    while (is_name("if")) {
      const SourcePos pos = cur().pos;
      next();
      ExprPtr cond = parse_or_test();
      ExprPtr otherwise;
      if (is_name("else")) {
        next();
        otherwise = parse_expression();
      }
      auto c = make(Expr::Kind::kCond, pos);
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(otherwise));  // may be null: undefined
      e = finish(std::move(c));
    }
    return e;
  }

  ExprPtr parse_or_test() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto n = make(Expr::Kind::kOr, cur().pos);
      next();
      n->args.push_back(std::move(e));
      n->args.push_back(parse_and());
      e = finish(std::move(n));
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto n = make(Expr::Kind::kAnd, cur().pos);
      next();
      n->args.push_back(std::move(e));
      n->args.push_back(parse_not());
      e = finish(std::move(n));
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto n = make(Expr::Kind::kNot, cur().pos);
      next();
      n->args.push_back(parse_not());
      return finish(std::move(n));
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      if (cur().kind == Token::Kind::kOp &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
           cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().kind == Token::Kind::kName && peek().value == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::kCompare, first->pos);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? finish(std::move(cmp)) : std::move(first);
  }
  ExprPtr binary(ExprPtr l, const std::string& op, ExprPtr r, SourcePos pos) {
    auto n = make(Expr::Kind::kBinary, pos);
    n->name = op;
    n->args.push_back(std::move(l));
    n->args.push_back(std::move(r));
    return finish(std::move(n));
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().value;
      const SourcePos pos = cur().pos;
      next();
      e = binary(std::move(e), op, parse_concat(), pos);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    if (!is_op("~")) return e;
    auto n = make(Expr::Kind::kConcat, e->pos);
    n->args.push_back(std::move(e));
    while (is_op("~")) {
      next();
      n->args.push_back(parse_math2());
    }
    return finish(std::move(n));
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().value;
      const SourcePos pos = cur().pos;
      next();
      e = binary(std::move(e), op, parse_pow(), pos);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const SourcePos pos = cur().pos;
      next();
      e = binary(std::move(e), "**", parse_unary(true), pos);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto n = make(is_op("-") ? Expr::Kind::kNeg : Expr::Kind::kPos, cur().pos);
      next();
      n->args.push_back(parse_unary(false));
      e = finish(std::move(n));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token tok = cur();
    switch (tok.kind) {
      case Token::Kind::kName: {
        next();
        auto lit = [&](Value v) {
          auto n = make(Expr::Kind::kLiteral, tok.pos);
          n->literal = std::move(v);
          return n;
        };
        if (tok.value == "true" || tok.value == "True") return lit(Value::boolean(true));
        if (tok.value == "false" || tok.value == "False") return lit(Value::boolean(false));
        if (tok.value == "none" || tok.value == "None") return lit(Value::none());
        auto n = make(Expr::Kind::kName, tok.pos);
        n->name = tok.value;
        return n;
      }
      case Token::Kind::kString: {
        std::string s = tok.value;
        next();
        while (cur().kind == Token::Kind::kString) {  // adjacent literals concatenate
          s += cur().value;
          next();
        }
        auto n = make(Expr::Kind::kLiteral, tok.pos);
        n->literal = Value::plain(std::move(s));
        return n;
      }
      case Token::Kind::kInt: {
        next();
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(tok.value.c_str(), &end, 10);
        if (errno == ERANGE) throw LocatedError("integer literal out of range", tok.pos);
        auto n = make(Expr::Kind::kLiteral, tok.pos);
        n->literal = Value::integer(v);
        return n;
      }
      case Token::Kind::kFloat: {
        next();
        auto n = make(Expr::Kind::kLiteral, tok.pos);
        n->literal = Value::floating(std::strtod(tok.value.c_str(), nullptr));
        return n;
      }
      case Token::Kind::kOp: {
        if (tok.value == "(") {
          next();
          if (is_op(")")) {  // the empty tuple
            next();
            return make(Expr::Kind::kTuple, tok.pos);
          }
          ExprPtr first = parse_expression();
          if (!is_op(",")) {
            expect_op(")");
            return first;
          }
          auto n = make(Expr::Kind::kTuple, tok.pos);
          n->args.push_back(std::move(first));
          while (is_op(",")) {
            next();
            if (is_op(")")) break;
            n->args.push_back(parse_expression());
          }
          expect_op(")");
          return finish(std::move(n));
        }
        if (tok.value == "[") {
          next();
          auto n = make(Expr::Kind::kList, tok.pos);
          while (!is_op("]")) {
            n->args.push_back(parse_expression());
            if (!is_op("]")) expect_op(",");
          }
          next();
          return finish(std::move(n));
        }
        if (tok.value == "{") {
          next();
          auto n = make(Expr::Kind::kDict, tok.pos);
          while (!is_op("}")) {
            n->args.push_back(parse_expression());
            expect_op(":");
            n->args.push_back(parse_expression());
            if (!is_op("}")) expect_op(",");
          }
          next();
          return finish(std::move(n));
        }
        break;
      }
      default:
        break;
    }
    fail("unexpected " + describe(tok) + " in an expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const SourcePos pos = cur().pos;
        next();
        auto n = make(Expr::Kind::kAttr, pos);
        if (cur().kind == Token::Kind::kInt) {  // x.0 is x[0]
          n->kind = Expr::Kind::kSubscript;
          auto idx = make(Expr::Kind::kLiteral, cur().pos);
          idx->literal = Value::integer(std::strtoll(cur().value.c_str(), nullptr, 10));
          next();
          n->args.push_back(std::move(e));
          n->args.push_back(std::move(idx));
        } else {
          n->name = expect_name();
          n->args.push_back(std::move(e));
        }
        e = finish(std::move(n));
      } else if (is_op("[")) {
        const SourcePos pos = cur().pos;
        next();
        e = parse_subscript(std::move(e), pos);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, SourcePos pos) {
    ExprPtr parts[3];
    bool is_slice = false;
    int slot = 0;
    if (!is_op(":")) parts[0] = parse_expression();
    while (is_op(":")) {
      is_slice = true;
      if (++slot > 2) fail("a slice has at most three parts");
      next();
      if (!is_op(":") && !is_op("]")) parts[slot] = parse_expression();
    }
    if (is_op(",")) fail("tuple subscripts are not supported");
    expect_op("]");
    auto n = make(is_slice ? Expr::Kind::kSlice : Expr::Kind::kSubscript, pos);
    n->args.push_back(std::move(obj));
    if (is_slice) {
      for (auto& p : parts) n->args.push_back(std::move(p));  // null parts are omitted bounds
    } else {
      n->args.push_back(std::move(parts[0]));
    }
    return finish(std::move(n));
  }

  // '(' args ')' into n->args (after the slots already there) and n->kwargs.
  void parse_call_args(Expr& n) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().kind == Token::Kind::kName && peek().kind == Token::Kind::kOp &&
          peek().value == "=") {
        std::string key = cur().value;
        next();
        next();
        n.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!n.kwargs.empty()) fail("positional argument after a keyword argument");
        n.args.push_back(parse_expression());
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto n = make(Expr::Kind::kCall, callee->pos);
    n->args.push_back(std::move(callee));
    parse_call_args(*n);
    return finish(std::move(n));
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        auto n = make(Expr::Kind::kFilter, cur().pos);
        n->name = expect_name();
        while (is_op(".")) {  // dotted filter names
          next();
          n->name += "." + expect_name();
        }
        n->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*n);
        e = finish(std::move(n));
      } else if (is_name("is")) {
        next();
        auto n = make(Expr::Kind::kTest, cur().pos);
        if (is_name("not")) {
          n->negated = true;
          next();
        }
        n->pos = cur().pos;
        n->name = expect_name();
        n->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*n);
        } else if (takes_bare_test_argument()) {
          // `x is divisibleby 3`: one argument without parentheses (jinja2 parse_test).
          ExprPtr arg = parse_primary();
          n->args.push_back(parse_postfix(std::move(arg)));
        }
        e = finish(std::move(n));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }
  bool takes_bare_test_argument() const {
    const Token& t = cur();
    switch (t.kind) {
      case Token::Kind::kString:
      case Token::Kind::kInt:
      case Token::Kind::kFloat:
        return true;
      case Token::Kind::kName:
        if (t.value == "is") throw LocatedError("tests cannot be chained with 'is'", t.pos);
        return t.value != "else" && t.value != "or" && t.value != "and";
      case Token::Kind::kOp:
        return t.value == "[" || t.value == "{";
      default:
        return false;
    }
  }

  std::vector<Token> t_;
  std::size_t i_ = 0;
  std::size_t depth_ = 0;
};

inline Body parse_template(const std::string& source) {
  return Parser(tokenize(source)).parse_template();
}

}  // namespace sgt::text::jinja
