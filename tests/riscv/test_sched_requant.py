"""The rv64gc requantization epilogue (export/sched_requant.py) is TFLite's double rounding, bit for bit.

The 5-op form is checked against the reference MultiplyByQuantizedMultiplier (requant.py: SRDHM then
RoundingDivideByPOT, written after gemmlowp, an implementation independent of the fold) on random and extreme
accumulators, multipliers at the edges QuantizeMultiplier can produce (2^30: an exact power-of-two ratio, where
the sign test moves by one; 2^31 - 1; 0) and every right shift 1..31; a hand-worked case pins the fold. Then a
MobileNetV2-like block (1x1 expand, depthwise 3x3, 1x1 project) compiled for rv64gc with the rewrite, run under
the plugin QEMU, equals TFLite's reference kernels with each kind of accumulator (int32, SWAR pixel/row pairs,
channel pairs: the bias is folded into its start; channel triples in 21-bit lanes: their offset folds into the
bias), and the rewrite is seen to have applied (not on rv64gcv). ReLU6 outputs take the floor form (no sign term,
the zero point is the clamp's floor) and every output the one-compare clamp branch; both are checked on numbers
(hand-built clamp expressions, the floor form against the double rounding) and in the QEMU runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudcover.export import sched_requant as sr
from cloudcover.export.int8ops import requant as rq

from .conftest import needs_device
from .test_int8_ops import Case, _convert, _inputs, _layers, _reference


def _check(acc, bias, mult, right):
    acc, bias, mult, right = np.broadcast_arrays(*(np.asarray(v, np.int64) for v in (acc, bias, mult, right)))
    half = (np.int64(1) << right) >> 1
    want = rq.multiply_by_quantized_multiplier(acc + bias, mult, -right)
    bias_d, k, mask, s = sr.derived(bias, mult, half, right)
    got = sr.requant5(acc, bias_d, mult, k, mask, s)
    bad = np.nonzero(want != got)[0]
    assert bad.size == 0, (f"{bad.size} differ, e.g. acc {acc[bad[0]]} bias {bias[bad[0]]} m {mult[bad[0]]} "
                           f"r {right[bad[0]]}: {got[bad[0]]} != {want[bad[0]]}")


def test_hand_worked_fold():
    # x = -3, m = 2^30 (0.5), r = 1: SRDHM gives floor((-3 * 2^30 + 2^30) / 2^31) = -1; RDPOT(-1, 1) = -1 / 2
    # rounded half away from zero = -1. Fold: t = -1, bias' = 1, x' = -2, k = 2^30 + 2^31 - 2^30 = 2^31,
    # (-2 * 2^30 + 2^31 - 2^31) >> 32 = -2^31 >> 32 = -1.
    bias_d, k, mask, s = sr.derived([0], [1 << 30], [1], [1])
    assert (int(bias_d[0]), int(k[0]), int(mask[0]), int(s[0])) == (1, 1 << 31, -(1 << 31), 32)
    assert int(sr.requant5([-3], bias_d, [1 << 30], k, mask, s)[0]) == -1
    assert int(rq.multiply_by_quantized_multiplier([-3], [1 << 30], [-1])[0]) == -1


@pytest.mark.parametrize("right", list(range(1, 32)))
def test_fold_equals_double_rounding(right):
    rng = np.random.default_rng(right)
    n = 20000
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[:2000] = 1 << 30
    mult[2000:2500] = (1 << 31) - 1
    mult[2500:3000] = 0
    mult[3000:3500] = rng.integers(1, 1 << 30, 500)  # not from QuantizeMultiplier, still exact
    bias = rng.integers(-(1 << 20), 1 << 20, n)
    acc = np.concatenate([rng.integers(-64, 64, n // 4) - bias[:n // 4],  # x near 0, where the signs matter
                          rng.integers(-(1 << 16), 1 << 16, n // 4),
                          rng.integers(-(1 << 30), 1 << 30, n // 4),
                          # ties: x * m a multiple of 2^(30 + r) away from the rounding points
                          ((rng.integers(-(1 << 12), 1 << 12, n - 3 * (n // 4)) << min(max(right - 1, 0), 17)))
                          - bias[3 * (n // 4):]])
    _check(acc, bias, mult, right)
    edges = np.array([-(1 << 31) + (1 << 20) + 1, (1 << 31) - (1 << 20) - 2, -1, 0, 1, -2])
    for m in (0, 1 << 30, (1 << 30) + 1, (1 << 31) - 1):
        _check(edges, 0, m, right)
        _check(edges - (1 << 20), 1 << 20, m, right)


@pytest.mark.parametrize("right", [1, 2, 7, 12, 20, 28])
def test_floor_form_equals_double_rounding_behind_a_zero_point_floor(right):
    """Without the sign term (ReLU / ReLU6 fused: the clamp's floor at or above the zero point) the output is
    the same for every accumulator: equal where the double rounding is >= 0, both at the floor where it is < 0."""
    rng = np.random.default_rng(100 + right)
    n = 20000
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[:2000] = 1 << 30
    mult[2000:2500] = (1 << 31) - 1
    mult[2500:3000] = 0
    bias = rng.integers(-(1 << 20), 1 << 20, n)
    acc = np.concatenate([rng.integers(-64, 64, n // 2) - bias[:n // 2],
                          rng.integers(-(1 << 30), 1 << 30, n - n // 2)])
    acc[:10] = [-(1 << 31) + (1 << 20) + 1, (1 << 31) - (1 << 20) - 2, 0, -1, 1, -2, 2, 3, -3, 4]
    half = (np.int64(1) << right) >> 1
    want = rq.multiply_by_quantized_multiplier(acc + bias, mult, -right)
    got = sr.requant_floor(acc, bias, mult, half, right)
    assert np.array_equal(got[want >= 0], want[want >= 0])
    assert (got[want < 0] <= 0).all() and (want < 0).any()
    for zp, lo, hi in ((-128, -128, 127), (-3, 0, 100), (5, 5, 127)):
        assert np.array_equal(np.clip(got + zp, lo, hi), np.clip(want + zp, lo, hi))


def test_output_clamp_and_floor_are_read_from_the_expression():
    """clamp(z - 128, -128, 127) cast to int8 (ReLU6 at the zero point): offset -128, range [-128, 127], a floor
    at the zero point; clamp(z + 3, -128, 127) (no activation) has none; a wrapping cast is refused."""
    from tvm import tirx

    z = tirx.Var("z", "int64")
    c = lambda v: tirx.const(v, "int64")  # noqa: E731
    relu = tirx.Max(tirx.Min(tirx.Cast("int8", tirx.Max(tirx.Min(z - c(128), c(127)), c(-128))),
                             tirx.const(127, "int8")), tirx.const(-128, "int8"))
    assert sr.output_clamp(relu, z) == (-128, -128, 127)
    assert sr.clamped_below_zero_point(relu, z)
    linear = tirx.Cast("int8", tirx.Max(tirx.Min(z + c(3), c(127)), c(-128)))
    assert sr.output_clamp(linear, z) == (3, -128, 127)
    assert not sr.clamped_below_zero_point(linear, z)
    assert sr.output_clamp(tirx.Cast("int8", tirx.Max(tirx.Min(z, c(300)), c(0))), z) is None
    assert sr.output_clamp(tirx.Cast("int8", z + c(1)), z) is None


def _mnv2_block(x):
    L = _layers()
    y = L.ReLU(6.0)(L.Conv2D(48, 1)(x))
    y = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(y))
    return L.Conv2D(8, 1)(y)


CASE = Case("conv2d", _mnv2_block, (10, 10, 8))


def _kernels(model: Path, vector: bool):
    from tvm import tirx

    from cloudcover.export import int8_lowering, lowering, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule="tuned", vector=vector)
    return {gv.name_hint: f for gv, f in low.functions.items() if isinstance(f, tirx.PrimFunc)}


def _rewritten(f) -> bool:
    from cloudcover.export.lowering import _count

    return _count(f.body, lambda n: getattr(n, "name", None) == "rq_k") > 0


def test_rewrite_applies_to_scalar_convs_only(tmp_path):
    model = tmp_path / "model_int8.tflite"
    _convert(CASE, model)
    scalar = {k for k, f in _kernels(model, False).items() if _rewritten(f)}
    assert sum(k.startswith("fused_conv2d") for k in scalar) == 3, sorted(scalar)
    assert not any(_rewritten(f) for f in _kernels(model, True).values())


@needs_device
def test_small_maps_keep_the_epilogue_with_the_branch_clamp_and_are_bit_exact(tmp_path):
    """On 3 x 3 maps the derived constants do not pay: the epilogue keeps its form, with the sign term dropped
    behind the ReLU6 floor and the clamp as one compare; equal to TFLite's reference kernels under QEMU."""
    from tvm import tirx

    from cloudcover.export.compile import compile_model
    from cloudcover.export.lowering import _count
    from cloudcover.riscv import qemu, toolchain

    case = Case("conv2d", _mnv2_block, (3, 3, 8))
    model = tmp_path / "model_int8.tflite"
    _convert(case, model)
    kernels = _kernels(model, False)
    convs = [f for k, f in kernels.items() if k.startswith("fused_conv2d")]
    assert len(convs) == 3 and not any(_rewritten(f) for f in convs)
    assert all(_count(f.body, lambda n: isinstance(n, tirx.IfThenElse)) > 0 for f in convs)
    x = _inputs(case.shape)
    ref = _reference(model, x)
    compile_model(model, "rv64gc", tmp_path / "model", log=lambda m: None, compute="int8")
    exe = toolchain.build_infer(tmp_path / "model", tmp_path / "cmake", "rv64gc")
    raw = qemu.run_infer(qemu.find_emulator(), exe, "rv64gc", x.tobytes(), tmp_path / "qemu", count=False).output
    assert np.array_equal(np.frombuffer(raw, np.int8).reshape(len(x), -1), ref.reshape(len(x), -1))


@needs_device
@pytest.mark.parametrize("star", [None, "2x4-swarc", "2x2-swarco", "2x4", "2x2-swar", "2x1-dw", "1x3-swar3"])
def test_rewritten_block_is_bit_exact_under_qemu(star, tmp_path):
    """Through every accumulator form the bias can start in: int32 (generic and one-row dw tiles), SWAR lanes of
    one channel (pixel pairs; the depthwise row pairs of the default) and of two channels (channel pairs)."""
    from cloudcover.export import schedule_db
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu, toolchain

    model = tmp_path / "model_int8.tflite"
    _convert(CASE, model)
    x = _inputs(CASE.shape)
    ref = _reference(model, x)
    assert len({r.tobytes() for r in ref}) > 1
    db = "tuned"
    if star is not None:
        db = str(tmp_path / "db.json")
        schedule_db.save({"scalar": {"*": star}}, db)
    info = compile_model(model, "rv64gc", tmp_path / "model", log=lambda m: None, compute="int8", schedules=db)
    assert info["int8_compute"]
    exe = toolchain.build_infer(tmp_path / "model", tmp_path / "cmake", "rv64gc")
    raw = qemu.run_infer(qemu.find_emulator(), exe, "rv64gc", x.tobytes(), tmp_path / "qemu", count=False).output
    dev = np.frombuffer(raw, np.int8).reshape(len(x), -1)
    assert np.array_equal(dev, ref.reshape(len(x), -1))
