"""Empirical bias correction against the float Keras model as the oracle: a depthwise kernel whose int8 weights
all round the same way shifts the int8 output by a known amount, and the correction removes that shift."""

from __future__ import annotations

import numpy as np
import pytest

from cloudcover.export import tflite_export
from cloudcover.export.calibration import Calibration


@pytest.fixture(scope="module")
def skewed():
    """pixels -> [depthwise 3x3 -> BN -> ReLU6] backbone -> per-channel mean. Each channel's largest weight is
    1.0 (int8 step 1/127); the other eight sit 0.45 step above the grid, so int8 rounds each down by 0.45 step:
    the output loses 8 * 0.45 / 127 * E[x] = 0.028 (E[x] = 1) on every position, about 1.2 output steps."""
    import keras

    keras.utils.set_random_seed(0)
    bb_in = keras.Input((12, 12, 2))
    h = keras.layers.DepthwiseConv2D(3, padding="valid", use_bias=False, name="dw")(bb_in)
    h = keras.layers.BatchNormalization(name="dw_bn")(h)
    h = keras.layers.ReLU(6.0, name="dw_relu")(h)
    backbone = keras.Model(bb_in, h, name="backbone")
    inp = keras.Input((12, 12, 2), name="pixels")
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    w = np.full((3, 3, 2, 1), (20 + 0.45) / 127, np.float32)
    w[1, 1] = 1.0
    backbone.get_layer("dw").set_weights([w])
    backbone.get_layer("dw_bn").set_weights([np.ones(2), np.full(2, 0.3), np.zeros(2), np.ones(2) - 1e-3])
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(96, 12, 12, 2)).astype(np.float32)
    return model, x


def _mean_error(model, x, cal, path) -> np.ndarray:
    tflite_export.convert_int8(model, x, path, cal)
    _, got = tflite_export.run_int8(path, x)
    return (got - model.predict(x, verbose=0)).mean(axis=0)  # oracle: the original float model


def test_bias_correction_removes_the_weight_rounding_shift(skewed, tmp_path):
    model, x = skewed
    plain = _mean_error(model, x, Calibration("minmax"), tmp_path / "plain.tflite")
    fixed = _mean_error(model, x, Calibration("minmax", bias_correct=True), tmp_path / "bc.tflite")
    assert np.all(plain < -0.02)  # the shift is there (0.028 expected by hand)
    assert np.abs(fixed).max() < 0.006


def test_bias_correction_changes_only_batch_norm_offsets(skewed):
    from cloudcover.export.bias_correction import bias_corrected

    model, x = skewed
    out = bias_corrected(model, x, lambda m, c, p: tflite_export.convert_int8(m, c, p))
    before, after = model.get_weights(), out.get_weights()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b)]
    beta = model.get_layer("backbone").get_layer("dw_bn").beta
    assert len(changed) == 1 and np.array_equal(before[changed[0]], np.asarray(beta))
    assert np.all(after[changed[0]] > before[changed[0]])  # int8 ran low, so beta goes up (~0.028)
