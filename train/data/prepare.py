"""Raw labelled patches -> a dataset for one task: coverage labels, grouped split, images (and masks).

task classification (the default):
    OUT/manifest.csv                         patch_id,roi,image,mask,coverage_pct,shadow_pct,label,split
    OUT/dataset.json                         task, classes, bins, rule, counts per split and class, scaling, ...
    OUT/<split>/<label>/<patch_id>.<ext>     the RGB rendering (every split has every class folder)
task segmentation:
    OUT/manifest.csv                         the same columns + target (the mask file)
    OUT/<split>/images/<patch_id>.tif        every band in the source's DN, area-averaged to --size, CRS and
                                             transform kept (--image-format png/jpg: the RGB rendering instead)
    OUT/<split>/masks/<patch_id>.png         uint8 0 clear, 1 cloud, 255 nodata; nearest-neighbour to --size
    OUT/masks_rle.csv                        patch_id,split,height,width,cloud_rle,nodata_rle (Kaggle RLE)
The label (coverage class), the cloud definition and the nodata rule are the same for both tasks, and so
is the split: grouped by ROI, stratified by coverage class.

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
from cloudcover.train.data import coverage, rle
from cloudcover.train.data.parallel import default_workers, pmap
from cloudcover.train.data.render import SCALING, render_bands, resize_rgb
from cloudcover.train.data.sources import PatchRef, get_source
from cloudcover.train.data.split import SPLITS, grouped_split
from cloudcover.train.errors import CloudcoverError

IMAGE_FORMATS = ("png", "jpg", "tif")
MANIFEST_COLUMNS = ("patch_id", "roi", "image", "mask", "coverage_pct", "shadow_pct", "label", "split")
TASKS = ("classification", "segmentation")
STAGING = ".staging"
RLE_FILE = "masks_rle.csv"
RLE_COLUMNS = ("patch_id", "split", "height", "width", "cloud_rle", "nodata_rle")
CLEAR_PX, CLOUD_PX, NODATA_PX = 0, 1, 255  # segmentation mask values


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
    image_format: str | None = None  # None = png for classification, tif (all bands) for segmentation
    task: str = "classification"
    bands: str = "all"  # segmentation GeoTIFFs: every band of the source, or only red, green, blue ("rgb")
    workers: int = field(default_factory=default_workers)
    progress: bool = True

    @property
    def fmt(self) -> str:
        return self.image_format or ("tif" if self.task == "segmentation" else "png")


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

    def __init__(self, source: str, staging: Path, size: int | None, image_format: str, count_shadow: bool,
                 task: str = "classification", bands: str = "all"):
        self.source, self.staging, self.size = source, staging, size
        self.image_format, self.count_shadow, self.task, self.bands = image_format, count_shadow, task, bands

    def __call__(self, ref: PatchRef) -> dict:
        segment = self.task == "segmentation"
        raw_bands = segment and self.image_format == "tif"
        source = get_source(self.source)
        sample = source.read(ref, all_bands=raw_bands and self.bands == "all")
        if raw_bands and self.bands == "rgb":  # the three RGB planes in raw DN, named as the source names them
            sample.bands, sample.band_names = sample.rgb, tuple(source.rgb_bands)
        counts = coverage.code_counts(sample.mask, sample.valid)
        row = {"patch_id": ref.patch_id, "roi": ref.roi, "mask": str(ref.mask)}
        if counts.sum() == 0:
            return {**row, "skip": "no valid pixel (all nodata)"}
        staged = self.staging / f"{ref.patch_id}.{self.image_format}"
        if raw_bands:
            bands = resize_bands(sample.bands, self.size)
            _write_image(staged, np.moveaxis(bands, 0, -1), "tif", sample)
            side, row["bands"] = bands.shape[1], list(sample.band_names)
        else:
            rgb = resize_rgb(render_bands(sample.rgb, sample.rule), self.size)
            _write_image(staged, rgb, self.image_format, sample)
            side = rgb.shape[0]
        if segment:
            target = cloud_target(sample.mask, sample.valid, self.count_shadow)
            target = resize_mask(target, self.size)
            from PIL import Image

            Image.fromarray(target).save(self.staging / f"{ref.patch_id}.mask.png", format="PNG")
            row.update(height=target.shape[0], width=target.shape[1], cloud_rle=rle.encode(target == CLOUD_PX),
                       nodata_rle=rle.encode(target == NODATA_PX))
        return {**row, "coverage_pct": coverage.coverage_from_counts(counts, self.count_shadow),
                "shadow_pct": 100.0 * int(counts[coverage.SHADOW]) / int(counts.sum()), "size": side}


def cloud_target(codes: np.ndarray, valid: np.ndarray, count_shadow: bool = False) -> np.ndarray:
    """CloudSEN12 codes -> the segmentation target: 1 cloud (thick, thin; shadow with count_shadow), 0 clear,
    255 where not valid. The same definition of cloud and of validity as the coverage labels."""
    cloud_codes = [coverage.THICK, coverage.THIN] + ([coverage.SHADOW] if count_shadow else [])
    out = np.where(np.isin(codes, cloud_codes), CLOUD_PX, CLEAR_PX).astype(np.uint8)
    out[~np.asarray(valid, dtype=bool)] = NODATA_PX
    return out


def resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    """Nearest-neighbour resampling of a uint8 label mask to size x size (labels are never blended)."""
    if size is None or mask.shape == (size, size):
        return mask
    from PIL import Image

    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def resize_bands(bands: np.ndarray, size: int | None) -> np.ndarray:
    """Area-average (box) resampling of (C, H, W) bands to size x size, in float, back to the input dtype."""
    if size is None or bands.shape[1:] == (size, size):
        return bands
    from PIL import Image

    out = np.stack([np.asarray(Image.fromarray(b.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BOX)) for b in bands])
    if bands.dtype.kind in "ui":
        info = np.iinfo(bands.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(bands.dtype)


def _write_image(path: Path, rgb: np.ndarray, fmt: str, sample) -> None:
    if fmt == "tif":  # keeps the georeferencing, rescaled to the output size
        import rasterio
        import rasterio.errors
        from rasterio.transform import Affine

        h, w, count = rgb.shape
        profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=rgb.dtype.name, compress="deflate")
        if count == 3 and rgb.dtype == np.uint8:
            profile["photometric"] = "RGB"
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
    if config.task not in TASKS:
        raise CloudcoverError(f"--task {config.task!r}: choose one of {', '.join(TASKS)}")
    if config.bands not in ("all", "rgb"):
        raise CloudcoverError(f"--bands {config.bands!r}: choose all or rgb")
    if config.fmt not in IMAGE_FORMATS:
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
        fmt, segment = config.fmt, config.task == "segmentation"
        worker = _Worker(config.source, staging, config.size, fmt, config.count_shadow, config.task, config.bands)
        rows = pmap(worker, refs, config.workers, desc=f"prepare {config.source}", progress=config.progress)
        skipped = [{"patch_id": r["patch_id"], "mask": r["mask"], "reason": r["skip"]} for r in rows if "skip" in r]
        rows = [r for r in rows if "skip" not in r]
        if not rows:
            raise CloudcoverError(f"--input {config.input}: every patch is nodata; nothing to prepare")
        labels = [coverage.bin_index(r["coverage_pct"], bins) for r in rows]
        splits = grouped_split([r["roi"] for r in rows], labels, config.split, config.seed, len(names))

        for s in SPLITS:
            for c in (("images", "masks") if segment else names):
                (tmp / s / c).mkdir(parents=True)
        counts = {s: {c: 0 for c in names} for s in SPLITS}
        manifest, rles = [], []
        for r, li, s in zip(rows, labels, splits):
            pid = r["patch_id"]
            rel = f"{s}/{'images' if segment else names[li]}/{pid}.{fmt}"
            os.replace(staging / f"{pid}.{fmt}", tmp / rel)
            counts[s][names[li]] += 1
            entry = {"patch_id": pid, "roi": r["roi"], "image": rel, "mask": r["mask"],
                     "coverage_pct": f"{r['coverage_pct']:.4f}", "shadow_pct": f"{r['shadow_pct']:.4f}",
                     "label": names[li], "split": s}
            if segment:
                entry["target"] = f"{s}/masks/{pid}.png"
                os.replace(staging / f"{pid}.mask.png", tmp / entry["target"])
                rles.append({"patch_id": pid, "split": s, **{k: r[k] for k in RLE_COLUMNS[2:]}})
            manifest.append(entry)
        staging.rmdir()
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS + (("target",) if segment else ()))
            writer.writeheader()
            writer.writerows(manifest)
        if segment:
            with open(tmp / RLE_FILE, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=RLE_COLUMNS)
                writer.writeheader()
                writer.writerows(rles)

        sizes = sorted({r["size"] for r in rows})
        seconds = time.perf_counter() - t0
        band_lists = {tuple(r.get("bands", ())) for r in rows}
        band_names = list(band_lists.pop()) if len(band_lists) == 1 else []
        if band_lists:
            raise CloudcoverError(f"--input {config.input}: patches have different band sets; "
                                  "segmentation needs one band layout per dataset")
        dataset = {
            "task": config.task,
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
            "image_format": fmt,
            "size": sizes[0] if len(sizes) == 1 else None,
            "sizes": sizes,
            "channels": len(band_names) if band_names else 3,
            "bands": band_names or ["red", "green", "blue"],
            "image_values": "raw DN of every band (area-averaged)" if band_names else "uint8 RGB rendering (scaling)",
            "source": config.source,
            "input": str(inp),
            "scaling": SCALING,
            "seconds": round(seconds, 3),
        }
        if segment:
            dataset["mask"] = {"values": {str(CLEAR_PX): "clear", str(CLOUD_PX): "cloud", str(NODATA_PX): "nodata"},
                               "ignore": NODATA_PX, "resample": "nearest", "format": "png uint8",
                               "rle": {"file": RLE_FILE, "convention": "Kaggle: 1-indexed start/length pairs, "
                                       "column-major (top to bottom, then left to right)"}}
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
