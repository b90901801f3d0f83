"""rv64gcv depthwise tiles: the tile's multiply-accumulate as RVV intrinsics, int16 operands, int32 sums.

The int8 lowering writes a depthwise MAC as acc += int32(x) * int32(w), x and w int8 (the input zero point is in
the bias). LLVM vectorizes it in int32 lanes (InstCombine turns an int16 product of int8 values back into an
int32 one): each input and weight vector sign-extended to int32 (vsext.vf4) and multiplied there, and where the
weights do not change along the pixel loop (one channel block per row: 48 channels in a 1 x 48 tile) LICM
hoists all of them as int32 groups, which do not fit the 32 vector registers: spilled, each reload a vlenb read,
address arithmetic and a whole-register load. Here the tile's channels are cut into chunks (32 lanes: int8 LMUL 2,
int16 LMUL 4, int32 accumulators LMUL 8; 48 as 24 + 24, one vl for both; a 16-lane rest at half those) and each
chunk is, over its 9 (KH x KW) taps, for the tile's pixels p:

    w_t = vsext.vf2(vle8(weights))                     int8 -> int16, once per tap for all the tile's pixels
    x_pt = vsext.vf2(vle8(input of pixel p))
    acc_p = vwmul.vv(x_p0, w_0); acc_p = vwmacc.vv(acc_p, x_pt, w_t)   int16 x int16 -> int32 (exact)
    store acc_p                                         (the epilogue, sched_rvv_epilogue, reads it back)

all at one vtype (e16: vle8 runs there too), the loads' addresses passed through llvm.launder.invariant.group so
LICM keeps them in the loop (two instructions per reload instead of a spill's six). The same int32 sum of the same
products as the lowering's (int8 products are exact in int16; TFLite's reference kernels sum them in int32 too).

Measured (riscv/kernel_bench's per-kernel profile, MobileNetV2 a0.35 96 x 96, rv64gcv VLEN 128; before: LLVM's
best recorded tile): 48 x 48 x 16 140,650 -> 112,896 (2 x 16: two pixels share each weight vector), 24 x 24 x 48
143,008 -> 103,397 (stride 1) and 149,406 -> ~107,000 (stride 2), 12 x 12 x 48 34,275 -> 26,587, 12 x 12 x 96
56,616 -> 46,474 (1 x 96), 6 x 6 x 144 22,202 -> 17,123 (2 x 48), 6 x 6 x 192 22,592 -> 19,555, 6 x 6 x 96
(stride 2) 15,588 -> 12,377, 3 x 3 x 336 13,687 -> 9,748 (3 x 16). "dwq" tiles keep LLVM's MACs (a shape where
they measure fewer instructions can record one).

`intrinsic_mac(func)` rewrites a "dw" tile whose reduction nest matches (the init and update blocks of one int32
accumulator, channels innermost and contiguous in input, weights and accumulator, a multiple of 16 of them, one
weight address for all the tile's pixels); the intrinsics sit in one block whose write region is the tile's
accumulators, and the init nest is replaced by one store to the tile's last accumulator, so buffer compaction
still sizes the local accumulator buffer to the whole tile (from address_of alone it would keep one element, and
the vector stores would overrun it); otherwise it raises _NoMatch and the tile stays LLVM's. rewrite_kernels
applies it to the marked kernels of the LLVM build only: the C sources (compile.py's workspace bound) are built
from the plain loops.
"""

from __future__ import annotations

LANES = 16  # int8 lanes of one register at VLEN 128 (int16: LMUL 2, int32 accumulators: LMUL 4)
WIDE = 32  # int8 lanes in LMUL 2 (int16: LMUL 4, int32 accumulators: LMUL 8)


class _NoMatch(Exception):
    pass


def intrinsic_mac(func):
    """`func` (a scheduled dw tile) with its init and update nests replaced by RVV intrinsics."""
    import tvm_ffi
    from tvm import ir, s_tir, tirx

    from .lowering import _collect

    realizes = _collect(func.body, lambda n: isinstance(n, s_tir.SBlockRealize))
    upd = [r for r in realizes if r.block.name_hint.endswith("_update")]
    ini = [r for r in realizes if r.block.name_hint.endswith("_init")]
    if len(upd) != 1 or len(ini) != 1:
        raise _NoMatch
    upd, ini = upd[0], ini[0]
    fors = _collect(func.body, lambda n: isinstance(n, tirx.For))

    def holds(f, node):
        return bool(_collect(f.body, lambda n: hasattr(n, "same_as") and n.same_as(node)))

    # the loops around the update block that do not hold the init block: the tile's reduction nest
    nest = [f for f in fors if holds(f, upd.block) and not holds(f, ini.block)]
    init_nest = [f for f in fors if holds(f, ini.block) and not holds(f, upd.block)]
    if not nest or not init_nest or any(not isinstance(f.extent, tirx.IntImm) for f in nest):
        raise _NoMatch
    store = upd.block.body
    if not isinstance(store, tirx.BufferStore) or str(store.buffer.ty.dtype) != "int32":
        raise _NoMatch
    val = store.value
    if (not isinstance(val, tirx.Add) or not isinstance(val.a, ir.TensorLoad) or not isinstance(val.b, tirx.Mul)
            or not val.a.source.same_as(store.buffer)):
        raise _NoMatch  # not acc += x * w
    prod = val.b
    if not all(isinstance(o, tirx.Cast) and str(o.value.ty) == "int8" and isinstance(o.value, ir.TensorLoad)
               for o in (prod.a, prod.b)):
        raise _NoMatch
    chan = nest[-1]  # innermost: the channel tile
    pc = int(chan.extent.value)
    if pc % LANES or not _int(chan.min, 0):
        raise _NoMatch
    outer = nest[:-1]
    red_ivs = [iv for iv in upd.block.iter_vars if int(iv.iter_type) != tirx.IterVar.DataPar]
    if len(red_ivs) < 2:
        raise _NoMatch
    sub_of_iv = dict(zip([iv.var for iv in upd.block.iter_vars], upd.iter_values))

    def bind(expr, consts):
        def on_var(v, m):
            for k, e in sub_of_iv.items():
                if v.same_as(k):
                    return m.mutate(e)
            for lv, c in consts:
                if v.same_as(lv):
                    return tirx.const(c, str(v.ty))
            return v

        from tvm import sym as arith

        return arith.Analyzer().simplify(tvm_ffi.structural_mutate(expr, [(ir.Var, on_var)]))

    def addr(load, consts):
        return tirx.address_of(tirx.BufferLoad(load.source, [bind(i, consts) for i in load.indices]))

    def contiguous(load) -> bool:
        """channel c + 1 is the element after c: only the last index moves, by one, over a compact buffer"""
        from tvm import sym as arith

        def offset(c):
            off = tirx.const(0, "int64")
            for i, ext in zip(load.indices, load.source.ty.shape):
                off = off * ext + bind(i, [(f.loop_var, int(f.min.value)) for f in outer] + [(chan.loop_var, c)])
            return off

        compact = load.source.ty.strides is None or not list(load.source.ty.strides)
        return compact and _int(arith.Analyzer().simplify(offset(1) - offset(0)), 1)

    if not all(contiguous(x) for x in (prod.a.value, prod.b.value, tirx.BufferLoad(store.buffer, store.indices))):
        raise _NoMatch
    # every intrinsic's pass-through: a never-written local (LLVM reads undef: tail-agnostic, no copy), allocated
    # by the root block (an AllocBuffer statement would trip the tree visitors of later rewrites)
    stmts, undef, bufs = [], {}, []

    def pass_through(dt):
        if dt not in undef:
            bufs.append(tirx.decl_buffer((1,), dt, f"dw_undef_{len(bufs)}", scope="local", layout=None))
            undef[dt] = tirx.BufferLoad(bufs[-1], [0])
        return undef[dt]

    count = [0]

    def let(dtype, value):
        count[0] += 1
        v = ir.Var(f"dw{count[0]}", dtype)
        stmts.append(tirx.Bind(v, value))
        return v

    # every combination of the outer nest's loops (taps, unit loops, the tile's pixels): constants
    combos = [[]]
    for f in outer:
        combos = [c + [(f.loop_var, int(f.min.value) + k)] for c in combos for k in range(int(f.extent.value))]
    chunks, c0 = [], 0
    even = 24 if pc % WIDE and pc % 24 == 0 else WIDE  # 48 = 24 + 24: one vl for every chunk (no vsetvli between)
    while c0 < pc:  # 32 lanes (int32 accumulators in LMUL 8) while they fit, then 16
        lanes = even if pc - c0 >= even else LANES
        chunks.append((c0, lanes))
        c0 += lanes
    # the accumulator an update writes (its tile pixel and chunk): group the combos by it
    by_acc: dict[str, tuple] = {}
    for c in combos:
        for c0, lanes in chunks:
            consts = c + [(chan.loop_var, c0)]
            idx = [bind(i, consts) for i in store.indices]
            by_acc.setdefault(str(idx), (tirx.BufferLoad(store.buffer, idx), lanes, []))[2].append(consts)
    if len(by_acc) % len(chunks):
        raise _NoMatch
    policy = tirx.const(3, "int64")  # tail and mask agnostic
    groups: dict[int, list] = {}  # chunk -> its accumulators (one per tile pixel): they share each tap's weights
    for target, lanes, taps in by_acc.values():
        key = str(taps[0][-1][1])  # the chunk's first channel (the last constant: the channel loop)
        groups.setdefault(key, []).append((target, lanes, taps))
    for entries in groups.values():
        lanes, taps0 = entries[0][1], entries[0][2]
        if len(taps0) < 2 or any(len(e[2]) != len(taps0) for e in entries):
            raise _NoMatch
        # the weight operand: the same address for every pixel of the tile at each tap (either, for one pixel)
        same = [all(str(addr(o.value, e[2][t])) == str(addr(o.value, taps0[t])) for e in entries
                    for t in range(len(taps0))) for o in (prod.a, prod.b)]
        if not any(same):
            raise _NoMatch
        w_op, x_op = (prod.b, prod.a) if same[1] else (prod.a, prod.b)
        n = 16 if lanes > LANES else 8  # vscale = VLEN / 64 = 2 at VLEN 128: n * vscale >= lanes
        v8, v16, v32 = f"int8xvscalex{n}", f"int16xvscalex{n}", f"int32xvscalex{n}"
        vlen = tirx.const(lanes, "int64")
        evl = tirx.const(lanes, "int32")
        ones = tirx.Broadcast(tirx.const(True, "bool"), tirx.vscale() * n)

        def sext(ptr):  # the launder keeps LICM from hoisting the (invariant) weight loads: they would spill
            ptr = tirx.call_llvm_intrin("handle", "llvm.launder.invariant.group", ptr)
            x8 = let(v8, tirx.call_llvm_intrin(v8, "llvm.vp.load", ptr, ones, evl))
            return let(v16, tirx.call_llvm_intrin(v16, "llvm.riscv.vsext", pass_through(v16), x8, vlen))

        accs = [None] * len(entries)
        for t in range(len(taps0)):
            w = sext(addr(w_op.value, taps0[t]))
            for k, e in enumerate(entries):
                x = sext(addr(x_op.value, e[2][t]))
                if accs[k] is None:
                    accs[k] = let(v32, tirx.call_llvm_intrin(v32, "llvm.riscv.vwmul", pass_through(v32), x, w, vlen))
                else:
                    accs[k] = let(v32, tirx.call_llvm_intrin(v32, "llvm.riscv.vwmacc", accs[k], x, w, vlen, policy))
        for acc, e in zip(accs, entries):
            stmts.append(tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.vp.store", acc, tirx.address_of(e[0]),
                                                             ones, evl)))
    # one block around the intrinsics whose write region is the tile's accumulators: buffer compaction sizes the
    # local accumulator buffer from block regions (address_of alone would leave it one element long)
    idxs = [[bind(i, c + [(chan.loop_var, c0)]) for i in store.indices] for c in combos for c0, _ in chunks]
    region = []
    for d, start in enumerate(idxs[0]):
        extent = pc if d == len(idxs[0]) - 1 else len({str(ix[d]) for ix in idxs})
        region.append(ir.Range(start, start + tirx.const(extent, str(start.ty))))
    written = ir.TensorRegion(store.buffer, region, upd.block.writes[0].ty)
    new = s_tir.SBlockRealize([], True, s_tir.SBlock([], [], [written], "dw_mac", tirx.SeqStmt(stmts)))
    top, top_init = nest[0], init_nest[0]

    def on_for(f, m):
        if f.same_as(top):
            return new
        if f.same_as(top_init):  # the tile's last accumulator written once: buffer compaction sizes the local
            # buffer from the accesses' bounding box (the intrinsics' address_of count as their first element only)
            return tirx.BufferStore(store.buffer, tirx.const(0, "int32"), [r.min + r.extent - 1 for r in region])
        return m.default_mutate(f)

    realize = func.body
    root = realize.block
    body = tvm_ffi.structural_mutate(root.body, [(tirx.For, on_for)])
    block = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, body, root.init,
                         list(root.alloc_buffers) + bufs, root.match_buffers, root.annotations)
    return func.with_body(s_tir.SBlockRealize(realize.iter_values, realize.predicate, block))


def rewrite_kernels(kernels, llvm: dict):
    """The LLVM build's kernel module: on a vector target every dw tile sched_depthwise marked
    ("cloudcover_dw_mac") gets intrinsic_mac where it matches (C sources, built from the module before, keep the
    plain loops: the intrinsics exist for LLVM only)."""
    import tvm
    from tvm import tirx

    from .sched_depthwise import MAC_ATTR

    if "+v" not in llvm.get("mattr", []):
        return kernels
    out = {}
    for gv, f in kernels.functions.items():
        if isinstance(f, tirx.PrimFunc) and f.attrs is not None and MAC_ATTR in f.attrs:
            try:
                f = intrinsic_mac(f)
            except _NoMatch:
                pass
        out[gv] = f
    return tvm.IRModule(out, attrs=kernels.attrs)


def _int(e, value: int) -> bool:
    from tvm import tirx

    return isinstance(e, tirx.IntImm) and int(e.value) == value
