"""Synthetic scenes: coverage met, classes balanced, georeferenced, band-dependent, deterministic."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudcover.train.data.coverage import bin_index, coverage_pct
from cloudcover.train.data.sources import Cloud38, CloudSEN12
from cloudcover.train.data.synth import TOLERANCE_PCT, SynthConfig, make_scene, roi_style, synthesize
from cloudcover.train.errors import CloudcoverError


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.tif"))}


def test_coverage_is_met_and_classes_balanced(tiny_synth):
    report = json.loads((tiny_synth / "synth.json").read_text())
    assert report["counts"] == {"clouds_0_25": 4, "clouds_25_50": 4, "clouds_50_75": 4, "clouds_75_100": 4}
    assert report["rois"] == 4
    refs = CloudSEN12().find(tiny_synth)
    by_image = {r["image"]: r for r in report["patches"]}
    for ref in refs:
        s = CloudSEN12().read(ref)
        row = by_image[str(ref.images[0].relative_to(tiny_synth))]
        measured = coverage_pct(s.mask, s.valid)  # read back from disk as prepare does
        assert abs(measured - row["target_pct"]) <= TOLERANCE_PCT
        assert report["classes"][bin_index(measured, report["bins"])] == row["class"]
    # classes balanced inside each ROI too (4 patches per ROI, 4 classes), so the grouped split can stratify
    for roi in {r["roi"] for r in report["patches"]}:
        assert sorted(r["class"] for r in report["patches"] if r["roi"] == roi) == report["classes"]


def test_geotiffs_carry_crs_transform_and_13_bands(tiny_synth):
    image = next(tiny_synth.rglob("S2L1C.tif"))
    with rasterio.open(image) as src:
        assert src.count == 13 and src.dtypes[0] == "uint16" and src.crs.is_projected
        assert src.transform.a == 10.0 and src.transform.e == -10.0
        assert src.descriptions[3] == "B4" and src.profile["compress"] == "deflate"
    with rasterio.open(image.parent / "labels" / "manual_hq.tif") as src:
        assert src.crs is not None and set(np.unique(src.read(1))) <= {0, 1, 2, 3}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, tiny_synth):
    again = tmp_path / "again"
    synthesize(SynthConfig(out=again, n=16, seed=1, size=64, patches_per_roi=4, workers=1, progress=False))
    assert _digest(again) == _digest(tiny_synth)
    other = tmp_path / "other"
    synthesize(SynthConfig(out=other, n=4, seed=2, size=64, patches_per_roi=4, workers=1, progress=False))
    assert set(_digest(other).values()).isdisjoint(_digest(tiny_synth).values())


def test_scene_physics():
    """Thick cores opaque and bright, shadows darker than the ground, snow dark in SWIR unlike cloud."""
    style = roi_style(0, 3)
    refl, mask = make_scene(np.random.default_rng(0), style, 40.0, 128)
    assert coverage_pct(mask) == pytest.approx(40.0, abs=TOLERANCE_PCT)
    red = refl[3]
    assert red[mask == 1].mean() > red[mask == 2].mean() > red[mask == 0].mean()
    assert (mask == 3).any() and red[mask == 3].mean() < red[mask == 0].mean()
    assert refl[10].mean() < 0.1 < refl[7].mean()  # B10 cirrus band dark, B8 NIR bright
    for target in (0.0, 100.0, 0.3):
        _, m = make_scene(np.random.default_rng(1), style, target, 64)
        assert coverage_pct(m) == pytest.approx(target, abs=100 / 64 ** 2)


def test_38cloud_layout_is_readable(tmp_path):
    out = tmp_path / "l8"
    r = synthesize(SynthConfig(out=out, format="38cloud", n=4, seed=0, size=48, workers=1, progress=False))
    assert r.max_error_pct <= TOLERANCE_PCT
    refs = Cloud38().find(out)
    assert len(refs) == 4 and len({x.roi for x in refs}) == 1
    s = Cloud38().read(refs[0])
    assert s.rgb.dtype == np.uint16 and s.rgb.shape == (3, 48, 48)
    assert (out / "38-Cloud_training" / "train_nir").is_dir()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(CloudcoverError, match="not a synth output"):
        synthesize(SynthConfig(out=tmp_path, n=1, size=32, workers=1, progress=False))
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_parallel_synthesis_matches_serial(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(SynthConfig(out=a, n=6, seed=4, size=64, patches_per_roi=3, workers=1, progress=False))
    synthesize(SynthConfig(out=b, n=6, seed=4, size=64, patches_per_roi=3, workers=2, progress=False))
    assert _digest(a) == _digest(b)
