"""Per-kernel multiply-accumulates of a lowered module, read from its TIR (for the per-kernel profile).

A kernel's MACs are the iteration domains of its reduction blocks whose body multiplies (conv2d, depthwise
conv2d, matmul/dense): the product of the block's iter-var extents, spatial and reduction. Reductions that only
add (sum, mean, average pooling) and the elementwise epilogues count no MACs, as in lowering.count_macs. Block
iter-var domains are those of the computation, not of its loops, so scheduling does not change them.
"""

from __future__ import annotations


def _has_mul(node) -> bool:
    import tvm_ffi
    from tvm import tirx

    found = False

    def visit(x, visitor):
        nonlocal found
        if isinstance(x, tirx.Mul):
            found = True
        return visitor.default_visit(x)

    tvm_ffi.structural_visit(node, visit)
    return found


def func_macs(func) -> int:
    """MACs of one TIR PrimFunc."""
    import tvm_ffi
    from tvm import s_tir, tirx

    total = 0

    def visit(x, visitor):
        nonlocal total
        if isinstance(x, s_tir.SBlock) and any(int(iv.iter_type) == tirx.IterVar.CommReduce for iv in x.iter_vars):
            if _has_mul(x.body):
                n = int(x.annotations.get("cloudcover_lanes", 1))  # a SWAR block does 2 MACs per iteration
                for iv in x.iter_vars:
                    n *= int(iv.dom.extent)
                total += n
        return visitor.default_visit(x)

    tvm_ffi.structural_visit(func.body, visit)
    return total


def kernel_macs(kernels) -> dict[str, int]:
    """Kernel name (global symbol) -> MACs per call, for every PrimFunc of `kernels`."""
    from tvm import tirx

    return {gv.name_hint: func_macs(f) for gv, f in kernels.functions.items() if isinstance(f, tirx.PrimFunc)}
