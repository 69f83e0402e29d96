#!/usr/bin/python3
"""quantsim's executor (`quantsim run`) against ONNX Runtime (scripts/peers/ort_run.js) on the PaddleOCR models.

Both are timed as whole processes (start, model load, reading the input, inference, writing the output) and, where
the tool reports it, for the inference part alone. Peak resident memory is the kernel's ru_maxrss of each child
process (os.wait4: the figure GNU `/usr/bin/time -v` prints as "Maximum resident set size"); for Node the script
also measures a baseline Node process that only loads onnxruntime and reports the difference. Each case runs
--repeats times (median). Outputs of the two are compared as a sanity check (max |diff| / max |ORT|).

  benchmarks/peers/executor_vs_ort.py [BUILD_DIR] [--data .data] [--repeats 3] [--json OUT.json] [--only cls,det,rec]

Targets (ratio quantsim / ORT): classifier <= 1.5x, detector and recognizer <= 2x, detector peak RSS <= 2x.
Exit status: 0 when every case ran (targets missed are reported, not errors), 1 when a case could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS = os.path.join(REPO, ".peers", "node_modules", "@gutenye", "ocr-models", "assets")
ORT_RUN = os.path.join(REPO, "scripts", "peers", "ort_run.js")

CASES = [
    # name, model file, data set, batch, threads, target time ratio
    dict(name="cls", label="classifier 2000x3x48x192, batch 32", model="ch_ppocr_mobile_v2.0_cls_infer.onnx",
         data="cls/eval", batch=32, threads=1, target=1.5),
    dict(name="cls", label="classifier 2000x3x48x192, batch 32", model="ch_ppocr_mobile_v2.0_cls_infer.onnx",
         data="cls/eval", batch=32, threads=2, target=1.5),
    dict(name="det", label="detector 1x3x640x640", model="ch_PP-OCRv4_det_infer.onnx", data="det/bench", batch=1,
         threads=2, target=2.0, rss_target=2.0),
    dict(name="rec", label="recognizer 8x3x48x320", model="ch_PP-OCRv4_rec_infer.onnx", data="rec/bench", batch=8,
         threads=2, target=2.0),
]


def run_child(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS KiB, stdout, stderr, exit code)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, ru.ru_maxrss, out.read().decode(errors="replace"), err.read().decode(errors="replace"), p.returncode


# `quantsim run` may report its own timing on stderr or stdout (JSON line or "key: N ms" text). We accept a few
# spellings so the benchmark follows the CLI without changes; absent -> the inference column says n/a.
_RUN_KEYS = ("run_ms", "inference_ms", "infer_ms", "execute_ms")


def parse_quantsim_timing(text: str):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            for k in _RUN_KEYS:
                if k in obj:
                    return float(obj[k])
    # quantsim run's stderr line: "quantsim run: 2000 samples in 63 batches of up to 32, 1.234 s (...)"; its clock
    # starts after the executor is built and stops after the output is written.
    m = re.search(r"quantsim run: .*?, ([0-9.]+(?:e[-+]?\d+)?) s \(", text)
    if m:
        return float(m.group(1)) * 1000
    m = re.search(r"(?:run|inference|infer|execute)[a-z _]*[:=]\s*([0-9.]+)\s*ms", text, re.I)
    return float(m.group(1)) if m else None


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a.astype(np.float64) - b).max() / scale)


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, unit="", digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build", nargs="?", default=os.environ.get("QUANTSIM_BUILD_DIR"),
                   help="build directory holding bin/quantsim (default: $QUANTSIM_BUILD_DIR, set by run_all.sh)")
    p.add_argument("--data", default=os.path.join(REPO, ".data"))
    p.add_argument("--repeats", type=int, default=int(os.environ.get("QUANTSIM_BENCH_REPEATS", "3")),
                   help="runs per case (default 3, or $QUANTSIM_BENCH_REPEATS)")
    p.add_argument("--json", default=None)
    p.add_argument("--only", default=None, help="comma-separated case names: cls,det,rec")
    args = p.parse_args(argv)

    if not args.build:
        p.error("give the build directory (or set QUANTSIM_BUILD_DIR)")
    quantsim = os.path.join(args.build, "bin", "quantsim")
    problems = []
    if not os.path.exists(ORT_RUN) or not os.path.isdir(ASSETS):
        problems.append(f"ONNX Runtime peers missing ({ASSETS}): run 'make peers'")
    if not os.access(quantsim, os.X_OK):
        problems.append(f"{quantsim} not built (cmake --build {args.build} --target quantsim_cli)")
    if problems:
        for m in problems:
            print(f"executor_vs_ort: {m}", file=sys.stderr)
        return 1

    env = dict(os.environ)
    _, _, base_out, _, base_rc = run_child(["node", ORT_RUN, "--baseline"])
    node_baseline_kb = json.loads(base_out.strip().splitlines()[-1])["peak_rss_kb"] if base_rc == 0 else None

    load_before = os.getloadavg()
    only = set(args.only.split(",")) if args.only else None
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if only and case["name"] not in only:
                continue
            model = os.path.join(ASSETS, case["model"])
            x = os.path.join(args.data, case["data"], "X.npy")
            if not os.path.exists(x):
                print(f"executor_vs_ort: {x} missing: run scripts/make_data.sh", file=sys.stderr)
                failures += 1
                continue
            t, b = case["threads"], case["batch"]
            q_out, o_out = os.path.join(tmp, "q.npy"), os.path.join(tmp, "o.npy")
            q_cmd = [quantsim, "run", model, "--input", x, "--output", q_out, "--batch", str(b), "--threads", str(t)]
            o_cmd = ["node", ORT_RUN, "--model", model, "--input", x, "--output", o_out, "--batch", str(b),
                     "--threads", str(t)]
            # --threads sets quantsim's team size; OMP_NUM_THREADS too, so no other OpenMP region can take more.
            q_env = dict(env, OMP_NUM_THREADS=str(t))
            r = dict(case=case["label"], name=case["name"], threads=t, batch=b, target=case["target"],
                     q_wall=[], q_rss=[], q_run=[], o_wall=[], o_rss=[], o_run=[], o_load=[], error=None)
            # Interleave the two so that load from other processes on the machine hits both alike.
            for _ in range(args.repeats):
                wall, rss, out, err, rc = run_child(q_cmd, q_env)
                if rc != 0:
                    r["error"] = f"quantsim run exited {rc}: {(err or out).strip()[-400:]}"
                    break
                r["q_wall"].append(wall)
                r["q_rss"].append(rss)
                qr = parse_quantsim_timing(err + "\n" + out)
                if qr is not None:
                    r["q_run"].append(qr / 1000)
                wall, rss, out, err, rc = run_child(o_cmd)
                if rc != 0:
                    r["error"] = f"ort_run.js exited {rc}: {err.strip()[-400:]}"
                    break
                rep = json.loads(out.strip().splitlines()[-1])
                r["o_wall"].append(wall)
                r["o_rss"].append(rss)
                r["o_run"].append(rep["run_ms"] / 1000)
                r["o_load"].append(rep["load_ms"] / 1000)
            if r["error"] is None:
                r["rel_diff"] = compare(q_out, o_out)
            else:
                failures += 1
                print(f"executor_vs_ort: {case['label']}, {t} thread(s): {r['error']}", file=sys.stderr)
            rows.append(r)

    load_after = os.getloadavg()
    print(f"## Executor vs ONNX Runtime ({args.repeats} runs each, median; machine: {os.cpu_count()} cores, "
          f"1-min load average {load_before[0]:.1f} before and {load_after[0]:.1f} after)\n")
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 1):
        print("Note: the machine was busy with other work (load above its core count); times are noisy.\n")
    print("| case | threads | quantsim process s | ORT process s | ratio | quantsim inference s | ORT inference s "
          "| ratio | target | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["error"]:
            print(f"| {r['case']} | {r['threads']} | failed | | | | | | <= {r['target']}x | |")
            continue
        qw, ow = median(r["q_wall"]), median(r["o_wall"])
        qi, oi = median(r["q_run"]), median(r["o_run"])
        ratio = qw / ow
        iratio = qi / oi if qi is not None else None
        # The target applies to the inference part when quantsim reports it, else to the whole process.
        ok = "ok" if (iratio if iratio is not None else ratio) <= r["target"] else "MISSED"
        rd = r["rel_diff"]
        print(f"| {r['case']} | {r['threads']} | {fmt(qw)} | {fmt(ow)} | {fmt(ratio, 'x', 2)} | {fmt(qi)} | "
              f"{fmt(oi)} | {fmt(iratio, 'x', 2)} | <= {r['target']}x ({ok}) | "
              f"{rd if isinstance(rd, str) else f'{rd:.2e}'} |")
    print()
    print("Peak resident memory (ru_maxrss of the whole process, MiB; Node baseline = a Node process that only "
          f"loads onnxruntime: {fmt(node_baseline_kb / 1024 if node_baseline_kb else None, '', 1)} MiB)\n")
    print("| case | threads | quantsim | ORT (node) | ratio | ORT minus baseline | ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["error"]:
            continue
        q, o = median(r["q_rss"]) / 1024, median(r["o_rss"]) / 1024
        onet = o - node_baseline_kb / 1024 if node_baseline_kb else None
        tgt = CASES_BY_LABEL.get(r["case"], {}).get("rss_target")
        verdict = "" if tgt is None else f"<= {tgt}x ({'ok' if q / o <= tgt else 'MISSED'})"
        print(f"| {r['case']} | {r['threads']} | {q:.1f} | {o:.1f} | {q / o:.2f}x | {fmt(onet, '', 1)} | "
              f"{fmt(q / onet if onet else None, 'x', 2)} | {verdict} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, node_baseline_kb=node_baseline_kb, load_before=load_before,
                           load_after=load_after), f, indent=1)
    return 1 if failures else 0


CASES_BY_LABEL = {c["label"]: c for c in CASES}

if __name__ == "__main__":
    sys.exit(main())
