"""MUL: (a - za) * (b - zb) requantized with one multiplier in*in/out (reference_integer_ops::Mul)."""

from __future__ import annotations

import numpy as np

from . import binary
from .emit import Emitter, unary_table
from .registry import Lowering, register
from .requant import f32, mbqm_short, quantize_multiplier


def multiplier(s1: float, s2: float, so: float) -> tuple[int, int]:
    return quantize_multiplier(float(f32(s1) * f32(s2) / f32(so)))


def reference(va, vb, s1, z1, s2, z2, so, zo, lo: int = -128, hi: int = 127):
    """numpy int8 MUL of TFLite's reference kernel; [lo, hi] is the fused activation's clamp."""
    mult, sh = multiplier(s1, s2, so)
    prod = (np.asarray(va, np.int64) - z1) * (np.asarray(vb, np.int64) - z2)
    return np.clip(mbqm_short(prod, mult, sh) + zo, lo, hi)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    found = binary.operands(m, p)
    if found is None:
        return None
    a, b, s1, z1, s2, z2, so, zo = found
    lo, hi = binary.activation_range(m, p, so, zo)
    lut = unary_table(a, b, lambda va, vb: reference(va, vb, s1, z1, s2, z2, so, zo, lo, hi))
    if lut is not None:
        return lut
    mult, sh = multiplier(s1, s2, so)
    e = Emitter()
    va = e(op.subtract(op.astype(a, "int64"), e.i64(z1)))
    vb = e(op.subtract(op.astype(b, "int64"), e.i64(z2)))
    return e.finish(e.requant(e(op.multiply(va, vb)), mult, sh, zo, lo, hi))


LOWERING = register(Lowering("multiply", ("MUL",), lambda: binary.pattern("relax.multiply"), rewrite))
