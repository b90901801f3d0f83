"""Register-blocked int8 schedules for the conv/matmul kernels, chosen per kernel shape and target.

The naive schedule (lowering.schedule_kernels) computes one output element at a time: every MAC loads its
int8 input and its int8 weight. Here the output's pixel and channel loops are tiled (Pw pixels x Pc channels)
and the reduction is computed at the tile: its loops run outside the tile, so each input value loaded is used
Pc times and each weight Pw times, and the Pw x Pc int32 accumulators live in registers (the tile loops are
unrolled; on RVV LLVM's SLP vectorizer turns the unrolled channel tile into vectors: one int8 weight vector,
then a scalar-times-vector multiply-accumulate per pixel; TVM's own `vectorize` emits length-agnostic loops with
masks for +v and scalarizes the body, so it is not used). The requantization epilogue then runs per element as before.

A kernel without one multiplying reduction that writes the output's iteration space (pooling, elementwise,
table lookups, pads) keeps the naive schedule. The tile of a kernel is the recorded choice
(schedule_db.py) when there is one, else `default_tile`. Every schedule is the same integer computation
(only loop order and storage change), so results are bit-identical; tests/riscv/test_schedules.py checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudcover.train.errors import CloudcoverError


@dataclass(frozen=True)
class Tile:
    pw: int  # output pixels per tile (along the output's second-innermost loop)
    pc: int  # output channels per tile (innermost loop)
    ku: int = 1  # the innermost reduction loop unrolled by this factor (fewer loop-counter instructions)
    variant: str = ""  # "" = the generic register-blocked tile; else the schedule family that owns it (FAMILIES)

    def key(self) -> str:
        return f"{self.pw}x{self.pc}" + (f"u{self.ku}" if self.ku > 1 else "") + (f"-{self.variant}" if self.variant else "")

    @classmethod
    def parse(cls, text: str) -> "Tile":
        body, _, variant = str(text).partition("-")
        a, _, rest = body.partition("x")
        b, _, u = rest.partition("u")
        return cls(int(a), int(b), int(u) if u else 1, variant)


NAIVE = Tile(1, 1)


@dataclass(frozen=True)
class Shape:
    """What a tile choice depends on: the output's pixel and channel extents, the reduction length, whether the
    kernel is depthwise (no input reuse across channels)."""

    pixels: int  # extent of the output loop tiled by pw (1 when there is none)
    channels: int
    reduction: int
    depthwise: bool

    def key(self) -> str:
        return f"p{self.pixels}-c{self.channels}-k{self.reduction}{'-dw' if self.depthwise else ''}"


def _divisors_desc(n: int, cands) -> list[int]:
    return [c for c in cands if c <= n and n % c == 0]


def candidate_tiles(shape: Shape, vector: bool) -> list[Tile]:
    """Tiles worth trying for `shape` (what --tune searches): around the defaults, within the registers."""
    if vector:
        cands = [Tile(4, 16), Tile(8, 16), Tile(2, 16), Tile(4, 32), Tile(2, 32), Tile(8, 8), Tile(4, 8)]
    else:
        cands = [Tile(4, 2), Tile(4, 2, 2), Tile(2, 4), Tile(2, 2), Tile(4, 1), Tile(1, 4), Tile(2, 2, 2)]
    cands = [t for t in cands if shape.pixels % t.pw == 0 and shape.channels % t.pc == 0]
    return cands + family_candidates(shape, vector)


def family_candidates(shape: Shape, vector: bool) -> list[Tile]:
    """The schedule families' own candidates for `shape` (their tiles carry the family's variant)."""
    from . import sched_depthwise, sched_rvv, sched_swar

    if shape.depthwise:
        return sched_depthwise.candidate_tiles(shape, vector)
    return sched_rvv.candidate_tiles(shape) if vector else sched_swar.candidate_tiles(shape, vector)


def default_tile(shape: Shape, vector: bool) -> Tile:
    """Without a recorded choice: scalar 4 pixels x 2 channels (8 accumulators, 6 operands: no spills), RVV 4 pixels
    x 16 channels (LLVM's SLP vectorizer turns the unrolled tile into 16-lane vector multiply-accumulates).
    A scalar shape the SWAR family fits gets its tile (two MACs per multiply; sched_swar.default_tile)."""
    if not vector:
        from . import sched_swar

        swar = sched_swar.default_tile(shape, vector)
        if swar is not None:
            return swar
    if vector:
        pcs = _divisors_desc(shape.channels, (16, 8))
        if not pcs:
            return NAIVE
        pws = _divisors_desc(shape.pixels, (4, 2, 1))
        return Tile(pws[0] if pws else 1, pcs[0])
    pcs = _divisors_desc(shape.channels, (2, 1))  # 4 x 2: measured best on ResNet-8's convs (4 x 4 spills)
    pws = _divisors_desc(shape.pixels, (4, 2, 1))
    return Tile(pws[0] if pws else 1, pcs[0] if pcs else 1)


def schedule_module(mod, vector: bool = False, choices: dict | None = None, db_path=None):
    """Schedule every PrimFunc of a lowered module; `choices` maps Shape.key() -> Tile, by default the
    recorded schedule file (schedule_db.py; `db_path` or the repository's); unlisted shapes get default_tile."""
    import tvm
    from tvm import tirx

    from . import schedule_db

    if choices is None:
        choices = schedule_db.load_choices(vector, db_path)
    out = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            try:
                func = schedule_func(func, vector, lambda shape: _choose(choices, shape, vector))
            except CloudcoverError:
                raise
            except Exception as exc:
                raise CloudcoverError(f"scheduling kernel {gv.name_hint} failed: {' '.join(str(exc).split())[:300]}") from exc
        out[gv] = func
    return tvm.IRModule(out, attrs=mod.attrs) if mod.attrs is not None else tvm.IRModule(out)


def _choose(choices: dict, shape: Shape, vector: bool) -> Tile:
    """The recorded tile of `shape`, else the file's "*" entry when it fits (a search candidate), else the default."""
    if shape.key() in choices:
        return choices[shape.key()]
    star = choices.get("*")
    if star is not None and shape.pixels % star.pw == 0 and shape.channels % star.pc == 0:
        return star
    return default_tile(shape, vector)


def kernel_shapes(mod) -> dict[str, "Shape"]:
    """Kernel name -> Shape for the kernels of a lowered (unscheduled) module the tiled schedule applies to."""
    from tvm import tirx

    out = {}
    for gv, f in mod.functions.items():
        if isinstance(f, tirx.PrimFunc):
            shape = kernel_shape(f)
            if shape is not None:
                out[gv.name_hint] = shape
    return out


def kernel_shape(func) -> Shape | None:
    """The Shape of a kernel the tiled schedule applies to, or None (then it is scheduled naively)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    from .lowering import inline_elementwise

    inline_elementwise(sch)
    found = _find(sch)
    return None if found is None else found[2]


def _find(sch):
    """(output block, reduction block, Shape) when the kernel is one multiplying reduction whose spatial
    iteration space is the output block's loop nest; else None."""
    from tvm import tirx

    from .kernel_stats import _has_mul

    root = sch.get_sblock("root")
    outs = sch.get_output_blocks(root)
    if len(outs) != 1:
        return None
    out = outs[0]
    reds = [b for b in sch.get_child_blocks(root)
            if any(int(iv.iter_type) != tirx.IterVar.DataPar for iv in sch.get(b).iter_vars)]
    if len(reds) != 1 or not _has_mul(sch.get(reds[0]).body):
        return None
    red = reds[0]
    if sch.get(red).same_as(sch.get(out)):
        return None  # a reduction that writes the output itself (no epilogue): rare, left naive
    loops = sch.get_loops(out)
    ext = [int(sch.get(lp).extent) for lp in loops]
    ivs = sch.get(red).iter_vars
    sp = [int(iv.dom.extent) for iv in ivs if int(iv.iter_type) == tirx.IterVar.DataPar]
    rd = [int(iv.dom.extent) for iv in ivs if int(iv.iter_type) != tirx.IterVar.DataPar]
    if sp != ext or not ext:
        return None
    reduction = 1
    for r in rd:
        reduction *= r
    depthwise = len(sp) == 4 and _reads_pixel_and_channel(sch.get(red), ivs)  # conv2d with groups = C
    pixels = ext[-2] if len(ext) >= 2 else 1
    return out, red, Shape(pixels, ext[-1], reduction, depthwise)


def _reads_pixel_and_channel(block, ivs) -> bool:
    """Whether one operand of a 4-D reduction is indexed by both the output pixel and the output channel: the
    input of a depthwise conv (x[n, y+ry, x+rx, c]); a dense conv's input has rc, its weights no pixel."""
    from .lowering import _count

    pixel, channel = ivs[2].var, ivs[3].var
    for read in block.reads:
        mins = [r.min for r in read.region]
        if all(any(_count(m, lambda n, v=v: n.same_as(v)) for m in mins) for v in (pixel, channel)):
            return True
    return False


def _families():
    """Specialised schedule families, one module each, tried in order before the generic tile. Each has
    `schedule(func, found, vector, choose) -> PrimFunc | None` (None: not mine, fall through); `found` is
    _find's (output block, reduction block, Shape) on a fresh schedule of `func` with the epilogue inlined, or
    None for a kernel without one multiplying reduction."""
    from . import sched_depthwise, sched_rvv, sched_swar, sched_table

    return (sched_swar.schedule, sched_rvv.schedule, sched_depthwise.schedule, sched_table.schedule)


def schedule_func(func, vector: bool, choose):
    func = _schedule_func_tiled(func, vector, choose)
    if not vector:  # rv64gc: the requantization epilogue in 5 ops (sched_requant.py; rv64gcv keeps its own)
        from . import sched_requant

        func = sched_requant.rewrite(func)
    return func


def _schedule_func_tiled(func, vector: bool, choose):
    from tvm import s_tir

    from .lowering import _schedule_func, inline_elementwise

    for family in _families():
        sch = s_tir.Schedule(func)
        inline_elementwise(sch)
        done = family(func, _find(sch), vector, choose)
        if done is not None:
            return done
    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    found = _find(sch)
    if found is None:
        return _schedule_func(func, vector)
    _, _, shape = found
    tile = choose(shape)
    if tile.variant:
        tile = default_tile(shape, vector)  # a family's tile its family declined: the generic default
    if tile == NAIVE or shape.pixels % tile.pw or shape.channels % tile.pc:
        return _schedule_func(func, vector)
    try:
        return _tiled(sch, found, tile, vector)
    except s_tir.ScheduleError:
        return _schedule_func(func, vector)


def epilogue_at(sch, out, red, loop) -> None:
    """The epilogue's multi-use values computed per element at `loop` (the innermost tile loop), as in the
    naive schedule; an input of the reduction (a padded input) stays a whole buffer."""
    root = sch.get_sblock("root")
    for b in reversed(sch.get_child_blocks(root)):
        if sch.get(b).same_as(sch.get(out)) or sch.get(b).same_as(sch.get(red)):
            continue
        if any(sch.get(x).same_as(sch.get(red)) for x in sch.get_consumers(b)):
            continue
        sch.compute_at(b, loop, True)


def reduction_innermost(sch, red) -> tuple[list, list]:
    """Reorder the reduction block's own loops: reduction loops outside, its spatial (tile) loops innermost.
    Returns (spatial loops, reduction loops)."""
    from tvm import tirx

    ivs = sch.get(red).iter_vars
    n_sp = sum(int(iv.iter_type) == tirx.IterVar.DataPar for iv in ivs)
    own = sch.get_loops(red)[-len(ivs):]
    sp_loops, rd_loops = list(own[:n_sp]), list(own[n_sp:])
    sch.reorder(*rd_loops, *sp_loops)
    return sp_loops, rd_loops


def _tiled(sch, found, tile: Tile, vector: bool):
    out, red, shape = found
    loops = sch.get_loops(out)
    c = loops[-1]
    co, ci = sch.split(c, [None, tile.pc])
    if len(loops) >= 2:
        wo, wi = sch.split(loops[-2], [None, tile.pw])
        sch.reorder(wo, co, wi, ci)
    else:
        wi = None
    epilogue_at(sch, out, red, ci)
    sch.compute_at(red, co, True)
    sp_loops, rd_loops = reduction_innermost(sch, red)
    return register_tile(sch, red, rd_loops, len(sp_loops), tile)


def register_tile(sch, red, rd_loops: list, n_sp: int, tile: Tile):
    """The common end of a tiled schedule: the innermost reduction loop unrolled by tile.ku, the n_sp tile loops
    unrolled, the accumulator initialised before the reduction and kept in a local buffer (registers after
    unrolling); the PrimFunc carries the chosen tile (tests, model.json)."""
    first_rd = rd_loops[0]
    if tile.ku > 1 and int(sch.get(rd_loops[-1]).extent) % tile.ku == 0:
        k_out, k_in = sch.split(rd_loops[-1], [None, tile.ku])
        if len(rd_loops) == 1:
            first_rd = k_out
        sch.unroll(k_in)
    for lp in sch.get_loops(red)[-n_sp:]:
        if int(sch.get(lp).extent) > 1:
            sch.unroll(lp)
    sch.decompose_reduction(red, first_rd)
    sch.set_scope(red, 0, "local")
    return sch.mod["main"].with_attr("cloudcover_tile", tile.key())
