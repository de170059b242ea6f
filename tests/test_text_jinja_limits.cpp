// The chat-template interpreter's limits (include/sgt/text/jinja/limits.hpp): small templates an
// attacker would write, each of which must end in well under a second with an sgt::Error or with
// Python's answer -- not loop for hours, overflow the stack, read out of range or allocate
// gigabytes -- and the limits a library caller sets.
//
// Every attack renders in a child process with a time limit (and, outside sanitizer and emulated
// builds, a 2 GiB address-space limit), so that a regression fails its check in seconds instead
// of hanging the suite or taking the test program down with it.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "sgt/text/chat/chat_template.hpp"
#include "sgt/text/jinja/limits.hpp"

namespace {

using sgt::text::ChatJson;
using sgt::text::ChatTemplate;
using sgt::text::ChatTemplateOptions;
using sgt::text::jinja::Limits;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
#ifdef SGT_TEST_EMULATED
constexpr bool kEmulated = true;
#else
constexpr bool kEmulated = false;
#endif

// "OK <text>" or "ERROR <message>".
std::string render_here(const std::string& source, const Limits& limits) {
  try {
    ChatTemplate t(source, "chat_template");
    ChatTemplateOptions o;
    o.limits = limits;
    return "OK " + t.render(ChatJson::array(), ChatJson(), {}, o).text;
  } catch (const sgt::Error& e) {
    return std::string("ERROR ") + e.what();
  }
}

// render_here in a child process: its answer (the first 2000 bytes), or how it died.
std::string render_isolated(const std::string& source, const Limits& limits = Limits{}) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    alarm(kEmulated || kSanitized ? 120 : 20);
    if (!kSanitized && !kEmulated) {
      const rlimit r{rlim_t{2} << 30, rlim_t{2} << 30};
      setrlimit(RLIMIT_AS, &r);
    }
    std::string out;
    try {
      out = render_here(source, limits);
    } catch (const std::exception& e) {
      out = std::string("EXCEPTION ") + e.what();
    }
    out = out.substr(0, 2000);
    for (std::size_t done = 0; done < out.size();) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return "DIED of signal " + std::to_string(WTERMSIG(status)) + " " + out;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "EXITED " + std::to_string(WEXITSTATUS(status));
  return out;
}

void check_error(const std::string& source, const std::string& part,
                 const Limits& limits = Limits{}) {
  const std::string got = render_isolated(source, limits);
  const std::string shown = source.substr(0, 300);
  CAPTURE(shown);
  CAPTURE(got);
  CHECK(got.rfind("ERROR ", 0) == 0);
  CHECK(got.find(part) != std::string::npos);
}

void check_text(const std::string& source, const std::string& text,
                const Limits& limits = Limits{}) {
  const std::string shown = source.substr(0, 300);
  CAPTURE(shown);
  CHECK(render_isolated(source, limits) == "OK " + text);
}

// A budget small enough that the attacks below stop in milliseconds (the defaults stop them too,
// in about a second each: see docs/reliability.md).
Limits small_budget() {
  Limits l;
  l.max_work_units = 4 << 20;
  return l;
}

// Strings past the default 2 MiB, for the checks that long operands stay linear.
Limits large_strings() {
  Limits l;
  l.max_output_bytes = std::size_t{16} << 20;
  return l;
}

}  // namespace

TEST_CASE("chains of namespaces and bound methods are tracked or freed without recursion") {
  // A namespace counts what it holds: a chain built by wrapping is refused at depth 128.
  check_error(
      "{% set ns = namespace(n=none) %}{% for i in range(200) %}{% for j in range(1000) %}"
      "{% set ns.n = namespace(n=ns.n) %}{% endfor %}{% endfor %}",
      "nested deeper than 128");
  // A chain built by setting an attribute of the last link: 200000 links, each 1 deep where it
  // is set, freed at the end of the render without recursion (a recursive free overflows the
  // stack).
  check_text(
      "{% set st = namespace(cur=namespace()) %}{% set root = st.cur %}{% for i in range(200) %}"
      "{% for j in range(1000) %}{% set n = namespace() %}{% set c = st.cur %}{% set c.x = n %}"
      "{% set st.cur = n %}{% endfor %}{% endfor %}ok",
      "ok");
  // The same through lists and dicts between the links.
  check_text(
      "{% set st = namespace(cur=namespace()) %}{% for i in range(200) %}{% for j in range(1000) %}"
      "{% set n = namespace() %}{% set c = st.cur %}{% set c.x = [{'k': n}] %}{% set st.cur = n %}"
      "{% endfor %}{% endfor %}ok",
      "ok");
  // A bound method holds its receiver: `[x.count]` wrapped again and again is a deep chain.
  check_error(
      "{% set ns = namespace(x=[]) %}{% for i in range(200) %}{% for j in range(1000) %}"
      "{% set ns.x = [ns.x.count] %}{% endfor %}{% endfor %}",
      "nested deeper than 128");
  CHECK(render_isolated("{% set l = [1, 1, 2] %}{% set f = l.count %}{{ f(1) }}") == "OK 2");
}

TEST_CASE("integer arithmetic cannot overflow: **, slices, range, repetition") {
  // ** by squaring: Python's answers at once, an overflow an error (not 9.2e18 multiplications).
  check_text(
      "{{ 1 ** 9223372036854775807 }} {{ (-1) ** 9223372036854775807 }} {{ 0 ** "
      "9223372036854775807 }}",
      "1 -1 0");
  check_text("{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 3 ** 39 }} {{ 7 ** 0 }} {{ 2 ** -1 }}",
             "4611686018427387904 -9223372036854775808 4052555153018976267 1 0.5");
  check_error("{{ 3 ** 9223372036854775807 }}", "integer overflow");
  check_error("{{ 2 ** 64 }}", "integer overflow");
  // Slices with huge steps select what Python selects (the stepping does not wrap around).
  check_text(
      "{{ [1, 2, 3][1::9223372036854775807] }}{{ 'abc'[1::9223372036854775807] }}"
      "{{ [1, 2, 3][::-9223372036854775807] }}{{ 'h\xc3\xa9llo'[-1::-9223372036854775807] }}",
      "[2]b[3]o");
  check_text(
      "{{ [1, 2, 3][-9223372036854775807:9223372036854775807:2] }}"
      "{{ 'abcdef'[9223372036854775807:-9223372036854775807:-2] }}",
      "[1, 3]fdb");
  check_text("{{ 'h\xc3\xa9llo'[1] }}{{ 'h\xc3\xa9llo'[-4] }}{{ 'abc'[5] is defined }}",
             "\xc3\xa9\xc3\xa9"
             "False");
  check_text("{{ range(-9223372036854775807 - 1, 9223372036854775807, 4611686018427387904)|list }}",
             "[-9223372036854775808, -4611686018427387904, 0, 4611686018427387904]");
  check_text(
      "{{ range(9223372036854775807, -9223372036854775807 - 1, -9223372036854775807 - 1)|list }}",
      "[9223372036854775807, -1]");
  // Repeating nothing a huge number of times is nothing, at once.
  check_text("[{{ '' * 9223372036854775807 }}]{{ ([] * 9223372036854775807)|length }}", "[]0");
  check_error("{{ 'ab' * 4611686018427387904 }}", "string larger than 2 MiB");
  check_error("{{ [1, 2] * 4611686018427387904 }}", "list longer than 100000 items");
}

TEST_CASE("work the budget counts: macros, comparisons, count/index, unique, searches") {
  // 2^40 calls of a macro that prints nothing.
  check_error(
      "{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(40) }}",
      "render too expensive", small_budget());
  check_error(
      "{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(40) }}",
      "render too expensive");
  // == between two lists of 100000 references to one 100000-item list: 10^10 comparisons.
  check_error(
      "{% set l = range(100000)|list %}{% set m = [l] * 100000 %}{% set n = [l] * 100000 %}{{ m == "
      "n }}",
      "render too expensive", small_budget());
  check_error("{% set l = range(100000)|list %}{% set m = [l] * 1000 %}{{ m.count(l) }}",
              "render too expensive", small_budget());
  check_error(
      "{% set l = range(100000)|list %}{% for i in range(1000) %}{{ l.index(99999) }}{% endfor %}",
      "render too expensive", small_budget());
  check_error("{% set l = range(100000)|list %}{{ [l] * 1000 < [l] * 1000 }}",
              "render too expensive", small_budget());
  check_error("{% set l = range(100000)|list %}{{ ([l] * 1000) is in [[l] * 1000] }}",
              "render too expensive", small_budget());
  // unique of 100000 distinct numbers compares each with every kept one; strings are hashed.
  check_error("{{ (range(100000)|list)|unique|list|length }}", "render too expensive",
              small_budget());
  check_text("{{ (range(100000)|map('string')|list)|unique|list|length }}", "100000");
  check_text("{{ ['a', 'A', 1, 1.0, true, 'b']|unique|list }}", "['a', 1, 'b']");
  // Substring searches are linear: 'aaa...ab' in 'aaa...a' is 4 * 10^12 byte comparisons for a
  // search that compares the needle at every position.
  check_text("{{ ('a' * 1000000 + 'b') in ('a' * 4000000) }}", "False", large_strings());
  check_text("{{ ('a' * 4000000).replace('a' * 1000000 + 'b', 'c')|length }}", "4000000",
             large_strings());
  check_text(
      "{{ ('a' * 4000000).count('a' * 1000000 + 'b') }}{{ ('a' * 4000000).find('a' * 1000000 + "
      "'b') }}",
      "0-1", large_strings());
  check_text("{{ ('a' * 4000000).split('a' * 1000000 + 'b')|length }}", "1", large_strings());
  check_text(
      "{{ 'aXbXXc'.split('XX') }}{{ 'abcabc'.rfind('bc') }}{{ 'aaaa'.count('aa') }}{{ "
      "'abab'.replace('ab', 'x', 1) }}",
      "['aXb', 'c']42xab");
  // A dict literal with 100000 keys: its duplicate-key check is linear.
  std::string literal = "{{ {";
  for (int k = 0; k < 99999; ++k)
    literal += "'k" + std::to_string(k) + "': " + std::to_string(k) + ", ";
  check_text(literal + "'k5': 'again'}|length }}", "99999");
  check_text("{{ {'a': 1, 'b': 2, 'a': 3} }}", "{'a': 3, 'b': 2}");
}

TEST_CASE("sizes are checked before the result is built") {
  // Each would build 1-4 GB before a check after the fact.
  // A loop printing 10 MB: tokenizing it would take 1.4 GB (docs/reliability.md, "Cost of one
  // input"), so the output stops at 2 MiB.
  check_error("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "output larger than 2 MiB");
  check_error("{{ ('\\n' * 50000)|indent('x' * 1000, true, true) }}", "string larger than 2 MiB");
  check_error("{{ ('x' * 1000000).replace('', 'y' * 1000) }}", "string larger than 2 MiB");
  check_error("{{ ('x' * 1000000)|replace('x', 'y' * 1000) }}", "string larger than 2 MiB");
  check_error("{{ [[[[[[[[[[1]]]]]]]]]]|tojson(indent='x' * 10000000) }}",
              "string larger than 2 MiB");
  check_error("{% set l = range(100000)|list %}{{ [l] * 1000 }}", "larger than 2 MiB");
  check_error("{% set l = range(100000)|list %}{{ ([l] * 1000)|string|length }}",
              "larger than 2 MiB");
  check_error("{% set l = range(100000)|list %}{{ ([l] * 1000)|tojson|length }}",
              "larger than 2 MiB");
  check_error("{% set l = range(100000)|list %}{{ 'a' ~ [l] * 1000 }}", "larger than 2 MiB");
  check_error("{{ ('<' * 5000000) + ''|safe }}", "larger than 2 MiB");  // '<' escapes to '&lt;'
  check_error("{{ ('x' * 10000000).split('x')|length }}", "list longer than 100000 items",
              large_strings());
  check_error("{{ ('x\\n' * 200000).splitlines()|length }}", "list longer than 100000 items");
  check_error("{% for c in 'x' * 200000 %}{% endfor %}", "list longer than 100000 items");
  check_text("{{ ('ab\\ncd\\n\\nef')|indent(2, true) }}", "  ab\n  cd\n\n  ef");
  check_text(
      "{{ 'abc'.replace('', '-') }}{{ 'abc'.replace('', '-', 2) }}{{ 'h\xc3\xa9'.replace('', '.') "
      "}}",
      "-a-b-c--a-bc.h.\xc3\xa9.");
}

TEST_CASE("round with any precision: Python's answer or a clear error, never nan") {
  check_text(
      "{{ 1.5|round(400) }} {{ -123.456|round(-400) }} {{ 123.456|round(-400) }} {{ 2.675|round(2) "
      "}}",
      "1.5 -0.0 0.0 2.67");
  check_text("{{ 1234.5|round(-2) }} {{ 0.1|round(30) }} {{ 1e300|round(320) }}",
             "1200.0 0.1 1e+300");
  // An int stays an int under "common" (Python's round(int, n)), rounded half to even.
  check_text(
      "{{ 5|round(9223372036854775807) }} {{ 1250|round(-2) }} {{ 1350|round(-2) }} {{ "
      "-1250|round(-2) }} "
      "{{ 7|round(-400) }} {{ 5|round(2, 'floor') }}",
      "5 1200 1400 -1200 0 5.0");
  check_error("{{ 1.5|round(400, 'ceil') }}", "round: precision 400 is out of range");
  check_error("{{ 1e300|round(10, 'floor') }}", "out of range");
  check_text("{{ 1.25|round(1, 'floor') }} {{ 1.21|round(1, 'ceil') }}", "1.2 1.3");
}

TEST_CASE("the limits are settable by a library caller, with the documented defaults") {
  const Limits d;
  CHECK(d.max_output_bytes == std::size_t{2} << 20);
  CHECK(d.max_list_items == 100000);
  CHECK(d.max_loop_iterations == 1000000);
  CHECK(d.max_work_units == std::size_t{64} << 20);
  CHECK(d.max_recursion == 512);
  CHECK(d.max_macro_depth == 64);
  CHECK(ChatTemplateOptions{}.limits.max_output_bytes == d.max_output_bytes);

  Limits l;
  l.max_output_bytes = 100;
  CHECK(render_here("{{ 'x' * 100 }}", l) == "OK " + std::string(100, 'x'));
  CHECK(render_here("{{ 'x' * 101 }}", l).find("string larger than 100 bytes") !=
        std::string::npos);
  CHECK(render_here("{% for i in range(101) %}x{% endfor %}", l)
            .find("output larger than 100 bytes") != std::string::npos);
  l = Limits{};
  l.max_list_items = 10;
  CHECK(render_here("{{ range(10)|list|length }}", l) == "OK 10");
  CHECK(render_here("{{ range(11)|list|length }}", l).find("list longer than 10 items") !=
        std::string::npos);
  l = Limits{};
  l.max_loop_iterations = 5;
  CHECK(render_here("{% for i in range(6) %}{% endfor %}", l).find("more than 5 loop iterations") !=
        std::string::npos);
  l = Limits{};
  l.max_work_units = 1000;
  CHECK(render_here("{% for i in range(10) %}{{ i }}{% endfor %}", l) == "OK 0123456789");
  CHECK(render_here("{% for i in range(1000) %}{{ i }}{% endfor %}", l)
            .find("render too expensive") != std::string::npos);
  l = Limits{};
  l.max_macro_depth = 3;
  const std::string nest = "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{% endif %}.{% endmacro %}";
  CHECK(render_here(nest + "{{ m(2) }}", l) == "OK ...");
  CHECK(render_here(nest + "{{ m(3) }}", l).find("macro calls nested deeper than 3") !=
        std::string::npos);
  l = Limits{};
  l.max_recursion = 20;
  const std::string deep = std::string(30, '[') + "1" + std::string(30, ']');
  CHECK(render_here("{{ " + deep + "|length }}", l)
            .find("template evaluation nested deeper than 20 levels") != std::string::npos);
  // The defaults render every real template (tests/data/text/chat: test_text_chat_template).
}
