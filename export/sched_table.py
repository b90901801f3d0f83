"""Scalar (rv64gc) schedule family: an int8 -> int8 elementwise kernel as a per-channel 256-entry table.

A kernel that maps each element of one int8 tensor through integer arithmetic with per-channel constants
(a model's input Rescaling/Normalization: two or three requantizations, ~30 instructions per element) has at
most 256 x C distinct results. Here its blocks are inlined into one expression f(x, params[c]); the kernel first
evaluates f for every int8 value and channel into a local table lut[c, x + 128] (the same TIR expression, so the
same integers), then looks each element up: load, add, load, store. Taken when the tensor has at least
MIN_REUSE x 256 elements per channel, so the table's 256 x C evaluations cost a fraction of what they replace.

Anything else (a reduction, several data inputs, an element that depends on its neighbours, a non-int8 input
or output, a constant indexed by more than the channel) is declined (None) and keeps lowering's schedule.
On rv64gcv the elementwise kernels are vectorized by LLVM and this family is not used.
"""

from __future__ import annotations

MIN_REUSE = 4  # elements per channel per table entry below which the table is not built
TABLE = 256


def schedule(func, found, vector: bool, choose):
    """The table form of `func` when it is an int8 -> int8 elementwise kernel with per-channel constants."""
    if vector or found is not None:
        return None
    try:
        return tabulate(func)
    except _Declined:
        return None


class _Declined(Exception):
    pass


def _uses(expr, var) -> bool:
    from .lowering import _count

    return _count(expr, lambda n: n.same_as(var)) > 0


def tabulate(func):
    """`func` rewritten as table build + lookup; raises _Declined when it is not such a kernel."""
    import tvm
    import tvm_ffi
    from tvm import ir, s_tir, tirx

    from .lowering import _collect, _is_load
    from .sched_swar import _nest

    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    outs = sch.get_output_blocks(root)
    if len(outs) != 1:
        raise _Declined("several outputs")
    try:
        for b in reversed(sch.get_child_blocks(root)):
            if not sch.get(b).same_as(sch.get(outs[0])):
                sch.compute_inline(b)
    except s_tir.ScheduleError as exc:
        raise _Declined("a block does not inline") from exc
    if len(sch.get_child_blocks(root)) != 1:
        raise _Declined("blocks left")
    blk = sch.get(outs[0])
    st = blk.body
    ivs = list(blk.iter_vars)
    if (not isinstance(st, tirx.BufferStore) or blk.init is not None or str(st.buffer.ty.dtype) != "int8"
            or any(int(iv.iter_type) != tirx.IterVar.DataPar for iv in ivs) or len(ivs) < 2
            or len(st.indices) != len(ivs) or not all(i.same_as(iv.var) for i, iv in zip(st.indices, ivs))):
        raise _Declined("not an elementwise int8 store over its iterators")
    params = [p for p in func.params if isinstance(p.ty, tirx.BufferType)]
    loads = _collect(st.value, _is_load)
    data = [ld for ld in loads if len(ld.indices) == len(ivs) and all(i.same_as(iv.var) for i, iv in
                                                                        zip(ld.indices, ivs))]
    if not data or any(not d.source.same_as(data[0].source) for d in data) or str(data[0].ty) != "int8":
        raise _Declined("not one int8 data input read at the output's element")
    xbuf = data[0].source
    chan = ivs[-1].var
    for ld in loads:
        if ld.source.same_as(xbuf):
            if not any(ld.same_as(d) for d in data):
                raise _Declined("the data input read at another element")
        elif not any(ld.source.same_as(p) for p in params):
            raise _Declined("reads a buffer that is not a parameter")
    n_c = int(ivs[-1].dom.extent)
    total = 1
    for iv in ivs:
        total *= int(iv.dom.extent)
    if total < MIN_REUSE * TABLE * n_c:
        raise _Declined("too few elements per channel for a table")

    i64 = "int64"
    lut = tirx.decl_buffer([n_c, TABLE], "int8", name="lut")
    c, t = tirx.Var("v_c", i64), tirx.Var("v_t", i64)
    an = tvm.sym.Analyzer()
    an.bind(chan, c)
    for iv in ivs[:-1]:
        if int(iv.dom.extent) == 1:
            an.bind(iv.var, tirx.const(0, str(iv.var.ty)))
    xval = tirx.Cast("int8", t - tirx.const(128, i64))

    def on_load(ld, m):
        if ld.source.same_as(xbuf):
            return xval
        ld = m.default_mutate(ld)  # (a table lookup's index holds the data load)
        return tirx.BufferLoad(ld.source, [an.simplify(i) for i in ld.indices])

    value = tvm_ffi.structural_mutate(st.value, [(ir.TensorLoad, on_load)])
    if any(_uses(value, iv.var) for iv in ivs):  # a constant indexed by more than the channel, a position
        raise _Declined("the value depends on the element's position")
    bmap = {b: b for b in params + [lut]}

    def block(name, iters, body):
        tmp = s_tir.SBlock(iters, [], [], name, body)
        reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
        return s_tir.SBlock(iters, reads, writes, name, body)

    tab_ivs = [tirx.IterVar(tvm.ir.Range(0, tirx.const(n_c, i64)), c, tirx.IterVar.DataPar),
               tirx.IterVar(tvm.ir.Range(0, tirx.const(TABLE, i64)), t, tirx.IterVar.DataPar)]
    tab = _nest(block("lut_build", tab_ivs, tirx.BufferStore(lut, value, [c, t])), [n_c, TABLE], i64)
    idx = tirx.Cast(i64, tirx.BufferLoad(xbuf, list(st.indices))) + tirx.const(128, i64)
    look = tirx.BufferStore(st.buffer, tirx.BufferLoad(lut, [chan, idx]), list(st.indices))
    main = _nest(block("lut_lookup", ivs, look), [int(iv.dom.extent) for iv in ivs], i64)
    body = tirx.SeqStmt([tab, main])
    rblock = s_tir.SBlock([], [], [], "root", body, None, [lut])
    out = func.with_body(s_tir.SBlockRealize([], True, rblock))
    return out.with_attr("cloudcover_tile", "lut")
