"""Scalar (rv64gc) requantization epilogue in 5 integer ops per output, its constants derived once per kernel.

The int8 lowering ends a conv/matmul in TFLite's double-rounding requantization (emit.mbqm, the form of
requant.mbqm_short with every channel's right shift > 0):

    x = acc + bias[c]                                  # int32 values in int64
    y = (x * m[c] + 2^30) >> 31                        # SaturatingRoundingDoublingHighMul (m < 2^31)
    z = (y + half[c] + (y >> 63)) >> r[c]              # RoundingDivideByPOT, half away from 0 (half = 2^(r-1))
    out = clamp(z + zp) -> int8

Per output that is 8 ops and 4 per-channel constants (+ the 2^30 constant). Two floors nest into one,
floor((floor(a / 2^31) + d) / 2^r) = floor((a + d * 2^31) / 2^(31+r)) for integers a, d, so

    z = (x * m + 2^30 + (half - [y < 0]) * 2^31) >> (31 + r)

and y < 0 exactly when x * m + 2^30 < 0, i.e. when x < t with t = -floor(2^30 / m) (m > 0; never for m = 0):
t = 0 for every m > 2^30, t = -1 for m = 2^30 (a power-of-two scale ratio). With x' = acc + bias'[c],
bias' = bias - t, the sign test is x' < 0, and for x' in int32 -2^31 * [x' < 0] is the single op x' & -2^31:

    x' = acc + bias'[c]
    z  = (x' * m[c] + k[c] + (x' & -2^31)) >> s[c]
    k = 2^30 + half * 2^31 + t * m,  s = r + 31

(for m = 0, t = 0: z = (2^30 + half * 2^31 - 2^31 [x' < 0]) >> (31 + r) = 0, as the original form gives.)

5 ops instead of 8 and one constant fewer, equal to requant.multiply_by_quantized_multiplier for every x' in
int32 (tests/riscv/test_sched_requant.py; |x' * m + k| < 2^63 for r <= 31). The derived vectors bias', k, s
are computed from the kernel's own parameters by a loop over the channels put first in the kernel (C int64
values each, a few instructions per channel per call), so the kernel's signature and the weights are unchanged.

Where the accumulator is a buffer of its own set to 0 before the reduction, it starts at bias' instead (int32;
SWAR lanes of one channel: bias' * (1 + 2^32); of two channels: bias'[2q] + bias'[2q+1] << 32), so x' is the
decoded accumulator itself: 4 ops per output (mul, add, and, add) and the shift.

Behind a ReLU / ReLU6 (the output clamp's floor at or above the zero point) the sign term is dropped: the
result differs only where the double rounding is negative, and both give the floor there; the bias then folds
into k (z = (acc * m + kb) >> s: mul, add, shift), on reductions up to SHORT_REDUCTION (longer ones measured
slower with it: LLVM schedules their big unrolled tiles differently). Every output clamp(z + zp, lo, hi) becomes
one unsigned compare of u = z + zp - lo with hi - lo and a branch marked likely (in range: store u + lo; else
the bound on u's side) instead of the branchless clamp (~5 ops without Zbb's min/max). MobileNetV2 rv64gc
(kernel_bench, 0 LSB): 31.41 M -> 28.55 M instructions with both (floor form 1.66 M, clamp branch 1.20 M).

`rewrite(func)` applies this to a scheduled kernel whose epilogue has exactly that form (blocks found by the
pattern of their stored values); any other kernel is returned unchanged. Used on rv64gc only: on rv64gcv the
epilogue is vectorized across channels (sched_rvv) and is left as it is. Measured with riscv/kernel_bench
(rv64gc, 0 LSB): MobileNetV2 34.45 M -> 33.80 M instructions per inference with the fold alone, -0.2 M more with
the bias in the accumulator; per-call derivation costs ~25 instructions a channel, so kernels with fewer than
MIN_PIXELS outputs per channel keep the original epilogue (measured slower on 3 x 3 maps; 6 x 6 maps gain where the
reduction is short, K <= 32, and lost 0.4 % on edge_cnn's long-reduction 6 x 6 layers).
"""

from __future__ import annotations

import numpy as np

ROUND = 1 << 30
LANE = 31
MASK = -(1 << LANE)  # x & MASK = -2^31 * [x < 0] for int32 x
# MobileNetV2's 1x1 convs over 8 channels in SWAR pixel-pair tiles (2 x 6) measured slower with the accumulators
# started at the bias (LLVM spills more: 3.87 -> 4.40 instructions/MAC); in channel-pair tiles ("swarco") and on
# every longer reduction it measured faster (kernel_bench)
MIN_INIT_REDUCTION = 8
MIN_PIXELS = 64  # outputs per channel below which the per-call derivation (~25 instructions a channel) does not pay
MIN_PIXELS_SHORT, SHORT_REDUCTION = 16, 32  # ... and for reductions this short (the epilogue weighs more): 6 x 6 maps


def derived(bias, mult, half, right):
    """numpy: (bias', k, mask, s) from the lowering's per-channel (bias, multiplier, half, right shift)."""
    bias, mult, half, right = (np.asarray(v, np.int64) for v in (bias, mult, half, right))
    q = np.where(mult > 0, ROUND // np.maximum(mult, 1), 0)  # -t
    return bias + q, ROUND + half * (1 << LANE) - q * mult, np.full_like(mult, MASK), right + LANE


def requant5(acc, bias_d, mult, k, mask, s):
    """numpy: z = (x' * m + k + (x' & mask)) >> s with x' = acc + bias' (all int64)."""
    x = np.asarray(acc, np.int64) + np.asarray(bias_d, np.int64)
    return (x * np.asarray(mult, np.int64) + k + (x & np.asarray(mask, np.int64))) >> np.asarray(s, np.int64)


def requant_floor(acc, bias, mult, half, right):
    """numpy: the floor form, z = (acc * m + kb) >> s with kb = 2^30 + half * 2^31 + bias * m, s = r + 31: equal
    to the double rounding when that is >= 0, and <= 0 when it is < 0 (then a floor at the zero point gives
    the same output)."""
    acc, bias, mult, half, right = (np.asarray(v, np.int64) for v in (acc, bias, mult, half, right))
    return (acc * mult + (ROUND + half * (1 << LANE) + bias * mult)) >> (right + LANE)


class _NoMatch(Exception):
    pass


def _is_int(e, value: int) -> bool:
    from tvm import tirx

    return isinstance(e, tirx.IntImm) and int(e.value) == value


def _param_load(e, params) -> bool:
    """A load of a 1-D int64 kernel parameter (a per-channel constant vector)."""
    from tvm import ir

    return (isinstance(e, ir.TensorLoad) and len(e.indices) == 1 and str(e.ty) == "int64"
            and any(e.source.same_as(p) for p in params))


def _match_y(value, params):
    """((A + B[c]) * M[c] + 2^30) >> 31 -> (A, B load, M load)."""
    from tvm import tirx

    if not (isinstance(value, tirx.RShift) and _is_int(value.b, LANE)):
        raise _NoMatch
    add = value.a
    if not (isinstance(add, tirx.Add) and _is_int(add.b, ROUND) and isinstance(add.a, tirx.Mul)):
        raise _NoMatch
    mul = add.a
    if not (isinstance(mul.a, tirx.Add) and _param_load(mul.b, params) and _param_load(mul.a.b, params)):
        raise _NoMatch
    return mul.a.a, mul.a.b, mul.b


def _match_z(e, ybuf, params):
    """(Y + H[c] + (Y >> 63)) >> S[c] with Y loads of `ybuf` -> (Y load, H load, S load); else None."""
    from tvm import ir, tirx

    if not (isinstance(e, tirx.RShift) and _param_load(e.b, params) and isinstance(e.a, tirx.Add)):
        return None
    outer = e.a
    if not (isinstance(outer.a, tirx.Add) and isinstance(outer.b, tirx.RShift) and _is_int(outer.b.b, 63)):
        return None
    y, h, y2 = outer.a.a, outer.a.b, outer.b.a
    for load in (y, y2):
        if not (isinstance(load, ir.TensorLoad) and load.source.same_as(ybuf)):
            return None
    if not (_param_load(h, params) and len(y.indices) == len(y2.indices)
            and all(a.same_as(b) for a, b in zip(y.indices, y2.indices))):
        return None
    return y, h, e.b


def rewrite(func):
    """`func` with its requantization epilogue in the 5-op form, or `func` unchanged when it has none."""
    try:
        return _rewrite(func)
    except _NoMatch:
        pass
    try:
        return _rewrite_in_place(func)
    except _NoMatch:
        return func


def _rewrite_in_place(func):
    """Where the derived constants do not pay (few outputs per channel): the same epilogue without them, its
    sign term dropped behind a zero-point floor ((Y + H) >> S) and its clamp as the one-compare branch."""
    import tvm_ffi
    from tvm import s_tir, tirx

    _, _, _, (zblock, zexpr, yload, hload, sload) = find_epilogue(func, _match_y, _match_z)
    zval = tirx.shift_right(yload + hload, sload) if clamped_below_zero_point(zblock.body.value, zexpr) else zexpr
    zstore = branch_clamp(zblock.body, zexpr, zval)
    if zstore is None:
        raise _NoMatch
    params = [p for p in func.params if isinstance(p.ty, tirx.BufferType)]
    bmap = {b: b for b in params + list(func.body.block.alloc_buffers)}
    tmp = s_tir.SBlock(zblock.iter_vars, [], [], zblock.name_hint, zstore, zblock.init)
    reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
    nb = s_tir.SBlock(zblock.iter_vars, reads, writes, zblock.name_hint, zstore, zblock.init,
                      list(zblock.alloc_buffers), list(zblock.match_buffers), zblock.annotations)

    def on_block(b, m):
        return nb if b.same_as(zblock) else m.default_mutate(b)

    realize = func.body
    root = realize.block
    body = tvm_ffi.structural_mutate(root.body, [(s_tir.SBlock, on_block)])
    block = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, body, root.init,
                         list(root.alloc_buffers), root.match_buffers, root.annotations)
    return func.with_body(s_tir.SBlockRealize(realize.iter_values, realize.predicate, block))


def find_epilogue(func, match_y, match_z):
    """(params, blocks, (y block, *match_y), (z block, z expression, *match_z)) for the one block storing the
    SaturatingRoundingDoublingHighMul step (`match_y(value, params)` raises _NoMatch on others) and the one block
    whose stored value contains the RoundingDivideByPOT step reading its buffer (`match_z(expr, ybuf, params)`,
    None on others); raises _NoMatch unless each is found exactly once. Shared with sched_rvv_epilogue."""
    from tvm import tirx

    from .lowering import _collect, _first, _is_block

    params = [p for p in func.params if isinstance(p.ty, tirx.BufferType)]
    blocks = _collect(func.body, _is_block)
    ys = []
    for b in blocks:
        if isinstance(b.body, tirx.BufferStore):
            try:
                ys.append((b, *match_y(b.body.value, params)))
            except _NoMatch:
                pass
    if len(ys) != 1:
        raise _NoMatch
    ybuf = ys[0][0].body.buffer
    zs = []
    for b in blocks:
        if b.same_as(ys[0][0]) or not isinstance(b.body, tirx.BufferStore):
            continue
        hit = _first(b.body.value, lambda e: match_z(e, ybuf, params))
        if hit is not None:
            zs.append((b, hit[0], *hit[1]))
    if len(zs) != 1:
        raise _NoMatch
    return params, blocks, ys[0], zs[0]


def _rewrite(func):
    import tvm
    import tvm_ffi
    from tvm import ir, s_tir, tirx

    from .lowering import _count

    params, blocks, (yblock, acc, bload, mload), (zblock, zexpr, yload, hload, sload) = \
        find_epilogue(func, _match_y, _match_z)
    acc, offset = _peel_offset(acc)
    ybuf = yblock.body.buffer
    # the intermediate is read nowhere else (then its new value, the 5-op sum before the shift, is private)
    if _count(func.body, lambda n: isinstance(n, ir.TensorLoad) and n.source.same_as(ybuf)) != 2:
        raise _NoMatch
    vec = [bload.source, mload.source, hload.source, sload.source]
    n = int(vec[0].ty.shape[0])
    if any(len(v.ty.shape) != 1 or int(v.ty.shape[0]) != n for v in vec):
        raise _NoMatch
    bvec, mvec, hvec, svec = vec
    size = 1
    for d in params[-1].ty.shape:
        size *= int(d)
    short = _reduction_length(blocks) <= SHORT_REDUCTION
    if size < (MIN_PIXELS_SHORT if short else MIN_PIXELS) * n:
        raise _NoMatch  # few outputs per channel (a 3 x 3 map): the original epilogue costs less in all

    i64 = "int64"
    names = ("rq_bias", "rq_k", "rq_shift", "rq_bias2", "rq_kb")
    new = {nm: tirx.decl_buffer([n], i64, name=nm) for nm in names}

    def load(buf, like):
        return tirx.BufferLoad(buf, list(like.indices))

    # y < 0 gives the clamp's floor either way: no sign term, the bias folded into k (mul, add). Short reductions
    # only: on long ones (ResNet/UNet 3x3 convs in 6 x 4 tiles) the smaller epilogue measured slower (LLVM
    # schedules the unrolled tile differently and spills), as did the bias in the accumulator with it
    floor = short and clamped_below_zero_point(zblock.body.value, zexpr)
    init = None if floor else _bias_in_init(blocks, acc, n, new["rq_bias"], new["rq_bias2"])
    if floor:
        yval = acc * mload + load(new["rq_kb"], bload)
    else:
        xp = acc if init is not None else acc + load(new["rq_bias"], bload)
        yval = xp * mload + load(new["rq_k"], bload) + tirx.bitwise_and(xp, tirx.const(MASK, i64))
    zval = tirx.shift_right(yload, load(new["rq_shift"], sload))

    allbufs = params + list(func.body.block.alloc_buffers) + list(new.values())
    bmap = {b: b for b in allbufs}

    def reblock(b, store):
        tmp = s_tir.SBlock(b.iter_vars, [], [], b.name_hint, store, b.init)
        reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
        return s_tir.SBlock(b.iter_vars, reads, writes, b.name_hint, store, b.init, list(b.alloc_buffers),
                            list(b.match_buffers), b.annotations)

    def on_expr(e, m):
        return zval if e.same_as(zexpr) else m.default_mutate(e)

    ystore = tirx.BufferStore(ybuf, yval, list(yblock.body.indices))
    zstore = branch_clamp(zblock.body, zexpr, zval)
    if zstore is None:
        zstore = tvm_ffi.structural_mutate(zblock.body, [(tirx.RShift, on_expr)])
    repl = {yblock: reblock(yblock, ystore), zblock: reblock(zblock, zstore)}
    if init is not None:
        repl[init[0]] = reblock(init[0], init[1])

    def on_block(b, m):
        for old, nb in repl.items():
            if b.same_as(old):
                return nb
        return m.default_mutate(b)

    realize = func.body
    root = realize.block
    body = tvm_ffi.structural_mutate(root.body, [(s_tir.SBlock, on_block)])

    # the derived vectors, once per call: one loop over the channels before everything else
    c = tirx.Var("v_c", i64)
    mv = tirx.BufferLoad(mvec, [c])
    bv = tirx.BufferLoad(bvec, [c]) + tirx.const(offset, i64) if offset else tirx.BufferLoad(bvec, [c])
    pos = tirx.Cast(i64, mv > tirx.const(0, i64))
    q = tirx.floordiv(tirx.const(ROUND, i64), tirx.max(mv, tirx.const(1, i64))) * pos
    stores = [
        tirx.BufferStore(new["rq_bias"], bv + q, [c]),
        tirx.BufferStore(new["rq_bias2"], (bv + q) * tirx.const((1 << 32) + 1, i64), [c]),
        tirx.BufferStore(new["rq_k"], tirx.const(ROUND, i64) + tirx.shift_left(tirx.BufferLoad(hvec, [c]),
                                                                                  tirx.const(LANE, i64)) - q * mv, [c]),
        tirx.BufferStore(new["rq_shift"], tirx.BufferLoad(svec, [c]) + tirx.const(LANE, i64), [c]),
        tirx.BufferStore(new["rq_kb"], tirx.const(ROUND, i64) + tirx.shift_left(tirx.BufferLoad(hvec, [c]),
                                                                                   tirx.const(LANE, i64))
                         + bv * mv, [c]),
    ]
    ivs = [tirx.IterVar(tvm.ir.Range(0, tirx.const(n, i64)), c, tirx.IterVar.DataPar)]
    pre_body = tirx.SeqStmt(stores)
    tmp = s_tir.SBlock(ivs, [], [], "rq_derive", pre_body)
    reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
    pre_block = s_tir.SBlock(ivs, reads, writes, "rq_derive", pre_body)
    lv = tirx.Var("l_c", i64)
    pre = tirx.For(lv, tirx.const(0, i64), tirx.const(n, i64), tirx.ForKind.SERIAL,
                   s_tir.SBlockRealize([lv], True, pre_block))
    items = [pre] + (list(body.seq) if isinstance(body, tirx.SeqStmt) else [body])
    block = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, tirx.SeqStmt(items), root.init,
                         list(root.alloc_buffers) + list(new.values()), root.match_buffers, root.annotations)
    return func.with_body(s_tir.SBlockRealize(realize.iter_values, realize.predicate, block))


def _peel_offset(a):
    """(E, c) when the accumulator `a` is int64(int32(E - c')) with c = -c' and E - c' provably in int32 (the
    SWAR three-lane decode: a lane field minus its offset), so the offset folds into the per-channel bias;
    else (a, 0)."""
    import tvm
    from tvm import tirx

    if not (isinstance(a, tirx.Cast) and str(a.ty) == "int64" and isinstance(a.value, tirx.Cast)
            and str(a.value.ty) == "int32" and isinstance(a.value.value, tirx.Sub)):
        return a, 0
    sub = a.value.value
    if str(sub.ty) != "int64" or not isinstance(sub.b, tirx.IntImm):
        return a, 0
    lo, hi = _bound(sub.a, tvm.sym.Analyzer())
    c = int(sub.b.value)
    if lo - c < -(1 << 31) or hi - c >= 1 << 31:
        return a, 0
    return sub.a, -c


def _bound(e, analyzer) -> tuple[int, int]:
    """Integer bounds of an int64 expression: TVM's analyzer, plus arithmetic right shifts by a constant and
    selects (which it leaves unbounded for an int64 load)."""
    from tvm import tirx

    if isinstance(e, tirx.Cast) and str(e.ty) == "int64" and str(e.value.ty) == "uint64":
        lo, hi = _bound(e.value, analyzer)
        return (lo, hi) if hi < 1 << 63 else (-(1 << 63), (1 << 63) - 1)
    if isinstance(e, tirx.RShift) and isinstance(e.b, tirx.IntImm) and 0 <= int(e.b.value) < 64 \
            and str(e.ty) == "uint64":
        return 0, (1 << (64 - int(e.b.value))) - 1
    if isinstance(e, tirx.RShift) and isinstance(e.b, tirx.IntImm) and 0 <= int(e.b.value) < 64:
        lo, hi = _bound(e.a, analyzer)
        return lo >> int(e.b.value), hi >> int(e.b.value)
    if isinstance(e, tirx.Select):
        (a, b), (c, d) = _bound(e.true_value, analyzer), _bound(e.false_value, analyzer)
        return min(a, c), max(b, d)
    b = analyzer.const_int_bound(e)
    return int(b.min_value), int(b.max_value)


def _path(e, target) -> list | None:
    """The nodes from `e` down to `target` through Min/Max/Add/Sub/Cast nodes, or None."""
    from tvm import tirx

    if e.same_as(target):
        return [e]
    if isinstance(e, (tirx.Min, tirx.Max, tirx.Add, tirx.Sub)):
        kids = (e.a, e.b)
    elif isinstance(e, tirx.Cast):
        kids = (e.value,)
    else:
        return None
    for k in kids:
        p = _path(k, target)
        if p is not None:
            return [e] + p
    return None


def clamped_below_zero_point(value, zexpr) -> bool:
    """Whether the output `value` is clamp(zexpr + zp) with a floor at or above zp applied before any narrowing
    (ReLU / ReLU6 fused: the floor is the zero point). Then every zexpr <= 0 gives the floor, and so does
    every y < 0 with or without the sign term: (y + half) >> r <= 0 for y < 0 since half < 2^r."""
    from tvm import tirx

    path = _path(value, zexpr)
    if path is None or _count_same(value, zexpr) != 1:
        return False
    i, zp = len(path) - 2, 0
    if i >= 0 and isinstance(path[i], (tirx.Add, tirx.Sub)) and path[i].a.same_as(path[i + 1]) \
            and isinstance(path[i].b, tirx.IntImm):
        zp = int(path[i].b.value) * (1 if isinstance(path[i], tirx.Add) else -1)
        i -= 1
    while i >= 0 and isinstance(path[i], (tirx.Min, tirx.Max)) and str(path[i].ty) == str(zexpr.ty):
        node = path[i]
        other = node.b if node.a.same_as(path[i + 1]) else node.a
        if isinstance(node, tirx.Max) and isinstance(other, tirx.IntImm) and int(other.value) >= zp:
            return True
        if not isinstance(other, tirx.IntImm):
            return False
        i -= 1
    return False


def output_clamp(value, zexpr):
    """(offset, lo, hi) when `value` is clamp(zexpr + offset, lo, hi) (constant adds, min/max, casts that
    cannot wrap on the clamped range), else None."""
    from tvm import tirx

    path = _path(value, zexpr)
    if path is None or _count_same(value, zexpr) != 1:
        return None
    off, lo, hi = 0, None, None
    for node, child in zip(reversed(path[:-1]), reversed(path[1:])):
        if isinstance(node, tirx.Cast):
            kind = str(node.ty)
            bits = int("".join(ch for ch in kind if ch.isdigit()) or 0)
            if not kind.startswith(("int", "uint")) or lo is None or hi is None:
                return None
            low, high = (0, 2 ** bits - 1) if kind.startswith("uint") else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
            if lo < low or hi > high:
                return None
            continue
        if not isinstance(node, (tirx.Add, tirx.Sub, tirx.Min, tirx.Max)):
            return None
        other = node.b if node.a.same_as(child) else node.a
        if not isinstance(other, tirx.IntImm) or (isinstance(node, tirx.Sub) and not node.a.same_as(child)):
            return None
        c = int(other.value)
        if isinstance(node, (tirx.Add, tirx.Sub)):
            c = c if isinstance(node, tirx.Add) else -c
            off, lo, hi = off + c, None if lo is None else lo + c, None if hi is None else hi + c
        elif isinstance(node, tirx.Max):
            lo, hi = c if lo is None else max(lo, c), None if hi is None else max(hi, c)
        else:
            lo, hi = None if lo is None else min(lo, c), c if hi is None else min(hi, c)
    if lo is None or hi is None or lo > hi:
        return None
    return off, lo, hi


def branch_clamp(store, zexpr, zval):
    """`store` (its value clamp(zexpr + offset, lo, hi)) as a branch on one unsigned compare with zexpr replaced
    by `zval`: u = zval + offset - lo; if likely(u <= hi - lo as unsigned) out = u + lo, else the bound on u's
    side. rv64gc has no min/max (Zbb): the branchless clamp costs ~5 ops, the branch 1 when in range (the
    expectation keeps LLVM from turning it back into a select). None when the value is not such a clamp."""
    from tvm import tirx

    found = output_clamp(store.value, zexpr)
    if found is None:
        return None
    off, lo, hi = found
    dt, i64 = str(store.value.ty), "int64"
    u = zval + tirx.const(off - lo, i64) if off != lo else zval
    inside = tirx.likely(tirx.Cast("uint64", u) <= tirx.const(hi - lo, "uint64"))
    idx = list(store.indices)
    fast = tirx.BufferStore(store.buffer, tirx.Cast(dt, u + tirx.const(lo, i64)), idx)
    slow = tirx.BufferStore(store.buffer, tirx.Cast(dt, tirx.Select(u < tirx.const(0, i64), tirx.const(lo, i64),
                                                                    tirx.const(hi, i64))), idx)
    return tirx.IfThenElse(inside, fast, slow)


def _count_same(e, target) -> int:
    from .lowering import _count

    return _count(e, lambda n: n.same_as(target))


def _bias_in_init(blocks, acc, n: int, bias, bias2):
    """(init block, its new store) starting the accumulator at bias' instead of 0 (one add less per output), or
    None. The accumulator is the one buffer `acc` (the epilogue's view of it) reads, set to 0 by one block and
    indexed by the channel last: int32 (one lane), or int64 SWAR lanes, both of one channel (pixel or row pairs:
    bias' * (1 + 2^32)) or of channels 2q, 2q + 1 (channel pairs: bias'[2q] + bias'[2q+1] << 32, the packing's
    own form). The lanes then decode to acc + bias', which TFLite's int32 accumulation also holds."""
    from tvm import tirx

    from .lowering import _collect, _is_load
    from .sched_swar import LANE_BITS

    srcs = []
    for ld in _collect(acc, _is_load):
        if not any(ld.source.same_as(s) for s in srcs):
            srcs.append(ld.source)
    if len(srcs) != 1:
        return None
    buf = srcs[0]
    inits = [b for b in blocks if isinstance(b.body, tirx.BufferStore) and b.body.buffer.same_as(buf)
             and _is_int(b.body.value, 0)]
    if len(inits) != 1:
        return None
    k = 1
    for b in blocks:
        if isinstance(b.body, tirx.BufferStore) and b.body.buffer.same_as(buf):
            for iv in b.iter_vars:
                if int(iv.iter_type) != tirx.IterVar.DataPar:
                    k *= int(iv.dom.extent)
    st = inits[0].body
    dtype, last = str(buf.ty.dtype), int(buf.ty.shape[-1])
    if dtype == "int64" and last == n and k <= MIN_INIT_REDUCTION:
        return None  # pixel-pair lanes over a short reduction: measured slower (below)
    c = st.indices[-1]
    if dtype == "int32" and last == n:
        value = tirx.Cast("int32", tirx.BufferLoad(bias, [c]))
    elif dtype == "int64" and last == n:
        value = tirx.BufferLoad(bias2, [c])  # bias' * (1 + 2^32), from the derivation loop
    elif dtype == "int64" and 2 * last == n:
        two = tirx.const(2, str(c.ty))
        value = tirx.BufferLoad(bias, [c * two]) + tirx.shift_left(
            tirx.BufferLoad(bias, [c * two + tirx.const(1, str(c.ty))]), tirx.const(LANE_BITS, "int64"))
    else:
        return None
    return inits[0], tirx.BufferStore(buf, value, list(st.indices))


def _reduction_length(blocks) -> int:
    """The longest reduction (product of a block's reduction extents) among `blocks`."""
    from tvm import tirx

    best = 0
    for b in blocks:
        k = 1
        red = False
        for iv in b.iter_vars:
            if int(iv.iter_type) != tirx.IterVar.DataPar:
                k *= int(iv.dom.extent)
                red = True
        if red:
            best = max(best, k)
    return best
