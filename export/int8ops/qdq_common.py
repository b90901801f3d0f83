"""What the ONNX QDQ lowerings share: ONNX's rounding (half to even) of acc * scale in integers, and the
numpy references of it.

The ONNX form of an integer op is DequantizeLinear -> float op -> QuantizeLinear: y = saturate(
round_half_even(op(real inputs) / y_scale) + y_zero_point). For conv / matmul / add / mean the real result is
an exact integer accumulator times a ratio of scales, so the lowering computes round_half_even(acc * eff) with
a 62-bit fixed-point `eff` (requant.round_mul_params); `eff` is taken in float32 as onnxruntime's QDQ kernels
form it (x_scale * w_scale / y_scale). What onnxruntime itself does differs in one place: its fused integer
kernels multiply the float32 accumulator by the float32 multiplier (a rounding of the product to 24 bits
before the final round), so a result within ~2**-17 of a half integer may round the other way: 1 LSB, rarely
(measured on the demo classifier: 27 of 864 scores 1 LSB off, top-1 100 %; onnxruntime's fused and
unfused CPU routes differ from each other by 1 LSB on 36 of them; tests/riscv/test_byo_models.py).
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter, is_const, scalar, value


def eff_f32(*num_den) -> np.ndarray:
    """float32 x_scale * w_scale / y_scale (as onnxruntime computes its requantization multiplier)."""
    sx, sw, so = (np.asarray(v, np.float32) for v in num_den)
    return (sx * sw / so).astype(np.float32)


def out_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def rhe_shift(e: Emitter, v, shift):
    """round_half_even(v / 2**shift) of an int64 Relax tensor (shift >= 1, scalar or vector):
    floor((v + 2**(shift-1) - 1 + floor(v / 2**shift) mod 2) / 2**shift)."""
    op = e.op
    shift = np.asarray(shift, np.int64)
    half = (np.int64(1) << shift) >> 1
    odd = e(op.bitwise_and(op.right_shift(v, e.i64(shift)), e.i64(1)))
    return e(op.right_shift(op.add(op.add(v, e.i64(half - 1)), odd), e.i64(shift)))


def rhe_shift_np(v, shift):
    """numpy twin of rhe_shift."""
    v, shift = np.asarray(v, np.int64), np.asarray(shift, np.int64)
    half = (np.int64(1) << shift) >> 1
    return (v + half - 1 + ((v >> shift) & 1)) >> shift


def requant(e: Emitter, acc, mult, shift, zo: int, out_dtype: str):
    """int64 acc -> out_dtype: round_half_even(acc * mult / 2**shift) + zo, saturated."""
    op = e.op
    lo, hi = out_range(out_dtype)
    v = e(op.multiply(acc, e.i64(mult)))
    v = rhe_shift(e, v, shift)
    v = e(op.clip(op.add(v, e.i64(zo)), lo, hi))
    return op.astype(v, out_dtype)


def requant_np(acc, mult, shift, zo: int, out_dtype: str):
    lo, hi = out_range(out_dtype)
    return np.clip(rhe_shift_np(np.asarray(acc, np.int64) * mult, shift) + zo, lo, hi).astype(out_dtype)


def qparams(scale_expr, zp_expr) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor Quantize/DequantizeLinear, or None (per-channel, not constant)."""
    if not (is_const(scale_expr) and is_const(zp_expr)):
        return None
    try:
        return float(scalar(scale_expr)), int(scalar(zp_expr))
    except ValueError:
        return None


def as_int8(e: Emitter, x, zx: int):
    """(int8 tensor, zero point) holding the same real values as `x`: a uint8 activation (onnxruntime's default
    QUInt8) is shifted by -128 with its zero point, (x - zx) = ((x - 128) - (zx - 128)) exactly, so the int8 x
    int8 kernels serve both."""
    from .emit import dtype

    if dtype(x) == "int8":
        return x, zx
    op = e.op
    return e(op.astype(op.subtract(op.astype(x, "int16"), e.R.const(128, "int16")), "int8")), zx - 128


def lookup(x, table: np.ndarray):
    """Per-element lookup of an int8/uint8 tensor in its 256-entry table (table[v - min of the dtype])."""
    from .emit import dtype, table_lookup

    if dtype(x) == "int8":
        return table_lookup(x, table)
    e = Emitter()
    idx = e(e.op.astype(x, "int32"))
    return e.finish(e.op.take(e.R.const(np.asarray(table), str(np.asarray(table).dtype)), idx, axis=0))


def channel_vector(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along `axis` of an `ndim`-dimensional tensor."""
    v = np.asarray(v).reshape(-1)
    return v.reshape([-1] + [1] * (ndim - 1 - axis))


__all__ = ["eff_f32", "out_range", "rhe_shift", "rhe_shift_np", "requant", "requant_np", "qparams",
           "channel_vector", "value"]
