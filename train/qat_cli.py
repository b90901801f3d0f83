"""`cloudcover qat`: quantization-aware fine-tuning of a trained classifier into a new run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloudcover.train.clihelp import HelpFormatter


def register(subparsers) -> None:
    from cloudcover.train.qat import QATConfig

    d = QATConfig(run=Path("."), out=Path("."))
    p = subparsers.add_parser(
        "qat", help="quantization-aware fine-tuning: make the float model and its int8 export agree",
        formatter_class=HelpFormatter,
        description="Fine-tune RUN_DIR's classifier for a few epochs against a twin of itself that rounds, as "
        "int8 kernels do, every tensor a convolution, dense layer, pooling or addition reads (8-bit, ranges "
        "from calibration images). The loss keeps both accurate and their logits close, so near-tied images "
        "keep their class after `cloudcover export`. Batch norm stays in inference mode. OUT_DIR is a copy of "
        "RUN_DIR with the fine-tuned model.keras and qat.json (written in a temp folder and renamed); use it "
        "wherever a training run is expected (export, evaluate, predict).",
        epilog="Example: cloudcover qat --run demo/run_float --out demo/run --epochs 4",
    )
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="folder written by 'cloudcover train'")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR",
                   help="fine-tuned run folder to write (replaced only if an earlier output of this command)")
    p.add_argument("--data", type=Path, default=None, metavar="DATASET_DIR",
                   help="dataset to fine-tune on (default: the one recorded in the run)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="fine-tuning epochs (0: none; OUT is the run as it is, with qat.json's float vs fake-quant "
                   "agreement: how a pipeline that always runs qat skips it)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (small: the model is trained)")
    p.add_argument("--consistency", type=float, default=d.consistency,
                   help="weight of the mean squared difference between float and fake-quant logits")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=d.distill,
                   help="the fake-quant logits learn the float model's own prediction (its softmax) instead of "
                   "the label: agreement with the float model is what int8 export needs")
    p.add_argument("--margin", type=float, default=d.margin,
                   help="hinge margin (logit units) by which the fake-quant logits must keep the float model's "
                   "class; acts only on near ties (0: off)")
    p.add_argument("--quantize-output", action=argparse.BooleanOptionalAction, default=d.quantize_output,
                   help="round the twin's logits to 8 bits too, as the int8 output tensor is")
    p.add_argument("--track-ranges", action=argparse.BooleanOptionalAction, default=d.track_ranges,
                   help="re-observe the fake-quant ranges at each epoch, as the weights move them")
    p.add_argument("--quantize-weights", action=argparse.BooleanOptionalAction, default=d.quantize_weights,
                   help="round kernels to int8 per output channel in the twin, as the converters store them")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=d.noise,
                   help="train the twin against rounding-sized uniform noise drawn afresh each step instead of "
                   "the fixed rounding of each training image, which the network can learn by heart")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    p.add_argument("--calib-samples", type=int, default=d.calib_samples,
                   help="train images whose float min/max set the fake-quant ranges")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the shuffling and calibration draw")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_qat)


def run_qat(args: argparse.Namespace) -> int:
    from cloudcover.train.qat import QATConfig, finetune

    cfg = QATConfig(run=args.run, out=args.out, data=args.data, epochs=args.epochs, lr=args.lr,
                    consistency=args.consistency, batch_size=args.batch_size, calib_samples=args.calib_samples,
                    seed=args.seed, distill=args.distill, margin=args.margin,
                    quantize_output=args.quantize_output, track_ranges=args.track_ranges,
                    quantize_weights=args.quantize_weights, noise=args.noise)
    r = finetune(cfg, progress=not args.quiet).report
    print(f"qat: val accuracy {r['val_accuracy_before'] * 100:.2f} % -> {r['val_accuracy_after'] * 100:.2f} %, "
          f"float = fake-quant top-1 on {r['val_agreement_float_vs_fake_quant'] * 100:.2f} % of val images "
          f"({r['seconds']:.0f} s) -> {args.out}")
    return 0
