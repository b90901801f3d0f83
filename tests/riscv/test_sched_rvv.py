"""The RVV schedule family (export/sched_rvv.py) never changes a result: conv / dense shapes of the benchmark models,
compiled for rv64gcv with each RVV tile (LMUL-8 32-channel tiles, 16- and 8-channel tiles) and run under the
plugin QEMU (-cpu rv64,v=true,vlen=128), compute exactly what the naive schedule computes and what TFLite's
reference kernels compute, on random int8 inputs plus the all -128 and all 127 images, with input zero points at
both ends of the int8 range. The family's choice rules are checked without a build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import needs_device
from .test_int8_ops import Case, _convert, _layers, _reference_case


def _conv(c, k, s):
    return lambda x: _layers().Conv2D(c, k, strides=s, padding="same")(x)


def _dw(s):
    def build(x):
        y = _layers().DepthwiseConv2D(3, strides=s, padding="same")(x)
        return _layers().ReLU(6.0)(y)

    return build


def _dense(c):
    return lambda x: _layers().Dense(c)(_layers().Flatten()(x))


# (id, case): shapes of the benchmark models (riscv/bench_models.py) on small inputs; "zp-128"/"zp127" calibrate
# the input so its zero point sits at an end of the int8 range
SHAPES = {
    "resnet8-conv3x3-32-zp-128": Case("conv2d", _conv(32, 3, 1), (6, 6, 32), "zp-128"),
    "resnet8-conv3x3-16": Case("conv2d", _conv(16, 3, 1), (8, 8, 16)),
    "unet-conv3x3-s2-64-zp127": Case("conv2d", _conv(64, 3, 2), (12, 12, 16), "zp127"),
    "mnv2-pw1x1-96": Case("conv2d", _conv(96, 1, 1), (6, 6, 24)),
    "edge-pw1x1-24": Case("conv2d", _conv(24, 1, 1), (8, 8, 48)),
    "dense-1280-32": Case("dense", _dense(32), (1, 1, 1280)),
}
FAST = ["resnet8-conv3x3-32-zp-128"]


def _build(model: Path, schedules: str, work: Path, x: np.ndarray) -> tuple[dict, np.ndarray]:
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu, toolchain

    info = compile_model(model, "rv64gcv", work / "model", log=lambda m: None, compute="int8", schedules=schedules)
    exe = toolchain.build_infer(work / "model", work / "cmake", "rv64gcv")
    raw = qemu.run_infer(qemu.find_emulator(), exe, "rv64gcv", x.tobytes(), work / "qemu", count=False).output
    return info, np.frombuffer(raw, np.int8).reshape(len(x), -1)


def _rvv_tiles(model: Path) -> list:
    from cloudcover.export import int8_lowering, lowering, relax_import, sched_rvv, schedules

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    shapes = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True))
    tiles = {t for s in shapes.values() for t in sched_rvv.candidate_tiles(s)}
    assert tiles, "the case has a kernel the RVV family applies to"
    return sorted(tiles, key=lambda t: (-t.pc, -t.pw, t.ku))


def _check(name: str, tmp: Path, every: bool) -> None:
    from cloudcover.export import schedule_db

    case = SHAPES[name]
    model, x, ref = _reference_case(case, tmp)
    _, naive = _build(model, "naive", tmp / "naive", x)
    assert np.array_equal(naive, ref)
    tiles = _rvv_tiles(model)
    for tile in tiles if every else tiles[:2]:
        db = tmp / f"{tile.key()}.json"
        schedule_db.save({"vector": {"*": tile.key()}}, db)
        info, dev = _build(model, str(db), tmp / tile.key(), x)
        diff = np.abs(dev.astype(np.int32) - naive.astype(np.int32))
        assert diff.max() == 0, f"{name} tile {tile.key()}: {int((diff > 0).sum())} values differ"


@needs_device
@pytest.mark.parametrize("name", FAST)
def test_rvv_tiles_are_bit_exact(name, tmp_path):
    _check(name, tmp_path, every=False)


@needs_device
@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_rvv_tiles_are_bit_exact_on_benchmark_shapes(name, tmp_path):
    _check(name, tmp_path, every=True)


def test_default_tiles_fill_the_vector_registers():
    from cloudcover.export import sched_rvv
    from cloudcover.export.schedules import Shape, Tile

    assert sched_rvv.default_tile(Shape(12, 192, 96, False)) == Tile(3, 32, 1, "rvv")  # 3 LMUL-8 accumulators
    assert sched_rvv.default_tile(Shape(16, 32, 144, False)) == Tile(2, 32, 1, "rvv")
    assert sched_rvv.default_tile(Shape(4, 1280, 112, False)) == Tile(2, 32, 1, "rvv")
    assert sched_rvv.default_tile(Shape(1, 64, 112, False)) == Tile(1, 32, 1, "rvv")
    assert sched_rvv.default_tile(Shape(32, 16, 144, False)) is None  # 16 channels: the generic tile unless measured
    assert sched_rvv.default_tile(Shape(1, 10, 64, False)) is None
    assert Tile(2, 16, 2, "rvv") in sched_rvv.candidate_tiles(Shape(32, 16, 144, False))
    assert sched_rvv.candidate_tiles(Shape(48, 48, 9, True)) == []  # depthwise: sched_depthwise.py's


def _conv_kernel(tmp: Path):
    from cloudcover.export import int8_lowering, lowering, relax_import, schedules

    model = tmp / "m.tflite"
    _convert(Case("conv2d", _conv(32, 3, 1), (6, 6, 16)), model)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=False, pads_alone=True)
    shapes = schedules.kernel_shapes(low)
    (name, shape), = shapes.items()
    return next(f for gv, f in low.functions.items() if gv.name_hint == name), shape


def test_family_takes_defaults_and_rvv_tiles_only(tmp_path):
    from tvm import s_tir

    from cloudcover.export import sched_rvv, schedules
    from cloudcover.export.lowering import inline_elementwise
    from cloudcover.export.schedules import Tile

    func, shape = _conv_kernel(tmp_path)
    sch = s_tir.Schedule(func)
    inline_elementwise(sch)
    found = schedules._find(sch)

    def run(vector, tile):
        out = sched_rvv.schedule(func, found, vector, lambda s: tile)
        return None if out is None else str(out.attrs["cloudcover_tile"])

    default = schedules.default_tile(shape, True)
    assert run(False, default) is None  # scalar builds: never
    assert run(True, default) == sched_rvv.default_tile(shape).key()  # nothing recorded: the family's default
    assert run(True, Tile(4, 32, 1, "rvv")) is None  # 4 pixels do not divide the 6-pixel rows: declined
    assert run(True, Tile(1, 32, 2, "rvv")) == "1x32u2-rvv"
    other = Tile(2, 8)
    assert other != default and run(True, other) is None  # a recorded generic tile stays generic
    assert str(schedules.schedule_func(func, True, lambda s: other).attrs["cloudcover_tile"]) == "2x8"


def test_rvv_kernels_are_built_apart_with_wide_register_groups(tmp_path):
    """build_kernels: the family's kernel gets LMUL-8 int32 accumulators (e32, m8 and vwmacc in its code), the
    other kernels (the pad) are built with the plain target, and one relocatable object holds both."""
    import shutil
    import subprocess

    import tvm

    from cloudcover.export import sched_rvv, schedules
    from cloudcover.export.schedules import Tile
    from cloudcover.export.targets import get_target

    func, shape = _conv_kernel(tmp_path)
    conv = schedules.schedule_func(func, True, lambda s: Tile(2, 32, 1, "rvv"))
    assert str(conv.attrs["cloudcover_tile"]) == "2x32-rvv"
    plain = schedules.schedule_func(func, True, lambda s: Tile(1, 8))  # a generic tile (not the default)
    mod = tvm.IRModule({"conv": conv.with_attr("global_symbol", "conv"),
                        "conv_plain": plain.with_attr("global_symbol", "conv_plain")})
    llvm = get_target("rv64gcv").llvm
    lib = sched_rvv.build_kernels(mod, llvm)
    assert isinstance(lib, sched_rvv._Joined) and len(lib.parts) == 2
    wide_asm, plain_asm = (p.inspect_source("asm") for p in lib.parts)
    assert "e32, m8" in wide_asm and "vwmacc.vx" in wide_asm
    assert "e32, m8" not in plain_asm
    if shutil.which(sched_rvv._Joined.LD):
        obj = tmp_path / "kernels.o"
        lib.write_to_file(str(obj))
        syms = subprocess.run(["riscv64-linux-gnu-nm", str(obj)], capture_output=True, text=True, check=True).stdout
        assert "__tvm_ffi_conv\n" in syms and "__tvm_ffi_conv_plain\n" in syms
        assert not list(tmp_path.glob("*.part*.o"))
    assert sched_rvv.build_kernels(tvm.IRModule({"conv_plain": mod["conv_plain"]}), llvm).__class__ is not sched_rvv._Joined
    scalar = sched_rvv.build_kernels(mod, get_target("rv64gc").llvm)  # a scalar target: one plain build
    assert scalar.__class__ is not sched_rvv._Joined


# MobileNetV2's narrow and tiny-spatial 1x1 shapes with the tiles export/schedules.json records for them (channel
# rows of 48, 56 or 112 lanes that the SLP vectorizer splits into 32 + 16 (+ 8), reductions unrolled by 2 or 4)
NARROW = {
    "mnv2-pw1x1-336-56-3px": (Case("conv2d", _conv(56, 1, 1), (3, 3, 336)), ("1x56u4-rvv", "1x56u2-rvv")),
    "mnv2-pw1x1-56-336-3px": (Case("conv2d", _conv(336, 1, 1), (3, 3, 56), "zp-128"), ("1x48u4-rvv", "1x112u2-rvv")),
    "mnv2-pw1x1-336-112-3px": (Case("conv2d", _conv(112, 1, 1), (3, 3, 336), "zp127"), ("1x112u4-rvv", "1x56u2-rvv")),
    "mnv2-pw1x1-144-24-6px": (Case("conv2d", _conv(24, 1, 1), (6, 6, 144)), ("6x8u2-rvv", "2x24u4-rvv")),
    "mnv2-pw1x1-8-48-48px": (Case("conv2d", _conv(48, 1, 1), (12, 12, 8)), ("1x48-rvv", "1x48u4-rvv")),
    # "-rvvq": recorded tile names of MobileNetV2 (now built as their "-rvv" twins: sched_rvv_epilogue.py)
    "mnv2-stem-3x3s2-16": (Case("conv2d", _conv(16, 3, 2), (12, 12, 3), "zp-128"), ("3x16u3-rvvq",)),
    "mnv2-pw1x1-16-96": (Case("conv2d", _conv(96, 1, 1), (6, 6, 16), "zp127"), ("3x32-rvvq", "2x48-rvvq")),
    # "-dwq": sched_depthwise's vector tiles whose MACs stay LLVM's (sched_rvv_dw rewrites only "-dw")
    "mnv2-dw-s1-16": (Case("conv2d", _dw(1), (8, 8, 16), "zp-128"), ("2x16-dwq",)),
    "mnv2-dw-s1-144": (Case("conv2d", _dw(1), (6, 6, 144), "zp127"), ("1x48-dwq",)),
}


@needs_device
@pytest.mark.parametrize("name", [pytest.param(n, marks=() if i == 0 else pytest.mark.slow)
                                  for i, n in enumerate(NARROW)])
def test_narrow_channel_tiles_are_bit_exact(name, tmp_path):
    """The recorded narrow-channel tiles compute what the naive schedule and TFLite's reference kernels compute."""
    from cloudcover.export import schedule_db, schedules

    case, keys = NARROW[name]
    model, x, ref = _reference_case(case, tmp_path)
    _, naive = _build(model, "naive", tmp_path / "naive", x)
    assert np.array_equal(naive, ref)
    from cloudcover.export import int8_lowering, lowering, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    (shape,) = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True)).values()
    for key in keys:
        db = tmp_path / f"{key}.json"
        schedule_db.save({"vector": {shape.key(): key}}, db)
        tiles = {str(f.attrs["cloudcover_tile"]) for f in lowering.lower(mod, schedule=str(db), vector=True).functions.values()
                 if f.attrs is not None and "cloudcover_tile" in f.attrs}
        assert tiles == {key}, f"the conv kernel was scheduled with {tiles}, not {key}"
        _, dev = _build(model, str(db), tmp_path / key, x)
        diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
        assert diff.max() == 0, f"{name} tile {key}: {int((diff > 0).sum())} values differ from TFLite's reference"


def test_rvvq_and_dwq_tiles_schedule_as_their_plain_twins(tmp_path):
    """"-rvvq" / "-dwq" kernels are the "-rvv" / "-dw" kernels (the int32-lane epilogue is sched_rvv_epilogue's,
    applied at build time to both; "-dwq" only keeps LLVM's MACs, a function attribute): same TIR apart from the
    recorded tile name."""
    from cloudcover.export.schedules import Tile

    for case, q_tile, plain_tile in ((Case("conv2d", _conv(32, 1, 1), (6, 6, 16)), Tile(2, 32, 1, "rvvq"),
                                      Tile(2, 32, 1, "rvv")),
                                     (Case("conv2d", _dw(1), (6, 6, 16)), Tile(2, 16, 1, "dwq"), Tile(2, 16, 1, "dw"))):
        _check_same_tir(tmp_path / q_tile.variant, case, q_tile, plain_tile)


def _check_same_tir(tmp_path, case, q_tile, plain_tile):
    import tvm_ffi

    from cloudcover.export import int8_lowering, lowering, relax_import, schedules

    tmp_path.mkdir()
    model = tmp_path / "m.tflite"
    _convert(case, model)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=False, pads_alone=True)
    (name, _), = schedules.kernel_shapes(low).items()
    func = next(f for gv, f in low.functions.items() if gv.name_hint == name)
    q = schedules.schedule_func(func, True, lambda s: q_tile)
    plain = schedules.schedule_func(func, True, lambda s: plain_tile)
    assert str(q.attrs["cloudcover_tile"]) == q_tile.key()
    assert tvm_ffi.structural_equal(q.body, plain.body)
