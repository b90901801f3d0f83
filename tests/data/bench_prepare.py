"""Benchmark (not a test): `prepare` throughput in patches/s on 13-band 509 x 509 CloudSEN12-like patches.

    .venv/bin/python tests/data/bench_prepare.py [--n 96] [--workers 2] [--size 96] [--out reports/bench_prepare.json]

Synthesizes the input once (cached under --work), then times `prepare` alone, end to end (discovery,
reading, coverage, rendering, writing, split, manifest), and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from cloudcover.train.data.prepare import PrepareConfig, prepare
from cloudcover.train.data.synth import SynthConfig, synthesize

GOAL = 25.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=96, help="patches (default 96)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--size", type=int, default=96, help="rendering size (default 96, as the demo)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported (default 3)")
    ap.add_argument("--work", type=Path, default=Path("build/bench_prepare"), help="scratch folder")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_prepare.json"), help="JSON report")
    args = ap.parse_args()

    raw = args.work / f"raw_{args.n}"
    if not (raw / "synth.json").is_file():
        synthesize(SynthConfig(out=raw, n=args.n, seed=0, workers=args.workers))
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        r = prepare(PrepareConfig(source="cloudsen12", input=raw, out=args.work / "dataset", size=args.size,
                                  workers=args.workers, progress=False))
        runs.append(time.perf_counter() - t0)
        assert r.n == args.n
    best = min(runs)
    report = {
        "benchmark": "prepare", "source": "cloudsen12 (synthetic)", "bands": 13, "patch_px": 509,
        "n": args.n, "workers": args.workers, "size": args.size, "runs_s": [round(x, 3) for x in runs],
        "patches_per_s": round(args.n / best, 2), "goal_patches_per_s": GOAL,
        "meets_goal": args.n / best >= GOAL, "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_avg_1m": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(args.work / "dataset", ignore_errors=True)
    print(f"prepare: {report['patches_per_s']} patches/s ({args.n} x 13-band 509x509, {args.workers} workers, "
          f"best of {args.repeat}; goal {GOAL}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
