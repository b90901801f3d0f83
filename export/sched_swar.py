"""Scalar (rv64gc) schedule family: SIMD within a 64-bit register (SWAR), two int32 lanes per multiply.

rv64gc has no multiply-accumulate, so a MAC costs at least a mul and an add. Two int8 operands a0, a1 of two
neighbouring outputs (two output pixels, variant "swar"; or two output channels' weights, "swarc") packed as
P = a0 + a1 * 2^32 give, for one shared int8 factor w, P * w = a0*w + (a1*w) * 2^32 exactly in int64: one mul
and one add do two MACs. The reduction accumulates acc += P * w in int64; while each lane's sum fits in int32
(|a*w| <= 2^15 for int8 x int8: true for any reduction shorter than 2^16) the lanes decode exactly:
lo = int32(acc) (truncation), hi = (acc - lo) >> 32. Same integers as the plain int32 reduction: bit-exact.

The pair is packed on the fly inside the register tile (2 loads, a shift, an add per pair and reduction step,
reused by every channel (pixel) of the tile), so no packed copy of the weights or activations is stored.

How: the kernel's reduction block `C[s] += int32(A[..]) * int32(W[..])` is replaced by a packed reduction
`acc[s'] += (int64(X[v=2q]) + (int64(X[v=2q+1]) << 32)) * int64(Y[..])` over half the packed axis v, and a
decode block `C[s] = int32((acc[v//2] - lane * int64(int32(acc[v//2]))) >> (32 * lane))` (lane = v % 2), which
is inlined into the epilogue; then the tile is blocked as schedules._tiled does (reduction loops outside the
unrolled register tile, accumulators in a local buffer).

With a short reduction (a 1x1 conv over 8 channels: 8 MACs per output) the pixel-pair tiles reload every
weight per pixel tile and their packs spill; "swarco" (channel pairs, the channel tile loop outside the pixel
loop) packs a channel pair's K weights once per output row, LLVM keeps them in registers, and each pixel costs K
loads, K multiplies and K adds for two outputs. MobileNetV2's 8 -> 48 expansions (kernel_bench, rv64gc, with the
bias started in the accumulator): 3.87 -> 3.66 (48 x 48) and 3.88 -> 3.75 (24 x 24) instructions/MAC with 2 x 2.

Three lanes ("swar3": channel triples outside the pixel loop; "swar3x": pixel triples): while K * 2^14 < 2^20
(K <= 63) a lane's sum fits in 21 bits, so P = a0 + a1 * 2^21 + a2 * 2^42 does three MACs per mul + add. The
accumulator starts at 2^20 in every lane (a loop-invariant load of a vector filled once per call: as a constant
LLVM rematerializes it in 5 ops), so each lane ends in [0, 2^21) and decodes in 1-2 ops (shift, mask); the
2^20 offset folds into the requantization's bias (sched_requant). Channel triples unroll the reduction so every
step's packed weights are hoisted out of the pixel loop (reloaded when they spill: one op, not a repack).
MobileNetV2 (kernel_bench, rv64gc, 0 LSB): 8 -> 48 expansions 2.74 -> 2.42 (48 x 48, 1 x 3), the 3x3 stem
2.86 -> 2.24 (6 x 4 pixel triples), the 56 -> 336 expansion on 3 x 3 2.33 -> 1.83, 24 -> 144 / 32 -> 192 on
6 x 6 2.34 / 2.20 -> 2.02 / 1.87 (3 x 8 pixel triples).

A kernel gets this schedule when its recorded tile (schedules.json, "scalar") has one of VARIANTS:
`PWxPC[uKU]-swar`, PW even (pixels, packed in pairs), or PC even for "-swarc" / "-swarco"; PC (PW) a multiple of 3
for "-swar3" ("-swar3x"). Anything that does not match the pattern (depthwise: both operands depend on the
channel; a non-int8 operand; a too-long reduction) is declined and gets the generic tile.
"""

from __future__ import annotations

PIXELS = "swar"  # pairs of output pixels share one packed activation register
CHANNELS = "swarc"  # pairs of output channels share one packed weight register
CHANNELS_OUTER = "swarco"  # channel pairs, the channel tile outside the pixel loop (packed weights stay in registers)
TRIPLES = "swar3"  # channel triples in 21-bit lanes, the channel tile outside the pixel loop (short reductions)
PIXEL_TRIPLES = "swar3x"  # pixel triples in 21-bit lanes (reductions up to TRIPLE_REDUCTION, any channel count)
SHORT_REDUCTION = 16  # reductions this short get the "swarco" candidates (K packed weights per channel pair)
VARIANTS = (PIXELS, CHANNELS, CHANNELS_OUTER, TRIPLES, PIXEL_TRIPLES)
LANE_BITS = 32
LANE3_BITS = 21  # three lanes: 21 bits each, offset by 2^20 so that each holds a value in [0, 2^21) at the end
LANE3_OFFSET = 1 << (LANE3_BITS - 1)
TRIPLE_REDUCTION = 63  # reductions this short get the "swar3" candidates (|lane sum| <= K * 2^14 < 2^20)
SHORT_CHANNELS = 8  # an innermost reduction loop this short is fused with the next one out ...
LONG_LOOP = 16  # ... when the fused loop is at least this long (shorter loops LLVM unrolls anyway)
LANES_ATTR = "cloudcover_lanes"  # block annotation: MACs per iteration of the packed reduction (kernel_stats)


class Declined(Exception):
    """The kernel does not have the shape this family handles (the generic schedule applies)."""


def candidate_tiles(shape, vector: bool) -> list:
    """SWAR tiles worth trying for `shape` (what a tile search adds to schedules.candidate_tiles'). Per reduction
    step a pixel tile PW x PC costs PW/2 packs (4 instructions) + PC weight loads + PW*PC/2 (mul + add) for PW*PC
    MACs, with PW*PC/2 int64 accumulators: 2 x 8 and 4 x 4 (8 accumulators) reach ~1.9 instructions/MAC with the
    loop, 4 x 6 and 2 x 12 (12) ~1.7; 16 accumulators spill on rv64gc. Channel pairs (-swarc) serve an odd
    number of pixels (3 x 8: ~1.9)."""
    from .schedules import Tile

    if vector or shape.depthwise:
        return []
    cands = [Tile(4, 6, 1, PIXELS), Tile(2, 12, 1, PIXELS), Tile(6, 4, 1, PIXELS), Tile(2, 8, 1, PIXELS),
             Tile(4, 4, 1, PIXELS), Tile(2, 8, 2, PIXELS), Tile(4, 4, 2, PIXELS), Tile(2, 6, 1, PIXELS),
             Tile(3, 8, 1, CHANNELS), Tile(3, 4, 1, CHANNELS)]
    if shape.reduction <= SHORT_REDUCTION:  # one channel pair's packed weights fit the registers
        cands += [Tile(2, 2, 1, CHANNELS_OUTER), Tile(1, 2, 1, CHANNELS_OUTER), Tile(4, 2, 1, CHANNELS_OUTER)]
    if shape.reduction <= TRIPLE_REDUCTION:  # three MACs per multiply; K packed weights per channel triple
        cands += [Tile(1, 3, 1, TRIPLES), Tile(2, 3, 1, TRIPLES), Tile(1, 3, 2, TRIPLES),
                  Tile(3, 8, 1, PIXEL_TRIPLES), Tile(3, 4, 1, PIXEL_TRIPLES), Tile(6, 4, 1, PIXEL_TRIPLES)]
    return [t for t in cands if shape.pixels % t.pw == 0 and shape.channels % t.pc == 0]


def default_tile(shape, vector: bool):
    """The SWAR tile for a shape without a recorded choice, or None (then schedules' generic default): the
    tiles measured best most often on the benchmark models (export/schedules.json), first that fits."""
    if vector or shape.depthwise or shape.reduction * 128 * 128 >= 2 ** (LANE_BITS - 1):
        return None
    from .schedules import Tile

    for t in (Tile(6, 4, 1, PIXELS), Tile(4, 4, 2, PIXELS), Tile(2, 8, 2, PIXELS), Tile(3, 8, 1, CHANNELS)):
        if shape.pixels % t.pw == 0 and shape.channels % t.pc == 0:
            return t
    return None


def schedule(func, found, vector: bool, choose):
    """The SWAR schedule of `func` when its chosen tile is one of ours and the kernel fits, else None."""
    from tvm import s_tir

    if vector or found is None:
        return None
    tile = choose(found[2])
    if tile.variant not in VARIANTS:
        return None
    try:
        return swar_tiled(func, tile)
    except (Declined, s_tir.ScheduleError):
        return None


def swar_tiled(func, tile):
    """`func` with its conv/matmul reduction packed two lanes per int64 and register-blocked by `tile`;
    raises Declined when the kernel does not fit."""
    from tvm import s_tir

    from .lowering import inline_elementwise
    from .schedules import _find

    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    found = _find(sch)
    if found is None:
        raise Declined("no multiplying reduction")
    out, red, shape = found
    pixels = tile.variant in (PIXELS, PIXEL_TRIPLES)
    lanes = 3 if tile.variant in (TRIPLES, PIXEL_TRIPLES) else 2
    if shape.depthwise or shape.pixels % tile.pw or shape.channels % tile.pc:
        raise Declined("tile does not divide the kernel")
    if (tile.pw if pixels else tile.pc) % lanes or (pixels and len(sch.get_loops(out)) < 2):
        raise Declined("the packed axis of the tile is not a whole number of pairs")
    packed = pack_reduction(sch.mod["main"], sch.get(red), axis=-2 if pixels else -1, lanes=lanes)
    return _block(packed, tile, pixels, outer_channels=tile.variant in (CHANNELS_OUTER, TRIPLES), lanes=lanes)


def _mac(block):
    """(C store, X load, Y load) of a block `C[s] = C[s] + int32(X[..]) * int32(Y[..])` over int8/uint8 X, Y."""
    from tvm import ir, tirx

    st = block.body
    if not isinstance(st, tirx.BufferStore) or str(st.value.ty) != "int32" or block.init is None:
        raise Declined("not an int32 store")
    add = st.value
    if not isinstance(add, tirx.Add):
        raise Declined("not an accumulation")
    acc, prod = add.a, add.b
    if isinstance(prod, ir.TensorLoad) and isinstance(acc, tirx.Mul):
        acc, prod = prod, acc
    if not (isinstance(acc, ir.TensorLoad) and acc.source.same_as(st.buffer) and isinstance(prod, tirx.Mul)):
        raise Declined("not C + x * y")
    if len(acc.indices) != len(st.indices) or not all(a.same_as(b) for a, b in zip(acc.indices, st.indices)):
        raise Declined("reads another element than it writes")
    loads = []
    for f in (prod.a, prod.b):
        if not (isinstance(f, tirx.Cast) and isinstance(f.value, ir.TensorLoad)
                and str(f.value.ty) in ("int8", "uint8")):
            raise Declined("a factor is not a widened int8 load")
        loads.append(f.value)
    if not (isinstance(block.init, tirx.BufferStore) and isinstance(block.init.value, tirx.IntImm)
            and int(block.init.value.value) == 0):
        raise Declined("the accumulator does not start at 0")
    return st, loads[0], loads[1]


def _uses(expr, var) -> bool:
    from .lowering import _count

    return _count(expr, lambda n: n.same_as(var)) > 0


def pack_reduction(func, red, axis: int, lanes: int = 2):
    """`func` with reduction block `red` (`C[s] += int32(X) * int32(Y)`) replaced by the packed int64
    reduction over pairs (`lanes` 3: triples) of its spatial axis `axis` (-2: pixels, -1: channels) and the
    decode block.

    Three lanes: P = y0 + y1 * 2^21 + y2 * 2^42 and the accumulator starts at 2^20 * (1 + 2^21 + 2^42), so at
    the end it is the exact int64 sum of (2^20 + S_j) * 2^(21 j) over the lanes' sums S_j (wrap-around on the way
    does not matter: the final value is below 2^63). While |S_j| < 2^20 (K * 128 * 128 < 2^20) every term is in
    [0, 2^21): S_j = ((acc >> 21 j) & (2^21 - 1)) - 2^20, the top lane acc >> 42 - 2^20 (4 ops for 3 lanes)."""
    import tvm
    from tvm import s_tir, tirx

    st, xa, xb = _mac(red)
    sp = [iv for iv in red.iter_vars if int(iv.iter_type) == tirx.IterVar.DataPar]
    rd = [iv for iv in red.iter_vars if int(iv.iter_type) != tirx.IterVar.DataPar]
    if len(st.indices) != len(sp) or not all(i.same_as(iv.var) for i, iv in zip(st.indices, sp)):
        raise Declined("the output is not indexed by the spatial iterators")
    v = sp[axis].var
    ext = int(sp[axis].dom.extent)
    if ext % lanes or int(sp[axis].dom.min) != 0:
        raise Declined("odd packed axis")
    if _uses(xa, v) == _uses(xb, v):
        raise Declined("the packed axis indexes both factors (or neither)")
    x, y = (xa, xb) if _uses(xa, v) else (xb, xa)
    k = 1
    for iv in rd:
        k *= int(iv.dom.extent)
    big = 256 if "uint8" in (str(x.ty), str(y.ty)) else 128
    if k * big * big >= 2 ** (LANE_BITS - 1):  # a lane's sum must fit in int32 whatever the data
        raise Declined("reduction too long for int32 lanes")
    if lanes == 3 and k * big * big >= LANE3_OFFSET:
        raise Declined("reduction too long for 21-bit lanes")
    if lanes not in (2, 3):
        raise Declined("two or three lanes")

    i64 = "int64"
    dt = str(v.ty)
    q = tirx.Var("v_pair", dt)
    acc_shape = [ext // lanes if j == len(sp) + axis else int(iv.dom.extent) for j, iv in enumerate(sp)]
    acc = tirx.decl_buffer(acc_shape, i64, name="swar_acc")

    def at(load, value):
        an = tvm.sym.Analyzer()
        an.bind(v, value)
        return tirx.BufferLoad(load.source, [an.simplify(i) for i in load.indices])

    two = tirx.const(lanes, dt)
    bits = LANE_BITS if lanes == 2 else LANE3_BITS
    pair = tirx.Cast(i64, at(x, q * two))
    for j in range(1, lanes):
        pair = pair + tirx.shift_left(tirx.Cast(i64, at(x, q * two + tirx.const(j, dt))), tirx.const(bits * j, i64))
    aidx = [q if i.same_as(v) else i for i in st.indices]
    body = tirx.BufferStore(acc, tirx.BufferLoad(acc, aidx) + pair * tirx.Cast(i64, y), aidx)
    if lanes == 2:
        init = tirx.BufferStore(acc, tirx.const(0, i64), aidx)
        fills = []
    else:
        # the lanes' offsets from a vector filled once per call (a constant LLVM rematerializes in 5 ops per
        # tile when registers are short; a loop-invariant load is one)
        start = tirx.decl_buffer([ext // lanes], i64, name="swar_start")
        init = tirx.BufferStore(acc, tirx.BufferLoad(start, [q]), aidx)
        fv = tirx.Var("v_s", dt)
        fill = tirx.BufferStore(start, tirx.const(LANE3_OFFSET * (1 + (1 << bits) + (1 << 2 * bits)), i64), [fv])
        fivs = [tirx.IterVar(tvm.ir.Range(0, tirx.const(ext // lanes, dt)), fv, tirx.IterVar.DataPar)]
        fills = [(fivs, fill)]
    ivs = [tirx.IterVar(tvm.ir.Range(0, tirx.const(ext // lanes, dt)), q, tirx.IterVar.DataPar)
           if iv.var.same_as(v) else iv for iv in red.iter_vars]
    buffers = _buffers(func) + [acc] + ([start] if lanes == 3 else [])
    bmap = {b: b for b in buffers}
    tmp = s_tir.SBlock(ivs, [], [], "swar_acc", body, init)
    reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
    reads = [r for r in reads if not r.source.same_as(acc)]
    acc_block = s_tir.SBlock(ivs, reads, writes, "swar_acc", body, init, annotations={LANES_ATTR: lanes})
    acc_nest = _nest(acc_block, [int(iv.dom.extent) for iv in ivs], dt)
    for j, (fivs, fill) in enumerate(fills):
        tmp = s_tir.SBlock(fivs, [], [], "swar_start", fill)
        _, fw = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
        fills[j] = _nest(s_tir.SBlock(fivs, [], fw, "swar_start", fill), [ext // lanes], dt)

    # decode: one int32 lane per output element (lane 0: the low word; lane 1: (acc - lo) >> 32)
    us = [tirx.Var(f"v_d{j}", str(iv.var.ty)) for j, iv in enumerate(sp)]
    u = us[len(sp) + axis]
    didx = [tirx.floordiv(w, two) if w.same_as(u) else w for w in us]
    word = tirx.BufferLoad(acc, didx)
    lane = tirx.Cast(i64, tirx.floormod(u, two))
    if lanes == 2:
        low = tirx.Cast(i64, tirx.Cast("int32", word))
        val = tirx.Cast("int32", tirx.shift_right(word - lane * low, lane * tirx.const(LANE_BITS, i64)))
    else:
        # lanes 0 and 1 as two shifts (a mask constant would take a register the tile needs), the top lane one:
        # word >= 0
        top = tirx.shift_right(word, tirx.const(2 * bits, i64))
        up = tirx.Cast("uint64", tirx.shift_left(word, tirx.const(64 - bits, i64) - lane * tirx.const(bits, i64)))
        field = tirx.Cast(i64, tirx.shift_right(up, tirx.const(64 - bits, "uint64")))
        val = tirx.Cast("int32", tirx.Select(lane == tirx.const(2, i64), top, field) - tirx.const(LANE3_OFFSET, i64))
    dst = tirx.BufferStore(st.buffer, val, us)
    divs = [tirx.IterVar(tvm.ir.Range(0, iv.dom.extent), w, tirx.IterVar.DataPar) for iv, w in zip(sp, us)]
    tmp = s_tir.SBlock(divs, [], [], "swar_decode", dst)
    reads, writes = s_tir.analysis.get_sblock_read_write_region(tmp, bmap)
    dec_nest = _nest(s_tir.SBlock(divs, reads, writes, "swar_decode", dst), [int(iv.dom.extent) for iv in sp], dt)
    return _replace(func, red, fills + [acc_nest, dec_nest], acc, [start] if lanes == 3 else [])


def _buffers(func) -> list:
    """Every buffer var a block of `func` may access: the parameters' and the root block's."""
    from tvm import tirx

    root = func.body.block
    return [p for p in func.params if isinstance(p.ty, tirx.BufferType)] + list(root.alloc_buffers)


def _nest(block, extents, dtype):
    """A serial loop nest binding `block`'s iterators one-to-one."""
    from tvm import s_tir, tirx

    lvs = [tirx.Var(f"l{j}", dtype) for j in range(len(extents))]
    stmt = s_tir.SBlockRealize(lvs, True, block)
    for lv, e in reversed(list(zip(lvs, extents))):
        stmt = tirx.For(lv, tirx.const(0, dtype), tirx.const(e, dtype), tirx.ForKind.SERIAL, stmt)
    return stmt


def _contains(stmt, block) -> bool:
    from .lowering import _count

    return _count(stmt, lambda n: n.same_as(block)) > 0


def _replace(func, red, nests, acc, extra=()):
    """`func` with the top-level loop nest holding `red` replaced by `nests`; `acc` (and `extra`) allocated at
    the root."""
    from tvm import s_tir, tirx

    realize = func.body
    root = realize.block
    if not isinstance(root.body, tirx.SeqStmt):
        raise Declined("unexpected root body")
    items = list(root.body.seq)
    hit = [j for j, s in enumerate(items) if _contains(s, red)]
    if len(hit) != 1:
        raise Declined("reduction nest not found")
    items[hit[0]:hit[0] + 1] = nests
    block = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, tirx.SeqStmt(items), root.init,
                         list(root.alloc_buffers) + [acc, *extra], root.match_buffers, root.annotations)
    return func.with_body(s_tir.SBlockRealize(realize.iter_values, realize.predicate, block))


def _block(func, tile, pixels: bool, outer_channels: bool = False, lanes: int = 2):
    """Register-block the packed kernel: schedules._tiled's steps, with the packed axis of the tile halved in
    the accumulator and the decode's lane loop unrolled (its lane becomes a constant)."""
    from tvm import s_tir

    from .schedules import epilogue_at, reduction_innermost, register_tile

    sch = s_tir.Schedule(func)
    root = sch.get_sblock("root")
    sch.compute_inline(sch.get_sblock("swar_decode"))
    red = sch.get_sblock("swar_acc")
    outs = sch.get_output_blocks(root)
    if len(outs) != 1:
        raise Declined("several outputs")
    out = outs[0]
    loops = sch.get_loops(out)
    co, ci = sch.split(loops[-1], [None, tile.pc])
    if len(loops) >= 2:
        wo, wi = sch.split(loops[-2], [None, tile.pw])
        sch.reorder(*((co, wo) if outer_channels else (wo, co)), wi, ci)
    else:
        wi = None
        wo = co
    if pixels:
        wq, wl = sch.split(wi, [None, lanes])
        sch.reorder(wq, ci, wl)
        sch.unroll(wl)
        inner = wl
    else:
        cq, cl = sch.split(ci, [None, lanes])
        sch.unroll(cl)
        inner = cl
    epilogue_at(sch, out, red, inner)
    sch.compute_at(red, wo if outer_channels else co, True)
    sp_loops, rd_loops = reduction_innermost(sch, red)
    n_sp = len(sp_loops)
    ext = [int(sch.get(lp).extent) for lp in rd_loops]
    if lanes == 3 and not pixels:
        # channel triples: every reduction step unrolled, so each step's packed weights are loop-invariant in the
        # pixel loop (LLVM hoists them; past the registers they spill: one reload per step, not a 7-op repack)
        for lp in rd_loops:
            sch.unroll(lp)
        return register_tile(sch, red, rd_loops, n_sp, tile)
    if len(rd_loops) >= 2 and ext[-1] <= SHORT_CHANNELS and ext[-2] * ext[-1] >= LONG_LOOP:
        # a short input-channel loop (3 for an RGB stem, 8): LLVM unrolls it completely and its machine scheduler
        # hoists every step's loads and products, spilling the tile. Fused with the window column it is one
        # longer loop LLVM keeps rolled, and its addresses stay affine (x[.., x + j // C, j % C] and
        # w[ry, j // C, j % C, f] flatten to base + j).
        rd_loops = [*rd_loops[:-2], sch.fuse(rd_loops[-2], rd_loops[-1])]
    return register_tile(sch, red, rd_loops, n_sp, tile)
