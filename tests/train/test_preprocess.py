"""Decoding, resizing and the preprocess.json / dataset contracts."""

import numpy as np
import pytest
from PIL import Image

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import Preprocess, band_stats, load_image, load_split, read_dataset

CLASSES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]


def _pre(size=32, bands=3):
    return Preprocess(input_size=size, bands=bands, mean=[0.0] * bands, std=[1.0] * bands, class_names=CLASSES,
                      bins=[0, 25, 50, 75, 100], model="edge_cnn")


def test_load_image_decodes_and_resizes_raw_values(tmp_path):
    arr = np.full((48, 48, 4), 200, np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", _pre(32))
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, 200.0, atol=1e-3)


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(CloudcoverError, match="image not found: .*missing.png"):
        load_image(tmp_path / "missing.png", _pre())
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(CloudcoverError, match="has 3 bands, the model takes 13"):
        load_image(tmp_path / "rgb.png", _pre(bands=13))


def test_preprocess_round_trips_and_missing_file_is_clear(tmp_path):
    pre = _pre()
    pre.save(tmp_path)
    assert Preprocess.load(tmp_path) == pre
    with pytest.raises(CloudcoverError, match="preprocess.json not found"):
        Preprocess.load(tmp_path / "elsewhere")


def test_dataset_without_manifest_is_clear(tmp_path):
    with pytest.raises(CloudcoverError, match="manifest.csv not found"):
        read_dataset(tmp_path)


def test_load_split_uses_the_model_class_order(tiny_dataset):
    """Labels index the model's class order (preprocess.json), not dataset.json's: a model trained with another
    order must get its own indices. Oracle: manifest.csv read here, the PNGs decoded here with PIL."""
    import csv

    model_order = [CLASSES[2], CLASSES[0], CLASSES[3], CLASSES[1]]  # not the dataset's order
    pre = Preprocess(input_size=32, bands=3, mean=[0.0] * 3, std=[1.0] * 3, class_names=model_order,
                     bins=[0, 25, 50, 75, 100], model="edge_cnn")
    x, y, ids = load_split(tiny_dataset, "val", pre)
    with open(tiny_dataset / "manifest.csv", newline="") as f:
        rows = {r["patch_id"]: r for r in csv.DictReader(f) if r["split"] == "val"}
    assert sorted(ids) == sorted(rows) and x.shape == (len(ids), 32, 32, 3) and y.dtype == np.int64
    assert y.tolist() == [model_order.index(rows[i]["label"]) for i in ids]
    for k in (0, len(ids) - 1):
        png = np.asarray(Image.open(tiny_dataset / rows[ids[k]]["image"]).convert("RGB"), np.float32)
        np.testing.assert_array_equal(x[k], png)
    # the synthetic classes are brightness-ordered: more cloud, brighter mean (in the dataset's order)
    means = [x[y == model_order.index(c)].mean() for c in CLASSES]
    assert means == sorted(means)
    mean, std = band_stats(x)
    assert len(mean) == 3 and all(s > 0 for s in std)


def test_unknown_labels_are_refused(tmp_path, make_dataset):
    root = make_dataset(tmp_path, {"train": 1}, size=8)
    (root / "dataset.json").write_text('{"classes": ["clouds_0_25", "clouds_25_50"], "bins": [0, 25, 50]}')
    with pytest.raises(CloudcoverError, match="labels not in dataset.json classes: clouds_50_75"):
        read_dataset(root)
