"""`cloudcover train`: train a classifier or a segmenter (the dataset's task decides) into a run folder."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from cloudcover.train.clihelp import HelpFormatter
from cloudcover.train.errors import CloudcoverError

AUGMENT_HELP = ("comma-separated augmentations: hflip, vflip, rotation=DEG, width_shift=FRAC, height_shift=FRAC, "
                "shift=FRAC (both), zoom=FRAC, brightness=FRAC, and photometric randomization for synthetic "
                "training data: contrast=FRAC, gamma=G, color=G, blur=W, noise=FRAC (see train/augment.py); "
                "'none' for no augmentation")




def parse_augment(spec: str):
    """'hflip,vflip,rotation=15,zoom=0.1' -> Augment (flags not named are off)."""
    from cloudcover.train.training import Augment

    aug = Augment(hflip=False, vflip=False)
    if spec.strip().lower() in ("", "none"):
        return aug
    names = {f.name for f in fields(Augment)}
    for item in spec.split(","):
        key, _, value = item.strip().partition("=")
        key = key.strip().replace("-", "_")
        if key in ("hflip", "vflip"):
            setattr(aug, key, value.strip().lower() not in ("0", "false", "no", "off") if value else True)
            continue
        if key not in names and key != "shift":
            raise CloudcoverError(f"unknown augmentation {key!r} in --augment; {AUGMENT_HELP}")
        try:
            number = float(value)
        except ValueError:
            raise CloudcoverError(f"--augment {key} needs a number, e.g. {key}=0.1; got {item.strip()!r}") from None
        if number < 0:
            raise CloudcoverError(f"--augment {key} must be >= 0, got {number}")
        for k in (("width_shift", "height_shift") if key == "shift" else (key,)):
            setattr(aug, k, number)
    return aug


def register(subparsers) -> None:
    from cloudcover.train.models import list_models
    from cloudcover.train.training import OPTIMIZERS, TrainConfig

    d = TrainConfig(data=Path("."), out=Path("."))
    p = subparsers.add_parser(
        "train", help="train a cloud-coverage classifier or a cloud segmenter on a prepared dataset",
        formatter_class=HelpFormatter,
        description="Train a model from scratch (or from --weights) on DATASET_DIR (written by "
        "'cloudcover data prepare'). The dataset's task (dataset.json) decides what is trained: a coverage "
        "classifier (softmax cross-entropy, best epoch by val_loss) or, for 'prepare --task segmentation', a "
        "cloud segmenter (binary cross-entropy over valid pixels, best epoch by validation Dice). "
        "Normalization with the train-split mean/std is the model's first layer, so the saved model takes raw "
        "pixels. An interrupted run resumes from its last finished epoch when started again with the same "
        "--out and settings.",
        epilog=f"Classifiers: {', '.join(list_models('classification'))}. Segmenters: "
        f"{', '.join(list_models('segmentation'))}. RUN_DIR gets model.keras, preprocess.json, history.json, "
        "history.png, val_metrics.json and train.json (and lr_find.png/json with --lr-find). Examples: "
        "cloudcover train --data demo/dataset --model mobilenet --input-size 96 --alpha 0.35 --out demo/run; "
        "cloudcover train --data demo/seg_dataset --model unet_resnet18 --alpha 0.25 --input-size 96 "
        "--lr-find --schedule onecycle --out demo/seg_run",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DATASET_DIR", help="prepared dataset folder")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--model", default=d.model, choices=list_models(), help="architecture")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="input side in pixels (default: the model's own, 96 for the edge models, 75 minimum for "
                   "inception_v3)")
    p.add_argument("--alpha", type=float, default=None, help="width multiplier (default: 0.35 for mobilenet, "
                   "mobilenet_v3_small, edge_cnn, where edge_cnn treats < 0.5 as 1; 1.0 for resnet18/34 and the "
                   "UNets, whose edge-sized variant is 0.25)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per training step")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="optimizer (sgd uses --momentum)")
    p.add_argument("--lr", type=float, default=d.lr, help="initial learning rate (cosine decay to 1/20 of it over "
                   "--epochs; the peak rate with --schedule onecycle)")
    p.add_argument("--schedule", default=d.schedule, choices=("cosine", "onecycle"),
                   help="learning-rate schedule: cosine per epoch, or one-cycle per step (warm-up over 30 %% of "
                   "the steps from lr/25 to lr, then cosine down to lr/1e4)")
    p.add_argument("--lr-find", action="store_true", help="first run a learning-rate range test (RUN_DIR/"
                   "lr_find.png, lr_find.json) and train at its suggested rate instead of --lr")
    p.add_argument("--loss", default=d.loss, choices=("bce", "bce_dice"),
                   help="segmenters: binary cross-entropy, or BCE + soft Dice (nodata pixels excluded)")
    p.add_argument("--finetune-size", type=int, default=None, metavar="PX",
                   help="progressive resizing: after training, continue from the best weights at this larger "
                   "input size (a tenth of the rate) and keep that model")
    p.add_argument("--finetune-epochs", type=int, default=None, metavar="N",
                   help="epochs at --finetune-size (default: a third of --epochs, at least 1)")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout before the classifier")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing of the cross-entropy")
    p.add_argument("--cover-weight", type=float, default=d.cover_weight, metavar="W",
                   help="coverage-head models (edge_cover): weight of the per-cell cloud-fraction loss, read from "
                   "the masks the dataset was prepared from, beside the class cross-entropy")
    p.add_argument("--augment", default="hflip,vflip", metavar="SPEC", help=AUGMENT_HELP)
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs (on val_loss, "
                   "or validation Dice for segmenters; counted after the first 8 epochs)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initialization, shuffling and augmentation")
    p.add_argument("--weights", type=Path, default=None, metavar="PATH",
                   help="local backbone weights file (.weights.h5) to start from; none are downloaded")
    p.add_argument("--no-resume", action="store_true", help="discard an interrupted run's checkpoint in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from cloudcover.train.models import model_config
    from cloudcover.train.training import TrainConfig, train

    from cloudcover.train.task import get_task

    mcfg = model_config(args.model)
    cfg = TrainConfig(
        data=args.data, out=args.out, model=args.model,
        input_size=args.input_size or mcfg.default_size,
        alpha=args.alpha if args.alpha is not None else mcfg.default_alpha, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        dropout=args.dropout, label_smoothing=args.label_smoothing, augment=parse_augment(args.augment),
        patience=args.patience, seed=args.seed, weights=args.weights, loss=args.loss, schedule=args.schedule,
        lr_find=args.lr_find, finetune_size=args.finetune_size, finetune_epochs=args.finetune_epochs,
        cover_weight=args.cover_weight,
    )
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    result = train(cfg, verbose=verbose, resume=not args.no_resume)
    m = result.val_metrics
    size = cfg.finetune_size or cfg.input_size
    print(f"trained {cfg.model} ({size} px): {get_task(mcfg.task).headline(m)} at epoch "
          f"{result.best_epoch + 1} of {len(result.history.get('loss', []))}, "
          f"{result.images_per_s:.0f} training images/s -> {result.run_dir}")
    return 0
