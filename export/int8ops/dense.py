"""FULLY_CONNECTED: the importer's matmul(dequantize(x), dequantize(permute_dims(W))) [+ bias].

TFLite's reference FULLY_CONNECTED requantizes in double: round(acc * in*w/out) (half away from zero), not
with MultiplyByQuantizedMultiplier; emulated with a wide fixed-point multiplier (requant.round_mul_params).
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter, scalar, value
from .registry import Lowering, register
from .requant import f32, round_mul, round_mul_params


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    xdq = is_op("relax.dequantize")(x, sx, zx)
    w = is_const()
    wt = is_op("relax.permute_dims")(w)
    wdq = is_op("relax.dequantize")(wt | w, is_const(), is_const())
    mm = is_op("relax.matmul")(xdq, wdq)
    bdq = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    q = is_op("relax.quantize")(is_op("relax.add")(mm, bdq) | mm, is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, w=w, wt=wt, wdq=wdq, bdq=bdq, q=q)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, sx, zx = m[p["x"]], scalar(m[p["sx"]]), int(scalar(m[p["zx"]]))
    wdq = m[p["wdq"]]
    w = value(m[p["w"]])
    if w.dtype != np.int8 or np.any(value(wdq.args[2]) != 0) or w.ndim != 2:
        return None
    if p["wt"] in m:
        axes = [int(a) for a in m[p["wt"]].attrs.axes]
        w = np.transpose(w, axes)  # now [in, out]
    cout = w.shape[1]
    sw = value(wdq.args[1]).astype(np.float32).reshape(-1)
    if sw.size not in (1, cout) or (sw.size > 1 and int(wdq.attrs.axis) != 1):
        return None
    sw = np.broadcast_to(sw, (cout,))
    q = m[p["q"]]
    so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        b = value(m[p["bdq"]].args[0])
        if b.dtype != np.int32 or b.size != cout:
            return None
        bias = b.astype(np.int64).reshape(-1)
    bias_eff = bias - zx * w.astype(np.int64).sum(axis=0)
    eff = f32(sx) * sw.astype(np.float64) / f32(so)
    bound = int((np.abs(w.astype(np.int64)).sum(axis=0) * 255 + np.abs(bias)).max()) + 1
    mult, shift = round_mul_params(eff, bound)
    e = Emitter()
    acc = e(op.matmul(x, relax.const(np.ascontiguousarray(w), "int8"), out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    # round half away from zero of v / 2**shift (shift >= 1) = floor((v + 2**(shift-1) - [v < 0]) / 2**shift)
    v = e(op.multiply(acc, e.i64(mult)))
    v = e(op.add(op.add(v, e.i64(np.int64(1) << (shift - 1))), op.right_shift(v, e.i64(63))))
    x = e(op.right_shift(v, e.i64(shift)))
    x = e(op.clip(op.add(x, e.i64(zo)), -128, 127))
    return e.finish(op.astype(x, "int8"))


def reference(x, zx: int, w_io, bias, eff, zo: int):
    """numpy reference FULLY_CONNECTED: round(double(sum((x - zx) * w) + bias) * eff) + zo, clamped."""
    acc = (np.asarray(x, np.int64) - zx) @ np.asarray(w_io, np.int64) + np.asarray(bias, np.int64)
    bound = int(np.abs(acc).max()) + 1
    mult, shift = round_mul_params(eff, bound)
    return np.clip(round_mul(acc, mult, shift) + zo, -128, 127).astype(np.int8)


LOWERING = register(Lowering("matmul", ("FULLY_CONNECTED",), pattern, rewrite))
