"""`cloudcover <verb>`: one command line over every stage.

The dispatcher lives in the last stage (riscv) because it is the only place that may import all three
stages without reversing the train -> export -> riscv data flow. Each stage owns its verbs through a
`register(subparsers)` function in its own `cli.py`; heavy imports (TensorFlow, TVM) happen inside the
verb handlers so that `cloudcover --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from cloudcover.train.errors import CloudcoverError

# Modules that each define register(subparsers); verbs appear in --help in this order.
STAGE_CLIS = (
    "cloudcover.train.data.cli",  # data synth | download | prepare
    "cloudcover.train.cli",  # train
    "cloudcover.train.qat_cli",  # qat
    "cloudcover.train.tune_cli",  # tune, evaluate, predict
    "cloudcover.riscv.device_predict",  # predict --device TARGET --model-dir DIR (adds options, no new verb)
    "cloudcover.export.cli",  # export
    "cloudcover.export.compile_cli",  # compile
    "cloudcover.riscv.build_cli",  # build (cross-build cloudcover-infer for a compiled model folder)
    "cloudcover.riscv.bench_cli",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudcover",
        description="Train cloud-coverage classifiers for Sentinel-2 / Landsat patches, quantize them to "
        "int8, compile them with Apache TVM for riscv64 and prove on qemu-riscv64 that the deployed "
        "binary is as accurate as the float model.",
        epilog="Typical chain: data synth -> data prepare -> train -> export -> compile -> "
        "build -> bench. Run 'cloudcover VERB --help' for each verb.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in STAGE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the stage: let it surface
                raise
            continue  # stage not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) would bury the one line a verb prints.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except CloudcoverError as exc:
        print(f"cloudcover {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cloudcover {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
