"""Activation-range calibration: the math on hand-computed cases, and that chosen ranges reach the int8 model."""

from __future__ import annotations

import numpy as np
import pytest

from cloudcover.export import tflite_export
from cloudcover.export.calibration import Calibration, calibrated_ranges, choose_range, convert_tflite
from cloudcover.train.errors import CloudcoverError


def test_percentile_clips_the_outlier_by_hand():
    values = np.concatenate([np.arange(1000, dtype=np.float32) / 1000.0, [50.0]])  # 0.000 .. 0.999 and one 50
    lo, hi = choose_range(values, 0.0, 50.0, Calibration("percentile", 99.0))
    # the 99th percentile of 1001 values lies between the 990th and 991st sorted values: 0.990 .. 0.991
    assert lo == 0.0 and 0.990 <= hi <= 0.991


def test_minmax_keeps_the_observed_range_and_zero_is_always_inside():
    v = np.array([2.0, 3.0, 4.0])
    assert choose_range(v, 2.0, 4.0, Calibration("minmax")) == (0.0, 4.0)  # int8 must represent 0 exactly
    assert choose_range(v, 2.0, 4.0, Calibration("percentile", 99.99)) == (0.0, pytest.approx(4.0, abs=1e-3))


def _mse(v: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of asymmetric 8-bit fake quantization of v to [lo, hi] (a plain second implementation)."""
    step = (hi - lo) / 255.0
    q = lo + step * np.clip(np.rint((v - lo) / step), 0, 255)
    return float(np.mean((q - v) ** 2))


def test_mse_never_loses_to_minmax_and_never_widens():
    rng = np.random.default_rng(0)
    for v in (rng.exponential(1.0, 50000), rng.lognormal(0, 1.5, 50000), rng.standard_t(3, 50000),
              rng.uniform(-1, 1, 50000)):
        lo0, hi0 = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
        lo, hi = choose_range(v, float(v.min()), float(v.max()), Calibration("mse"))
        assert lo0 <= lo <= 0.0 <= hi <= hi0
        assert _mse(v, lo, hi) <= _mse(v, lo0, hi0)
    # a long ReLU-like tail is clipped a little: the bulk's finer step outweighs the few clipped values
    e = rng.exponential(1.0, 50000)
    assert choose_range(e, 0.0, float(e.max()), Calibration("mse"))[1] < e.max()
    # a lone outlier is cheaper to keep than to clip (its own error would outweigh the coarser step)
    w = np.concatenate([rng.uniform(0, 1, 20000), [20.0]])
    assert choose_range(w, 0.0, 20.0, Calibration("mse"))[1] > 19.0


def test_bad_calibration_specs_are_clear_errors():
    for spec in ("kl", "percentile:abc", "percentile:30", "percentile:101"):
        with pytest.raises(CloudcoverError):
            Calibration.parse(spec)


@pytest.fixture(scope="module")
def tiny():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.DepthwiseConv2D(3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    x = np.random.default_rng(1).normal(size=(48, 16, 16, 3)).astype(np.float32)
    x[0] *= 8  # one image with outlying activations
    return model, x


def test_minmax_through_the_split_converter_equals_the_converters_own_route(tiny, tmp_path):
    model, x = tiny
    tflite_export.convert_int8(model, x, tmp_path / "own.tflite")
    (tmp_path / "split.tflite").write_bytes(convert_tflite(model, x, Calibration("minmax")))
    own, _ = tflite_export.run_int8(tmp_path / "own.tflite", x)
    split, _ = tflite_export.run_int8(tmp_path / "split.tflite", x)
    np.testing.assert_array_equal(own, split)


def test_percentile_ranges_reach_the_quantized_model(tiny, tmp_path):
    model, x = tiny
    cal = Calibration("percentile", 99.0)
    _, changed = calibrated_ranges(model, x, cal)
    assert changed and any(c["chosen"][1] < c["observed"][1] for c in changed.values())
    path = tmp_path / "p.tflite"
    tflite_export.convert_int8(model, x, path, cal)
    scales = sorted(d["quantization"][0] for d in tflite_export.interpreter(path).get_tensor_details()
                    if d["dtype"] == np.int8 and d["quantization"][0] > 0)
    for c in changed.values():  # every chosen activation range appears as an int8 scale (hi - lo) / 255
        want = (c["chosen"][1] - c["chosen"][0]) / 255.0
        assert min(abs(s - want) / want for s in scales) < 0.02
    io_in, io_out = tflite_export.io_quant(path)
    assert io_in.dtype == io_out.dtype == "int8"


def test_calibration_specs_with_affine_round_trip():
    assert Calibration.parse("minmax+affine") == Calibration("minmax", affine_norm=True)
    assert str(Calibration.parse("percentile:99.9+affine")) == "percentile:99.9+affine"
    assert str(Calibration.parse("mse")) == "mse"
    with pytest.raises(CloudcoverError, match="\\+affine"):
        Calibration.parse("minmax+fold")


# The demo's band means and standard deviations: means of 173-180 land off the int8 grid the converter puts
# the SUB constant on (step 180 / 255 = 0.705 pixel levels).
NORM_MEAN, NORM_STD = [173.05364, 177.39432, 179.83640], [53.0443, 48.4408, 48.1054]


@pytest.fixture(scope="module")
def normalizer():
    """pixels -> Normalization -> per-channel spatial mean: the int8 model's output is the mean normalized band."""
    import keras

    inp = keras.Input((16, 16, 3), name="pixels")
    out = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Normalization(mean=NORM_MEAN, variance=[s * s for s in NORM_STD], name="normalize")(inp))
    model = keras.Model(inp, out)
    x = np.random.default_rng(2).integers(60, 256, size=(64, 16, 16, 3)).astype(np.float32)  # raw 8-bit pixels
    return model, x


def test_affine_normalization_is_the_same_float_function(normalizer):
    from cloudcover.export.calibration import affine_normalization

    import keras

    model, x = normalizer
    swapped = affine_normalization(model)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in swapped.layers)
    want = ((x - np.array(NORM_MEAN)) / np.array(NORM_STD)).mean(axis=(1, 2))  # numpy oracle
    np.testing.assert_allclose(swapped.predict(x, verbose=0), want, atol=1e-5)


def test_affine_normalization_removes_the_int8_per_band_shift(normalizer, tmp_path):
    """The int8 model's mean error per band, against numpy: the converter's own route shifts R up and G down by
    the rounding of the mean constants ((173.05 - 172.78) / 53.04 = +0.005, (177.39 - 177.72) / 48.44 = -0.007);
    the depthwise rewrite leaves only output rounding, unbiased to well under that."""
    model, x = normalizer
    want = ((x - np.array(NORM_MEAN)) / np.array(NORM_STD)).mean(axis=(1, 2))
    bias = {}
    for spec in ("minmax", "minmax+affine"):
        path = tmp_path / f"{spec}.tflite"
        tflite_export.convert_int8(model, x, path, Calibration.parse(spec))
        _, got = tflite_export.run_int8(path, x)
        bias[spec] = (got - want).mean(axis=0)
    assert bias["minmax"][0] > 0.003 and bias["minmax"][1] < -0.004  # the shift this option exists for
    assert np.abs(bias["minmax+affine"]).max() < 0.0015
