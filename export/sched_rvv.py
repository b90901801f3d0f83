"""Vector (rv64gcv) schedule family: register tiles sized for RVV's grouped registers (LMUL up to 8).

At VLEN 128 one vector register holds 4 int32 lanes, but a group of 8 (LMUL 8) holds 32, and QEMU counts one
vector instruction as one whatever its LMUL. This family's kernels are built with LLVM's
`-riscv-v-register-bit-width-lmul=8` (build_kernels: for them only), so the SLP vectorizer turns an unrolled
tile of 32 output channels into, per reduction step, one int8 weight load (e8 m2), one sign extension to int16
(m4) and, per output pixel, one scalar activation load and one widening multiply-accumulate `vwmacc.vx` into an
int32 LMUL-8 accumulator: ~10 instructions for 64 MACs with a 2 x 32 tile, ~11 for 96 with 3 x 32 (three
8-register accumulators, the 4-register int16 weights and the 2-register int8 load fill the 32 registers; the
generic 16-channel tile at LMUL 1 takes ~20 for 64). The requantization epilogue after the tile becomes RVV
fixed-point instructions in int32 lanes at build time (sched_rvv_epilogue.py, every rv64gcv kernel whose epilogue
has the lowering's form; LLVM's loop vectorizer would run it in int64 lanes).

The loop structure is schedules._tiled's (reduction outside, the unrolled Pw x Pc accumulator tile inside, the
epilogue per tile); only the tile and the LLVM option differ, so results are bit-identical to the naive schedule
(tests/riscv/test_sched_rvv.py). This family takes a kernel when its recorded tile is an "-rvv" one
(export/schedules.json, measured per shape), or when the generic default would apply and the shape has a
multiple of 32 channels; a recorded generic tile is left to schedules.py, depthwise kernels to sched_depthwise.py.
A "-rvvq" tile (recorded where an earlier int32-lane epilogue rewrite measured fewer instructions) builds as its
"-rvv" twin: sched_rvv_epilogue.py gives every tile the RVV fixed-point epilogue.
"""

from __future__ import annotations

VARIANT = "rvv"
NARROW = "rvvq"  # recorded tile name: builds as "-rvv" (the int32-lane epilogue is sched_rvv_epilogue's for all)
# LLVM options for this family's kernels only (build_kernels): the vectorizers see 8-register groups
WIDE_OPTS = ("-riscv-v-register-bit-width-lmul:int=8",)
# tile variants built with WIDE_OPTS: this family's and sched_depthwise's (its vector tiles were measured with it)
WIDE_VARIANTS = (VARIANT, NARROW, "dw", "dwq")
# the default for a shape export/schedules.json does not list: 32-channel tiles (LMUL-8 accumulators) only; with
# the wide option LLVM's SLP vectorizer merges narrower tiles erratically (e.g. two 8-channel pixels into one
# 16-lane vector built by gathers, 1.1 instr/MAC instead of 0.45), so 16- and 8-channel shapes keep the generic
# tile unless a measured "-rvv" tile is recorded for them
_PREFS = ((32, 3), (32, 2), (32, 1))
# what a search tries (pc, pw; each also with the reduction unrolled by 2)
_CANDS = ((32, 3), (32, 2), (32, 1), (16, 6), (16, 4), (16, 2), (8, 8), (8, 6), (8, 4))
# narrow or tiny-spatial shapes (MobileNetV2's 3 x 3 maps with 56/112/336 channels, 6 x 6 with 24): one pixel with
# a whole 48- to 112-channel row (LLVM's SLP vectorizer splits it into 32 + 16 (+ 8) lanes), the long reduction
# unrolled by 2 or 4; measured (kernel_bench) 1.87 -> 0.81 instr/MAC for 1x1 336 -> 56 at 3 x 3 pixels, where the
# 8-channel tiles that fit 3-pixel rows were all that was tried before
_NARROW_CANDS = ((48, 1), (56, 1), (112, 1), (24, 2), (48, 2))
_NARROW_KU = (2, 4)  # unrolled by 1 they measured slower on every such shape


def default_tile(shape):
    """The RVV tile of a conv/matmul shape no measurement covers, or None (then the generic tile applies)."""
    from .schedules import Tile

    for pc, pw in _PREFS:
        if shape.channels % pc == 0 and shape.pixels % pw == 0:
            return Tile(pw, pc, 1, VARIANT)
    return None


def candidate_tiles(shape) -> list:
    """RVV tiles worth trying for `shape` (a search's candidates)."""
    from .schedules import Tile

    cands = [Tile(pw, pc, ku, VARIANT) for pc, pw in _CANDS for ku in (1, 2)]
    cands += [Tile(pw, pc, ku, VARIANT) for pc, pw in _NARROW_CANDS for ku in _NARROW_KU
              if Tile(pw, pc, ku, VARIANT) not in cands]
    return [t for t in cands if shape.channels % t.pc == 0 and shape.pixels % t.pw == 0 and not shape.depthwise]


def schedule(func, found, vector: bool, choose):
    from tvm import s_tir

    from . import schedules
    from .lowering import inline_elementwise

    if not vector or found is None:
        return None
    shape = found[2]
    if shape.depthwise:
        return None
    tile = choose(shape)
    if tile.variant not in (VARIANT, NARROW):
        if tile != schedules.default_tile(shape, True):
            return None  # a recorded generic tile (or another family's): not ours
        tile = default_tile(shape)
        if tile is None:
            return None
    if shape.pixels % tile.pw or shape.channels % tile.pc:
        return None
    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    again = schedules._find(sch)
    if again is None:
        return None
    try:
        done = schedules._tiled(sch, again, tile, True)
    except s_tir.ScheduleError:
        return None
    return done


def build_kernels(kernels, llvm: dict):
    """tirx.build of the kernel module for the LLVM target `llvm`; on a vector target every kernel's requantization
    epilogue is first rewritten to RVV intrinsics (sched_rvv_epilogue.rewrite: after narrow_consts, so its
    per-channel vectors are int32), and the kernels this family scheduled are built apart with WIDE_OPTS (an
    LLVM option is process-wide per build, and other kernels' SLP-vectorized tiles get worse with it: 8-channel
    tiles turn into gathers) and the two objects are joined by a relocatable link, so the result's
    write_to_file still writes one kernels.o."""
    import tvm
    from tvm import tirx

    if "+v" not in llvm.get("mattr", []):
        return tirx.build(kernels, target=tvm.target.Target(llvm))
    from .sched_rvv_epilogue import rewrite

    kernels = tvm.IRModule({gv: rewrite(f) if isinstance(f, tirx.PrimFunc) else f
                            for gv, f in kernels.functions.items()}, attrs=kernels.attrs)
    wide = {gv: f for gv, f in kernels.functions.items()
            if str((f.attrs or {}).get("cloudcover_tile", "")).rpartition("-")[2] in WIDE_VARIANTS}
    if not wide:
        return tirx.build(kernels, target=tvm.target.Target(llvm))
    rest = {gv: f for gv, f in kernels.functions.items() if gv not in wide}
    parts = [tirx.build(tvm.IRModule(wide), target=tvm.target.Target({**llvm, "cl-opt": list(WIDE_OPTS)}))]
    if rest:
        parts.append(tirx.build(tvm.IRModule(rest), target=tvm.target.Target(llvm)))
    return _Joined(parts) if len(parts) > 1 else parts[0]


class _Joined:
    """Separately built kernel objects written as one (`ld -r`: a relocatable link, nothing resolved yet)."""

    LD = "riscv64-linux-gnu-ld"

    def __init__(self, parts):
        self.parts = parts

    def write_to_file(self, path: str) -> None:
        import shutil
        import subprocess
        from pathlib import Path

        from cloudcover.train.errors import CloudcoverError

        ld = shutil.which(self.LD)
        if ld is None:
            raise CloudcoverError(f"{self.LD} not found: it joins the RVV kernels' object with the others "
                                  "(install binutils-riscv64-linux-gnu, or `make setup`)")
        objs = [f"{path}.part{i}.o" for i in range(len(self.parts))]
        try:
            for lib, o in zip(self.parts, objs):
                lib.write_to_file(o)
            p = subprocess.run([ld, "-r", "-o", str(path), *objs], capture_output=True, text=True)
            if p.returncode != 0:
                raise CloudcoverError(f"{self.LD} -r could not join the kernel objects: {p.stderr.strip()[:300]}")
        finally:
            for o in objs:
                Path(o).unlink(missing_ok=True)
