"""The model zoo: every registered model builds and runs at a small size; bad names and sizes are clear errors."""

import numpy as np
import pytest

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.models import count_macs, create_model, list_models, model_config

HEAVY = {"resnet50", "vgg16", "inception_v3"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in list_models("classification")])  # segmenters: tests/seg/test_unet.py
def test_each_model_builds_and_runs(name):
    size = max(32, model_config(name).min_size)
    model = create_model(name, num_classes=4, input_size=size, mean=[120.0] * 3, std=[60.0] * 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    assert logits.shape == (2, 4)
    assert np.isfinite(logits).all()
    assert model.layers[1].name == "normalize"  # takes raw pixels


def test_registry_has_the_zoo():
    assert {"resnet50", "mobilenet", "vgg16", "inception_v3", "mobilenet_v3_small", "edge_cnn"} <= set(list_models())


def test_unknown_model_lists_known_ones():
    with pytest.raises(CloudcoverError, match="unknown model 'alexnet'.*mobilenet"):
        create_model("alexnet", num_classes=4)


def test_inception_below_75_px_is_a_clear_error():
    with pytest.raises(CloudcoverError, match="at least 75 px, got 64"):
        create_model("inception_v3", num_classes=4, input_size=64)


def test_edge_cnn_fits_the_mac_budget_and_takes_other_band_counts():
    model = create_model("edge_cnn", num_classes=4, input_size=96, bands=13)
    assert model.input_shape == (None, 96, 96, 13)
    assert count_macs(model) < 50_000_000


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(CloudcoverError, match="weights file not found"):
        create_model("edge_cnn", num_classes=4, input_size=32, weights=tmp_path / "none.weights.h5")


def test_backbone_weights_load_from_a_local_file(tmp_path):
    """--weights: weights saved from one backbone start another of the same shape."""
    src = create_model("edge_cnn", num_classes=4, input_size=32)
    backbone = src.layers[1]
    path = tmp_path / "edge.weights.h5"
    backbone.save_weights(path)
    dst = create_model("edge_cnn", num_classes=3, input_size=32, weights=path)
    np.testing.assert_array_equal(dst.layers[1].get_weights()[0], backbone.get_weights()[0])


def test_resnet8_is_mlperf_tinys_reference_network():
    """Hand count of the reference ResNet-8 (mlcommons/tiny): stem 32*32*16*27, stack 1 two 32*32*16*144,
    stack 2 16*16*32*(144 + 288 + 16), stack 3 8*8*64*(288 + 576 + 32), Dense 64*10."""
    model = create_model("resnet8", num_classes=10)
    assert model.input_shape == (None, 32, 32, 3)
    expected = (32 * 32 * 16 * 27 + 2 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * (144 + 288 + 16)
                + 8 * 8 * 64 * (288 + 576 + 32) + 64 * 10)
    assert count_macs(model) == expected  # 12,501,632: the "about 12.5 M MACs" of the benchmark
    backbone = model.get_layer("resnet8")
    convs = [l for l in backbone.layers if l.__class__.__name__ == "Conv2D"]
    assert sorted(l.filters for l in convs) == [16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert sum(l.__class__.__name__ == "Add" for l in backbone.layers) == 3
