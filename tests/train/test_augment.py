"""Photometric augmentation (train/augment.py) against hand-computed values and a numpy oracle."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cloudcover.train.augment import Draws, enabled, photometric, random_photometric, smooth3  # noqa: E402
from cloudcover.train.cli import parse_augment  # noqa: E402
from cloudcover.train.training import Augment  # noqa: E402


def _draws(b=1, h=4, w=4, c=1, blur=0.0, contrast=1.0, gamma=1.0, gain=None, noise=None) -> Draws:
    one = np.full((b, 1, 1, 1), 1.0, np.float32)
    return Draws(blur=tf.constant(one * blur), contrast=tf.constant(one * contrast), gamma=tf.constant(one * gamma),
                 gain=tf.constant(np.ones((b, 1, 1, c), np.float32) if gain is None else np.asarray(gain, np.float32)),
                 noise=tf.constant(np.zeros((b, h, w, c), np.float32) if noise is None else noise))


def test_identity_draws_leave_the_image_unchanged():
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 6, 3)).astype(np.float32)
    y = photometric(tf.constant(x), _draws(2, 5, 6, 3)).numpy()
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-3)


def test_contrast_and_gamma_hand_computed():
    # a 1 x 2 image with values 10 and 30: mean 20
    x = tf.constant(np.array([10.0, 30.0], np.float32).reshape(1, 1, 2, 1))
    y = photometric(x, _draws(1, 1, 2, 1, contrast=0.5)).numpy().ravel()
    np.testing.assert_allclose(y, [15.0, 25.0], rtol=1e-5)  # 20 + 0.5 * (+-10)
    y = photometric(x, _draws(1, 1, 2, 1, gamma=2.0)).numpy().ravel()
    np.testing.assert_allclose(y, [20 * 0.25, 20 * 2.25], rtol=1e-5)  # 20 * (x / 20) ** 2
    y = photometric(x, _draws(1, 1, 2, 1, contrast=3.0)).numpy().ravel()
    np.testing.assert_allclose(y, [0.0, 50.0], rtol=1e-5)  # 20 - 30 clipped at 0


def test_gain_per_band_and_noise_in_units_of_the_mean():
    x = tf.constant(np.full((1, 2, 2, 3), 100.0, np.float32))
    noise = np.zeros((1, 2, 2, 3), np.float32)
    noise[0, 0, 0, 1] = 0.1
    y = photometric(x, _draws(1, 2, 2, 3, gain=[[[[0.5, 1.0, 2.0]]]], noise=noise)).numpy()
    np.testing.assert_allclose(y[0, 1, 1], [50.0, 100.0, 200.0], rtol=1e-5)
    assert y[0, 0, 0, 1] == pytest.approx(110.0, rel=1e-5)  # + 0.1 x the mean 100


def test_blur_is_the_binomial_kernel_with_repeated_edges():
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 16.0
    s = smooth3(tf.constant(x)).numpy()[0, :, :, 0]
    expect = np.zeros((5, 5))
    expect[1:4, 1:4] = np.outer([1, 2, 1], [1, 2, 1])
    np.testing.assert_allclose(s, expect, atol=1e-5)
    corner = np.zeros((1, 3, 3, 1), np.float32)
    corner[0, 0, 0, 0] = 16.0  # edge repeated: the corner pixel sees itself 4 times with weights 4+2+2+1
    assert smooth3(tf.constant(corner)).numpy()[0, 0, 0, 0] == pytest.approx(16.0 * 9 / 16)
    half = photometric(tf.constant(x), _draws(1, 5, 5, 1, blur=0.5)).numpy()[0, :, :, 0]
    np.testing.assert_allclose(half, 0.5 * x[0, :, :, 0] + 0.5 * expect, atol=1e-4)


def _numpy_oracle(x, blur, k, g, gain, noise):
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="symmetric")
    w = np.array([1, 2, 1]) / 4
    sm = sum(w[i] * w[j] * pad[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3))
    m = x.mean(axis=(1, 2, 3), keepdims=True) + 1e-6
    y = x + blur * (sm - x)
    y = m + k * (y - m)
    y = m * (np.maximum(y, 0) / m) ** g
    return np.maximum(y * gain + noise * m, 0)


def test_matches_a_numpy_implementation_on_random_draws():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 4000, (3, 7, 6, 4)).astype(np.float32)
    blur, k, g = (rng.uniform(0.2, 1.5, (3, 1, 1, 1)).astype(np.float32) for _ in range(3))
    blur = np.clip(blur, 0, 1)
    gain = rng.uniform(0.8, 1.2, (3, 1, 1, 4)).astype(np.float32)
    noise = (rng.standard_normal(x.shape) * 0.02).astype(np.float32)
    d = Draws(*(tf.constant(a) for a in (blur, k, g, gain, noise)))
    np.testing.assert_allclose(photometric(tf.constant(x), d).numpy(), _numpy_oracle(x, blur, k, g, gain, noise),
                               rtol=1e-4, atol=1e-2)


def test_random_draws_stay_in_their_ranges_and_repeat_for_a_seed():
    aug = parse_augment("contrast=0.4,gamma=0.3,color=0.1,blur=1,noise=0.02")
    assert enabled(aug) and not enabled(Augment())
    x = tf.constant(np.full((64, 8, 8, 3), 100.0, np.float32))
    assert random_photometric(x, Augment()) is x  # off: untouched

    def run():
        tf.keras.utils.set_random_seed(7)
        return random_photometric(x, aug).numpy()

    a, b = run(), run()
    np.testing.assert_array_equal(a, b)
    # a flat image: contrast and gamma do nothing, so each band is 100 x gain (x noise): gain in exp(+-0.1)
    med = np.median(a, axis=(1, 2))
    assert med.min() > 100 * np.exp(-0.1) - 1 and med.max() < 100 * np.exp(0.1) + 1
    assert med.std() > 2  # it does vary


def test_both_input_pipelines_apply_it_to_images_only():
    from cloudcover.train import pipeline, segmentation

    aug = parse_augment("contrast=0.4,gamma=0.3")  # no flips: only the photometric steps move pixels
    x = np.random.default_rng(1).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    xb, _ = next(iter(pipeline.train_dataset(x, np.zeros(4, np.int64), 2, 4, aug, seed=0)))
    assert not np.allclose(np.sort(xb.numpy().ravel()), np.sort(x.ravel()))
    y = (x[..., 0] > 128).astype(np.uint8)
    xs, ys = next(iter(segmentation.train_dataset(x, y, 4, aug, seed=0)))
    assert not np.allclose(np.sort(xs.numpy().ravel()), np.sort(x.ravel()))
    assert sorted(map(bytes, ys.numpy()[..., 0].astype(np.uint8))) == sorted(map(bytes, y))  # masks as they were
