"""`cloudcover predict`: classify new GeoTIFF, PNG or JPEG patches with a trained run.

(A segmentation run writes a mask per input instead: seg_predict.py, chosen by the run's task.)

Per file: the class, each class probability and the expected cloud coverage in percent (sum of
probability x bin centre, a smooth estimate between classes). GeoTIFFs are rendered to RGB with the
data layer's fixed reflectance scaling (`render.read_patch_rgb`, the one used to prepare the training
patches) and box-resampled to the model's input size like `data prepare` does; PNG/JPEG go through
`preprocess.load_image` exactly as at training. A file that cannot be read is reported and skipped, the
rest of the batch is still written, and the caller learns how many failed.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError

SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Skipped in a folder walk (a file named explicitly is always tried): 38-Cloud keeps each band of a patch
# in its own folder (train_red/, train_green/, ...), so the red file stands for the whole patch (its
# siblings are read with it); label rasters (38-Cloud gt_*, CloudSEN12 manual_hq/manual_sc, *mask*) are
# not images.
_NOT_AN_IMAGE = re.compile(r"^((green|blue|nir|gt)_patch_.*|manual_(hq|sc)|.*mask.*)$", re.IGNORECASE)


@dataclass
class PredictResult:
    rows: list[dict]  # one per readable file
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    out: Path | None = None
    columns: tuple[str, ...] | None = None  # CSV columns when not the classifier's (segmentation)
    mask_dir: Path | None = None  # where a segmentation run wrote its masks


def collect_inputs(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders (recursively, sorted) into image files; missing paths become failures."""
    files: list[Path] = []
    failures: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts)
                           and not _NOT_AN_IMAGE.match(f.stem))
            if not found:
                failures.append((str(p), f"folder holds no {'/'.join(s[1:] for s in SUFFIXES)} file"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            failures.append((str(p), "no such file or folder"))
    return list(dict.fromkeys(files)), failures


def load_input(path: Path, pre) -> np.ndarray:
    """One file -> the model's input (float32 HxWxC raw values), or CloudcoverError saying why not."""
    from cloudcover.train.preprocess import load_image

    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CloudcoverError(f"unsupported file type {suffix or '(none)'}; expected {', '.join(SUFFIXES)}")
    if suffix in (".tif", ".tiff") and pre.bands == 3:
        from cloudcover.train.data.render import read_patch_rgb, resize_rgb

        rgb = read_patch_rgb(path)
        return resize_rgb(rgb, pre.input_size).astype(np.float32)
    return load_image(path, pre)


def predict(run_dir: str | Path, paths: Iterable[str | Path], out: str | Path | None = None, batch_size: int = 32,
            progress: bool = True, mask_dir: str | Path | None = None, threshold: float | None = None) -> PredictResult:
    """Classify every readable file under `paths` (a segmentation run: write a mask per file into `mask_dir`,
    default <out stem>_masks/ beside the CSV); write the CSV to `out` (None: return only)."""
    from tqdm import tqdm

    from cloudcover.train.metrics import softmax
    from cloudcover.train.metrics import expected_coverage
    from cloudcover.train.preprocess import Preprocess
    from cloudcover.train.training import load_run

    files, failures = collect_inputs(paths)
    if not files and not failures:
        raise CloudcoverError("no input files given")
    if Preprocess.load(run_dir).task == "segmentation":
        from cloudcover.train.seg_predict import COLUMNS, predict_segmentation

        if mask_dir is None:
            if out is None:
                raise CloudcoverError("a segmentation run writes a mask per input: pass --mask-dir (or --out, "
                                      "whose <stem>_masks/ folder is then used)")
            mask_dir = Path(out).with_name(f"{Path(out).stem}_masks")
        rows = predict_segmentation(run_dir, files, failures, Path(mask_dir), threshold, progress)
        result = PredictResult(rows, failures, columns=COLUMNS, mask_dir=Path(mask_dir))
        if out is not None:
            result.out = Path(out)
            write_text(out, to_csv(rows, [], COLUMNS))
        return result
    model, pre = load_run(run_dir)
    names = list(pre.class_names)
    has_bins = len(pre.bins) == len(names) + 1
    rows: list[dict] = []
    batch: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        x = np.stack([a for _, a in batch])
        proba = softmax(np.asarray(model.predict_on_batch(x)))
        cov = expected_coverage(proba, pre.bins) if has_bins else [None] * len(batch)
        for (path, _), p, c in zip(batch, proba, cov):
            k = int(p.argmax())
            rows.append({"path": str(path), "class": names[k], "confidence": float(p[k]),
                         "expected_coverage_pct": None if c is None else float(c),
                         **{f"p_{n}": float(v) for n, v in zip(names, p)}})
        batch.clear()

    for path in tqdm(files, desc="predict", unit="file", disable=not progress, file=sys.stderr):
        try:
            arr = load_input(path, pre)
            if arr.shape != (pre.input_size, pre.input_size, pre.bands):
                raise CloudcoverError(f"decoded to shape {arr.shape}, the model takes "
                                      f"{(pre.input_size, pre.input_size, pre.bands)}")
        except CloudcoverError as exc:
            failures.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        except Exception as exc:  # any decoder failure: report and go on with the batch
            failures.append((str(path), f"{type(exc).__name__}: {exc}"))
            continue
        batch.append((path, arr))
        if len(batch) >= batch_size:
            flush()
    flush()
    result = PredictResult(rows, failures)
    if out is not None:
        result.out = Path(out)
        write_text(out, to_csv(rows, names))
    return result


def to_csv(rows: list[dict], class_names: list[str], columns: Iterable[str] | None = None) -> str:
    buf = io.StringIO()
    cols = list(columns) if columns else ["path", "class", "confidence", "expected_coverage_pct",
                                          *[f"p_{n}" for n in class_names]]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.5f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})
    return buf.getvalue()
