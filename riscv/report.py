"""Write reports/bench.json (one entry per model and target) and reports/bench.md (table + method)."""

from __future__ import annotations

import json
from pathlib import Path

from cloudcover.train.atomic import write_text

REQUIRED_KEYS = ("model", "target", "macs", "instructions_per_inference", "instructions_per_mac",
                 "top1_agreement_float", "top1_agreement_tflite", "max_abs_diff_lsb", "accuracy_float",
                 "accuracy_device", "text_bytes", "weights_bytes", "arena_bytes", "int8_compute")


def _fmt(v, kind: str = "") -> str:
    if v is None:
        return "n/m"
    if kind == "pct":
        return f"{v:.1%}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}"
    return str(v)


def render_markdown(entries: list[dict]) -> str:
    cols = [("target", "target", ""), ("MACs", "macs", ""), ("instr/inference", "instructions_per_inference", ""),
            ("instr/MAC", "instructions_per_mac", ""), ("emulated ms/inf", "emulated_ms_per_inference", ""),
            ("top-1 = TFLite-ref", "top1_agreement_tflite", "pct"), ("top-1 = float", "top1_agreement_float", "pct"),
            ("max diff (LSB)", "max_abs_diff_lsb", ""), ("acc float", "accuracy_float", "pct"),
            ("acc device", "accuracy_device", "pct"), (".text B", "text_bytes", ""), ("kernels .text B", "kernels_text_bytes", ""),
            ("weights B", "weights_bytes", ""), ("arena B", "arena_bytes", ""), ("workspace B", "workspace_bytes", ""),
            ("int8 compute", "int8_compute", "")]
    lines = ["# cloudcover riscv64 benchmark", ""]
    for model in dict.fromkeys(e["model"] for e in entries):
        rows = [e for e in entries if e["model"] == model]
        lines += [f"## {model} ({rows[0]['n_images']} test images)", "",
                  "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
        for e in rows:
            lines.append("| " + " | ".join(_fmt(e.get(k), kind) for _, k, kind in cols) + " |")
        lines += render_peers(rows)
        e = rows[0]
        lines += ["", f"Host baselines on this x86-64 machine (1 thread, ms per inference): TFLite int8 "
                  f"(ai-edge-litert, default kernels) {_fmt(e['host_tflite_int8_ms'])}; onnxruntime int8 "
                  f"{_fmt(e['host_onnxruntime_int8_ms'])} ({e['host_onnxruntime_note']}).", ""]
    e = entries[0]
    lines += [
        "## How each figure was measured", "",
        f"- **Device run**: `cloudcover-infer in.bin out.bin` (static riscv64 ELF) under {e['emulator']}, one QEMU "
        "process per target over the whole test split; inputs are the test images quantized with quant.json's "
        "input scale and zero point.",
        "- **instr/inference**: guest instructions counted by QEMU's `libinsn.so` TCG plugin, run with `env -i` and "
        "fixed relative arguments; (count for N inputs - count for 0 inputs) / N, so process start-up is excluded. "
        "Deterministic for a given QEMU build; `n/m` = not measured (no plugin QEMU; run `make qemu`).",
        "- **instr/MAC**: instructions per inference / MACs of conv2d and matmul counted on the imported Relax graph.",
        "- **emulated ms/inf**: wall time of the QEMU process (same difference as above) on this machine, with the "
        "plugin loaded: an emulation figure, not the speed of riscv64 hardware.",
        "- **top-1 = TFLite-ref**: share of images where the device's top class equals that of the int8 TFLite model "
        "run by ai-edge-litert with its *reference* kernels (BUILTIN_REF, the bit-exact oracle). **max diff (LSB)**: "
        "largest |device - TFLite-ref| over all int8 output scores.",
        "- **top-1 = float**: agreement with the float Keras model (model.keras) on the same images; **acc** columns "
        "are accuracy against the labels.",
        "- **.text B**: `.text` section of the whole static binary (model kernels + runtime + libc); **kernels .text "
        "B**: the TVM kernels alone. **weights B**: constant tensors as stored in the binary (int8 weights plus "
        "int32/int64 requantization vectors on the int8 route; float32 after TVM folds dequantize on the float route). **arena B**: intermediates placed by the liveness "
        "plan; **workspace B**: the kernels' scratch stack placed after it.",
        f"- **int8 compute**: {'yes' if e['int8_compute'] else 'no'}: " + _compute_note(e),
    ]
    if any(x.get("peers") for x in entries):
        lines += [
            "- **Peers** (`--peer NAME=RUNNER`): another runtime's static riscv64 runner (`RUNNER model.tflite "
            "in.bin N out.bin`) runs the same model_int8.tflite on the same quantized inputs under the same QEMU "
            "with the target's `-cpu`, counted the same way ((count with N inputs - count with 0 inputs) / N; N "
            "zero-padded so both runs' arguments have the same length). Its outputs are compared with TFLite-ref "
            "and the float model exactly as the device's. **cloudcover / peer**: cloudcover's instructions per "
            "inference over the peer's on the same target (below 1: cloudcover runs fewer). **arena B**: for "
            "cloudcover the planned intermediates plus workspace; for a peer what it reports as used of its "
            "static arena (TFLite Micro's `arena_used_bytes()`: tensors, scratch and its own bookkeeping). "
            "**did not run**: the runner's exit code and its meaning (4 = an operator it lacks or its arena is "
            "too small).",
        ]
    lines.append("")
    return "\n".join(lines)


def render_peers(rows: list[dict]) -> list[str]:
    """Side by side: each target's cloudcover row, then the peers compared with it (same model, inputs, -cpu)."""
    if not any(e.get("peers") for e in rows):
        return ["", "Peer runtimes: none measured (`cloudcover bench --peer NAME=RUNNER`; `make bench` passes the "
                "TFLite Micro runners of ../shared/peers when that folder exists)."]
    lines = ["", "### Beside TFLite Micro (same .tflite, same inputs, same QEMU and -cpu, same counting)", "",
             "| runtime | target | instr/inference | instr/MAC | cloudcover / peer | max diff (LSB) | "
             "top-1 = TFLite-ref | top-1 = float | arena B | note |", "|" + "---|" * 10]
    for e in rows:
        lines.append(f"| **cloudcover** | {e['target']} | {_fmt(e['instructions_per_inference'])} | "
                     f"{_fmt(e['instructions_per_mac'])} | — | {_fmt(e['max_abs_diff_lsb'])} | "
                     f"{_fmt(e['top1_agreement_tflite'], 'pct')} | {_fmt(e['top1_agreement_float'], 'pct')} | "
                     f"{_fmt(e['arena_bytes'] + e.get('workspace_bytes', 0))} | |")
        for p in e.get("peers", []):
            ratio = p.get("cloudcover_over_peer")
            lines.append(f"| {p['name']} | {p['target']} | {_fmt(p['instructions_per_inference'])} | "
                         f"{_fmt(p['instructions_per_mac'])} | {'n/m' if ratio is None else f'{ratio:.2f}'} | "
                         f"{_fmt(p.get('max_abs_diff_lsb'))} | {_fmt(p.get('top1_agreement_tflite'), 'pct')} | "
                         f"{_fmt(p.get('top1_agreement_float'), 'pct')} | {_fmt(p['arena_bytes'])} | "
                         f"{'' if p['ok'] else 'did not run: ' + _cell(p['note'])} |")
    return lines


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "/").replace("\n", " ")


def _compute_note(e: dict) -> str:
    """Why int8_compute is what it is, from model.json (compute route and the ops left in float)."""
    if e["int8_compute"]:
        return ("the kernels compute in integers (int8 x int8 -> int32 with TFLite's reference requantization, "
                "`cloudcover compile --compute int8`); weights are stored as int8.")
    ops = ", ".join(e.get("float_ops") or [])
    if e.get("compute") == "int8":
        return (f"the int8 lowering left these operators on the float route: {ops or 'see model.json'}; "
                "the kernels computing them use float32.")
    return ("TVM's importer lowers the int8 model to dequantize -> float32 op -> quantize (`--compute float`); "
            "the kernels compute in float32 and only the tensors between them are int8 where TFLite's are.")


def write_reports(entries: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    for e in entries:
        missing = [k for k in REQUIRED_KEYS if k not in e]
        assert not missing, f"bench entry lacks {missing}"
    jpath, mpath = out_dir / "bench.json", out_dir / "bench.md"
    write_text(jpath, json.dumps(entries, indent=1) + "\n")
    write_text(mpath, render_markdown(entries))
    return jpath, mpath
