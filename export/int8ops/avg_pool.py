"""AVERAGE_POOL_2D: the importer already computes it on integers (astype int32 -> avg_pool2d -> astype int8)
but TVM's integer average truncates where TFLite's reference_integer_ops::AveragePool rounds half away from
zero: sum over the window's valid (unpadded) elements, then (sum +- count / 2) / count in C division."""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, shape
from .registry import Lowering, register


def pattern():
    from tvm.relax.dpl import is_op, wildcard

    x = wildcard()
    pool = is_op("relax.nn.avg_pool2d")(is_op("relax.astype")(x))
    return is_op("relax.astype")(pool), dict(x=x, pool=pool)


def window_counts(in_hw, pool, strides, pad, out_hw) -> np.ndarray:
    """Valid elements of each output position's window (TFLite counts only those inside the input)."""
    counts = np.zeros(out_hw, np.int64)
    for i in range(out_hw[0]):
        y0 = i * strides[0] - pad[0]
        ny = min(y0 + pool[0], in_hw[0]) - max(y0, 0)
        for j in range(out_hw[1]):
            x0 = j * strides[1] - pad[1]
            counts[i, j] = ny * (min(x0 + pool[1], in_hw[1]) - max(x0, 0))
    return counts


def reference(x, pool, strides, pad):
    """numpy AveragePool on NHWC int8; `pad` = (top, left, bottom, right)."""
    x = np.asarray(x, np.int64)
    n, h, w, c = x.shape
    oh = (h + pad[0] + pad[2] - pool[0]) // strides[0] + 1
    ow = (w + pad[1] + pad[3] - pool[1]) // strides[1] + 1
    xp = np.pad(x, [(0, 0), (pad[0], pad[2]), (pad[1], pad[3]), (0, 0)])
    s = np.zeros((n, oh, ow, c), np.int64)
    for i in range(pool[0]):
        for j in range(pool[1]):
            s += xp[:, i : i + strides[0] * oh : strides[0], j : j + strides[1] * ow : strides[1], :]
    cnt = window_counts((h, w), pool, strides, pad, (oh, ow))[None, :, :, None]
    q = (np.abs(s) + cnt // 2) // cnt
    return np.clip(np.sign(s) * q, -128, 127).astype(np.int8)


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    x, pool = m[p["x"]], m[p["pool"]]
    a = pool.attrs
    if (dtype(x) != "int8" or str(a.layout) != "NHWC" or bool(a.ceil_mode) or bool(a.count_include_pad)
            or any(int(d) != 1 for d in a.dilation)):
        return None
    size, strides = [int(v) for v in a.pool_size], [int(v) for v in a.strides]
    pad = [int(v) for v in a.padding]  # top, left, bottom, right
    n, h, w, c = shape(x)
    oh, ow = shape(pool)[1:3]
    counts = window_counts((h, w), size, strides, pad, (oh, ow)).reshape(1, oh, ow, 1)
    e = Emitter()
    xin = x
    if any(pad):
        xin = e(op.nn.pad(x, [0, 0, pad[0], pad[2], pad[1], pad[3], 0, 0], pad_value=0.0))
    # the window sum as a depthwise convolution with a kernel of ones (int32 accumulation)
    ones = relax.const(np.ones((size[0], size[1], 1, c), np.int8), "int8")
    s = e(op.nn.conv2d(xin, ones, strides=strides, padding=[0, 0, 0, 0], groups=c, data_layout="NHWC",
                       kernel_layout="HWIO", out_layout="NHWC", out_dtype="int32"))
    cnt = e.i32(counts)
    q = e(op.floor_divide(op.add(op.abs(s), e.i32(counts // 2)), cnt))
    q = e(op.multiply(q, op.sign(s)))
    return e.finish(op.astype(op.clip(q, -128, 127), "int8"))


LOWERING = register(Lowering("avg_pool2d", ("AVERAGE_POOL_2D",), pattern, rewrite))
