"""Cost of the compiled kernels, float vs int8 route: instructions/inference, workspace, arena, compile time.

    python -m cloudcover.riscv.bench_kernels --model tiny=ART_TINY --model mnv2=ART_MNV2 [--out reports]

For each model (an ART_DIR holding model_int8.tflite, quant.json, testset.npz) and each compute route
(float, int8) this compiles the model for rv64gc and rv64gcv (timing the compile), cross-builds
cloudcover-infer, runs N test images under the plugin QEMU and reports
instructions/inference = (count with N inputs - count with 0 inputs) / N, plus the workspace and arena bytes
and the largest output difference against TFLite's reference kernels (BUILTIN_REF). Writes
OUT/bench_kernels.json and prints a table. A measurement script, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def measure(art: Path, compute: str, target: str, work: Path, n: int, emu, log=print) -> dict:
    from cloudcover.export.compile import compile_model

    from . import harness, qemu, toolchain

    out = work / f"{art.name}-{compute}-{target}"
    t0 = time.perf_counter()
    info = compile_model(art / "model_int8.tflite", target, out / "model", log=lambda m: None, compute=compute)
    compile_s = time.perf_counter() - t0
    binary = toolchain.build_infer(out / "model", out / "cmake", target)
    a = harness.Artifacts.load(art)
    xq = a.int8_inputs()[:n]
    start = qemu.run_infer(emu, binary, target, b"", out / "run0")
    full = qemu.run_infer(emu, binary, target, xq.tobytes(), out / "runN")
    dev = np.frombuffer(full.output, np.int8).reshape(len(xq), -1)
    ref, _ = harness.tflite_run(art / "model_int8.tflite", xq, reference=True)
    insns = None if full.instructions is None else round((full.instructions - start.instructions) / len(xq))
    row = {
        "model": art.name, "compute": compute, "target": target, "macs": info["macs"],
        "instructions_per_inference": insns,
        "workspace_bytes": info["workspace_bytes"], "arena_bytes": info["arena_bytes"],
        "weights_bytes": info["weights_bytes"], "kernels": len(info["kernels"]), "steps": len(info["steps"]),
        "compile_s": round(compile_s, 1), "int8_compute": info["int8_compute"],
        "max_abs_diff_lsb_vs_tflite_ref": int(np.abs(dev.astype(np.int32) - ref.astype(np.int32)).max()),
        "n_images": len(xq),
    }
    log(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.bench_kernels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=ART_DIR",
                    help="a model to measure (repeatable)")
    ap.add_argument("--computes", default="float,int8")
    ap.add_argument("--targets", default="rv64gc,rv64gcv")
    ap.add_argument("-n", type=int, default=2, help="test images per run")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name (e.g. before / after)")
    args = ap.parse_args(argv)

    from . import qemu

    emu = qemu.find_emulator()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cc-benchk-") as tmp:
        for spec in args.model:
            name, _, path = spec.partition("=")
            src = Path(path)
            art = Path(tmp) / name  # the row names the model by NAME
            art.symlink_to(src.resolve())
            for compute in args.computes.split(","):
                for target in args.targets.split(","):
                    rows.append(measure(art, compute, target, Path(tmp), args.n, emu))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_kernels{('_' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps({"emulator": f"qemu-riscv64 {emu.version}", "rows": rows}, indent=1) + "\n")
    hdr = f"{'model':8} {'compute':7} {'target':8} {'insns/inf':>12} {'workspace B':>12} {'arena B':>10} {'compile s':>9} {'LSB':>4}"
    print(hdr)
    for r in rows:
        print(f"{r['model']:8} {r['compute']:7} {r['target']:8} {r['instructions_per_inference'] or 0:>12,} "
              f"{r['workspace_bytes']:>12,} {r['arena_bytes']:>10,} {r['compile_s']:>9} "
              f"{r['max_abs_diff_lsb_vs_tflite_ref']:>4}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
