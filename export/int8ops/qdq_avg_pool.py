"""ONNX QDQ AveragePool without padding (or counting the padding): round_half_even((window sum - n * zx) *
sx / (n * so)) + zo, the window sum an int32 depthwise convolution with a kernel of ones (int8 x int8 ->
int32, exact), 1/n folded into the fixed-point multiplier. Padded windows that exclude the padding from
their count (ONNX's default) are left alone (the error names avg_pool2d)."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, shape
from .qdq_common import as_int8, qparams, requant
from .registry import Lowering, register
from .requant import round_mul_params


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    pool = is_op("relax.nn.avg_pool2d")(xdq)
    q = is_op("relax.quantize")(pool, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, pool=pool, q=q)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, xdq, pool, q = m[p["x"]], m[p["xdq"]], m[p["pool"]], m[p["q"]]
    a = pool.attrs
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    if xq is None or oq is None or dtype(x) not in ("int8", "uint8") or str(q.attrs.out_dtype) not in ("int8", "uint8"):
        return None
    pad = [int(v) for v in a.padding]
    if (any(pad) and not bool(a.count_include_pad)) or bool(a.ceil_mode) or any(int(d) != 1 for d in a.dilation):
        return None
    layout = str(a.layout)
    if layout not in ("NCHW", "NHWC") or str(a.out_layout) != layout:
        return None
    (sx, zx), (so, zo) = xq, oq
    e = Emitter()
    x, zx = as_int8(e, x, zx)
    kh, kw = (int(v) for v in a.pool_size)
    n = kh * kw
    c = shape(x)[layout.index("C")]
    kernel_layout = "OIHW" if layout == "NCHW" else "HWOI"
    ones = np.ones((c, 1, kh, kw) if layout == "NCHW" else (kh, kw, c, 1), np.int8)
    mult, shift = round_mul_params(float(np.float32(sx) / np.float32(so)) / n, 256 * n)
    xin = x
    if any(pad):  # counted padding holds the real value 0, i.e. the zero point
        width = []
        for ax in layout:
            width += {"H": [pad[0], pad[2]], "W": [pad[1], pad[3]]}.get(ax, [0, 0])
        xin = e(op.nn.pad(x, width, pad_value=float(zx)))
    s = e(op.nn.conv2d(xin, relax.const(ones, "int8"), strides=[int(v) for v in a.strides], padding=[0, 0, 0, 0],
                       groups=c, data_layout=layout, kernel_layout=kernel_layout, out_layout=layout,
                       out_dtype="int32"))
    acc = e(op.subtract(op.astype(s, "int64"), e.i64(n * zx)))
    return e.finish(requant(e, acc, mult, shift, zo, str(q.attrs.out_dtype)))


LOWERING = register(Lowering("qdq_avg_pool2d", ("AveragePool",), pattern, rewrite, source="onnx"))
