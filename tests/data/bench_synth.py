"""Benchmark (not a test): `data synth` throughput in patches/s, this checkout against an earlier revision.

    .venv/bin/python tests/data/bench_synth.py [--before 37ae0e3] [--n 48] [--repeat 3] [--out reports/bench_synth.json]

Times the demo's two shapes (CloudSEN12-like 13 bands at 256 px, 38-Cloud-like 4 bands at 96 px) on one
worker, for the generator of this checkout and for the one at --before (its train/data/synth*.py loaded from
git; default 37ae0e3, the generator before the realistic scenes). Runs alternate before/after so that load
from other processes on a shared machine hits both alike; the best of --repeat is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHAPES = (("cloudsen12", 256), ("38cloud", 96))


FAMILY = ("synth_spectra", "synth_terrain", "synth_clouds", "synth")  # the generator's modules, dependencies first


def _load_revision(rev: str):
    """The generator of `rev`: its synth.py with the synth_* modules of the same revision (those that exist
    there; other imports resolve to this checkout's modules of the same names)."""
    tmp = Path(tempfile.mkdtemp())
    loaded: list[str] = []
    mod = None
    for name in FAMILY:
        got = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:train/data/{name}.py"], capture_output=True,
                             text=True)
        if got.returncode != 0:
            if name == "synth":
                raise SystemExit(f"bench_synth: no train/data/synth.py at {rev}")
            continue
        src = got.stdout
        for dep in loaded:
            src = src.replace(f"from cloudcover.train.data.{dep} import", f"from {dep}_{rev} import")
        path = tmp / f"{name}_{rev}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(f"{name}_{rev}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        loaded.append(name)
    return mod


def _rate(mod, fmt: str, size: int, n: int, work: Path) -> float:
    out = work / f"{mod.__name__}_{fmt}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    mod.synthesize(mod.SynthConfig(out=out, format=fmt, n=n, size=size, seed=0, workers=1, progress=False))
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="37ae0e3", help="git revision to compare with (default 37ae0e3)")
    ap.add_argument("--n", type=int, default=48, help="patches per timed run (default 48)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per generator and shape (default 3)")
    ap.add_argument("--work", type=Path, default=Path("build/bench_synth"), help="scratch folder")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_synth.json"), help="JSON report")
    args = ap.parse_args()

    from cloudcover.train.data import synth as after

    before = _load_revision(args.before)
    args.work.mkdir(parents=True, exist_ok=True)
    best: dict[str, float] = {}
    for fmt, size in SHAPES:
        n = args.n if size > 96 else 2 * args.n
        for _ in range(args.repeat):
            for name, mod in (("before", before), ("after", after)):
                key = f"{name}_{fmt}_{size}"
                best[key] = max(best.get(key, 0.0), _rate(mod, fmt, size, n, args.work))
        print(f"{fmt} {size} px: {best[f'before_{fmt}_{size}']:.2f} patches/s at {args.before}, "
              f"{best[f'after_{fmt}_{size}']:.2f} now (1 worker, best of {args.repeat})", flush=True)
    report = {"benchmark": "synth", "before": args.before, "patches_per_s": {k: round(v, 2) for k, v in best.items()},
              "n": args.n, "repeat": args.repeat, "workers": 1, "cpu_count": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 2), "machine": platform.machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".part")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
