"""The table family (export/sched_table.py) never changes a result: a model's input Rescaling + Normalization
(the elementwise int8 -> int8 kernel the benchmark models start with) compiled for rv64gc becomes a table
kernel, and under the plugin QEMU it equals TFLite's reference kernels on images holding every int8 value in
every channel (so every table entry is checked), plus random images. Which kernels it takes is checked without a
build: not a conv, not on rv64gcv, not a tensor too small for the table to pay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .conftest import needs_device
from .test_int8_ops import Case, _convert, _layers, _reference


def _normalized_conv(x):
    L = _layers()
    y = L.Rescaling(1 / 127.5, -1.0)(x)
    y = L.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 0.8, 1.3])(y)
    return L.Conv2D(8, 1)(y)


CASE = Case("conv2d", _normalized_conv, (32, 32, 3))
SMALL = Case("conv2d", _normalized_conv, (8, 8, 3))  # 64 elements per channel: fewer than the table's 256


def _tiles(model: Path, vector: bool) -> dict[str, str]:
    from tvm import tirx

    from cloudcover.export import int8_lowering, lowering, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule="tuned", vector=vector)
    return {gv.name_hint: str(f.attrs.get("cloudcover_tile", "")) if f.attrs is not None else ""
            for gv, f in low.functions.items() if isinstance(f, tirx.PrimFunc)}


def test_family_takes_the_elementwise_input_kernel_only(tmp_path):
    model = tmp_path / "model_int8.tflite"
    _convert(CASE, model)
    scalar = _tiles(model, False)
    luts = [k for k, t in scalar.items() if t == "lut"]
    assert len(luts) == 1 and not luts[0].startswith("fused_conv2d"), scalar
    assert "lut" not in _tiles(model, True).values()
    small = tmp_path / "small.tflite"
    _convert(SMALL, small)
    assert "lut" not in _tiles(small, False).values()


def _every_value(shape) -> np.ndarray:
    """Images whose pixels run through all 256 int8 values in each channel, then random ones."""
    h, w, c = shape
    ramp = (np.arange(h * w) % 256 - 128).astype(np.int8).reshape(h, w)
    x = np.stack([np.stack([np.roll(ramp, 37 * j) for j in range(c)], -1), np.stack([ramp] * c, -1)])
    rng = np.random.default_rng(3)
    return np.concatenate([x, rng.integers(-128, 128, (2, h, w, c)).astype(np.int8)])


@needs_device
def test_table_kernel_is_bit_exact_under_qemu(tmp_path):
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu, toolchain

    model = tmp_path / "model_int8.tflite"
    _convert(CASE, model)
    x = _every_value(CASE.shape)
    ref = _reference(model, x)
    info = compile_model(model, "rv64gc", tmp_path / "model", log=lambda m: None, compute="int8")
    assert info["int8_compute"]
    exe = toolchain.build_infer(tmp_path / "model", tmp_path / "cmake", "rv64gc")
    raw = qemu.run_infer(qemu.find_emulator(), exe, "rv64gc", x.tobytes(), tmp_path / "qemu", count=False).output
    dev = np.frombuffer(raw, np.int8).reshape(len(x), -1)
    assert np.array_equal(dev, ref.reshape(len(x), -1))
