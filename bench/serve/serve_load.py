#!/usr/bin/env python3
"""Load, latency, memory and overhead of `sgt serve` on 127.0.0.1 (bench/serve/README.md).

Starts `sgt serve --model BASE` and the proxy `sgt serve SGT --upstream ...` itself, runs bounded
loops of chat completions against the proxy, and stops both. Python standard library only.

  bench/serve/serve_load.py --sgt build/release/tools/sgt [--out results.json]

Reports, for 128- and 512-token chats at 1, 4 and 16 concurrent clients: throughput, p50/p99
latency, the share of the proxy's time spent in the transform (from its log lines), and the peak
RSS growth per request in flight of the proxy and of the model server. Then, against a stub
upstream that answers at once (so the model's decoding is out of the picture), at 512 tokens: the
proxy's time over the transform's own (its log's transform_ms, and `sgt transform` on the same
chat), and the proxy's throughput at --threads 2 over --threads 1.
"""
import argparse
import http.client
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ("the patient reported mild symptoms after the second visit and asked about the results "
         "of the blood test while the clinic scheduled a follow up for next week").split()


class Server:
    """An `sgt serve` process with its stderr in a log file; stopped with SIGTERM."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        for _ in range(1200):
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.read_log())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start: " + self.read_log())

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class StubUpstream:
    """A Completions server that answers every request with one piece at once."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, body, content_type):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.reply(b'{"object":"list","data":[{"id":"stub","object":"model"}]}',
                           "application/json")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                events = [
                    {"object": "text_completion",
                     "choices": [{"index": 0, "text": "ok", "finish_reason": "length"}]},
                    {"object": "text_completion", "choices": [],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
                ]
                body = "".join("data: " + json.dumps(e) + "\n\n" for e in events) + "data: [DONE]\n\n"
                self.reply(body.encode(), "text/event-stream")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def post(port, path, body, timeout=600):
    """(status, response bytes, seconds) of one POST on a new connection."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        return r.status, data, time.perf_counter() - t0
    finally:
        conn.close()


def chat_of_tokens(proxy_port, tokens):
    """Messages whose rendered chat is `tokens` tokens or just over (asked of /v1/stainedglass)."""

    def messages(n_words):
        text = " ".join(WORDS[i % len(WORDS)] for i in range(n_words))
        return [{"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": text}]

    def count(n_words):
        status, data, _ = post(proxy_port, "/v1/stainedglass", json.dumps({"messages": messages(n_words)}))
        if status != 200:
            raise RuntimeError(f"/v1/stainedglass answered {status}: {data[:200]!r}")
        return len(json.loads(data)["tokenized_plain_text"])

    lo, hi = 1, 8
    while count(hi) < tokens:
        lo, hi = hi, hi * 2
        if hi > 1 << 16:
            raise RuntimeError("cannot reach the token count")
    while lo < hi:  # the fewest words reaching `tokens`
        mid = (lo + hi) // 2
        if count(mid) >= tokens:
            hi = mid
        else:
            lo = mid + 1
    return messages(lo), count(lo)


def percentile(values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


LOG_LINE = re.compile(r"POST /v1/chat/completions status=(\d+) .*transform_ms=([0-9.]+) total_ms=([0-9.]+)")


def proxy_times(log_text):
    """(transform_ms, total_ms) of each answered chat in a proxy log."""
    return [(float(m.group(2)), float(m.group(3)))
            for m in LOG_LINE.finditer(log_text) if m.group(1) == "200"]


def run_level(proxy, servers, body, clients, per_client):
    """`clients` threads, each sending `per_client` requests one after another."""
    log_before = len(proxy.read_log())
    rss_idle = {name: s.rss_kib() for name, s in servers.items()}
    rss_peak = dict(rss_idle)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for name, s in servers.items():
                rss_peak[name] = max(rss_peak[name], s.rss_kib())
            time.sleep(0.01)

    latencies, statuses, lock = [], {}, threading.Lock()

    def client():
        for _ in range(per_client):
            status, _, seconds = post(proxy.port, "/v1/chat/completions", body)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(seconds)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    times = proxy_times(proxy.read_log()[log_before:])
    transform = sum(t for t, _ in times)
    total = sum(t for _, t in times)
    return {
        "clients": clients,
        "requests": clients * per_client,
        "statuses": statuses,
        "throughput_rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "transform_share": transform / total if total else float("nan"),
        "rss_per_in_flight_kib": {name: (rss_peak[name] - rss_idle[name]) / clients for name in servers},
        "rss_idle_kib": rss_idle,
    }


def cli_transform_ms(sgt, sgt_dir, messages, threads, repeats):
    """The fastest of `repeats` runs of `sgt transform` on the chat (its own printed time)."""
    with tempfile.TemporaryDirectory() as tmp:
        chat = os.path.join(tmp, "chat.json")
        with open(chat, "w") as f:
            json.dump({"messages": messages}, f)
        best = float("inf")
        for _ in range(repeats):
            out = subprocess.run([sgt, "transform", sgt_dir, "--chat", chat, "--add-generation-prompt",
                                  "--output", os.path.join(tmp, "out.pt"), "--threads", str(threads)],
                                 check=True, capture_output=True, text=True).stdout
            best = min(best, float(re.search(r"transform ([0-9.]+) ms", out).group(1)))
        return best


def overhead_and_threads(args, work, messages):
    """The proxy in front of a stub upstream, one client, 512 tokens: its time over the transform's,
    and its throughput at --threads 2 over --threads 1."""
    stub = StubUpstream()
    body = json.dumps({"messages": messages, "max_tokens": 1, "temperature": 0})
    result = {}
    try:
        for threads in (1, 2):
            proxy = Server([args.sgt, "serve", args.sgt_model, "--upstream",
                            f"http://127.0.0.1:{stub.port}", "--upstream-model", "stub",
                            "--port", "0", "--threads", str(threads), "--max-concurrent", "1"],
                           os.path.join(work, f"proxy_stub_t{threads}.log"))
            try:
                for _ in range(3):  # warm up: the workspace grows once
                    post(proxy.port, "/v1/chat/completions", body)
                level = run_level(proxy, {"proxy": proxy}, body, 1, args.overhead_requests)
                times = proxy_times(proxy.read_log())[3:]
                transform = statistics.median(t for t, _ in times)
                total = statistics.median(t for _, t in times)
                result[f"threads_{threads}"] = {
                    "throughput_rps": level["throughput_rps"],
                    "client_p50_ms": level["p50_ms"],
                    "proxy_transform_ms_p50": transform,
                    "proxy_total_ms_p50": total,
                    "proxy_over_transform": total / transform - 1,
                    "client_over_transform": level["p50_ms"] / transform - 1,
                    "cli_transform_ms_best": cli_transform_ms(args.sgt, args.sgt_model, messages,
                                                              threads, args.cli_repeats),
                }
            finally:
                proxy.stop()
        result["throughput_2_over_1"] = (result["threads_2"]["throughput_rps"] /
                                         result["threads_1"]["throughput_rps"])
    finally:
        stub.stop()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sgt", required=True, help="the sgt binary")
    p.add_argument("--sgt-model", default=os.path.join(ROOT, "examples/models/demo"))
    p.add_argument("--base-model", default=os.path.join(ROOT, "examples/models/demo_base"))
    p.add_argument("--tokens", default="128,512", help="chat lengths in tokens")
    p.add_argument("--clients", default="1,4,16", help="concurrent clients")
    p.add_argument("--requests", type=int, default=64, help="requests per level (split over clients)")
    p.add_argument("--max-tokens", type=int, default=16, help="answer length")
    p.add_argument("--proxy-threads", type=int, default=0, help="proxy --threads (0: every core)")
    p.add_argument("--model-threads", type=int, default=0, help="model server --threads")
    p.add_argument("--overhead-requests", type=int, default=32)
    p.add_argument("--cli-repeats", type=int, default=5)
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--work", help="folder for the servers' logs (default: a temporary one)")
    args = p.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    max_clients = max(clients)

    work = args.work or tempfile.mkdtemp(prefix="sgt_serve_bench_")
    os.makedirs(work, exist_ok=True)
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "levels": []}
    model = Server([args.sgt, "serve", "--model", args.base_model, "--port", "0",
                    "--threads", str(args.model_threads), "--max-concurrent", str(max_clients)],
                   os.path.join(work, "model.log"))
    proxy = None
    try:
        proxy = Server([args.sgt, "serve", args.sgt_model, "--upstream",
                        f"http://127.0.0.1:{model.port}", "--port", "0",
                        "--threads", str(args.proxy_threads), "--max-concurrent", str(max_clients)],
                       os.path.join(work, "proxy.log"))
        chats = {}
        for t in tokens:
            chats[t] = chat_of_tokens(proxy.port, t)
        for t in tokens:
            messages, n = chats[t]
            body = json.dumps({"messages": messages, "max_tokens": args.max_tokens, "temperature": 0})
            post(proxy.port, "/v1/chat/completions", body)  # warm up
            for c in clients:
                level = run_level(proxy, {"proxy": proxy, "model": model}, body, c,
                                  max(1, args.requests // c))
                level["prompt_tokens"] = n
                results["levels"].append(level)
                print(f"{n:4d} tokens, {c:2d} clients: {level['throughput_rps']:7.2f} req/s, "
                      f"p50 {level['p50_ms']:8.1f} ms, p99 {level['p99_ms']:8.1f} ms, "
                      f"transform {100 * level['transform_share']:5.1f}% of the proxy's time, "
                      f"RSS per request in flight: proxy "
                      f"{level['rss_per_in_flight_kib']['proxy'] / 1024:.1f} MiB, model "
                      f"{level['rss_per_in_flight_kib']['model'] / 1024:.1f} MiB, "
                      f"statuses {level['statuses']}", flush=True)
    finally:
        if proxy:
            proxy.stop()
        model.stop()

    longest = max(tokens)
    o = overhead_and_threads(args, work, chats[longest][0])
    results["overhead"] = dict(o, prompt_tokens=chats[longest][1])
    for threads in (1, 2):
        r = o[f"threads_{threads}"]
        print(f"stub upstream, {chats[longest][1]} tokens, --threads {threads}: "
              f"{r['throughput_rps']:.2f} req/s; transform {r['proxy_transform_ms_p50']:.2f} ms "
              f"(sgt transform: {r['cli_transform_ms_best']:.2f} ms), proxy total "
              f"{r['proxy_total_ms_p50']:.2f} ms (+{100 * r['proxy_over_transform']:.1f}%), client "
              f"latency {r['client_p50_ms']:.2f} ms (+{100 * r['client_over_transform']:.1f}%)")
    print(f"throughput at --threads 2 / --threads 1: {o['throughput_2_over_1']:.2f}x")
    print(f"logs in {work}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
