"""Benchmark: the same study run with 1 worker and then with K workers; prints both wall times, writes JSON.

Not a test (wall time depends on the machine and its load). Each run gets its own study folder and the
same seed, space and pruner ('none' by default, so both runs train the same amount of epochs).

    python -m cloudcover.train.tune_bench --data demo/dataset --trials 6 --epochs-per-trial 2 \
        --models edge_cnn --out reports/tune_bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloudcover.train.tune_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="prepared dataset folder")
    p.add_argument("--out", required=True, type=Path, help="folder for the two studies and bench.json")
    p.add_argument("--models", default="edge_cnn", help="comma-separated architectures")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs-per-trial", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="worker count compared against 1")
    p.add_argument("--pruner", default="none")
    p.add_argument("--space", type=Path, default=None, help="search-space JSON (see cloudcover tune --space)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from cloudcover.train.tune import TuneConfig, tune

    runs = []
    for workers in (1, args.workers):
        out = args.out / f"workers_{workers}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh study each time: resuming would skip the work
        config = TuneConfig(data=str(args.data), out=str(out), models=[m for m in args.models.split(",") if m],
                            trials=args.trials, epochs_per_trial=args.epochs_per_trial, workers=workers,
                            pruner=args.pruner, seed=args.seed, space_file=str(args.space) if args.space else None,
                            baseline=False)
        t0 = time.perf_counter()
        try:
            result = tune(config, progress=True, plots=False)
        except CloudcoverError as exc:
            print(f"tune_bench: error: {exc}", file=sys.stderr)
            return 1
        wall = time.perf_counter() - t0
        runs.append({"workers": workers, "wall_s": wall, "trials": result.best["trials"],
                     "best_value": result.best["best_value"]})
        print(f"{workers} worker(s): {args.trials} trials in {wall:.1f} s (best macro-F1 {result.best['best_value']:.3f})")
    speedup = runs[0]["wall_s"] / runs[1]["wall_s"]
    print(f"speed-up with {args.workers} workers: {speedup:.2f}x")
    report = {"trials": args.trials, "epochs_per_trial": args.epochs_per_trial, "models": args.models,
              "pruner": args.pruner, "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version(), "runs": runs, "speedup": speedup}
    write_text(args.out / "bench.json", json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
