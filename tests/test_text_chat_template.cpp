// Chat templates: include/sgt/text/chat/chat_template.hpp and the Jinja2 interpreter under it
// (jinja_lexer/parser/interpreter/value.hpp), tokenizer_config.hpp and chat_input.hpp.
//
// 1. Real templates (tests/data/text/chat/templates, see the README there) render every chat of
//    tests/data/text/chat/expected.json to exactly the text transformers' apply_chat_template
//    renders, with exactly the protected spans the fixture tool derived from the real engine
//    (tools/fixtures/chat_template_fixtures.py explains how), or fail where transformers fails.
// 2. Unit tests: whitespace control, operators, filters, tests, methods, provenance through
//    each string operation, and every error path naming its line and column.
#include <doctest/doctest.h>

#include <chrono>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sgt/io/json.hpp"
#include "sgt/text/chat/chat_input.hpp"
#include "sgt/text/chat/chat_template.hpp"
#include "sgt/text/chat/tokenizer_config.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_text_chat_template {

namespace {

using sgt::text::ByteSpan;
using sgt::text::ChatTemplate;
using sgt::text::ChatTemplateOptions;
using sgt::text::RenderedChat;
using sgt::text::TokenizerSpecialStrings;
using json = sgt::text::ChatJson;

const std::string kChatDir = std::string(SGT_TEST_DATA_DIR) + "/text/chat";

std::string read_file(const std::string& path) { return sgt::read_text_file(path, 1 << 24); }

json parse(const std::string& text) {
  sgt::JsonReadOptions o;
  o.what = "test JSON";
  return sgt::text::parse_ordered_json_checked(text, o);
}

// Renders `source` with messages/extra given as JSON text.
RenderedChat render(const std::string& source, const std::string& messages = "[]",
                    const std::string& extra = "{}", const std::string& tools = "null") {
  ChatTemplate t(source, "chat_template");
  ChatTemplateOptions o;
  o.extra_context = parse("{\"x\":" + extra + "}")["x"];
  const json doc = parse("{\"m\":" + messages + ",\"t\":" + tools + "}");
  TokenizerSpecialStrings sp;
  sp.bos_token = "<s>";
  sp.eos_token = "</s>";
  return t.render(doc["m"], doc["t"], sp, o);
}
std::string text(const std::string& source, const std::string& extra = "{}") {
  return render(source, "[]", extra).text;
}

// The protected bytes as strings, in order.
std::vector<std::string> protected_parts(const RenderedChat& r) {
  std::vector<std::string> parts;
  for (const auto& s : r.protected_spans) parts.push_back(r.text.substr(s.begin, s.end - s.begin));
  return parts;
}

std::string error_of(const std::string& source, const std::string& messages = "[]",
                     const std::string& extra = "{}") {
  try {
    render(source, messages, extra);
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("real templates render as transformers does, with the reference's protected spans") {
  const json fixtures = parse(read_file(kChatDir + "/expected.json"));
  const json& cases = fixtures.at("cases");
  REQUIRE(cases.size() >= 100);
  std::size_t rendered = 0, failed_as_expected = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    CAPTURE(name);
    const std::string source = read_file(kChatDir + "/templates/" + c.at("template").get<std::string>());
    TokenizerSpecialStrings sp;
    const json& specials = c.at("specials");
    if (specials.contains("bos_token")) sp.bos_token = specials["bos_token"].get<std::string>();
    if (specials.contains("eos_token")) sp.eos_token = specials["eos_token"].get<std::string>();
    if (specials.contains("unk_token")) sp.unk_token = specials["unk_token"].get<std::string>();
    if (specials.contains("pad_token")) sp.pad_token = specials["pad_token"].get<std::string>();
    const json& chat = c.at("chat");
    ChatTemplateOptions o;
    o.add_generation_prompt = chat.value("add_generation_prompt", false);
    o.date_string = fixtures.at("date_string").get<std::string>();
    if (chat.contains("extra_context")) o.extra_context = chat["extra_context"];
    // The fixtures' reference protects tool schemas and calls only where a case's policy says so.
    const json policy = chat.contains("policy") ? chat["policy"] : json::object();
    o.policy.protect_tool_schemas = policy.value("protect_tool_schemas", false);
    o.policy.protect_tool_calls = policy.value("protect_tool_calls", false);
    const json tools = chat.contains("tools") ? chat["tools"] : json();
    ChatTemplate t(source, c.at("template").get<std::string>());
    if (c.contains("error")) {
      std::string message;
      try {
        t.render(chat.at("messages"), tools, sp, o);
        message = "(no error)";
      } catch (const sgt::Error& e) {
        message = e.what();
      }
      CHECK(message != "(no error)");
      if (c.at("error_from_raise_exception").get<bool>())
        CHECK(message.find("raise_exception: " + c.at("error").get<std::string>()) != std::string::npos);
      ++failed_as_expected;
      continue;
    }
    const RenderedChat r = t.render(chat.at("messages"), tools, sp, o);
    CHECK(r.text == c.at("text").get<std::string>());
    std::vector<ByteSpan> expected;
    for (const json& s : c.at("protected_spans")) expected.push_back({s[0].get<std::size_t>(), s[1].get<std::size_t>()});
    CHECK(r.protected_spans.size() == expected.size());
    if (r.protected_spans != expected) {
      for (const auto& s : r.protected_spans) MESSAGE("got      [" << s.begin << ", " << s.end << ") "
                                                      << r.text.substr(s.begin, s.end - s.begin));
      for (const auto& s : expected) MESSAGE("expected [" << s.begin << ", " << s.end << ")");
    }
    CHECK(r.protected_spans == expected);
    ++rendered;
  }
  CHECK(rendered >= 80);
  CHECK(failed_as_expected >= 10);
}

TEST_CASE("interpreter corners render as jinja2 does (snippets rendered by transformers' environment)") {
  const json fixtures = parse(read_file(kChatDir + "/expected.json"));
  json context = fixtures.at("snippet_context");
  const json messages = context["messages"];
  context.erase("messages");
  ChatTemplateOptions o;
  o.extra_context = context;
  o.date_string = fixtures.at("date_string").get<std::string>();
  REQUIRE(fixtures.at("snippets").size() >= 30);
  for (const json& snippet : fixtures.at("snippets")) {
    const std::string source = snippet.at("template").get<std::string>();
    CAPTURE(source);
    ChatTemplate t(source, "snippet");
    if (snippet.contains("error")) {
      std::string message = "(no error)";
      try {
        t.render(messages, json(), {}, o);
      } catch (const sgt::Error& e) {
        message = e.what();
      }
      CHECK(message != "(no error)");
      if (snippet.at("error_from_raise_exception").get<bool>())
        CHECK(message.find("raise_exception: " + snippet.at("error").get<std::string>()) != std::string::npos);
      continue;
    }
    CHECK(t.render(messages, json(), {}, o).text == snippet.at("text").get<std::string>());
  }
}

TEST_CASE("whitespace control: trim_blocks, lstrip_blocks, '-' and '+' markers") {
  CHECK(text("a\n{% if true %}\nb\n{% endif %}\nc") == "a\nb\nc");
  CHECK(text("a\n    {% if true %}\n    b\n    {% endif %}\nc") == "a\n    b\nc");
  CHECK(text("a  {%- if true -%}  b  {%- endif -%}  c") == "abc");
  CHECK(text("a\n  {%+ if true %}b{% endif %}") == "a\n  b");
  CHECK(text("x {{- ' y ' -}} z") == "x y z");
  CHECK(text("a\n  {# comment #}\nb") == "a\nb");
  CHECK(text("a  {#- c -#}  b") == "ab");
  CHECK(text("line\n") == "line");        // one trailing newline is dropped
  CHECK(text("line\n\n") == "line\n");
  CHECK(text("a\r\nb") == "a\nb");        // newlines normalized
  CHECK(text("  {{ 'v' }}") == "  v");    // lstrip_blocks does not touch {{
  CHECK(text("{% set x = 1 %}  {% if x %}y{% endif %}") == "  y");  // not at a line start
  CHECK(text("a\u00a0\u3000{%- if true -%}\u2003b{% endif %}") == "ab");  // Unicode whitespace, as jinja2's \\s
  CHECK(text("a\n\u00a0 {% if true %}b{% endif %}") == "a\nb");
}

TEST_CASE("expressions follow Python and jinja2") {
  CHECK(text("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}") == "7 3 -4 2 3.5 1024");
  CHECK(text("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 3 / 3 }}") ==
        "1.0 0.30000000000000004 1e+20 1e+16 1.5e-05 1.0");
  CHECK(text("{{ 'a' ~ 1 ~ none ~ true }}") == "a1NoneTrue");
  CHECK(text("{{ 'a' + 'b' ~ 'c' }}") == "abc");
  CHECK(text("{{ [1, 'x', none, true, 1.5] }} {{ {'k': 'v', 'n': [1]} }} {{ (1,) }}") ==
        "[1, 'x', None, True, 1.5] {'k': 'v', 'n': [1]} (1,)");
  CHECK(text("{{ \"it's\" }} {{ [\"it's\"] }} {{ ['a\\nb'] }}") == "it's [\"it's\"] ['a\\nb']");
  CHECK(text("{{ 1 if false }}|{{ 'y' if 0 else 'n' }}|{{ none or 'd' }}|{{ 0 and 1 }}") == "|n|d|0");
  CHECK(text("{{ 1 < 2 < 3 }} {{ 'ab' in 'cabd' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}") ==
        "True True True True");
  CHECK(text("{{ 1 == 1.0 }} {{ true == 1 }} {{ [1, [2]] == [1, [2]] }} {{ {'a': 1} == {'a': 1} }}") ==
        "True True True True");
  CHECK(text("{{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ 'héllo'[1:3] }} {{ [1,2,3,4][-2:] }} {{ [1,2,3][5] }}") ==
        "é olléh él [3, 4] ");
  CHECK(text("{{ -(['x']|length) }} {{ 'ab' * 2 }} {{ [0] * 3 }}") == "-1 abab [0, 0, 0]");
  CHECK(error_of("{{ -[1]|length }}").find("bad operand type for unary -: 'list'") != std::string::npos);
  CHECK(text("{{ 'a\\tb\\u00e9\\x41\\\\' }}") == "a\tbéA\\");
  CHECK(text("{{ 'adjacent' ' strings' }}") == "adjacent strings");
}

TEST_CASE("statements: for/loop, set scoping, namespace, macros, break/continue") {
  CHECK(text("{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
             "{{ loop.revindex }},{% endfor %}") == "10TrueFalse33,21FalseFalse32,32FalseTrue31,");
  CHECK(text("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}") == "-2;1-3;2-;");
  CHECK(text("{% for x in [1,2,3] %}{{ loop.cycle('a', 'b') }}{% for y in [1] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}") ==
        "a11b12a13");
  CHECK(text("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}") == "2242");
  CHECK(text("{% for x in [] %}a{% else %}empty{% endfor %}") == "empty");
  CHECK(text("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;");
  CHECK(text("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}") == "ab");
  CHECK(text("{% for c in 'hé' %}[{{ c }}]{% endfor %}") == "[h][é]");
  CHECK(text("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}"
             "{{ x }}{% endfor %}") == "02");
  // set in a loop does not leak, and does not carry to the next iteration (jinja2)
  CHECK(text("{% set y = 5 %}{% for m in [1,2,3] %}[{{ y }}]{% if loop.first %}{% set y = 1 %}{% endif %}{{ y }},"
             "{% endfor %}{{ y }}") == "[5]1,[5]5,[5]5,5");
  CHECK(text("{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}") == "6");
  CHECK(text("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}") ==
        "Hi A! Hi B?");
  CHECK(text("{% set block %}inside {{ 1 + 1 }}{% endset %}[{{ block }}]") == "[inside 2]");
  CHECK(text("{% if false %}a{% elif true %}b{% else %}c{% endif %}") == "b");
  CHECK(text("{% generation %}gen{% endgeneration %}") == "gen");
  CHECK(text("{{ strftime_now('%d %B %Y, %A') }}") == "26 July 2024, Friday");
  CHECK(text("{{ raise_exception is defined }} {{ dict(a=1) }}") == "True {'a': 1}");
}

TEST_CASE("filters, tests and methods") {
  CHECK(text("{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ ' a '.strip() }}|{{ 'ab'.lstrip('a') }}") == "a b|a|a|b");
  CHECK(text("{{ [1,2]|length }} {{ 'héllo'|length }} {{ undefined_thing|length }} {{ {'a':1}|count }}") == "2 5 0 1");
  CHECK(text("{{ [1,2]|first }}{{ [1,2]|last }}{{ 'abc'|first }}") == "12a");
  CHECK(text("{{ ['a','b']|join(', ') }} {{ [1,2]|join }} {{ [{'n':'x'},{'n':'y'}]|join('-', attribute='n') }}") == "a, b 12 x-y");
  CHECK(text("{{ u|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ u|d('e') }}") == "d  d e");
  CHECK(text("{{ 'aB'|upper }}{{ 'aB'|lower }} {{ 'hello world'|capitalize }} {{ \"they're here\"|title }} {{ \"they're\".title() }}") ==
        "ABab Hello world They're Here They'Re");
  CHECK(text("{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'.replace('a', 'b', 2) }}") == "a+b+c bba");
  CHECK(text("{{ 'ab'|list }} {{ [{'a': 1}, {'a': 2}]|map(attribute='a')|list }} {{ ['a','B']|map('upper')|list }}") ==
        "['a', 'b'] [1, 2] ['A', 'B']");
  CHECK(text("{{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('odd')|list }} "
             "{{ [{'r':'u'},{'r':'a'}]|selectattr('r', 'equalto', 'u')|list }} "
             "{{ [{'r':'u'},{'r':'a'}]|rejectattr('r', 'equalto', 'u')|list }}") ==
        "[1, 3] [2, 4] [{'r': 'u'}] [{'r': 'a'}]");
  CHECK(text("{{ 1|string ~ 'x' }} {{ '42'|int + 1 }} {{ 'x'|int }} {{ '1.5'|float }} {{ -3|abs }} {{ 2.5|round }} {{ 3.14159|round(2) }}") ==
        "1x 43 0 1.5 3 2.0 3.14");
  CHECK(text("{{ {'b': 1, 'a': 2}|items|list }} {{ {'b': 1, 'A': 2}|dictsort }} {{ ['a','A','b']|unique|list }}") ==
        "[('b', 1), ('a', 2)] [('A', 2), ('b', 1)] ['a', 'b']");
  CHECK(text("{{ 'a\\nb'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}") == "a\n  b|  a\n  b");
  CHECK(text("{{ {'a': [1, 'é', none, true, 1.5, {}]}|tojson }}") == "{\"a\": [1, \"é\", null, true, 1.5, {}]}");
  CHECK(text("{{ {'a': [1, {'b': 'c'}], 'd': []}|tojson(indent=2) }}") ==
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"c\"\n    }\n  ],\n  \"d\": []\n}");
  CHECK(text("{{ {'b': 1, 'a': 'q\"\\n'}|tojson(separators=(',', ':'), sort_keys=true) }}") == "{\"a\":\"q\\\"\\n\",\"b\":1}");
  CHECK(text("{{ 'é'|tojson(ensure_ascii=true) }}") == "\"\\u00e9\"");
  CHECK(text("{{ x is defined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}{{ 's' is iterable }}"
             "{{ 1 is number }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is equalto 1 }}"
             "{{ true is true }}{{ 0 is false }}{{ x is undefined }}{{ [] is sequence }}") ==
        "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrue");
  CHECK(text("{{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'x'.startswith(('y', 'x')) }}") ==
        "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] True");
  CHECK(text("{{ 'abc'.endswith('bc') }} {{ 'abc'.upper() }} {{ 'Hello World'.lower() }} {{ '{} and {}'.format(1, 'b') }}") ==
        "True ABC hello world 1 and b");
  CHECK(text("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b') }} {{ {'a': 1}.get('b', 2) }} {{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }}") ==
        "1 None 2 ['a'] [1]");
  CHECK(text("{{ '\\u00a0 x \\u3000'.strip() }}|{{ 'a\\u00a0b'.split() }}") == "x|['a', 'b']");
}

TEST_CASE("provenance: content survives the string operations templates use") {
  const std::string m = R"([{"role": "user", "content": "  Hello, World  "}])";
  auto parts = [&](const std::string& expr) { return protected_parts(render("{{ " + expr + " }}", m)); };
  using V = std::vector<std::string>;
  CHECK(parts("'<' + messages[0].content|trim + '>'") == V{"Hello, World"});
  CHECK(parts("messages[0].content.strip()[0:5]") == V{"Hello"});
  CHECK(parts("messages[0].content.split(',')|join('|')") == V{"  Hello", " World  "});
  CHECK(parts("messages[0].content.replace('World', 'There')") == V{"  Hello, ", "  "});
  CHECK(parts("messages[0].content|tojson") == V{"  Hello, World  "});
  CHECK(parts("messages[0].content|upper ~ 'x'") == V{"  HELLO, WORLD  "});
  CHECK(parts("messages[0]|string") == V{"  Hello, World  "});
  CHECK(parts("messages[0].role") == V{});
  CHECK(parts("messages[0].content|length") == V{});
  // escapes of protected characters are protected
  CHECK(protected_parts(render("{{ messages[0].content|tojson }}", R"([{"role":"user","content":"a\"b"}])")) ==
        V{"a\\\"b"});
  // text parts of a content list
  CHECK(protected_parts(render("{% for p in messages[0].content %}[{{ p.text }}|{{ p.type }}]{% endfor %}",
                               R"([{"role":"user","content":[{"type":"text","text":"T1"},{"type":"text","text":"T2"}]}])")) ==
        V{"T1", "T2"});
  // a set block keeps what it captured
  CHECK(parts("(messages|map(attribute='content')|first)[2:7]") == V{"Hello"});
  // policy: tool schemas and tool call arguments
  ChatTemplate t("{{ tools|tojson }}|{{ messages[0].tool_calls[0].function.arguments|tojson }}", "t");
  const json doc = parse(R"({"m": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"q": "x"}}}]}],
                             "t": [{"name": "tool", "description": "d"}]})");
  ChatTemplateOptions o;  // the default policy protects tool schemas, not tool calls
  CHECK(protected_parts(t.render(doc["m"], doc["t"], {}, o)) == V{"tool", "d"});
  o.policy.protect_tool_schemas = false;
  CHECK(protected_parts(t.render(doc["m"], doc["t"], {}, o)).empty());
  o.policy.protect_tool_schemas = true;
  o.policy.protect_tool_calls = true;
  CHECK(protected_parts(t.render(doc["m"], doc["t"], {}, o)) == V{"tool", "d", "x"});
}

TEST_CASE("undefined behaves as jinja2's default Undefined") {
  CHECK(text("[{{ nothing }}]{{ nothing is defined }}{{ not nothing }}") == "[]FalseTrue");
  CHECK(text("{% for x in nothing %}x{% endfor %}{{ nothing|length }}{{ nothing ~ 'a' }}") == "0a");
  CHECK(render("{{ messages[0].missing is defined }}", R"([{"role":"user","content":"c"}])").text == "False");
  CHECK(error_of("{{ nothing.attr }}").find("'nothing' is undefined") != std::string::npos);
  CHECK(error_of("{{ nothing + 1 }}").find("'nothing' is undefined") != std::string::npos);
  CHECK(error_of("{{ nothing|tojson }}").find("not JSON serializable") != std::string::npos);
}

TEST_CASE("every error names the template, line and column, and what is wrong") {
  auto has = [](const std::string& e, const std::string& part) {
    CAPTURE(e);
    CAPTURE(part);
    CHECK(e.find(part) != std::string::npos);
  };
  has(error_of("a\n{% include 'x' %}"), "chat_template line 2, column 4: unsupported tag 'include'");
  has(error_of("{{ x|nosuchfilter }}"), "line 1, column 6: unknown filter 'nosuchfilter'");
  has(error_of("{{ x is nosuchtest }}"), "unknown test 'nosuchtest'");
  has(error_of("{{ [1]|wordwrap }}"), "filter 'wordwrap' is not supported");
  has(error_of("\n\n  {{ 1 + }}"), "line 3, column 10: unexpected end of '}}' in an expression");
  has(error_of("{% if true %}"), "missing 'elif' or 'else' or 'endif'");
  has(error_of("{% for x in y %}"), "missing 'else' or 'endfor'");
  has(error_of("{{ 'abc }}"), "line 1, column 4: unterminated string literal");
  has(error_of("{{ 1 }"), "missing end of '}}'");
  has(error_of("{# never closed"), "missing end of comment tag");
  has(error_of("{% set a, b = 1, 2 %}"), "tuple assignment in 'set' is not supported");
  has(error_of("{{ x @ y }}"), "unexpected character '@'");
  has(error_of("{{ raise_exception('Bad roles!') }}"), "line 1, column 4: raise_exception: Bad roles!");
  has(error_of("{{ 1 / 0 }}"), "division by zero");
  has(error_of("{{ 'a' + 1 }}"), "unsupported operand types for +: 'string' and 'int'");
  has(error_of("{{ [].append(1) }}"), "unsafe");
  has(error_of("{{ {}.update({}) }}"), "unsafe");
  has(error_of("{% set ns = namespace() %}{% set ns._x = 1 %}"), "may not start with '_'");
  has(error_of("{% set x = 1 %}{% set x.y = 2 %}"), "not a namespace");
  has(error_of("{% for a, b in [1] %}{% endfor %}"), "not iterable");
  has(error_of("{% for x in 5 %}{% endfor %}"), "'int' object is not iterable");
  has(error_of("{{ 9223372036854775807 + 1 }}"), "integer overflow");
  has(error_of("{{ 'x' % 1 }}"), "string formatting with '%' is not supported");
  has(error_of("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"), "macro calls nested deeper than 64");
  has(error_of("{{ " + std::string(70, '(') + "1" + std::string(70, ')') + " }}"), "nesting deeper than 64 levels");
  has(error_of("{% set big = range(100000)|list %}{% for i in range(1000) %}{% if -1 in big %}{% endif %}{% endfor %}"),
      "render too expensive");
  std::string chain = "{{ 'x'";
  for (int i = 0; i < 200; ++i) chain += "|trim";
  has(error_of(chain + " }}"), "expression nested deeper than 128 levels");
  chain = "{{ 1";
  for (int i = 0; i < 200; ++i) chain += " + 1";
  has(error_of(chain + " }}"), "expression nested deeper than 128 levels");
  has(error_of("{% macro m(n) %}{{ [[[[[[[[m(n + 1)]]]]]]]]|length }}{% endmacro %}{{ m(0) }}"),
      "template evaluation nested deeper than 512 levels");
  std::string deep_ifs;
  for (int i = 0; i < 70; ++i) deep_ifs += "{% if 1 %}";
  has(error_of(deep_ifs), "nesting deeper than 64 levels");
  has(error_of("{% for i in range(200000) %}{% endfor %}"), "list longer than 100000 items");
  has(error_of("{% for i in range(2000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"),
      "more than 1000000 loop iterations");
  has(error_of("{% set s = 'x' * 1000000 %}{% for i in range(20) %}{{ s }}{% endfor %}"), "output larger than 2 MiB");
  has(error_of("{% set ns = namespace(v=[]) %}{% for i in range(200) %}{% set ns.v = [ns.v] %}{% endfor %}"),
      "nested deeper than 128");
  has(error_of("{{ x }}", "[]", R"({"messages": 1})"), "set by the renderer");
  CHECK_THROWS_WITH_AS(ChatTemplate("\xff", "my template"), "my template is not valid UTF-8", sgt::Error);
  // a namespace that holds itself renders and is freed (no leak under ASan)
  CHECK(text("{% set ns = namespace() %}{% set ns.me = ns %}ok") == "ok");
}

TEST_CASE("render inputs: messages and tools shapes, null keys, reasoning aliases") {
  CHECK(error_of("x", "{}").find("messages must be a JSON array") != std::string::npos);
  // null keys are dropped, as apply_chat_template does
  CHECK(render("{{ messages[0].content is defined }}", R"([{"role":"assistant","content":null}])").text == "False");
  // reasoning under any name reaches reasoning_content and thinking
  const auto r = render("{{ messages[0].reasoning_content }}|{{ messages[0].thinking }}",
                        R"([{"role":"assistant","content":"a","reasoning":"why"}])");
  CHECK(r.text == "why|why");
  CHECK(protected_parts(r) == std::vector<std::string>{"why", "why"});
}

TEST_CASE("tokenizer_config.json: template forms, special tokens, errors name the key") {
  using sgt::text::parse_tokenizer_config;
  auto c = parse_tokenizer_config(R"({"chat_template": "{{ 1 }}", "bos_token": "<s>",
      "eos_token": {"content": "</s>", "lstrip": false}, "pad_token": null, "add_bos_token": true,
      "model_max_length": 1e30})", "tokenizer_config.json");
  CHECK(c.chat_template == std::optional<std::string>("{{ 1 }}"));
  CHECK(c.specials.bos_token == std::optional<std::string>("<s>"));
  CHECK(c.specials.eos_token == std::optional<std::string>("</s>"));
  CHECK(!c.specials.pad_token);
  CHECK(!c.specials.unk_token);
  CHECK(c.add_bos_token == std::optional<bool>(true));
  CHECK(!c.add_eos_token);
  CHECK(c.model_max_length == std::optional<double>(1e30));
  c = parse_tokenizer_config(R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})", "tc");
  CHECK(c.chat_template == std::optional<std::string>("D"));
  CHECK(!parse_tokenizer_config("{}", "tc").chat_template);
  CHECK_THROWS_WITH_AS(parse_tokenizer_config(R"({"chat_template": [{"name": "x", "template": "T"}]})", "tc"),
                       "tc: key 'chat_template': the list of templates has none named \"default\"", sgt::Error);
  CHECK_THROWS_WITH_AS(parse_tokenizer_config(R"({"chat_template": 3})", "tc"),
                       "tc: key 'chat_template': must be a string or a list of {name, template}, got 3", sgt::Error);
  CHECK_THROWS_WITH_AS(parse_tokenizer_config(R"({"bos_token": {"x": 1}})", "tc"),
                       "tc: key 'bos_token': an AddedToken object needs a string \"content\"", sgt::Error);
  CHECK_THROWS_WITH_AS(parse_tokenizer_config(R"({"add_eos_token": "yes"})", "tc"),
                       "tc: key 'add_eos_token': must be true, false or null, got \"yes\"", sgt::Error);
  // a sibling chat_template.jinja is used when the config has none (transformers 5 layout)
  const std::string dir = kChatDir + "/tokenizer_dir";
  const auto d = sgt::text::read_tokenizer_config(dir);
  REQUIRE(d.chat_template);
  CHECK(d.chat_template->find("im_start") != std::string::npos);
  CHECK(d.chat_template_source == dir + "/chat_template.jinja");
  CHECK(d.specials.eos_token == std::optional<std::string>("<|im_end|>"));
}

TEST_CASE("CHAT.json: both forms, checks naming the message and key") {
  using sgt::text::parse_chat_input;
  auto in = parse_chat_input(R"([{"role": "user", "content": "hi", "custom": 1}])", "CHAT.json");
  CHECK(in.messages.size() == 1);
  CHECK(in.messages[0]["custom"] == 1);
  CHECK(in.tools.is_null());
  in = parse_chat_input(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
      "tools": [{"type": "function"}], "add_generation_prompt": true, "extra_context": {"enable_thinking": false}})", "c");
  CHECK(in.add_generation_prompt);
  CHECK(in.tools.size() == 1);
  CHECK(in.extra_context["enable_thinking"] == false);
  auto fails = [](const std::string& t, const std::string& what) {
    try {
      parse_chat_input(t, "CHAT.json");
      FAIL("no error for " << t);
    } catch (const sgt::Error& e) {
      CHECK(std::string(e.what()) == what);
    }
  };
  fails(R"([{"content": "x"}])", "CHAT.json: key 'messages[0].role': required key is missing");
  fails(R"([{"role": "user"}, {"role": 1}])", "CHAT.json: key 'messages[1].role': must be a string, got 1");
  fails(R"([{"role": "user", "content": 5}])", "CHAT.json: key 'messages[0].content': must be a string, null or a list of parts, got 5");
  fails(R"([{"role": "user", "content": [{"type": "text"}]}])", "CHAT.json: key 'messages[0].content[0].text': a text part needs a string \"text\"");
  fails(R"([{"role": "user", "tool_calls": {}}])", "CHAT.json: key 'messages[0].tool_calls': must be a list of tool calls");
  fails(R"([{"role": "tool", "tool_call_id": 3}])", "CHAT.json: key 'messages[0].tool_call_id': must be a string, got 3");
  fails(R"({"messages": [], "tools": 1})", "CHAT.json: key 'tools': must be a list of tool schemas or null");
  fails(R"({"messages": [], "add_generation_prompt": 1})", "CHAT.json: key 'add_generation_prompt': must be true or false, got 1");
  fails(R"({"messages": [], "extra": 1})", "CHAT.json: key 'extra': unknown key (expected messages, tools, add_generation_prompt, extra_context)");
  fails(R"({"tools": []})", "CHAT.json: key 'messages': required key is missing");
  fails("[1]", "CHAT.json: key 'messages[0]': a message must be a JSON object, got 1");
}

// The instruction form of Stained Glass's client (docs/format.md, "CHAT.json"): system_prompt ->
// a system message when not empty, context + a blank line + instruction -> the user message,
// response -> an assistant message when not empty.
TEST_CASE("CHAT.json: the instruction form maps to messages, checked key by key") {
  using sgt::text::parse_chat_input;
  // The quickstart's own example: exactly one user message.
  auto in = parse_chat_input(R"({"instruction": "What is the capital of France?",
      "system_prompt": "", "context": "", "response": ""})",
                             "CHAT.json");
  CHECK(in.messages.dump() == R"([{"role":"user","content":"What is the capital of France?"}])");
  CHECK(in.tools.is_null());
  CHECK_FALSE(in.add_generation_prompt);
  CHECK(in.extra_context.empty());
  in = parse_chat_input(R"({"response": "Paris.", "context": "Notes: X", "instruction": "Q?",
      "system_prompt": "Be brief."})",
                        "c");
  CHECK(in.messages.dump() ==
        R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Notes: X\n\nQ?"},)"
        R"({"role":"assistant","content":"Paris."}])");
  in = parse_chat_input(R"({"instruction": "", "context": "only context", "system_prompt": null})",
                        "c");
  CHECK(in.messages.dump() == R"([{"role":"user","content":"only context"}])");
  in = parse_chat_input(R"({"instruction": "Q?", "context": null, "response": null})", "c");
  CHECK(in.messages.dump() == R"([{"role":"user","content":"Q?"}])");

  auto fails = [](const std::string& t, const std::string& what) {
    try {
      parse_chat_input(t, "CHAT.json");
      FAIL("no error for " << t);
    } catch (const sgt::Error& e) {
      CHECK(std::string(e.what()) == what);
    }
  };
  fails(R"({"system_prompt": "x"})", "CHAT.json: key 'instruction': required key is missing");
  fails(R"({"instruction": 5})", "CHAT.json: key 'instruction': must be a string, got 5");
  fails(R"({"instruction": null})", "CHAT.json: key 'instruction': must be a string, got null");
  fails(R"({"instruction": "q", "system_prompt": ["a"]})",
        "CHAT.json: key 'system_prompt': must be a string or null, got [\"a\"]");
  fails(R"({"instruction": "q", "context": {}})",
        "CHAT.json: key 'context': must be a string or null, got {}");
  fails(R"({"instruction": "q", "response": true})",
        "CHAT.json: key 'response': must be a string or null, got true");
  fails(
      R"({"instruction": "q", "add_generation_prompt": true})",
      "CHAT.json: key 'add_generation_prompt': unknown key (the instruction form has instruction, "
      "system_prompt, context, response)");
  // One form or the other: a messages chat takes no instruction key.
  fails(
      R"({"messages": [], "instruction": "q"})",
      "CHAT.json: key 'instruction': unknown key (expected messages, tools, add_generation_prompt, "
      "extra_context)");
}

// SmolLM2-135M-Instruct's ChatML template (tests/data/gguf/smollm2_chat_template.jinja, from the
// GGUF's metadata) renders the instruction form exactly as transformers rendered the equivalent
// messages (tests/data/gguf/smollm2_expected.json, tools/fixtures/gguf_fixtures.py --smollm2).
TEST_CASE(
    "the instruction form renders as transformers renders its messages (SmolLM2's template)") {
  const std::string data = std::string(SGT_TEST_DATA_DIR) + "/gguf/";
  const ChatTemplate t(read_file(data + "smollm2_chat_template.jinja"), "smollm2");
  sgt::JsonReadOptions o;
  const auto chats =
      sgt::parse_json_checked(read_file(data + "smollm2_expected.json"), o).at("chats");
  TokenizerSpecialStrings specials;
  specials.bos_token = "<|im_start|>";
  specials.eos_token = "<|im_end|>";
  ChatTemplateOptions options;
  options.add_generation_prompt = true;
  auto render = [&](const std::string& chat_json) {
    return t
        .render(sgt::text::parse_chat_input(chat_json, "CHAT.json").messages, nullptr, specials,
                options)
        .text;
  };
  REQUIRE(chats[0].at("messages").dump() ==
          R"([{"content":"What is the capital of France?","role":"user"}])");
  CHECK(render(R"({"instruction": "What is the capital of France?", "system_prompt": "",
                   "context": "", "response": ""})") == chats[0].at("rendered").get<std::string>());
  REQUIRE(chats[2].at("messages").dump() ==
          R"([{"content":"You answer in one short sentence.","role":"system"},)"
          R"({"content":"Why is the sky blue?","role":"user"}])");
  CHECK(render(R"({"instruction": "Why is the sky blue?",
                   "system_prompt": "You answer in one short sentence."})") ==
        chats[2].at("rendered").get<std::string>());
}

// A chat's size is bounded by what the caller reads (64 MiB for a CHAT.json file), not by how its
// keys are arranged: parsing and the reasoning aliases are linear in the number of keys. 200k
// keys in one message (about 2.7 MB) took 111 s when each key was searched for among the ones
// before it, and take about 1.3 s (Zen 4, -O2); the 30 s bound leaves room for sanitizer builds
// on slow machines. Under an emulator (qemu) only the result is checked, on fewer keys.
TEST_CASE("a chat with 200k keys in one object parses and renders in linear time") {
  using clock = std::chrono::steady_clock;
#if defined(SGT_TEST_EMULATED)
  const int n = 20000;
  const double bound_s = 1e9;
#else
  const int n = 200000;
  const double bound_s = 30.0;
#endif
  std::string keys;
  for (int k = 0; k < n; ++k) keys += ",\"k" + std::to_string(k) + "\":" + std::to_string(k);
  const std::string chat =
      R"({"messages": [{"role": "user", "content": "hi", "reasoning_content": "r")" + keys +
      R"(}], "extra_context": {"e": 1}})";
  const auto t0 = clock::now();
  const auto in = sgt::text::parse_chat_input(chat, "CHAT.json");
  CHECK(in.messages[0].size() == std::size_t(n) + 3);
  CHECK(in.messages[0]["k" + std::to_string(n - 1)] == n - 1);
  CHECK(in.messages[0].begin().key() == "role");  // document order kept
  ChatTemplate t("{{ messages[0]['thinking'] }}|{{ messages[0]['reasoning_content'] }}|{{ e }}",
                 "t");
  ChatTemplateOptions o;
  o.extra_context = in.extra_context;
  CHECK(t.render(in.messages, nullptr, {}, o).text == "r|r|1");
  CHECK(std::chrono::duration<double>(clock::now() - t0).count() < bound_s);
  // extra_context's keys become the template's variables: a few hundred at most.
  o.extra_context = sgt::text::ChatJson::object();
  for (int k = 0; k < 257; ++k) o.extra_context["v" + std::to_string(k)] = k;
  CHECK_THROWS_WITH(t.render(in.messages, nullptr, {}, o),
                    doctest::Contains("has 257 keys, more than the limit of 256"));
}

}  // namespace test_text_chat_template
