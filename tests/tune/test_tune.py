"""`cloudcover tune` end to end: worker processes on journal and PostgreSQL storage, pruning, resume, plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import cli

# A narrow space so each trial is a few seconds on 2 cores: the 32 px edge model, one width, one batch size.
FAST_SPACE = {"batch_size": [16], "input_sizes": [32], "widths": {"edge_cnn": [0.5]}}


@pytest.fixture()
def space_file(tmp_path) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(FAST_SPACE))
    return path


def load_study(study_dir: Path, storage: str | None = None, name: str = "cloudcover"):
    import optuna

    from cloudcover.train.study_storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage, study_dir))


def finished(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def process_state(pid: int) -> str | None:
    """The state letter of process `pid` from /proc (R, S, Z, ...), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def check_study_dir(out: Path, n_trials: int) -> dict:
    from PIL import Image

    best = json.loads((out / "best.json").read_text())
    assert best["objective"].startswith("validation macro-F1")
    assert 0.0 <= best["best_value"] <= 1.0
    assert best["trials"]["complete"] + best["trials"]["pruned"] == n_trials
    assert (out / "best_run" / "model.keras").is_file() and (out / "best_run" / "preprocess.json").is_file()
    assert best["params"]["model"] == "edge_cnn"
    drawn = [name for name, r in best["plots"].items() if "png" in r]
    assert {"optimization_history", "intermediate_values", "parallel_coordinate"} <= set(drawn)
    for name in drawn:
        png, html = out / "plots" / f"{name}.png", out / "plots" / f"{name}.html"
        with Image.open(png) as im:
            arr = np.asarray(im.convert("L"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 1.0, f"{png} looks empty"
        assert html.stat().st_size > 2000 and "plotly" in html.read_text()
    return best


@pytest.mark.slow
def test_three_trials_two_workers_on_journal(tiny_dataset, tmp_path, space_file):
    out = tmp_path / "study"
    r = cli("tune", "--data", str(tiny_dataset), "--models", "edge_cnn", "--trials", "3", "--epochs-per-trial", "2",
            "--workers", "2", "--pruner", "median:1", "--space", str(space_file), "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "best trial" in r.stdout and "params:" in r.stdout
    best = check_study_dir(out, 3)
    study = load_study(out)
    trials = finished(study)
    # every trial reported each epoch it ran; both worker processes took part
    assert all(set(t.intermediate_values) <= {1, 2} and t.intermediate_values for t in trials)
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2
    assert best["workers"] == 2 and best["pruner"] == "median:1"
    assert (out / "study.journal").is_file()


@pytest.mark.slow
def test_pruning_callback_prunes_a_behind_trial(tiny_dataset, tmp_path):
    """In process: a threshold no model reaches after one epoch -> TrialPruned, PRUNED state, folder removed."""
    import optuna

    from cloudcover.train.tune import TuneConfig, make_objective, prepare

    config = TuneConfig(data=str(tiny_dataset), out=str(tmp_path / "s"), models=["edge_cnn"], trials=1,
                        epochs_per_trial=2, pruner="threshold:1.01", space_file=None, baseline=False)
    space = tmp_path / "space.json"
    space.write_text(json.dumps(FAST_SPACE))
    config.space_file = str(space)
    config, study = prepare(config)
    study.optimize(make_objective(config), n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert list(t.intermediate_values) == [1]  # stopped after the first epoch
    assert not Path(t.user_attrs["run_dir"]).exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgresql(tiny_dataset, tmp_path, space_file, postgres_url):
    out = tmp_path / "study"
    r = cli("tune", "--data", str(tiny_dataset), "--models", "edge_cnn", "--trials", "3", "--epochs-per-trial", "1",
            "--workers", "2", "--storage", postgres_url, "--study", "pg-study", "--space", str(space_file),
            "--quiet", "--no-plots", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out / "study.journal").exists()
    study = load_study(out, postgres_url, "pg-study")
    # --trials 3 is exactly 3 finished trials (complete, pruned or failed), however the workers interleaved;
    # tests/tune/test_budget.py forces the interleavings that over-ran before
    counted = [t for t in study.get_trials() if not t.user_attrs.get("over_budget")]
    assert len(counted) == 3 and len(finished(study)) == 3, [(t.number, t.state, t.user_attrs) for t in study.get_trials()]
    assert len({t.user_attrs["worker"]["pid"] for t in counted}) == 2
    best = json.loads((out / "best.json").read_text())
    assert best["storage"].startswith("postgresql://cc@127.0.0.1")
    assert sum(best["trials"][k] for k in ("complete", "pruned", "fail")) == 3


@pytest.mark.slow
def test_resume_after_kill(tiny_dataset, tmp_path, space_file):
    """SIGKILL the tune process mid-trial; the rerun fails the orphaned trial, resumes it and completes the budget."""
    from cloudcover.train.backup import latest_backup

    out = tmp_path / "study"
    args = ["tune", "--data", str(tiny_dataset), "--models", "edge_cnn", "--trials", "2", "--epochs-per-trial", "4",
            "--workers", "1", "--pruner", "none", "--space", str(space_file), "--quiet", "--no-plots",
            "--out", str(out)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-m", "cloudcover.riscv.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    backup = out / "trials" / "trial_0000" / "checkpoint" / "backup"
    deadline = time.time() + 180
    # Kill once epoch 1's backup exists: it is renamed into place complete (train/backup.py), so the
    # resumed trial must start at epoch 2 whenever the kill lands.
    while time.time() < deadline and proc.poll() is None and latest_backup(backup) is None:
        time.sleep(0.2)
    assert proc.poll() is None, "tune finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from optuna.trial import TrialState

    study = load_study(out)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    # The worker gets SIGKILL from the kernel when its parent dies (PR_SET_PDEATHSIG): wait until it is gone
    # (no process, or a zombie) rather than assume it after a sleep; the rerun must not see it alive.
    worker = study.get_trials()[0].user_attrs["worker"]["pid"]
    deadline = time.time() + 30
    while time.time() < deadline and process_state(worker) not in (None, "Z", "X"):
        time.sleep(0.1)
    assert process_state(worker) in (None, "Z", "X"), f"worker {worker} survived its parent's SIGKILL"

    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming: trial(s) 0" in r.stdout
    study = load_study(out)
    states = [(t.number, t.state, t.user_attrs.get("stale"), t.user_attrs.get("resumed_from")) for t in study.get_trials()]
    assert states[0][1:3] == (TrialState.FAIL, True)
    assert sum(1 for s in states if s[1] == TrialState.COMPLETE) == 2
    resumed = [t for t in study.get_trials() if t.user_attrs.get("resumed_from") == 0]
    assert len(resumed) == 1 and resumed[0].state == TrialState.COMPLETE
    # the resumed trial kept training in the orphan's folder, from its checkpoint
    assert resumed[0].user_attrs["run_dir"].endswith("trial_0000")
    assert 1 not in resumed[0].intermediate_values  # epoch 1 was not trained again
    hist = json.loads((out / "trials" / "trial_0000" / "history.json").read_text())
    assert len(hist["loss"]) == 4
