"""The int8 lowering (export/int8_lowering.py, export/int8ops/): TFLite's quantization math, no float left in any kernel, and
0 LSB against TFLite's reference kernels (BUILTIN_REF) on the host build and under qemu-riscv64."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cloudcover.export import int8_lowering as il
from cloudcover.export.int8ops import requant as rq

from .conftest import needs_device, separable_data


# ---- pure quantization math against known TFLite values ----------------------------------------------


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.75, (1610612736, 0)),
    (0.25, (1 << 30, -1)),
    (2.0 ** -40, (0, 0)),  # below 2**-31: TFLite flushes to zero
    (1 - 2.0 ** -33, (1 << 30, 1)),  # rounds up to 2**31: halved, shift + 1
    (0.1, (1717986918, -3)),
])
def test_quantize_multiplier(real, expected):
    assert rq.quantize_multiplier(real) == expected


def test_fixed_point_primitives():
    # gemmlowp: SaturatingRoundingDoublingHighMul rounds half away from zero, saturates only INT32_MIN^2
    # x * 0.5: 50.5 -> 51 but -50.5 -> -50 (the nudge is 1 - 2**30 for negatives)
    assert rq.srdhm(100, 1 << 30) == 50 and rq.srdhm(101, 1 << 30) == 51 and rq.srdhm(-101, 1 << 30) == -50
    assert rq.srdhm(-(1 << 31), -(1 << 31)) == (1 << 31) - 1
    assert list(rq.rounding_divide_by_pot([5, -5, 6, -6, 7, -7], 1)) == [3, -3, 3, -3, 4, -4]
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, 2000)
    for real in (0.0037, 0.51, 1.7, 3.0e-5):
        m, s = rq.quantize_multiplier(real)
        got = rq.multiply_by_quantized_multiplier(x, m, s)
        assert np.abs(got - x * real).max() <= 1.0  # within rounding of the exact product


def test_mean_multiplier_folds_one_over_n():
    m, s = rq.quantize_multiplier(0.8)
    m2, s2 = rq.mean_multiplier(m, s, 64)  # n = 2**6: exact
    assert (m2, s2) == (m, s - 6)
    m3, s3 = rq.mean_multiplier(m, s, 49)  # shift = floor(log2 49) = 5
    assert s3 == s - 5 and m3 == (m << 5) // 49


def test_round_mul_matches_tflite_double_requant():
    """Reference FULLY_CONNECTED: round(double(acc) * in*w/out), e.g. 0.498 -> 0 where the integer
    MultiplyByQuantizedMultiplier double-rounds to 1 (seen on a real model)."""
    eff = np.float64(np.float32(0.0220)) * np.array([0.00308677, 0.00323138], np.float64) / np.float64(np.float32(0.33))
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-(1 << 19), 1 << 19, 5000), [0, 1, -1, 210, -210]])
    mult, shift = rq.round_mul_params(eff, 1 << 19)
    for c in range(2):
        expect = np.sign(acc * eff[c]) * np.floor(np.abs(acc * eff[c]) + 0.5)  # C round()
        assert np.array_equal(rq.round_mul(acc, mult[c], shift[c]), expect.astype(np.int64))


# ---- models -------------------------------------------------------------------------------------------


def _mobilenet_like():
    """Two MobileNetV2 inverted-residual blocks (expand 1x1, ZeroPadding + stride-2 depthwise, project, residual)."""
    import keras
    from keras import layers

    def block(x, expand, out, stride):
        y = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(expand, 1, use_bias=False)(x)))
        if stride == 2:
            y = layers.ZeroPadding2D(((0, 1), (0, 1)))(y)
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same" if stride == 1 else "valid", use_bias=False)(y)
        y = layers.ReLU(6.0)(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(out, 1, use_bias=False)(y))
        return layers.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y

    inp = keras.Input((32, 32, 3))
    # Per-channel normalization, the first layer of every cloudcover model: TFLite SUB and MUL by vectors.
    x = layers.Normalization(mean=[120.0, 125.0, 130.0], variance=[3600.0, 2500.0, 4900.0])(inp)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)))
    x = block(x, 24, 8, 1)
    x = block(x, 24, 12, 2)
    x = block(x, 36, 12, 1)
    x = layers.ReLU(6.0)(layers.Conv2D(32, 1)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(3)(x))


@pytest.fixture(scope="module")
def mobilenet_art(tmp_path_factory) -> Path:
    """A small trained MobileNetV2-like full-int8 model, in the ART_DIR layout of conftest."""
    import keras
    import tensorflow as tf

    from .conftest import CLASS_NAMES

    art = tmp_path_factory.mktemp("mnv2like")
    keras.utils.set_random_seed(1)
    x, y = separable_data(256, seed=3)
    m = _mobilenet_like()
    m.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False,
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, batch_size=32, epochs=2, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(48))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (art / "model_int8.tflite").write_bytes(conv.convert())
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(art / "model_int8.tflite"))
    s, z = it.get_input_details()[0]["quantization"]
    (art / "quant.json").write_text(json.dumps({"input": {"scale": float(s), "zero_point": int(z)},
                                                "output": None, "class_names": CLASS_NAMES}))
    xt, yt = separable_data(40, seed=4)
    np.savez(art / "testset.npz", x=xt, y=yt)
    return art


def _inputs(art: Path) -> np.ndarray:
    """The test split quantized as the harness does, plus a few uniform-random int8 images (corner cases)."""
    from cloudcover.riscv.harness import Artifacts

    xq = Artifacts.load(art).int8_inputs()
    rnd = np.random.default_rng(5).integers(-128, 128, (4,) + xq.shape[1:]).astype(np.int8)
    return np.concatenate([xq, rnd])


def _reference(art: Path, xq: np.ndarray) -> np.ndarray:
    from cloudcover.riscv.harness import tflite_run

    return tflite_run(art / "model_int8.tflite", xq, reference=True)[0]


def _script_dtypes(kernels) -> dict[str, set[str]]:
    """Every dtype named in each TIR PrimFunc's TVMScript (buffer parameters, allocations, casts, literals
    such as T.float32(0.5)): a text reading, independent of the IR visitor that compile.py uses."""
    import re

    seen: dict[str, set[str]] = {}
    for gv, f in kernels.functions.items():
        dts = {str(p.dtype) for p in f.params if hasattr(p, "dtype")}
        for a, b in re.findall(r'"((?:b?float|u?int|bool)\d*)"|T\.((?:b?float|u?int)\d+)\b', f.script()):
            dts.add(a or b)
        seen[gv.name_hint] = dts
    return seen


def _script_floats(kernels) -> dict[str, set[str]]:
    return {k: {d for d in v if "float" in d} for k, v in _script_dtypes(kernels).items() if any("float" in d for d in v)}


def _kernel_dtypes(model: Path) -> tuple[dict[str, int], dict[str, set[str]], dict[str, set[str]]]:
    """Rewrite counts, the dtypes each lowered kernel's script names, and the IR visitor's float dtypes."""
    from cloudcover.export import lowering, relax_import

    mod, counts = il.lower_int8(relax_import.import_model(model))
    kernels = lowering.kernel_module(lowering.lower(mod))
    return counts, _script_dtypes(kernels), il.kernel_float_dtypes(kernels)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
def test_no_float_in_any_kernel(which, artifacts, mobilenet_art):
    art = artifacts if which == "tiny" else mobilenet_art
    counts, seen, visited = _kernel_dtypes(art / "model_int8.tflite")
    assert counts.get("conv2d", 0) >= 4 and counts.get("matmul") == 1 and counts.get("add", 0) >= 1, counts
    if which == "mobilenet":
        assert counts.get("subtract") == 1 and counts.get("multiply") == 1, counts  # the Normalization layer
    assert {"int8", "int32"} <= set().union(*seen.values())  # the parser sees the dtypes
    floats = {k: sorted(d for d in v if "float" in d) for k, v in seen.items() if any("float" in d for d in v)}
    assert not floats, f"float left in kernels: {floats}"
    assert visited == {}  # the IR visitor agrees with the text reading


def _compile_and_run_host(art: Path, out: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv.toolchain import build_infer

    info = compile_model(art / "model_int8.tflite", "host", out / "model", log=lambda m: None, compute="int8")
    exe = build_infer(out / "model", out / "cmake", "host")
    xq = _inputs(art)
    (out / "in.bin").write_bytes(xq.tobytes())
    subprocess.run([str(exe), "in.bin", "out.bin"], cwd=out, check=True, capture_output=True)
    dev = np.frombuffer((out / "out.bin").read_bytes(), np.int8).reshape(len(xq), -1)
    return info, dev, _reference(art, xq)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
def test_host_build_is_bit_exact(which, artifacts, mobilenet_art, tmp_path):
    art = artifacts if which == "tiny" else mobilenet_art
    info, dev, ref = _compile_and_run_host(art, tmp_path)
    assert info["compute"] == "int8" and info["int8_compute"] is True and info["float_ops"] == []
    assert info["weights_dtypes"] and not any("float" in d for d in info["weights_dtypes"])
    assert len({r.tobytes() for r in ref}) > 1  # the outputs are not all the same (a real comparison)
    assert np.abs(dev.astype(np.int32) - ref.astype(np.int32)).max() == 0


@pytest.mark.slow
@pytest.mark.device
@needs_device
def test_rv64gc_under_qemu_is_bit_exact(artifacts, tmp_path):
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu
    from cloudcover.riscv.toolchain import build_infer

    compile_model(artifacts / "model_int8.tflite", "rv64gc", tmp_path / "model", log=lambda m: None, compute="int8")
    exe = build_infer(tmp_path / "model", tmp_path / "cmake", "rv64gc")
    xq = _inputs(artifacts)[:24]
    res = qemu.run_infer(qemu.find_emulator(prefer_plugin=False), exe, "rv64gc", xq.tobytes(), tmp_path / "run",
                         count=False)
    dev = np.frombuffer(res.output, np.int8).reshape(len(xq), -1)
    assert np.abs(dev.astype(np.int32) - _reference(artifacts, xq).astype(np.int32)).max() == 0


@pytest.mark.slow
def test_float_route_is_reported(artifacts):
    """Without the int8 pass every quantized op stays float: float_ops names them (model.json's truth)."""
    from cloudcover.export import relax_import

    from cloudcover.export import lowering

    mod = relax_import.import_model(artifacts / "model_int8.tflite")
    assert {"nn.conv2d", "matmul", "mean"} <= set(il.float_ops(mod))
    assert il.float_ops(il.lower_int8(mod)[0]) == []
    # on the float route the IR visitor finds float in the same kernels as the script text does
    kernels = lowering.kernel_module(lowering.lower(mod, schedule=False))
    visited = il.kernel_float_dtypes(kernels)
    assert visited and visited == _script_floats(kernels)
    assert not il.int8_compute(kernels)


def test_short_requantization_equals_gemmlowp():
    """The 7-op MultiplyByQuantizedMultiplier the Relax lowering emits (`mbqm_short`) equals the step-by-step
    gemmlowp form on int32 inputs, including the rounding ties and the int32 extremes."""
    rng = np.random.default_rng(3)
    ties = [k * (1 << 20) + d for k in range(-4, 5) for d in (-1, 0, 1)]
    x = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 20000), [0, 1, -1, (1 << 31) - 1, -(1 << 31)], ties])
    for real in (0.0037, 0.51, 0.9999, 1.7, 3.0e-5, 2.0 ** -20, 0.25, 11.0):
        m, s = rq.quantize_multiplier(real)
        xs = x if s <= 0 else np.clip(x, -(1 << (31 - s)), (1 << (31 - s)) - 1)  # TFLite: x << s stays int32
        assert np.array_equal(rq.mbqm_short(xs, m, s), rq.multiply_by_quantized_multiplier(xs, m, s)), real
    ms = [rq.quantize_multiplier(r) for r in (0.003, 0.04, 0.5, 0.7)]  # per-channel vectors
    xv = rng.integers(-(1 << 24), 1 << 24, (500, 4))
    mult, shift = np.array([a for a, _ in ms]), np.array([b for _, b in ms])
    assert np.array_equal(rq.mbqm_short(xv, mult, shift), rq.multiply_by_quantized_multiplier(xv, mult, shift))


def test_dense_rounding_short_form_equals_round_mul():
    """Dense requantization: floor((v + 2**(s-1) - [v < 0]) / 2**s) is round_mul's half-away-from-zero."""
    rng = np.random.default_rng(4)
    eff = np.array([0.00021, 0.0173, 0.5])
    mult, shift = rq.round_mul_params(eff, 1 << 20)
    acc = np.concatenate([rng.integers(-(1 << 20), 1 << 20, (3000, 3)), [[0, 0, 0], [1, -1, 7], [-7, 3, -3]]])
    v = acc * mult
    short = (v + (np.int64(1) << (shift - 1)) + (v >> 63)) >> shift
    assert np.array_equal(short, rq.round_mul(acc, mult, shift))
