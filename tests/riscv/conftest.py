"""Fixtures for the riscv deployment tests: a tiny trained int8 model, exported by `cloudcover export` itself.

The model has every operator kind the real edge models use (conv, depthwise conv, relu6, residual add,
global average pool, dense) at 32x32x3 and is trained a few steps on seeded, separable data written as a
dataset. It is then exported by the real `cloudcover export` and compiled by the real `cloudcover compile`,
so these tests consume exactly what the upstream stage hands over (the export -> compile contract), not a
conversion of their own. (tests/test_end_to_end.py runs the whole chain from `cloudcover data prepare` on.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = ["clear", "thin", "thick"]
SIZE = 32
N_TEST = 100


def separable_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels 0..255 (float32 NHWC); the class is the brightness of a noisy image (clear < thin < thick)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASS_NAMES), n)
    base = np.array([50.0, 130.0, 210.0])[y][:, None, None, None]
    tint = rng.normal(0, 1, (n, 1, 1, 3)) * 10
    x = base + tint + rng.normal(0, 25, (n, SIZE, SIZE, 3))
    return np.clip(x, 0, 255).astype(np.float32), y.astype(np.int64)


def build_model():
    import keras
    from keras import layers

    inp = keras.Input((SIZE, SIZE, 3), name="input")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    y = layers.ReLU(6.0)(y)
    y = layers.Conv2D(8, 1)(y)
    x = layers.Add()([x, y])
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(len(CLASS_NAMES), name="logits")(x)
    return keras.Model(inp, out)


BINS = [0.0, 33.0, 66.0, 100.0]  # dataset.json needs coverage edges; the classes here are brightness levels


def write_dataset(root: Path) -> Path:
    """The separable data as a dataset in `cloudcover data prepare`'s format (PNGs, manifest.csv, dataset.json),
    so that `cloudcover export` reads its calibration and test images the way it reads any dataset."""
    import csv

    from PIL import Image

    rows = []
    for split, n, seed in (("train", 512, 1), ("test", N_TEST, 2)):
        x, y = separable_data(n, seed=seed)
        (root / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            pid = f"{split}_{k:04d}"
            Image.fromarray(np.round(x[k]).astype(np.uint8)).save(root / split / f"{pid}.png")
            rows.append({"patch_id": pid, "roi": f"roi{k % 5}", "image": f"{split}/{pid}.png", "mask": "",
                         "coverage_pct": "0.00", "shadow_pct": "0.00", "label": CLASS_NAMES[y[k]], "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "dataset.json").write_text(json.dumps({"classes": CLASS_NAMES, "bins": BINS, "size": SIZE,
                                                   "source": "tests/riscv separable data"}))
    return root


def make_run(root: Path) -> Path:
    """A run folder as `cloudcover train` leaves it (model.keras + preprocess.json naming the dataset), holding the
    op-zoo model above trained a few steps on the dataset's train split."""
    import keras

    from cloudcover.train.preprocess import Preprocess, load_split

    data = write_dataset(root / "dataset")
    pre = Preprocess(input_size=SIZE, bands=3, mean=[127.5] * 3, std=[127.5] * 3, class_names=CLASS_NAMES,
                     bins=BINS, model="op_zoo", data_dir=str(data))
    keras.utils.set_random_seed(0)
    x_train, y_train, _ = load_split(data, "train", pre)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0)
    run = root / "run"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    pre.save(run)
    return run


def make_artifacts(art: Path) -> Path:
    """ART_DIR as `cloudcover export` writes it for the op-zoo run: the real upstream artifact of the compile stage
    (model_int8.tflite, quant.json, testset.npz, preprocess.json, model.keras, ONNX files, parity report)."""
    from cloudcover.riscv.cli import main

    run = make_run(art.parent / "src")
    assert main(["export", "--run", str(run), "--out", str(art), "--calib-samples", "64"]) == 0
    return art


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """ART_DIR of the tiny model (built once per session; set CLOUDCOVER_TEST_ARTIFACTS to reuse one)."""
    reuse = os.environ.get("CLOUDCOVER_TEST_ARTIFACTS")
    if reuse and (Path(reuse) / "model_int8.tflite").is_file():
        return Path(reuse)
    return make_artifacts(tmp_path_factory.mktemp("artifacts") / "art")


def have_cross_tools() -> bool:
    return shutil.which("riscv64-linux-gnu-gcc") is not None and shutil.which("qemu-riscv64") is not None


needs_device = pytest.mark.skipif(not have_cross_tools(),
                                  reason="riscv64 cross compiler / qemu-riscv64 missing (make setup installs them)")


@pytest.fixture(scope="session")
def compiled(artifacts, tmp_path_factory) -> Path:
    """A build root with model/{rv64gc,rv64gcv,host}: `cloudcover compile` of the exported tiny model."""
    from cloudcover.riscv.cli import main

    root = tmp_path_factory.mktemp("build")
    for target in ("rv64gc", "rv64gcv", "host"):
        out = root / "model" / target
        assert main(["compile", "--model", str(artifacts / "model_int8.tflite"), "--target", target,
                     "--out", str(out)]) == 0
    return root


@pytest.fixture(scope="session")
def riscv_built(compiled) -> Path:
    """The same build root after `make riscv-build`: riscv64/cloudcover-infer and cloudcover-infer-rv64gcv."""
    if not have_cross_tools():
        pytest.skip("riscv64 cross compiler / qemu-riscv64 missing (make setup installs them)")
    from cloudcover.riscv.toolchain import main

    assert main(["--build", str(compiled), "--targets", "rv64gc,rv64gcv"]) == 0
    return compiled
