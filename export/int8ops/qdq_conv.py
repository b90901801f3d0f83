"""ONNX QDQ Conv (any layout TVM imports: NCHW/OIHW from ONNX), grouped and depthwise included:
DequantizeLinear(x), DequantizeLinear(int8 W, per-channel scales, zero point 0) -> Conv [+ DequantizeLinear(
int32 bias)] -> QuantizeLinear. int8 x int8 conv with int32 accumulation, the input zero point folded into
the bias (bias - zx * sum(w); the input is padded with its zero point), then ONNX's rounding
(qdq_common.requant)."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, value
from .qdq_common import as_int8, channel_vector, eff_f32, qparams, requant
from .registry import Lowering, register
from .requant import round_mul_params


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    w = is_const()
    wdq = is_op("relax.dequantize")(w, is_const(), is_const())
    conv = is_op("relax.nn.conv2d")(xdq, wdq)
    bdq = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    br = is_op("relax.reshape")(bdq, wildcard())
    q = is_op("relax.quantize")(is_op("relax.add")(conv, br | bdq) | conv, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, w=w, wdq=wdq, conv=conv, bdq=bdq, q=q)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    conv, x, xdq, wdq, q = m[p["conv"]], m[p["x"]], m[p["xdq"]], m[p["wdq"]], m[p["q"]]
    a = conv.attrs
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    w = value(m[p["w"]])
    if xq is None or oq is None or dtype(x) not in ("int8", "uint8") or w.dtype != np.int8 \
            or np.any(value(wdq.args[2]) != 0):
        return None
    if str(q.attrs.out_dtype) not in ("int8", "uint8"):
        return None
    (sx, zx), (so, zo) = xq, oq
    layout, out_layout = str(a.kernel_layout), str(a.out_layout)
    o_axis, c_axis = layout.index("O"), out_layout.index("C")
    cout = w.shape[o_axis]
    sw = value(wdq.args[1]).astype(np.float32).reshape(-1)
    if sw.size not in (1, cout) or (sw.size > 1 and int(wdq.attrs.axis) != o_axis):
        return None
    sw = np.broadcast_to(sw, (cout,))
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        b = value(m[p["bdq"]].args[0])
        if b.dtype != np.int32 or b.size != cout or np.any(value(m[p["bdq"]].args[2]) != 0):
            return None
        bias = b.astype(np.int64).reshape(-1)
    wsum = w.astype(np.int64).sum(axis=tuple(i for i in range(w.ndim) if i != o_axis))
    e = Emitter()
    x, zx = as_int8(e, x, zx)
    bias_eff = bias - zx * wsum
    bound = int((np.abs(w.astype(np.int64)).sum(axis=tuple(i for i in range(w.ndim) if i != o_axis)) * 255
                 + np.abs(bias)).max()) + 1
    mult, shift = round_mul_params(eff_f32(sx, sw, so).astype(np.float64), bound)
    pad = [int(v) for v in a.padding]  # top, left, bottom, right
    data_layout = str(a.data_layout)
    if data_layout == "NCHW" and layout == "OIHW" and out_layout == "NCHW":
        return _nhwc(e, x, zx, w, pad, a, bias_eff, mult, shift, zo, str(q.attrs.out_dtype))
    xin = x
    if any(pad):
        width = []
        for ax in data_layout:
            width += {"H": [pad[0], pad[2]], "W": [pad[1], pad[3]]}.get(ax, [0, 0])
        xin = e(op.nn.pad(x, width, pad_value=float(zx)))
    acc = e(op.nn.conv2d(xin, relax.const(w, "int8"), strides=[int(v) for v in a.strides], padding=[0, 0, 0, 0],
                         dilation=[int(v) for v in a.dilation], groups=int(a.groups), data_layout=data_layout,
                         kernel_layout=layout, out_layout=out_layout, out_dtype="int32"))
    nd = len(out_layout)
    acc = e(op.add(op.astype(acc, "int64"), e.i64(channel_vector(bias_eff, nd, c_axis))))
    return e.finish(requant(e, acc, channel_vector(mult, nd, c_axis), channel_vector(shift, nd, c_axis), zo,
                            str(q.attrs.out_dtype)))


def _nhwc(e, x, zx, w, pad, a, bias_eff, mult, shift, zo, out_dtype):
    """The NCHW conv computed channels-last: transposed in, NHWC x HWIO (the weights transposed here, once), the
    requantization on the NHWC accumulator, transposed out. The loops then run as the TFLite route's do (output
    channels innermost over contiguous weights: what lowering's vector schedule expects)."""
    from tvm import relax

    op = relax.op
    xh = e(op.permute_dims(x, [0, 2, 3, 1]))
    if any(pad):
        xh = e(op.nn.pad(xh, [0, 0, pad[0], pad[2], pad[1], pad[3], 0, 0], pad_value=float(zx)))
    groups = int(a.groups)
    w_hwio = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))  # OIHW -> HWIO (I = C / groups)
    acc = e(op.nn.conv2d(xh, relax.const(w_hwio, "int8"), strides=[int(v) for v in a.strides], padding=[0, 0, 0, 0],
                         dilation=[int(v) for v in a.dilation], groups=groups, data_layout="NHWC",
                         kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    y = e(requant(e, acc, mult, shift, zo, out_dtype))
    return e.finish(op.permute_dims(y, [0, 3, 1, 2]))


LOWERING = register(Lowering("qdq_conv2d", ("Conv",), pattern, rewrite, source="onnx"))
