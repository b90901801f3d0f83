"""ONNX QDQ Concat: each input DequantizeLinear'd with its own parameters, concatenated, QuantizeLinear'd; an
input whose parameters equal the output's is taken as is, another one through a requantization table
(QuantizeLinear(DequantizeLinear(v)) in float32, as onnxruntime computes it), then an int8 concat."""

from __future__ import annotations

from .concat import MAX_INPUTS, pattern
from .emit import Emitter, dtype
from .qdq_common import lookup, qparams
from .qdq_table import function_table
from .registry import Lowering, register

# the same dequantize-tuple -> concat -> quantize pattern as TFLite's CONCATENATION; only the rewrite differs


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
