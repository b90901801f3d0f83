"""ONNX QDQ Add, Sub, Mul of two int8 tensors (a constant operand is a 256-entry table: qdq_table):
Add/Sub: round_half_even((a - za) * sa/so +- (b - zb) * sb/so) + zo, both ratios in one 62-bit fixed point;
Mul: round_half_even((a - za) * (b - zb) * sa*sb/so) + zo."""

from __future__ import annotations

import functools
import math

import numpy as np

from .emit import Emitter, dtype, is_const
from .qdq_common import qparams, requant, rhe_shift_np
from .registry import Lowering, register
from .requant import round_mul_params

BOUND = 512  # |(a - za)| + |(b - zb)| < 2 * 256


def pattern(relax_op: str):
    from tvm.relax.dpl import is_const, is_op, wildcard

    a, b = wildcard(), wildcard()
    da = is_op("relax.dequantize")(a, is_const(), is_const())
    db = is_op("relax.dequantize")(b, is_const(), is_const())
    q = is_op("relax.quantize")(is_op(relax_op)(da, db), is_const(), is_const())
    return q, dict(a=a, b=b, da=da, db=db, q=q)


def add_params(sa: float, sb: float, so: float) -> tuple[int, int, int]:
    """(ma, mb, shift): sa/so ~ ma / 2**shift, sb/so ~ mb / 2**shift, with BOUND * max(m) < 2**62."""
    ea = float(np.float32(sa) / np.float32(so))
    eb = float(np.float32(sb) / np.float32(so))
    top = max(math.frexp(ea)[1], math.frexp(eb)[1])
    shift = min(61 - BOUND.bit_length() - top, 62)
    return int(round(ea * 2.0 ** shift)), int(round(eb * 2.0 ** shift)), shift


def add_reference(va, vb, sa, za, sb, zb, so, zo, subtract=False, out_dtype="int8"):
    ma, mb, sh = add_params(sa, sb, so)
    ta = (np.asarray(va, np.int64) - za) * ma
    tb = (np.asarray(vb, np.int64) - zb) * mb
    info = np.iinfo(out_dtype)
    return np.clip(rhe_shift_np(ta - tb if subtract else ta + tb, sh) + zo, info.min, info.max).astype(out_dtype)


def _operands(m, p):
    a, b, q = m[p["a"]], m[p["b"]], m[p["q"]]
    if is_const(a) or is_const(b) or dtype(a) not in ("int8", "uint8") or dtype(b) not in ("int8", "uint8"):
        return None
    qa, qb, qo = (qparams(m[p[k]].args[1], m[p[k]].args[2]) for k in ("da", "db")), None, None
    qa, qb = list(qa)
    qo = qparams(q.args[1], q.args[2])
    if qa is None or qb is None or qo is None or str(q.attrs.out_dtype) not in ("int8", "uint8"):
        return None
    return a, b, qa, qb, qo, str(q.attrs.out_dtype)


def rewrite_add(m, p, subtract: bool = False):
    from tvm import relax

    op = relax.op
    found = _operands(m, p)
    if found is None:
        return None
    a, b, (sa, za), (sb, zb), (so, zo), out_dtype = found
    ma, mb, sh = add_params(sa, sb, so)
    e = Emitter()
    ta = e(op.multiply(op.subtract(op.astype(a, "int64"), e.i64(za)), e.i64(ma)))
    tb = e(op.multiply(op.subtract(op.astype(b, "int64"), e.i64(zb)), e.i64(mb)))
    acc = e((op.subtract if subtract else op.add)(ta, tb))
    return e.finish(requant(e, acc, 1, sh, zo, out_dtype))


def rewrite_mul(m, p):
    from tvm import relax

    op = relax.op
    found = _operands(m, p)
    if found is None:
        return None
    a, b, (sa, za), (sb, zb), (so, zo), out_dtype = found
    eff = float(np.float32(sa) * np.float32(sb) / np.float32(so))
    mult, shift = round_mul_params(eff, 256 * 256)
    e = Emitter()
    acc = e(op.multiply(op.subtract(op.astype(a, "int64"), e.i64(za)), op.subtract(op.astype(b, "int64"), e.i64(zb))))
    return e.finish(requant(e, acc, mult, shift, zo, out_dtype))


ADD = register(Lowering("qdq_add", ("Add",), lambda: pattern("relax.add"), rewrite_add, source="onnx"))
SUB = register(Lowering("qdq_subtract", ("Sub",), lambda: pattern("relax.subtract"),
                        functools.partial(rewrite_add, subtract=True), source="onnx"))
MUL = register(Lowering("qdq_multiply", ("Mul",), lambda: pattern("relax.multiply"), rewrite_mul, source="onnx"))
