"""Store int64 constant vectors (requantization multipliers, shifts, rounding halves, biases) as int32.

The int8 lowering computes its requantization in int64 (x * multiplier needs 62 bits), so its per-channel
vectors arrive as int64 constants; Relax's FoldConstant would fold any int32 -> int64 cast of a constant back
into an int64 constant. Here, after lowering, every int64 constant whose values all fit in int32 - at every call
site of the kernel that reads it - becomes an int32 constant, and the kernel's parameter becomes an int32
buffer whose loads are sign-extended to int64 (`lw` on riscv64: the same one load). The arithmetic is
unchanged, so the result is bit for bit the same; the weights shrink by 4 bytes per value.
"""

from __future__ import annotations

import numpy as np

from .lowering import Graph

I32 = np.iinfo(np.int32)


def _fits(data: np.ndarray) -> bool:
    return data.dtype == np.int64 and (data.size == 0 or (int(data.min()) >= I32.min and int(data.max()) <= I32.max))


def narrow_func(func, index: int):
    """`func` with parameter `index` (an int64 buffer) made int32 and every load of it cast to int64."""
    import tvm_ffi
    from tvm import ir, tirx

    old = func.params[index]
    t = old.ty
    new = ir.Var(old.name, tirx.BufferType("int32", t.storage_scope, t.shape, t.strides, t.elem_offset,
                                           t.data_alignment, t.offset_factor, t.layout, t.allocated_addr))

    def on_load(v, m):
        if v.source.same_as(old):
            return tirx.Cast("int64", tirx.BufferLoad(new, [m.mutate(i) for i in v.indices]))
        return m.default_mutate(v)

    def on_var(v, m):
        return new if v.same_as(old) else v

    body = tvm_ffi.structural_mutate(func.body, [(ir.TensorLoad, on_load), (ir.Var, on_var)])
    params = [new if p.same_as(old) else p for p in func.params]
    return tirx.PrimFunc(params, body, func.ret_type, func.attrs)


def narrow_constants(graph: Graph, kernels):
    """(graph, kernels) with every int64 constant argument that fits int32 at all call sites narrowed; the graph's
    Tensor data and the kernels' parameters change together. Returns new objects (the graph in place)."""
    import tvm

    ok: dict[tuple[str, int], bool] = {}
    for st in graph.steps:
        for pos, ti in enumerate(st.args):
            t = graph.tensors[ti]
            if t.dtype == "int64":
                key = (st.kernel, pos)
                ok[key] = ok.get(key, True) and t.kind == "const" and _fits(t.data)
    chosen = {k for k, v in ok.items() if v}
    if not chosen:
        return graph, kernels
    funcs = {gv.name_hint: (gv, f) for gv, f in kernels.functions.items()}
    new = dict(kernels.functions.items())
    for name in {k for k, _ in chosen}:
        gv, f = funcs[name]
        for pos in sorted(p for k, p in chosen if k == name):
            f = narrow_func(f, pos)
        new[gv] = f
    for st in graph.steps:
        for pos, ti in enumerate(st.args):
            t = graph.tensors[ti]
            if (st.kernel, pos) in chosen and t.dtype == "int64":
                t.data = t.data.astype(np.int32)
                t.dtype = "int32"
    return graph, tvm.IRModule(new)
