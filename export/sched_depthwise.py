"""Depthwise convolution schedule family (variant "dw") and the row-fused pad, rv64gc and rv64gcv.

A depthwise 3x3 conv does only 9 MACs per output, so what a schedule spends per output (loads of the
per-channel weights and requantization constants, the int64 requantization epilogue, loop control) weighs as
much as the MACs. The schedule, per output row y (NHWC: channels contiguous):

    rv64gc:  for co (PC channels)  for xo (PW pixels)       # a channel's 9 weights and 4 requantization
    rv64gcv: for xo (PW pixels)    for co (PC channels)     #   constants stay in registers along the row
                 acc[PW][PC] = 0                            # registers (unrolled tile, local buffer)
                 for ry, rx (3 x 3)                         # loops: LLVM unrolls them on rv64gc and shares the
                     for xi, ci (unrolled)                  #   overlapping input loads of neighbouring pixels
                         acc[xi][ci] += x[y*s+ry, (xo*PW+xi)*s+rx, c] * w[ry, rx, c]
                 for xi, ci: out = requantize(acc)          # per element; on rv64gcv LLVM vectorizes the
                                                            #   contiguous ci loop (int64 lanes)

On rv64gcv the SLP vectorizer turns the unrolled PC-channel tile into vle8 / vsext.vf2 / vwmacc.vv (int8 ->
int16 -> int32) per tap and pixel; PC = 32 (LMUL-8 int32 accumulators) where C allows, else 16. The ry, rx loops
stay loops: unrolled by us, LLVM merges neighbouring pixels' contiguous inputs into wider vectors that no longer
match the weights and spills. On rv64gc the pixels of a tile share the overlapping loads; 2 pixels beat 4 (fewer
spilled weights). Tiles measured with riscv/kernel_bench on MobileNetV2 (per-kernel profile); the recorded per
shape choices ("-dw" tiles in schedules.json) override the defaults below.

rv64gc, stride 1, an even number of output rows ("dw2" tiles, the scalar default): rows y and y + 1 share every
weight and three of their four input rows, so their inputs are packed two int32 lanes per int64 (sched_swar's
pack_reduction along the rows: P = x[y+ry] + x[y+1+ry] << 32, |lane sum| <= 9 * 2^14) and one mul + add does two
MACs; the pair is decoded per output (lo = int32(acc), hi = (acc - lo) >> 32) before the requantization.
Measured on MobileNetV2 (kernel_bench, rv64gc, per-kernel profile): 48 x 48 x 16 4.83 -> 4.10 instructions/MAC,
24 x 24 x 48 4.95 -> 4.23, 12 x 12 x 96 5.17 -> 4.34 (4 pixels per tile), 6 x 6 x 144 5.17 -> 4.88 (2 pixels).
Strided convs (the pair's windows share no input row: packing costs more than it saves, measured) and odd row
counts (3 x 3 maps) keep the one-row "dw" tile. "dw3" packs three rows in 21-bit lanes (sched_swar's three-lane
form, |lane sum| <= 9 * 2^14 < 2^20; rows a multiple of 3): one mul + add per three MACs, 5 input rows loaded
per 3 output rows; with the floor-form epilogue (sched_requant) MobileNetV2's stride-1 layers went 3.30 -> 3.08
(48 x 48 x 16), 3.62 -> 3.27 (24 x 24 x 48), 3.83 -> 3.37 (12 x 12 x 96), 3.87 -> 3.60 (6 x 6 x 144).

A pad kernel whose channel loop is too short for a vector (the 3-channel stem input) gets its pixel and channel
loops fused on rv64gcv: one contiguous row that LLVM vectorizes with a mask (3x fewer instructions). With 16+
channels the per-pixel copy is already vectorized and the fused, masked row measured slower: left alone.

Only loop order, unrolling and storage change: the same integer computation, bit-identical to the naive schedule
(tests/riscv/test_sched_depthwise.py). A dense conv/matmul is declined (None): sched_swar.py and sched_rvv.py own
them; other kernels without one multiplying reduction keep lowering's schedule.
"""

from __future__ import annotations

VARIANT = "dw"
NARROW = "dwq"  # rv64gcv: a "dw" tile whose MACs are left to LLVM's vectorizers (a "dw" tile gets them as RVV
# intrinsics where they fit: sched_rvv_dw.py); both get sched_rvv_epilogue's int32-lane requantization
MAC_ATTR = "cloudcover_dw_mac"  # the PrimFunc attribute that marks a "dw" tile for sched_rvv_dw.rewrite_kernels
ROWS = "dw2"  # rv64gc: two output rows packed in one int64 (SWAR, sched_swar.pack_reduction along the rows)
ROWS3 = "dw3"  # rv64gc: three output rows in 21-bit lanes (sched_swar's three-lane packing; rows a multiple of 3)
_SCALAR_PW = (2, 1)  # pixels per tile on rv64gc (one channel each): 2 measured better than 4 and 8
_SCALAR_ROWS_PW = (4, 2, 1)  # pixels per row-pair tile on rv64gc: 4 measured best where it divides the row, then 2
_VECTOR = ((1, 32), (1, 16), (2, 8), (1, 8))  # (pw, pc) on rv64gcv, best first
_PAD_ROW_MAX_C = 8  # pads with fewer channels than this get the fused row (vectors of 16 int8 at VLEN 128)


def wide_build() -> bool:
    """Whether rv64gcv builds "-dw" kernels with sched_rvv's LMUL-8 LLVM option (sched_rvv.WIDE_VARIANTS lists
    the tile variants sched_rvv.build_kernels builds that way). The vector tiles here were measured with it: the
    SLP vectorizer then keeps a 16- or 32-channel tile and its int64 requantization in single vector groups;
    without it the epilogue runs 4 lanes at a time and the generic tile is faster. So without it a depthwise
    kernel gets a dw tile on rv64gcv only where one is recorded (schedules.json, or a search's "*")."""
    from . import sched_rvv

    return VARIANT in getattr(sched_rvv, "WIDE_VARIANTS", ())


def default_tile(shape, vector: bool):
    """The dw tile of a depthwise shape (pixels = output width, channels = C) without a recorded choice."""
    from .schedules import Tile

    if vector:
        for pw, pc in _VECTOR:
            if shape.pixels % pw == 0 and shape.channels % pc == 0:
                return Tile(pw, pc, 1, VARIANT)
        return Tile(1, 1, 1, VARIANT)
    for pw in _SCALAR_ROWS_PW:
        if shape.pixels % pw == 0:
            return Tile(pw, 1, 1, ROWS)
    return Tile(1, 1, 1, ROWS)


def unpacked_tile(shape):
    """The rv64gc dw tile (one row at a time) of a kernel the row-pair schedule declines (odd rows, stride 2)."""
    from .schedules import Tile

    for pw in _SCALAR_PW:
        if shape.pixels % pw == 0:
            return Tile(pw, 1, 1, VARIANT)
    return Tile(1, 1, 1, VARIANT)


def candidate_tiles(shape, vector: bool) -> list:
    """dw tiles worth trying for a depthwise `shape` (a search's candidates)."""
    from .schedules import Tile

    cands = ([Tile(pw, pc, 1, VARIANT) for pw, pc in ((1, 32), (2, 32), (1, 48), (2, 48), (1, 96), (1, 16), (2, 16),
                                                       (3, 16), (4, 16), (2, 8), (1, 8))]
             + [Tile(pw, pc, 1, NARROW) for pw, pc in ((1, 48), (2, 16))]  # where it measured fewer (schedules.json)
             if vector else [Tile(pw, 1, 1, v) for v in (ROWS, VARIANT) for pw in (2, 4, 3, 1)]
             + [Tile(pw, 1, 1, ROWS3) for pw in (4, 2)])  # dw3: the pixel counts that measured best
    return [t for t in cands if shape.pixels % t.pw == 0 and shape.channels % t.pc == 0]


def schedule(func, found, vector: bool, choose):
    """The dw schedule of a depthwise conv kernel; None for any other kernel."""
    if found is None:
        return _pad_rows(func) if vector else None
    if not found[2].depthwise:
        return None
    from tvm import s_tir

    from .lowering import inline_elementwise
    from .schedules import Tile, _find

    shape = found[2]
    tile = choose(shape)
    if not vector and tile.variant != VARIANT:
        if tile.variant not in (ROWS, ROWS3) or shape.pixels % tile.pw:
            tile = default_tile(shape, vector)
        if tile.variant in (ROWS, ROWS3):
            done = _rows_or_none(func, tile)
            if done is not None:
                return done
            tile = unpacked_tile(shape)  # odd rows or strided: one row at a time
    narrow = vector and tile.variant == NARROW  # rv64gcv: the same tile, its MACs LLVM's
    if narrow:
        tile = Tile(tile.pw, tile.pc, tile.ku, VARIANT)
    if tile.variant != VARIANT or shape.pixels % tile.pw or shape.channels % tile.pc:
        narrow = False
        if vector and not wide_build():
            return None  # built without LMUL 8 these tiles lose to the generic 4 x 16 (measured): leave it that
        tile = default_tile(shape, vector)
    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    try:
        done = _blocked(sch, _find(sch), tile, vector)
    except s_tir.ScheduleError:
        return None  # a layout this schedule does not cover: the generic schedules take it
    if vector and not narrow and done is not None:
        done = done.with_attr(MAC_ATTR, 1)  # its MACs built as RVV intrinsics where they fit (sched_rvv_dw)
    if narrow and done is not None:
        done = done.with_attr("cloudcover_tile", Tile(tile.pw, tile.pc, tile.ku, NARROW).key())
    return done


def _blocked(sch, found, tile, vector: bool):
    from .schedules import epilogue_at, reduction_innermost

    out, red, _ = found
    root = sch.get_sblock("root")
    loops = sch.get_loops(out)
    if len(loops) != 4:
        return None
    _, _, x, c = loops
    co, ci = sch.split(c, [None, tile.pc])
    xo, xi = sch.split(x, [None, tile.pw])
    # rv64gcv: pixel blocks outside (the channel block's weights, hoisted out of a pixel loop as int16 vectors,
    # would spill); rv64gc: channels outside (the 9 int8 weights and 4 requantization constants of a channel
    # stay in registers across the row). Both measured (kernel_bench) against the other order.
    if vector:
        sch.reorder(xo, co, xi, ci)
    else:
        sch.reorder(co, xo, xi, ci)
    # the epilogue's multi-use values: per element, at the innermost loop
    epilogue_at(sch, out, red, ci)
    sch.compute_at(red, co if vector else xo, True)
    sp_loops, rd_loops = reduction_innermost(sch, red)
    n_sp, n_rd = len(sp_loops), len(rd_loops)
    sch.decompose_reduction(red, rd_loops[0])
    # the tile unrolled, the window's ry, rx loops kept: LLVM unrolls them itself on rv64gc (and shares the
    # overlapping input loads of neighbouring pixels); unrolled by us they defeat the SLP vectorizer on rv64gcv
    for lp in sch.get_loops(red)[-(n_sp + n_rd) + 2:]:
        if int(sch.get(lp).extent) > 1:
            sch.unroll(lp)
    sch.set_scope(red, 0, "local")
    init = [b for b in sch.get_child_blocks(root) if sch.get(b).name_hint.endswith("_init")]
    for b in init:
        for lp in sch.get_loops(b)[-n_sp:]:
            if int(sch.get(lp).extent) > 1:
                sch.unroll(lp)
    return sch.mod["main"].with_attr("cloudcover_tile", tile.key())


def _pad_rows(func):
    """A pad kernel (one block: out = if_then_else(inside, x[..], zero point)) with fewer than _PAD_ROW_MAX_C
    channels, its pixel and channel loops fused into one row; other kernels: None (lowering's schedule)."""
    from tvm import s_tir, tirx

    from .lowering import _count, _is_if_then_else

    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return None
    blk = sch.get(blocks[0])
    loops = sch.get_loops(blocks[0])
    if (len(loops) != 4 or int(sch.get(loops[-1]).extent) >= _PAD_ROW_MAX_C or len(blk.reads) != 1
            or len(blk.writes) != 1 or str(blk.writes[0].source.dtype) != "int8"
            or any(int(iv.iter_type) != tirx.IterVar.DataPar for iv in blk.iter_vars)
            or not hasattr(blk.body, "value") or not _is_if_then_else(blk.body.value)
            or _count(blk.body.value, _is_if_then_else) != 1):
        return None
    try:
        sch.fuse(loops[-2], loops[-1])
    except s_tir.ScheduleError:
        return None
    return sch.mod["main"]


def _rows_or_none(func, tile):
    """The row-pair SWAR dw schedule of `func` (see rows_tiled), or None where it does not fit."""
    from tvm import s_tir

    from .sched_swar import Declined

    try:
        return rows_tiled(func, tile)
    except (Declined, s_tir.ScheduleError):
        return None


def rows_tiled(func, tile):
    """rv64gc: output rows y, y+1 of a depthwise conv share each weight, so their inputs are packed two int32
    lanes per int64 (P = x[2q*s+ry] + x[(2q+1)*s+ry] << 32, sched_swar.pack_reduction along the rows): one mul
    and one add per two MACs. Per output row pair and channel: for xo (PW pixels): PW packed accumulators, the
    3 x 3 window's loops outside the unrolled pixel tile; then per pixel the two lanes decoded and requantized.
    Raises sched_swar.Declined (an odd number of output rows, not a depthwise conv, ...)."""
    from tvm import s_tir

    from .lowering import inline_elementwise
    from .sched_swar import Declined, pack_reduction
    from .schedules import _find, epilogue_at, reduction_innermost, register_tile

    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    found = _find(sch)
    if found is None or not found[2].depthwise:
        raise Declined("not a depthwise conv")
    out, red, shape = found
    loops = sch.get_loops(out)
    lanes = 3 if tile.variant == ROWS3 else 2
    if len(loops) != 4 or int(sch.get(loops[1]).extent) % lanes or shape.pixels % tile.pw:
        raise Declined("odd rows or a tile that does not divide the row")
    if not _stride_one(sch.get(red), int(sch.get(loops[1]).extent)):
        raise Declined("strided: the two rows' windows share no input row (packing costs more than it saves)")
    packed = pack_reduction(sch.mod["main"], sch.get(red), axis=-3, lanes=lanes)
    sch = s_tir.Schedule(packed)
    sch.compute_inline(sch.get_sblock("swar_decode"))
    red = sch.get_sblock("swar_acc")
    outs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outs) != 1:
        raise Declined("several outputs")
    out = outs[0]
    _, y, x, c = sch.get_loops(out)
    yq, yl = sch.split(y, [None, lanes])
    xo, xi = sch.split(x, [None, tile.pw])
    sch.reorder(yq, c, xo, xi, yl)
    sch.unroll(yl)
    epilogue_at(sch, out, red, yl)
    sch.compute_at(red, xo, True)
    sp_loops, rd_loops = reduction_innermost(sch, red)
    return register_tile(sch, red, rd_loops, len(sp_loops), tile)


def _stride_one(block, rows: int) -> bool:
    """Whether the depthwise reduction `block` reads an input only KH - 1 rows taller than its `rows` output rows
    (stride 1 along the rows: a window row of y + 1 is one of y's, so the packed pair loads 4 rows, not 6)."""
    from tvm import tirx

    rd = [int(iv.dom.extent) for iv in block.iter_vars if int(iv.iter_type) != tirx.IterVar.DataPar]
    tall = max((int(r.source.ty.shape[1]) for r in block.reads if len(r.region) == 4), default=0)  # the input's
    return tall <= rows + rd[0] - 1  # rows (the weights' are KH)
