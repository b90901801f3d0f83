"""CONV_2D and DEPTHWISE_CONV_2D (the importer's conv2d with groups = C and a reshaped kernel).

int8 x int8 with int32 accumulation; the input zero point is folded into a per-channel constant
`bias - zp * sum(w)` (the input is padded with its zero point, so the correction holds at the borders too),
then TFLite's per-channel MultiplyByQuantizedMultiplier (reference_integer_ops::ConvPerChannel).
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter, scalar, value
from .registry import Lowering, register
from .requant import f32, multiply_by_quantized_multiplier, quantize_multiplier


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x, sx, zx = wildcard(), is_const(), is_const()
    xdq = is_op("relax.dequantize")(x, sx, zx)
    w = is_const()
    wdq = is_op("relax.dequantize")(w, is_const(), is_const())
    wr = is_op("relax.reshape")(wdq, wildcard())
    conv = is_op("relax.nn.conv2d")(xdq, wdq | wr)
    bdq = is_op("relax.dequantize")(is_const(), is_const(), is_const())
    q = is_op("relax.quantize")(is_op("relax.add")(conv, bdq) | conv, is_const(), is_const())
    return q, dict(x=x, sx=sx, zx=zx, w=w, wdq=wdq, wr=wr, conv=conv, bdq=bdq, q=q)


def multipliers(sx: float, sw: np.ndarray, so: float) -> list[tuple[int, int]]:
    """Per-channel (multiplier, shift) of in * w / out, computed in double from the float32 scales."""
    return [quantize_multiplier(float(f32(sx) * np.float64(s) / f32(so))) for s in sw]


def rewrite(m, p):
    from tvm import relax

    op = relax.op
    conv = m[p["conv"]]
    attrs = conv.attrs
    if str(attrs.data_layout) != "NHWC" or str(attrs.out_layout) != "NHWC":
        return None
    x, sx, zx = m[p["x"]], scalar(m[p["sx"]]), int(scalar(m[p["zx"]]))
    wdq = m[p["wdq"]]
    w = value(m[p["w"]])
    if w.dtype != np.int8 or np.any(value(wdq.args[2]) != 0):
        return None
    sw = value(wdq.args[1]).astype(np.float32).reshape(-1)
    if p["wr"] in m:
        w = w.reshape([int(d) for d in m[p["wr"]].ty.shape.values])
    layout = str(attrs.kernel_layout)
    o_axis = layout.index("O")
    cout = w.shape[o_axis]
    if sw.size not in (1, cout):
        return None
    sw = np.broadcast_to(sw, (cout,))
    q = m[p["q"]]
    so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
    if q.attrs.out_dtype != "int8":
        return None
    bias = np.zeros(cout, np.int64)
    if p["bdq"] in m:
        bdq = m[p["bdq"]]
        b = value(bdq.args[0])
        if b.dtype != np.int32 or b.size != cout or np.any(value(bdq.args[2]) != 0):
            return None
        bias = b.astype(np.int64).reshape(-1)
    sum_w = w.astype(np.int64).sum(axis=tuple(a for a in range(4) if a != o_axis))
    bias_eff = bias - zx * sum_w
    mults = multipliers(sx, sw, so)
    e = Emitter()
    pad = [int(v) for v in attrs.padding]  # top, left, bottom, right
    xin = x
    if any(pad):
        xin = e(op.nn.pad(x, [0, 0, pad[0], pad[2], pad[1], pad[3], 0, 0], pad_value=float(zx)))
    acc = e(op.nn.conv2d(xin, relax.const(w, "int8"), strides=[int(v) for v in attrs.strides], padding=[0, 0, 0, 0],
                         dilation=[int(v) for v in attrs.dilation], groups=int(attrs.groups), data_layout="NHWC",
                         kernel_layout=layout, out_layout="NHWC", out_dtype="int32"))
    acc = e(op.add(op.astype(acc, "int64"), e.i64(bias_eff)))
    return e.finish(e.requant(acc, [a for a, _ in mults], [b for _, b in mults], zo))


def reference(x, zx: int, w_hwio, bias, mults, zo: int, stride: int = 1, pad=(0, 0, 0, 0), groups: int = 1):
    """numpy ConvPerChannel on NHWC int8 `x` and HWIO int8 `w` (I = C / groups): sum((x - zx) * w) + bias,
    per-channel MultiplyByQuantizedMultiplier, + zo, clamp. `pad` = (top, left, bottom, right), padded with zx."""
    x = np.pad(np.asarray(x, np.int64) - zx, [(0, 0), (pad[0], pad[2]), (pad[1], pad[3]), (0, 0)])
    w = np.asarray(w_hwio, np.int64)
    kh, kw, cin_g, cout = w.shape
    n, h, wd, c = x.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout), np.int64)
    per_group = cout // groups
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            for g in range(groups):
                xs = patch[..., g * cin_g : (g + 1) * cin_g]
                out[..., g * per_group : (g + 1) * per_group] += xs @ w[i, j, :, g * per_group : (g + 1) * per_group]
    out += np.asarray(bias, np.int64)
    mult = np.array([a for a, _ in mults], np.int64)
    shift = np.array([b for _, b in mults], np.int64)
    return np.clip(multiply_by_quantized_multiplier(out, mult, shift) + zo, -128, 127).astype(np.int8)


LOWERING = register(Lowering("conv2d", ("CONV_2D", "DEPTHWISE_CONV_2D"), pattern, rewrite))
