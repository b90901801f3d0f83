"""Kernel benchmark: instructions/MAC of TVM's float route, the naive int8 schedule and the tuned int8 schedules,
beside TFLite Micro's peers on the same .tflite, per benchmark model and target; with the per-kernel profile.

    python -m cloudcover.riscv.kernel_bench [--models edge_cnn,mobilenet,resnet8,unet_resnet18]
        [--targets rv64gc,rv64gcv] [--peers ../shared/peers] [--out reports] [--tag baseline]

Models are riscv.bench_models' artifact folders (built into --models-dir when missing: fixed random weights,
only the shapes decide cost). For each model, target and route this compiles (`compile_model`, compute and
schedules per route), cross-builds cloudcover-infer and counts instructions under the plugin QEMU:
(count with N inputs - count with 0) / N. Outputs are compared with TFLite's reference kernels (BUILTIN_REF).
Peers (riscv/peers.py) run the same .tflite with the same -cpu. Writes OUT/kernel_bench[_TAG].json and .md.
A measurement, not a test: minutes per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError

# (row name, compute, schedules)
ROUTES = (("float", "float", "naive"), ("int8-naive", "int8", "naive"), ("int8", "int8", "tuned"))
# peers' runner files (../shared/peers) and the target each is compared on
PEER_FILES = {"rv64gc": ("tflm-ref-rv64gc", "tflm-muriscvnn-rv64gc"), "rv64gcv": ("tflm-muriscvnn-rv64gcv",)}


def _insns(emu, binary: Path, target: str, xq: np.ndarray, work: Path) -> tuple[int | None, np.ndarray]:
    from . import qemu

    start = qemu.run_infer(emu, binary, target, b"", work / "run0")
    full = qemu.run_infer(emu, binary, target, xq.tobytes(), work / "runN")
    dev = np.frombuffer(full.output, np.int8).reshape(len(xq), -1)
    if full.instructions is None or start.instructions is None:
        return None, dev
    return round((full.instructions - start.instructions) / len(xq)), dev


def measure_route(art: Path, route: tuple[str, str, str], target: str, work: Path, emu, xq: np.ndarray,
                  ref: np.ndarray, profile: bool, log=print) -> dict:
    from cloudcover.export.compile import compile_model

    from . import toolchain
    from .profile import profile_model

    name, compute, schedules = route
    out = work / f"{art.name}-{name}-{target}"
    row: dict = {"route": name, "compute": compute, "schedules": schedules if compute == "int8" else None}
    try:
        t0 = time.perf_counter()
        info = compile_model(art / "model_int8.tflite", target, out / "model", log=lambda m: None, compute=compute,
                             schedules=schedules)
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        binary = toolchain.build_infer(out / "model", out / "cmake", target)
        insns, dev = _insns(emu, binary, target, xq, out)
    except CloudcoverError as exc:
        row["error"] = str(exc)[:300]
        log(f"{art.name} {target} {name}: {row['error']}")
        return row
    row.update({
        "macs": info["macs"], "instructions_per_inference": insns,
        "instructions_per_mac": None if insns is None else round(insns / info["macs"], 3),
        "max_abs_diff_lsb_vs_tflite_ref": int(np.abs(dev.astype(np.int32) - ref.astype(np.int32)).max()),
        "int8_compute": info["int8_compute"], "arena_bytes": info["arena_bytes"],
        "intermediate_bytes_sum": info["intermediate_bytes_sum"], "live_peak_bytes": info.get("live_peak_bytes"),
        "workspace_bytes": info["workspace_bytes"],
        "weights_bytes": info["weights_bytes"], "steps": len(info["steps"]),
    })
    if profile and insns is not None:
        prof = profile_model(out / "model", binary, xq[:1], out / "profile", emu, log=lambda m: None)
        row["profile"] = {"sum_error": prof.sum_error, "runtime_instructions": prof.runtime_instructions,
                          "top_kernels": prof.top(5),
                          "calls": [c.__dict__ for c in prof.calls]}
    log(f"{art.name} {target} {name}: {row['instructions_per_mac']} instr/MAC, "
        f"{row['max_abs_diff_lsb_vs_tflite_ref']} LSB")
    return row


def measure_peers(art: Path, target: str, peers_dir: Path | None, work: Path, emu, xq, ref, macs: int,
                  log=print) -> list[dict]:
    from . import peers as peers_mod

    rows = []
    if peers_dir is None:
        return rows
    for fname in PEER_FILES[target]:
        runner = peers_dir / fname
        if not runner.is_file():
            rows.append({"peer": fname, "ok": False, "note": f"{runner} not found"})
            continue
        peer = peers_mod.parse_peer(f"{fname}={runner}@{target}")
        r = peers_mod.measure(emu, peer, art / "model_int8.tflite", xq, work / f"peer-{art.name}-{fname}-{target}")
        row = {"peer": fname, "ok": r.ok, "note": r.note, "arena_bytes": r.arena_bytes,
               "instructions_per_inference": None if r.instructions_per_inference is None
               else round(r.instructions_per_inference),
               "instructions_per_mac": None if r.instructions_per_inference is None
               else round(r.instructions_per_inference / macs, 3)}
        if r.ok and r.outputs is not None and r.outputs.shape == ref.shape:
            row["max_abs_diff_lsb_vs_tflite_ref"] = int(np.abs(r.outputs.astype(np.int32) - ref.astype(np.int32)).max())
        log(f"{art.name} {target} peer {fname}: {row['instructions_per_mac']} instr/MAC")
        rows.append(row)
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """`new` rows completed with `old`'s routes (by route name) and peers for the same model and target."""
    by = {(r["model"], r["target"]): r for r in old}
    out = []
    for r in new:
        o = by.get((r["model"], r["target"]))
        if o is not None:
            have = {x["route"] for x in r["routes"]}
            r = {**r, "routes": [x for x in o["routes"] if x["route"] not in have] + r["routes"],
                 "peers": r["peers"] or o["peers"], "macs": r["macs"] or o["macs"]}
        out.append(r)
    return out


def best_peer(peers: list[dict]) -> dict | None:
    ok = [p for p in peers if p.get("instructions_per_inference")]
    return min(ok, key=lambda p: p["instructions_per_inference"]) if ok else None


def render_md(report: dict) -> str:
    lines = ["# Kernel benchmark: instructions per MAC", "",
             f"Emulator: {report['emulator']}; rv64gcv runs with VLEN 128 (QEMU counts one vector instruction as "
             "one, whatever its length). Instructions per inference = (count with N inputs - count with 0) / N; "
             "LSB = max difference against TFLite's reference kernels (BUILTIN_REF).", "",
             "| model | target | MACs | TVM float | int8 naive | int8 tuned | LSB | TFLM ref | TFLM+muRISCV-NN | "
             "tuned / float | tuned / naive | tuned / best peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["rows"]:
        r = {x["route"]: x for x in e["routes"]}

        def ipm(x):
            return "" if x is None or x.get("instructions_per_mac") is None else f"{x['instructions_per_mac']:.2f}"

        def ratio(a, b):
            a, b = (r.get(a) or {}).get("instructions_per_inference"), (b or {}).get("instructions_per_inference")
            return f"{a / b:.2f}x" if a and b else ""

        peers = {p["peer"]: p for p in e["peers"]}
        ref = next((p for k, p in peers.items() if "ref" in k), None)
        mnn = next((p for k, p in peers.items() if "muriscvnn" in k), None)
        lsb = (r.get("int8") or {}).get("max_abs_diff_lsb_vs_tflite_ref", "")
        lines.append(f"| {e['model']} | {e['target']} | {e['macs']:,} | {ipm(r.get('float'))} | "
                     f"{ipm(r.get('int8-naive'))} | {ipm(r.get('int8'))} | {lsb} | {ipm(ref)} | {ipm(mnn)} | "
                     f"{ratio('int8', r.get('float'))} | {ratio('int8', r.get('int8-naive'))} | "
                     f"{ratio('int8', best_peer(e['peers']))} |")
    lines += ["", "## Top kernels", ""]
    for e, r in [(e, r) for e in report["rows"] for r in e["routes"]]:
        if "profile" not in r:
            continue
        lines += [f"**{e['model']} on {e['target']}, {r['route']}** ({r['instructions_per_inference']:,} instructions/inference; "
                  f"kernels add up to the whole within {r['profile']['sum_error']:.3%})", "",
                  "| kernel | calls | instructions | share | MACs | instr/MAC |", "|---|---|---|---|---|---|"]
        for d in r["profile"]["top_kernels"]:
            k = d["kernel"] if len(d["kernel"]) <= 48 else d["kernel"][:45] + "..."
            lines.append(f"| `{k}` | {d['calls']} | {d['instructions']:,} | {d['share']:.1%} | "
                         f"{d['macs'] or ''} | {d['instructions_per_mac'] or ''} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from . import bench_models, harness, qemu

    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.kernel_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(bench_models.BENCH_MODELS))
    ap.add_argument("--models-dir", default="build/bench-models", help="artifact folders (built when missing)")
    ap.add_argument("--targets", default="rv64gc,rv64gcv")
    ap.add_argument("--routes", default=",".join(r[0] for r in ROUTES))
    ap.add_argument("--peers", default=str(Path(__file__).resolve().parents[2] / "shared" / "peers"),
                    help="folder of the TFLite Micro runners ('' to skip)")
    ap.add_argument("-n", type=int, default=1, help="inputs per run")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--tag", default="")
    ap.add_argument("--merge", help="an earlier kernel_bench JSON: its routes and peers that this run does not "
                    "measure are kept (e.g. re-measure only the tuned int8 route after a schedule change)")
    args = ap.parse_args(argv)
    emu = qemu.find_emulator()
    peers_dir = Path(args.peers) if args.peers and Path(args.peers).is_dir() else None
    routes = [r for r in ROUTES if r[0] in args.routes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cc-kbench-") as tmp:
        for key in args.models.split(","):
            art = Path(args.models_dir) / key
            if not (art / "model_int8.tflite").is_file():
                bench_models.build_artifact(bench_models.BENCH_MODELS[key], art)
            a = harness.Artifacts.load(art)
            xq = a.int8_inputs()[: args.n]
            ref, _ = harness.tflite_run(art / "model_int8.tflite", xq, reference=True)
            for target in args.targets.split(","):
                rr = [measure_route(art, r, target, Path(tmp), emu, xq, ref, not args.no_profile and r[1] == "int8")
                      for r in routes]
                macs = next((x["macs"] for x in rr if "macs" in x), 0)
                rows.append({"model": key, "title": bench_models.BENCH_MODELS[key].title, "target": target,
                             "macs": macs, "routes": rr,
                             "peers": measure_peers(art, target, peers_dir, Path(tmp), emu, xq, ref, macs)})
    if args.merge:
        rows = merge_rows(json.loads(Path(args.merge).read_text())["rows"], rows)
    report = {"emulator": f"qemu-riscv64 {emu.version}" + (" + libinsn.so (inline)" if emu.counts else ""),
              "vlen": 128, "n_inputs": args.n, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"kernel_bench{('_' + args.tag) if args.tag else ''}"
    write_text(out / f"{stem}.json", json.dumps(report, indent=1) + "\n")
    write_text(out / f"{stem}.md", render_md(report))
    print(render_md(report))
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
