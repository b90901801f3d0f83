"""The UNet segmenters: build for 3/4/13 bands, size rules, MACs, encoder weights, full-int8 TFLite conversion."""

from collections import Counter

import numpy as np
import pytest

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.models import count_macs, create_model, list_models, model_config

SEGMENTERS = ["unet_resnet18", "unet_resnet34"]


def test_registry_knows_the_segmenters_by_task():
    assert set(SEGMENTERS) <= set(list_models("segmentation"))
    assert not set(SEGMENTERS) & set(list_models("classification"))
    assert {"resnet18", "resnet34"} <= set(list_models("classification"))
    assert all(model_config(n).size_multiple == 32 for n in SEGMENTERS)


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("bands", [3, 4, 13])
def test_builds_and_outputs_one_logit_per_pixel(name, bands):
    model = create_model(name, num_classes=4, input_size=64, bands=bands, alpha=0.25,
                         mean=[1000.0] * bands, std=[300.0] * bands)
    x = np.random.default_rng(0).uniform(0, 3000, (2, 64, 64, bands)).astype(np.float32)
    out = model.predict(x, verbose=0)
    assert out.shape == (2, 64, 64, 1) and np.isfinite(out).all()
    assert model.layers[1].name == "normalize"


def test_macs_scale_with_width_depth_and_size():
    def macs(name, alpha, size):
        return count_macs(create_model(name, num_classes=2, input_size=size, bands=4, alpha=alpha))

    edge, full = macs("unet_resnet18", 0.25, 64), macs("unet_resnet18", 1.0, 64)
    assert 10 < full / edge < 20  # conv MACs go with the square of the width (8-channel floor at 0.25)
    assert macs("unet_resnet34", 1.0, 64) > full
    assert macs("unet_resnet18", 0.25, 128) == 4 * edge  # fully convolutional: MACs go with the pixel count


def test_input_size_rules():
    with pytest.raises(CloudcoverError, match="multiple of 32"):
        create_model("unet_resnet18", num_classes=2, input_size=48, bands=4)
    with pytest.raises(CloudcoverError, match="at least 32"):
        create_model("unet_resnet18", num_classes=2, input_size=16, bands=4)


def test_encoder_loads_from_weights_of_a_resnet18_classifier(tmp_path):
    clf = create_model("resnet18", num_classes=4, input_size=64, bands=4, alpha=0.25)
    path = tmp_path / "encoder.weights.h5"
    clf.get_layer("resnet18_encoder").save_weights(path)
    unet = create_model("unet_resnet18", num_classes=2, input_size=96, bands=4, alpha=0.25, weights=path)
    enc = unet.get_layer("unet_resnet18").get_layer("resnet18_encoder")
    for name in ("stem_conv", "stage4_block2_b_conv", "stage2_block1_proj_conv"):
        np.testing.assert_array_equal(enc.get_layer(name).kernel.numpy(),
                                      clf.get_layer("resnet18_encoder").get_layer(name).kernel.numpy())
    with pytest.raises(CloudcoverError, match="cannot load backbone weights"):
        create_model("unet_resnet34", num_classes=2, input_size=64, bands=4, alpha=0.25, weights=path)


@pytest.mark.slow
def test_full_int8_tflite_conversion_uses_only_lowerable_ops(tmp_path):
    from cloudcover.export.tflite_export import convert_int8, interpreter, run_int8

    model = create_model("unet_resnet18", num_classes=2, input_size=64, bands=4, alpha=0.25,
                         mean=[9000.0] * 4, std=[2000.0] * 4)
    calib = np.random.default_rng(0).uniform(5000, 20000, (8, 64, 64, 4)).astype(np.float32)
    convert_int8(model, calib, tmp_path / "unet.tflite")
    interp = interpreter(tmp_path / "unet.tflite", "reference")
    ops = Counter(op["op_name"] for op in interp._get_ops_details())
    assert set(ops) == {"CONV_2D", "ADD", "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION", "MAX_POOL_2D", "SUB", "MUL"}
    assert ops["RESIZE_NEAREST_NEIGHBOR"] == 5 and ops["CONCATENATION"] == 4
    out = interp.get_output_details()[0]
    assert list(out["shape"]) == [1, 64, 64, 1] and out["dtype"] == np.int8
    raw, logits = run_int8(tmp_path / "unet.tflite", calib[:2])
    assert raw.shape == logits.shape == (2, 64, 64, 1) and raw.dtype == np.int8
