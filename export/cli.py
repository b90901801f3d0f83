"""`cloudcover export`: int8 TFLite + ONNX fp32/int8 from a training run, with a host parity table."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloudcover.export.calibration import DEFAULT_CALIBRATION, Calibration
from cloudcover.train.clihelp import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained run to int8 TFLite and ONNX, check parity with the float model",
        formatter_class=HelpFormatter,
        description="Convert RUN_DIR/model.keras to a full-integer TFLite model (int8 in/out, calibrated on "
        "train-split images), an fp32 ONNX model (tf2onnx, opset 17) and a QDQ int8 ONNX model (onnxruntime), "
        "run all of them on the test split and print accuracy, top-1 agreement with the float model and score "
        "differences. ART_DIR is built in a temp folder and renamed, so an interrupted export leaves nothing.",
        epilog="ART_DIR gets model_int8.tflite, model_fp32.onnx, model_int8.onnx, parity.json, parity.md, "
        "model.keras, preprocess.json, testset.npz and quant.json (for the RISC-V stage). Example: "
        "cloudcover export --run demo/run --out demo/artifacts",
    )
    p.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="folder written by 'cloudcover train'")
    p.add_argument("--out", type=Path, required=True, metavar="ART_DIR", help="artifact folder to write (replaced)")
    p.add_argument("--calib-samples", type=int, default=200, metavar="N",
                   help="train-split images used to calibrate int8 activations")
    p.add_argument("--data", type=Path, default=None, metavar="DATASET_DIR",
                   help="dataset for calibration and the test split (default: the one recorded in the run)")
    p.add_argument("--calibration", default=str(DEFAULT_CALIBRATION), metavar="METHOD",
                   help="how int8 activation ranges are chosen: minmax (the converters' default), percentile[:P] "
                   "(clip to the P-th percentile, default 99.99) or mse (the clip with the least quantization "
                   "error; onnxruntime's entropy calibrator for ONNX). The model's input and output keep min/max. Suffixes "
                   "rewrite the model the int8 files come from: +affine turns the input Normalization into a "
                   "per-channel conv (no per-tensor rounding of the band means), +bc subtracts each conv block's "
                   "measured mean int8 error from its bias (e.g. minmax+affine+bc, what the demo uses)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from cloudcover.export.export import export_run

    result = export_run(args.run, args.out, calib_samples=args.calib_samples, data_dir=args.data,
                        calibration=Calibration.parse(args.calibration))
    print(result.table, end="")
    print(f"artifacts -> {result.out}")
    return 0
