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
                       (QATConfig(run=run, out=tmp_path / "x", epochs=0), "--epochs"),
                       (QATConfig(run=tmp_path / "missing", out=tmp_path / "y"), "missing")):
        with pytest.raises(CloudcoverError, match=match):
            finetune(bad, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
