"""CONCATENATION: TFLite's int8 kernel requires every input to share the output's scale and zero point (the
converter inserts QUANTIZE, lowered by requantize.py, where they differ), so it is a plain int8 concat; an
input with other parameters is requantized as QUANTIZE would (reference_ops::Requantize)."""

from __future__ import annotations

from .emit import Emitter, dtype, scalar, table_lookup
from .registry import Lowering, register
from .lut import requantize_table

MAX_INPUTS = 8


def pattern():
    from tvm.relax.dpl import is_const, is_op, is_tuple, wildcard

    parts = {}
    alts = None
    for n in range(1, MAX_INPUTS + 1):
        deqs = [is_op("relax.dequantize")(wildcard(), is_const(), is_const()) for _ in range(n)]
        tup = is_tuple(deqs)
        parts[f"t{n}"] = tup
        parts.update({f"d{n}_{i}": d for i, d in enumerate(deqs)})
        alts = tup if alts is None else alts | tup
    cat = is_op("relax.concat")(alts)
    q = is_op("relax.quantize")(cat, is_const(), is_const())
    parts.update(cat=cat, q=q)
    return q, parts


def rewrite(m, p):
    from tvm import relax

    q, cat = m[p["q"]], m[p["cat"]]
    n = next((k for k in range(1, MAX_INPUTS + 1) if p[f"t{k}"] in m), None)
    if n is None or q.attrs.out_dtype != "int8":
        return None
    deqs = [m[p[f"d{n}_{i}"]] for i in range(n)]  # the matched dequantize calls, in tuple order
    try:
        so, zo = scalar(q.args[1]), int(scalar(q.args[2]))
        params = [(d.args[0], scalar(d.args[1]), int(scalar(d.args[2]))) for d in deqs]
    except ValueError:
        return None
    if any(dtype(x) != "int8" for x, _, _ in params):
        return None
    e = Emitter()
    ins = []
    for x, s, z in params:
        if (s, z) == (so, zo):
            ins.append(x)
        else:
            looked = table_lookup(x, requantize_table(s, z, so, zo))
            ins.append(e(looked))
    return e.finish(relax.op.concat(ins, axis=int(cat.attrs.axis)))


LOWERING = register(Lowering("concat", ("CONCATENATION",), pattern, rewrite))
