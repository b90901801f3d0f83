"""ONNX QDQ Gemm / MatMul: matmul(DequantizeLinear(x), DequantizeLinear(int8 W) [transposed]) [+ int32 bias]
-> QuantizeLinear; int8 matmul with int32 accumulation, zero point folded into the bias, ONNX's rounding."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, value
from .qdq_common import as_int8, eff_f32, qparams, requant
from .registry import Lowering, register
from .requant import round_mul_params


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    w = is_const()
    wdq = is_op("relax.dequantize")(w, is_const(), is_const())
    wt = is_op("relax.permute_dims")(wdq)
    mm = is_op("relax.matmul")(xdq, wt | wdq)
    bdq = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    q = is_op("relax.quantize")(is_op("relax.add")(mm, bdq) | mm, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, w=w, wdq=wdq, wt=wt, bdq=bdq, q=q)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, xdq, wdq, q = m[p["x"]], m[p["xdq"]], m[p["wdq"]], m[p["q"]]
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    w = value(m[p["w"]])
    if xq is None or oq is None or dtype(x) not in ("int8", "uint8") or w.dtype != np.int8 or w.ndim != 2 \
            or np.any(value(wdq.args[2]) != 0) or str(q.attrs.out_dtype) not in ("int8", "uint8"):
        return None
    (sx, zx), (so, zo) = xq, oq
    out_axis = 1
    if p["wt"] in m:
        axes = [int(v) for v in m[p["wt"]].attrs.axes]
        out_axis = axes[1]
        w = np.transpose(w, axes)  # now [in, out]
    cout = w.shape[1]
    sw = value(wdq.args[1]).astype(np.float32).reshape(-1)
    if sw.size not in (1, cout) or (sw.size > 1 and int(wdq.attrs.axis) != out_axis):
        return None
    sw = np.broadcast_to(sw, (cout,))
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        b = value(m[p["bdq"]].args[0])
        if b.dtype != np.int32 or b.size != cout:
            return None
        bias = b.astype(np.int64).reshape(-1)
    e = Emitter()
    x, zx = as_int8(e, x, zx)
    bias_eff = bias - zx * w.astype(np.int64).sum(axis=0)
    bound = int((np.abs(w.astype(np.int64)).sum(axis=0) * 255 + np.abs(bias)).max()) + 1
    mult, shift = round_mul_params(eff_f32(sx, sw, so).astype(np.float64), bound)
    acc = e(op.matmul(x, relax.const(np.ascontiguousarray(w), "int8"), out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    return e.finish(requant(e, acc, mult, shift, zo, str(q.attrs.out_dtype)))


LOWERING = register(Lowering("qdq_matmul", ("Gemm", "MatMul"), pattern, rewrite, source="onnx"))
