"""Bad inputs to the segmentation task: one clear error, and no run folder left behind."""

import shutil

import numpy as np
import pytest
import rasterio
from PIL import Image

from cloudcover.riscv.cli import main
from cloudcover.train.data.prepare import PrepareConfig, prepare
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.training import TrainConfig, train


def _train(data, out, model="unet_resnet18"):
    return train(TrainConfig(data=data, out=out, model=model, alpha=0.25, input_size=32, epochs=1, batch_size=4),
                 verbose=0)


def _first_train(root, column):
    import csv

    with open(root / "manifest.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["split"] == "train")
    return root / row[column]


@pytest.fixture
def broken(seg_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(seg_dataset, root)
    return root


def test_classification_dataset_given_to_a_segmenter(seg_raw, tmp_path, capsys):
    cls = tmp_path / "cls"
    prepare(PrepareConfig(source="38cloud", input=seg_raw, out=cls, size=32, split=(0.5, 0.25, 0.25), workers=1,
                          progress=False))
    rc = main(["train", "--data", str(cls), "--model", "unet_resnet18", "--input-size", "32",
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "unet_resnet18 is a segmentation model" in err and "a classification dataset" in err
    assert not (tmp_path / "run").exists()


def test_segmentation_dataset_given_to_a_classifier(seg_dataset, tmp_path):
    with pytest.raises(CloudcoverError, match="edge_cnn is a classification model .* segmentation dataset"):
        _train(seg_dataset, tmp_path / "run", model="edge_cnn")
    assert not (tmp_path / "run").exists()


def test_mask_values_outside_the_label_set(broken, tmp_path):
    path = _first_train(broken, "target")
    m = np.asarray(Image.open(path)).copy()
    m[0, :3] = 7
    Image.fromarray(m).save(path)
    with pytest.raises(CloudcoverError, match=r"holds values \[7\] outside the label set"):
        _train(broken, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_mask_size_mismatch(broken, tmp_path):
    path = _first_train(broken, "target")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
    with pytest.raises(CloudcoverError, match=r"is 40x40 but its image .* is 64x64"):
        _train(broken, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_band_count_mismatch(broken, tmp_path):
    rows = sorted((broken / "train" / "images").iterdir())
    path = rows[-1]
    with rasterio.open(path) as src:
        data, profile = src.read()[:3], src.profile
    profile.update(count=3)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(CloudcoverError, match="has 3 bands, the model takes 4"):
        _train(broken, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_input_size_must_suit_the_unet(seg_dataset, tmp_path):
    with pytest.raises(CloudcoverError, match="multiple of 32"):
        train(TrainConfig(data=seg_dataset, out=tmp_path / "run", model="unet_resnet18", input_size=48, epochs=1),
              verbose=0)
    assert not (tmp_path / "run").exists()
