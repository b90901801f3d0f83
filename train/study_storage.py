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

How `--trials N` stays exactly N across workers and resumes: see `claim_slot` below.
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
    elif url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}  # wait for the write lock rather than fail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat is "experimental"
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                 grace_period=GRACE_S)
        if url.startswith("sqlite"):
            _serialize_sqlite(storage.engine)
        return storage
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "?"
        raise CloudcoverError(f"storage {shown} needs the missing database driver {missing!r} "
                              "(--storage)") from None
    except Exception as exc:  # sqlalchemy: ArgumentError (bad URL), OperationalError (unreachable), ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CloudcoverError(f"cannot reach storage {shown} (--storage): {first}") from None


def _serialize_sqlite(engine: Any) -> None:
    """Make each SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna claims an enqueued trial by reading it WAITING and writing RUNNING in one transaction, with
    SELECT ... FOR UPDATE, which SQLite ignores; and Python's sqlite3 only opens the transaction at the write.
    So two workers could both read WAITING and both run the same trial (the second then crashes on
    "Cannot tell a COMPLETE trial"). Serialized transactions make that read-then-write atomic, as the
    row lock does on PostgreSQL. (SQLAlchemy's documented recipe for pysqlite transactions.)
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below open transactions

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections pooled while Optuna set up the schema predate the hooks


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


# ----------------------------------------------------------------------------------------------------
# The --trials budget: exactly N finished trials, whatever the number of workers and their interleaving
#
# "Is there room for one more trial?" followed by "start a trial" races: two workers both see N-1 trials and
# both start one. So a worker first creates (or pops) its trial, which gives it a number in the storage's
# one creation order (Optuna assigns numbers under a lock: the study row FOR UPDATE in a database, the
# append order of the journal), and only then asks how many trials *before its own* hold a slot. If N or
# more do, it marks its own trial `over_budget` (failed, never counted) and stops without running it.
# Whatever the interleaving, the k-th trial by number that runs saw at least k slot holders before it, so
# at most N run; and a worker only stops when N slots are held, so no fewer than N finish (unless a
# deadline or a killed worker intervenes: killed workers' trials are `stale`, re-enqueued on resume).

NOT_COUNTED = ("stale", "over_budget")  # user attrs of FAIL trials that hold no slot of the budget


def holds_slot(trial: Any) -> bool:
    """Whether a trial takes one of the --trials slots: anything but a recovered or over-budget trial.

    WAITING (enqueued) trials hold a slot too: a worker will run them, and they were numbered before any
    trial created after them.
    """
    return not any(trial.user_attrs.get(k) for k in NOT_COUNTED)


def counted_trials(study: Any) -> int:
    """Trials that use up the budget now: finished (complete, pruned, failed) or running, not WAITING ones.

    The workers' cheap "anything left to do?" check; the binding check is `claim_slot`.
    """
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and holds_slot(t))


def slots_before(study: Any, number: int) -> int:
    """How many trials numbered below `number` hold a slot (read fresh from the storage)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and holds_slot(t))


def claim_slot(trial: Any, budget: int) -> bool:
    """Call first thing in a trial that the storage already holds (RUNNING): True if it is within `budget`.

    Otherwise it is marked `over_budget` (the caller fails it without running it) and False comes back.
    """
    if slots_before(trial.study, trial.number) < budget:
        return True
    trial.set_user_attr("over_budget", True)
    return False
