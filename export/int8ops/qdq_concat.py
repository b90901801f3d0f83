"""ONNX QDQ Concat: each input DequantizeLinear'd with its own parameters, concatenated, QuantizeLinear'd; an
input whose parameters equal the output's is taken as is, another one through a requantization table
(QuantizeLinear(DequantizeLinear(v)) in float32, as onnxruntime computes it), then an int8 concat."""

from __future__ import annotations

from .emit import Emitter, dtype
from .qdq_common import lookup, qparams
from .qdq_table import function_table
from .registry import Lowering, register

MAX_INPUTS = 8


def pattern():
    from tvm.relax.dpl import is_const, is_op, is_tuple, wildcard

    parts, alts = {}, None
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
    oq = qparams(q.args[1], q.args[2])
    out_dtype = str(q.attrs.out_dtype)
    if n is None or oq is None or out_dtype not in ("int8", "uint8"):
        return None
    deqs = [m[p[f"d{n}_{i}"]] for i in range(n)]
    params = [(d.args[0], qparams(d.args[1], d.args[2])) for d in deqs]
    if any(qp is None or dtype(x) not in ("int8", "uint8") for x, qp in params):
        return None
    e = Emitter()
    ins = [x if qp == oq and dtype(x) == out_dtype
           else e(lookup(x, function_table(dtype(x), *qp, lambda r: r, *oq, out_dtype))) for x, qp in params]
    return e.finish(relax.op.concat(ins, axis=int(cat.attrs.axis)))


LOWERING = register(Lowering("qdq_concat", ("Concat",), pattern, rewrite, source="onnx"))
