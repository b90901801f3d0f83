"""Fixtures for the riscv deployment tests: a tiny trained int8 model in the export stage's ART_DIR layout.

The model has every operator kind the real edge models use (conv, depthwise conv, relu6, residual add,
global average pool, dense) at 32x32x3, is trained a few steps on seeded, separable data, and is converted
to full-int8 TFLite exactly as `cloudcover export` does, so the compile -> cross-build -> qemu chain can be
tested without running the training stage.
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


def make_artifacts(art: Path) -> Path:
    """Write model.keras, model_int8.tflite, testset.npz, quant.json and preprocess.json into `art`."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    art.mkdir(parents=True, exist_ok=True)
    x_train, y_train = separable_data(512, seed=1)
    x_test, y_test = separable_data(N_TEST, seed=2)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0)
    model.save(art / "model.keras")

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for i in range(64):
            yield [x_train[i : i + 1]]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (art / "model_int8.tflite").write_bytes(conv.convert())

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(art / "model_int8.tflite"))
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def q(d):
        s, z = d["quantization"]
        return {"shape": [int(v) for v in d["shape"]], "dtype": "int8", "scale": float(s), "zero_point": int(z)}

    (art / "quant.json").write_text(json.dumps({"input": q(i), "output": q(o), "class_names": CLASS_NAMES}, indent=1))
    (art / "preprocess.json").write_text(json.dumps({"class_names": CLASS_NAMES, "input_size": SIZE}))
    np.savez(art / "testset.npz", x=x_test, y=y_test, ids=np.array([f"t{k}" for k in range(N_TEST)]))
    return art


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """ART_DIR of the tiny model (built once per session; set CLOUDCOVER_TEST_ARTIFACTS to reuse one)."""
    reuse = os.environ.get("CLOUDCOVER_TEST_ARTIFACTS")
    if reuse and (Path(reuse) / "model_int8.tflite").is_file():
        return Path(reuse)
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


def have_cross_tools() -> bool:
    return shutil.which("riscv64-linux-gnu-gcc") is not None and shutil.which("qemu-riscv64") is not None


needs_device = pytest.mark.skipif(not have_cross_tools(),
                                  reason="riscv64 cross compiler / qemu-riscv64 missing (make setup installs them)")


@pytest.fixture(scope="session")
def compiled(artifacts, tmp_path_factory) -> Path:
    """A build root with model/{rv64gc,rv64gcv,host} compiled from the tiny model (the `cloudcover compile` layout)."""
    from cloudcover.export.compile import compile_model

    root = tmp_path_factory.mktemp("build")
    for target in ("rv64gc", "rv64gcv", "host"):
        compile_model(artifacts / "model_int8.tflite", target, root / "model" / target, log=lambda m: None)
    return root


@pytest.fixture(scope="session")
def riscv_built(compiled) -> Path:
    """The same build root after `make riscv-build`: riscv64/cloudcover-infer and cloudcover-infer-rv64gcv."""
    if not have_cross_tools():
        pytest.skip("riscv64 cross compiler / qemu-riscv64 missing (make setup installs them)")
    from cloudcover.riscv.toolchain import main

    assert main(["--build", str(compiled), "--targets", "rv64gc,rv64gcv"]) == 0
    return compiled
