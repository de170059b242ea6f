#!/usr/bin/env python3
"""The cost of one untrusted input to `sgt tokenize` and `sgt transform` (docs/reliability.md,
"Cost of one input").

Replays inputs of up to 1 MiB -- a chat template, a tokenizer.json or a CHAT.json -- through the sgt
tool on a model directory (the demo model), each in its own process, and records each run's wall
time, CPU time and peak RSS (os.wait4). The inputs are the regression cases built here (the attack
classes of issue 22, scaled to 1 MiB) and, with --corpora, the corpora that the text fuzzers
(tests/fuzz/run_fuzzers.sh with SGT_FUZZ_KEEP_CORPORA=DIR) kept, each turned into the files the tool
reads the way its harness reads it.

A run passes when it exits 0, or 1 with one line on stderr (a refused input), inside --max-seconds
and --max-rss-mib. Prints one line per regression case, a summary per source, and exits 1 if any run
failed.

  tools/measure_input_bounds.py --sgt build/release/tools/sgt --model examples/models/demo \\
      --work WORK_DIR [--corpora CORPORA_DIR] [--threads 2]
Only the Python standard library is needed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sgt", required=True, help="the sgt binary")
    p.add_argument("--model", required=True, help="an SGT model directory with a tokenizer")
    p.add_argument("--work", required=True, help="a scratch folder (emptied first)")
    p.add_argument("--corpora", help="folder with one subfolder per fuzz target's corpus")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--max-rss-mib", type=float, default=1024.0)
    p.add_argument("--timeout", type=float, default=120.0, help="kill a run after this long")
    p.add_argument("--only", help="run only the regression cases whose name contains this")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Model directories and chats


class Case:
    def __init__(self, source, name, chat, template=None, tokenizer=None):
        self.source = source  # "regression" or the fuzz target
        self.name = name
        self.chat = chat  # bytes of CHAT.json
        self.template = template  # bytes of chat_template.jinja, or None: the model's own
        self.tokenizer = tokenizer  # bytes of tokenizer.json, or None: the model's own


def chat_of(content):
    """A CHAT.json (bytes) with one user message; content is str."""
    return json.dumps({"messages": [{"role": "user", "content": content}],
                       "add_generation_prompt": True}).encode()


def sample_chat():
    return json.dumps({"messages": [
        {"role": "system", "content": "You are a careful clinical assistant."},
        {"role": "user", "content": "Summarize the notes and list any medication changes."}],
        "add_generation_prompt": True}).encode()


def model_dir_for(case, model, work):
    """The model directory the case runs on: the model itself, or a folder beside it with the
    case's template or tokenizer.json and links to the rest."""
    if case.template is None and case.tokenizer is None:
        return model
    d = os.path.join(work, "model")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in os.listdir(model):
        if f in ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja"):
            continue
        os.symlink(os.path.abspath(os.path.join(model, f)), os.path.join(d, f))
    with open(os.path.join(model, "tokenizer_config.json"), "rb") as f:
        config = json.loads(f.read())
    if case.template is not None:
        config.pop("chat_template", None)
        with open(os.path.join(d, "chat_template.jinja"), "wb") as f:
            f.write(case.template)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    if case.tokenizer is not None:
        with open(os.path.join(d, "tokenizer.json"), "wb") as f:
            f.write(case.tokenizer)
    else:
        os.symlink(os.path.abspath(os.path.join(model, "tokenizer.json")),
                   os.path.join(d, "tokenizer.json"))
    return d


def measured_run(argv, timeout):
    """Runs argv, returns (rc, timed_out, wall, cpu, rss_mib, stderr)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err_file:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err_file)
        timed_out = False
        deadline = t0 + timeout
        while True:
            wpid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if wpid == p.pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                timed_out = True
                wpid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.002)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        err_file.seek(0)
        err = err_file.read()
    cpu = usage.ru_utime + usage.ru_stime
    return p.returncode, timed_out, wall, cpu, usage.ru_maxrss / 1024.0, err


class Result:
    def __init__(self, case, command, rc, timed_out, wall, cpu, rss, err, args):
        self.case, self.command = case, command
        self.rc, self.timed_out, self.wall, self.cpu, self.rss = rc, timed_out, wall, cpu, rss
        lines = err.decode("utf-8", "replace").strip().splitlines()
        self.message = lines[-1] if lines else ""
        self.problems = []
        if timed_out:
            self.problems.append("timed out")
        elif rc not in (0, 1):
            self.problems.append("exit %d" % rc)
        elif rc == 1 and len(lines) != 1:
            self.problems.append("%d stderr lines" % len(lines))
        if wall > args.max_seconds:
            self.problems.append("%.1f s" % wall)
        if rss > args.max_rss_mib:
            self.problems.append("%.0f MiB" % rss)


def run_case(case, args):
    d = model_dir_for(case, args.model, args.work)
    chat = os.path.join(args.work, "chat.json")
    with open(chat, "wb") as f:
        f.write(case.chat)
    out = os.path.join(args.work, "out.safetensors")
    results = []
    for command, extra in (("tokenize", []),
                           ("transform", ["--output", out, "--threads", str(args.threads)])):
        if os.path.exists(out):
            os.unlink(out)
        r = measured_run([args.sgt, command, d, "--chat", chat] + extra, args.timeout)
        results.append(Result(case, command, *r, args))
    return results


# ---------------------------------------------------------------------------------------------
# Regression cases: the classes of issue 22, each input at most 1 MiB


def prose(model_bytes):
    """Readable English of exactly model_bytes bytes (the docs, repeated)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "tests", "data", "text", "tokenizers", "corpus.txt")) as f:
        text = f.read()
    text = text.encode("ascii", "ignore").decode()
    return (text * (model_bytes // len(text) + 1))[:model_bytes]


def fit(make, limit=MIB):
    """The largest n (by doubling, then bisection) with len(make(n)) <= limit, and make(n)."""
    lo, hi = 1, 1
    while len(make(hi)) <= limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(make(mid)) <= limit:
            lo = mid
        else:
            hi = mid
    return make(lo)


def tokenizer_with(model, edit):
    with open(os.path.join(model, "tokenizer.json"), "rb") as f:
        j = json.loads(f.read())
    edit(j)
    return json.dumps(j).encode()


def added_token(content, **flags):
    t = {"id": 0, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False}
    t.update(flags)
    return t


def regression_cases(model):
    C = []

    def chat_case(name, chat):
        C.append(Case("regression", name, chat))

    # Chats: the longest the transform takes, then 1 MiB of each kind of text and structure.
    chat_case("chat: prose at the transform's default limit (41 kB, ~16.3k tokens)",
              chat_of(prose(41800)))
    chat_case("chat: 1 MiB of prose (over the limit)", fit(lambda n: chat_of(prose(n))))
    chat_case("chat: 1 MiB of 'a' (one pre-token)", fit(lambda n: chat_of("a" * n)))
    chat_case("chat: 1 MiB of spaces", fit(lambda n: chat_of(" " * n)))
    chat_case("chat: 1 MiB of newlines", fit(lambda n: chat_of("\n" * n)))
    chat_case("chat: 1 MiB of CJK (one pre-token)",
              fit(lambda n: json.dumps({"messages": [{"role": "user", "content": "日本" * n}]},
                                       ensure_ascii=False).encode()))
    chat_case("chat: 1 MiB of digits", fit(lambda n: chat_of("1234567890" * n)))
    chat_case("chat: 1 MiB of \\u0000 escapes", fit(lambda n: chat_of("\0" * n)))
    chat_case("chat: one message with 1 MiB of keys",
              fit(lambda n: json.dumps({"messages": [dict(
                  [("role", "user"), ("content", "hi")] + [("k%d" % i, 0) for i in range(n)])]})
                  .encode()))
    chat_case("chat: 1 MiB of messages",
              fit(lambda n: json.dumps({"messages": [{"role": "user", "content": "a"}] * n})
                  .encode()))
    chat_case("chat: 1 MiB of nested arrays", fit(lambda n: b"[" * n + b"]" * n))
    chat_case("chat: 1 MiB of nested objects in a message",
              fit(lambda n: b'{"messages": [{"role": "user", "content": "x", "a": ' +
                  b'{"a": ' * n + b"1" + b"}" * n + b"}]}"))
    chat_case("chat: 1 MiB of tool schemas",
              fit(lambda n: json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                        "tools": [{"type": "function", "function": {
                                            "name": "f%d" % i, "parameters": {}}}
                                            for i in range(n)]}).encode()))

    # Templates, with the sample chat (the seeds of fuzz_text_chat_template are added below).
    def template_case(name, template):
        C.append(Case("regression", name, sample_chat(), template=template))

    template_case("template: nested loops of 10^6 x 10^6",
                  b"{% for a in range(1000000) %}{% for b in range(1000000) %}x"
                  b"{% endfor %}{% endfor %}")
    template_case("template: a string doubled 40 times",
                  b"{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                  b"{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}")
    template_case("template: 'a' * 10^12", b"{{ 'a' * 1000000000000 }}")
    template_case("template: a list repeated into itself",
                  b"{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
                  b"{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}")
    template_case("template: unbounded macro recursion",
                  b"{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
    template_case("template: 1 MiB of text", fit(lambda n: b"word " * n))
    template_case("template: 1 MiB of nested parentheses",
                  fit(lambda n: b"{{ " + b"(" * n + b"1" + b")" * n + b" }}"))
    template_case("template: 1 MiB of nested ifs",
                  fit(lambda n: b"{% if true %}" * n + b"x" + b"{% endif %}" * n))
    template_case("template: messages joined 10^5 times",
                  b"{% for i in range(100000) %}{{ messages | tojson }}{% endfor %}")
    template_case("template: replace that grows",
                  b"{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                  b"{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}{{ ns.s }}")
    here = os.path.dirname(os.path.abspath(__file__))
    seeds = os.path.join(here, "..", "tests", "fuzz", "seeds", "chat_template")
    for f in sorted(os.listdir(seeds)):
        with open(os.path.join(seeds, f), "rb") as fh:
            template_case("template: fuzz seed " + f, fh.read())

    # Tokenizers (the model's own tokenizer.json, edited), with the text that hurts each.
    def tokenizer_case(name, edit, chat):
        C.append(Case("regression", name, chat, tokenizer=tokenizer_with(model, edit)))

    def split_regex(pattern):
        def edit(j):
            j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": pattern}
        return edit

    tokenizer_case("tokenizer: Split (?:a|a){0,22}[^a] on 1 MiB of 'a'",
                   split_regex("(?:a|a){0,22}[^a]"), fit(lambda n: chat_of("a" * n)))
    tokenizer_case("tokenizer: Split (a+)+$ on 1 MiB of 'a'", split_regex("(a+)+$"),
                   fit(lambda n: chat_of("a" * n)))

    def normalizers(steps):
        def edit(j):
            j["normalizer"] = {"type": "Sequence", "normalizers": steps}
        return edit

    tokenizer_case("tokenizer: Replace with an empty pattern",
                   normalizers([{"type": "Replace", "pattern": {"Regex": ""}, "content": "xy"}]),
                   sample_chat())
    tokenizer_case("tokenizer: 12 Replace x -> xx on 1 MiB of x",
                   normalizers([{"type": "Replace", "pattern": {"String": "x"}, "content": "xx"}]
                               * 12), fit(lambda n: chat_of("x" * n)))
    tokenizer_case("tokenizer: 64 Prepend of 1 kB",
                   normalizers([{"type": "Prepend", "prepend": "p" * 1000}] * 64),
                   fit(lambda n: chat_of("x" * n)))

    def added(tokens):
        def edit(j):
            j["added_tokens"] = j.get("added_tokens", []) + tokens
        return edit

    tokenizer_case("tokenizer: added ' ' with rstrip on 1 MiB of spaces",
                   added([added_token(" ", rstrip=True)]), fit(lambda n: chat_of(" " * n)))
    tokenizer_case("tokenizer: added ' ' with lstrip and rstrip on 1 MiB of spaces",
                   added([added_token(" ", lstrip=True, rstrip=True)]),
                   fit(lambda n: chat_of(" " * n)))
    prefix = "x" * 60
    tokenizer_case("tokenizer: 4000 added tokens sharing a 60-byte prefix, 1 MiB of x",
                   added([added_token(prefix + "%04d" % i) for i in range(4000)]),
                   fit(lambda n: chat_of("x" * n)))
    tokenizer_case("tokenizer: 6000 added tokens, 1 MiB of them in the text",
                   added([added_token("t%06d" % i) for i in range(6000)]),
                   fit(lambda n: chat_of("t000001 " * n)))
    tokenizer_case("tokenizer: 3 ByteLevel pre-tokenizers after the Split",
                   lambda j: j["pre_tokenizer"]["pretokenizers"].extend(
                       [{"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                         "use_regex": True}] * 3), fit(lambda n: chat_of("日本 ab " * n)))
    return C


# ---------------------------------------------------------------------------------------------
# Fuzz corpora, each file turned into what the tool reads the way its harness reads it


def corpus_cases(corpora, model):
    with open(os.path.join(model, "tokenizer.json"), "rb") as f:
        base_tokenizer = json.loads(f.read())
    C = []
    for target in sorted(os.listdir(corpora)):
        folder = os.path.join(corpora, target)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            case = corpus_case(target, name, data, base_tokenizer)
            if case is not None:
                C.append(case)
    return C


def corpus_case(target, name, data, base_tokenizer):
    text = lambda b: b.decode("utf-8", "replace")
    if target == "fuzz_text_chat_json":
        return Case(target, name, data)
    if target == "fuzz_text_chat_template":
        template, _, chat = data.partition(b"\0")
        return Case(target, name, chat or sample_chat(), template=template)
    if target == "fuzz_text_tokenizer":
        if not data:
            return None
        if data[0] % 2 == 0:
            return Case(target, name, sample_chat(), tokenizer=data[1:])
        return Case(target, name, chat_of(text(data[1:])))
    if target == "fuzz_text_tokenizer_json":
        # fields separated by NUL: shape, Split regex, Replace pattern, Replace content, an added
        # token, the text (tests/fuzz/fuzz_text_tokenizer_json.cpp)
        f = data.split(b"\0")
        field = lambda i: f[i] if i < len(f) else b""
        shape = f[0][0] if f and f[0] else 0
        try:
            fields = [field(i).decode("utf-8") for i in range(1, 5)]
        except UnicodeDecodeError:
            return None
        j = json.loads(json.dumps(base_tokenizer))
        if fields[0]:
            j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": fields[0]}
        for k in range((shape >> 3) & 3):
            j["pre_tokenizer"]["pretokenizers"].append(
                {"type": "ByteLevel", "add_prefix_space": k % 2 == 0, "trim_offsets": True,
                 "use_regex": k == 0})
        steps = []
        for k in range(shape & 7):
            if k % 3 == 2:
                steps.append({"type": "Prepend", "prepend": fields[2]})
            else:
                steps.append({"type": "Replace", "pattern": {"Regex": fields[1]},
                              "content": fields[2]})
        if steps:
            j["normalizer"] = {"type": "Sequence", "normalizers": steps}
        if fields[3]:
            j.setdefault("added_tokens", []).append(
                added_token(fields[3], lstrip=bool(shape & 32), rstrip=bool(shape & 64),
                            normalized=bool(shape & 128)))
        return Case(target, name, chat_of(text(field(5))), tokenizer=json.dumps(j).encode())
    return None


# ---------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    args.model = os.path.abspath(args.model)
    args.sgt = os.path.abspath(args.sgt)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    cases = regression_cases(args.model)
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    if args.corpora:
        cases += corpus_cases(args.corpora, args.model)
    failed = 0
    summary = {}
    for case in cases:
        for r in run_case(case, args):
            s = summary.setdefault((case.source, r.command),
                                   {"runs": 0, "refused": 0, "wall": (0, ""), "cpu": (0, ""),
                                    "rss": (0, "")})
            s["runs"] += 1
            s["refused"] += r.rc == 1
            for k in ("wall", "cpu", "rss"):
                if getattr(r, k) > s[k][0]:
                    s[k] = (getattr(r, k), case.name)
            if case.source == "regression":
                largest = max(len(case.chat), len(case.template or b""),
                              len(case.tokenizer or b""))
                print("%-9s %-68s %6.2f s wall %6.2f s cpu %7.1f MiB  %s%s" % (
                    r.command, case.name[:68], r.wall, r.cpu, r.rss,
                    "ok" if r.rc == 0 else "refused: " + r.message[:110],
                    "" if largest <= MIB else "  (input %d bytes)" % largest))
            if r.problems:
                failed += 1
                print("FAIL %s %s %s: %s (%s)" % (case.source, case.name, r.command,
                                                  ", ".join(r.problems), r.message[:200]))
    print()
    print("| source | command | runs | refused | max wall (s) | max CPU (s) | max RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for (source, command), s in sorted(summary.items()):
        print("| %s | %s | %d | %d | %.2f | %.2f | %.1f |" % (
            source, command, s["runs"], s["refused"], s["wall"][0], s["cpu"][0], s["rss"][0]))
    print()
    for (source, command), s in sorted(summary.items()):
        print("slowest %s / %s: %s; largest: %s" % (source, command, s["wall"][1], s["rss"][1]))
    print("%d failed runs" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
