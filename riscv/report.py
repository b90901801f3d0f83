"""Write reports/bench.json (one entry per model and target) and reports/bench.md (table + method).

Columns go by task (an entry's "task"; absent means classification): classifiers by top-1 class per image,
segmenters by cloud mask per valid pixel, IoU and coverage class. One report may hold models of both tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

from cloudcover.train.atomic import write_text

REQUIRED_KEYS = ("model", "target", "macs", "instructions_per_inference", "instructions_per_mac",
                 "top1_agreement_float", "top1_agreement_tflite", "max_abs_diff_lsb", "accuracy_float",
                 "accuracy_device", "text_bytes", "weights_bytes", "arena_bytes", "int8_compute")
SEG_REQUIRED_KEYS = ("model", "target", "macs", "instructions_per_inference", "instructions_per_mac",
                     "pixel_agreement_float", "pixel_agreement_tflite", "max_abs_diff_lsb", "iou_device_float",
                     "coverage_class_agreement_float", "iou_truth_float", "iou_truth_device", "text_bytes",
                     "weights_bytes", "arena_bytes", "int8_compute")
REQUIRED_BY_TASK = {"classification": REQUIRED_KEYS, "segmentation": SEG_REQUIRED_KEYS}

_HEAD = [("target", "target", ""), ("MACs", "macs", ""), ("instr/inference", "instructions_per_inference", ""),
         ("instr/MAC", "instructions_per_mac", ""), ("emulated ms/inf", "emulated_ms_per_inference", "")]
_TAIL = [(".text B", "text_bytes", ""), ("kernels .text B", "kernels_text_bytes", ""), ("weights B", "weights_bytes", ""),
         ("arena B", "arena_bytes", ""), ("workspace B", "workspace_bytes", ""), ("int8 compute", "int8_compute", "")]
# (header, key, format) of the task's own columns in the model table and in the side-by-side peer table
COLUMNS = {
    "classification": [("top-1 = TFLite-ref", "top1_agreement_tflite", "pct"),
                       ("top-1 = float", "top1_agreement_float", "pct"), ("max diff (LSB)", "max_abs_diff_lsb", ""),
                       ("acc float", "accuracy_float", "pct"), ("acc device", "accuracy_device", "pct")],
    "segmentation": [("pixels = TFLite-ref", "pixel_agreement_tflite", "pct2"),
                     ("pixels = float", "pixel_agreement_float", "pct2"), ("IoU vs float", "iou_device_float", "f4"),
                     ("coverage class = float", "coverage_class_agreement_float", "pct"),
                     ("max diff (LSB)", "max_abs_diff_lsb", ""), ("IoU truth float", "iou_truth_float", "f4"),
                     ("IoU truth device", "iou_truth_device", "f4")],
}
PEER_COLUMNS = {
    "classification": [("max diff (LSB)", "max_abs_diff_lsb", ""), ("top-1 = TFLite-ref", "top1_agreement_tflite", "pct"),
                       ("top-1 = float", "top1_agreement_float", "pct")],
    "segmentation": [("max diff (LSB)", "max_abs_diff_lsb", ""), ("pixels = TFLite-ref", "pixel_agreement_tflite", "pct2"),
                     ("pixels = float", "pixel_agreement_float", "pct2"), ("IoU vs float", "iou_device_float", "f4"),
                     ("coverage class = float", "coverage_class_agreement_float", "pct")],
}


def task_of(e: dict) -> str:
    return e.get("task") or "classification"


def _fmt(v, kind: str = "") -> str:
    if v is None:
        return "n/m"
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "pct2":
        return f"{v:.2%}"
    if kind == "f4":
        return f"{v:.4f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}"
    return str(v)


def render_markdown(entries: list[dict]) -> str:
    lines = ["# cloudcover riscv64 benchmark", ""]
    for model in dict.fromkeys(e["model"] for e in entries):
        rows = [e for e in entries if e["model"] == model]
        task = task_of(rows[0])
        cols = _HEAD + COLUMNS[task] + _TAIL
        what = f"{rows[0]['n_images']} test images" if task == "classification" else \
            f"segmentation, {rows[0]['n_images']} test images"
        lines += [f"## {model} ({what})", "",
                  "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
        for e in rows:
            lines.append("| " + " | ".join(_fmt(e.get(k), kind) for _, k, kind in cols) + " |")
        if task == "segmentation":
            lines += ["", _seg_note(rows)]
        lines += render_peers(rows)
        for e in rows:
            if e.get("profile"):
                from .profile import format_top

                lines += ["", format_top(e["profile"], 5)]
        e = rows[0]
        lines += ["", f"Host baselines on this x86-64 machine (1 thread, ms per inference): TFLite int8 "
                  f"(ai-edge-litert, default kernels) {_fmt(e['host_tflite_int8_ms'])}; onnxruntime int8 "
                  f"{_fmt(e['host_onnxruntime_int8_ms'])} ({e['host_onnxruntime_note']}).", ""]
    e = entries[0]
    tasks = {task_of(x) for x in entries}
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
    ]
    if "classification" in tasks:
        lines += [
            "- **top-1 = TFLite-ref**: share of images where the device's top class equals that of the int8 TFLite "
            "model run by ai-edge-litert with its *reference* kernels (BUILTIN_REF, the bit-exact oracle). **max diff "
            "(LSB)**: largest |device - TFLite-ref| over all int8 output scores.",
            "- **top-1 = float**: agreement with the float Keras model (model.keras) on the same images; **acc** "
            "columns are accuracy against the labels.",
        ]
    if "segmentation" in tasks:
        lines += [
            "- **Segmenters**: the output is one int8 logit per pixel; a pixel is cloud when sigmoid((q - zero point) "
            "x scale) >= the run's threshold (preprocess.json), the float model's when sigmoid(logit) >= it. Only "
            "valid pixels count (test mask 0 or 1; 255 = nodata). **pixels = TFLite-ref / = float**: share of "
            "valid pixels of the whole split where the device's mask equals the mask of TFLite's reference kernels "
            "(BUILTIN_REF) / of the float Keras model. **max diff (LSB)**: largest |device - TFLite-ref| over all "
            "int8 output values. **IoU vs float**: TP / (TP + FP + FN) of the cloud class with the float mask as "
            "truth, counts pooled over the split. **coverage class = float**: share of images whose device mask "
            "falls in the same coverage class as the float mask (cloud % over valid pixels, binned by the run's "
            "coverage bins: what `cloudcover evaluate` and `predict` call the class). **IoU truth**: IoU of the "
            "float and the device mask against the test masks (information, not parity).",
        ]
    lines += [
        "- **.text B**: `.text` section of the whole static binary (model kernels + runtime + libc); **kernels .text "
        "B**: the TVM kernels alone. **weights B**: constant tensors as stored in the binary (int8 weights plus "
        "int32/int64 requantization vectors on the int8 route; float32 after TVM folds dequantize on the float route). **arena B**: intermediates placed by the liveness "
        "plan; **workspace B**: the kernels' scratch stack placed after it.",
        _compute_line(entries),
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


def _seg_note(rows: list[dict]) -> str:
    """The coverage classes used and the worst image, under a segmenter's table."""
    e = rows[0]
    classes = ", ".join(e.get("coverage_classes") or [])
    worst = "; ".join(f"{r['target']}: worst image {_fmt(r.get('min_image_pixel_agreement_float'), 'pct2')} of "
                      f"pixels = float, IoU vs float {_fmt(r.get('min_image_iou_device_float'), 'f4')}, "
                      f"{r.get('images_at_0_lsb', 'n/m')} of {r['n_images']} images at 0 LSB" for r in rows)
    return (f"Cloud at sigmoid >= {e.get('threshold')}; coverage classes {classes} (bins "
            f"{e.get('coverage_bins')} % of valid pixels). {worst}.")


def _compute_line(entries: list[dict]) -> str:
    notes = {e["model"]: (e["int8_compute"], _compute_note(e)) for e in entries}
    if len(set(notes.values())) == 1:
        ok, note = next(iter(notes.values()))
        return f"- **int8 compute**: {'yes' if ok else 'no'}: " + note
    return "- **int8 compute**: " + " ".join(f"{m}: {'yes' if ok else 'no'}: {note}" for m, (ok, note) in notes.items())


def render_peers(rows: list[dict]) -> list[str]:
    """Side by side: each target's cloudcover row, then the peers compared with it (same model, inputs, -cpu)."""
    if not any(e.get("peers") for e in rows):
        return ["", "Peer runtimes: none measured (`cloudcover bench --peer NAME=RUNNER`; `make bench` passes the "
                "TFLite Micro runners of ../shared/peers when that folder exists)."]
    cols = PEER_COLUMNS[task_of(rows[0])]
    heads = ["runtime", "target", "instr/inference", "instr/MAC", "cloudcover / peer"] + [c[0] for c in cols] + \
        ["arena B", "note"]
    lines = ["", "### Beside TFLite Micro (same .tflite, same inputs, same QEMU and -cpu, same counting)", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for e in rows:
        task_cells = " | ".join(_fmt(e.get(k), kind) for _, k, kind in cols)
        lines.append(f"| **cloudcover** | {e['target']} | {_fmt(e['instructions_per_inference'])} | "
                     f"{_fmt(e['instructions_per_mac'])} | — | {task_cells} | "
                     f"{_fmt(e['arena_bytes'] + e.get('workspace_bytes', 0))} | |")
        for p in e.get("peers", []):
            ratio = p.get("cloudcover_over_peer")
            task_cells = " | ".join(_fmt(p.get(k), kind) for _, k, kind in cols)
            lines.append(f"| {p['name']} | {p['target']} | {_fmt(p['instructions_per_inference'])} | "
                         f"{_fmt(p['instructions_per_mac'])} | {'n/m' if ratio is None else f'{ratio:.2f}'} | "
                         f"{task_cells} | {_fmt(p['arena_bytes'])} | "
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


def merge_entries(old: list[dict], new: list[dict]) -> list[dict]:
    """`new` after the rows of `old` whose model is not benched again (a model's rows are replaced as a whole)."""
    models = {e["model"] for e in new}
    return [e for e in old if e.get("model") not in models] + new


def write_reports(entries: list[dict], out_dir: str | Path, merge: bool = False) -> tuple[Path, Path]:
    """OUT/bench.json and bench.md; with `merge`, other models' rows already in OUT/bench.json are kept."""
    out_dir = Path(out_dir)
    jpath, mpath = out_dir / "bench.json", out_dir / "bench.md"
    if merge and jpath.is_file():
        entries = merge_entries(json.loads(jpath.read_text()), entries)
    for e in entries:
        missing = [k for k in REQUIRED_BY_TASK[task_of(e)] if k not in e]
        assert not missing, f"bench entry lacks {missing}"
    write_text(jpath, json.dumps(entries, indent=1) + "\n")
    write_text(mpath, render_markdown(entries))
    return jpath, mpath
