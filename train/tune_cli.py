"""`cloudcover tune | evaluate | predict`: search hyperparameters, score a run, classify new patches.

Only argparse lives at import time; TensorFlow and Optuna are imported inside the handlers so that
`cloudcover --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloudcover.train.clihelp import HelpFormatter
from cloudcover.train.errors import CloudcoverError

DEFAULT_MODELS = "edge_cnn,mobilenet,mobilenet_v3_small"


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]




def register(sub: argparse._SubParsersAction) -> None:
    fmt = HelpFormatter

    # ---- tune --------------------------------------------------------------------------------------
    p = sub.add_parser(
        "tune", formatter_class=fmt,
        help="Optuna hyperparameter search over architectures (objective: val macro-F1, or val Dice for segmenters)",
        description="Search architectures and training hyperparameters with Optuna. Objective: validation "
        "macro-F1 (scikit-learn, all classes) of the weights each trial saves, or for a segmentation dataset "
        "(prepare --task segmentation; give --models unet_resnet18,...) the validation Dice over all valid "
        "pixels; reported every epoch so that unpromising trials are pruned. Search space: optimizer (sgd+momentum, adam, adagrad, adadelta, "
        "nadam), lr log-uniform 1e-4..1e-1, width/height shift 0..0.5, h/v flip, rotation 0..45 deg, zoom "
        "0..1, brightness 0..0.5, batch size, dropout, label smoothing, the architecture, and width "
        "(alpha) and input size for edge models; narrow it with --space. Re-running the same command "
        "resumes the study (trials of killed workers continue from their checkpoint).",
        epilog="Writes STUDY_DIR/best_run (ready for 'cloudcover export'), best.json, plots/*.png|html, "
        "trials/, logs/. Example: cloudcover tune --data demo/dataset --models edge_cnn,mobilenet "
        "--trials 8 --epochs-per-trial 3 --workers 2 --out demo/study")
    p.add_argument("--data", required=True, type=Path, help="prepared dataset folder (manifest.csv, dataset.json)")
    p.add_argument("--out", required=True, type=Path, help="STUDY_DIR for trials, best_run/, best.json, plots/")
    p.add_argument("--models", default=DEFAULT_MODELS, type=_models,
                   help="comma-separated architectures to search (e.g. mobilenet,resnet50,vgg16,inception_v3,"
                   "mobilenet_v3_small,edge_cnn)")
    p.add_argument("--trials", required=True, type=int, help="trials the study should hold in total (across "
                   "workers and resumed runs)")
    p.add_argument("--epochs-per-trial", type=int, default=3, help="training epochs of each trial")
    p.add_argument("--storage", default=None, help="Optuna storage: a database URL such as "
                   "postgresql://user@host/db (workers on many machines), or journal:PATH; default: the "
                   "journal file STUDY_DIR/study.journal (workers on this machine)")
    p.add_argument("--study", default="cloudcover", help="study name inside the storage")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--pruner", default="median", help="median[:N_STARTUP] | hyperband | none | threshold:X")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument("--space", type=Path, default=None, help="JSON file narrowing the search space, e.g. "
                   '{"optimizers": ["adam", "sgd"], "lr": [1e-3, 1e-2], "batch_size": [16]}')
    p.add_argument("--threads-per-worker", type=int, default=None, help="TensorFlow threads per worker "
                   "(default: cores / workers)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="do not enqueue 'cloudcover train' defaults as the first trial")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the study plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_tune)

    # ---- evaluate ----------------------------------------------------------------------------------
    p = sub.add_parser(
        "evaluate", formatter_class=fmt, help="metrics, ROC, confusion matrix and discard decision of a run",
        description="Score a trained run on a dataset split with the preprocessing stored in the run: "
        "accuracy, per-class precision/recall/F1/support, macro and weighted averages (scikit-learn), ROC "
        "per class with micro/macro AUC, confusion matrix (counts and row-normalized heatmap), a gallery of "
        "misclassified patches, and the on-board decision: share of images discarded at --discard-class "
        "and its false-discard rate (share of usable images thrown away).",
        epilog="Writes EVAL_DIR/metrics.json, predictions.csv, confusion_matrix.png, roc.png, misclassified.png. "
        "For a segmentation run (its task is read from preprocess.json): metrics.json with Dice, IoU, precision, "
        "recall, specificity and accuracy pooled over all valid pixels, per patch and per stitched 38-Cloud scene, "
        "the coverage class of each predicted mask against the true class, and the discard decision; "
        "per_patch.csv, gallery.png (worst first), confusion_matrix.png.")
    p.add_argument("--run", required=True, type=Path, help="training run folder (model.keras, preprocess.json)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the one the run trained on)")
    p.add_argument("--split", default="test", help="manifest split to evaluate")
    p.add_argument("--out", required=True, type=Path, help="EVAL_DIR to write")
    p.add_argument("--discard-class", default=None,
                   help="first class (name or index) an on-board screen would discard (default: the last class)")
    p.add_argument("--gallery", type=int, default=24, help="misclassified patches shown at most (segmentation "
                   "runs: the worst patches by Dice, at most 12)")
    p.add_argument("--threshold", type=float, default=None, help="segmentation runs: cloud probability threshold "
                   "(default: the run's, 0.5)")
    p.add_argument("--batch-size", type=int, default=64, help="inference batch size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_evaluate)

    # ---- predict -----------------------------------------------------------------------------------
    p = sub.add_parser(
        "predict", formatter_class=fmt, help="classify GeoTIFF/PNG/JPEG patches: class, probabilities, coverage %%",
        description="Classify image files or folders (searched recursively for .tif/.tiff/.png/.jpg/.jpeg) "
        "with a trained run. GeoTIFFs (13-band Sentinel-2 L1C, 3-band RGB reflectance, 38-Cloud band files) "
        "are rendered with the data layer's fixed scaling. Output CSV: path, class, confidence, "
        "expected_coverage_pct (sum of probability x bin centre), p_<class>. Unreadable files are reported "
        "on stderr and skipped; the others are still written, and the exit status is 1 if any failed.")
    p.add_argument("--run", required=True, type=Path, help="training run folder (model.keras, preprocess.json)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    p.add_argument("--out", type=Path, default=None, help="CSV file to write (default: standard output)")
    p.add_argument("--mask-dir", type=Path, default=None, help="segmentation runs: folder for the masks "
                   "(GeoTIFF with the input's CRS and transform, PNG for PNG/JPEG inputs; default: <out stem>_masks/)")
    p.add_argument("--threshold", type=float, default=None, help="segmentation runs: cloud probability threshold "
                   "(default: the run's, 0.5)")
    p.add_argument("--batch-size", type=int, default=32, help="inference batch size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)


def _tune(args: argparse.Namespace) -> int:
    from cloudcover.train.tune import TuneConfig, tune

    config = TuneConfig(data=str(args.data), out=str(args.out), models=args.models, trials=args.trials,
                        epochs_per_trial=args.epochs_per_trial, storage=args.storage, study=args.study,
                        workers=args.workers, timeout=args.timeout, pruner=args.pruner, seed=args.seed,
                        space_file=str(args.space) if args.space else None, baseline=args.baseline,
                        threads_per_worker=args.threads_per_worker)
    result = tune(config, progress=not args.quiet, plots=args.plots)
    best = result.best
    print(f"objective: {best['objective']}")
    print(f"trials: {', '.join(f'{k} {v}' for k, v in best['trials'].items() if v)}; wall {result.wall_s:.1f} s "
          f"with {best['workers']} worker(s)")
    score = "Dice" if best["objective"].startswith("validation Dice") else "macro-F1"
    print(f"best trial {best['best_trial']}: {score} {best['best_value']:.4f} "
          f"(val accuracy {best['best_val_accuracy']:.4f})")
    print("  params:")
    for k, v in best["params"].items():
        print(f"    {k}: {v}")
    if best.get("baseline") and best["baseline"].get("value") is not None:
        print(f"untuned baseline (trial {best['baseline']['trial']}): {score} {best['baseline']['value']:.4f}")
    print(f"best run: {best['run_dir']}  (cloudcover export --run {best['run_dir']} ...)")
    print(f"wrote {result.study_dir / 'best.json'} and {result.study_dir / 'plots'}/")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cloudcover.train.evaluate import evaluate

    m = evaluate(args.run, args.data, args.out, split=args.split, discard_class=args.discard_class,
                 gallery=args.gallery, batch_size=args.batch_size, progress=not args.quiet, threshold=args.threshold)
    if m.get("task") == "segmentation":
        from cloudcover.train.seg_evaluate import summary_lines

        print("\n".join(summary_lines(m)))
        print(f"wrote {args.out}/metrics.json, per_patch.csv and plots")
        return 0
    d = m["discard"]
    print(f"{m['split']}: {m['n_samples']} patches, accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
          f"weighted-F1 {m['weighted_avg']['f1']:.4f}, micro AUC {m['roc']['micro']['auc'] or float('nan'):.4f}, "
          f"macro AUC {m['roc']['macro']['auc'] or float('nan'):.4f}")
    fdr = "n/a" if d["false_discard_rate"] is None else f"{d['false_discard_rate']:.1%}"
    print(f"discard at {d['threshold_class']}+: {d['discard_share']:.1%} of images dropped, "
          f"false-discard rate {fdr} ({d['n_false_discards']} usable image(s) lost)")
    print(f"wrote {args.out}/metrics.json and plots")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from cloudcover.train.predict import predict, to_csv

    result = predict(args.run, args.paths, out=args.out, batch_size=args.batch_size, progress=not args.quiet,
                     mask_dir=args.mask_dir, threshold=args.threshold)
    for path, reason in result.failures:
        print(f"cloudcover predict: skipped {path}: {reason}", file=sys.stderr)
    if args.out is None:
        from cloudcover.train.preprocess import Preprocess

        sys.stdout.write(to_csv(result.rows, Preprocess.load(args.run).class_names, result.columns))
    else:
        print(f"wrote {len(result.rows)} prediction(s) to {args.out}", file=sys.stderr)
    if result.mask_dir is not None:
        print(f"wrote {len(result.rows)} mask(s) to {result.mask_dir}", file=sys.stderr)
    if result.failures:
        total = len(result.rows) + len(result.failures)
        raise CloudcoverError(f"{len(result.failures)} of {total} input(s) could not be read (listed above); "
                              f"the other {len(result.rows)} were written")
    return 0

