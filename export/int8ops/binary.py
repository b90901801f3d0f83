"""What the elementwise binary lowerings share: quantize([act](dequantize(a) OP dequantize(b))) with scalar
parameters, `act` being the importer's float form of TFLite's fused activation (RELU, RELU6, RELU_N1_TO_1)."""

from __future__ import annotations

import numpy as np

from .emit import dtype, scalar


def pattern(relax_op: str):
    from tvm.relax.dpl import is_const, is_op, wildcard

    a, b = wildcard(), wildcard()
    da = is_op("relax.dequantize")(a, is_const(), is_const())
    db = is_op("relax.dequantize")(b, is_const(), is_const())
    core = is_op(relax_op)(da, db)
    relu = is_op("relax.nn.relu")(core)
    clip = is_op("relax.clip")(core, wildcard(), wildcard())
    q = is_op("relax.quantize")(relu | clip | core, is_const(), is_const())
    return q, dict(a=a, b=b, da=da, db=db, relu=relu, clip=clip, q=q)


def _quantize_bound(v: float, so: float, zo: int) -> int:
    """TFLite's CalculateActivationRangeQuantized: zo + round(v / so) in float32, half away from zero."""
    r = np.float32(v) / np.float32(so)
    return zo + int(np.sign(r) * np.floor(np.abs(r) + np.float32(0.5)))


def activation_range(m, p, so: float, zo: int) -> tuple[int, int]:
    """The int8 output clamp of the fused activation (the full int8 range without one)."""
    if p["relu"] in m:
        return max(-128, zo), 127
    if p["clip"] in m:
        c = m[p["clip"]]
        lo, hi = (float(getattr(arg.value, "value", arg.value)) for arg in c.args[1:3])  # PrimValue(FloatImm)
        return max(-128, _quantize_bound(lo, so, zo)), min(127, _quantize_bound(hi, so, zo))
    return -128, 127


def operands(m, p):
    """(a, b, s1, z1, s2, z2, so, zo) of the match with scalar int8 params, else None (leave it)."""
    a, b = m[p["a"]], m[p["b"]]
    da, db, q = m[p["da"]], m[p["db"]], m[p["q"]]
    try:
        s1, z1, s2, z2 = scalar(da.args[1]), int(scalar(da.args[2])), scalar(db.args[1]), int(scalar(db.args[2]))
        so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
    except ValueError:
        return None
    if dtype(a) != "int8" or dtype(b) != "int8" or q.attrs.out_dtype != "int8":
        return None
    return a, b, s1, z1, s2, z2, so, zo
