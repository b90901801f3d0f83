"""evaluate and predict with a segmentation run: the files, figures checked against an independent recount,
GeoTIFF masks that keep CRS and transform, PNG masks for PNG inputs."""

import csv
import json

import numpy as np
import pytest
import rasterio
from PIL import Image

from cloudcover.riscv.cli import main
from cloudcover.train.data import coverage
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.evaluate import evaluate
from cloudcover.train.predict import predict


@pytest.mark.slow
def test_evaluate_writes_figures_that_match_a_recount(seg_run, seg_dataset, tmp_path):
    out = tmp_path / "eval"
    m = evaluate(seg_run.run_dir, None, out, split="test", progress=False)
    for name in ("metrics.json", "per_patch.csv", "gallery.png", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert m["task"] == "segmentation" and m["threshold"] == 0.5
    with open(out / "per_patch.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == m["n_patches"] > 0
    # pooled figures: recomputed here from the per-patch counts
    tp, fp, fn = (sum(int(r[k]) for r in rows) for k in ("tp", "fp", "fn"))
    assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["iou"] == pytest.approx(tp / (tp + fp + fn))
    # every patch's counts cover its valid pixels (32 x 32 at the run's input size; synthetic scenes have no nodata)
    assert all(sum(int(r[k]) for k in ("tp", "fp", "fn", "tn")) == 32 * 32 for r in rows)
    # the class of each predicted mask follows the bins
    bins = m["coverage_class"]["bins"]
    names = m["coverage_class"]["classes"]
    for r in rows:
        assert r["predicted_class"] == names[coverage.bin_index(float(r["predicted_coverage_pct"]), bins)]
    cm = np.array(m["coverage_class"]["confusion_matrix"])
    assert cm.sum() == len(rows)
    assert m["coverage_class"]["agreement"] == pytest.approx(np.trace(cm) / cm.sum())
    assert m["discard"]["n_images"] == len(rows)
    # 38-Cloud names: the test scenes are stitched; pooled over a scene = the sum of its patches
    assert m["scenes"]["n_scenes"] >= 1
    for scene, s in m["scenes"]["scenes"].items():
        mine = [r for r in rows if r["patch_id"].endswith(scene)]
        assert s["counts"]["tp"] == sum(int(r["tp"]) for r in mine)


@pytest.mark.slow
def test_predict_geotiff_masks_keep_crs_and_transform(seg_run, seg_raw, tmp_path, capsys):
    red = seg_raw / "38-Cloud_training" / "train_red"
    rc = main(["predict", "--run", str(seg_run.run_dir), str(red), "--out", str(tmp_path / "p.csv"),
               "--mask-dir", str(tmp_path / "masks"), "--quiet"])
    assert rc == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for r in rows[:5]:
        with rasterio.open(r["path"]) as src, rasterio.open(r["mask"]) as dst:
            assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
            mask = dst.read(1)
            assert dst.nodata == 255 and set(np.unique(mask)) <= {0, 1}
        assert float(r["coverage_pct"]) == pytest.approx(100 * mask.mean(), abs=1e-3)
        assert int(r["cloud_pixels"]) == int(mask.sum()) and int(r["valid_pixels"]) == mask.size


@pytest.mark.slow
def test_predict_png_input_and_band_mismatch(seg_run, tmp_path):
    png = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(png)
    result = predict(seg_run.run_dir, [png], out=tmp_path / "p.csv", progress=False)
    assert not result.rows and "the model takes 4 bands" in result.failures[0][1]
    assert not any((tmp_path / "p_masks").glob("*"))  # nothing half-written for the failed input
    with pytest.raises(CloudcoverError, match="--mask-dir"):
        predict(seg_run.run_dir, [png], out=None, progress=False)


@pytest.mark.slow
def test_predict_png_for_an_rgb_run_writes_png(seg_raw, tmp_path):
    """A run trained on RGB renderings (prepare --image-format png) takes PNGs and writes PNG masks."""
    from cloudcover.train.data.prepare import PrepareConfig, prepare
    from cloudcover.train.training import TrainConfig, train

    ds = tmp_path / "ds"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=ds, task="segmentation", image_format="png",
                          size=32, split=(0.5, 0.25, 0.25), workers=1, progress=False))
    assert json.loads((ds / "dataset.json").read_text())["channels"] == 3
    run = tmp_path / "run"
    train(TrainConfig(data=ds, out=run, model="unet_resnet18", alpha=0.25, input_size=32, epochs=1, batch_size=4),
          verbose=0)
    png = next((ds / "test" / "images").glob("*.png"))
    result = predict(run, [png], out=tmp_path / "p.csv", mask_dir=tmp_path / "m", progress=False)
    mask = np.asarray(Image.open(result.rows[0]["mask"]))
    assert result.rows[0]["mask"].endswith(".png") and mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}


@pytest.mark.slow
def test_evaluating_a_segmenter_on_a_classification_dataset(seg_run, seg_raw, tmp_path):
    from cloudcover.train.data.prepare import PrepareConfig, prepare

    cls = tmp_path / "cls"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=cls, size=32, split=(0.5, 0.25, 0.25), workers=1,
                          progress=False))
    with pytest.raises(CloudcoverError, match="a classification dataset .* prepare --task segmentation"):
        evaluate(seg_run.run_dir, cls, tmp_path / "eval", progress=False)
    assert not (tmp_path / "eval").exists()
