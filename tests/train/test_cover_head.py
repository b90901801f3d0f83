"""The coverage head (train/cover_head.py): its fixed bin logits, per-cell targets, per-cell loss, training."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cloudcover.train import cover_head
from cloudcover.train.errors import CloudcoverError

BINS = [0.0, 25.0, 50.0, 75.0, 100.0]
CLASSES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


def _logits(kernel, bias, coverage_pct):
    """The head's logits (fixed dense, then the ReLU floor) at these coverages."""
    v = np.asarray(coverage_pct, np.float64)[:, None] * cover_head.RELU_MAX / 100.0
    return np.maximum(v @ kernel.astype(np.float64) + bias, 0.0)


def test_bin_logits_decide_by_the_coverage_bins():
    kernel, bias = cover_head.bin_logits(BINS)
    c = np.array([0.0, 3.0, 24.9, 25.1, 37.5, 49.9, 50.1, 74.9, 75.1, 99.0, 100.0])
    expected = np.clip(np.digitize(c, BINS[1:-1], right=False), 0, 3)  # half-open bins [lo, hi)
    assert _logits(kernel, bias, c).argmax(axis=1).tolist() == expected.tolist()
    # on an edge the two neighbours tie, and a point past it is worth SHARPNESS x width logits
    at = _logits(kernel, bias, [50.0])[0]
    assert at[1] == pytest.approx(at[2], abs=1e-4)
    past = _logits(kernel, bias, [51.0])[0]
    assert past[2] - past[1] == pytest.approx(cover_head.SHARPNESS * 25.0, rel=1e-4)
    # the floor: the winner never falls below FLOOR (so it is never clamped), and is lowest on an edge
    c = np.linspace(0, 100, 1001)
    top = _logits(kernel, bias, c).max(axis=1)
    assert top.min() == pytest.approx(cover_head.FLOOR, abs=1e-3)
    assert c[top.argmin()] in (25.0, 50.0, 75.0)
    # and the int8 output range this gives is a third of the unclamped one (hand-computed for 0/25/50/75/100:
    # winner 27.5 at 0 % and 100 %, floor 0; unclamped logits would reach -40 at 0 %)
    assert _logits(kernel, bias, [0.0, 100.0]).max() == pytest.approx(27.5, abs=1e-3)
    assert bias.min() == pytest.approx(-40.0, abs=1e-3)


def test_bin_logits_other_bin_counts_and_refusals():
    kernel, bias = cover_head.bin_logits([0, 50, 100])
    assert _logits(kernel, bias, [10.0, 49.0, 51.0, 90.0]).argmax(axis=1).tolist() == [0, 0, 1, 1]
    with pytest.raises(CloudcoverError, match="equal width"):
        cover_head.bin_logits([0, 10, 50, 100])
    with pytest.raises(CloudcoverError, match="increasing"):
        cover_head.bin_logits([0, 50, 50, 100])


def test_mask_fractions_are_area_shares():
    cloud = np.array([[1, 1, 0, 0],
                      [1, 0, 0, 0],
                      [0, 0, 1, 1],
                      [0, 0, 1, 1]], bool)
    valid = np.ones_like(cloud)
    valid[0, 3] = False
    out = cover_head.mask_fractions(cloud, valid, 2)
    assert out[..., 0].tolist() == [[0.75, 0.0], [0.0, 1.0]]
    assert out[..., 1].tolist() == [[1.0, 0.75], [1.0, 1.0]]
    # 5 -> 2: rows/cols 0-1 go to cell 0, 2-4 to cell 1 (pixel centres), so cell (1, 1) has 9 pixels
    cloud5 = np.zeros((5, 5), bool)
    cloud5[2:, 2:] = True
    cloud5[4, 4] = False
    out5 = cover_head.mask_fractions(cloud5, np.ones((5, 5), bool), 2)
    assert out5[1, 1, 0] == pytest.approx(8 / 9)
    assert out5[0, 0, 0] == 0.0


def test_cover_loss_is_the_hand_computed_cross_entropy():
    import keras

    layer = cover_head._cover_loss_class()(2.0)
    logits = np.zeros((1, 4), np.float32)
    target = np.zeros((1, 4, 4, 2), np.float32)
    target[..., 1] = 1.0  # all valid
    target[0, :2, :2, 0] = 1.0  # the top-left 2x2 cell is all cloud
    half = np.full((1, 2, 2, 1), 3.0, np.float32)  # p = 0.5 everywhere: BCE = ln 2 whatever the target
    layer(keras.ops.convert_to_tensor(logits), keras.ops.convert_to_tensor(half), keras.ops.convert_to_tensor(target))
    assert float(layer.losses[-1]) == pytest.approx(2.0 * math.log(2.0), rel=1e-5)

    layer2 = cover_head._cover_loss_class()(1.0)
    cover = np.zeros((1, 2, 2, 1), np.float32)
    cover[0, 0, 0, 0] = 6.0  # p = 1 on the cloudy cell, 0 on the clear ones: only the clip's epsilon is left
    target[0, 2:, 2:, 1] = 0.0  # and a nodata cell, which must not count
    cover[0, 1, 1, 0] = 3.0
    layer2(keras.ops.convert_to_tensor(logits), keras.ops.convert_to_tensor(cover), keras.ops.convert_to_tensor(target))
    assert float(layer2.losses[-1]) < 1e-4


def test_edge_cover_class_is_the_bin_of_its_count():
    import keras

    from cloudcover.train.models import create_model

    model = create_model("edge_cover", num_classes=4, input_size=32, alpha=0.5, bins=BINS)
    assert not model.get_layer("bin_logits").trainable
    # spread the counts over the bins: random inputs, and the cell conv's bias at several levels
    counts, classes = [], []
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    cells = keras.Model(model.input, model.get_layer("cover").output)
    for b in (-0.5, 0.5, 1.5, 2.5, 3.5, 4.5):
        conv = model.get_layer("cover_conv")
        w, _ = conv.get_weights()
        conv.set_weights([w * 0.1, np.array([b], np.float32)])
        counts.append(cells.predict(x, verbose=0).mean(axis=(1, 2, 3)) * 100 / cover_head.RELU_MAX)
        classes.append(model.predict(x, verbose=0).argmax(axis=1))
    counts, classes = np.concatenate(counts), np.concatenate(classes)
    assert len(set(classes.tolist())) >= 3
    expected = np.clip(np.digitize(counts, BINS[1:-1]), 0, 3)
    near_edge = np.min(np.abs(counts[:, None] - np.array(BINS[1:-1])[None, :]), axis=1) < 0.05
    assert (classes == expected)[~near_edge].all()


# ----------------------------------------------------------------------------------------------------
# Training on a tiny dataset with real mask GeoTIFFs


def _write_dataset(root: Path, size: int = 32, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    import rasterio
    from PIL import Image

    per_class = per_class or {"train": 16, "val": 4, "test": 2}
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in per_class.items():
        for ci, name in enumerate(CLASSES):
            for i in range(n):
                cov = rng.uniform(BINS[ci] + 4, BINS[ci + 1] - 4) / 100
                yy, xx = np.mgrid[0:size, 0:size]
                cy, cx = rng.uniform(0, size, 2)
                dist = np.hypot(yy - cy, xx - cx) + rng.normal(0, 1.0, (size, size))
                cloud = dist <= np.quantile(dist, cov)
                img = rng.normal(70, 15, (size, size, 3))
                img[cloud] = rng.normal(225, 10, (int(cloud.sum()), 3))
                pid = f"{split}_{ci}_{i}"
                rel = Path(split) / name / f"{pid}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / rel)
                mask = root / "masks" / f"{pid}.tif"
                mask.parent.mkdir(exist_ok=True)
                with rasterio.open(mask, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8") as dst:
                    dst.write(np.where(cloud, 1, 0).astype(np.uint8), 1)  # CloudSEN12 code 1: thick cloud
                rows.append({"patch_id": pid, "roi": f"roi{i % 3}", "image": rel.as_posix(), "mask": str(mask),
                             "coverage_pct": f"{cloud.mean() * 100:.2f}", "shadow_pct": "0.00", "label": name,
                             "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "dataset.json").write_text(json.dumps({"classes": CLASSES, "bins": BINS, "source": "cloudsen12",
                                                   "rule": {"cloud_codes": [1, 2]}}))
    return root


def test_targets_follow_the_manifest_masks(tmp_path):
    data = _write_dataset(tmp_path / "d", per_class={"train": 2, "val": 1})
    t = cover_head.load_targets(data, "train", 16)
    rows = [r for r in csv.DictReader(open(data / "manifest.csv")) if r["split"] == "train"]
    assert t.shape == (8, 16, 16, 2)
    # the mean cloud share of the target is the row's coverage (box resampling keeps area)
    assert t[..., 0].mean(axis=(1, 2)) * 100 == pytest.approx([float(r["coverage_pct"]) for r in rows], abs=0.01)
    Path(rows[0]["mask"]).unlink()
    with pytest.raises(CloudcoverError, match="mask not found"):
        cover_head.load_targets(data, "train", 16)


@pytest.fixture(scope="module")
def cover_run(tmp_path_factory):
    from cloudcover.train.training import TrainConfig, train

    root = tmp_path_factory.mktemp("cover")
    data = _write_dataset(root / "d")
    cfg = TrainConfig(data=data, out=root / "run", model="edge_cover", input_size=32, alpha=1.0, epochs=20,
                      patience=20, lr=3e-3, seed=0, dropout=0.0)
    return data, train(cfg, verbose=0).run_dir


def _counts_follow_truth(run_dir, data) -> tuple[float, float]:
    """(val accuracy, correlation of the cells' mean with each image's true coverage from its mask)."""
    import keras

    from cloudcover.train.preprocess import load_split
    from cloudcover.train.training import load_run

    model, pre = load_run(run_dir)
    x, y, ids = load_split(data, "val", pre)
    acc = float((model.predict(x, verbose=0).argmax(axis=1) == y).mean())
    cells = keras.Model(model.input, model.get_layer("cover").output)
    counted = cells.predict(x, verbose=0).mean(axis=(1, 2, 3)) * 100 / cover_head.RELU_MAX
    truth = {r["patch_id"]: float(r["coverage_pct"]) for r in csv.DictReader(open(data / "manifest.csv"))}
    return acc, float(np.corrcoef(counted, [truth[i] for i in ids])[0, 1])


def test_edge_cover_trains_on_counts(cover_run):
    data, run = cover_run
    acc, corr = _counts_follow_truth(run, data)
    assert acc >= 0.75, acc  # 4 classes: chance is 0.25
    assert corr > 0.9, corr  # the cells count cloud (truth from the mask, not the class)


def test_qat_keeps_the_cells_counting(cover_run, tmp_path):
    from cloudcover.train.qat import QATConfig, finetune

    data, run = cover_run
    result = finetune(QATConfig(run=run, out=tmp_path / "qat", epochs=2, lr=2e-5), log=lambda m: None, progress=False)
    acc, corr = _counts_follow_truth(result.out, data)
    assert acc >= 0.75 and corr > 0.9, (acc, corr)


def test_qat_with_no_epochs_passes_the_run_through(cover_run, tmp_path):
    """`qat --epochs 0` (the demo's setting for edge_cover): the same weights, qat.json still written."""
    from cloudcover.train.qat import QATConfig, finetune
    from cloudcover.train.training import load_run

    data, run = cover_run
    result = finetune(QATConfig(run=run, out=tmp_path / "same", epochs=0), log=lambda m: None, progress=False)
    before, _ = load_run(run)
    after, _ = load_run(result.out)
    assert all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
    assert result.report["history"] == [] and (result.out / "qat.json").is_file()


def test_coverage_head_refuses_lr_find(tmp_path):
    from cloudcover.train.training import TrainConfig, train

    data = _write_dataset(tmp_path / "d", per_class={"train": 1, "val": 1})
    with pytest.raises(CloudcoverError, match="coverage head"):
        train(TrainConfig(data=data, out=tmp_path / "run", model="edge_cover", input_size=32, lr_find=True), verbose=0)
