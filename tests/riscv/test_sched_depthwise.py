"""The depthwise schedule family (export/sched_depthwise.py) never changes a result: depthwise 3x3 shapes of the
benchmark models (MobileNetV2's stride 1 and 2 at 16..144 channels, edge_cnn's), compiled for rv64gc and rv64gcv
with each dw tile and run under the plugin QEMU, compute exactly what the naive schedule computes and what TFLite's
reference kernels compute, on random int8 inputs plus the all -128 and all 127 images, with input zero points at
both ends of the int8 range. Which kernels the family takes is checked without a build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import needs_device
from .test_int8_ops import Case, _convert, _inputs, _layers, _reference, _reference_case


def _dw(s, relu6=True):
    def build(x):
        y = _layers().DepthwiseConv2D(3, strides=s, padding="same")(x)
        return _layers().ReLU(6.0)(y) if relu6 else y
    return build


def _dense_conv(c):
    return lambda x: _layers().Conv2D(c, 3, padding="same")(x)


# (id, case): depthwise shapes of the benchmark models (riscv/bench_models.py) on small inputs; "zp-128"/"zp127"
# calibrate the input so its zero point sits at an end of the int8 range
SHAPES = {
    "mnv2-dw-s1-16-zp-128": Case("conv2d", _dw(1), (8, 8, 16), "zp-128"),
    "mnv2-dw-s2-48": Case("conv2d", _dw(2), (8, 8, 48)),
    "mnv2-dw-s1-96-zp127": Case("conv2d", _dw(1, relu6=False), (6, 6, 96), "zp127"),
    "mnv2-dw-s1-144": Case("conv2d", _dw(1), (6, 6, 144)),
    "edge-dw-s2-24": Case("conv2d", _dw(2), (12, 12, 24)),
    "odd-dw-s1-3x5-8": Case("conv2d", _dw(1), (3, 5, 8)),
}
FAST = [("mnv2-dw-s1-16-zp-128", "rv64gcv"), ("mnv2-dw-s1-16-zp-128", "rv64gc")]
PACKS_ROWS = {"mnv2-dw-s1-16-zp-128", "mnv2-dw-s1-96-zp127", "mnv2-dw-s1-144"}  # stride 1, even rows: "dw2" applies
PACKS_ROWS3 = {"mnv2-dw-s1-96-zp127", "mnv2-dw-s1-144"}  # stride 1, rows a multiple of 3: "dw3" applies
TARGETS = ("rv64gc", "rv64gcv")


def _build(model: Path, target: str, schedules: str, work: Path, x: np.ndarray) -> tuple[dict, np.ndarray]:
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu, toolchain

    info = compile_model(model, target, work / "model", log=lambda m: None, compute="int8", schedules=schedules)
    exe = toolchain.build_infer(work / "model", work / "cmake", target)
    raw = qemu.run_infer(qemu.find_emulator(), exe, target, x.tobytes(), work / "qemu", count=False).output
    return info, np.frombuffer(raw, np.int8).reshape(len(x), -1)


def _dw_tiles(model: Path, vector: bool) -> list:
    from cloudcover.export import int8_lowering, lowering, relax_import, sched_depthwise, schedules

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    shapes = [s for s in schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True)).values()
              if s.depthwise]
    assert shapes, "the case has a depthwise kernel"
    tiles = {t for s in shapes for t in sched_depthwise.candidate_tiles(s, vector)}
    tiles |= {sched_depthwise.default_tile(s, vector) for s in shapes}
    return sorted(tiles, key=lambda t: (-t.pc, -t.pw, t.key()))


def _tiles_used(model: Path, db: str, vector: bool) -> set[str]:
    from tvm import tirx

    from cloudcover.export import int8_lowering, lowering, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=db, vector=vector)
    return {str(f.attrs["cloudcover_tile"]) for f in low.functions.values()
            if isinstance(f, tirx.PrimFunc) and f.attrs is not None and "cloudcover_tile" in f.attrs}


def _check(name: str, target: str, tmp: Path, every: bool) -> None:
    from cloudcover.export import sched_depthwise, schedule_db

    case = SHAPES[name]
    model, x, ref = _reference_case(case, tmp)
    _, naive = _build(model, target, "naive", tmp / "naive", x)
    assert np.array_equal(naive, ref)
    vector = target == "rv64gcv"
    tiles = _dw_tiles(model, vector)  # (one where only 1 x 8 divides: the odd 3 x 5 x 8 case on rv64gcv)
    for tile in tiles if every else tiles[:2]:
        if every and tile.variant == sched_depthwise.ROWS3 and name not in PACKS_ROWS3:
            continue  # declined: the one-row tile it falls back to is tested on its own
        db = tmp / f"{tile.key()}.json"
        schedule_db.save({schedule_db.target_class(vector): {"*": tile.key()}}, db)
        used = _tiles_used(model, str(db), vector)
        packs = {sched_depthwise.ROWS: PACKS_ROWS, sched_depthwise.ROWS3: PACKS_ROWS3}
        if tile.variant in packs and name not in packs[tile.variant]:  # strided or rows not whole pairs: declined
            assert tile.key() not in used and any(u.endswith("-dw") for u in used)
        else:
            assert tile.key() in used  # the dw family scheduled it, not another
        info, dev = _build(model, target, str(db), tmp / tile.key(), x)
        diff = np.abs(dev.astype(np.int32) - naive.astype(np.int32))
        assert diff.max() == 0, f"{name} {target} tile {tile.key()}: {int((diff > 0).sum())} values differ"


@needs_device
@pytest.mark.parametrize("name, target", FAST)
def test_dw_tiles_are_bit_exact(name, target, tmp_path):
    _check(name, target, tmp_path, every=False)


@needs_device
@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_dw_tiles_are_bit_exact_on_benchmark_shapes(name, target, tmp_path):
    _check(name, target, tmp_path, every=True)


def _kernels(tmp: Path, case: Case):
    from tvm import s_tir, tirx

    from cloudcover.export import int8_lowering, lowering, relax_import, schedules

    tmp.mkdir(exist_ok=True)
    model = tmp / "m.tflite"
    _convert(case, model)
    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=False, pads_alone=True)
    out = []
    for gv, f in low.functions.items():
        if isinstance(f, tirx.PrimFunc):
            sch = s_tir.Schedule(f)
            lowering.inline_elementwise(sch)
            out.append((gv.name_hint, f, schedules._find(sch)))
    return out


def test_family_takes_depthwise_convs_only(tmp_path):
    from cloudcover.export import sched_depthwise, schedules
    from cloudcover.export.schedules import Tile

    dw = [(n, f, found) for n, f, found in _kernels(tmp_path, SHAPES["mnv2-dw-s2-48"]) if found is not None]
    (name, func, found), = dw
    assert found[2] == schedules.Shape(4, 48, 9, True)  # 8 x 8 / 2 = 4 output columns, 48 channels, 3 x 3
    for vector in (False, True):
        default = sched_depthwise.default_tile(found[2], vector)
        assert default.variant == (sched_depthwise.VARIANT if vector else sched_depthwise.ROWS)
        out = sched_depthwise.schedule(func, found, vector, lambda s: Tile(2, 4))  # a generic tile: the dw default
        if vector and not sched_depthwise.wide_build():
            assert out is None  # (rv64gcv without the LMUL-8 build: recorded dw tiles only)
        elif vector:
            assert str(out.attrs["cloudcover_tile"]) == default.key()
        else:  # a stride-2 conv: the row-pair tile declines, the unpacked dw tile takes it
            assert str(out.attrs["cloudcover_tile"]) == sched_depthwise.unpacked_tile(found[2]).key() == "2x1-dw"
        out = sched_depthwise.schedule(func, found, vector, lambda s: Tile(2, 16, 1, "dw"))
        assert str(out.attrs["cloudcover_tile"]) == "2x16-dw"
        # the whole schedule, through the families: a depthwise kernel gets a dw tile on either target
        assert str(schedules.schedule_func(func, vector, lambda s: default).attrs["cloudcover_tile"]).endswith("-dw")
    assert sched_depthwise.default_tile(found[2], True) == Tile(1, 16, 1, "dw")  # 48 channels: 3 x 16
    assert sched_depthwise.default_tile(schedules.Shape(6, 192, 9, True), True) == Tile(1, 32, 1, "dw")
    assert sched_depthwise.default_tile(schedules.Shape(3, 336, 9, True), False) == Tile(1, 1, 1, "dw2")
    assert sched_depthwise.default_tile(schedules.Shape(48, 16, 9, True), False) == Tile(4, 1, 1, "dw2")
    assert sched_depthwise.default_tile(schedules.Shape(6, 144, 9, True), False) == Tile(2, 1, 1, "dw2")
    assert sched_depthwise.unpacked_tile(schedules.Shape(3, 336, 9, True)) == Tile(1, 1, 1, "dw")
    dense = [(n, f, found) for n, f, found in _kernels(tmp_path / "d", Case("conv2d", _dense_conv(16), (6, 6, 8)))
             if found is not None]
    (_, func, found), = dense
    assert not found[2].depthwise
    assert sched_depthwise.schedule(func, found, True, lambda s: Tile(1, 16, 1, "dw")) is None
    assert sched_depthwise.schedule(func, None, True, lambda s: Tile(1, 16, 1, "dw")) is None


def _stem(x):
    return _layers().Conv2D(8, 3, strides=2, padding="same")(x)


def test_short_channel_pads_get_one_row_on_rvv_only(tmp_path):
    """The 3-channel stem's pad: fused pixel x channel loop on rv64gcv; 16 channels or rv64gc: untouched."""
    from tvm import tirx

    from cloudcover.export import sched_depthwise

    pads = [(n, f) for n, f, found in _kernels(tmp_path, Case("conv2d", _stem, (8, 8, 3))) if n.startswith("pad")]
    assert pads, "a stride-2 'same' conv pads its input in a kernel of its own"
    (_, pad), = pads
    fused = sched_depthwise.schedule(pad, None, True, None)
    assert fused is not None and sched_depthwise.schedule(pad, None, False, None) is None

    def loops(f) -> int:
        from cloudcover.export.lowering import _count

        return _count(f.body, lambda n: isinstance(n, tirx.For))

    assert loops(pad) == 4 and loops(fused) == 3
    wide = [f for n, f, found in _kernels(tmp_path / "w", Case("conv2d", _dense_conv(8), (8, 8, 16))) if n.startswith("pad")]
    assert all(sched_depthwise.schedule(f, None, True, None) is None for f in wide)


@needs_device
def test_stem_pad_row_is_bit_exact_under_qemu(tmp_path):
    case = Case("conv2d", lambda x: _layers().ReLU(6.0)(_stem(x)), (12, 12, 3), "zp127")
    model, x, ref = _reference_case(case, tmp_path)
    _, naive = _build(model, "rv64gcv", "naive", tmp_path / "naive", x)
    _, tuned = _build(model, "rv64gcv", "tuned", tmp_path / "tuned", x)
    assert np.array_equal(naive, ref) and np.array_equal(tuned, ref)


def test_row_pairs_decode_hand_case():
    """Two output rows packed in one int64 (dw2): row 0's sum is negative (-49530, the low lane borrows from the
    high one), row 1's positive (48390); + bias 5. x rows: 127, -1, -1, 127; weight rows -128, 127, 127."""
    from cloudcover.export import sched_depthwise
    from cloudcover.export.schedules import Tile

    from .test_sched_swar import _host, _te_conv

    x = np.zeros((1, 4, 3, 1), np.int8)
    x[0, 0], x[0, 1], x[0, 2], x[0, 3] = 127, -1, -1, 127
    w = np.full((3, 3, 1, 1), 127, np.int8)
    w[0] = -128
    want = np.array([127 * -128 * 3 - 127 * 6 + 5, -1 * -128 * 3 - 127 * 3 + 127 * 127 * 3 + 5], np.int32)
    assert want.tolist() == [-49525, 48395]
    func = sched_depthwise.rows_tiled(_te_conv(4, 3, 1, 1, 3, 1, depthwise=True), Tile(1, 1, 1, "dw2"))
    assert func.attrs["cloudcover_tile"] == "1x1-dw2"
    got = _host(func)(x, w, np.array([5], np.int32), np.zeros((1, 2, 1, 1), np.int32))
    assert np.array_equal(got.ravel(), want)


def test_row_triples_decode_hand_case():
    """Three output rows in 21-bit lanes (dw3) near the lanes' limits (9 * 2^14 = 147456 at most): input rows of
    alternating sign against weight rows -128, 127, -128 give +146688, -146307, +146688 (bias -3 included), so
    the middle lane is negative between two positive ones."""
    from cloudcover.export import sched_depthwise
    from cloudcover.export.schedules import Tile

    from .test_sched_swar import _host, _te_conv

    x = np.full((1, 5, 3, 1), -128, np.int8)
    x[0, 1:4] = 127
    x[0, 2] = -128
    w = np.full((3, 3, 1, 1), -128, np.int8)
    w[1] = 127
    w[2] = -128
    func = sched_depthwise.rows_tiled(_te_conv(5, 3, 1, 1, 3, 1, depthwise=True), Tile(1, 1, 1, "dw3"))
    assert func.attrs["cloudcover_tile"] == "1x1-dw3"
    got = _host(func)(x, w, np.array([-3], np.int32), np.zeros((1, 3, 1, 1), np.int32))
    want = _np_dw(x, w, np.array([-3], np.int32)).ravel()
    # rows 0 and 2: 3 * (2^14 + 127^2 + 2^14) - 3; row 1: 9 * 127 * -128 - 3
    assert want.tolist() == [146688, -146307, 146688]
    assert np.array_equal(got.ravel(), want)


@needs_device
def test_row_triples_match_tflite_on_rv64gc(tmp_path):
    """dw3 on whole converted models: ReLU6 (the floor-form epilogue) and no activation with the input zero
    point at 127 (the sign-term epilogue), each equal to TFLite's reference kernels."""
    from cloudcover.export import schedule_db

    for name, key in (("mnv2-dw-s1-144", "2x1-dw3"), ("mnv2-dw-s1-96-zp127", "3x1-dw3")):
        work = tmp_path / name
        work.mkdir()
        model = work / "model_int8.tflite"
        _convert(SHAPES[name], model)
        x = _inputs(SHAPES[name].shape)
        ref = _reference(model, x)
        db = work / "db.json"
        schedule_db.save({"scalar": {"*": key}}, db)
        assert key in _tiles_used(model, str(db), False)
        _, dev = _build(model, "rv64gc", str(db), work / "build", x)
        assert np.array_equal(dev, ref.reshape(len(x), -1)), name


def _np_dw(x, w, b):
    """int64 depthwise 3x3 'valid' conv, stride 1 (the independent oracle)."""
    k = w.shape[0]
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.int64)
    for i in range(k):
        for j in range(k):
            out += x[:, i:i + oh, j:j + ow, :].astype(np.int64) * w[i, j, 0].astype(np.int64)
    return out + b.astype(np.int64)


@pytest.mark.parametrize("h, w, c", [(50, 10, 16), (8, 26, 48), (14, 8, 96), (8, 8, 144)])
def test_row_pairs_match_numpy_on_benchmark_shapes(h, w, c):
    """dw2 tiles (every pixel count that divides the row) on MobileNetV2's stride-1 depthwise shapes (short rows)
    equal numpy's int64 depthwise conv on random data and on the extremes (-128 / 127 everywhere, rows of
    alternating sign so the two packed lanes have opposite signs)."""
    from cloudcover.export import sched_depthwise
    from cloudcover.export.schedules import Shape

    from .test_sched_swar import _host, _te_conv

    rng = np.random.default_rng(h * w * c)
    func = _te_conv(h, w, c, c, 3, 1, depthwise=True)
    xs = [rng.integers(-128, 128, (1, h, w, c)).astype(np.int8), np.full((1, h, w, c), -128, np.int8),
          np.full((1, h, w, c), 127, np.int8)]
    alt = np.full((1, h, w, c), 127, np.int8)
    alt[:, 1::2] = -128
    xs.append(alt)
    ws = [rng.integers(-128, 128, (3, 3, 1, c)).astype(np.int8), np.full((3, 3, 1, c), -128, np.int8)]
    b = rng.integers(-(1 << 20), 1 << 20, c).astype(np.int32)
    shape = Shape(w - 2, c, 9, True)
    rows3 = (h - 2) % 3 == 0
    tiles = [t for t in sched_depthwise.candidate_tiles(shape, False)
             if t.variant == sched_depthwise.ROWS or (rows3 and t.variant == sched_depthwise.ROWS3)]
    assert tiles and (not rows3 or any(t.variant == sched_depthwise.ROWS3 for t in tiles))
    for tile in tiles:
        run = _host(sched_depthwise.rows_tiled(func, tile))
        for x in xs:
            for wt in ws:
                got = run(x, wt, b, np.zeros((1, h - 2, w - 2, c), np.int32))
                assert np.array_equal(got, _np_dw(x, wt, b)), tile.key()


def _dw_kernels(model: Path, tile: str) -> list:
    """The depthwise kernels of `model` lowered for rv64gcv with every kernel given `tile`."""
    import tempfile

    from tvm import tirx

    from cloudcover.export import int8_lowering, lowering, relax_import, schedule_db

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db.json"
        schedule_db.save({schedule_db.target_class(True): {"*": tile}}, db)
        low = lowering.lower(mod, schedule=str(db), vector=True)
    return [f for f in low.functions.values() if isinstance(f, tirx.PrimFunc) and f.attrs is not None
            and str(f.attrs.get("cloudcover_tile", "")).endswith(("-dw", "-dwq"))]


def test_intrinsic_mac_rewrites_16_channel_chunks(tmp_path):
    """sched_rvv_dw rewrites a dw tile whose channels come in 16s: 1 x 48 as two 24-lane chunks of 9 taps (one
    vwmul, 8 vwmacc each), 2 x 16 as two pixels' accumulators sharing each tap's weights (each weight vector loaded
    once: 9 + 18 loads); an 8-channel tile is declined (LLVM's vectorizers keep it)."""
    from cloudcover.export.sched_rvv_dw import _NoMatch, intrinsic_mac

    model = tmp_path / "model_int8.tflite"
    _convert(SHAPES["mnv2-dw-s2-48"], model)
    (one,) = _dw_kernels(model, "1x48-dw")
    text = intrinsic_mac(one).script()
    assert text.count("llvm.riscv.vwmul") == 2 and text.count("llvm.riscv.vwmacc") == 16
    assert "_update" not in text and "_init" not in text
    (two,) = _dw_kernels(model, "2x16-dw")
    text = intrinsic_mac(two).script()
    assert text.count("llvm.riscv.vwmul") == 2 and text.count("llvm.vp.load") == 9 + 18
    (narrow,) = _dw_kernels(model, "2x8-dw")
    with pytest.raises(_NoMatch):
        intrinsic_mac(narrow)


@needs_device
@pytest.mark.parametrize("name, tile", [("mnv2-dw-s2-48", "1x48-dw"), ("mnv2-dw-s1-144", "2x48-dw"),
                                        ("mnv2-dw-s1-16-zp-128", "2x16-dw")])
def test_intrinsic_mac_is_bit_exact(name, tile, tmp_path):
    """rv64gcv dw tiles with their MACs as RVV intrinsics (sched_rvv_dw: int16 products, int32 sums) compute what
    TFLite's reference kernels compute (strided; 144 channels: three 48-channel blocks of 24 + 24 lanes, two pixels
    sharing the weights; 16 channels, two pixels, an input zero point of -128)."""
    from cloudcover.export import sched_depthwise, schedule_db
    from cloudcover.export.sched_rvv_dw import intrinsic_mac

    case = SHAPES[name]
    model = tmp_path / "model_int8.tflite"
    _convert(case, model)
    x = _inputs(case.shape)
    ref = _reference(model, x)
    db = tmp_path / "db.json"
    schedule_db.save({schedule_db.target_class(True): {"*": tile}}, db)
    kernels = _dw_kernels(model, tile)
    assert {str(f.attrs["cloudcover_tile"]) for f in kernels} == {tile}
    assert all(sched_depthwise.MAC_ATTR in f.attrs for f in kernels)
    for f in kernels:
        intrinsic_mac(f)  # matches (raises _NoMatch otherwise): the build takes the intrinsic form
    _, dev = _build(model, "rv64gcv", str(db), tmp_path / "build", x)
    diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() == 0, f"{name} tile {tile}: {int((diff > 0).sum())} values differ"
