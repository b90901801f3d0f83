"""The int8 lowering pass: rewrite the TFLite importer's dequantize -> float op -> quantize patterns into the
integer arithmetic of TFLite's *reference* kernels (BUILTIN_REF).

Why: TVM's importer computes int8 models in float32 (weights stored as float32, a few LSB off TFLite). Each
operator's pattern, integer rewrite and numpy reference live in one module of `int8ops/` (see its
__init__ for the list); this module only runs them, in registration order, over `main`. What no lowering
matched stays on the float route: `float_ops` names it, and `check_integer` turns it into a clear error
for an int8 build.
"""

from __future__ import annotations

from cloudcover.train.errors import CloudcoverError

from .int8ops import lowerings
from .int8ops.ir import float_ops, int8_compute, kernel_float_dtypes  # noqa: F401  (the IR queries)


def is_quantized(mod) -> bool:
    """Whether `main` holds any quantize/dequantize (an int8 TFLite or ONNX QDQ model), by the Relax ops."""
    from tvm import ir, relax

    found = False

    @relax.expr_functor.visitor
    class _Visitor(relax.PyExprVisitor):
        def visit_call_(self, call):  # noqa: N802 (TVM's visitor method names)
            nonlocal found
            if isinstance(call.op, ir.Op) and call.op.name in ("relax.quantize", "relax.dequantize"):
                found = True
            super().visit_call_(call)

    _Visitor().visit_expr(mod["main"])
    if not found:  # a full-int8 model whose every op is integer already has int8 parameters
        found = any(str(getattr(p.ty, "dtype", "")) in ("int8", "uint8") for p in mod["main"].params)
    return found


def lower_int8(mod, log=None, source: str = "tflite"):
    """Return (module with integer compute where a pattern matched, {lowering name: number rewritten});
    `source` picks the lowerings of one format ("tflite": TFLite reference kernels; "onnx": ONNX QDQ)."""
    from tvm import relax
    from tvm.relax.dpl import rewrite_call

    counts: dict[str, int] = {}
    func = mod["main"]
    for low in lowerings(source):
        pat, parts = low.pattern()

        def rewriter(expr, matches, low=low, parts=parts):
            try:
                out = low.rewrite(matches, parts)
            except CloudcoverError:
                raise
            except Exception as exc:
                raise CloudcoverError(f"int8 lowering of {low.name} failed at {_where(expr)}: "
                                      f"{' '.join(str(exc).split())[:300]}") from exc
            if out is None:
                return expr
            counts[low.name] = counts.get(low.name, 0) + 1
            return out

        func = rewrite_call(pat, rewriter, func)
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod["main"] = func
    mod = relax.transform.DeadCodeElimination()(mod)
    mod = relax.transform.Normalize()(mod)
    return mod, counts


def _where(expr) -> str:
    span = getattr(expr, "span", None)
    return str(span) if span is not None else (expr.op.name if hasattr(expr, "op") else type(expr).__name__)
