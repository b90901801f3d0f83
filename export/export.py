"""`cloudcover export`: a training run -> int8 TFLite, fp32/int8 ONNX, host parity, and the device inputs.

ART_DIR/ (built in a temp folder and renamed whole, so an interrupted export leaves nothing behind):
    model_int8.tflite   full integer (int8 in, int8 out, int8 builtin ops); like the ONNX files it embeds
                        cloudcover's metadata (task, class names, quantization: export/model_meta.py)
    model_fp32.onnx     tf2onnx, opset 17
    model_int8.onnx     onnxruntime static QDQ, per-channel int8 weights
    parity.json/.md     accuracy, agreement, score differences, sizes (see parity.py)
    model.keras, preprocess.json   copies from the run
    testset.npz         x float32 [N,H,W,C] (raw pixels, what the float model takes), y (int64 classes, or uint8
                        masks 0/1/255 for a segmenter), ids; also keras_logits float32 and tflite_int8 int8 (the
                        model's output shape: [N,K] or [N,H,W,1]; reference kernels)
    quant.json          task, input/output int8 quantization (shape, dtype, scale, zero_point), class_names
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcover.export import onnx_export, parity, tflite_export
from cloudcover.export.calibration import DEFAULT_CALIBRATION, Calibration, prepare
from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import load_images, read_dataset
from cloudcover.train.task import get_task
from cloudcover.train.training import load_run

ARTIFACTS = ("model_int8.tflite", "model_fp32.onnx", "model_int8.onnx", "parity.json", "parity.md", "model.keras",
             "preprocess.json", "testset.npz", "quant.json")


@dataclass
class ExportResult:
    out: Path
    parity: dict  # the content of parity.json
    table: str  # the content of parity.md


def calibration_images(data_dir: Path, pre, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` train-split images, drawn at random (seeded) across the classes."""
    if n < 1:
        raise CloudcoverError(f"calibration set is empty: --calib-samples must be at least 1, got {n}")
    info = read_dataset(data_dir)
    rows = info.split_rows("train")
    if not rows:
        raise CloudcoverError(f"calibration set is empty: {info.root / 'manifest.csv'} has no train images")
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    return load_images([info.root / rows[i]["image"] for i in sorted(pick)], pre)


def export_run(run_dir: str | Path, out: str | Path, calib_samples: int = 200, data_dir: str | Path | None = None,
               log=print, calibration: Calibration = DEFAULT_CALIBRATION) -> ExportResult:
    """Export the run in `run_dir` to `out`; `data_dir` defaults to the dataset recorded at training."""
    run_dir, out = Path(run_dir), Path(out)
    check_replaceable(out, "parity.json", "an export folder")
    model, pre = load_run(run_dir)
    data = Path(data_dir or pre.data_dir)
    if not (data / "manifest.csv").is_file():
        raise CloudcoverError(f"dataset {data} not found or has no manifest.csv (pass --data DATASET_DIR)")
    t0 = time.perf_counter()
    calib = calibration_images(data, pre, calib_samples)
    task = get_task(pre.task)
    x, y, ids = task.load_split(data, "test", pre)
    if len(x) == 0:
        raise CloudcoverError(f"{data / 'manifest.csv'} has no test split to check parity on")
    log(f"export: {len(calib)} calibration images ({calibration} ranges), {len(x)} test images from {data}")

    with atomic_dir(out, "parity.json", "an export folder") as tmp:
        shutil.copy2(run_dir / "model.keras", tmp / "model.keras")
        shutil.copy2(run_dir / "preprocess.json", tmp / "preprocess.json")
        # +affine / +bc rewrite the model the int8 files are converted from (calibration.prepare); the fp32
        # ONNX file stays the trained model itself
        conv_model, plain = prepare(model, calib, calibration)
        log("export: TFLite int8 ...")
        tflite_export.convert_int8(conv_model, calib, tmp / "model_int8.tflite", plain)
        log("export: ONNX fp32 and int8 ...")
        onnx_export.convert_fp32(model, tmp / "model_fp32.onnx")
        src = tmp / "model_fp32.onnx"
        if conv_model is not model:
            src = tmp / "rewritten_fp32.onnx"
            onnx_export.convert_fp32(conv_model, src)
        onnx_export.quantize_int8(src, calib, tmp / "model_int8.onnx", plain)
        if src.name == "rewritten_fp32.onnx":
            src.unlink()
        # task, class names and quantization inside the model files too (model_meta): each compiles on its own
        qin, qout = tflite_export.io_quant(tmp / "model_int8.tflite")
        quant = {"task": pre.task, "input": qin.to_json(), "output": qout.to_json(), "class_names": pre.class_names}
        tflite_export.embed_metadata(tmp / "model_int8.tflite", quant)
        for name in ("model_fp32.onnx", "model_int8.onnx"):
            onnx_export.embed_metadata(tmp / name, {"task": pre.task, "class_names": pre.class_names})

        log("export: parity on the test split ...")
        ref = model.predict(x, batch_size=32, verbose=0).astype(np.float32)
        q_ref, tfl_ref = tflite_export.run_int8(tmp / "model_int8.tflite", x, resolver="reference")
        _, tfl_opt = tflite_export.run_int8(tmp / "model_int8.tflite", x, resolver="default")
        onnx32 = onnx_export.run(tmp / "model_fp32.onnx", x)
        onnx8 = onnx_export.run(tmp / "model_int8.onnx", x)

        def size(name: str) -> int:
            return (tmp / name).stat().st_size

        def compare(name: str, file: str, scores: np.ndarray, note: str = "") -> dict:
            return parity.compare(name, file, size(file), scores, ref, y, task=pre.task, note=note)

        rows = [
            compare("keras fp32", "model.keras", ref),
            compare("tflite int8", "model_int8.tflite", tfl_ref,
                    "ai_edge_litert interpreter, reference kernels (OpResolverType.BUILTIN_REF), the bit-exact oracle"),
            compare("tflite int8 (default kernels)", "model_int8.tflite", tfl_opt,
                    "ai_edge_litert interpreter, default resolver (optimized kernels + XNNPACK)"),
            compare("onnx fp32", "model_fp32.onnx", onnx32, "onnxruntime CPUExecutionProvider"),
            compare("onnx int8", "model_int8.onnx", onnx8, "onnxruntime, QDQ per-channel int8"),
        ]
        (tmp / "quant.json").write_text(json.dumps(quant, indent=2) + "\n")
        labels = y.astype(np.uint8 if task.name == "segmentation" else np.int64)  # masks: 0/1/255 (nodata)
        np.savez_compressed(tmp / "testset.npz", x=x.astype(np.float32), y=labels, ids=np.array(ids),
                            keras_logits=ref, tflite_int8=q_ref)
        extra = {"run": str(run_dir.resolve()), "data": str(data.resolve()), "model": pre.model,
                 "input_size": pre.input_size, "calib_samples": int(len(calib)), "calibration": str(calibration),
                 "quant": quant,
                 "tflite_resolver": "reference (BUILTIN_REF) for 'tflite int8'; default for the second row",
                 "seconds": round(time.perf_counter() - t0, 1)}
        report = parity.report(rows, len(x), extra)
        table = parity.markdown(rows, len(x))
        (tmp / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "parity.md").write_text(table)
    return ExportResult(out, report, table)
