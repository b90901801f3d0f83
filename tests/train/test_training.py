"""Real small training runs: the loss falls, the run folder is complete, callbacks see val metrics, resume works."""

import json

import keras
import numpy as np
import pytest

from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import load_image, read_dataset
from cloudcover.train.training import Augment, TrainConfig, load_run, make_optimizer, train

RUN_FILES = ("model.keras", "preprocess.json", "history.json", "history.png", "val_metrics.json", "train.json")


class Interrupt(Exception):
    pass


class Recorder(keras.callbacks.Callback):
    """Records epoch logs; optionally raises at the end of one epoch (like an Optuna pruner or Ctrl-C)."""

    def __init__(self, stop_after: int | None = None, stop_at_begin: bool = False):
        super().__init__()
        self.logs, self.stop_after, self.stop_at_begin = [], stop_after, stop_at_begin

    def on_train_begin(self, logs=None):
        if self.stop_at_begin:
            raise Interrupt("begin")

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs or {}))
        if self.stop_after is not None and epoch == self.stop_after:
            raise Interrupt(epoch)


def _config(data, out, **kw):
    base = dict(data=data, out=out, model="edge_cnn", input_size=32, epochs=2, batch_size=16, lr=3e-3, seed=0,
                augment=Augment(rotation=10, zoom=0.1, brightness=0.1))
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_two_epochs_loss_falls_and_run_folder_is_complete(tiny_dataset, tmp_path):
    rec = Recorder()
    result = train(_config(tiny_dataset, tmp_path / "run"), extra_callbacks=[rec], verbose=0)
    assert result.history["loss"][1] < result.history["loss"][0]
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert {"val_loss", "val_accuracy"} <= set(rec.logs[0])
    assert result.images_per_s > 0
    metrics = json.loads((tmp_path / "run" / "val_metrics.json").read_text())
    assert np.array(metrics["confusion"]).sum() == metrics["n"] == 32
    # the stored preprocessing is the train split's and the model carries it
    model, pre = load_run(tmp_path / "run")
    assert pre.class_names == read_dataset(tiny_dataset).classes and pre.input_size == 32
    norm = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(norm.mean), pre.mean, rtol=1e-5)


@pytest.mark.slow
def test_callback_exception_propagates_and_the_run_resumes(tiny_dataset, tmp_path):
    cfg = _config(tiny_dataset, tmp_path / "run", epochs=3)
    with pytest.raises(Interrupt):
        train(cfg, extra_callbacks=[Recorder(stop_after=1)], verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()  # no finished-run files from a stopped run
    again = Recorder()
    result = train(cfg, extra_callbacks=[again], verbose=0)
    assert len(again.logs) == 1  # only the third epoch ran
    assert len(result.history["loss"]) == 3


def test_different_settings_do_not_resume_silently(tiny_dataset, tmp_path):
    with pytest.raises(Interrupt):
        train(_config(tiny_dataset, tmp_path / "run", epochs=3), extra_callbacks=[Recorder(stop_at_begin=True)],
              verbose=0)
    with pytest.raises(CloudcoverError, match="different settings.*--no-resume"):
        train(_config(tiny_dataset, tmp_path / "run", epochs=3, lr=1e-3), verbose=0)


def test_class_missing_from_train_split(tmp_path, make_dataset):
    root = make_dataset(tmp_path / "d", {"train": 2, "val": 1}, size=8, skip_train=("clouds_50_75",))
    with pytest.raises(CloudcoverError, match="clouds_50_75 missing from the train split"):
        train(_config(root, tmp_path / "run"), verbose=0)


@pytest.mark.parametrize("field, value", [("dropout", 1.0), ("label_smoothing", -0.1)])
def test_out_of_range_regularization_is_refused(tmp_path, make_dataset, field, value):
    root = make_dataset(tmp_path / "d", {"train": 2, "val": 1}, size=8)
    config = _config(root, tmp_path / "run")
    setattr(config, field, value)
    with pytest.raises(CloudcoverError, match=r"--dropout and --label-smoothing must be in \[0, 1\)"):
        train(config, verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_dataset_without_manifest(tmp_path):
    with pytest.raises(CloudcoverError, match="manifest.csv not found"):
        train(_config(tmp_path, tmp_path / "run"), verbose=0)


def test_unknown_optimizer():
    with pytest.raises(CloudcoverError, match="unknown optimizer 'lion'.*adam"):
        make_optimizer("lion", 1e-3)
    assert make_optimizer("sgd", 1e-2, 0.8).momentum == 0.8


def test_load_run_without_preprocess_json(tmp_path):
    with pytest.raises(CloudcoverError, match="preprocess.json not found"):
        load_run(tmp_path)


@pytest.mark.slow
def test_trained_model_learns_the_task(trained_run, tiny_dataset):
    """The shared fixture run (8 epochs) is accurate on val, so export parity is measured on a real model."""
    assert trained_run.val_metrics["accuracy"] >= 0.75
    model, pre = load_run(trained_run.run_dir)
    path = next(tiny_dataset.glob("test/clouds_75_100/*.png"))
    logits = model.predict(load_image(path, pre)[None], verbose=0)
    assert logits.argmax() == 3


def test_backup_is_one_complete_file_per_epoch(tmp_path):
    """A kill during a backup write leaves the previous epoch's file: temp files never count as backups."""
    import keras

    from cloudcover.train.backup import AtomicBackupAndRestore, latest_backup

    backup = tmp_path / "backup"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32)
    cb = AtomicBackupAndRestore(str(backup), delete_checkpoint=False)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert latest_backup(backup)[0] == 3 and sorted(p.name for p in backup.iterdir()) == ["epoch-00003.weights.h5"]
    (backup / ".tmp-epoch-00004.weights.h5").write_bytes(b"truncated")  # what a kill mid-write leaves
    assert latest_backup(backup)[0] == 3
    resumed = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    resumed.compile(optimizer="adam", loss="mse", jit_compile=False)
    history = resumed.fit(x, y, epochs=5, verbose=0, callbacks=[AtomicBackupAndRestore(str(backup))])
    assert len(history.history["loss"]) == 2  # epochs 4 and 5 only
