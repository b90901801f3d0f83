"""The RVV intrinsic requantization epilogue (export/sched_rvv_epilogue.py): the instruction sequence, as the RVV
spec defines each instruction, equals TFLite's MultiplyByQuantizedMultiplier + zero point + clamp (requant.py,
written after TFLite's reference code) on the int32 extremes, ties and random values; the rewrite applies to the
lowering's epilogue (with and without the ReLU shortcut) and leaves int64 parameter vectors alone; built kernels
are bit-exact with TFLite's reference kernels under QEMU (here one shape per path; every RVV tile of the benchmark
shapes in test_sched_rvv.py, whose builds all go through the rewrite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import needs_device
from .test_int8_ops import Case, _convert, _layers, _reference_case


def _want(x, mult, right, add, lo, hi):
    from cloudcover.export.int8ops.requant import multiply_by_quantized_multiplier

    return np.clip(multiply_by_quantized_multiplier(x, mult, -right) + add, lo, hi)


def test_instruction_sequence_equals_tflite_requantization():
    from cloudcover.export.sched_rvv_epilogue import requant_rvv

    rng = np.random.default_rng(0)
    i32 = np.iinfo(np.int32)
    edge = np.array([i32.min, i32.min + 1, -(1 << 30) - 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30,
                     i32.max - 1, i32.max], np.int64)
    x = np.concatenate([edge, rng.integers(i32.min, i32.max, 3000, endpoint=True),
                        rng.integers(-(1 << 16), 1 << 16, 3000)])
    for mult in (0, 1, 1 << 30, (1 << 30) + 1, (1 << 31) - 1, *rng.integers(1 << 30, 1 << 31, 4).tolist()):
        for right in range(1, 32):
            # ties of RoundingDivideByPOT: y = (2k + 1) * 2^(r-1) for both signs, reached with m = 2^30 (y = x / 2)
            for add, lo, hi in ((-128, -128, 127), (5, -128, 127), (-128, -128, 100), (3, -20, 127)):
                want = _want(x, mult, right, add, lo, hi)
                got = requant_rvv(x, 0, mult, right, add, lo, hi, relu=False)
                assert np.array_equal(got, want), (mult, right, add, x[got != want][:4])
            # the ReLU shortcut (no y - 1 for y < 0) where the clamp's lower bound is at or above the zero point
            for add, lo, hi in ((-128, -128, 127), (-5, 0, 127), (10, 10, 60)):
                want = _want(x, mult, right, add, lo, hi)
                got = requant_rvv(x, 0, mult, right, add, lo, hi, relu=True)
                assert np.array_equal(got, want), (mult, right, add, x[got != want][:4])


def test_ties_round_away_from_zero():
    """Hand-computed: m = 2^30 halves x (y = floor((x 2^30 + 2^30) / 2^31)), then r = 1 halves again."""
    from cloudcover.export.sched_rvv_epilogue import requant_rvv

    # x = 6: y = 3, 3 / 2 = 1.5 -> 2; x = -6: y = floor(-5 / 2) = -3, -1.5 -> -2; x = -5: y = -2, -1 -> -1
    got = requant_rvv([6, -6, -5, 10], 0, 1 << 30, 1, 0, -128, 127, relu=False)
    assert got.tolist() == [2, -2, -1, 3]
    # the bias is added in int32 before the multiply: 2 + 4 = 6 -> 2
    assert requant_rvv([2], [4], 1 << 30, 1, 0, -128, 127, relu=False).tolist() == [2]


def _kernel(tmp: Path, build, shape, tile: str):
    """The scheduled kernel of a one-layer model, its per-channel vectors narrowed as compile_model does."""
    from cloudcover.export import int8_lowering, lowering, narrow_consts, relax_import, schedules
    from cloudcover.export.schedules import Tile

    model = tmp / "m.tflite"
    _convert(Case("conv2d", build, shape), model)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=False, pads_alone=True)
    (name, _), = schedules.kernel_shapes(low).items()
    func = next(f for gv, f in low.functions.items() if gv.name_hint == name)
    func = schedules.schedule_func(func, True, lambda s: Tile.parse(tile))
    wide = func
    for i, p in enumerate(func.params):  # the requantization vectors (1-D int64 parameters)
        if len(p.ty.shape) == 1 and str(p.ty.dtype) == "int64":
            wide = narrow_consts.narrow_func(wide, i)
    return func, wide


def _relu6_conv(c):
    return lambda x: _layers().ReLU(6.0)(_layers().Conv2D(c, 1)(x))


def _dw_relu6(x):
    return _layers().ReLU(6.0)(_layers().DepthwiseConv2D(3, padding="same")(x))


def test_rewrite_applies_to_the_lowered_epilogue(tmp_path):
    from cloudcover.export.sched_rvv_epilogue import rewrite

    def relu6(x):
        return _layers().ReLU(6.0)(_layers().Conv2D(48, 1)(x))

    int64, narrowed = _kernel(tmp_path, relu6, (6, 6, 8), "1x48-rvv")
    assert rewrite(int64).same_as(int64)  # int64 parameter vectors: left to LLVM
    done = rewrite(narrowed)
    text = done.script()
    assert "llvm.riscv.vsmul" in text and "llvm.riscv.vnclip" in text
    assert "llvm.riscv.vsra" not in text  # ReLU6: z <= 0 clamps to the zero point, no y - 1 step
    assert text.count("llvm.vp.store") == 2  # 48 channels: 32 + 16 lanes
    assert "llvm.launder.invariant.group" not in text  # one pixel per tile: nothing to keep in the pixel loop

    linear = tmp_path / "linear"
    linear.mkdir()
    _, narrowed = _kernel(linear, lambda x: _layers().Conv2D(16, 1)(x), (6, 6, 24), "4x16u2-rvv")
    text = rewrite(narrowed).script()
    assert "llvm.riscv.vsra" in text and "llvm.riscv.vsadd" in text  # no activation: the y < 0 step stays

    dw = tmp_path / "dw"
    dw.mkdir()
    _, narrowed = _kernel(dw, _dw_relu6, (6, 6, 16), "2x16-dw")
    assert rewrite(narrowed).script().count("llvm.riscv.vsmul") == 1  # one 16-lane chunk in the pixel loop

    head = tmp_path / "head"
    head.mkdir()
    _, narrowed = _kernel(head, lambda x: _layers().GlobalAveragePooling2D()(_relu6_conv(64)(x)), (3, 3, 16),
                          "3x32-rvv")
    text = rewrite(narrowed).script()
    assert "llvm.vp.sext" in text and "llvm.riscv.vmin" in text  # int32 output: clamped at int16, widened
    assert text.count("llvm.launder.invariant.group") == 3  # 3 pixels x 32 channels: bias, multiplier, shift


# (id, case, tile): MobileNetV2's epilogue forms on small maps; inputs at both ends of the int8 range too
CASES = {
    "expand-relu6-48": (Case("conv2d", _relu6_conv(48), (6, 6, 8)), "1x48-rvv"),
    "project-linear-16": (Case("conv2d", lambda x: _layers().Conv2D(16, 1)(x), (6, 6, 48), "zp-128"), "4x16u2-rvv"),
    "dw-relu6-16": (Case("conv2d", _dw_relu6, (6, 6, 16), "zp127"), "2x16-dw"),
    # the last conv before the average pool stores int32 (the pool's widening cast fused into its epilogue)
    "head-relu6-64-avgpool": (Case("conv2d", lambda x: _layers().GlobalAveragePooling2D()(_relu6_conv(64)(x)),
                                   (3, 3, 16)), "3x32-rvv"),
}


@needs_device
@pytest.mark.parametrize("name", list(CASES))
def test_rewritten_kernels_are_bit_exact_with_tflite(name, tmp_path):
    from cloudcover.export import schedule_db

    from .test_sched_rvv import _build

    case, tile = CASES[name]
    model, x, ref = _reference_case(case, tmp_path)
    db = tmp_path / "db.json"
    schedule_db.save({"vector": {"*": tile}}, db)
    _, dev = _build(model, str(db), tmp_path / "build", x)
    diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() == 0, f"{name}: {int((diff > 0).sum())} values differ"
