"""The SWAR schedule family (export/sched_swar.py: two int32 lanes per int64 multiply) never changes a result.

Three oracles: a hand-computed case whose packed accumulator has a negative low lane (the decode's borrow);
numpy's int64 convolution on conv kernels of the benchmark models' shapes (kernel size, stride, channels, small
spatial extents) built with TE, over seeded random int8 data plus the extreme patterns (-128 / 127 everywhere,
alternating signs between the two packed lanes), for every SWAR tile that fits; and TFLite's reference kernels
(BUILTIN_REF) on whole converted models compiled for rv64gc and run under QEMU, with input zero points at both
ends of the int8 range. The family's refusals (depthwise, RVV, other tiles) are checked without a build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .test_int8_ops import Case, _convert, _inputs, _layers, _reference


def _host(func):
    """`func` built for the host with LLVM, as a callable on numpy arrays (the last one is written)."""
    import tvm

    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")

    def call(*arrays):
        dev = tvm.cpu()
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
        lib["main"](*args)
        return args[-1].numpy()

    return call


def _te_conv(h, w, cin, cout, k, stride, depthwise=False):
    """A conv kernel as the lowering produces it: int32 reduction of int8 x int8, then an epilogue (+ bias)."""
    from tvm import te

    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    a = te.placeholder((1, h, w, cin), "int8", name="a")
    wt = te.placeholder((k, k, 1 if depthwise else cin, cout), "int8", name="w")
    b = te.placeholder((cout,), "int32", name="b")
    ry, rx = te.reduce_axis((0, k), "ry"), te.reduce_axis((0, k), "rx")
    if depthwise:
        acc = te.compute((1, oh, ow, cout), lambda n, y, x, f: te.sum(
            a[n, y * stride + ry, x * stride + rx, f].astype("int32") * wt[ry, rx, 0, f].astype("int32"),
            axis=[ry, rx]), name="acc")
    else:
        rc = te.reduce_axis((0, cin), "rc")
        acc = te.compute((1, oh, ow, cout), lambda n, y, x, f: te.sum(
            a[n, y * stride + ry, x * stride + rx, rc].astype("int32") * wt[ry, rx, rc, f].astype("int32"),
            axis=[ry, rx, rc]), name="acc")
    out = te.compute((1, oh, ow, cout), lambda n, y, x, f: acc[n, y, x, f] + b[f], name="out")
    return te.create_prim_func([a, wt, b, out])


def _np_conv(x, w, b, stride):
    """int64 NHWC convolution (HWIO weights), the independent oracle."""
    k = w.shape[0]
    n, h, wd, _ = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, oh, ow, w.shape[3]), np.int64)
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :].astype(np.int64)
            out += patch @ w[i, j].astype(np.int64)
    return out + b.astype(np.int64)


def _swar(func, key):
    from cloudcover.export import sched_swar, schedules

    return sched_swar.swar_tiled(func, schedules.Tile.parse(key))


def _swar_blocks(func) -> int:
    """Blocks of the packed reduction in a scheduled kernel (found with TVM's structural visitor)."""
    from tvm import s_tir

    from cloudcover.export.lowering import _count

    return _count(func, lambda n: isinstance(n, s_tir.SBlock) and str(n.name_hint).startswith("swar_acc"))


def test_decode_hand_case():
    """2 pixels x 2 channels, K = 3: the low lane (pixel 0) sums to -48768 and 16000, the high lane to 48387 and
    -15875: both signs in both lanes, so lo's truncation and hi's borrow are both exercised."""
    x = np.array([-128, -128, -128, 127, 127, 127], np.int8).reshape(1, 1, 2, 3)
    w = np.array([[127, -128], [127, 1], [127, 2]], np.int8).reshape(1, 1, 3, 2)
    b = np.array([5, -7], np.int32)
    want = np.array([[-128 * 127 * 3 + 5, -128 * (-128 + 1 + 2) - 7],
                     [127 * 127 * 3 + 5, 127 * (-128 + 1 + 2) - 7]], np.int32).reshape(1, 1, 2, 2)
    assert want.ravel().tolist() == [-48763, 15993, 48392, -15882]
    for key in ("2x2-swar", "2x2-swarc", "1x2-swarc"):
        func = _swar(_te_conv(1, 2, 3, 2, 1, 1), key)
        assert _swar_blocks(func) > 0 and func.attrs["cloudcover_tile"] == key
        got = _host(func)(x, w, b, np.zeros((1, 1, 2, 2), np.int32))
        assert np.array_equal(got, want), (key, got.ravel().tolist())


# benchmark conv shapes (riscv/bench_models.py) on small spatial extents: (h, w, cin, cout, k, stride)
SHAPES = {
    "resnet8-conv3x3-16": (6, 10, 16, 16, 3, 1),
    "resnet8-conv3x3-s2-32": (9, 17, 16, 32, 3, 2),
    "resnet8-proj1x1-s2-64": (4, 8, 32, 64, 1, 2),
    "resnet8-conv3x3-64-k576": (4, 6, 64, 64, 3, 1),
    "edge-stem3x3-s2-24": (5, 17, 3, 24, 3, 2),
    "edge-pw1x1-48-384": (2, 4, 48, 384, 1, 1),
    "mnv2-pw1x1-96": (3, 12, 16, 96, 1, 1),
    "mnv2-p3-pw1x1-56": (3, 3, 192, 56, 1, 1),
    "mnv2-pw1x1-8-48": (3, 12, 8, 48, 1, 1),  # the 8 -> 48 expansion: "swarco" candidates (short reduction)
    "unet-conv3x3-8-k72": (5, 14, 8, 8, 3, 1),  # input channels 8: the window column and channels fused
    "unet-stem7x7-s2-16": (9, 29, 3, 16, 7, 2),
    "mnv2-stem3x3-s2-16": (5, 13, 3, 16, 3, 2),  # K = 27, 16 channels: pixel triples ("swar3x")
    "mnv2-pw1x1-8-k48": (3, 9, 48, 8, 1, 1),  # K = 48: the longest reduction class the 21-bit lanes take
}


def _data(rng, shape, kind):
    if kind == "random":
        return rng.integers(-128, 128, shape).astype(np.int8)
    if kind == "min":
        return np.full(shape, -128, np.int8)
    if kind == "max":
        return np.full(shape, 127, np.int8)
    # alternating -128 / 127 along the last two axes: neighbouring pixels (channels) get opposite signs
    grid = np.indices(shape)
    return np.where((grid[-1] + grid[-2]) % 2 == 0, -128, 127).astype(np.int8)


def _tiles(h, w, cin, cout, k, stride):
    from cloudcover.export import sched_swar, schedules

    ow = (w - k) // stride + 1
    shape = schedules.Shape(ow, cout, k * k * cin, False)
    tiles = [t.key() for t in sched_swar.candidate_tiles(shape, False)]
    assert tiles, "some SWAR tile fits every benchmark shape"
    return tiles


def _match_every_pattern(name, keys, seed):
    """Each tile of `keys` on SHAPES[name] equals numpy's conv for every pair of data patterns (lane extremes)."""
    h, w, cin, cout, k, stride = SHAPES[name]
    func = _te_conv(h, w, cin, cout, k, stride)
    rng = np.random.default_rng(seed)
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    for key in keys:
        run = _host(_swar(func, key))
        for xk in ("random", "min", "max", "alternate"):
            for wk in ("random", "min", "max", "alternate"):
                x, wt = _data(rng, (1, h, w, cin), xk), _data(rng, (k, k, cin, cout), wk)
                b = rng.integers(-2 ** 20, 2 ** 20, cout).astype(np.int32)
                got = run(x, wt, b, np.zeros((1, oh, ow, cout), np.int32))
                assert np.array_equal(got.astype(np.int64), _np_conv(x, wt, b, stride)), f"{key} x={xk} w={wk}"


@pytest.mark.parametrize("name", ["resnet8-conv3x3-16", "mnv2-p3-pw1x1-56", "unet-conv3x3-8-k72"])
def test_swar_kernels_match_numpy(name):
    _check_numpy(name, every=False)


@pytest.mark.parametrize("name", ["mnv2-pw1x1-8-48", "edge-stem3x3-s2-24"])
def test_channel_outer_tiles_match_numpy(name):
    """"swarco" (channel pairs, the channel tile outside the pixel loop) on the 8 -> 48 expansion and a 3x3
    stride-2 RGB stem (the recorded uses), every data pattern pair: the packed weights live across the pixel loop,
    the lanes still decode exactly."""
    from cloudcover.export import sched_swar

    h, w, cin, cout, k, stride = SHAPES[name]
    keys = [t for t in _tiles(h, w, cin, cout, k, stride) if t.endswith("-" + sched_swar.CHANNELS_OUTER)]
    if name == "mnv2-pw1x1-8-48":  # a short reduction: the family's own candidates
        assert keys == ["2x2-swarco", "1x2-swarco", "4x2-swarco"]
    else:  # K = 27: recorded by hand (schedules.json), not a search candidate
        assert keys == []
        keys = ["4x2-swarco", "2x2-swarco"]
    _match_every_pattern(name, keys, seed=8)


def test_channel_triple_decode_hand_case():
    """1 pixel x 3 channels, K = 16 at the lanes' limits: every lane sums to +-16 * 2^14 = +-2^18 (all -128 x
    -128, then -128 x 127), and the middle lane to the opposite sign of its neighbours, so each 21-bit field
    sits near both ends of [0, 2^21) around its 2^20 offset."""
    x = np.full((1, 1, 1, 16), -128, np.int8)
    w = np.stack([np.full(16, -128), np.full(16, 127), np.full(16, -128)], axis=1).astype(np.int8).reshape(1, 1, 16, 3)
    b = np.array([3, -2, 1], np.int32)
    want = np.array([16 * 16384 + 3, -16 * 128 * 127 - 2, 16 * 16384 + 1], np.int32).reshape(1, 1, 1, 3)
    for key in ("1x3-swar3", "2x3-swar3"):
        xs = np.concatenate([x, -x - 1], axis=2) if key.startswith("2") else x
        func = _swar(_te_conv(1, xs.shape[2], 16, 3, 1, 1), key)
        assert _swar_blocks(func) > 0 and func.attrs["cloudcover_tile"] == key
        got = _host(func)(xs, w, b, np.zeros((1, 1, xs.shape[2], 3), np.int32))
        assert np.array_equal(got[:, :, :1], want), (key, got.ravel().tolist())
        if key.startswith("2"):
            assert np.array_equal(got[:, :, 1:].astype(np.int64), _np_conv(xs[:, :, 1:], w, b, 1))


@pytest.mark.parametrize("name", ["mnv2-pw1x1-8-48", "mnv2-pw1x1-96"])
def test_channel_triple_tiles_match_numpy(name):
    """"swar3" (three channels' weights in 21-bit lanes, K <= 16: 8 -> 48 and 16 -> 96 expansions), every data
    pattern pair (the lanes' extremes included)."""
    from cloudcover.export import sched_swar

    h, w, cin, cout, k, stride = SHAPES[name]
    keys = [t for t in _tiles(h, w, cin, cout, k, stride) if t.endswith("-" + sched_swar.TRIPLES)]
    assert keys == ["1x3-swar3", "2x3-swar3", "1x3u2-swar3"]
    _match_every_pattern(name, keys, seed=9)


@pytest.mark.parametrize("name", ["mnv2-stem3x3-s2-16", "mnv2-pw1x1-8-k48"])
def test_pixel_triple_tiles_match_numpy(name):
    """"swar3x" (three output pixels' activations in 21-bit lanes, any channel count, K <= 63: the stem, the
    24 -> 8 and 48 -> 8 projections), every data pattern pair: -128 x -128 over K = 48 puts 48 * 2^14 in a lane."""
    from cloudcover.export import sched_swar

    h, w, cin, cout, k, stride = SHAPES[name]
    keys = [t for t in _tiles(h, w, cin, cout, k, stride) if t.endswith("-" + sched_swar.PIXEL_TRIPLES)]
    assert keys and all(t in ("3x8-swar3x", "3x4-swar3x", "6x4-swar3x") for t in keys), keys
    _match_every_pattern(name, keys, seed=10)


def test_channel_triples_decline_long_reductions():
    """K * 128 * 128 must stay below the 2^20 lane offset: K = 64 is refused (the generic tile applies)."""
    from cloudcover.export import sched_swar

    with pytest.raises(sched_swar.Declined):
        _swar(_te_conv(1, 2, 64, 3, 1, 1), "1x3-swar3")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_swar_kernels_match_numpy_every_tile(name):
    _check_numpy(name, every=True)


def _check_numpy(name, every):
    h, w, cin, cout, k, stride = SHAPES[name]
    func = _te_conv(h, w, cin, cout, k, stride)
    rng = np.random.default_rng(sum(map(ord, name)))
    cases = [(xk, wk) for xk in ("random", "min", "max", "alternate") for wk in ("random", "min", "max", "alternate")]
    if not every:
        cases = [("random", "random"), ("min", "min"), ("min", "max"), ("alternate", "alternate")]
    tiles = _tiles(h, w, cin, cout, k, stride)
    for key in tiles if every else tiles[:2]:
        kernel = _swar(func, key)
        assert _swar_blocks(kernel) > 0
        run = _host(kernel)
        for xk, wk in cases:
            x = _data(rng, (1, h, w, cin), xk)
            wt = _data(rng, (k, k, cin, cout), wk)
            b = rng.integers(-2 ** 20, 2 ** 20, cout).astype(np.int32)
            oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
            got = run(x, wt, b, np.zeros((1, oh, ow, cout), np.int32))
            want = _np_conv(x, wt, b, stride)
            assert np.array_equal(got.astype(np.int64), want), f"{name} {key} x={xk} w={wk}"


def test_family_declines_what_it_does_not_handle():
    from tvm import s_tir

    from cloudcover.export import sched_swar, schedules
    from cloudcover.export.lowering import inline_elementwise

    conv = _te_conv(4, 6, 8, 8, 3, 1)
    sch = s_tir.Schedule(conv)
    inline_elementwise(sch)
    found = schedules._find(sch)
    tile = schedules.Tile(2, 4, 1, sched_swar.PIXELS)
    assert sched_swar.schedule(conv, found, False, lambda s: tile) is not None
    assert sched_swar.schedule(conv, found, True, lambda s: tile) is None  # RVV: not this family's
    assert sched_swar.schedule(conv, found, False, lambda s: schedules.Tile(2, 4)) is None  # the generic tile
    assert sched_swar.schedule(conv, None, False, lambda s: tile) is None
    # an odd number of pixels per tile cannot be packed in pairs: declined (the generic default applies)
    assert sched_swar.schedule(conv, found, False, lambda s: schedules.Tile(1, 4, 1, sched_swar.PIXELS)) is None
    dw = _te_conv(4, 6, 8, 8, 3, 1, depthwise=True)
    sch = s_tir.Schedule(dw)
    inline_elementwise(sch)
    with pytest.raises(sched_swar.Declined):
        sched_swar.swar_tiled(dw, schedules.Tile(2, 4, 1, sched_swar.CHANNELS))
    assert sched_swar.candidate_tiles(schedules.Shape(4, 8, 9, True), False) == []


def _conv(c, k, s):
    return lambda x: _layers().Conv2D(c, k, strides=s, padding="same")(x)


# whole converted models (the pad kernel, the zero point folded into the bias, the requantization epilogue)
MODELS = {
    "resnet8-conv3x3-32-zp-128": Case("conv2d", _conv(32, 3, 1), (6, 8, 16), "zp-128"),
    "unet-conv3x3-s2-64-zp127": Case("conv2d", _conv(64, 3, 2), (8, 12, 16), "zp127"),
    "edge-pw1x1-48": Case("conv2d", _conv(48, 1, 1), (6, 6, 24)),
    "mnv2-stem3x3-s2-16": Case("conv2d", _conv(16, 3, 2), (12, 12, 3), "zp-128"),
}


def _build(model: Path, schedules: str, work: Path, x: np.ndarray) -> tuple[dict, np.ndarray]:
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv import qemu, toolchain

    info = compile_model(model, "rv64gc", work / "model", log=lambda m: None, compute="int8", schedules=schedules)
    exe = toolchain.build_infer(work / "model", work / "cmake", "rv64gc")
    raw = qemu.run_infer(qemu.find_emulator(), exe, "rv64gc", x.tobytes(), work / "qemu", count=False).output
    return info, np.frombuffer(raw, np.int8).reshape(len(x), -1)


def _tiles_used(model: Path, db: Path) -> set[str]:
    from cloudcover.export import int8_lowering, lowering, relax_import

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    low = lowering.lower(mod, schedule=str(db))
    return {str(f.attrs["cloudcover_tile"]) for f in low.functions.values()
            if getattr(f, "attrs", None) is not None and "cloudcover_tile" in f.attrs}


def _check_tflite(name: str, tmp: Path, keys: list[str] | None) -> None:
    """`keys` None: the first three SWAR candidates that fit the model's kernels."""
    from cloudcover.export import int8_lowering, lowering, relax_import, sched_swar, schedule_db, schedules

    case = MODELS[name]
    model = tmp / "model_int8.tflite"
    _convert(case, model)
    if keys is None:
        mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
        shapes = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True)).values()
        keys = list(dict.fromkeys(t.key() for s in shapes for t in sched_swar.candidate_tiles(s, False)))[:3]
        assert keys, f"{name}: no SWAR tile fits"
    x = _inputs(case.shape)
    ref = _reference(model, x)
    assert len({r.tobytes() for r in ref}) > 1
    for key in keys:
        db = tmp / f"{key}.json"
        schedule_db.save({"scalar": {"*": key}}, db)
        assert key in _tiles_used(model, db), f"{name}: no kernel got the SWAR tile {key}"
        _, dev = _build(model, str(db), tmp / key, x)
        diff = np.abs(dev.astype(np.int32) - ref.astype(np.int32))
        assert diff.max() == 0, f"{name} tile {key}: {int((diff > 0).sum())} values differ from TFLite"


def test_swar_model_matches_tflite_on_rv64gc(tmp_path):
    _check_tflite("resnet8-conv3x3-32-zp-128", tmp_path, ["2x8-swar", "2x8-swarc"])


def test_channel_outer_stem_matches_tflite_on_rv64gc(tmp_path):
    _check_tflite("mnv2-stem3x3-s2-16", tmp_path, ["2x2-swarco"])


def test_triple_lane_tiles_match_tflite_on_rv64gc(tmp_path):
    """Pixel triples on the stride-2 stem (no activation: the sign-term epilogue, the lanes' offset folded into
    the bias) and channel triples on a 24 -> 48 1x1 conv (K = 24, every step unrolled), whole models."""
    for sub, name, key in (("stem", "mnv2-stem3x3-s2-16", "6x4-swar3x"), ("pw", "edge-pw1x1-48", "1x3-swar3")):
        (tmp_path / sub).mkdir()
        _check_tflite(name, tmp_path / sub, [key])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if n != "resnet8-conv3x3-32-zp-128"])
def test_swar_models_match_tflite_on_rv64gc(name, tmp_path):
    _check_tflite(name, tmp_path, None)


def test_profile_counts_both_lanes():
    """kernel_stats counts the MACs of a SWAR kernel as those of the plain one (two per packed iteration)."""
    from cloudcover.export import kernel_stats

    conv = _te_conv(4, 6, 8, 8, 3, 1)
    assert kernel_stats.func_macs(conv) == 1 * 2 * 4 * 8 * 3 * 3 * 8
    for key in ("2x4-swar", "2x4-swarc"):
        assert kernel_stats.func_macs(_swar(conv, key)) == kernel_stats.func_macs(conv)


def test_recorded_swar_tiles_fit_their_shapes():
    """Every SWAR entry of the repository's schedule file packs a whole number of pixel (channel) pairs or
    triples, within the lanes' reduction limit, and divides its shape (else the compile silently falls back to the generic tile)."""
    import re

    from cloudcover.export import sched_swar, schedule_db, schedules

    entries = schedule_db.load()["scalar"]
    for key, text in entries.items():
        tile = schedules.Tile.parse(text)
        if tile.variant not in sched_swar.VARIANTS:
            continue
        m = re.fullmatch(r"p(\d+)-c(\d+)-k(\d+)(-dw)?", key)
        assert m and not m.group(4), f"{key}: a SWAR tile on a depthwise or unknown shape"
        pixels, channels, k = int(m.group(1)), int(m.group(2)), int(m.group(3))
        assert pixels % tile.pw == 0 and channels % tile.pc == 0, f"{key}: {text} does not divide it"
        triples = tile.variant in (sched_swar.TRIPLES, sched_swar.PIXEL_TRIPLES)
        packed = tile.pw if tile.variant in (sched_swar.PIXELS, sched_swar.PIXEL_TRIPLES) else tile.pc
        assert packed % (3 if triples else 2) == 0, f"{key}: {text} has no whole pairs (triples)"
        assert k * 128 * 128 < (sched_swar.LANE3_OFFSET if triples else 2 ** 31), f"{key}: reduction too long"


def test_default_tile_fits_or_declines():
    from cloudcover.export import sched_swar, schedules

    assert sched_swar.default_tile(schedules.Shape(48, 8, 72, False), False) == schedules.Tile(6, 4, 1, "swar")
    assert sched_swar.default_tile(schedules.Shape(32, 16, 144, False), False) == schedules.Tile(4, 4, 2, "swar")
    assert sched_swar.default_tile(schedules.Shape(3, 56, 192, False), False) == schedules.Tile(3, 8, 1, "swarc")
    assert sched_swar.default_tile(schedules.Shape(96, 1, 8, False), False) is None  # one channel
    assert sched_swar.default_tile(schedules.Shape(48, 16, 9, True), False) is None  # depthwise
    assert sched_swar.default_tile(schedules.Shape(48, 16, 144, False), True) is None  # RVV
    assert sched_swar.default_tile(schedules.Shape(48, 16, 2 ** 17, False), False) is None  # lanes could overflow
