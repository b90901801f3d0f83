"""HARD_SWISH: reference_ops::HardSwish, TFLite's int16 fixed-point x * relu6(x + 3) / 6, as a 256-entry table."""

from __future__ import annotations

import numpy as np

from .emit import table_lookup
from .lut import XS, unary_params
from .registry import Lowering, register
from .requant import quantize_multiplier


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int16 values."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    v = ab + nudge
    res = np.where(v >= 0, v >> 15, -((-v) >> 15))  # C division truncates toward zero
    return np.where((a == -(1 << 15)) & (b == -(1 << 15)), (1 << 15) - 1, res)


def _sdhm16(a, b):
    """SaturatingDoublingHighMul (no rounding: truncates toward zero)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    res = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == -(1 << 15)) & (b == -(1 << 15)), (1 << 15) - 1, res)


def _rdpot16(x, e: int):
    """gemmlowp RoundingDivideByPOT on int16: the mask (1 << e) - 1 is an int16 too, so for e >= 16 it wraps
    to -1 and the result is +1 for x >= 0, -1 for x < 0 (tiny scales of untrained layers reach that)."""
    x = np.asarray(x, np.int64)
    mask = np.int64(np.int16(np.uint16(((1 << e) - 1) & 0xFFFF)))
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return np.clip((x >> min(e, 63)) + (remainder > threshold), -(1 << 15), (1 << 15) - 1)


def _sat_left_shift16(x, amount: int):
    return np.clip(np.asarray(x, np.int64) * (1 << amount), -(1 << 15), (1 << 15) - 1)


def _to_int16_multiplier(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round the Q31 multiplier to Q15."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m32 + (1 << 15)) >> 16


def hard_swish_params(s_in: float, s_out: float) -> tuple[int, int, int, int]:
    """(output multiplier q15, exponent, reluish multiplier q15, exponent) as HardSwishPrepare computes them
    (the ratios in float32, then QuantizeMultiplier)."""
    hires = np.float32(1.0 / 128.0) * np.float32(s_in)
    out_m, out_e = quantize_multiplier(float(np.float32(hires / np.float32(s_out))))
    rel_m, rel_e = quantize_multiplier(float(np.float32(hires / np.float32(3.0 / 32768.0))))
    return _to_int16_multiplier(out_m), out_e, _to_int16_multiplier(rel_m), rel_e


def hard_swish_table(s_in, z_in, s_out, z_out) -> np.ndarray:
    out_m, out_e, rel_m, rel_e = hard_swish_params(s_in, s_out)
    if out_e > 0:
        raise ValueError(f"HARD_SWISH output multiplier exponent {out_e} > 0 (TFLite refuses it too)")
    hires = (XS - z_in) * (1 << 7)  # fits int16: |x - z| <= 255
    pre_out = _srdhm16(hires, out_m)
    rel = hires
    if rel_e > 0:
        rel = _sat_left_shift16(rel, rel_e - 1)
    rel = _srdhm16(rel, rel_m)
    if rel_e > 0:
        rel = _sat_left_shift16(rel, 1)
    if rel_e < 0:
        rel = _rdpot16(rel, -rel_e)
    rel = (rel + (1 << 15)) >> 1
    out = _rdpot16(_sdhm16(rel, pre_out), -out_e) + z_out
    return np.clip(out, -128, 127).astype(np.int8)


def _pattern():
    """The importer's x * relu6(x + 3) / 6 around dequantize/quantize."""
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    d = is_op("relax.dequantize")(x, sx, zx)
    relu6 = is_op("relax.clip")(is_op("relax.add")(d, is_const()), wildcard(), wildcard())
    hs = is_op("relax.divide")(is_op("relax.multiply")(d, relu6), is_const())
    q = is_op("relax.quantize")(hs, is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, relu6=relu6, q=q)


def _rewrite(m, p):
    found = unary_params(m, p)
    return None if found is None else table_lookup(found[0], hard_swish_table(*found[1]))


LOWERING = register(Lowering("hard_swish", ("HARD_SWISH",), _pattern, _rewrite))
