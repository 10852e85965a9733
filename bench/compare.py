#!/usr/bin/python3
"""lowbit against PyTorch 1.13, pair by pair: for each (model, config), `lowbit bench` and
bench/torch_bench.py run back to back (who goes first alternates by round), R rounds; the table
gives each side's median img/s and the ratio lowbit/PyTorch as the median of the per-pair ratios,
the QAT overhead (LSQ W4A4 step time / full-precision step time - 1, per side, the median of the
rounds' ratios: a round runs the two back to back), peak resident
memory, and lowbit's 1-thread vs T-thread speed-up on ResNet-20. Also printed as a markdown table
for docs/perf.md; --save writes every run's JSON.

Usage (from anywhere; run by Debian's /usr/bin/python3, which has torch):
  bench/compare.sh                       # the full default run (below)
  bench/compare.sh --quick               # smoke test: resnet20, batch 16, 1 round, 2 iterations
  bench/compare.sh --models resnet20 --configs fp,w4a4 --rounds 5 --iters 20 --threads 2
Defaults: models resnet20,resnet18,mobilenetv2,shufflenetv2; configs fp and w4a4 (--wq lsq:4
--aq lsq:4, first/last layer 8-bit as `lowbit train`'s default); 3 rounds; batch 128; 2 threads;
10 timed iterations after 3 warm-up, for training and for eval.
Runtime of the full default run on the 2-vCPU AMD EPYC VM of docs/perf.md, idle, lowbit at commit
e287c0f: about 50-75 minutes, estimated (not yet timed) from the models' MACs and the ResNet-20
rates in docs/perf.md; ResNet-18 takes over half of it (each of its runs trains 14 steps of 128
images on both sides); --models resnet20 alone about 6 minutes (with the 1 vs 2 thread line).
--quick took 2.7 minutes on that VM under load 8 (the smoke run; its numbers mean nothing).
Run it on an otherwise idle machine: the pairs share the cores with whatever else runs.

Fairness: both sides get the same model (bench/torch_models.py), batch, random data, SGD
(Nesterov, momentum 0.9, weight decay 5e-4, none on quantizer steps), thread count
(torch.set_num_threads, OpenBLAS threads) and OpenBLAS kernel: lowbit picks its kernel by cpuid
(core/process.cpp) and `lowbit --version` names it; this script passes that name to PyTorch's
process as OPENBLAS_CORETYPE and checks the kernel PyTorch's OpenBLAS then reports.
"""
import argparse, json, os, re, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"fp": [], "w4a4": ["--wq", "lsq:4", "--aq", "lsq:4"], "w8a8": ["--wq", "lsq:8", "--aq", "lsq:8"],
           "w2a2": ["--wq", "lsq:2", "--aq", "lsq:2"]}
LABELS = {"fp": "fp32", "w4a4": "LSQ W4A4", "w8a8": "LSQ W8A8", "w2a2": "LSQ W2A2"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, env=None):
    log("+ " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        sys.exit("compare: command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit("compare: no JSON from: %s\n%s" % (" ".join(cmd), p.stdout))
    return json.loads(lines[-1])


def lowbit_blas_core(lowbit):
    """The OpenBLAS kernel lowbit runs with: its forced OPENBLAS_CORETYPE, else the one OpenBLAS chose."""
    v = subprocess.run([lowbit, "--version"], stdout=subprocess.PIPE, text=True, check=True).stdout
    m = re.search(r"OPENBLAS_CORETYPE=(\w+)", v) or re.search(r"core (\w+)", v)
    return (m.group(1) if m else ""), v.strip()


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lowbit", default=os.path.join(ROOT, "build", "lowbit"))
    ap.add_argument("--python", default="/usr/bin/python3", help="the python that has torch")
    ap.add_argument("--models", default="", help="comma list (default resnet20,resnet18,mobilenetv2,"
                    "shufflenetv2; with --quick resnet20)")
    ap.add_argument("--configs", default="fp,w4a4", help="comma list of " + ",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scaling-model", default="resnet20",
                    help="model of the lowbit 1-thread vs --threads line ('' or none to skip)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: resnet20 only (unless --models), --batch 16 --rounds 1 --iters 2 "
                    "--warmup 1 (numbers meaningless)")
    ap.add_argument("--save", default="", help="write all runs as JSON lines to this file")
    a = ap.parse_args()
    if a.quick:
        a.batch, a.rounds, a.iters, a.warmup = 16, 1, 2, 1
    if not a.models:
        a.models = "resnet20" if a.quick else "resnet20,resnet18,mobilenetv2,shufflenetv2"
    models = [m for m in a.models.split(",") if m]
    configs = [c for c in a.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            sys.exit("compare: unknown config '%s' (known: %s)" % (c, ", ".join(CONFIGS)))
    if not os.access(a.lowbit, os.X_OK):
        sys.exit("compare: %s not found: build it first (make)" % a.lowbit)
    core, version = lowbit_blas_core(a.lowbit)
    torch_env = dict(os.environ)
    if core:
        torch_env["OPENBLAS_CORETYPE"] = core
    common = ["--batch", str(a.batch), "--iters", str(a.iters), "--warmup", str(a.warmup), "--json"]
    t_start = time.time()
    runs = []  # every run: {"side", "model", "config", "round", ...its JSON}

    def lowbit_run(model, cfg, threads, rnd):
        j = run_json([a.lowbit, "bench", "--model", model, "--threads", str(threads)] + common + CONFIGS[cfg])
        j.update(side="lowbit", model=model, config=cfg, round=rnd)
        runs.append(j)
        return j

    def torch_run(model, cfg, rnd):
        j = run_json([a.python, os.path.join(ROOT, "bench", "torch_bench.py"), "--model", model,
                      "--threads", str(a.threads)] + common + CONFIGS[cfg], env=torch_env)
        j.update(side="torch", model=model, config=cfg, round=rnd)
        if core and j.get("openblas_core", "").lower() != core.lower():
            log("compare: warning: PyTorch's OpenBLAS runs kernel '%s', lowbit's '%s'" % (j.get("openblas_core"), core))
        runs.append(j)
        return j

    def check_pair(lb, tc):  # the same layers quantized on both sides
        if lb.get("quantizers") != tc.get("quantizers"):
            sys.exit("compare: %s %s: lowbit has %s quantizers, the PyTorch mirror %s" % (
                lb["model"], lb["config"], lb.get("quantizers"), tc.get("quantizers")))

    # pairs[(model, cfg)] = list of (lowbit JSON, torch JSON), one per round
    pairs = {(m, c): [] for m in models for c in configs}
    for rnd in range(a.rounds):
        for m in models:
            for c in configs:
                if rnd % 2 == 0:
                    lb = lowbit_run(m, c, a.threads, rnd); tc = torch_run(m, c, rnd)
                else:
                    tc = torch_run(m, c, rnd); lb = lowbit_run(m, c, a.threads, rnd)
                check_pair(lb, tc)
                pairs[(m, c)].append((lb, tc))
                log("  %s %s round %d: lowbit train %.1f eval %.1f | torch train %.1f eval %.1f img/s" % (
                    m, c, rnd + 1, lb["train_img_per_s"], lb["eval_img_per_s"], tc["train_img_per_s"],
                    tc["eval_img_per_s"]))
    scaling = []  # (1-thread JSON, T-thread JSON) per round
    if a.scaling_model and a.scaling_model != "none" and a.threads > 1:
        for rnd in range(a.rounds):
            if rnd % 2 == 0:
                one = lowbit_run(a.scaling_model, "fp", 1, rnd); many = lowbit_run(a.scaling_model, "fp", a.threads, rnd)
            else:
                many = lowbit_run(a.scaling_model, "fp", a.threads, rnd); one = lowbit_run(a.scaling_model, "fp", 1, rnd)
            scaling.append((one, many))

    rows = []
    for m in models:
        for c in configs:
            ps = pairs[(m, c)]
            row = {"model": m, "config": LABELS[c], "cfg": c}
            for side, k in (("lowbit", 0), ("torch", 1)):
                for what in ("train", "eval"):
                    row[side + "_" + what] = med([p[k][what + "_img_per_s"] for p in ps])
                row[side + "_step_ms"] = med([p[k]["train_step_ms"] for p in ps])
                row[side + "_rss"] = med([p[k]["peak_rss_mb"] for p in ps])
            for what in ("train", "eval"):
                row["ratio_" + what] = med([p[0][what + "_img_per_s"] / p[1][what + "_img_per_s"] for p in ps])
            rows.append(row)
    # QAT overhead: this config's training step time over fp's, per side, as the median over rounds
    # of each round's ratio: a round runs a model's configs back to back, so the two steps of a
    # ratio see the same phase of the machine (the ratio of medians over rounds mixed phases minutes
    # apart and swung by +-20% on a noisy VM).
    for row in rows:
        fp_pairs = pairs.get((row["model"], "fp"))
        for side, k in (("lowbit", 0), ("torch", 1)):
            row[side + "_qat"] = None
            if fp_pairs is not None and row["cfg"] != "fp":
                row[side + "_qat"] = med([q[k]["train_step_ms"] / f[k]["train_step_ms"]
                                          for q, f in zip(pairs[(row["model"], row["cfg"])], fp_pairs)]) - 1

    def pct(v):
        return "" if v is None else "%+.0f%%" % (100 * v)

    head = ["model", "config", "lowbit train", "torch train", "train ratio", "lowbit eval", "torch eval",
            "eval ratio", "QAT overhead lowbit / torch", "peak RSS MB lowbit / torch"]
    table = [[r["model"], r["config"], "%.1f" % r["lowbit_train"], "%.1f" % r["torch_train"],
              "%.2fx" % r["ratio_train"], "%.1f" % r["lowbit_eval"], "%.1f" % r["torch_eval"],
              "%.2fx" % r["ratio_eval"],
              "" if r["lowbit_qat"] is None else "%s / %s" % (pct(r["lowbit_qat"]), pct(r["torch_qat"])),
              "%.0f / %.0f" % (r["lowbit_rss"], r["torch_rss"])] for r in rows]
    scale_line = ""
    if scaling:
        t1 = med([o["train_img_per_s"] for o, _ in scaling]); tn = med([n["train_img_per_s"] for _, n in scaling])
        e1 = med([o["eval_img_per_s"] for o, _ in scaling]); en = med([n["eval_img_per_s"] for _, n in scaling])
        st = med([n["train_img_per_s"] / o["train_img_per_s"] for o, n in scaling])
        se = med([n["eval_img_per_s"] / o["eval_img_per_s"] for o, n in scaling])
        scale_line = ("lowbit %s fp32, 1 vs %d threads: train %.1f -> %.1f img/s (%.2fx), eval %.1f -> %.1f img/s "
                      "(%.2fx); medians of %d pairs" % (a.scaling_model, a.threads, t1, tn, st, e1, en, se,
                                                         len(scaling)))
    minutes = (time.time() - t_start) / 60
    torch_ver = next((r["torch"] for r in runs if r["side"] == "torch"), "?")
    conditions = ("batch %d, %d threads, float32, median of %d timed iterations after %d warm-up per run, "
                  "%d round(s) per pair; img/s are medians over rounds, ratios (lowbit/PyTorch) medians of "
                  "the per-pair ratios; QAT overhead = median over rounds of the step time vs the same "
                  "side's fp32 step in the same round; PyTorch %s "
                  "with OPENBLAS_CORETYPE=%s; %s UTC; %.1f min" % (
                      a.batch, a.threads, a.iters, a.warmup, a.rounds, torch_ver, core or "(unset)",
                      time.strftime("%Y-%m-%d %H:%M", time.gmtime()), minutes))

    # plain table
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(str(x).rjust(w) if i >= 2 else str(x).ljust(w) for i, (x, w) in enumerate(zip(t, widths))))
    if scale_line:
        print(scale_line)
    print(conditions)
    print("lowbit: " + version.replace("\n", "; "))
    # markdown, ready for docs/perf.md
    print("\n<!-- markdown for docs/perf.md -->")
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |")
    for t in table:
        print("| " + " | ".join(t) + " |")
    if scale_line:
        print("\n" + scale_line + ".")
    print("\n" + conditions + ".")
    if a.save:
        with open(a.save, "w") as f:
            for r in runs:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
