"""The tiled schedules (export/schedules.py) never change a result: each conv / depthwise / dense shape of the
benchmark models, compiled with every candidate tile, computes exactly what the naive schedule computes and what
TFLite's reference kernels compute (0 LSB), on random int8 inputs plus the all -128 and all 127 images. The
recorded schedule file (export/schedule_db.py) is used by a plain compile, its absence falls back to the
defaults, and a corrupt file is a one-line error naming it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cloudcover.train.errors import CloudcoverError

from .test_int8_ops import Case, _layers, _reference_case


def _conv(c, k, s):
    return lambda x: _layers().Conv2D(c, k, strides=s, padding="same")(x)


def _dw(k, s):
    return lambda x: _layers().DepthwiseConv2D(k, strides=s, padding="same")(x)


def _dense(c):
    return lambda x: _layers().Dense(c)(_layers().Flatten()(x))


# (id, case): the operator shapes of the benchmark models (riscv/bench_models.py), at their channel counts and
# strides, on inputs small enough for a host build per tile
SHAPES = {
    "resnet8-conv3x3-16": Case("conv2d", _conv(16, 3, 1), (8, 8, 16)),
    "resnet8-conv3x3-s2-32": Case("conv2d", _conv(32, 3, 2), (8, 8, 16)),
    "resnet8-proj1x1-s2-64": Case("conv2d", _conv(64, 1, 2), (8, 8, 32)),
    "edge-stem3x3-s2-24": Case("conv2d", _conv(24, 3, 2), (12, 12, 3)),
    "edge-pw1x1-48": Case("conv2d", _conv(48, 1, 1), (6, 6, 24)),
    "edge-dw3x3-s2": Case("conv2d", _dw(3, 2), (8, 8, 24)),
    "mnv2-dw3x3-s1": Case("conv2d", _dw(3, 1), (6, 6, 16)),
    "dense-64-10": Case("dense", _dense(10), (1, 1, 64)),
}
FAST = ["resnet8-conv3x3-16"]


def _run(model: Path, schedules: str, tmp: Path, x: np.ndarray) -> tuple[dict, np.ndarray]:
    from cloudcover.export.compile import compile_model
    from cloudcover.riscv.toolchain import build_infer

    info = compile_model(model, "host", tmp / "model", log=lambda m: None, compute="int8", schedules=schedules)
    exe = build_infer(tmp / "model", tmp / "cmake", "host")
    (tmp / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), "in.bin", "out.bin"], cwd=tmp, check=True, capture_output=True)
    return info, np.frombuffer((tmp / "out.bin").read_bytes(), np.int8).reshape(len(x), -1)


def _tiles(model: Path) -> list:
    from cloudcover.export import int8_lowering, lowering, relax_import, schedules

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(model))
    shapes = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True))
    assert shapes, "the case has a kernel the tiled schedule applies to"
    every = sorted({t for s in shapes.values() for v in (False, True) for t in schedules.candidate_tiles(s, v)},
                   key=lambda t: (t.pw, t.pc, t.ku))
    defaults = {schedules.default_tile(s, v) for s in shapes.values() for v in (False, True)}
    return sorted(defaults | set(every[:: max(1, len(every) // 4)]), key=lambda t: (t.pw, t.pc, t.ku))


def _check(name: str, tmp: Path) -> None:
    from cloudcover.export import schedule_db

    case = SHAPES[name]
    model, x, ref = _reference_case(case, tmp)
    _, naive = _run(model, "naive", tmp / "naive", x)
    assert np.array_equal(naive, ref)
    tiles = _tiles(model)
    assert len(tiles) >= 2
    for tile in tiles:
        db = tmp / f"{tile.key()}.json"
        schedule_db.save({"scalar": {"*": tile.key()}}, db)
        _, dev = _run(model, str(db), tmp / tile.key(), x)
        diff = np.abs(dev.astype(np.int32) - naive.astype(np.int32))
        assert diff.max() == 0, f"{name} tile {tile.key()}: {int((diff > 0).sum())} values differ"


@pytest.mark.parametrize("name", FAST)
def test_tiles_are_bit_exact(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHAPES if n not in FAST])
def test_tiles_are_bit_exact_on_every_benchmark_shape(name, tmp_path):
    _check(name, tmp_path)


def test_recorded_choice_is_used_and_absence_falls_back(tmp_path):
    from cloudcover.export import schedule_db, schedules

    shape = schedules.Shape(16, 32, 144, False)
    db = tmp_path / "s.json"
    schedule_db.save({"scalar": {shape.key(): "2x8"}}, db)
    assert schedule_db.load_choices(False, db) == {shape.key(): schedules.Tile(2, 8)}
    assert schedules._choose(schedule_db.load_choices(False, db), shape, False) == schedules.Tile(2, 8)
    assert schedule_db.load_choices(True, db) == {}  # the vector class has no entry
    missing = tmp_path / "none.json"
    assert schedule_db.load_choices(False, missing) == {}
    assert schedules._choose({}, shape, False) == schedules.default_tile(shape, False)


def test_the_repository_file_is_valid():
    from cloudcover.export import schedule_db

    if schedule_db.DB_PATH.is_file():
        entries = schedule_db.load()
        assert set(entries) == set(schedule_db.CLASSES)


@pytest.mark.parametrize("text, what", [
    ("{not json", "is not valid JSON"),
    ('{"version": 7}', "expected a JSON object"),
    ('{"version": 1, "scalar": {"p8-c64-k576": "four by four"}}', "must map shape keys to tiles"),
])
def test_corrupt_schedule_file_is_a_clear_error(tmp_path, text, what):
    from cloudcover.export import schedule_db

    db = tmp_path / "bad.json"
    db.write_text(text)
    with pytest.raises(CloudcoverError, match=what) as exc:
        schedule_db.load_choices(False, db)
    assert str(db) in str(exc.value) and "\n" not in str(exc.value)


def test_corrupt_schedule_file_fails_the_compile(tmp_path, artifacts):
    from cloudcover.export.compile import compile_model

    db = tmp_path / "bad.json"
    db.write_text("{not json")
    with pytest.raises(CloudcoverError, match="bad.json is not valid JSON"):
        compile_model(artifacts / "model_int8.tflite", "host", tmp_path / "m", log=lambda m: None, schedules=str(db))
    assert not (tmp_path / "m").exists()


def test_plain_compile_reads_the_recorded_file(tmp_path, artifacts, monkeypatch):
    """lowering.lower with the default schedules takes each kernel's tile from schedule_db.DB_PATH."""
    from cloudcover.export import int8_lowering, lowering, relax_import, schedule_db, schedules

    mod, _ = int8_lowering.lower_int8(relax_import.import_model(artifacts / "model_int8.tflite"))
    shapes = schedules.kernel_shapes(lowering.lower(mod, schedule=False, pads_alone=True))
    name, shape = next((k, s) for k, s in shapes.items()  # a dense conv: depthwise ones get sched_depthwise's tiles
                       if not s.depthwise and schedules.Tile(2, 4) in schedules.candidate_tiles(s, False))

    def tiles() -> dict:
        low = lowering.lower(mod)
        return {gv.name_hint: (f.attrs or {}).get("cloudcover_tile") for gv, f in low.functions.items()
                if gv.name_hint in shapes}

    monkeypatch.setattr(schedule_db, "DB_PATH", tmp_path / "absent.json")
    assert tiles()[name] == schedules.default_tile(shape, False).key()
    db = tmp_path / "recorded.json"
    schedule_db.save({"scalar": {shape.key(): "2x4"}}, db)
    monkeypatch.setattr(schedule_db, "DB_PATH", db)
    assert tiles()[name] == "2x4"


def test_tune_refuses_a_host_target(artifacts):
    from cloudcover.riscv.schedule_tune import tune

    with pytest.raises(CloudcoverError, match="not riscv64"):
        tune(artifacts / "model_int8.tflite", "host", log=lambda m: None)
