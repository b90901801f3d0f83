"""Where an Optuna study lives, and how trials of dead workers are recovered.

Two kinds of storage, one study API:
- the embedded default, a journal file in STUDY_DIR (Optuna's JournalStorage + JournalFileBackend):
  append-only with a file lock, so several worker processes on one machine share a study without a
  server, and a killed process cannot corrupt it;
- any SQLAlchemy database URL (e.g. postgresql://user@host/db) so that workers on many machines share
  one study. Those get Optuna's heartbeat, so trials of a worker that vanished elsewhere are failed
  after a grace period.

A killed local worker leaves its trial RUNNING forever in a journal. `recover_dead_trials` finds trials
whose recorded worker (host, pid, process start time) no longer exists on this machine, fails them and
re-enqueues their parameters with their run folder, so the study resumes where it stopped: the next
worker continues that very training run from its last checkpoint.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path
from typing import Any

from cloudcover.train.errors import CloudcoverError

JOURNAL_NAME = "study.journal"
HEARTBEAT_S = 30
GRACE_S = 120


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and JSON."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str | None, study_dir: str | Path) -> Any:
    """An Optuna storage for `url` (None: the journal file in `study_dir`). Checks that it is reachable."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not url or url.startswith("journal:"):
        path = Path(url[len("journal:"):]) if url else Path(study_dir) / JOURNAL_NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise CloudcoverError(f"cannot open journal storage {path}: {exc.strerror or exc}") from None

    shown = redact(url)
    url = _with_installed_driver(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "postgres")):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat is "experimental"
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "?"
        raise CloudcoverError(f"storage {shown} needs the missing database driver {missing!r} "
                              "(--storage)") from None
    except Exception as exc:  # sqlalchemy: ArgumentError (bad URL), OperationalError (unreachable), ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CloudcoverError(f"cannot reach storage {shown} (--storage): {first}") from None


def _with_installed_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 (what the project installs) if needed."""
    import importlib.util

    m = re.match(r"^(postgresql|postgres)://", url)
    if m and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[m.end():]
    return url


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if there is no live such process.

    A zombie counts as dead: a killed worker whose parent died too may wait long for a reaper.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = stat.rsplit(")", 1)[1].split()
    return None if fields_[0] in ("Z", "X") else fields_[19]


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: recorded on the trial so a later run can tell whether its worker is still alive."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid)}


def _alive(identity: dict[str, Any]) -> bool:
    if identity.get("host") != socket.gethostname():
        return True  # another machine: leave it to the heartbeat (RDB) or to the user
    start = _start_time(int(identity.get("pid", -1)))
    return start is not None and start == identity.get("start")


def recover_dead_trials(study: Any) -> list[int]:
    """Fail RUNNING trials whose local worker is gone and re-enqueue them to resume; returns their numbers."""
    from optuna.trial import TrialState

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        identity = trial.user_attrs.get("worker")
        if not identity or _alive(identity):
            continue
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, "stale", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        attrs = {"resumed_from": trial.number}
        if "run_dir" in trial.user_attrs:
            attrs["resume_run_dir"] = trial.user_attrs["run_dir"]
        study.enqueue_trial(trial.params, user_attrs=attrs)
        recovered.append(trial.number)
    return recovered


def counted_trials(study: Any) -> int:
    """Trials that use up the budget: finished, pruned, running, and failures that are not recovered."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            n += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get("stale"):
            n += 1
    return n
