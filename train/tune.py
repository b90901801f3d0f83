"""`cloudcover tune`: an Optuna study over architectures and training hyperparameters.

Objective: **validation macro-F1** (scikit-learn `f1_score(average="macro")` over all coverage classes)
of the model a trial saves (training keeps the best-val-loss weights). Macro-F1 rather than accuracy
because coverage classes are imbalanced and the rare, very cloudy class is the one screening is for.
Every epoch the macro-F1 of the current weights is reported to the trial, and the pruner (median by
default, or Hyperband) stops trials that are behind.

How it runs: the calling process checks the inputs, creates (or reopens) the study, then starts
`--workers K` worker processes (`python -m cloudcover.train.tune worker ...`) that pull trials from the
shared storage until the study holds `--trials` trials, and shows a progress bar meanwhile. `--trials N`
means exactly N finished (complete, pruned or failed) trials over all workers and resumes: each trial claims
its slot by its number in the storage (study_storage.claim_slot), so no interleaving of workers over-runs. Workers die
with the caller (PR_SET_PDEATHSIG). Re-running the same command resumes: trials of killed workers are
failed and re-enqueued so their training continues from its last checkpoint.

STUDY_DIR/
    tune.json          the settings of this study (what workers read)
    study.journal      the embedded Optuna storage (unless --storage names a database)
    trials/trial_NNNN/ each trial's run folder (pruned trials' folders are removed)
    best_run/          copy of the best trial's run folder, ready for `cloudcover export`
    best.json          objective, best value and parameters, per-model bests, the untuned baseline
    plots/             optimization history, importances, slices, contour, parallel coordinates,
                       intermediate values: PNG (matplotlib) and HTML (plotly)
    logs/worker_K.log  each worker's output
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cloudcover.train.atomic import atomic_dir, write_text
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.search_space import SearchSpace, params_from_trial, to_train_config
from cloudcover.train.study_storage import (
    claim_slot,
    counted_trials,
    holds_slot,
    open_storage,
    recover_dead_trials,
    redact,
    worker_identity,
)

OBJECTIVE = ("validation macro-F1: scikit-learn f1_score(average='macro') over all classes, of the weights "
             "a trial saves (best validation loss)")
SEG_OBJECTIVE = ("validation Dice: 2TP / (2TP + FP + FN) over every valid pixel of the val split, of the weights "
                 "a trial saves (best validation Dice); segmentation datasets (task in dataset.json)")


def objective_for(data: str) -> str:
    """The objective text for the dataset's task (classification: macro-F1; segmentation: Dice)."""
    from cloudcover.train.preprocess import read_dataset

    return SEG_OBJECTIVE if read_dataset(data).task == "segmentation" else OBJECTIVE
CONFIG_FILE = "tune.json"
PRUNERS = ("median", "hyperband", "none", "threshold:X")


@dataclass
class TuneConfig:
    """Everything a worker needs; written to STUDY_DIR/tune.json so that workers read the same settings."""

    data: str
    out: str
    models: list[str]
    trials: int
    epochs_per_trial: int = 3
    storage: str | None = None  # None: the journal file in `out`
    study: str = "cloudcover"
    workers: int = 1
    timeout: float | None = None  # seconds; no new trial starts after it
    pruner: str = "median"
    seed: int = 0
    space_file: str | None = None
    baseline: bool = True  # enqueue `cloudcover train`'s untuned defaults as the first trial
    threads_per_worker: int | None = None  # None: cores // workers
    space: dict[str, Any] = field(default_factory=dict)  # filled by prepare()
    image_size: int = 0  # filled by prepare()
    deadline: float | None = None  # wall-clock time.time() after which no trial starts

    def save(self) -> Path:
        path = Path(self.out) / CONFIG_FILE
        write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TuneConfig":
        raw = json.loads(Path(path).read_text())
        return cls(**{k: v for k, v in raw.items() if k in {f.name for f in fields(cls)}})


@dataclass
class TuneResult:
    study_dir: Path
    best: dict[str, Any]  # the content of best.json
    wall_s: float


# ----------------------------------------------------------------------------------------------------
# Study set-up (shared by the caller and the workers)


def make_pruner(spec: str, epochs: int) -> Any:
    """median | hyperband | none | threshold:X (prune any trial whose macro-F1 falls below X)."""
    import optuna

    name, _, arg = spec.partition(":")
    if name == "median":
        # Two finished trials before judging; judge from the first epoch on (trials are short).
        return optuna.pruners.MedianPruner(n_startup_trials=int(arg or 2), n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "threshold" and arg:
        try:
            return optuna.pruners.ThresholdPruner(lower=float(arg))
        except ValueError:
            pass
    raise CloudcoverError(f"unknown pruner {spec!r} (--pruner); choose one of {', '.join(PRUNERS)}")


def make_sampler(seed: int, worker: int, existing: int = 0) -> Any:
    """TPE with a constant liar, so parallel workers do not all sample the same point; one seed per worker
    and per number of trials already in the study (a resumed study must not repeat its first samples)."""
    import optuna

    return optuna.samplers.TPESampler(seed=(seed * 1009 + worker) * 100003 + existing, constant_liar=True)


def open_study(config: TuneConfig, worker: int = 0) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING if worker < 0 else optuna.logging.INFO)
    storage = open_storage(config.storage, config.out)
    try:  # seed by the trials already there, so a resumed study does not replay its first suggestions
        existing = len(optuna.load_study(study_name=config.study, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        existing = 0
    try:
        return optuna.create_study(storage=storage, study_name=config.study, direction="maximize",
                                   sampler=make_sampler(config.seed, max(worker, 0), existing),
                                   pruner=make_pruner(config.pruner, config.epochs_per_trial), load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study with another direction
        raise CloudcoverError(f"cannot open study {config.study!r}: {exc}") from None


def dataset_image_size(data: str | Path) -> tuple[int, list[str]]:
    """Side length of the prepared patches (first image of the manifest) and the class names."""
    from cloudcover.train.preprocess import _read_pixels, read_dataset

    info = read_dataset(data)
    if not info.split_rows("train") or not info.split_rows("val"):
        raise CloudcoverError(f"{info.root / 'manifest.csv'} needs train and val rows to tune on (--data)")
    size = info.meta.get("size") or info.meta.get("patch_size")
    if not size:
        first = info.root / info.rows[0]["image"]
        try:
            size = _read_pixels(first).shape[0]
        except Exception as exc:
            raise CloudcoverError(f"cannot read {first}: {exc}") from None
    return int(size), info.classes


def default_params(space: SearchSpace) -> dict[str, Any] | None:
    """`cloudcover train`'s untuned defaults as trial params, or None when they lie outside `space`."""
    from cloudcover.train.models import model_config
    from cloudcover.train.training import Augment, TrainConfig

    d = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    aug = Augment()
    model = d["model"]
    if model not in space.models:
        return None
    p: dict[str, Any] = {"model": model, "optimizer": d["optimizer"], "lr": d["lr"], "batch_size": d["batch_size"],
                         "dropout": d["dropout"], "label_smoothing": d["label_smoothing"],
                         "width_shift": aug.width_shift, "height_shift": aug.height_shift, "hflip": aug.hflip,
                         "vflip": aug.vflip, "rotation": aug.rotation, "zoom": aug.zoom,
                         "brightness": aug.brightness}
    if d["optimizer"] == "sgd":
        p["momentum"] = d["momentum"]
    if model_config(model).uses_alpha:
        # The default side (96) may exceed small patches: take the nearest side the space offers.
        size = min(space.input_sizes, key=lambda s: (abs(s - d["input_size"]), -s))
        p[f"{model}.alpha"] = d["alpha"]
        p[f"{model}.input_size"] = size
    ok = (d["optimizer"] in space.optimizers and d["batch_size"] in space.batch_size
          and aug.hflip in space.hflip and aug.vflip in space.vflip
          and all(getattr(space, k)[0] <= p[k] <= getattr(space, k)[1]
                  for k in ("lr", "dropout", "label_smoothing", "width_shift", "height_shift", "rotation", "zoom",
                            "brightness")))
    if model_config(model).uses_alpha:
        ok = ok and d["alpha"] in space.widths[model]
    return p if ok else None


def prepare(config: TuneConfig) -> tuple[TuneConfig, Any]:
    """Check inputs, build the search space, create or reopen the study. Returns (config, study)."""
    if config.trials < 1:
        raise CloudcoverError(f"--trials must be at least 1, got {config.trials}")
    if config.epochs_per_trial < 1:
        raise CloudcoverError(f"--epochs-per-trial must be at least 1, got {config.epochs_per_trial}")
    if config.workers < 1:
        raise CloudcoverError(f"--workers must be at least 1, got {config.workers}")
    make_pruner(config.pruner, config.epochs_per_trial)
    image_size, _ = dataset_image_size(config.data)
    if config.space_file:
        space = SearchSpace.from_file(config.space_file, config.models, image_size)
    else:
        space = SearchSpace.build(config.models, image_size)
    config.space = space.to_dict()
    config.image_size = image_size
    config.data = str(Path(config.data).resolve())
    config.out = str(Path(config.out).resolve())
    Path(config.out).mkdir(parents=True, exist_ok=True)
    study = open_study(config, worker=-1)
    stored = study.user_attrs.get("search_space")
    if stored is not None and stored != json.loads(json.dumps(config.space)):
        raise CloudcoverError(f"study {config.study!r} in {redact(config.storage or config.out)} was created "
                              "with another search space (--models/--space); use a new --study or --out")
    if stored is None:
        study.set_user_attr("search_space", config.space)
        study.set_user_attr("objective", objective_for(config.data))
        study.set_user_attr("epochs_per_trial", config.epochs_per_trial)
        study.set_user_attr("data", config.data)
        if config.baseline and not study.get_trials(deepcopy=False):
            params = default_params(space)
            if params is not None:
                study.enqueue_trial(params, user_attrs={"baseline": True})
    recovered = recover_dead_trials(study)
    if recovered:
        print(f"resuming: trial(s) {', '.join(map(str, recovered))} of a stopped worker will continue")
    if config.timeout:
        config.deadline = time.time() + float(config.timeout)
    config.save()
    return config, study


# ----------------------------------------------------------------------------------------------------
# The worker: objective(trial) in the optuna example style


class _ValCache:
    """Validation images per input size, decoded once per worker (every trial scores on them)."""

    def __init__(self, data: str):
        self.data = data
        self._cache: dict[int, tuple[Any, Any]] = {}

    def get(self, input_size: int, model: str) -> tuple[Any, Any]:
        if input_size not in self._cache:
            from cloudcover.train.preprocess import Preprocess, detect_bands, load_split, read_dataset

            info = read_dataset(self.data)
            bands = detect_bands(info)
            pre = Preprocess(input_size=input_size, bands=bands, mean=[0.0] * bands, std=[1.0] * bands,
                             class_names=info.classes, bins=info.bins, model=model)
            x, y, _ = load_split(self.data, "val", pre)
            self._cache[input_size] = (x, y)
        return self._cache[input_size]


def macro_f1_pruning_callback(trial: Any, x_val: Any, y_val: Any, n_classes: int, batch_size: int) -> Any:
    """A Keras callback: after each epoch, validation macro-F1 -> trial.report -> prune if behind."""
    import keras
    import optuna

    from cloudcover.train.metrics import macro_f1

    class MacroF1Pruning(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.scores: dict[int, float] = {}

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logits = self.model.predict(x_val, batch_size=batch_size, verbose=0)
            score = macro_f1(y_val, logits.argmax(axis=1), n_classes)
            if logs is not None:
                logs["val_macro_f1"] = score
            self.scores[epoch + 1] = score
            trial.report(score, step=epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: validation macro-F1 {score:.3f}")

    return MacroF1Pruning()


def dice_pruning_callback(trial: Any) -> Any:
    """Segmentation: training already logs the pooled validation Dice (val_dice) each epoch; report it, prune."""
    import keras
    import optuna

    class DicePruning(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.scores: dict[int, float] = {}

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            score = float((logs or {})["val_dice"])
            self.scores[epoch + 1] = score
            trial.report(score, step=epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: validation Dice {score:.3f}")

    return DicePruning()


def saved_model_macro_f1(val_metrics: dict) -> float:
    """Macro-F1 of the saved weights, from the val confusion matrix training wrote (scikit-learn on its pairs)."""
    import numpy as np

    from cloudcover.train.metrics import macro_f1

    cm = np.asarray(val_metrics["confusion"], dtype=int)
    y_true = np.repeat(np.repeat(np.arange(len(cm)), cm.shape[1]), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(len(cm)), len(cm)), cm.ravel())
    return macro_f1(y_true, y_pred, len(cm))


def make_objective(config: TuneConfig):
    """The study objective over `config`'s search space (closure so the worker decodes val images once)."""
    import keras
    import optuna

    from cloudcover.train.preprocess import read_dataset
    from cloudcover.train.training import train

    space = SearchSpace(**config.space)
    info = read_dataset(config.data)
    n_classes = len(info.classes)
    segment = info.task == "segmentation"  # objective: val Dice, which training logs itself
    val = _ValCache(config.data)
    trials_dir = Path(config.out) / "trials"

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        params = space.suggest(trial, config.image_size)  # every hyperparameter is named in suggest()
        resumed = trial.user_attrs.get("resumed_from")
        number = trial.number if resumed is None else int(resumed)
        run_dir = Path(trial.user_attrs.get("resume_run_dir") or trials_dir / f"trial_{number:04d}")
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", worker_identity())
        train_config = to_train_config(params, data=config.data, out=run_dir, epochs=config.epochs_per_trial,
                                       seed=config.seed + number)
        if segment:
            make_pruning = lambda: dice_pruning_callback(trial)  # noqa: E731
        else:
            x_val, y_val = val.get(int(params["input_size"]), params["model"])
            make_pruning = lambda: macro_f1_pruning_callback(trial, x_val, y_val, n_classes,  # noqa: E731
                                                             int(params["batch_size"]))
        per_epoch = "val_dice_per_epoch" if segment else "val_macro_f1_per_epoch"
        pruning = make_pruning()
        t0 = time.perf_counter()
        try:
            try:
                result = train(train_config, extra_callbacks=[pruning], verbose=0, resume=True)
            except (CloudcoverError, OSError, ValueError) as exc:
                # A resumed trial whose checkpoint cannot be used (other settings, or a file cut short by
                # the kill) starts over in the same folder; anything else is a real failure.
                if resumed is None or (isinstance(exc, CloudcoverError) and "different settings" not in str(exc)):
                    raise
                print(f"trial {trial.number}: checkpoint of trial {resumed} unusable ({exc}); training from scratch")
                trial.set_user_attr("resumed_checkpoint", False)
                keras.backend.clear_session()
                pruning = make_pruning()
                result = train(train_config, extra_callbacks=[pruning], verbose=0, resume=False)
        except CloudcoverError as exc:
            objective.fatal = f"trial {trial.number}: {exc}"
            trial.set_user_attr("error", str(exc))
            raise
        except optuna.TrialPruned:
            trial.set_user_attr(per_epoch, pruning.scores)
            shutil.rmtree(run_dir, ignore_errors=True)  # a pruned trial is never resumed nor exported
            raise
        value = float(result.val_metrics["dice"]) if segment else saved_model_macro_f1(result.val_metrics)
        trial.set_user_attr(per_epoch, pruning.scores)
        trial.set_user_attr("val_accuracy", result.val_metrics["accuracy"])
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("images_per_s", result.images_per_s)
        trial.set_user_attr("train_s", time.perf_counter() - t0)
        return value

    objective.fatal = None  # set to a message when the inputs fail for every trial
    return objective


def _limit_threads(n: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    except RuntimeError:  # already initialized
        pass


class BudgetSpent(Exception):
    """A worker's freshly claimed trial is beyond --trials: it is failed unrun, marked over_budget."""


def run_one_trial(study: Any, objective: Any, budget: int) -> bool:
    """Claim a slot of `budget` and run `objective` in it; False when the budget was spent (nothing ran).

    The claim happens inside the trial Optuna created (or popped from the queue), so it is decided by the
    trial's place in the storage's creation order, not by timing (see study_storage.claim_slot).
    """
    ran = []

    def budgeted(trial: Any) -> float:
        if not claim_slot(trial, budget):
            raise BudgetSpent(f"trial {trial.number} not run: the study's {budget} trial(s) (--trials) are "
                              "taken by trials numbered below it; recorded as failed, over_budget, not counted")
        ran.append(trial.number)
        return objective(trial)

    study.optimize(budgeted, n_trials=1, catch=(Exception,))
    return bool(ran)


def run_trials(study: Any, objective: Any, budget: int, deadline: float | None = None) -> int:
    """Run trials until the study holds `budget` counted trials or `deadline` passed; returns trials run here.

    One broken trial (e.g. out of memory) fails alone and the worker goes on; if the objective sets
    `objective.fatal` (the inputs are wrong for every trial), the worker stops with that error.
    """
    done = 0
    while counted_trials(study) < budget:  # cheap "anything left?"; the binding check is the claim
        if deadline is not None and time.time() >= deadline:
            break
        if not run_one_trial(study, objective, budget):
            break
        done += 1
        if getattr(objective, "fatal", None):
            raise CloudcoverError(objective.fatal)
    return done


def run_worker(config: TuneConfig, index: int) -> int:
    """One worker process: run trials of the study until `config.trials` are taken or the deadline passed."""
    threads = config.threads_per_worker or max(1, (os.cpu_count() or 1) // config.workers)
    _limit_threads(threads)
    study = open_study(config, worker=index)
    return run_trials(study, make_objective(config), config.trials, config.deadline)


# ----------------------------------------------------------------------------------------------------
# The caller: start workers, watch, then collect the winner


def _die_with_parent() -> None:
    """preexec_fn: the worker gets SIGKILL when the `cloudcover tune` process dies (Linux prctl)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_workers(config: TuneConfig) -> list[tuple[subprocess.Popen, Path]]:
    logs = Path(config.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    threads = config.threads_per_worker or max(1, (os.cpu_count() or 1) // config.workers)
    env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(min(threads, 2)),
               OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               CUDA_VISIBLE_DEVICES=env.get("CUDA_VISIBLE_DEVICES", ""), PYTHONUNBUFFERED="1")
    procs = []
    cfg_path = Path(config.out) / CONFIG_FILE
    for i in range(config.workers):
        log = logs / f"worker_{i}.log"
        with open(log, "ab") as fh:
            p = subprocess.Popen([sys.executable, "-m", "cloudcover.train.tune", "worker", str(cfg_path), str(i)],
                                 stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        procs.append((p, log))
    return procs


def _last_error(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        if "error" in ln.lower():
            return ln.strip()
    return lines[-1].strip() if lines else "no output"


def watch(config: TuneConfig, study: Any, procs: list[tuple[subprocess.Popen, Path]], progress: bool = True) -> None:
    """Progress bar over finished trials until every worker exits; a worker's failure becomes an error."""
    from optuna.trial import TrialState
    from tqdm import tqdm

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    bar = tqdm(total=config.trials, desc=f"tune {config.study}", unit="trial", disable=not progress)
    try:
        while True:
            alive = [p for p, _ in procs if p.poll() is None]
            trials = study.get_trials(deepcopy=False)
            n = sum(1 for t in trials if t.state in finished and holds_slot(t))
            bar.n = min(n, config.trials)
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            if done:
                best = max(done, key=lambda t: t.value)
                bar.set_postfix(best=f"{best.value:.3f}", model=best.params.get("model"),
                                running=sum(t.state == TrialState.RUNNING for t in trials))
            bar.refresh()
            if not alive:
                break
            time.sleep(1.0)
    except BaseException:
        for p, _ in procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in procs:
            p.wait()
        raise
    finally:
        bar.close()
    failed = [(i, p.returncode, log) for i, (p, log) in enumerate(procs) if p.returncode != 0]
    if failed:
        i, rc, log = failed[0]
        raise CloudcoverError(f"worker {i} exited with status {rc}: {_last_error(log)} (see {log})")


def summarize(config: TuneConfig, study: Any, wall_s: float) -> dict[str, Any]:
    """best.json: the winner, its run folder copied to STUDY_DIR/best_run, per-model bests and the baseline."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        fails = [t for t in trials if t.state == TrialState.FAIL and holds_slot(t)]
        why = f"; {len(fails)} failed (see {Path(config.out) / 'logs'})" if fails else ""
        raise CloudcoverError(f"no trial of study {config.study!r} completed ({len(trials)} trial(s){why}); "
                              "raise --trials or --epochs-per-trial, or use a gentler --pruner")
    best = max(complete, key=lambda t: t.value)
    source = Path(best.user_attrs["run_dir"])
    best_run = Path(config.out) / "best_run"
    if source.is_dir():
        with atomic_dir(best_run, "preprocess.json", "a run folder") as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    per_model: dict[str, dict] = {}
    for t in complete:
        m = t.params.get("model")
        if m not in per_model or t.value > per_model[m]["value"]:
            per_model[m] = {"trial": t.number, "value": t.value, "val_accuracy": t.user_attrs.get("val_accuracy"),
                            "run_dir": t.user_attrs.get("run_dir")}
    baseline_trials = [t for t in trials if t.user_attrs.get("baseline")]
    baseline = None
    if baseline_trials:
        b = baseline_trials[0]
        baseline = {"trial": b.number, "state": b.state.name, "value": b.value,
                    "val_accuracy": b.user_attrs.get("val_accuracy"), "params": b.params,
                    "best_at_least_as_good": (b.value is None) or best.value >= b.value}
    # The budget's trials by state; recovered (stale) and over-budget trials are failed too but hold no slot.
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s and holds_slot(t)) for s in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)}
    counts["not_counted"] = sum(1 for t in trials if not holds_slot(t))
    return {
        "objective": objective_for(config.data),
        "direction": "maximize",
        "study": config.study,
        "storage": redact(config.storage) if config.storage else str(Path(config.out) / "study.journal"),
        "best_trial": best.number,
        "best_value": best.value,
        "best_val_accuracy": best.user_attrs.get("val_accuracy"),
        "params": best.params,
        "train_params": params_from_trial(best.params, config.image_size),
        "run_dir": str(best_run) if source.is_dir() else None,
        "source_run_dir": str(source),
        "per_model": per_model,
        "baseline": baseline,
        "trials": counts,
        "epochs_per_trial": config.epochs_per_trial,
        "workers": config.workers,
        "pruner": config.pruner,
        "wall_s": wall_s,
        "search_space": config.space,
    }


def tune(config: TuneConfig, progress: bool = True, plots: bool = True) -> TuneResult:
    """Run (or resume) the study described by `config`; write best_run/, best.json and plots/."""
    from cloudcover.train.plots import write_study_plots

    t0 = time.perf_counter()
    config, study = prepare(config)
    procs = start_workers(config)
    watch(config, study, procs, progress=progress)
    wall_s = time.perf_counter() - t0
    best = summarize(config, study, wall_s)
    if plots:
        best["plots"] = write_study_plots(study, Path(config.out) / "plots")
    write_text(Path(config.out) / "best.json", json.dumps(best, indent=2, default=str) + "\n")
    return TuneResult(Path(config.out), best, wall_s)


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "worker":
        print("usage: python -m cloudcover.train.tune worker TUNE_JSON INDEX", file=sys.stderr)
        return 2
    config = TuneConfig.load(argv[1])
    try:
        n = run_worker(config, int(argv[2]))
    except CloudcoverError as exc:
        print(f"cloudcover tune worker {argv[2]}: error: {exc}", file=sys.stderr)
        return 1
    print(f"worker {argv[2]}: ran {n} trial(s)")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
