"""Raw labelled patches -> a classifier dataset: coverage labels, grouped split, rendered images.

    OUT/manifest.csv                         patch_id,roi,image,mask,coverage_pct,shadow_pct,label,split
    OUT/dataset.json                         classes, bins, rule, counts per split and class, scaling, ...
    OUT/<split>/<label>/<patch_id>.<ext>     the RGB rendering (every split has every class folder)

The whole OUT is built in a temporary folder and renamed into place at the end, so a bad input (or an
interrupt) leaves neither a manifest nor class folders behind.
"""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.data import coverage
from cloudcover.train.data.parallel import default_workers, pmap
from cloudcover.train.data.render import SCALING, render_bands, resize_rgb
from cloudcover.train.data.sources import PatchRef, get_source
from cloudcover.train.data.split import SPLITS, grouped_split
from cloudcover.train.errors import CloudcoverError

IMAGE_FORMATS = ("png", "jpg", "tif")
MANIFEST_COLUMNS = ("patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split")
STAGING = ".staging"


@dataclass
class PrepareConfig:
    """What `cloudcover data prepare` does; see the CLI help for each field."""

    source: str  # cloudsen12 | 38cloud
    input: Path
    out: Path
    label: str | None = None  # None = the source's default (manual_hq, gt)
    bins: tuple[float, ...] = coverage.DEFAULT_BINS
    count_shadow: bool = False
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    size: int | None = None  # None = native size
    image_format: str = "png"
    workers: int = field(default_factory=default_workers)
    progress: bool = True


@dataclass
class PrepareResult:
    out: Path
    manifest: Path
    dataset_json: Path
    n: int  # patches written
    counts: dict[str, dict[str, int]]  # split -> class -> n
    skipped: list[dict]  # patches with no valid pixel
    seconds: float
    patches_per_s: float


class _Worker:
    """Picklable: read one patch, measure its coverage, render it to the staging folder."""

    def __init__(self, source: str, staging: Path, size: int | None, image_format: str, count_shadow: bool):
        self.source, self.staging, self.size = source, staging, size
        self.image_format, self.count_shadow = image_format, count_shadow

    def __call__(self, ref: PatchRef) -> dict:
        sample = get_source(self.source).read(ref)
        counts = coverage.code_counts(sample.mask, sample.valid)
        row = {"patch_id": ref.patch_id, "roi": ref.roi, "mask": str(ref.mask)}
        if counts.sum() == 0:
            return {**row, "skip": "no valid pixel (all nodata)"}
        rgb = resize_rgb(render_bands(sample.rgb, sample.rule), self.size)
        staged = self.staging / f"{ref.patch_id}.{self.image_format}"
        _write_image(staged, rgb, self.image_format, sample)
        return {**row, "coverage_pct": coverage.coverage_from_counts(counts, self.count_shadow),
                "shadow_pct": 100.0 * int(counts[coverage.SHADOW]) / int(counts.sum()), "size": rgb.shape[0]}


def _write_image(path: Path, rgb: np.ndarray, fmt: str, sample) -> None:
    if fmt == "tif":  # keeps the georeferencing, rescaled to the output size
        import rasterio
        import rasterio.errors
        from rasterio.transform import Affine

        h, w = rgb.shape[:2]
        profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", compress="deflate",
                       photometric="RGB")
        if sample.crs is not None and sample.transform is not None:
            sy, sx = sample.mask.shape[0] / h, sample.mask.shape[1] / w
            profile.update(crs=sample.crs, transform=sample.transform @ Affine.scale(sx, sy))
        with warnings.catch_warnings():  # 38-Cloud has no georeferencing to keep
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.moveaxis(rgb, -1, 0))
        return
    from PIL import Image

    img = Image.fromarray(rgb)
    if fmt == "png":
        img.save(path, format="PNG", compress_level=3)
    else:
        img.save(path, format="JPEG", quality=95)


def _check(config: PrepareConfig) -> tuple[Path, Path]:
    if config.image_format not in IMAGE_FORMATS:
        raise CloudcoverError(f"--image-format {config.image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    if config.size is not None and config.size < 8:
        raise CloudcoverError(f"--size {config.size}: must be at least 8 pixels")
    inp = Path(config.input).resolve()
    out = Path(config.out).resolve()
    if not inp.is_dir():
        raise CloudcoverError(f"--input {config.input}: no such folder")
    if out == inp or inp.is_relative_to(out):
        raise CloudcoverError(f"--out {config.out}: would replace the input folder {config.input}")
    check_replaceable(out, "dataset.json", "a prepared dataset")
    return inp, out


def prepare(config: PrepareConfig) -> PrepareResult:
    """Label, split and render every patch under config.input into config.out (all or nothing)."""
    t0 = time.perf_counter()
    inp, out = _check(config)
    bins = [float(b) for b in config.bins]
    names = coverage.class_names(bins)
    source = get_source(config.source)
    refs = source.find(inp, config.label)
    ids = [r.patch_id for r in refs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CloudcoverError(f"--input {config.input}: two patches share the id {dup}")

    with atomic_dir(out, "dataset.json", "a prepared dataset") as tmp:
        staging = tmp / STAGING
        staging.mkdir()
        worker = _Worker(config.source, staging, config.size, config.image_format, config.count_shadow)
        rows = pmap(worker, refs, config.workers, desc=f"prepare {config.source}", progress=config.progress)
        skipped = [{"patch_id": r["patch_id"], "mask": r["mask"], "reason": r["skip"]} for r in rows if "skip" in r]
        rows = [r for r in rows if "skip" not in r]
        if not rows:
            raise CloudcoverError(f"--input {config.input}: every patch is nodata; nothing to prepare")
        labels = [coverage.bin_index(r["coverage_pct"], bins) for r in rows]
        splits = grouped_split([r["roi"] for r in rows], labels, config.split, config.seed, len(names))

        for s in SPLITS:
            for c in names:
                (tmp / s / c).mkdir(parents=True)
        counts = {s: {c: 0 for c in names} for s in SPLITS}
        manifest = []
        for r, li, s in zip(rows, labels, splits):
            rel = f"{s}/{names[li]}/{r['patch_id']}.{config.image_format}"
            os.replace(staging / f"{r['patch_id']}.{config.image_format}", tmp / rel)
            counts[s][names[li]] += 1
            manifest.append({"patch_id": r["patch_id"], "roi": r["roi"], "image": rel, "mask": r["mask"],
                             "coverage_pct": f"{r['coverage_pct']:.4f}", "shadow_pct": f"{r['shadow_pct']:.4f}",
                             "label": names[li], "split": s})
        staging.rmdir()
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(manifest)

        sizes = sorted({r["size"] for r in rows})
        seconds = time.perf_counter() - t0
        dataset = {
            "classes": names,
            "bins": bins,
            "rule": {
                "coverage": "cloud pixels / valid pixels x 100",
                "cloud_codes": [coverage.THICK, coverage.THIN] + ([coverage.SHADOW] if config.count_shadow else []),
                "count_shadow": config.count_shadow,
                "codes": {str(k): v for k, v in coverage.CODES.items()},
                "valid": "labelled (not mask nodata) and not nodata in all of the image's RGB bands",
                "bins": "half-open [lo, hi), the last one closed [lo, 100]",
                "label": config.label or source.default_label,
            },
            "counts": counts,
            "rois": {s: sorted({r["roi"] for r, sp in zip(rows, splits) if sp == s}) for s in SPLITS},
            "split": dict(zip(SPLITS, config.split)),
            "split_rule": "grouped by ROI, stratified by class as far as the groups allow",
            "seed": config.seed,
            "n": len(rows),
            "skipped": skipped,
            "image_format": config.image_format,
            "size": sizes[0] if len(sizes) == 1 else None,
            "sizes": sizes,
            "channels": 3,
            "source": config.source,
            "input": str(inp),
            "scaling": SCALING,
            "seconds": round(seconds, 3),
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")
    seconds = time.perf_counter() - t0
    return PrepareResult(out, out / "manifest.csv", out / "dataset.json", len(rows), counts, skipped, seconds,
                         len(refs) / seconds if seconds > 0 else float("inf"))


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The manifest rows as dicts (coverage and shadow as floats): what later stages load."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["coverage_pct"] = float(r["coverage_pct"])
        r["shadow_pct"] = float(r["shadow_pct"])
    return rows
