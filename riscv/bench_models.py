"""The kernel benchmark's models as int8 artifact folders: what only their shapes decide (cost), built offline.

    python -m cloudcover.riscv.bench_models --out build/bench-models [--models edge_cnn,resnet8]

Each model is the registered architecture at the benchmark's width and input size, with fixed seeded random
weights (Keras' initializers; batch norm given seeded random statistics so the int8 ranges are not degenerate),
converted to full int8 as `cloudcover export` does (calibration.int8_converter via convert_int8) on seeded
random images. A folder holds model_int8.tflite, quant.json (input/output quantization, task) and testset.npz
(the float images, labels 0) - what harness.Artifacts.load and riscv.bench_kernels read. Cost depends only on
the shapes; bit-exactness is still checked on these weights (against TFLite's reference kernels).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BenchModel:
    key: str  # folder / row name
    arch: str  # registered architecture (train/models.py)
    alpha: float
    size: int
    classes: int
    title: str


BENCH_MODELS = {
    m.key: m for m in (
        BenchModel("edge_cnn", "edge_cnn", 1.5, 96, 3, "demo classifier edge_cnn a1.5 96 px"),
        BenchModel("mobilenet", "mobilenet", 0.35, 96, 3, "MobileNetV2 a0.35 96 px"),
        BenchModel("resnet8", "resnet8", 1.0, 32, 10, "MLPerf Tiny ResNet-8 32 px"),
        BenchModel("unet_resnet18", "unet_resnet18", 0.25, 96, 1, "demo segmenter UNet-ResNet-18 a0.25 96 px"),
    )
}
N_CALIB, N_TEST = 16, 4


def build_artifact(m: BenchModel, out: Path, seed: int = 0) -> Path:
    import keras

    from cloudcover.export.tflite_export import convert_int8, io_quant
    from cloudcover.train.atomic import atomic_dir
    from cloudcover.train.models import _all_layers, create_model, model_config

    keras.utils.set_random_seed(seed)
    model = create_model(m.arch, num_classes=m.classes, input_size=m.size, alpha=m.alpha,
                         mean=[120.0, 125.0, 130.0], std=[60.0, 50.0, 70.0])
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):  # non-trivial batch norm (a trained net's folded scales vary per channel)
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"),
                               rng.normal(0, 0.1, b.shape).astype("float32"),
                               rng.normal(0, 0.1, mu.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])
    x = rng.uniform(0, 255, (N_CALIB + N_TEST, m.size, m.size, 3)).astype(np.float32)
    task = model_config(m.arch).task
    with atomic_dir(out, "model_int8.tflite", "a benchmark model folder") as tmp:
        convert_int8(model, x[:N_CALIB], tmp / "model_int8.tflite")
        qi, qo = io_quant(tmp / "model_int8.tflite")
        (tmp / "quant.json").write_text(json.dumps({"input": qi.to_json(), "output": qo.to_json(), "task": task,
                                                    "class_names": None, "bench_model": m.title}, indent=1) + "\n")
        np.savez(tmp / "testset.npz", x=x[N_CALIB:], y=np.zeros(N_TEST, np.int64))
        (tmp / "preprocess.json").write_text(json.dumps({"model": m.arch, "alpha": m.alpha, "input_size": m.size,
                                                         "class_names": None}) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudcover.riscv.bench_models", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/bench-models")
    ap.add_argument("--models", default=",".join(BENCH_MODELS))
    args = ap.parse_args(argv)
    for key in args.models.split(","):
        path = build_artifact(BENCH_MODELS[key], Path(args.out) / key)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
