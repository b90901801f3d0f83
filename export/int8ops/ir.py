"""Questions asked of TVM IR with TVM's visitors and dtype enums (never by searching printed TVMScript).

- `float_ops`: which Relax operators of `main` still compute in floating point (the float route);
- `kernel_float_dtypes` / `int8_compute`: which lowered TIR kernels touch a floating-point value at all
  (a buffer, a cast, a literal), walked with tvm_ffi's structural visitor (TVM 0.27 has no Python TIR
  visitor); `int8_compute` is the one definition compile.py writes to model.json and the report reads.
"""

from __future__ import annotations

QDQ_OPS = ("relax.dequantize", "relax.quantize")  # the boundary ops of the float route, not compute


def is_float(dtype) -> bool:
    """A floating-point dtype (float16/32/64, bfloat16, float8 ...), by TVM's DataType, not by its name."""
    import tvm

    try:
        return bool(tvm.DataType(str(dtype)).is_float)
    except Exception:  # '' or a non-tensor type
        return False


def float_ops(mod) -> list[str]:
    """Operators of `main` whose result is a floating-point tensor (quantize/dequantize excepted)."""
    from tvm import ir, relax

    left: set[str] = set()

    @relax.expr_functor.visitor
    class _Visitor(relax.PyExprVisitor):
        def visit_call_(self, call):  # noqa: N802 (TVM's visitor method names)
            if isinstance(call.op, ir.Op) and call.op.name not in QDQ_OPS:
                if is_float(getattr(call.ty, "dtype", "")):
                    left.add(call.op.name.removeprefix("relax."))
            super().visit_call_(call)

    _Visitor().visit_expr(mod["main"])
    return sorted(left)


def kernel_float_dtypes(kernels) -> dict[str, set[str]]:
    """{kernel name: floating-point dtypes it uses} for every TIR PrimFunc that uses any: buffer parameters
    and every expression (loads, casts, literals) visited."""
    import tvm_ffi
    from tvm import tirx

    found: dict[str, set[str]] = {}
    for gv, func in kernels.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        dts: set[str] = set()

        def visit(node, visitor, dts=dts):
            for attr in ("dtype", "ty"):  # buffers/types carry .dtype, expressions a PrimType in .ty
                d = getattr(node, attr, None)
                d = getattr(d, "dtype", d) if attr == "ty" else d
                if d is not None and not isinstance(d, (tvm_ffi.Object,)) and is_float(d):
                    dts.add(str(d))
            return visitor.default_visit(node)

        tvm_ffi.structural_visit(func, visit)
        if dts:
            found[gv.name_hint] = dts
    return found


def int8_compute(kernels) -> bool:
    """True when no lowered kernel touches a floating-point value: the model computes wholly in integers."""
    return not kernel_float_dtypes(kernels)
