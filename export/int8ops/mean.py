"""MEAN (GlobalAveragePooling2D, squeeze-excite's keepdims mean): TFLite 2.21's int8 reference kernel is
QuantizedMeanOrSum (reference reduce.h), 1/n folded into the multiplier, for keepdims or not and for equal or
different scales alike (older TFLite took reference_integer_ops::Mean for a keepdims mean over H and W,
which rounds differently: the golden tests pin the behaviour of the TFLite we test against)."""

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


def reference(x, axes, sx, zx, so, zo, keepdims: bool = False):
    """numpy QuantizedMeanOrSum on int8: MBQM(sum(x) - zx * n) + zo, clamped."""
    x = np.asarray(x, np.int64)
    n = int(np.prod([x.shape[a] for a in axes]))
    mult, sh = params(sx, so, n)
    s = x.sum(axis=tuple(axes), keepdims=keepdims) - zx * n
    return np.clip(mbqm_short(s, mult, sh) + zo, -128, 127).astype(np.int8)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, mean, q = m[p["x"]], m[p["mean"]], m[p["q"]]
    sx, zx = scalar(m[p["sx"]]), int(scalar(m[p["zx"]]))
    so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
    if dtype(x) != "int8" or q.attrs.out_dtype != "int8":
        return None
    dims = shape(x)
    axes = [int(a) % len(dims) for a in mean.attrs.axis]
    n = int(np.prod([dims[a] for a in axes]))
    mult, sh = params(sx, so, n)
    e = Emitter()
    s = e(op.sum(op.astype(x, "int32"), axis=axes, keepdims=bool(mean.attrs.keepdims)))
    s = e(op.subtract(op.astype(s, "int64"), e.i64(zx * n)))
    return e.finish(e.requant(s, mult, sh, zo))


LOWERING = register(Lowering("mean", ("MEAN",), pattern, rewrite))
