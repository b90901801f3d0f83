"""What the elementwise binary lowerings share: quantize(dequantize(a) OP dequantize(b)) with scalar params."""

from __future__ import annotations

from .emit import dtype, scalar


def pattern(relax_op: str):
    from tvm.relax.dpl import is_const, is_op, wildcard

    a, b = wildcard(), wildcard()
    da = is_op("relax.dequantize")(a, is_const(), is_const())
    db = is_op("relax.dequantize")(b, is_const(), is_const())
    q = is_op("relax.quantize")(is_op(relax_op)(da, db), is_const(), is_const())
    return q, dict(a=a, b=b, da=da, db=db, q=q)


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
