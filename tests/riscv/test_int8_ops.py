"""Golden tests of each integer lowering (export/int8ops/) against TFLite's reference kernels (BUILTIN_REF).

Each case builds a tiny Keras model around one operator, converts it to full int8 as `cloudcover export`
does, compiles it for the `host` target (the same kernels and C driver as the RISC-V builds), runs the
binary on random int8 inputs (plus the all -128 and all 127 images) and asserts 0 LSB against the
interpreter. The cases vary the shapes and the calibration range, which puts the input zero point at
-128 (non-negative data), 127 (non-positive data) or in between; weighted ops get per-channel scales from
the converter. The module's numpy reference is checked against the same interpreter where the model is the
operator alone. One case per operator runs in the fast suite; the other property cases are slow.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

N_IMAGES = 10
RANGES = {"zp-128": (0.0, 4.0), "zp127": (-4.0, 0.0), "mid": (-1.0, 3.0)}


@dataclass(frozen=True)
class Case:
    op: str  # the int8_ops key the lowering reports (None: already integer, nothing to rewrite)
    build: Callable  # keras input tensor -> output tensor
    shape: tuple[int, ...] = (6, 6, 3)
    data: str = "mid"  # calibration range (RANGES)
    # the oracle: TFLite's reference kernels, except where BUILTIN_REF has no kernel for an op that only
    # moves int8 values (TILE v3: Keras 3's UpSampling2D "nearest"); there the default kernels, which
    # cannot round differently when they only copy, are the oracle
    reference: bool = True


def _layers():
    from keras import layers

    return layers


def _tf():
    import tensorflow as tf

    return tf


def _conv(x, c=3, k=1):
    return _layers().Conv2D(c, k, padding="same")(x)


def _resize_v1(method: str, size, align_corners: bool):
    """tf.compat.v1 resize with align_corners (the TF2 API has no align-corners mode)."""
    import keras

    fn = (_tf().compat.v1.image.resize_nearest_neighbor if method == "nearest"
          else _tf().compat.v1.image.resize_bilinear)
    return keras.layers.Lambda(lambda t: fn(t, size, align_corners=align_corners))


CASES: dict[str, list[Case]] = {
    "pad": [Case(None, lambda x: _layers().ZeroPadding2D(((1, 2), (0, 1)))(x), data="zp-128"),
            Case(None, lambda x: _layers().ZeroPadding2D(((2, 0), (1, 1)))(x), (5, 7, 2), "zp127"),
            Case("conv2d", lambda x: _layers().ZeroPadding2D(1)(_conv(x, 4)), (4, 5, 3))],
    "max_pool": [Case(None, lambda x: _layers().MaxPooling2D(3, strides=2, padding="same")(x)),
                 Case(None, lambda x: _layers().MaxPooling2D(2)(x), (8, 6, 4), "zp-128")],
    "avg_pool": [Case("avg_pool2d", lambda x: _layers().AveragePooling2D(3, strides=2, padding="same")(x)),
                 Case("avg_pool2d", lambda x: _layers().AveragePooling2D(2, strides=1)(x), (5, 7, 2), "zp127"),
                 Case("avg_pool2d", lambda x: _layers().AveragePooling2D(3, strides=1, padding="same")(x),
                      (7, 5, 4), "zp-128")],
    "concat": [Case("concat", lambda x: _layers().Concatenate()([_conv(x, 3), x])),
               Case("concat", lambda x: _layers().Concatenate()([x, _conv(x, 2), _conv(x, 5)]), (4, 6, 2),
                    "zp-128")],
    "resize_nearest": [
        Case(None, lambda x: _layers().UpSampling2D(2, interpolation="nearest")(x), reference=False),  # TILE
        Case("resize_nearest", lambda x: _layers().Resizing(11, 7, interpolation="nearest")(x), (6, 5, 3)),
        Case("resize_nearest", lambda x: _resize_v1("nearest", (9, 10), True)(x), (4, 6, 2), "zp127"),
        Case("resize_nearest", lambda x: _resize_v1("nearest", (5, 3), False)(x), (7, 6, 2), "zp-128")],
    "resize_bilinear": [
        Case("resize_bilinear", lambda x: _layers().UpSampling2D(2, interpolation="bilinear")(x)),
        Case("resize_bilinear", lambda x: _layers().Resizing(11, 7, interpolation="bilinear")(x), (6, 5, 3),
             "zp-128"),
        Case("resize_bilinear", lambda x: _resize_v1("bilinear", (9, 10), True)(x), (4, 6, 2), "zp127"),
        Case("resize_bilinear", lambda x: _resize_v1("bilinear", (5, 3), False)(x), (7, 6, 2))],
    "hard_swish": [Case("hard_swish", lambda x: _layers().Activation("hard_swish")(x)),
                   Case("hard_swish", lambda x: _layers().Activation("hard_swish")(x), (3, 4, 5), "zp-128"),
                   Case("hard_swish", lambda x: _layers().Activation("hard_swish")(_conv(x, 4) * 8.0), (5, 5, 3),
                        "zp127"),
                   # scales ~1e-8 (an untrained MobileNetV3's squeeze-excite): int16 shifts past 15 bits
                   Case("hard_swish", lambda x: _layers().Activation("hard_swish")(x * 1e-6), (2, 3, 8))],
    "logistic": [Case("sigmoid", lambda x: _layers().Activation("sigmoid")(x)),
                 Case("sigmoid", lambda x: _layers().Activation("sigmoid")(x * 3.0), (3, 4, 5), "zp-128"),
                 Case("sigmoid", lambda x: _layers().Activation("sigmoid")(x), (5, 5, 3), "zp127")],
    "mean": [Case("mean", lambda x: _keepdims_mean(x)),
             Case("mean", lambda x: _layers().GlobalAveragePooling2D()(x), (5, 7, 4), "zp-128"),
             Case("mean", lambda x: _keepdims_mean(_conv(x, 5)), (7, 3, 3), "zp127")],
    "mul": [Case("multiply", lambda x: _layers().Multiply()([x, _conv(x)])),
            Case("multiply", lambda x: _layers().Multiply()([x, _keepdims_mean(x)]), (4, 5, 3), "zp-128"),
            Case("multiply", lambda x: _layers().ReLU()(_layers().Multiply()([x, _conv(x)])), (3, 4, 3))],
    "add": [Case("add", lambda x: _layers().Add()([x, _conv(x)])),
            Case("add", lambda x: _layers().Add()([x * 5.0, _conv(x)]), (3, 5, 3), "zp127"),
            # fused activations (ResNet's add + relu; relu6)
            Case("add", lambda x: _layers().ReLU()(_layers().Add()([x, _conv(x)])), (4, 4, 3)),
            Case("add", lambda x: _layers().ReLU(6.0)(_layers().Add()([x * 3.0, _conv(x)])), (4, 3, 3), "zp127")],
    "sub": [Case("subtract", lambda x: _layers().Subtract()([x, _conv(x)])),
            Case("subtract", lambda x: _layers().Subtract()([_conv(x), x * 0.25]), (5, 3, 3), "zp-128")],
    # the input feeds two concatenations of different ranges: the converter requantizes it (QUANTIZE int8->int8)
    "requantize": [Case("requantize", lambda x: _layers().Add()([_layers().Concatenate()([x, x * 10.0]),
                                                                _layers().Concatenate()([x * 0.1, x])]))],
    "maximum": [Case("maximum", lambda x: _layers().Maximum()([x, _conv(x)])),
                Case("minimum", lambda x: _layers().Minimum()([x, _conv(x)]), (4, 4, 3), "zp-128")],
}


def _keepdims_mean(x):
    import keras

    return keras.ops.mean(x, axis=(1, 2), keepdims=True)


def _convert(case: Case, path: Path) -> None:
    """Full-int8 TFLite as export/tflite_export.py converts (representative data in the case's range)."""
    import keras

    tf = _tf()
    keras.utils.set_random_seed(7)
    inp = keras.Input(case.shape)
    model = keras.Model(inp, case.build(inp))
    lo, hi = RANGES[case.data]
    rng = np.random.default_rng(11)
    rep = [rng.uniform(lo, hi, (1,) + case.shape).astype(np.float32) for _ in range(24)]
    rep[0][:] = lo  # the calibration sees both ends
    rep[1][:] = hi
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())


def _inputs(shape) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (N_IMAGES,) + shape).astype(np.int8)
    x[0], x[1] = -128, 127
    return x


def _reference(path: Path, x: np.ndarray, reference: bool = True) -> np.ndarray:
    from cloudcover.riscv.harness import tflite_run

    return tflite_run(path, x, reference=reference)[0]


def _reference_case(case: Case, tmp: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """`case` as an int8 TFLite file in `tmp`, its test inputs and TFLite's reference outputs, which must differ
    between inputs (else a 0 LSB match would mean nothing)."""
    model = tmp / "model_int8.tflite"
    _convert(case, model)
    x = _inputs(case.shape)
    ref = _reference(model, x)
    assert len({r.tobytes() for r in ref}) > 1
    return model, x, ref


def run_golden(case: Case, tmp: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(model.json, inputs, device outputs, BUILTIN_REF outputs) of the case compiled for `host`."""
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv.toolchain import build_infer

    model = tmp / "model_int8.tflite"
    _convert(case, model)
    info = compile_model(model, "host", tmp / "model", log=lambda m: None, compute="int8")
    exe = build_infer(tmp / "model", tmp / "cmake", "host")
    x = _inputs(case.shape)
    (tmp / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), "in.bin", "out.bin"], cwd=tmp, check=True, capture_output=True)
    dev = np.frombuffer((tmp / "out.bin").read_bytes(), np.int8).reshape(len(x), -1)
    return info, x, dev, _reference(model, x, case.reference)


def _check(case: Case, tmp: Path) -> None:
    info, _, dev, ref = run_golden(case, tmp)
    assert info["int8_compute"] is True and info["float_ops"] == [], info["float_ops"]
    if case.op is not None:
        assert info["int8_ops"].get(case.op, 0) >= 1, info["int8_ops"]
    assert len({r.tobytes() for r in ref}) > 1  # a real comparison: the outputs vary
    diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() == 0, f"{case.op}: {int((diff > 0).sum())} of {diff.size} values differ, max {diff.max()} LSB"


FAST = [(name, 0) for name in CASES]
SLOW = [(name, i) for name, cases in CASES.items() for i in range(1, len(cases))]


@pytest.mark.parametrize("name, i", FAST, ids=[n for n, _ in FAST])
def test_golden_first_case(name, i, tmp_path):
    _check(CASES[name][i], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name, i", SLOW, ids=[f"{n}-{i}" for n, i in SLOW])
def test_golden_property_cases(name, i, tmp_path):
    _check(CASES[name][i], tmp_path)


# ---- the modules' numpy references against the same oracle (models that are the operator alone) ------

def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _avg_pool_ref(k: int, s: int, same: bool):
    from cloudcover.export.int8ops import avg_pool

    def ref(x, q_in, q_out):
        (t, b), (l, r) = (_same_pads(x.shape[1], k, s), _same_pads(x.shape[2], k, s)) if same else ((0, 0), (0, 0))
        return avg_pool.reference(x, (k, k), (s, s), (t, l, b, r))

    return ref


def _resize_ref(kind: str, out_hw, align: bool, half: bool):
    from cloudcover.export.int8ops import resize

    fn = resize.reference_nearest if kind == "nearest" else resize.reference_bilinear
    return lambda x, q_in, q_out: fn(x, out_hw, align, half)


def _table_ref(name: str):
    from cloudcover.export.int8ops import hard_swish, logistic

    table = {"hard_swish": hard_swish.hard_swish_table, "logistic": logistic.logistic_table}[name]
    return lambda x, q_in, q_out: table(*q_in, *q_out)[x.astype(np.int64) + 128]


def _mean_ref(keepdims: bool):
    from cloudcover.export.int8ops import mean

    return lambda x, q_in, q_out: mean.reference(x, (1, 2), *q_in, *q_out, keepdims=keepdims)


def _pad_ref(pads):
    return lambda x, q_in, q_out: np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=q_in[1])


REFERENCES = {
    "pad-0": ("pad", 0, _pad_ref(((1, 2), (0, 1)))),
    "pad-1": ("pad", 1, _pad_ref(((2, 0), (1, 1)))),
    "avg_pool-0": ("avg_pool", 0, _avg_pool_ref(3, 2, True)),
    "avg_pool-1": ("avg_pool", 1, _avg_pool_ref(2, 1, False)),
    "avg_pool-2": ("avg_pool", 2, _avg_pool_ref(3, 1, True)),
    "nearest-1": ("resize_nearest", 1, _resize_ref("nearest", (11, 7), False, True)),
    "nearest-2": ("resize_nearest", 2, _resize_ref("nearest", (9, 10), True, False)),
    "nearest-3": ("resize_nearest", 3, _resize_ref("nearest", (5, 3), False, False)),
    "bilinear-0": ("resize_bilinear", 0, _resize_ref("bilinear", (12, 12), False, True)),
    "bilinear-1": ("resize_bilinear", 1, _resize_ref("bilinear", (11, 7), False, True)),
    "bilinear-2": ("resize_bilinear", 2, _resize_ref("bilinear", (9, 10), True, False)),
    "bilinear-3": ("resize_bilinear", 3, _resize_ref("bilinear", (5, 3), False, False)),
    "hard_swish-0": ("hard_swish", 0, _table_ref("hard_swish")),
    "hard_swish-1": ("hard_swish", 1, _table_ref("hard_swish")),
    "logistic-0": ("logistic", 0, _table_ref("logistic")),
    "logistic-2": ("logistic", 2, _table_ref("logistic")),
    "mean-0": ("mean", 0, _mean_ref(True)),
    "mean-1": ("mean", 1, _mean_ref(False)),
}


@pytest.mark.parametrize("key", sorted(REFERENCES))
def test_numpy_reference_matches_tflite(key, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    name, i, ref = REFERENCES[key]
    case = CASES[name][i]
    model = tmp_path / "model_int8.tflite"
    _convert(case, model)
    det = Interpreter(model_path=str(model))
    q_in = det.get_input_details()[0]["quantization"]
    q_out = det.get_output_details()[0]["quantization"]
    x = _inputs(case.shape)
    want = _reference(model, x).reshape(len(x), -1)
    got = np.concatenate([np.asarray(ref(x[k : k + 1], q_in, q_out)).reshape(1, -1) for k in range(len(x))])
    assert got.shape == want.shape
    assert np.array_equal(got.astype(np.int8), want), f"{key}: {int((got != want).sum())} values differ"


# ---- an operator without an integer lowering: a clear error, or the float route when asked -------------

def test_unlowered_operator_is_named(tmp_path, capsys):
    """TANH has no integer lowering: an int8 build refuses it naming the operator (no folder written);
    --compute float builds it on TVM's float route and says so."""
    from cloudcover.riscv.cli import main as cli_main

    case = Case(None, lambda x: _layers().Activation("tanh")(x))
    model = tmp_path / "model_int8.tflite"
    _convert(case, model)
    out = tmp_path / "out"
    assert cli_main(["compile", "--model", str(model), "--target", "host", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cloudcover compile: error:") and "no integer lowering for tanh" in err
    assert "--compute float" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert cli_main(["compile", "--model", str(model), "--target", "host", "--compute", "float", "--out", str(out)]) == 0
    assert "float route" in capsys.readouterr().out
    import json

    info = json.loads((out / "model.json").read_text())
    assert info["compute"] == "float" and info["int8_compute"] is False and info["float_ops"] == ["tanh"]


# ---- the new kernels on the RISC-V targets (the vector schedule differs from the host's) ---------------

def _all_new_ops(x):
    """pad, max/average pool, concatenation, nearest/bilinear resize, hard-swish, logistic, keepdims mean,
    broadcast multiply, add + relu in one small model."""
    L = _layers()
    y = L.ZeroPadding2D(1)(_conv(x, 4))
    y = L.Activation("hard_swish")(y)
    a = L.MaxPooling2D(3, strides=2, padding="same")(y)
    b = L.AveragePooling2D(3, strides=2, padding="same")(y)
    y = L.Concatenate()([a, b])
    y = L.Multiply()([y, L.Activation("sigmoid")(_keepdims_mean(y))])
    up = L.Resizing(8, 8, interpolation="nearest")(y)
    bi = L.Resizing(8, 8, interpolation="bilinear")(y)
    return L.ReLU()(L.Add()([up, bi]))


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.parametrize("target", ["rv64gc", "rv64gcv"])
def test_new_ops_under_qemu_are_bit_exact(target, tmp_path):
    from .conftest import have_cross_tools

    if not have_cross_tools():
        pytest.skip("riscv64 cross compiler / qemu-riscv64 missing (make setup installs them)")
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu
    from cloudcover.riscv.toolchain import build_infer

    case = Case(None, _all_new_ops, (6, 6, 3))
    model = tmp_path / "model_int8.tflite"
    _convert(case, model)
    info = compile_model(model, target, tmp_path / "model", log=lambda m: None, compute="int8")
    assert info["int8_compute"] is True
    assert {"avg_pool2d", "concat", "resize_nearest", "resize_bilinear", "hard_swish", "sigmoid"} <= set(info["int8_ops"])
    exe = build_infer(tmp_path / "model", tmp_path / "cmake", target)
    x = _inputs(case.shape)
    emu = qemu.find_emulator(prefer_plugin=target == "rv64gcv")  # QEMU 7.2 aborts on some RVV code
    res = qemu.run_infer(emu, exe, target, x.tobytes(), tmp_path / "run", count=False)
    dev = np.frombuffer(res.output, np.int8).reshape(len(x), -1)
    ref = _reference(model, x)
    assert len({r.tobytes() for r in ref}) > 1
    assert np.abs(dev.astype(np.int32) - ref.astype(np.int32)).max() == 0
