"""MEAN (keepdims=False, e.g. global average pooling): TFLite's QuantizedMeanOrSum, 1/n folded into the
multiplier (reference reduce.h)."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, scalar, shape
from .registry import Lowering, register
from .requant import mbqm_short, mean_multiplier, rescale_multiplier


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    mean = is_op("relax.mean")(is_op("relax.dequantize")(x, sx, zx))
    q = is_op("relax.quantize")(mean, is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, mean=mean, q=q)


def params(sx: float, so: float, n: int) -> tuple[int, int]:
    mult, sh = rescale_multiplier(sx, so)
    return mean_multiplier(mult, sh, n)


def reference(x, axes, sx, zx, so, zo):
    """numpy QuantizedMeanOrSum (int8, scales differ): MBQM(sum(x) - zx * n) + zo, clamped."""
    x = np.asarray(x, np.int64)
    n = int(np.prod([x.shape[a] for a in axes]))
    mult, sh = params(sx, so, n)
    return np.clip(mbqm_short(x.sum(axis=tuple(axes)) - zx * n, mult, sh) + zo, -128, 127).astype(np.int8)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, mean, q = m[p["x"]], m[p["mean"]], m[p["q"]]
    sx, zx = scalar(m[p["sx"]]), int(scalar(m[p["zx"]]))
    so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
    if bool(mean.attrs.keepdims) or dtype(x) != "int8" or (sx == so and zx == zo):
        return None  # TFLite takes other kernels there (reference_integer_ops::Mean / plain Mean)
    dims = shape(x)
    axes = [int(a) % len(dims) for a in mean.attrs.axis]
    n = int(np.prod([dims[a] for a in axes]))
    mult, sh = params(sx, so, n)
    e = Emitter()
    s = e(op.sum(op.astype(x, "int32"), axis=axes, keepdims=False))
    s = e(op.subtract(op.astype(s, "int64"), e.i64(zx * n)))
    return e.finish(e.requant(s, mult, sh, zo))


LOWERING = register(Lowering("mean", ("MEAN",), pattern, rewrite))
