"""Quantization-aware fine-tuning: where the twin rounds, that it shares the weights, and the run it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloudcover.train.errors import CloudcoverError


def _small_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    y = layers.Conv2D(4, 1)(x)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(3)(x))


def test_twin_rounds_exactly_what_int8_kernels_read_and_shares_weights():
    from cloudcover.train.qat import fake_quant_twin

    model = _small_model()
    twin, fqs = fake_quant_twin(model)
    # by hand: conv1 reads the input; conv2 reads the ReLU output; Add reads both of its inputs; the pooling and
    # the dense layer read one each. BatchNormalization and ReLU read nothing rounded (TFLite fuses them).
    assert len(fqs) == 6
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(twin(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)  # observing
    for fq in fqs:
        fq.observing = False
    q = np.asarray(twin(x, training=False))
    assert not np.allclose(q, model(x, training=False), atol=1e-6)
    # the first quantizer's output lies on a grid of at most 256 levels spanning the observed range
    import keras

    probe = keras.Model(twin.inputs, fqs[0].output)
    levels = np.unique(np.asarray(probe(x)))
    assert len(levels) <= 256
    step = (x.max() - min(x.min(), 0)) / 255
    assert np.abs(np.asarray(probe(x)) - x).max() <= step / 2 + 1e-5
    # shared layers: zeroing the dense kernel of the model silences the twin's logits too (bias only)
    dense = model.layers[-1]
    dense.kernel.assign(np.zeros(dense.kernel.shape, np.float32))
    np.testing.assert_allclose(np.asarray(twin(x, training=False)), np.broadcast_to(dense.bias.numpy(), (16, 3)),
                               atol=1e-6)


def test_qat_writes_a_run_that_loads_and_refuses_bad_input(trained_run, tmp_path):
    from cloudcover.train.qat import QATConfig, finetune
    from cloudcover.train.training import load_run

    run = trained_run.run_dir
    out = tmp_path / "qat"
    result = finetune(QATConfig(run=run, out=out, epochs=1, calib_samples=16), progress=False)
    report = json.loads((out / "qat.json").read_text())
    assert report["quantization_points"] > 10 and len(report["history"]) == 1
    assert 0.0 <= report["val_agreement_float_vs_fake_quant"] <= 1.0
    model, pre = load_run(out)
    original, _ = load_run(run)
    assert (out / "preprocess.json").read_text() == (run / "preprocess.json").read_text()
    w0 = [w for w in original.get_weights()]
    assert any(not np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))  # it did fine-tune
    assert result.out == out

    for bad, match in ((QATConfig(run=run, out=run), "is the run itself"),
                       (QATConfig(run=run, out=tmp_path / "x", epochs=-1), "--epochs"),
                       (QATConfig(run=tmp_path / "missing", out=tmp_path / "y"), "missing")):
        with pytest.raises(CloudcoverError, match=match):
            finetune(bad, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_agreement_margin_by_hand():
    from cloudcover.train.qat import agreement_margin

    f = np.array([[1.0, 0.9, 0.0], [0.0, 2.0, 1.0], [0.2, 0.0, 0.3]], np.float32)
    q = np.array([[0.8, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 0.6]], np.float32)
    # float classes 0, 1, 2; fake-quant margins of those classes: 0.8 - 1.0 = -0.2, 2 - 1 = 1, 0.6 - 0 = 0.6
    # hinge at 0.5: 0.7, 0, 0 -> mean 0.7 / 3; at 1.5: 1.7, 0.5, 0.9 -> mean 3.1 / 3
    assert float(agreement_margin(f, q, 0.5)) == pytest.approx(0.7 / 3, abs=1e-6)
    assert float(agreement_margin(f, q, 1.5)) == pytest.approx(3.1 / 3, abs=1e-6)
    assert float(agreement_margin(f, f, 0.0)) == 0.0  # a twin that keeps every class by any margin >= 0


def test_output_rounding_and_ranges_follow_the_weights():
    import keras

    from cloudcover.train.qat import fake_quant_twin, observe_ranges

    model = _small_model()
    x = np.random.default_rng(1).normal(size=(32, 8, 8, 3)).astype(np.float32)
    twin, fqs = fake_quant_twin(model, quantize_output=True)
    assert len(fqs) == 7  # the six kernel inputs of the test above, and the logits
    observe_ranges(twin, fqs, x)
    logits = np.asarray(model(x, training=False))
    lo, hi = min(logits.min(), 0.0), max(logits.max(), 0.0)
    assert (float(fqs[-1].lo.numpy()), float(fqs[-1].hi.numpy())) == pytest.approx((lo, hi), abs=1e-5)
    # the twin's logits lie on the 8-bit grid of that range, within half a step (plus the inner roundings)
    q = np.asarray(twin(x, training=False))
    assert len(np.unique(q)) <= 256
    step = (hi - lo) / 255
    grid = (q - q.min()) / step  # fake_quant nudges lo to a whole zero point: compare steps between values
    np.testing.assert_allclose(grid, np.round(grid), atol=0.01)
    assert np.abs(q - logits).max() > step / 8  # rounded for real, not passed through
    # shrinking the dense kernel narrows the logits; re-observing follows it (numpy min/max as oracle), which a
    # running min/max that is never reset would not
    dense = model.layers[-1]
    dense.kernel.assign(0.25 * dense.kernel.numpy())
    observe_ranges(twin, fqs, x)
    logits = np.asarray(model(x, training=False))
    assert float(fqs[-1].hi.numpy()) == pytest.approx(max(logits.max(), 0.0), abs=1e-5)
    assert float(fqs[-1].lo.numpy()) == pytest.approx(min(logits.min(), 0.0), abs=1e-5)
    assert not any(fq.observing for fq in fqs)
    assert isinstance(twin, keras.Model)


def _round_per_channel(k: np.ndarray) -> np.ndarray:
    """Symmetric int8 per output channel (the last axis), as TFLite stores kernels: scale max|w| / 127."""
    flat = k.reshape(-1, k.shape[-1])
    scale = np.abs(flat).max(axis=0) / 127.0
    return (np.round(flat / scale) * scale).reshape(k.shape)


def test_kernel_rounding_by_hand():
    from cloudcover.train.qat import fake_quant_kernel

    k = np.array([[1.0, 0.5], [0.3, -0.2]], np.float32)  # Dense kernel: output channels are the columns
    # column 0: step 1/127, 0.3 -> 38/127; column 1: step 0.5/127, -0.2 -> -51 * 0.5/127
    want = np.array([[1.0, 0.5], [38 / 127, -51 * 0.5 / 127]], np.float32)
    np.testing.assert_allclose(np.asarray(fake_quant_kernel(k)), want, atol=1e-6)
    # depthwise (kh, kw, in, multiplier): one channel per (in, multiplier) pair
    d = np.random.default_rng(0).normal(size=(3, 3, 2, 2)).astype(np.float32)
    want = _round_per_channel(d.reshape(3, 3, 4)).reshape(d.shape)
    np.testing.assert_allclose(np.asarray(fake_quant_kernel(d, depthwise=True)), want, atol=1e-6)


def test_twin_with_rounded_kernels_equals_the_model_with_kernels_rounded_in_numpy():
    import keras

    from cloudcover.train.qat import fake_quant_twin

    model = _small_model()
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 3)).astype(np.float32)
    twin, fqs = fake_quant_twin(model, quantize_weights=True)
    assert all(fq.observing for fq in fqs)  # activations pass unrounded: only the kernels differ
    oracle = keras.models.clone_model(model)
    oracle.set_weights([_round_per_channel(w) if w.ndim >= 2 else w for w in model.get_weights()])
    want = np.asarray(oracle(x, training=False))
    np.testing.assert_allclose(np.asarray(twin(x, training=False)), want, rtol=1e-4, atol=1e-5)
    assert np.abs(want - np.asarray(model(x, training=False))).max() > 1e-4  # the rounding is visible


def test_noise_mode_draws_rounding_sized_noise_afresh():
    from cloudcover.train.qat import fake_quant_twin, observe_ranges

    model = _small_model()
    x = np.random.default_rng(3).normal(size=(16, 8, 8, 3)).astype(np.float32)
    twin, fqs = fake_quant_twin(model)
    observe_ranges(twin, fqs, x)
    fq = fqs[0]  # reads the input itself
    step = (max(x.max(), 0) - min(x.min(), 0)) / 255
    fq.noise = True
    a, b = np.asarray(fq(x)), np.asarray(fq(x))
    assert np.abs(a - x).max() <= step / 2 + 1e-6 and (a - x).std() > step / 5  # uniform: step / sqrt(12)
    assert not np.allclose(a, b)  # a new draw each call: no fixed error pattern to learn
    fq.noise = False
    r = np.asarray(fq(x))
    np.testing.assert_array_equal(r, np.asarray(fq(x)))  # rounding is a fixed function
