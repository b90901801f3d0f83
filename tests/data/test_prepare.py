"""prepare: manifest, dataset.json, class folders, on synthetic and on the real samples."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloudcover.train.data.prepare import MANIFEST_COLUMNS, PrepareConfig, prepare, read_manifest
from cloudcover.train.data.split import SPLITS

CLASSES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


@pytest.fixture(scope="module")
def prepared(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "dataset"
    result = prepare(PrepareConfig(source="cloudsen12", input=tiny_synth, out=out, size=32, seed=0,
                                   split=(0.5, 0.25, 0.25), workers=1, progress=False))
    return result


def test_manifest_and_dataset_json(prepared, tiny_synth):
    out = prepared.out
    with open(out / "manifest.csv", newline="") as f:
        assert tuple(csv.reader(f).__next__()) == MANIFEST_COLUMNS
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == prepared.n == 16
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == CLASSES and meta["bins"] == [0, 25, 50, 75, 100]
    assert meta["image_format"] == "png" and meta["size"] == 32 and meta["source"] == "cloudsen12"
    assert "10000" in meta["scaling"] and meta["rule"]["count_shadow"] is False
    for s in SPLITS:
        assert list(meta["counts"][s]) == CLASSES  # every class, zero or not
        for c in CLASSES:
            assert (out / s / c).is_dir()
            assert meta["counts"][s][c] == sum(r["split"] == s and r["label"] == c for r in rows)
    synth = {r["mask"]: r for r in json.loads((tiny_synth / "synth.json").read_text())["patches"]}
    for r in rows:
        img = out / r["image"]
        assert r["image"] == f"{r['split']}/{r['label']}/{r['patch_id']}.png" and img.is_file()
        assert Image.open(img).size == (32, 32) and Image.open(img).mode == "RGB"
        truth = synth[str(Path(r["mask"]).relative_to(tiny_synth.resolve()))]
        assert r["coverage_pct"] == pytest.approx(truth["coverage_pct"], abs=1e-3) and r["label"] == truth["class"]
    rois = {s: {r["roi"] for r in rows if r["split"] == s} for s in SPLITS}
    assert not (rois["train"] & rois["val"] or rois["train"] & rois["test"] or rois["val"] & rois["test"])
    assert all(rois.values())  # 4 ROIs over 3 splits: none empty
    assert not list(out.glob(".*"))  # no staging left


def test_rerun_replaces_an_earlier_dataset(prepared, tiny_synth):
    (prepared.out / "stale.txt").write_text("old")
    prepare(PrepareConfig(source="cloudsen12", input=tiny_synth, out=prepared.out, size=16, workers=1,
                          progress=False, bins=(0, 50, 100)))
    meta = json.loads((prepared.out / "dataset.json").read_text())
    assert meta["classes"] == ["clouds_0_50", "clouds_50_100"] and not (prepared.out / "stale.txt").exists()


def test_real_cloudsen12_both_rules(shared_data, tmp_path):
    base = dict(source="cloudsen12", input=shared_data / "cloudsen12", workers=1, progress=False)
    a = read_manifest(prepare(PrepareConfig(out=tmp_path / "a", **base)).manifest)
    b = read_manifest(prepare(PrepareConfig(out=tmp_path / "b", count_shadow=True, **base)).manifest)
    cov = {r["patch_id"].split("__")[-1]: r for r in a}
    assert cov["cloudy"]["coverage_pct"] == pytest.approx(56.81, abs=0.005)
    assert cov["cloudy"]["label"] == "clouds_50_75"
    assert {r["patch_id"].split("__")[-1]: r["label"] for r in b}["cloudy"] == "clouds_75_100"
    assert Image.open(tmp_path / "a" / cov["cloudy"]["image"]).size == (509, 509)  # native size by default
    assert {r["split"] for r in a} == {"train"}  # one ROI: one split


def test_real_38cloud_as_jpg_and_tif(shared_data, tmp_path):
    for fmt in ("jpg", "tif"):
        r = prepare(PrepareConfig(source="38cloud", input=shared_data / "38cloud", out=tmp_path / fmt, size=64,
                                  image_format=fmt, workers=1, progress=False))
        (row,) = read_manifest(r.manifest)
        assert row["coverage_pct"] == pytest.approx(30.7, abs=0.05) and row["label"] == "clouds_25_50"
        assert row["image"].endswith(f".{fmt}") and np.asarray(Image.open(tmp_path / fmt / row["image"])).shape == (64, 64, 3)


def test_all_nodata_patches_are_skipped_and_reported(tmp_path, tifs):
    tifs.patch(tmp_path / "in" / "ROI_1" / "a", np.ones((8, 8)))
    tifs.write(tmp_path / "in" / "ROI_1" / "b" / "S2L1C.tif", np.zeros((13, 8, 8), np.uint16))
    tifs.write(tmp_path / "in" / "ROI_1" / "b" / "labels" / "manual_hq.tif", np.zeros((8, 8), np.uint8))
    r = prepare(PrepareConfig(source="cloudsen12", input=tmp_path / "in", out=tmp_path / "out", workers=1, progress=False))
    assert r.n == 1 and r.skipped[0]["patch_id"] == "ROI_1__b"


@pytest.mark.slow
def test_parallel_prepare_matches_serial(tiny_synth, tmp_path):
    a = prepare(PrepareConfig(source="cloudsen12", input=tiny_synth, out=tmp_path / "a", workers=1, progress=False))
    b = prepare(PrepareConfig(source="cloudsen12", input=tiny_synth, out=tmp_path / "b", workers=2, progress=False))
    assert a.manifest.read_text() == b.manifest.read_text()
