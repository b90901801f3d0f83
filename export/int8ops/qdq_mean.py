"""ONNX QDQ GlobalAveragePool / ReduceMean: round_half_even((sum(x) - n * zx) * sx / (n * so)) + zo, the sum in
int32 and 1/n folded into the fixed-point multiplier."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, shape
from .qdq_common import qparams, requant
from .registry import Lowering, register
from .requant import round_mul_params


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    mean = is_op("relax.mean")(xdq)
    q = is_op("relax.quantize")(mean, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, mean=mean, q=q)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, xdq, mean, q = m[p["x"]], m[p["xdq"]], m[p["mean"]], m[p["q"]]
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    if xq is None or oq is None or dtype(x) not in ("int8", "uint8") or str(q.attrs.out_dtype) not in ("int8", "uint8"):
        return None
    (sx, zx), (so, zo) = xq, oq
    dims = shape(x)
    axes = [int(a) % len(dims) for a in mean.attrs.axis] if mean.attrs.axis is not None else list(range(len(dims)))
    n = int(np.prod([dims[a] for a in axes]))
    eff = float(np.float32(sx) / np.float32(so)) / n
    mult, shift = round_mul_params(eff, 256 * n)
    e = Emitter()
    s = e(op.sum(op.astype(x, "int32"), axis=axes, keepdims=bool(mean.attrs.keepdims)))
    acc = e(op.subtract(op.astype(s, "int64"), e.i64(n * zx)))
    return e.finish(requant(e, acc, mult, shift, zo, str(q.attrs.out_dtype)))


LOWERING = register(Lowering("qdq_mean", ("GlobalAveragePool", "ReduceMean"), pattern, rewrite, source="onnx"))
