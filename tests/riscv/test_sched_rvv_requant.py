"""The int32-lane requantization epilogue (export/sched_rvv_requant.py, tile variant "-rvvq"): its integer
rewrite equals TFLite's MultiplyByQuantizedMultiplier (requant.py, written after TFLite's reference code) on
hand-computed cases and on the int32 extremes; the "-rvvq" tile rewrites the conv epilogue and "-rvv" does not.
Built kernels are checked bit-exact under QEMU in test_sched_rvv.py (NARROW)."""

from __future__ import annotations

import numpy as np


def test_requant32_hand_cases():
    from cloudcover.export.sched_rvv_requant import requant32

    m = 1 << 30  # real multiplier 0.5 before the shift
    # acc 5: y = floor((5 * 2^30 + 2^30) / 2^31) = 3, then 3 / 2 = 1.5 rounds away from zero -> 2
    # acc -5: y = floor(-4 * 2^30 / 2^31) = -2, -2 / 2 = -1; acc -6: y = floor(-5 * 2^30 / 2^31) = -3, -1.5 -> -2
    assert requant32([5, -5, -6], 0, m, 1, 1).tolist() == [2, -1, -2]
    # the bias is added in int32 before the multiply: 1 + 4 = 5 -> 2 as above
    assert requant32([1], [4], m, 1, 1).tolist() == [2]


def test_requant32_equals_tflite_at_the_int32_extremes():
    from cloudcover.export.int8ops.requant import multiply_by_quantized_multiplier
    from cloudcover.export.sched_rvv_requant import requant32

    rng = np.random.default_rng(0)
    i32 = np.iinfo(np.int32)
    edge = np.array([i32.min, i32.min + 1, -(1 << 30) - 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30, i32.max - 1,
                     i32.max], np.int64)
    x = np.concatenate([edge, rng.integers(i32.min, i32.max, 4000, endpoint=True)])
    for mult in (0, 1, (1 << 30), (1 << 30) + 1, (1 << 31) - 1, *rng.integers(1 << 30, 1 << 31, 6).tolist()):
        for right in range(1, 32):
            half = 1 << (right - 1)
            want = multiply_by_quantized_multiplier(x, mult, -right)
            got = requant32(x, 0, mult, half, right)
            assert np.array_equal(got, want), (mult, right, x[got != want][:4])


def test_rvvq_and_dwq_tiles_schedule_as_their_plain_twins(tmp_path):
    """"-rvvq" / "-dwq" kernels are the "-rvv" / "-dw" kernels (the int32-lane epilogue is sched_rvv_epilogue's,
    applied at build time to both): same TIR apart from the recorded tile name."""
    from cloudcover.export.schedules import Tile

    from .test_int8_ops import Case
    from .test_sched_rvv import _conv, _dw

    for case, q_tile, plain_tile in ((Case("conv2d", _conv(32, 1, 1), (6, 6, 16)), Tile(2, 32, 1, "rvvq"),
                                      Tile(2, 32, 1, "rvv")),
                                     (Case("conv2d", _dw(1), (6, 6, 16)), Tile(2, 16, 1, "dwq"), Tile(2, 16, 1, "dw"))):
        _check_same(tmp_path / q_tile.variant, case, q_tile, plain_tile)


def _check_same(tmp_path, case, q_tile, plain_tile):
    import tvm_ffi

    from cloudcover.export import int8_lowering, lowering, relax_import, schedules

    from .test_int8_ops import _convert

    tmp_path.mkdir()
    model = tmp_path / "m.tflite"
    _convert(case, model)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=False, pads_alone=True)
    (name, _), = schedules.kernel_shapes(low).items()
    func = next(f for gv, f in low.functions.items() if gv.name_hint == name)
    q = schedules.schedule_func(func, True, lambda s: q_tile)
    plain = schedules.schedule_func(func, True, lambda s: plain_tile)
    assert str(q.attrs["cloudcover_tile"]) == q_tile.key()
    assert tvm_ffi.structural_equal(q.body, plain.body)
