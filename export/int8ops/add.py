"""ADD and SUB: TFLite's left-shift-20 scheme with three multipliers (add.cc / sub.cc Prepare: both inputs
rescaled to twice the larger input scale, summed or subtracted, then rescaled to the output)."""

from __future__ import annotations

import functools

import numpy as np

from . import binary
from .emit import Emitter, mbqm, unary_table
from .registry import Lowering, register
from .requant import mbqm_short, quantize_multiplier

LEFT_SHIFT = 20


def params(s1: float, s2: float, so: float, left_shift: int = LEFT_SHIFT):
    """TFLite int8 ADD: multipliers and shifts of both inputs and of the output (add.cc Prepare)."""
    twice_max = 2.0 * max(np.float32(s1), np.float32(s2))
    m1 = quantize_multiplier(float(np.float32(s1)) / float(twice_max))
    m2 = quantize_multiplier(float(np.float32(s2)) / float(twice_max))
    mo = quantize_multiplier(float(twice_max) / float(np.float32((1 << left_shift) * np.float32(so))))
    return m1, m2, mo


def reference(va, vb, s1, z1, s2, z2, so, zo, subtract: bool = False, lo: int = -128, hi: int = 127):
    """numpy int8 ADD/SUB of TFLite's reference kernel (broadcasting as numpy does); [lo, hi] is the fused
    activation's clamp."""
    (m1, sh1), (m2, sh2), (mo, sho) = params(s1, s2, so)
    sa = mbqm_short((np.asarray(va, np.int64) - z1) << LEFT_SHIFT, m1, sh1)
    sb = mbqm_short((np.asarray(vb, np.int64) - z2) << LEFT_SHIFT, m2, sh2)
    return np.clip(mbqm_short(sa - sb if subtract else sa + sb, mo, sho) + zo, lo, hi)


def rewrite(m, p, subtract: bool = False):
    from tvm import relax

    op = relax.op
    found = binary.operands(m, p)
    if found is None:
        return None
    a, b, s1, z1, s2, z2, so, zo = found
    lo, hi = binary.activation_range(m, p, so, zo)
    lut = unary_table(a, b, lambda va, vb: reference(va, vb, s1, z1, s2, z2, so, zo, subtract, lo, hi))
    if lut is not None:
        return lut
    (m1, sh1), (m2, sh2), (mo, sho) = params(s1, s2, so)
    e = Emitter()

    def scaled(t, z, mult, sh):
        v = e(op.left_shift(op.subtract(op.astype(t, "int64"), e.i64(z)), e.i64(LEFT_SHIFT)))
        return mbqm(e, v, mult, sh)

    combine = op.subtract if subtract else op.add
    s = e(combine(scaled(a, z1, m1, sh1), scaled(b, z2, m2, sh2)))
    return e.finish(e.requant(s, mo, sho, zo, lo, hi))


ADD = register(Lowering("add", ("ADD",), lambda: binary.pattern("relax.add"), rewrite))
SUB = register(Lowering("subtract", ("SUB",), lambda: binary.pattern("relax.subtract"),
                        functools.partial(rewrite, subtract=True)))
