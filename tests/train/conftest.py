"""A tiny prepared dataset in the `cloudcover data prepare` format, written directly (no data helper needed).

Each image is dark noisy ground with white cloud blobs covering a fraction of the patch that falls in the
middle of its class's coverage bin, so a tiny model can tell the classes apart after two epochs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]
BINS = [0, 25, 50, 75, 100]
COLUMNS = ["patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split"]


def render_patch(rng: np.random.Generator, coverage: float, size: int) -> np.ndarray:
    """Ground (dark, noisy) with a white blob whose area is `coverage` of the patch (uint8 RGB)."""
    img = rng.normal(70, 15, (size, size, 3)) + np.array([0, 15, -10])
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0, size, 2)
    dist = np.hypot(yy - cy, xx - cx) + rng.normal(0, 1.0, (size, size))
    cloud = dist <= np.quantile(dist, coverage)  # exactly `coverage` of the pixels, one blob
    img[cloud] = rng.normal(225, 10, (int(cloud.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_tiny_dataset(root: Path, per_class: dict[str, int] | None = None, size: int = 32, seed: int = 0,
                       classes: list[str] = CLASSES, skip_train: tuple[str, ...] = ()) -> Path:
    """Write root/manifest.csv, root/dataset.json and PNGs; per_class = images per split per class."""
    per_class = per_class or {"train": 48, "val": 8, "test": 8}
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in per_class.items():
        for ci, name in enumerate(classes):
            if split == "train" and name in skip_train:
                continue
            for i in range(n):
                lo, hi = BINS[ci], BINS[ci + 1]
                coverage = rng.uniform(lo + 5, hi - 5) / 100
                pid = f"{split}_{ci}_{i}"
                rel = Path(split) / name / f"{pid}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(render_patch(rng, coverage, size)).save(root / rel)
                rows.append({"patch_id": pid, "roi": f"roi{i % 3}", "image": rel.as_posix(), "mask": "",
                             "coverage_pct": f"{coverage * 100:.2f}", "shadow_pct": "0.00", "label": name,
                             "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: {c: sum(1 for r in rows if r["split"] == s and r["label"] == c) for c in classes} for s in per_class}
    (root / "dataset.json").write_text(json.dumps({"classes": classes, "bins": BINS, "counts": counts,
                                                   "size": size, "source": "tests"}))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory):
    """An edge_cnn trained on the tiny dataset (shared by the tests that need a trained run)."""
    from cloudcover.train.training import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(data=tiny_dataset, out=out, model="edge_cnn", input_size=32, epochs=8, batch_size=16,
                      lr=3e-3, patience=8, seed=0)
    result = train(cfg, verbose=0)
    return result


@pytest.fixture(scope="session")
def make_dataset():
    """write_tiny_dataset, for tests that need a dataset of their own shape (test modules cannot import conftest)."""
    return write_tiny_dataset
