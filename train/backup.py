"""Crash-safe training backups, so `cloudcover train` and tuning trials resume after a kill at any moment.

Keras's BackupAndRestore rewrites `latest.weights.h5` in place and the epoch number in a separate JSON file:
a process killed during that write leaves a truncated backup, and the run starts over. Here each epoch's
backup is a single file whose name carries the epoch (`epoch-00003.weights.h5`), written under a temporary
name and renamed, so a kill leaves the previous complete backup in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras

_BACKUP = re.compile(r"^epoch-(\d{5})\.weights\.h5$")


def latest_backup(backup_dir: str | os.PathLike) -> tuple[int, Path] | None:
    """(epochs completed, file) of the newest complete backup in `backup_dir`, or None."""
    found = []
    if Path(backup_dir).is_dir():
        for p in Path(backup_dir).iterdir():
            m = _BACKUP.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return max(found) if found else None


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore (per-epoch saving) whose backup survives a kill during the write."""

    def _save_model(self) -> None:
        backup_dir = Path(self.backup_dir)
        backup_dir.mkdir(parents=True, exist_ok=True)
        final = backup_dir / f"epoch-{self._current_epoch:05d}.weights.h5"
        tmp = backup_dir / f".tmp-{final.name}"  # Keras wants the .weights.h5 ending on the file it writes
        self.model.save_weights(str(tmp), overwrite=True)
        os.replace(tmp, final)
        for old in backup_dir.iterdir():
            if old != final and _BACKUP.match(old.name):
                old.unlink()

    def _load_model(self) -> None:
        latest = latest_backup(self.backup_dir)
        if latest is None:
            return
        epoch, path = latest
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its variables are in the backup too
        self.model.load_weights(str(path))
        self.model._initial_epoch = epoch  # how Keras's own BackupAndRestore tells fit() where to resume


class AtomicBestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best `monitor` (lowest with mode "min", highest with "max") in
    `path`, written under a temporary name and renamed (Keras's ModelCheckpoint writes in place: a kill
    mid-write leaves a file that cannot be loaded).

    `initial_best` is the best value of the epochs an interrupted run already finished."""

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", initial_best: float | None = None,
                 mode: str = "min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        worst = float("inf") if mode == "min" else float("-inf")
        self.best = worst if initial_best is None else float(initial_best)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not (value < self.best if self.mode == "min" else value > self.best):
            return
        self.best = float(value)
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.model.save_weights(str(tmp), overwrite=True)
        os.replace(tmp, self.path)
