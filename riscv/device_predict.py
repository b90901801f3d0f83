"""`cloudcover predict --device TARGET --model-dir DIR`: predict new images with the compiled model on the device.

The host `cloudcover predict` (train/predict.py, train/seg_predict.py) runs the run's float Keras model. With
--device, the same files are read with the same preprocessing (the very functions host predict uses), every
image is encoded as model.json says (byo.encode_inputs: the int8 input quantized with its own scale), and
all of them go through cloudcover-infer in one process: under qemu-riscv64 for rv64gc/rv64gcv, natively for
the host target. The device outputs are decoded and turned into the host CSV's columns; the float model runs
on the same inputs, so each row also says whether the device agrees with it:

    classifier:  ... host columns ..., float_class, device_equals_float (device class == float class)
    segmenter:   ... host columns ..., float_coverage_pct, float_class, pixel_agreement (share of valid
                 pixels whose device and float masks agree), device_equals_float (the same coverage class,
                 i.e. the same on-board keep/discard decision; pixel_agreement says how close the masks are)

Unlike host predict (which skips an unreadable file), the device route reads every input before it starts
the emulator and refuses the whole batch on the first bad one, so a long qemu run is never spent on a batch
whose CSV would be incomplete. Every refusal is one line, and then nothing is written; the CSV (and each
mask of a segmenter) is written under a temporary name and renamed.

The binary is the one `cloudcover build` put beside the model (MODEL_DIR/cloudcover-infer[-TARGET]) or the
`make riscv-build` one (BUILD/riscv64/... for BUILD/model/TARGET), or --binary; when none is there (or it is
older than model.json) it is cross-built into a cache folder keyed by the model's files. `--model FILE`
(a .tflite/.onnx, e.g. the export's model_int8.tflite) instead of --model-dir compiles it into the cache.

This module lives in the riscv stage (train may not import riscv); it adds its options to the predict
parser that train/tune_cli.py defines, and sends a --device run here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cloudcover.train.errors import CloudcoverError

DEVICES = ("rv64gc", "rv64gcv", "host")
CLASSIFIER_EXTRA = ("float_class", "device_equals_float")
SEGMENTER_EXTRA = ("float_coverage_pct", "float_class", "pixel_agreement", "device_equals_float")


# ------------------------------------------------------------------------------------------------ CLI

def register(sub: argparse._SubParsersAction) -> None:
    """Add the device options to `cloudcover predict` (defined by cloudcover.train.tune_cli)."""
    p = sub.choices.get("predict")
    if p is None:  # the train stage is not there: nothing to extend
        return
    g = p.add_argument_group(
        "on the emulated device",
        "With --device and --model-dir (or --model FILE, compiled into a cache) the images go through the "
        "compiled model's cloudcover-infer (under "
        "qemu-riscv64 for rv64gc/rv64gcv, natively for host), all in one process, instead of the float Keras "
        "model. The CSV has the host columns plus float_class and device_equals_float (segmentation runs: "
        "float_coverage_pct, float_class, pixel_agreement over valid pixels, device_equals_float = same coverage "
        "class). "
        "Every input is read before the emulator starts; one unreadable file stops the batch with nothing "
        "written. Example: cloudcover predict --run demo/run --device rv64gcv --model-dir build/model/rv64gcv "
        "--out preds_rv64gcv.csv patches/")
    g.add_argument("--device", choices=DEVICES, default=None,
                   help="run the compiled model for this target (must be the target of --model-dir)")
    g.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                   help="folder written by `cloudcover compile` from this run's export (model.json, model.c, "
                   "kernels.o)")
    g.add_argument("--model", type=Path, default=None, dest="device_model", metavar="FILE",
                   help="instead of --model-dir: a .tflite/.onnx file (e.g. ART_DIR/model_int8.tflite of this "
                   "run's export), compiled for --device into ~/.cache/cloudcover/device-predict (once per "
                   "model file and compiler version)")
    g.add_argument("--binary", type=Path, default=None, metavar="EXE",
                   help="cloudcover-infer to run (default: the one `cloudcover build` put in MODEL_DIR, or "
                   "BUILD/riscv64/ for BUILD/model/TARGET; else built into ~/.cache/cloudcover/device-predict)")
    g.add_argument("--system-qemu", action="store_true",
                   help="use the system qemu-riscv64 instead of the plugin build (scalar rv64gc only)")
    host_predict = p.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        if args.device is None:
            if args.model_dir is not None or args.binary is not None or args.device_model is not None:
                raise CloudcoverError("--model-dir, --model and --binary need --device (the target to run on)")
            return host_predict(args)
        return _cli(args)

    p.set_defaults(func=dispatch)


def _cli(args: argparse.Namespace) -> int:
    if (args.model_dir is None) == (args.device_model is None):
        raise CloudcoverError("--device needs either --model-dir (a folder written by `cloudcover compile`) or "
                              "--model (a .tflite/.onnx file to compile)")
    res = device_predict(args.run, args.paths, args.model_dir, args.device, model=args.device_model,
                         out=args.out, binary=args.binary,
                         mask_dir=args.mask_dir, threshold=args.threshold, progress=not args.quiet,
                         system_qemu=args.system_qemu)
    agree = sum(1 for r in res["rows"] if r["device_equals_float"])
    if args.out is None:
        sys.stdout.write(res["csv"])
    else:
        print(f"wrote {len(res['rows'])} prediction(s) to {args.out}", file=sys.stderr)
    if res["mask_dir"] is not None:
        print(f"wrote {len(res['rows'])} mask(s) to {res['mask_dir']}", file=sys.stderr)
    print(f"device {args.device}: {agree} of {len(res['rows'])} equal the float model's "
          f"{'coverage class' if res['task'] == 'segmentation' else 'class'} ({res['emulator']}, "
          f"{res['wall_s']:.1f} s)",
          file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------ model folder

def load_model_info(model_dir: Path, device: str, pre) -> dict:
    """model.json of `model_dir`, checked against the device asked for and the run's preprocessing."""
    path = model_dir / "model.json"
    if not path.is_file():
        raise CloudcoverError(f"{path} not found: --model-dir must be a folder written by `cloudcover compile`")
    try:
        info = json.loads(path.read_text())
        compiled_for, shape = info["target"], list(info["input"]["shape"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CloudcoverError(f"{path} is not a compiled model's model.json ({exc})") from exc
    if compiled_for != device:
        raise CloudcoverError(f"{model_dir} was compiled for {compiled_for}, not --device {device}; compile the "
                              f"run's export with `cloudcover compile --target {device}`")
    s, c = pre.input_size, pre.bands
    if shape[1:] not in ([s, s, c], [c, s, s]):
        raise CloudcoverError(f"{model_dir} takes input {shape}, the run takes {s}x{s}x{c}: compiled from "
                              "another run's model")
    names = info.get("class_names")
    if names and list(names) != list(pre.class_names):
        raise CloudcoverError(f"{model_dir} has classes {names}, the run {list(pre.class_names)}: compiled from "
                              "another run's model")
    task = info.get("task")  # absent in folders compiled before tasks were recorded
    if task and task != pre.task:
        raise CloudcoverError(f"{model_dir} holds a {task} model, the run is {pre.task}")
    return info


def _digest(model_dir: Path) -> str:
    from .toolchain import RUNTIME_DIR

    h = hashlib.sha256()
    files = [model_dir / "model.c", model_dir / "kernels.o", model_dir / "model.json"]
    files += sorted(p for p in RUNTIME_DIR.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".txt"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cloudcover" / "device-predict"


def compiled_dir(model: Path, device: str, log=None) -> Path:
    """`cloudcover compile --model MODEL --target DEVICE` into the cache, once per model file, target and
    compiler sources (export/ and its schedules.json); the folder is reused while they are unchanged."""
    from .toolchain import REPO_ROOT

    log = log or (lambda m: print(f"cloudcover predict: {m}", file=sys.stderr, flush=True))
    if not model.is_file():
        raise CloudcoverError(f"--model {model} not found")
    if model.suffix.lower() not in (".tflite", ".onnx"):
        raise CloudcoverError(f"--model {model}: expected a .tflite or .onnx file")
    h = hashlib.sha256(model.read_bytes() + device.encode())
    for f in sorted((REPO_ROOT / "export").rglob("*")):
        if f.is_file() and f.suffix in (".py", ".json"):
            h.update(f.read_bytes())
    out = cache_dir() / "compiled" / f"{model.stem}-{device}-{h.hexdigest()[:16]}"
    if not (out / "model.json").is_file():
        from cloudcover.export.compile import compile_model

        log(f"compiling {model} for {device} into {out}")
        compile_model(model, device, out, log=lambda m: None)
    return out


def find_binary(model_dir: Path, device: str, binary: Path | None, log=print) -> Path:
    """The cloudcover-infer for `model_dir`: --binary, the one `cloudcover build` / `make riscv-build` left (if
    not older than model.json), or one cross-built into the cache."""
    from .toolchain import binary_name

    if binary is not None:
        if not binary.is_file():
            raise CloudcoverError(f"--binary {binary} not found (build it with `cloudcover build --model-dir "
                                  f"{model_dir}`)")
        return binary
    stamp = (model_dir / "model.json").stat().st_mtime
    name = binary_name(device)
    for cand in (model_dir / name, model_dir.parent.parent / "riscv64" / name if model_dir.parent.name == "model"
                 else None):
        if cand is not None and cand.is_file() and cand.stat().st_mtime >= stamp:
            return cand
    from .build_cli import build_one

    out = cache_dir() / _digest(model_dir)
    exe = out / name
    if not exe.is_file():
        log(f"building cloudcover-infer for {model_dir} ({device}) into {out}")
        build_one(model_dir, out, device, out / "cmake")
    return exe


# ------------------------------------------------------------------------------------------------ inputs

def read_classifier_inputs(files: list[Path], pre, progress: bool) -> np.ndarray:
    """Model inputs (float32 NHWC raw values) read exactly as host predict reads them; the first bad file stops."""
    from tqdm import tqdm

    from cloudcover.train.predict import load_input

    want = (pre.input_size, pre.input_size, pre.bands)
    x = np.empty((len(files), *want), np.float32)
    for i, path in enumerate(tqdm(files, desc="read", unit="file", disable=not progress, file=sys.stderr)):
        arr = _read_or_fail(path, lambda: load_input(path, pre))
        if arr.shape != want:
            raise CloudcoverError(f"{path}: decoded to shape {arr.shape}, the model takes {want}")
        x[i] = arr
    return x


def read_segmenter_inputs(files: list[Path], pre, progress: bool) -> tuple[list, np.ndarray]:
    """Rasters (own size, validity, georeferencing) and the model inputs resized as host predict resizes them."""
    from tqdm import tqdm

    from cloudcover.train.preprocess import _resize
    from cloudcover.train.seg_predict import read_input

    rasters = []
    x = np.empty((len(files), pre.input_size, pre.input_size, pre.bands), np.float32)
    for i, path in enumerate(tqdm(files, desc="read", unit="file", disable=not progress, file=sys.stderr)):
        r = _read_or_fail(path, lambda: read_input(path, pre))
        rasters.append(r)
        x[i] = _resize(r.pixels, pre.input_size, pre.resize)
    return rasters, x


def _read_or_fail(path: Path, read):
    try:
        return read()
    except CloudcoverError as exc:
        raise CloudcoverError(f"{path}: {str(exc).removeprefix(f'{path}: ')}; nothing written") from None
    except Exception as exc:  # any decoder failure
        raise CloudcoverError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); nothing written") from None


# ------------------------------------------------------------------------------------------------ device run

def run_device(exe: Path, device: str, data: bytes, n: int, per_output: int, work: Path, system_qemu: bool = False,
               progress: bool = True) -> tuple[bytes, str]:
    """All n inputs through one cloudcover-infer process; progress from the size of its partial output file."""
    from tqdm import tqdm

    from . import qemu
    from cloudcover.export.targets import get_target

    work.mkdir(parents=True, exist_ok=True)
    (work / "in.bin").write_bytes(data)
    if device == "host":
        cmd, what = [str(exe.resolve()), "in.bin", "out.bin"], "host"
    else:
        emu = qemu.find_emulator(prefer_plugin=not system_qemu)
        qemu.check_runnable(emu, device)
        cmd = ["env", "-i", str(emu.qemu), "-cpu", get_target(device).qemu_cpu, str(exe.resolve()), "in.bin", "out.bin"]
        what = f"qemu-riscv64 {emu.version}"
    part = work / "out.bin.part"
    with open(work / "stderr.txt", "w") as err, \
            tqdm(total=n, desc=f"infer {device}", unit="img", disable=not progress, file=sys.stderr) as bar:
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            time.sleep(0.5)
            done = part.stat().st_size // per_output if part.is_file() else bar.n
            bar.update(max(0, min(done, n) - bar.n))
        bar.update(n - bar.n if proc.returncode == 0 else 0)
    if proc.returncode != 0:
        tail = " | ".join((work / "stderr.txt").read_text(errors="replace").strip().splitlines()[-3:])
        raise CloudcoverError(f"{exe} ({what}) exited {proc.returncode}: {tail or 'no message'}; nothing written")
    return (work / "out.bin").read_bytes(), what


def _nhwc_to_model(info: dict, x: np.ndarray) -> np.ndarray:
    shape = list(info["input"]["shape"])
    return x if shape[1:] == list(x.shape[1:]) else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _mask_plane(a: np.ndarray) -> np.ndarray:
    """A [N, H, W, 1] or [N, 1, H, W] mask-logit output as [N, H, W]."""
    return a[..., 0] if a.shape[-1] == 1 else a[:, 0]


# ------------------------------------------------------------------------------------------------ rows

def classifier_rows(files: list[Path], dev_logits: np.ndarray, float_logits: np.ndarray, pre) -> list[dict]:
    """Host predict's row (from the device's logits) + the float model's class and whether they agree."""
    from cloudcover.train.metrics import expected_coverage, softmax

    names = list(pre.class_names)
    proba = softmax(dev_logits.reshape(len(files), -1).astype(np.float64))
    fclass = float_logits.reshape(len(files), -1).argmax(1)
    cov = expected_coverage(proba, pre.bins) if len(pre.bins) == len(names) + 1 else [None] * len(files)
    rows = []
    for path, p, c, fk in zip(files, proba, cov, fclass):
        k = int(p.argmax())
        rows.append({"path": str(path), "class": names[k], "confidence": float(p[k]),
                     "expected_coverage_pct": None if c is None else float(c),
                     **{f"p_{n}": float(v) for n, v in zip(names, p)},
                     "float_class": names[int(fk)], "device_equals_float": k == int(fk)})
    return rows


def segmenter_rows(files: list[Path], rasters: list, dev_logits: np.ndarray, float_logits: np.ndarray, pre,
                   thr: float, mask_dir: Path) -> list[dict]:
    """Host predict's segmentation row and mask file (from the device's logits, resized back to each input's
    size and thresholded as host predict does) + the float model's coverage and class, the pixel agreement."""
    from cloudcover.train.data import coverage
    from cloudcover.train.seg_predict import _resize_plane, mask_path, write_mask

    cut = float(np.log(thr / (1 - thr)))
    used: set[str] = set()
    rows = []
    for path, r, d, f in zip(files, rasters, dev_logits, float_logits):
        h, w = r.pixels.shape[:2]
        mask = _resize_plane(d.astype(np.float32), h, w) >= cut
        fmask = _resize_plane(f.astype(np.float32), h, w) >= cut
        out = mask_path(mask_dir, path, used, r.profile is not None)
        write_mask(out, mask, r.valid, r.profile)
        n_valid = int(r.valid.sum())
        n_cloud, f_cloud = int((mask & r.valid).sum()), int((fmask & r.valid).sum())
        same = int(((mask == fmask) & r.valid).sum())
        cov = 100.0 * n_cloud / n_valid if n_valid else None
        fcov = 100.0 * f_cloud / n_valid if n_valid else None
        cls = pre.class_names[coverage.bin_index(cov, pre.bins)] if cov is not None else ""
        fcls = pre.class_names[coverage.bin_index(fcov, pre.bins)] if fcov is not None else ""
        rows.append({"path": str(path), "mask": str(out), "coverage_pct": cov,
                     "class": cls, "cloud_pixels": n_cloud, "valid_pixels": n_valid, "threshold": thr,
                     "float_coverage_pct": fcov, "float_class": fcls,
                     "pixel_agreement": same / n_valid if n_valid else 1.0, "device_equals_float": cls == fcls})
    return rows


# ------------------------------------------------------------------------------------------------ the verb

def device_predict(run_dir: str | Path, paths, model_dir: str | Path | None, device: str,
                   model: str | Path | None = None, out: str | Path | None = None, binary: str | Path | None = None,
                   mask_dir: str | Path | None = None, threshold: float | None = None, progress: bool = True,
                   system_qemu: bool = False, log=None) -> dict:
    """Predict `paths` with the compiled model (`model_dir`, or `model` compiled into the cache) on `device`;
    returns {"rows", "csv", "task", "mask_dir", "binary", "emulator", "wall_s"}.

    Checks everything (model folder, target, binary, every input) before the device runs, the cheap checks
    before reading the inputs and the inputs before any compile or build; nothing is written unless the whole
    batch succeeded."""
    import tempfile

    from cloudcover.train.atomic import write_text
    from cloudcover.train.predict import collect_inputs, to_csv
    from cloudcover.train.preprocess import Preprocess

    from . import byo

    log = log or (lambda m: print(f"cloudcover predict: {m}", file=sys.stderr, flush=True))
    run_dir = Path(run_dir)
    if device not in DEVICES:
        raise CloudcoverError(f"unknown --device {device!r} (expected one of {', '.join(DEVICES)})")
    if (model_dir is None) == (model is None):
        raise CloudcoverError("give either a compiled model folder (--model-dir) or a model file (--model)")
    pre = Preprocess.load(run_dir)
    if model_dir is not None:
        model_dir = Path(model_dir)
        info = load_model_info(model_dir, device, pre)
    else:
        model = Path(model)
        if not model.is_file():
            raise CloudcoverError(f"--model {model} not found")
    if binary is not None and not Path(binary).is_file():
        raise CloudcoverError(f"--binary {binary} not found (build it with `cloudcover build --model-dir DIR`)")
    seg = pre.task == "segmentation"
    thr = pre.threshold if threshold is None else float(threshold)
    if seg and not 0 < thr < 1:
        raise CloudcoverError(f"--threshold {thr}: must lie strictly between 0 and 1")
    if seg and mask_dir is None:
        if out is None:
            raise CloudcoverError("a segmentation run writes a mask per input: pass --mask-dir (or --out, whose "
                                  "<stem>_masks/ folder is then used)")
        mask_dir = Path(out).with_name(f"{Path(out).stem}_masks")
    files, failures = collect_inputs(paths)
    if failures:
        p, why = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise CloudcoverError(f"{p}: {why}{more}; nothing written")
    if not files:
        raise CloudcoverError("no input files given")
    from cloudcover.train.training import load_run

    keras_model, _ = load_run(run_dir)  # the float model, run on the same inputs as the device
    if seg:
        rasters, x = read_segmenter_inputs(files, pre, progress)
    else:
        x = read_classifier_inputs(files, pre, progress)
    if model is not None:
        model_dir = compiled_dir(model, device, log)
        info = load_model_info(model_dir, device, pre)
    exe = find_binary(model_dir, device, Path(binary) if binary else None, log)
    data = byo.encode_inputs(info, _nhwc_to_model(info, x))
    per_output = info.get("output_bytes", info["output"]["bytes"])
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="cloudcover-device-predict-") as tmp:
        raw, what = run_device(exe, device, data, len(files), per_output, Path(tmp), system_qemu, progress)
    wall = time.time() - t0
    dev = byo.as_float(info, byo.decode_outputs(info, raw, len(files)))[0]
    flt = np.asarray(keras_model.predict(x, batch_size=32, verbose=0))
    if seg:
        dev = _mask_plane(dev)
        rows = segmenter_rows(files, rasters, dev, flt[..., 0], pre, thr, Path(mask_dir))
        from cloudcover.train.seg_predict import COLUMNS

        columns = [*COLUMNS, *SEGMENTER_EXTRA]
    else:
        rows = classifier_rows(files, dev, flt, pre)
        columns = ["path", "class", "confidence", "expected_coverage_pct",
                   *[f"p_{n}" for n in pre.class_names], *CLASSIFIER_EXTRA]
    text = to_csv(rows, list(pre.class_names), columns)
    if out is not None:
        write_text(out, text)
    return {"rows": rows, "csv": text, "task": pre.task, "mask_dir": Path(mask_dir) if seg else None,
            "binary": str(exe), "emulator": what, "wall_s": wall}
