"""prepare --task segmentation on synthetic 38-Cloud-like scenes and on the real samples; the real 38-Cloud patch."""

import csv
import json

import numpy as np
import pytest
import rasterio
from PIL import Image

from cloudcover.train.data import rle
from cloudcover.train.data.prepare import PrepareConfig, prepare
from cloudcover.train.data.sources import Cloud38, CloudSEN12
from cloudcover.train.preprocess import read_dataset

REAL_38 = "38cloud/38-Cloud_training"


def _rows(root):
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_layout_manifest_and_dataset_json(seg_dataset):
    meta = json.loads((seg_dataset / "dataset.json").read_text())
    assert meta["task"] == "segmentation" and meta["channels"] == 4
    assert meta["bands"] == ["red", "green", "blue", "nir"] and meta["image_format"] == "tif"
    assert meta["mask"]["ignore"] == 255
    rows = _rows(seg_dataset)
    assert len(rows) == 24 and all(r["target"] == f"{r['split']}/masks/{r['patch_id']}.png" for r in rows)
    assert read_dataset(seg_dataset).task == "segmentation"
    # grouped split: a scene never spans two splits; stratified: every split has patches
    by_roi = {}
    for r in rows:
        by_roi.setdefault(r["roi"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_roi.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_images_keep_bands_and_masks_match_the_source_gt(seg_dataset, seg_raw):
    for r in _rows(seg_dataset)[:6]:
        with rasterio.open(seg_dataset / r["image"]) as src:
            img = src.read()
            assert src.count == 4 and src.dtypes[0] == "uint16" and src.crs is not None
        with rasterio.open(r["mask"]) as src:  # the source gt (0 / 255)
            gt = src.read(1)
        red = seg_raw / "38-Cloud_training" / "train_red" / f"red_{r['patch_id']}.TIF"
        with rasterio.open(red) as src:
            np.testing.assert_array_equal(img[0], src.read(1))  # native size: the DN untouched
        mask = np.asarray(Image.open(seg_dataset / r["target"]))
        expected = np.where(gt == 255, 1, 0)
        expected[np.all(img[:3] == 0, axis=0)] = 255  # outside the scene: nodata
        np.testing.assert_array_equal(mask, expected)
        cloud = 100 * (mask == 1).sum() / (mask != 255).sum()
        assert cloud == pytest.approx(float(r["coverage_pct"]), abs=1e-3)


def test_rle_csv_decodes_to_the_mask_files(seg_dataset):
    with open(seg_dataset / "masks_rle.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for r in rows:
        mask = np.asarray(Image.open(seg_dataset / r["split"] / "masks" / f"{r['patch_id']}.png"))
        shape = (int(r["height"]), int(r["width"]))
        np.testing.assert_array_equal(rle.decode(r["cloud_rle"], shape), (mask == 1).astype(np.uint8))
        np.testing.assert_array_equal(rle.decode(r["nodata_rle"], shape), (mask == 255).astype(np.uint8))


def test_resized_masks_are_nearest_neighbour(seg_raw, tmp_path):
    out = tmp_path / "ds"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=out, task="segmentation", size=32, seed=0,
                          split=(0.5, 0.25, 0.25), workers=1, progress=False))
    r = _rows(out)[0]
    mask = np.asarray(Image.open(out / r["target"]))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1, 255}
    with rasterio.open(r["mask"]) as src:
        gt = src.read(1)
    # 64 -> 32 nearest neighbour takes one source pixel of each 2 x 2 block: one of its four values
    blocks = np.stack([gt[i::2, j::2] for i in (0, 1) for j in (0, 1)]) == 255
    assert np.all((mask == 1) <= blocks.any(axis=0)) and np.all((mask == 0) <= (~blocks).any(axis=0))
    with rasterio.open(out / r["image"]) as src:
        assert src.shape == (32, 32) and src.transform.a == pytest.approx(20.0)  # 10 m pixels -> 20 m


def test_classification_datasets_still_default_and_say_so(seg_raw, tmp_path):
    out = tmp_path / "cls"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=out, size=32, seed=0, split=(0.5, 0.25, 0.25),
                          workers=1, progress=False))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["task"] == "classification" and meta["image_format"] == "png"
    assert "target" not in _rows(out)[0] and not (out / "masks_rle.csv").exists()


def test_real_38cloud_patch_loads_as_four_bands_with_its_gt(shared_data):
    refs = Cloud38().find(shared_data / REAL_38)
    assert len(refs) == 1
    sample = Cloud38().read(refs[0], all_bands=True)
    assert sample.bands.shape == (4, 384, 384) and sample.bands.dtype == np.uint16
    assert sample.band_names == ("red", "green", "blue", "nir")
    with rasterio.open(refs[0].mask) as src:
        gt = src.read(1)
    assert 100 * (gt == 255).mean() == pytest.approx(30.7, abs=0.05)
    assert 100 * (sample.mask == 1).mean() == pytest.approx(30.7, abs=0.05)


def test_real_samples_prepare_for_segmentation(shared_data, tmp_path):
    out = tmp_path / "real38"
    prepare(PrepareConfig(source="38cloud", input=shared_data / "38cloud", out=out, task="segmentation",
                          size=96, split=(1.0, 0.0, 0.0), workers=1, progress=False))
    r = _rows(out)[0]
    mask = np.asarray(Image.open(out / r["target"]))
    assert mask.shape == (96, 96)
    assert 100 * (mask == 1).sum() / (mask != 255).sum() == pytest.approx(float(r["coverage_pct"]), abs=1.5)
    out = tmp_path / "realcs"
    prepare(PrepareConfig(source="cloudsen12", input=shared_data / "cloudsen12", out=out, task="segmentation",
                          size=128, split=(1.0, 0.0, 0.0), workers=1, progress=False))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n"] == 5 and meta["channels"] == 3  # the shared samples are the RGB cut
    for r in _rows(out):
        with rasterio.open(out / r["image"]) as src:
            assert src.count == 3 and src.dtypes[0] == "float32" and src.crs.to_epsg() == 32643


def test_cloudsen12_rgb_bands_in_raw_dn(tmp_path):
    from cloudcover.train.data.synth import SynthConfig, synthesize

    raw = tmp_path / "raw"
    synthesize(SynthConfig(out=raw, n=8, seed=2, size=48, patches_per_roi=2, workers=1, progress=False))
    out = tmp_path / "ds"
    prepare(PrepareConfig(source="cloudsen12", input=raw, out=out, task="segmentation", bands="rgb",
                          split=(0.5, 0.25, 0.25), workers=1, progress=False))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channels"] == 3 and meta["bands"] == ["B4", "B3", "B2"]
    r = _rows(out)[0]
    with rasterio.open(out / r["image"]) as src, rasterio.open(next(raw.rglob(f"{r['patch_id'].split('__')[-1]}/S2L1C.tif"))) as s2:
        np.testing.assert_array_equal(src.read(), s2.read([4, 3, 2]))
    with pytest.raises(Exception, match="--bands"):
        prepare(PrepareConfig(source="cloudsen12", input=raw, out=tmp_path / "x", task="segmentation", bands="nir"))
