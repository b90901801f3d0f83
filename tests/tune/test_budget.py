"""`--trials N` is exactly N finished trials over all workers, on every storage and after a resume.

Worker processes (forked, as `cloudcover tune` runs them, but with a trivial objective instead of training)
share one study. The racy interleaving is forced rather than hoped for: every worker is released by one
barrier, in the "claim" tests every worker has already passed the "anything left to do?" check (the step
that raced before), and the trials admitted are held RUNNING until every worker has made its claim, so the
claims are decided while the budget's trials are all in flight. A budget check that is not atomic with
respect to the storage runs one trial per worker here, every time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

STORAGES = ["journal", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
HOLD_S = 60.0  # an admitted trial waits at most this long for the other workers' claims


@pytest.fixture(params=STORAGES)
def study_at(request, tmp_path) -> tuple[str | None, Path, str]:
    """(storage URL or None for the journal, study folder, a fresh study name) with an empty study created."""
    import optuna

    from cloudcover.train.study_storage import open_storage

    url = {"journal": None, "sqlite": f"sqlite:///{tmp_path / 'study.db'}"}.get(request.param)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    name = f"budget-{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=open_storage(url, tmp_path), study_name=name, direction="maximize")
    return url, tmp_path, name


def load(url: str | None, study_dir: Path, name: str):
    import optuna

    from cloudcover.train.study_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=open_storage(url, study_dir))


def _worker(url, study_dir, name, budget, mode, barrier, all_claimed) -> None:
    """One worker process: `claim` = one trial step past the pre-check; `loop` = the worker's whole loop."""
    from cloudcover.train.tune import run_one_trial, run_trials

    study = load(url, study_dir, name)

    def objective(trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        all_claimed.wait(HOLD_S)  # stay RUNNING while the other workers claim
        return float(trial.number)

    barrier.wait(HOLD_S)
    if mode == "claim":
        run_one_trial(study, objective, budget)
    else:
        run_trials(study, objective, budget)


def run_workers(study_at, n_workers: int, budget: int, mode: str, expect_trials: int | None = None) -> list:
    """Fork `n_workers` workers at once; release the held trials once the study holds `expect_trials` trials
    (or once the workers have started, when None); return the study's trials."""
    url, study_dir, name = study_at
    ctx = mp.get_context("fork")
    barrier, all_claimed = ctx.Barrier(n_workers), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, study_dir, name, budget, mode, barrier, all_claimed))
             for _ in range(n_workers)]
    for p in procs:
        p.start()
    study = load(url, study_dir, name)
    deadline = time.time() + HOLD_S
    while expect_trials is not None and time.time() < deadline and len(study.get_trials()) < expect_trials:
        time.sleep(0.05)
    all_claimed.set()
    for p in procs:
        p.join(2 * HOLD_S)
        assert p.exitcode == 0, f"worker {p.pid} exited with {p.exitcode}"
    return study.get_trials()


def tally(trials) -> dict[str, int]:
    from optuna.trial import TrialState

    counted = [t for t in trials if not t.user_attrs.get("over_budget") and not t.user_attrs.get("stale")]
    return {"finished": sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in counted),
            "complete": sum(t.state == TrialState.COMPLETE for t in counted),
            "unfinished": sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials),
            "over_budget": sum(bool(t.user_attrs.get("over_budget")) for t in trials)}


@pytest.mark.parametrize("n_workers,budget,enqueued", [(2, 1, 0), (4, 2, 0), (4, 2, 2), (4, 3, 1)])
def test_simultaneous_claims_admit_exactly_the_budget(study_at, n_workers, budget, enqueued):
    """Every worker claims a trial at once against a budget smaller than the workers: exactly `budget` run.

    With enqueued (WAITING) trials, as a resume or the baseline leaves them, the workers race to pop them
    too: each must run once (on SQLite that needs serialized transactions, see study_storage).
    """
    from optuna.trial import TrialState

    url, study_dir, name = study_at
    study = load(url, study_dir, name)
    for i in range(enqueued):
        study.enqueue_trial({}, user_attrs={"enqueued": i})
    trials = run_workers(study_at, n_workers, budget, "claim", expect_trials=n_workers)
    assert len(trials) == n_workers  # each worker created (or popped) exactly one trial
    assert tally(trials) == {"finished": budget, "complete": budget, "unfinished": 0,
                             "over_budget": n_workers - budget}
    # the admitted ones are the lowest numbers; the over-budget ones were failed without running
    ran = sorted(t.number for t in trials if t.state == TrialState.COMPLETE)
    assert ran == list(range(budget))
    assert all(t.state == TrialState.FAIL and "pid" not in t.user_attrs for t in trials if t.user_attrs.get("over_budget"))
    assert sorted(t.user_attrs["enqueued"] for t in trials if "enqueued" in t.user_attrs) == list(range(enqueued))


@pytest.mark.parametrize("n_workers,budget", [(3, 2), (2, 5)])
def test_worker_loops_finish_exactly_the_budget(study_at, n_workers, budget):
    trials = run_workers(study_at, n_workers, budget, "loop")
    t = tally(trials)
    assert (t["finished"], t["complete"], t["unfinished"]) == (budget, budget, 0)


def _dead_identity() -> dict:
    """A worker identity on this host whose process has exited."""
    import socket

    p = subprocess.Popen(["true"])
    p.wait()
    return {"host": socket.gethostname(), "pid": p.pid, "start": "exited"}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the set-up asks trials outside optimize()
def test_resume_finishes_exactly_the_budget(study_at):
    """A study stopped mid-way (1 complete, 1 over-budget, 2 orphaned RUNNING): the resumed workers run the 2
    orphans again plus what is left, so that exactly `budget` trials count."""
    from optuna.trial import TrialState

    from cloudcover.train.study_storage import recover_dead_trials

    url, study_dir, name = study_at
    study = load(url, study_dir, name)
    done = study.ask()
    study.tell(done, 1.0)
    over = study.ask()
    over.set_user_attr("over_budget", True)
    study.tell(over, state=TrialState.FAIL)
    for _ in range(2):
        orphan = study.ask()
        orphan.suggest_float("lr", 0.1, 0.2)
        orphan.set_user_attr("worker", _dead_identity())
    assert recover_dead_trials(study) == [2, 3]

    budget = 4  # 1 complete + 2 resumed + 1 new
    trials = run_workers(study_at, 3, budget, "loop")
    t = tally(trials)
    assert (t["finished"], t["complete"], t["unfinished"]) == (budget, budget, 0)
    resumed = [t for t in trials if t.user_attrs.get("resumed_from") is not None]
    assert sorted(t.user_attrs["resumed_from"] for t in resumed) == [2, 3]
    assert all(t.state == TrialState.COMPLETE for t in resumed)
    assert sum(1 for t in trials if t.user_attrs.get("stale")) == 2
