"""Bench any model file on the emulated device: `cloudcover bench --model FILE --inputs FILE.npz` (the wiring is in
bench_cli; this module does the work and can run alone: `python -m cloudcover.riscv.byo_bench --help`).

For each target: `cloudcover compile` (compute auto: int8 for a quantized model, float for a float one) ->
`cloudcover build` -> cloudcover-infer under qemu-riscv64 over every input of the array file, once with all N
inputs and once with none (instructions per inference = the difference / N, libc start-up excluded, as the
artifacts bench counts). References: the model's own runtime (onnxruntime CPU for .onnx, ai-edge-litert
BUILTIN_REF for .tflite) on the same inputs; with --float-model, the float model's runtime too, and the float
model is compiled and run on the same targets, so its instructions, weights and arena stand next to the int8
build's (the int8 gain as a measured ratio). With labels (the npz's `y`, or --labels FILE.npy), accuracy.
Writes OUT/byo_bench.json and OUT/byo_bench.md (each replaced atomically; other files in OUT are left alone).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cloudcover.train.errors import CloudcoverError

from . import byo


def load_inputs(path: str | Path, labels: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """x (key "x", or the only array) and labels (key "y", or --labels .npy) of an array file."""
    path = Path(path)
    if not path.is_file():
        raise CloudcoverError(f"inputs file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CloudcoverError(f"{path}: not a .npz/.npy array file ({exc})") from exc
    if isinstance(data, np.ndarray):
        x, y = data, None
    else:
        keys = list(data.keys())
        if "x" not in keys and len(keys) != 1:
            raise CloudcoverError(f"{path}: expected an array named x (found {', '.join(keys)})")
        x = data["x" if "x" in keys else keys[0]]
        y = data["y"] if "y" in keys else None
    if labels is not None:
        y = np.load(labels, allow_pickle=False)
    if len(x) == 0:
        raise CloudcoverError(f"{path}: no inputs")
    if y is not None and len(y) != len(x):
        raise CloudcoverError(f"{len(y)} labels for {len(x)} inputs")
    return x, y


def _insns_per_inference(emu, binary: Path, target: str, info: dict, x: np.ndarray, work: Path):
    from . import qemu

    full = qemu.run_infer(emu, binary, target, byo.encode_inputs(info, x), work / "all")
    empty = qemu.run_infer(emu, binary, target, b"", work / "none")
    insns = None
    if full.instructions is not None and empty.instructions is not None:
        insns = (full.instructions - empty.instructions) / len(x)
    return full.output, insns, empty.instructions


def bench_build(model: Path, target: str, x: np.ndarray, work: Path, emu, log=print) -> dict:
    """Compile, build and run one model for one target; the device outputs and the costs."""
    from cloudcover.export.compile import compile_model

    from .build_cli import build_one
    from .toolchain import elf_section_sizes

    info = compile_model(model, target, work / "model", log=lambda m: None)
    exe = build_one(work / "model", work / "bin", target)
    raw, insns, startup = _insns_per_inference(emu, exe, target, info, x, work / "run")
    dev = byo.as_float(info, byo.decode_outputs(info, raw, len(x)))
    log(f"{target} {model.name}: {info['compute']} build, "
        f"{'n/a' if insns is None else f'{insns:,.0f}'} instructions/inference")
    return {"info": info, "device": dev, "row": {
        "model": model.name, "target": target, "compute": info["compute"], "int8_compute": info["int8_compute"],
        "input_dtype": info["input"]["dtype"], "output_dtypes": [o["dtype"] for o in info["outputs"]],
        "instructions_per_inference": None if insns is None else round(insns),
        "startup_instructions": startup, "macs": info["macs"],
        "instructions_per_mac": None if insns is None or not info["macs"] else round(insns / info["macs"], 3),
        "weights_bytes": info["weights_bytes"], "arena_bytes": info["arena_bytes"],
        "workspace_bytes": info["workspace_bytes"], "text_bytes": elf_section_sizes(exe).get(".text", 0)}}


def bench(model: str | Path, inputs: str | Path, targets: list[str], out: str | Path,
          float_model: str | Path | None = None, labels: str | Path | None = None, system_qemu: bool = False,
          log=print) -> dict:
    import tempfile

    from cloudcover.train.atomic import write_text

    from . import qemu

    model = Path(model)
    float_model = Path(float_model) if float_model else None
    for m in (model, float_model):
        if m is not None and not m.is_file():
            raise CloudcoverError(f"model file not found: {m}")
    x, y = load_inputs(inputs, labels)
    emu = qemu.find_emulator(prefer_plugin=not system_qemu)
    t0 = time.time()
    ref = byo.reference_outputs(model, x)
    float_ref = byo.reference_outputs(float_model, x) if float_model else None
    runtime = "onnxruntime CPUExecutionProvider" if model.suffix.lower() == ".onnx" else "ai-edge-litert BUILTIN_REF"
    rows = []
    with tempfile.TemporaryDirectory(prefix="cloudcover-byo-") as tmp:
        for target in targets:
            b = bench_build(model, target, x, Path(tmp) / target, emu, log)
            ref_real = byo.as_float(b["info"], ref)  # (integer outputs of the runtime dequantized, float ones kept)
            row = b["row"]
            row["vs_own_runtime"] = byo.to_json(byo.compare(b["device"], ref_real, b["info"]["outputs"]))
            if float_ref is not None:
                row["vs_float_model"] = byo.to_json(byo.compare(b["device"], float_ref,
                                                                [{"shape": o["shape"]} for o in b["info"]["outputs"]]))
            if y is not None:
                row["accuracy"] = float(np.mean(b["device"][0].reshape(len(x), -1).argmax(1) == y))
            rows.append(row)
            if float_model is not None:
                fb = bench_build(float_model, target, x, Path(tmp) / f"{target}-float", emu, log)
                frow = fb["row"]
                frow["vs_own_runtime"] = byo.to_json(byo.compare(fb["device"], float_ref, fb["info"]["outputs"]))
                if y is not None:
                    frow["accuracy"] = float(np.mean(fb["device"][0].reshape(len(x), -1).argmax(1) == y))
                for key in ("instructions_per_inference", "weights_bytes", "arena_bytes"):
                    a, f = row[key], frow[key]
                    row[f"float_over_int8_{key}"] = None if not a or f is None else round(f / a, 2)
                rows.append(frow)
    report = {"model": str(model), "float_model": str(float_model) if float_model else None,
              "inputs": str(inputs), "n_inputs": int(len(x)), "reference_runtime": runtime,
              "emulator": f"qemu-riscv64 {emu.version}" + (" + libinsn.so" if emu.counts else " (no plugin)"),
              "rows": rows, "seconds": round(time.time() - t0, 1)}
    out = Path(out)  # may be a shared reports/ folder: each file is replaced on its own (temp name, rename)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "byo_bench.json", json.dumps(report, indent=1) + "\n")
    write_text(out / "byo_bench.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"Bring-your-own-model bench: {report['model']} on {report['n_inputs']} inputs "
             f"(reference: {report['reference_runtime']}; {report['emulator']})", "",
             "| model | target | compute | instructions/inference | weights | arena | .text | max LSB | max rel | "
             "top-1 vs own runtime | accuracy |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        p = r["vs_own_runtime"][0]
        ins = "n/a" if r["instructions_per_inference"] is None else f"{r['instructions_per_inference']:,}"
        top1 = "" if p["top1_agreement"] is None else f"{p['top1_agreement'] * 100:.2f} %"
        if p.get("mask_agreement") is not None:
            top1 = f"{p['mask_agreement'] * 100:.2f} % of pixels"
        acc = f"{r['accuracy'] * 100:.2f} %" if "accuracy" in r else ""
        lsb = "" if p["max_lsb"] is None else str(p["max_lsb"])
        lines.append(f"| {r['model']} | {r['target']} | {r['compute']} | {ins} | {r['weights_bytes']:,} | "
                     f"{r['arena_bytes']:,} | {r['text_bytes']:,} | {lsb} | {p['max_rel']:.2e} | {top1} | {acc} |")
    ratios = [f"- {r['target']}: float/int8 instructions {r['float_over_int8_instructions_per_inference']}, weights "
              f"{r['float_over_int8_weights_bytes']}, arena {r['float_over_int8_arena_bytes']}"
              for r in report["rows"] if "float_over_int8_weights_bytes" in r]
    return "\n".join(lines + ([""] + ratios if ratios else [])) + "\n"


def add_arguments(p) -> None:
    """The --model form's options (bench_cli adds them to `cloudcover bench`)."""
    p.add_argument("--model", help="any .onnx or .tflite model file (fp32, int8 TFLite, ONNX QDQ)")
    p.add_argument("--inputs", help="with --model: .npz holding x (inputs as the model takes them, float for "
                   "float and QDQ models) and optionally y (class labels)")
    p.add_argument("--labels", help="with --model: class labels as a .npy file (instead of the npz's y)")
    p.add_argument("--float-model", help="with --model: the float counterpart (e.g. model_fp32.onnx): compared "
                   "with, and built and measured next to the int8 build")


def main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.byo_bench", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--targets", default="rv64gc,rv64gcv")
    ap.add_argument("--out", default="reports/byo")
    ap.add_argument("--system-qemu", action="store_true")
    args = ap.parse_args(argv)
    if not args.model or not args.inputs:
        ap.error("--model and --inputs are required")
    try:
        rep = bench(args.model, args.inputs, [t for t in args.targets.split(",") if t], args.out, args.float_model,
                    args.labels, args.system_qemu, log=lambda m: print(f"byo bench: {m}", flush=True))
    except CloudcoverError as exc:
        print(f"byo bench: error: {exc}", file=sys.stderr)
        return 1
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
