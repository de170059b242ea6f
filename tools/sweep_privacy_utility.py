#!/usr/bin/env python3
"""Privacy against utility for untrained transforms of a real model, as sigma grows.

For each --init-std S, `sgt make-transform BASE_DIR` builds a transform with a zero mean head and
sigma = S, then `sgt audit --base BASE_DIR` protects each chat with it (--draws draws) and reports:
the nearest-neighbour recovery rate of the protected tokens (the share whose nearest embedding row,
L2, is still the original token: lower is more private) and the base model's mean KL divergence
and top-1 agreement between its clean and protected next-token distributions (lower KL, higher
agreement: more useful). An untrained transform trades one for the other along this curve; a
trained SGT must do better than it.

Writes OUT.md (a Markdown table) and, when matplotlib is importable, OUT.png.

  tools/sweep_privacy_utility.py --sgt build/release/tools/sgt --base SMOLLM2_DIR \\
      --chat examples/instruction.json --chat examples/chat.json --work WORK \\
      --label SmolLM2-135M-Instruct --out docs/privacy_utility_smollm2
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sgt", required=True)
    p.add_argument("--base", required=True, help="the base model (a Hugging Face directory)")
    p.add_argument("--chat", action="append", required=True, help="CHAT.json (repeatable)")
    p.add_argument("--work", required=True, help="scratch folder for the transforms")
    p.add_argument("--out", required=True, help="OUT.md and OUT.png are written")
    p.add_argument("--sigmas", default="0.005,0.01,0.02,0.03,0.05,0.1,0.2,0.5,1")
    p.add_argument("--layers", type=int, default=1, help="make-transform --layers")
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=16, help="audit --base-new-tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--label", help="the base model's name in the table (default: its folder's)")
    return p.parse_args()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().splitlines()
        field = lambda k: next(l.split(":", 1)[1].strip() for l in info if l.startswith(k))
        return "%s (family %s, model %s)" % (field("model name"), field("cpu family"),
                                             field("model\t"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def md_cell(text):
    return json.dumps(text, ensure_ascii=False)[1:-1].replace("|", "\\|")


def run(argv):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(argv), r.stderr.strip()))
    return r.stdout


def main():
    a = parse_args()
    label = a.label or os.path.basename(os.path.normpath(a.base))
    sigmas = [float(s) for s in a.sigmas.split(",")]
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    rows = []
    for sigma in sigmas:
        sgt_dir = os.path.join(a.work, "sgt_%g" % sigma)
        run([a.sgt, "make-transform", a.base, sgt_dir, "--layers", str(a.layers),
             "--init-std", repr(sigma)])
        for chat in a.chat:
            report = json.loads(run([a.sgt, "audit", sgt_dir, "--chat", chat,
                                     "--add-generation-prompt", "--base", a.base,
                                     "--json-only", "--draws", str(a.draws), "--base-new-tokens",
                                     str(a.new_tokens), "--threads", str(a.threads)]))
            o, u = report["overall"], report["utility"]["overall"]
            answers = report["utility"]["answers"]
            rows.append({"sigma": sigma, "chat": os.path.basename(chat),
                         "protected_tokens": o["protected_tokens"],
                         "recovery_l2": o["recovery_l2"], "recovery_cosine": o["recovery_cosine"],
                         "mean_kl": u["mean_kl"], "top1_agreement": u["top1_agreement"],
                         "clean_answer": answers["clean"]["text"],
                         "protected_answer": answers["protected"]["text"]})
            print("sigma %-6g %-20s recovery %.3f  KL %.3f  top-1 %.3f" % (
                sigma, os.path.basename(chat), o["recovery_l2"], u["mean_kl"],
                u["top1_agreement"]), flush=True)
    shutil.rmtree(a.work, ignore_errors=True)

    chats = sorted({r["chat"] for r in rows})
    lines = ["<!-- written by tools/sweep_privacy_utility.py; do not edit by hand -->", "",
             "Base model `%s`, untrained transforms from `sgt make-transform --layers %d "
             "--init-std S` (zero mean head, sigma = S), %d draws per chat, audited by `sgt audit "
             "--base` at the base model's precision auto, on %s." % (
                 label, a.layers, a.draws, cpu_name()),
             "",
             "| sigma | chat | protected tokens | recovery (L2) | recovery (cosine) | mean KL | "
             "top-1 agreement |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %g | %s | %d | %.3f | %.3f | %.3f | %.3f |" % (
            r["sigma"], r["chat"], r["protected_tokens"], r["recovery_l2"],
            r["recovery_cosine"], r["mean_kl"], r["top1_agreement"]))
    for chat in chats:
        rs = [r for r in rows if r["chat"] == chat]
        lines += ["", "Greedy answers to `%s` (%d new tokens; the protected one from draw 0):" % (
            chat, a.new_tokens), "", "| sigma | answer |", "|---|---|",
                  "| clean | %s |" % md_cell(rs[0]["clean_answer"])]
        lines += ["| %g | %s |" % (r["sigma"], md_cell(r["protected_answer"])) for r in rs]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(a.out + ".json", "w") as f:
        json.dump({"cpu": cpu_name(), "layers": a.layers, "draws": a.draws, "rows": rows}, f,
                  indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot (table in %s.md)" % a.out)
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for chat in chats:
        rs = [r for r in rows if r["chat"] == chat]
        xs = [r["sigma"] for r in rs]
        ax[0].plot(xs, [r["recovery_l2"] for r in rs], "o-", label="recovery, " + chat)
        ax[0].plot(xs, [r["top1_agreement"] for r in rs], "s--", label="top-1 agreement, " + chat)
        ax[1].plot(xs, [r["mean_kl"] for r in rs], "o-", label=chat)
    for x in ax:
        x.set_xscale("log")
        x.set_xlabel("sigma (init-std)")
        x.grid(True, alpha=0.3)
        x.legend(fontsize=7)
    ax[0].set_ylabel("share")
    ax[0].set_title("privacy (recovery, lower is better)\nutility (top-1 agreement)", fontsize=9)
    ax[1].set_ylabel("mean KL (nats)")
    ax[1].set_title("cost: KL(clean || protected) of the next token", fontsize=9)
    fig.suptitle("Untrained transforms of %s" % label,
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)


if __name__ == "__main__":
    main()
