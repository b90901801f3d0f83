"""ONNX QDQ elementwise functions of one int8 tensor, as 256-entry tables: QuantizeLinear(f(DequantizeLinear(x)
[, a constant])) for f = Add/Sub/Mul/Div by a scalar constant, Relu, Clip, Sigmoid, Tanh, LeakyRelu, and a bare
requantization (QuantizeLinear(DequantizeLinear(x)) with other parameters). The table is computed here in
float32 with numpy exactly as onnxruntime's float route computes DequantizeLinear -> f -> QuantizeLinear
(x / scale rounded half to even); each element is then one lookup."""

from __future__ import annotations

import numpy as np

from .emit import dtype, is_const, value
from .qdq_common import lookup, qparams
from .registry import Lowering, register

BINARY = {"relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
          "relax.divide": np.divide}
UNARY = ("relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.leakyrelu")


def pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    x = wildcard()
    xdq = is_op("relax.dequantize")(x, is_const(), is_const())
    c_right = is_op("relax.dequantize")(is_const(), is_const(), is_const()) | is_const()
    c_left = is_op("relax.dequantize")(is_const(), is_const(), is_const()) | is_const()
    f = None
    for name in BINARY:
        alt = is_op(name)(xdq, c_right) | is_op(name)(c_left, xdq)
        f = alt if f is None else f | alt
    for name in UNARY:
        f = f | is_op(name)(xdq)
    body = f | xdq
    q = is_op("relax.quantize")(body, is_const(), is_const())
    return q, dict(x=x, xdq=xdq, c_right=c_right, c_left=c_left, body=body, q=q)


MAX_CONST = 64  # a constant operand of more elements (a whole tensor) is not a per-channel table


def _const_value(c) -> np.ndarray | None:
    """A constant operand in real values (dequantized when it is a DequantizeLinear of a constant), float32 in
    its own shape; None if it has more than MAX_CONST elements."""
    from tvm import ir

    if is_const(c):
        v = value(c)
    elif isinstance(c, ir.Call) and c.op.name == "relax.dequantize" and is_const(c.args[0]):
        qp = qparams(c.args[1], c.args[2])
        if qp is None:
            return None
        v = (value(c.args[0]).astype(np.int32) - np.int32(qp[1])).astype(np.float32) * np.float32(qp[0])
    else:
        return None
    v = np.asarray(v, np.float32)
    return v if v.size <= MAX_CONST else None


def function_table(x_dtype: str, sx: float, zx: int, f, so: float, zo: int, out_dtype: str) -> np.ndarray:
    """Q(f(DQ(v))) for every v of x_dtype, in float32 (onnxruntime's DequantizeLinear / QuantizeLinear); `f`
    may return [k, 256] (one table per element of a per-channel constant)."""
    info_in, info_out = np.iinfo(x_dtype), np.iinfo(out_dtype)
    v = np.arange(info_in.min, info_in.max + 1, dtype=np.int32)
    real = (v - np.int32(zx)).astype(np.float32) * np.float32(sx)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        y = np.asarray(f(real), np.float32)
    q = np.rint(y / np.float32(so)) + np.float32(zo)
    return np.clip(q, info_out.min, info_out.max).astype(out_dtype)


def rewrite(m, p):
    from tvm import ir

    x, xdq, q = m[p["x"]], m[p["xdq"]], m[p["q"]]
    xq, oq = qparams(xdq.args[1], xdq.args[2]), qparams(q.args[1], q.args[2])
    out_dtype = str(q.attrs.out_dtype)
    if xq is None or oq is None or dtype(x) not in ("int8", "uint8") or out_dtype not in ("int8", "uint8"):
        return None
    body = m[p["body"]]
    if not isinstance(body, ir.Call) or not isinstance(body.op, ir.Op):
        return None
    if body.op.name == "relax.dequantize":
        f = lambda r: r  # noqa: E731  (a plain requantization)
    elif body.op.name in BINARY:
        np_op = BINARY[body.op.name]
        right = p["c_right"] in m
        c = _const_value(m[p["c_right"]] if right else m[p["c_left"]]) if right or p["c_left"] in m else None
        if c is None:
            return None
        if c.size > 1:
            return _per_element(x, c, np_op, right, xq, oq) if dtype(x) == out_dtype == "int8" else None
        c = c.reshape(())
        f = (lambda r, c=c: np_op(r, c)) if right else (lambda r, c=c: np_op(c, r))
    else:
        name = body.op.name
        if name == "relax.nn.relu":
            f = lambda r: np.maximum(r, np.float32(0))  # noqa: E731
        elif name == "relax.clip":
            lo, hi = (float(v.value) for v in body.args[1:3])
            f = lambda r, lo=lo, hi=hi: np.clip(r, np.float32(lo), np.float32(hi))  # noqa: E731
        elif name == "relax.sigmoid":
            f = lambda r: np.float32(1) / (np.float32(1) + np.exp(-r))  # noqa: E731
        elif name == "relax.tanh":
            f = np.tanh
        elif name == "relax.nn.leakyrelu":
            alpha = np.float32(float(body.attrs.alpha))
            f = lambda r, a=alpha: np.where(r >= 0, r, r * a)  # noqa: E731
        else:
            return None
    return lookup(x, function_table(dtype(x), *xq, f, *oq, out_dtype))


def _per_element(x, c: np.ndarray, np_op, right: bool, xq, oq):
    """x OP c with c a small constant broadcast over x (a per-channel scale): one 256-entry table per element
    of c, looked up at 256 * (position in c) + x + 128."""
    from .emit import Emitter, shape

    xs = shape(x)
    if list(np.broadcast_shapes(tuple(xs), c.shape)) != xs:
        return None
    flat = c.reshape(-1, 1)
    f = (lambda r: np_op(r[None, :], flat)) if right else (lambda r: np_op(flat, r[None, :]))
    table = function_table("int8", *xq, f, *oq, "int8").reshape(-1)
    pos = (np.arange(c.size, dtype=np.int32) * 256).reshape(c.shape)
    e = Emitter()
    idx = e(e.op.add(e.op.add(e.op.astype(x, "int32"), e.i32(128)), e.i32(pos)))
    return e.finish(e.op.take(e.R.const(table, "int8"), idx, axis=0))


LOWERING = register(Lowering("qdq_table", ("Add/Sub/Mul/Div by a constant", "Relu", "Clip", "Sigmoid", "Tanh",
                                           "LeakyRelu", "QuantizeLinear"), pattern, rewrite, source="onnx"))
