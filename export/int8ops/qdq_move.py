"""ONNX QDQ data movement and max pooling (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, MaxPool, Slice,
nearest-neighbour Resize): QuantizeLinear(op(DequantizeLinear(x))) with the same scale and zero point
on both sides is op(x) on the int8 tensor itself (each moves or selects values; max is monotonic). With
different parameters the op is followed by a requantization table."""

from __future__ import annotations

from .emit import dtype
from .qdq_common import lookup, qparams
from .qdq_table import function_table
from .registry import Lowering, register

OPS = ("relax.permute_dims", "relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten",
       "relax.nn.max_pool2d", "relax.strided_slice", "relax.image.resize2d")


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    mv = None
    for name in OPS:
        alt = is_op(name)(xdq) | is_op(name)(xdq, wildcard()) | is_op(name)(xdq, wildcard(), wildcard()) \
            | is_op(name)(xdq, wildcard(), wildcard(), wildcard())
        mv = alt if mv is None else mv | alt
    q = is_op("relax.quantize")(mv, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, mv=mv, q=q)


def rewrite(m, p):
    from tvm import relax

    x, xdq, mv, q = m[p["x"]], m[p["xdq"]], m[p["mv"]], m[p["q"]]
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    if xq is None or oq is None or dtype(x) != str(q.attrs.out_dtype) or dtype(x) not in ("int8", "uint8"):
        return None
    if mv.op.name == "relax.image.resize2d":
        moved = _nearest_repeat(x, mv)
        if moved is None:
            return None
    else:
        moved = relax.Call(mv.op, [x, *mv.args[1:]], mv.attrs)
    if xq == oq:
        return moved
    bb = relax.BlockBuilder()
    bb._begin_dataflow_block()
    v = bb.emit(moved)
    seq = lookup(v, function_table(dtype(x), *xq, lambda r: r, *oq, dtype(x)))
    blocks = [bb._end_block()] + list(seq.blocks)
    return relax.SeqExpr(blocks, seq.body)


NEAREST_FLOOR_MODES = {("asymmetric", "floor"), ("tf_half_pixel_for_nn", "floor"), ("half_pixel", "round"),
                       ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
                       ("pytorch_half_pixel", "round"), ("pytorch_half_pixel", "round_prefer_floor"),
                       ("pytorch_half_pixel", "round_prefer_ceil")}


def _nearest_repeat(x, resize):
    """A nearest-neighbour Resize by whole factors kh, kw as two `repeat`s (integer index arithmetic only; TVM's
    resize kernel computes its source coordinates in float): in the modes of NEAREST_FLOOR_MODES, output i
    reads input floor(i / k). None for anything else (an interpolating resize computes new values)."""
    from tvm import relax

    from .emit import shape

    a = resize.attrs
    if str(a.method) != "nearest_neighbor" or (str(a.coordinate_transformation_mode), str(a.rounding_method)) \
            not in NEAREST_FLOOR_MODES:
        return None
    layout = str(a.layout)
    if sorted(layout) != sorted("NCHW"):
        return None
    src, dst = shape(x), [int(d) for d in resize.ty.shape.values]
    out = x
    for ax in (layout.index("H"), layout.index("W")):
        if dst[ax] % src[ax]:
            return None
        if dst[ax] != src[ax]:
            out = relax.op.repeat(out, dst[ax] // src[ax], axis=ax)
    return out


LOWERING = register(Lowering("qdq_move", ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "MaxPool",
                                          "Slice", "Resize (nearest)"), pattern, rewrite, source="onnx"))
