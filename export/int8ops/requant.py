"""TFLite's fixed-point requantization math (quantization_util.cc, gemmlowp fixedpoint) as numpy references.

Every integer lowering ends in one of these; the Relax twins that emit the same arithmetic are in emit.py.
"""

from __future__ import annotations

import math

import numpy as np


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2**(shift - 31), m in [2**30, 2**31) (round half away from 0)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # std::round
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    res = np.where(v >= 0, v >> 31, -((-v) >> 31))  # C division truncates toward zero
    return np.where((a == -(1 << 31)) & (b == -(1 << 31)), (1 << 31) - 1, res)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2**exponent, rounding half away from zero."""
    x, e = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def multiply_by_quantized_multiplier(x, mult, shift):
    """TFLite MultiplyByQuantizedMultiplier (the double-rounding form the reference kernels use)."""
    shift = np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(np.asarray(x, np.int64) << left, mult), right)


def mbqm_short(x, mult, shift):
    """numpy twin of emit.mbqm: MultiplyByQuantizedMultiplier in 3 + 4 integer ops, equal to
    `multiply_by_quantized_multiplier` for every int32 x and multiplier 0 <= mult < 2**31:
    - SaturatingRoundingDoublingHighMul: trunc((x*m + nudge) / 2**31) with nudge 2**30 or 1 - 2**30 is
      floor((x*m + 2**30) / 2**31) in both signs (for x*m < 0, adding 2**31 - 1 before the floor turns the
      truncation into a floor and the two nudges differ by exactly that); it saturates only for
      m == -2**31, which QuantizeMultiplier never produces;
    - RoundingDivideByPOT by e >= 1 (half away from zero): floor((x + 2**(e-1) - [x < 0]) / 2**e)."""
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = (np.asarray(x, np.int64) << left) * mult
    x = (x + (1 << 30)) >> 31
    half, g = (np.int64(1) << right) >> 1, -(right > 0).astype(np.int64)  # g: all ones where right > 0
    return (x + half + ((x >> 63) & g)) >> right


def mean_multiplier(mult: int, shift: int, n: int) -> tuple[int, int]:
    """QuantizedMeanOrSum folds 1/n into the multiplier (reference reduce.h)."""
    s = min(63 - (64 - int(n).bit_length()) if n else 0, 32, 31 + shift)  # 63 - clz(n) = floor(log2 n)
    return int((mult << s) // n), shift - s


def round_mul_params(eff, acc_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (mult, shift) per channel so that round(acc * mult / 2**shift) reproduces TFLite's double
    round(acc * eff) for |acc| < acc_bound: mult keeps 62 - log2(acc_bound) bits, so acc * mult fits int64
    (exact unless acc * eff lies within ~2**-40 relative of a half-integer)."""
    eff = np.atleast_1d(np.asarray(eff, np.float64))
    bits = 62 - int(acc_bound).bit_length()
    shift = np.array([min(bits - 1 - math.frexp(v)[1], 62) if v > 0 else 1 for v in eff], np.int64)
    mult = np.array([int(round(v * 2.0 ** int(k))) for v, k in zip(eff, shift)], np.int64)
    return mult, np.maximum(shift, 1)


def round_mul(acc, mult, shift):
    """numpy reference of the rounding used with round_mul_params (half away from zero)."""
    v = np.asarray(acc, np.int64) * mult
    half = np.int64(1) << (shift - 1)
    return np.where(v >= 0, (v + half) >> shift, -((-v + half) >> shift))


def f32(x) -> np.float64:
    """A scale as TFLite holds it (float32), widened to double for the multiplier arithmetic."""
    return np.float64(np.float32(x))


def rescale_multiplier(s_in: float, s_out: float) -> tuple[int, int]:
    """QuantizeMultiplier(double(in scale) / double(out scale)), the requantization of a plain rescale."""
    return quantize_multiplier(float(f32(s_in) / f32(s_out)))


def requantize(x, s_in: float, z_in: int, s_out: float, z_out: int):
    """int8 -> int8 rescale as TFLite's Requantize (concatenation with different scales):
    clamp(MultiplyByQuantizedMultiplier(x - z_in, m, s) + z_out)."""
    m, s = rescale_multiplier(s_in, s_out)
    v = multiply_by_quantized_multiplier(np.asarray(x, np.int64) - z_in, m, s) + z_out
    return np.clip(v, -128, 127).astype(np.int8)
