"""Parity and cost of the riscv64 build: run the test split through cloudcover-infer under QEMU and compare.

References, computed once per bench: the float Keras model (model.keras, raw pixels in) and the TFLite int8
model run by ai-edge-litert with its *reference* kernels (BUILTIN_REF: the bit-exact oracle; TFLite's own
optimized kernels differ from it by a few LSB). Each target then runs the whole split in one QEMU process;
instructions per inference = (count with N inputs - count with 0 inputs) / N, so libc start-up is excluded.
Peer runtimes (riscv/peers.py) run the same .tflite on the same inputs after each target and are compared with
the references by the same function as the device output (compare_outputs), chosen by quant.json's "task":
classifiers by top-1 class per image, segmenters by cloud mask per valid pixel (seg_figures.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcover.export.targets import get_target
from cloudcover.train.errors import CloudcoverError

from . import peers as peers_mod
from . import qemu, seg_figures, toolchain


@dataclass
class Artifacts:
    dir: Path
    x: np.ndarray  # float model input, NHWC float32
    y: np.ndarray  # labels: class indices, or (N, H, W) masks 0/1/255 for a segmenter
    quant: dict
    ids: list[str] | None = None

    @property
    def task(self) -> str:
        return self.quant.get("task") or "classification"

    @classmethod
    def load(cls, art: str | Path) -> "Artifacts":
        art = Path(art)
        for name in ("testset.npz", "quant.json", "model_int8.tflite"):
            if not (art / name).is_file():
                raise CloudcoverError(f"{art / name} not found; run `cloudcover export` first")
        with np.load(art / "testset.npz") as z:
            x, y = z["x"].astype(np.float32), z["y"].astype(np.int64)
            ids = [str(i) for i in z["ids"]] if "ids" in z else None
        return cls(art, x, y, json.loads((art / "quant.json").read_text()), ids)

    def preprocess(self):
        """preprocess.json that `cloudcover export` copies beside the model (threshold, coverage bins, classes)."""
        from cloudcover.train.preprocess import Preprocess

        return Preprocess.load(self.dir)

    def int8_inputs(self) -> np.ndarray:
        """The test images quantized as the int8 model expects them (round half to even, like TFLite)."""
        q = self.quant["input"]
        xi = np.round(self.x / q["scale"]) + q["zero_point"]
        return np.clip(xi, -128, 127).astype(np.int8)


@dataclass
class References:
    float_logits: np.ndarray
    tflite_ref: np.ndarray  # int8 outputs, BUILTIN_REF kernels
    host_tflite_ms: float | None
    host_onnxruntime_ms: float | None
    host_onnxruntime_note: str


def tflite_run(path: Path, xq: np.ndarray, reference: bool) -> tuple[np.ndarray, float]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if reference else {}
    it = Interpreter(model_path=str(path), num_threads=1, **kw)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    t0 = time.perf_counter()
    for k in range(len(xq)):
        it.set_tensor(i["index"], xq[k : k + 1])
        it.invoke()
        outs.append(it.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(outs), (time.perf_counter() - t0) * 1000 / max(len(xq), 1)


def onnxruntime_ms(path: Path, x: np.ndarray) -> tuple[float | None, str]:
    if not path.is_file():
        return None, f"{path.name} not found"
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = x.astype(np.float32) if "float" in inp.type else x
    sess.run(None, {inp.name: feed[:1]})  # warm-up
    t0 = time.perf_counter()
    for k in range(len(feed)):
        sess.run(None, {inp.name: feed[k : k + 1]})
    return (time.perf_counter() - t0) * 1000 / max(len(feed), 1), f"{path.name}, 1 thread, CPUExecutionProvider"


def compute_references(art: Artifacts, log=print) -> References:
    import keras

    keras_path = art.dir / "model.keras"
    if not keras_path.is_file():
        raise CloudcoverError(f"{keras_path} not found; run `cloudcover export` first")
    model = keras.models.load_model(keras_path, compile=False)
    float_logits = np.asarray(model.predict(art.x, batch_size=32, verbose=0)).reshape(len(art.x), -1)
    xq = art.int8_inputs()
    ref, _ = tflite_run(art.dir / "model_int8.tflite", xq, reference=True)
    _, host_ms = tflite_run(art.dir / "model_int8.tflite", xq, reference=False)
    ort_ms, ort_note = onnxruntime_ms(art.dir / "model_int8.onnx", art.x)
    log(f"references: float Keras and TFLite BUILTIN_REF on {len(xq)} images; host TFLite int8 {host_ms:.3f} ms")
    return References(float_logits, ref, host_ms, ort_ms, ort_note)


def per_mac(insns: float | None, macs: int) -> float | None:
    return None if insns is None or not macs else round(insns / macs, 3)


def compare_classification(dev: np.ndarray, refs: References, art: Artifacts) -> dict:
    """int8 class scores (N, classes) of a runtime against TFLite-ref and the float model."""
    diff = np.abs(dev.astype(np.int32) - refs.tflite_ref.astype(np.int32))
    top = dev.argmax(1)
    return {
        "top1_agreement_float": float(np.mean(top == refs.float_logits.argmax(1))),
        "top1_agreement_tflite": float(np.mean(top == refs.tflite_ref.argmax(1))),
        "max_abs_diff_lsb": int(diff.max()),
        "accuracy_device": float(np.mean(top == art.y)),
        "lsb_histogram": {str(k): int(v) for k, v in zip(*np.unique(diff, return_counts=True))},
    }


def compare_segmentation(dev: np.ndarray, refs: References, art: Artifacts) -> dict:
    """int8 logit maps (N, pixels) of a runtime: cloud masks against TFLite-ref's and the float model's."""
    pre = art.preprocess()
    return seg_figures.compare(dev, refs.tflite_ref, refs.float_logits, art.y, art.quant["output"], pre.threshold,
                               pre.bins, pre.class_names, art.ids)


def classification_headline(cmp: dict, refs: References, art: Artifacts) -> tuple[dict, dict]:
    """(report columns, extras) of a classifier's bench row, in the order bench.json has always had."""
    top_float, top_ref = refs.float_logits.argmax(1), refs.tflite_ref.argmax(1)
    head = {k: cmp[k] for k in ("top1_agreement_float", "top1_agreement_tflite", "max_abs_diff_lsb")}
    head.update(accuracy_float=float(np.mean(top_float == art.y)), accuracy_device=cmp["accuracy_device"])
    extras = {"accuracy_tflite_ref": float(np.mean(top_ref == art.y)), "lsb_histogram": cmp["lsb_histogram"]}
    return head, extras


def segmentation_headline(cmp: dict, refs: References, art: Artifacts) -> tuple[dict, dict]:
    pre = art.preprocess()
    head = {k: cmp[k] for k in ("pixel_agreement_float", "pixel_agreement_tflite", "max_abs_diff_lsb",
                                "iou_device_float", "coverage_class_agreement_float", "iou_truth_float",
                                "iou_truth_device")}
    extras = {k: cmp[k] for k in ("min_image_pixel_agreement_float", "min_image_iou_device_float",
                                  "images_at_0_lsb", "valid_pixels", "lsb_histogram")}
    extras.update(threshold=pre.threshold, coverage_bins=list(pre.bins), coverage_classes=list(pre.class_names),
                  per_image=cmp["per_image"])
    return head, extras


def classification_log(e: dict) -> str:
    return (f"top-1 vs TFLite-ref {e['top1_agreement_tflite']:.1%}, vs float {e['top1_agreement_float']:.1%}, "
            f"max diff {e['max_abs_diff_lsb']} LSB")


def segmentation_log(e: dict) -> str:
    return (f"pixels vs TFLite-ref {e['pixel_agreement_tflite']:.2%}, vs float {e['pixel_agreement_float']:.2%}, "
            f"IoU vs float {e['iou_device_float']:.4f}, coverage class = float {e['coverage_class_agreement_float']:.1%}, "
            f"max diff {e['max_abs_diff_lsb']} LSB")


@dataclass(frozen=True)
class TaskBench:
    """What differs between tasks in the bench: how outputs are compared, which figures head a row, its log line."""
    compare: Callable[[np.ndarray, References, Artifacts], dict]
    headline: Callable[[dict, References, Artifacts], tuple[dict, dict]]
    log: Callable[[dict], str]
    # per-image detail that a peer row does without (the device row keeps it)
    peer_drop: tuple[str, ...] = ()


# How a runtime's int8 outputs are compared with the references, per task (quant.json's "task"); cloudcover's
# device output and every peer's go through the same function, so a new task adds one entry here.
TASKS = {
    "classification": TaskBench(compare_classification, classification_headline, classification_log),
    "segmentation": TaskBench(compare_segmentation, segmentation_headline, segmentation_log, ("per_image",)),
}


def task_bench(art: Artifacts) -> TaskBench:
    if art.task not in TASKS:
        raise CloudcoverError(f"{art.dir / 'quant.json'}: no bench comparison for task {art.task!r}")
    return TASKS[art.task]


def compare_outputs(dev: np.ndarray, refs: References, art: Artifacts) -> dict:
    return task_bench(art).compare(dev, refs, art)


def bench_peer(art: Artifacts, refs: References, peer: peers_mod.Peer, cloudcover_insns: float | None, macs: int,
               emu: qemu.Emulator, workdir: Path, log=print) -> dict:
    """One peer on the model: its figures beside the target's, or a row saying why it could not run."""
    r = peers_mod.measure(emu, peer, art.dir / "model_int8.tflite", art.int8_inputs(), workdir / f"peer-{peer.name}")
    row = {
        "name": peer.name,
        "runner": str(peer.runner),
        "target": peer.target,
        "target_from": peer.target_from,
        "ok": r.ok,
        "exit_code": r.exit_code,
        "note": r.note,
        "arena_bytes": r.arena_bytes,
        "instructions_per_inference": None if r.instructions_per_inference is None else round(r.instructions_per_inference),
        "instructions_per_mac": per_mac(r.instructions_per_inference, macs),
        "cloudcover_over_peer": None,
        "startup_instructions": r.startup_instructions,
        "emulated_ms_per_inference": r.emulated_ms_per_inference,
    }
    if not r.ok:
        log(f"{peer.target}: peer {peer.name} did not run: {r.note}")
        return row
    if r.outputs.shape != refs.tflite_ref.shape:
        row.update(ok=False, note=f"output is {r.outputs.shape[1]} values per image; TFLite-ref has "
                                  f"{refs.tflite_ref.shape[1]}")
        log(f"{peer.target}: peer {peer.name}: {row['note']}")
        return row
    q = peers_mod.ratio(cloudcover_insns, r.instructions_per_inference)
    row["cloudcover_over_peer"] = None if q is None else round(q, 4)
    tb = task_bench(art)
    row.update({k: v for k, v in tb.compare(r.outputs, refs, art).items() if k not in tb.peer_drop})
    log(f"{peer.target}: peer {peer.name}: max diff {row['max_abs_diff_lsb']} LSB, "
        f"{row['instructions_per_inference']} instructions/inference, cloudcover/peer {row['cloudcover_over_peer']}")
    return row


def bench_target(art: Artifacts, refs: References, build: Path, target: str, emu: qemu.Emulator,
                 workdir: Path, log=print, peers: list[peers_mod.Peer] = (), profile: bool = True) -> dict:
    model_json = build / "model" / target / "model.json"
    binary = build / "riscv64" / toolchain.binary_name(target)
    if not model_json.is_file():
        raise CloudcoverError(f"{model_json} not found; run `cloudcover compile --target {target} --out {model_json.parent}`")
    if not binary.is_file():
        raise CloudcoverError(f"{binary} not found; run `make riscv-build`")
    info = json.loads(model_json.read_text())
    xq = art.int8_inputs()
    per_image = int(np.prod(xq.shape[1:]))
    if per_image != info["input"]["bytes"] or list(xq.shape[1:]) != info["input"]["shape"][1:]:
        raise CloudcoverError(f"test images are {list(xq.shape[1:])} ({per_image} B) but {model_json} expects "
                              f"{info['input']['shape']} ({info['input']['bytes']} B)")
    n = len(xq)
    start = qemu.run_infer(emu, binary, target, b"", workdir / f"{target}-empty")
    full = qemu.run_infer(emu, binary, target, xq.tobytes(), workdir / f"{target}-all")
    out_bytes = info["output"]["bytes"]
    if len(full.output) != n * out_bytes:
        raise CloudcoverError(f"{binary.name} wrote {len(full.output)} bytes for {n} inputs; expected {n * out_bytes}")
    dev = np.frombuffer(full.output, dtype=np.int8).reshape(n, -1)

    insns = None
    if full.instructions is not None and start.instructions is not None:
        insns = peers_mod.per_inference(full.instructions, start.instructions, n)
    tb = task_bench(art)
    head, extras = tb.headline(tb.compare(dev, refs, art), refs, art)
    sizes = toolchain.elf_section_sizes(binary)
    kernels_text = toolchain.elf_section_sizes(build / "model" / target / "kernels.o").get(".text", 0)
    entry = {
        "model": info["model"],
        "target": target,
        "macs": info["macs"],
        "instructions_per_inference": None if insns is None else round(insns),
        "instructions_per_mac": per_mac(insns, info["macs"]),
        **head,
        "text_bytes": sizes.get(".text", 0),
        "weights_bytes": info["weights_bytes"],
        "arena_bytes": info["arena_bytes"],
        # model.json's truth: true only when no lowered kernel computes in floating point
        "int8_compute": bool(info["int8_compute"]),
        # extras
        "n_images": n,
        **extras,
        "kernels_text_bytes": kernels_text,
        "workspace_bytes": info["workspace_bytes"],
        "intermediate_bytes_sum": info["intermediate_bytes_sum"],
        "live_peak_bytes": info.get("live_peak_bytes"),
        "weights_dtypes": info["weights_dtypes"],
        "emulated_ms_per_inference": round((full.wall_s - start.wall_s) * 1000 / n, 3),
        "emulator": f"qemu-riscv64 {emu.version}" + (" + libinsn.so (inline)" if emu.counts else " (no plugin)"),
        "qemu_cpu": get_target(target).qemu_cpu,
        "instructions_note": None if insns is not None else "not measured: plugin QEMU unavailable (run `make qemu`)",
        "startup_instructions": start.instructions,
        "host_tflite_int8_ms": None if refs.host_tflite_ms is None else round(refs.host_tflite_ms, 4),
        "host_onnxruntime_int8_ms": None if refs.host_onnxruntime_ms is None else round(refs.host_onnxruntime_ms, 4),
        "host_onnxruntime_note": refs.host_onnxruntime_note,
        "lowering": info.get("lowering"),
        "compute": info.get("compute", "float"),
        "float_ops": info.get("float_ops"),
        "task": art.task,
    }
    log(f"{target}: {tb.log(entry)}, {entry['instructions_per_inference']} instructions/inference")
    if emu.counts and profile:
        # per-kernel instructions on the first test image (counts do not depend on the input)
        from .profile import profile_model

        entry["profile"] = profile_model(build / "model" / target, binary, xq[:1], workdir / f"{target}-profile",
                                         emu, log).to_json()
    entry["peers"] = [bench_peer(art, refs, p, insns, info["macs"], emu, workdir, log) for p in peers
                      if p.target == target]
    return entry
