"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR with TFLite's align-corners / half-pixel semantics.

Every source index and weight depends only on the shapes, so they are computed here (TFLite's float32 index
arithmetic for nearest, its 10-bit fixed point for int8 bilinear) and the kernels are integer gathers
(`take` along H and W) and, for bilinear, an int64 weighted sum with TFLite's rounding.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter, dtype, shape
from .registry import Lowering, register


def _flags(attrs) -> tuple[bool, bool]:
    """(align_corners, half_pixel_centers) back from the importer's coordinate_transformation_mode."""
    mode = str(attrs.coordinate_transformation_mode)
    if mode not in ("align_corners", "asymmetric", "half_pixel"):
        raise ValueError(f"resize coordinate mode {mode}")
    return mode == "align_corners", mode == "half_pixel"


def nearest_index(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """reference_ops GetNearestNeighbor for every output position (float32 arithmetic as TFLite's)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    v = (np.arange(out_size, dtype=np.float32) + np.float32(0.5 if half_pixel else 0.0)) * scale
    v = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) if align_corners else np.floor(v)
    idx = np.minimum(v.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel else idx


def bilinear_taps(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    """(i0, i1, w0, w1) per output position: the int8 kernel's 10-bit fixed-point source coordinate, its
    lower and upper source index and their weights (w0 + w1 = 1024)."""
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = ((1 << 10) * in_size + out_size // 2) // out_size
    o = np.arange(out_size, dtype=np.int64)
    v = o * scale + scale // 2 - (1 << 9) if half_pixel else o * scale
    trunc = lambda a, b: np.where(a >= 0, a // b, -((-a) // b))  # noqa: E731  C division
    i0 = np.maximum(trunc(v, 1 << 10), 0)
    i1 = np.minimum(trunc(v + (1 << 10) - 1, 1 << 10), in_size - 1)
    w1 = v - (1 << 10) * i0
    return i0, i1, (1 << 10) - w1, w1


def reference_nearest(x, out_hw, align_corners=False, half_pixel=False):
    x = np.asarray(x)
    iy = nearest_index(x.shape[1], out_hw[0], align_corners, half_pixel)
    ix = nearest_index(x.shape[2], out_hw[1], align_corners, half_pixel)
    return x[:, iy][:, :, ix]


def reference_bilinear(x, out_hw, align_corners=False, half_pixel=False):
    x = np.asarray(x, np.int64)
    y0, y1, wy0, wy1 = bilinear_taps(x.shape[1], out_hw[0], align_corners, half_pixel)
    x0, x1, wx0, wx1 = bilinear_taps(x.shape[2], out_hw[1], align_corners, half_pixel)
    wy0, wy1 = wy0[None, :, None, None], wy1[None, :, None, None]
    wx0, wx1 = wx0[None, None, :, None], wx1[None, None, :, None]
    a, b = x[:, y0], x[:, y1]
    v = a[:, :, x0] * wy0 * wx0 + b[:, :, x0] * wy1 * wx0 + a[:, :, x1] * wy0 * wx1 + b[:, :, x1] * wy1 * wx1
    r = np.where(v > 0, (v + (1 << 19)) >> 20, -((-v + (1 << 19)) >> 20))
    return r.astype(np.int8)


def _gather(e, x, iy, ix):
    op = e.op
    t = e(op.take(x, e.i32(iy), axis=1))
    return e(op.take(t, e.i32(ix), axis=2))


def _nearest_pattern():
    from tvm.relax.dpl import is_op, wildcard

    x = wildcard()
    r = is_op("relax.image.resize2d")(x, wildcard())
    return r, dict(x=x, r=r)


def _nearest_rewrite(m, p):
    x, r = m[p["x"]], m[p["r"]]
    a = r.attrs
    if dtype(x) != "int8" or str(a.method) != "nearest_neighbor" or str(a.layout) != "NHWC":
        return None
    align, half = _flags(a)
    n, h, w, c = shape(x)
    oh, ow = shape(r)[1:3]
    e = Emitter()
    out = _gather(e, x, nearest_index(h, oh, align, half), nearest_index(w, ow, align, half))
    return e.finish(e.op.reshape(out, [n, oh, ow, c]))


def _bilinear_pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    r = is_op("relax.image.resize2d")(is_op("relax.dequantize")(x, is_const(), is_const()), wildcard())
    q = is_op("relax.quantize")(r, is_const(), is_const())
    return q, dict(x=x, r=r, q=q)


def _bilinear_rewrite(m, p):
    x, r, q = m[p["x"]], m[p["r"]], m[p["q"]]
    a = r.attrs
    if dtype(x) != "int8" or q.attrs.out_dtype != "int8" or str(a.method) != "linear" or str(a.layout) != "NHWC":
        return None
    align, half = _flags(a)
    n, h, w, c = shape(x)
    oh, ow = shape(r)[1:3]
    y0, y1, wy0, wy1 = bilinear_taps(h, oh, align, half)
    x0, x1, wx0, wx1 = bilinear_taps(w, ow, align, half)
    e = Emitter()
    op = e.op
    x64 = e(op.astype(x, "int64"))
    terms = []
    for iy, wy in ((y0, wy0), (y1, wy1)):
        for ix, wx in ((x0, wx0), (x1, wx1)):
            g = _gather(e, x64, iy, ix)
            weight = e.i64(wy.reshape(1, oh, 1, 1) * wx.reshape(1, 1, ow, 1))
            terms.append(e(op.multiply(g, weight)))
    v = e(op.add(op.add(terms[0], terms[1]), op.add(terms[2], terms[3])))
    half_ = e.i64(1 << 19)
    pos = op.right_shift(op.add(v, half_), e.i64(20))
    neg = op.negative(op.right_shift(op.add(op.negative(v), half_), e.i64(20)))
    out = e(op.where(op.greater(v, e.i64(0)), pos, neg))
    return e.finish(op.astype(out, "int8"))


NEAREST = register(Lowering("resize_nearest", ("RESIZE_NEAREST_NEIGHBOR",), _nearest_pattern, _nearest_rewrite))
BILINEAR = register(Lowering("resize_bilinear", ("RESIZE_BILINEAR",), _bilinear_pattern, _bilinear_rewrite))
