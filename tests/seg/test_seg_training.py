"""Segmenter training on synthetic 38-Cloud-like data: loss falls, run folder, LR finder, one-cycle, fine-tuning;
joint augmentation keeps image and mask aligned."""

import json

import numpy as np
import pytest

from cloudcover.train.schedules import onecycle_lr
from cloudcover.train.training import Augment, TrainConfig, load_run, train

RUN_FILES = ("model.keras", "preprocess.json", "history.json", "history.png", "val_metrics.json", "train.json")


def _blob_pairs(n=4, size=48, seed=0):
    """Images whose band 0 is 100 x the mask (a smooth blob), so alignment can be read off the pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    masks, images = [], []
    for _ in range(n):
        cy, cx = rng.uniform(10, size - 10, 2)
        m = (np.hypot(yy - cy, xx - cx) < rng.uniform(6, 14)).astype(np.float32)
        masks.append(m)
        images.append(np.stack([m * 100, rng.uniform(0, 50, (size, size)), np.full((size, size), 7.0)], -1))
    return np.array(images, np.float32), np.array(masks, np.float32)[..., None]


def test_augmentation_moves_image_and_mask_together():
    import keras

    from cloudcover.train.segmentation import augmenter

    keras.utils.set_random_seed(0)  # deterministic ops (conftest) want seeded random ops

    x, y = _blob_pairs()
    aug = Augment(hflip=True, vflip=True, rotation=30, width_shift=0.15, height_shift=0.15, zoom=0.2)
    for seed in range(3):
        xa, ya = (np.asarray(t) for t in augmenter(aug, seed)(x, y))
        assert set(np.unique(ya)) <= {0.0, 1.0}  # the mask is resampled by nearest neighbour
        moved = np.mean(ya != y)
        assert moved > 0.01  # the transform did something ...
        # ... and the same thing to both: the image's band 0 (bilinear) still shows the mask, up to the
        # blob's one-pixel rim
        disagree = np.mean((xa[..., 0] > 50) != (ya[..., 0] > 0.5))
        assert disagree < 0.2 * moved, (seed, disagree, moved)
    # brightness changes the image only
    xb, yb = (np.asarray(t) for t in augmenter(Augment(hflip=False, vflip=False, brightness=0.5), 0)(x, y))
    assert np.array_equal(yb, y) and not np.allclose(xb, x)


def test_onecycle_shape():
    lr = 1e-2
    assert onecycle_lr(lr, 0, 100) == pytest.approx(lr / 25)
    assert onecycle_lr(lr, 30, 100) == pytest.approx(lr)
    assert onecycle_lr(lr, 100, 100) == pytest.approx(lr / 1e4)
    rates = [onecycle_lr(lr, s, 100) for s in range(101)]
    assert np.all(np.diff(rates[:31]) > 0) and np.all(np.diff(rates[30:]) < 0)


@pytest.mark.slow
def test_tiny_unet_trains_two_epochs_and_its_loss_falls(seg_run):
    result = seg_run
    assert result.history["loss"][1] < result.history["loss"][0]
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    assert not (result.run_dir / "checkpoint").exists()
    assert {"dice", "val_dice", "val_loss"} <= set(result.history)
    model, pre = load_run(result.run_dir)
    assert pre.task == "segmentation" and pre.bands == 4 and pre.input_size == 32
    assert pre.value_range == [0.0, 65535.0]
    m = json.loads((result.run_dir / "val_metrics.json").read_text())
    assert 0 <= m["dice"] <= 1 and m["counts"]["tp"] + m["counts"]["fn"] > 0
    # the pooled val Dice is recomputed from the best model's own predictions
    assert m["best_epoch"] == int(np.argmax(result.history["val_dice"]))
    assert json.loads((result.run_dir / "train.json").read_text())["monitor"] == "val_dice"


@pytest.mark.slow
def test_lr_find_onecycle_and_finetune_size(seg_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=seg_dataset, out=out, model="unet_resnet18", alpha=0.25, input_size=32, epochs=2,
                      batch_size=4, seed=0, lr_find=True, schedule="onecycle", loss="bce_dice", finetune_size=64,
                      finetune_epochs=1)
    result = train(cfg, verbose=0)
    found = json.loads((out / "lr_find.json").read_text())
    assert (out / "lr_find.png").is_file() and found["steps"] >= 10
    assert 1e-7 <= found["suggested_lr"] < found["min_loss_lr"]
    summary = json.loads((out / "train.json").read_text())
    assert summary["lr"] == pytest.approx(found["suggested_lr"])
    assert result.history["input_size"] == [32.0, 32.0, 64.0]
    # one-cycle per step: each epoch logs the rate of its last step
    steps = -(-summary["train_images"] // 4)
    for epoch in (0, 1):
        assert result.history["learning_rate"][epoch] == pytest.approx(
            onecycle_lr(found["suggested_lr"], (epoch + 1) * steps - 1, 2 * steps), rel=1e-5)
    model, pre = load_run(out)
    assert pre.input_size == 64 and model.input_shape == (None, 64, 64, 4)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_segmenter_resumes_and_keeps_the_best_dice(seg_dataset, tmp_path):
    import keras

    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise _Interrupt()

    out = tmp_path / "run"
    cfg = TrainConfig(data=seg_dataset, out=out, model="unet_resnet18", alpha=0.25, input_size=32, epochs=2,
                      batch_size=4, seed=0)
    with pytest.raises(_Interrupt):
        train(cfg, extra_callbacks=[StopAfterFirst()], verbose=0)
    assert not (out / "model.keras").exists() and (out / "checkpoint" / "best.weights.h5").is_file()
    result = train(cfg, verbose=0)
    assert len(result.history["loss"]) == 2  # the first epoch was not run again
    assert result.best_epoch == int(np.argmax(result.history["val_dice"]))
    assert result.val_metrics["dice"] == pytest.approx(max(result.history["val_dice"]), abs=0.02)
