"""`cloudcover data eda`: figures recounted from the dataset's own files; both tasks; all-or-nothing output."""

import csv
import json

import numpy as np
import pytest
import rasterio
from PIL import Image

from cloudcover.riscv.cli import main
from cloudcover.train.data.eda import eda
from cloudcover.train.data.prepare import PrepareConfig, prepare


def test_segmentation_dataset(seg_dataset, tmp_path, capsys):
    out = tmp_path / "eda"
    assert main(["data", "eda", str(seg_dataset), "--out", str(out), "--band-images", "1000"]) == 0
    assert "segmentation patches" in capsys.readouterr().out
    for name in ("eda.json", "cloud_fraction.png", "band_stats.png", "samples.png"):
        assert (out / name).is_file(), name
    r = json.loads((out / "eda.json").read_text())
    with open(seg_dataset / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for split, s in r["splits"].items():
        fr = [100 * (m == 1).sum() / (m != 255).sum()
              for m in (np.asarray(Image.open(seg_dataset / x["target"])) for x in rows if x["split"] == split)]
        assert s["patches"] == len(fr) == sum(s["histogram"]["counts"])
        assert s["cloud_fraction_mean"] == pytest.approx(np.mean(fr))
        assert s["empty_share"] == pytest.approx(np.mean(np.array(fr) == 0))
        assert s["full_share"] == pytest.approx(np.mean(np.array(fr) == 100))
    train = [x for x in rows if x["split"] == "train"]
    pixels = np.concatenate([rasterio.open(seg_dataset / x["image"]).read().reshape(4, -1) for x in train], axis=1)
    assert [b["band"] for b in r["bands"]] == ["red", "green", "blue", "nir"]
    np.testing.assert_allclose([b["mean"] for b in r["bands"]], pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose([b["max"] for b in r["bands"]], pixels.max(axis=1))


def test_classification_dataset_uses_the_manifest(seg_raw, tmp_path):
    ds = tmp_path / "cls"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=ds, size=32, split=(0.5, 0.25, 0.25), workers=1,
                          progress=False))
    r = eda(ds, tmp_path / "eda", samples=4)
    assert r["task"] == "classification" and r["cloud_fraction_from"] == "manifest coverage_pct"
    assert sum(s["patches"] for s in r["splits"].values()) == 24
    assert [b["band"] for b in r["bands"]] == ["red", "green", "blue"]


def test_bad_dataset_leaves_nothing(tmp_path, capsys):
    rc = main(["data", "eda", str(tmp_path / "nope"), "--out", str(tmp_path / "eda")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "does not exist" in err and "\n" not in err
    assert not (tmp_path / "eda").exists()
