"""int8 fidelity over training seeds: top-1 agreement of the int8 TFLite and ONNX exports with the float model,
per seed and per calibration method, so the chosen method is a measured result and not one lucky seed.

    .venv/bin/python -m cloudcover.export.fidelity_bench --data demo/dataset --seeds 0,1,2 \
        --methods minmax,percentile:99.99,mse --out reports/fidelity

A method with `+affine` and/or `+bc` (e.g. `minmax+affine+bc`) measures the rewrites of calibration.py's doc.

Trains the demo classifier (the Makefile's DEMO_* settings) once per seed into OUT/runs/seed_N (a finished run
is reused, an interrupted one resumes), then for each method exports int8 TFLite (reference kernels, the
bit-exact oracle) and int8 ONNX (onnxruntime) and compares their top-1 with the Keras model's on the test split.
With `--qat-epochs N` each run is also fine-tuned quantization-aware (`cloudcover qat`, into
OUT/runs/seed_N_qat) and measured the same way, as rows whose method ends in `+qat`.
Writes OUT/fidelity.json and prints one row per seed and method.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cloudcover.export import onnx_export, tflite_export
from cloudcover.export.calibration import Calibration, convert_tflite, prepare
from cloudcover.export.export import calibration_images
from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError
from cloudcover.train.preprocess import load_split

# The demo classifier, as the Makefile trains it (DEMO_MODEL, DEMO_SIZE, DEMO_TRAIN_FLAGS).
DEMO = dict(model="edge_cover", input_size=96, alpha=1.5, epochs=40, patience=40, label_smoothing=0.1)


def train_seed(data: Path, out: Path, seed: int, overrides: dict) -> Path:
    from cloudcover.train.training import TrainConfig, train

    run = out / "runs" / f"seed_{seed}"
    if not (run / "model.keras").is_file():
        train(TrainConfig(data=data, out=run, seed=seed, **{**DEMO, **overrides}), verbose=0, resume=True)
    return run


def parse_variant(spec: str) -> tuple[str, dict]:
    """`NAME:key=value,key=value` -> (NAME, QATConfig overrides), values typed as the QATConfig field is."""
    from dataclasses import fields

    from cloudcover.train.qat import QATConfig

    name, _, rest = spec.partition(":")
    types = {f.name: type(getattr(QATConfig(run=Path("."), out=Path(".")), f.name)) for f in fields(QATConfig)}
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types or key in ("run", "out", "data") or not value:
            raise CloudcoverError(f"bad --qat-variant {spec!r}: {item!r} is not KEY=VALUE of a `cloudcover qat` "
                                  f"setting ({', '.join(k for k in types if k not in ('run', 'out', 'data'))})")
        kind = types[key]
        if kind is bool:
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise CloudcoverError(f"bad --qat-variant {spec!r}: {key} is true or false, got {value!r}")
            overrides[key] = value.lower() in ("1", "true", "yes")
            continue
        try:
            overrides[key] = kind(value)
        except ValueError:
            raise CloudcoverError(f"bad --qat-variant {spec!r}: {key} must be a {kind.__name__}, "
                                  f"got {value!r}") from None
    if not name.isidentifier():
        raise CloudcoverError(f"bad --qat-variant {spec!r}: NAME must be a plain word")
    return name, overrides


def qat_seed(run: Path, data: Path, epochs: int, name: str = "", overrides: dict | None = None) -> Path:
    from cloudcover.train.qat import QATConfig, finetune

    out = run.with_name(run.name + "_qat" + (f"_{name}" if name else ""))
    if not (out / "qat.json").is_file():
        settings = {"epochs": epochs, **(overrides or {})}  # a variant may set its own epochs
        finetune(QATConfig(run=run, out=out, data=data, **settings), progress=False, log=lambda *_: None)
    return out


def agreement(int8_scores: np.ndarray, float_scores: np.ndarray) -> tuple[float, int]:
    """(share of images whose top-1 class equals the float model's, number of images that differ)."""
    same = np.argmax(int8_scores, axis=1) == np.argmax(float_scores, axis=1)
    return float(same.mean()), int((~same).sum())


def logit_rmse(int8_scores: np.ndarray, float_scores: np.ndarray) -> float:
    """Root mean square of the (dequantized) int8 logits' error: a steadier figure than the flips, which count
    only the near ties that this error happens to cross."""
    return float(np.sqrt(np.mean((np.asarray(int8_scores, np.float64) - float_scores) ** 2)))


def tie_bias(int8_scores: np.ndarray, float_scores: np.ndarray) -> float:
    """Mean signed error of (logit of the higher class - logit of the lower class) between each image's float
    top two, classes ordered by index (cloud cover): < 0 means int8 leans toward less cloud. The flips come
    from a systematic shift when this is large against its spread (calibration.py's doc)."""
    f = np.asarray(float_scores, np.float64)
    q = np.asarray(int8_scores, np.float64)
    top2 = np.argsort(f, axis=1)[:, -2:]
    hi, lo, i = top2.max(axis=1), top2.min(axis=1), np.arange(len(f))
    return float(np.mean((q[i, hi] - q[i, lo]) - (f[i, hi] - f[i, lo])))


def near_ties(float_scores: np.ndarray, gap: float = 0.1) -> int:
    """Images whose float top-2 logits are closer than `gap`: the ones int8 error can flip."""
    s = np.sort(float_scores, axis=1)
    return int(np.sum(s[:, -1] - s[:, -2] < gap))


def measure(run: Path, data: Path, methods: list[Calibration], calib_samples: int, split: str = "test") -> list[dict]:
    from cloudcover.train.training import load_run

    model, pre = load_run(run)
    calib = calibration_images(data, pre, calib_samples)
    x, y, _ = load_split(data, split, pre)
    ref = model.predict(x, batch_size=32, verbose=0)
    accuracy = float(np.mean(np.argmax(ref, axis=1) == y))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cal in methods:
            t0 = time.perf_counter()
            # +affine / +bc: TFLite and ONNX both get the rewritten model; agreement is with the original
            conv_model, plain = prepare(model, calib, cal)
            fp32 = Path(tmp) / "model_fp32.onnx"
            onnx_export.convert_fp32(conv_model, fp32)
            tfl = Path(tmp) / "model_int8.tflite"
            tfl.write_bytes(convert_tflite(conv_model, calib, plain))
            _, tfl_scores = tflite_export.run_int8(tfl, x, resolver="reference")
            onx = Path(tmp) / "model_int8.onnx"
            onnx_export.quantize_int8(fp32, calib, onx, cal)
            onnx_scores = onnx_export.run(onx, x)
            (a_t, f_t), (a_o, f_o) = agreement(tfl_scores, ref), agreement(onnx_scores, ref)
            rows.append({"method": str(cal), "tflite_agreement": a_t, "tflite_flips": f_t,
                         "onnx_agreement": a_o, "onnx_flips": f_o, "split": split,
                         "tflite_logit_rmse": logit_rmse(tfl_scores, ref),
                         "onnx_logit_rmse": logit_rmse(onnx_scores, ref),
                         "tflite_tie_bias": tie_bias(tfl_scores, ref), "onnx_tie_bias": tie_bias(onnx_scores, ref),
                         "float_near_ties_0.1": near_ties(ref),
                         "test_images": int(len(x)), "float_test_accuracy": accuracy,
                         "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloudcover.export.fidelity_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="prepared classification dataset (demo/dataset)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    p.add_argument("--methods", default="minmax,percentile:99.99,mse", help="calibration methods, comma-separated")
    p.add_argument("--calib-samples", type=int, default=1000, help="as `cloudcover export --calib-samples`")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's 40 epochs (quick looks only)")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="also measure each run after this many epochs of `cloudcover qat` (0: no)")
    p.add_argument("--qat-variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="also measure a `cloudcover qat` variant (needs --qat-epochs), e.g. "
                   "'agree:distill=1,margin=0.5'; rows end in +qat_NAME; repeatable")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="split to measure on (val: more near ties to count, the demo reports test)")
    p.add_argument("--out", type=Path, default=Path("reports/fidelity"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [Calibration.parse(m) for m in args.methods.split(",")]
    overrides = {"epochs": args.epochs, "patience": args.epochs} if args.epochs else {}
    try:
        variants = [parse_variant(v) for v in args.qat_variant]
    except CloudcoverError as e:
        p.error(str(e))
    if variants and not args.qat_epochs:
        p.error("--qat-variant needs --qat-epochs")
    results = []
    print(f"{'seed':>4} {'method':<22} {'tflite int8':>12} {'onnx int8':>10}  (top-1 agreement with float; flips)")
    for seed in seeds:
        run = train_seed(args.data, args.out, seed, overrides)
        runs = [(run, "")]
        if args.qat_epochs:
            runs.append((qat_seed(run, args.data, args.qat_epochs), "+qat"))
            for name, qat_overrides in variants:
                runs.append((qat_seed(run, args.data, args.qat_epochs, name, qat_overrides), f"+qat_{name}"))
        for r, suffix in runs:
            for row in measure(r, args.data, methods, args.calib_samples, args.split):
                row["seed"], row["method"] = seed, row["method"] + suffix
                results.append(row)
                print(f"{seed:>4} {row['method']:<22} {row['tflite_agreement'] * 100:>10.2f} % "
                      f"{row['onnx_agreement'] * 100:>8.2f} %  ({row['tflite_flips']}, {row['onnx_flips']} of "
                      f"{row['test_images']}; float accuracy {row['float_test_accuracy'] * 100:.2f} %; "
                      f"logit rmse {row['tflite_logit_rmse']:.3f}, {row['onnx_logit_rmse']:.3f}; "
                      f"tie bias {row['tflite_tie_bias']:+.3f}, {row['onnx_tie_bias']:+.3f}; "
                      f"near ties {row['float_near_ties_0.1']})")
    summary = {}
    for name in dict.fromkeys(r["method"] for r in results):
        rs = [r for r in results if r["method"] == name]
        summary[name] = {"tflite_min": min(r["tflite_agreement"] for r in rs),
                             "onnx_min": min(r["onnx_agreement"] for r in rs), "seeds": len(rs)}
    report = {"model": DEMO | overrides, "data": str(args.data), "calib_samples": args.calib_samples,
              "split": args.split, "qat_epochs": args.qat_epochs, "qat_variants": dict(variants),
              "oracle": "TFLite: ai_edge_litert BUILTIN_REF kernels; ONNX: onnxruntime CPU", "rows": results,
              "worst_seed": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "fidelity.json", json.dumps(report, indent=2) + "\n")
    for m, s in summary.items():
        print(f"worst seed, {m}: tflite {s['tflite_min'] * 100:.2f} %, onnx {s['onnx_min'] * 100:.2f} %")
    print(f"-> {args.out / 'fidelity.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
