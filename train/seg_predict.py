"""`cloudcover predict` with a segmentation run: a cloud mask per input, its coverage % and coverage class.

Inputs are read in the form the run was trained on: GeoTIFFs with the run's band count in raw DN (a 38-Cloud
band file such as train_red/red_patch_*.TIF brings its green, blue and nir siblings), or PNG/JPEG for runs
trained on RGB renderings (3 bands). Each image is resized to the model's input (bilinear, as at training),
its logits are resized back to the input's own size (bilinear) and thresholded there, so the mask lines up
pixel for pixel with the input.

    MASK_DIR/<stem>_mask.tif   uint8, 1 cloud, 0 clear, 255 nodata (declared nodata); the input's CRS and
                               transform (GeoTIFF inputs)
    MASK_DIR/<stem>_mask.png   uint8, 255 cloud, 0 clear (PNG/JPEG inputs; these formats have no nodata)

Coverage % = cloud pixels / valid pixels x 100 (valid: not 0 or the declared nodata in every band), and its
class under the run's bins, as for the labels the classifiers learn. A file that cannot be read is
reported and skipped; every mask is written under a temporary name and renamed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import atomic_path
from cloudcover.train.errors import CloudcoverError

COLUMNS = ("path", "mask", "coverage_pct", "class", "cloud_pixels", "valid_pixels", "threshold")
_L8_BAND = re.compile(r"^(red|green|blue|nir)_(patch_.+)$", re.IGNORECASE)
L8_BANDS = ("red", "green", "blue", "nir")


@dataclass
class Raster:
    """An input read for the segmenter: raw values (H, W, C), validity, and what a GeoTIFF output keeps."""

    pixels: np.ndarray
    valid: np.ndarray
    profile: dict | None  # crs and transform of a GeoTIFF input; None for PNG/JPEG


def _read_tif(path: Path, bands: int) -> Raster:
    from cloudcover.train.data.raster import open_raster, read_raster

    with open_raster(path) as src:
        count, nodata = src.count, src.nodata
        profile = {"crs": src.crs, "transform": src.transform}
        if count == 1 and bands == 4 and _L8_BAND.match(path.stem):
            data = _read_38cloud(path)
        elif count != bands:
            raise CloudcoverError(f"{path}: {count} band(s), the model takes {bands}")
        else:
            data = read_raster(src, path)
    bad = ~np.isfinite(data) if data.dtype.kind == "f" else np.zeros(data.shape, bool)
    if nodata is not None and np.isfinite(nodata):
        bad |= data == nodata
    if data.dtype.kind in "ui":
        bad |= data == 0  # 0 DN is nodata in Sentinel-2 and Landsat products
    return Raster(np.moveaxis(data, 0, -1).astype(np.float32), ~np.all(bad, axis=0), profile)


def _read_38cloud(path: Path) -> np.ndarray:
    """red_patch_X.TIF in train_red/ -> the (4, H, W) red, green, blue, nir stack from the sibling folders."""
    from cloudcover.train.data.raster import open_raster, read_raster

    m = _L8_BAND.match(path.stem)
    prefix = path.parent.name.rsplit("_", 1)[0]
    planes = []
    for band in L8_BANDS:
        sib = path.parent.parent / f"{prefix}_{band}" / f"{band}_{m.group(2)}{path.suffix}"
        if not sib.is_file():
            raise CloudcoverError(f"{path}: looks like a 38-Cloud band file but {sib} is missing")
        with open_raster(sib) as src:
            planes.append(read_raster(src, sib, 1))
    if any(p.shape != planes[0].shape for p in planes):
        raise CloudcoverError(f"{path}: the 38-Cloud band files differ in size")
    return np.stack(planes)


def read_input(path: Path, pre) -> Raster:
    from cloudcover.train.preprocess import _read_pixels_or_fail

    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _read_tif(path, pre.bands)
    if suffix in (".png", ".jpg", ".jpeg"):
        if pre.bands != 3:
            raise CloudcoverError(f"{path}: a PNG/JPEG has RGB only, the model takes {pre.bands} bands "
                                  "(give it the GeoTIFF)")
        arr = _read_pixels_or_fail(path)
        arr = arr[..., :3] if arr.shape[-1] >= 3 else np.repeat(arr[..., :1], 3, axis=-1)
        return Raster(arr.astype(np.float32), np.ones(arr.shape[:2], bool), None)
    raise CloudcoverError(f"unsupported file type {suffix or '(none)'}; expected .tif, .tiff, .png, .jpg, .jpeg")


def _resize_plane(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))


def segment(model, raster: Raster, pre, threshold: float) -> np.ndarray:
    """Bool cloud mask at the input's own size."""
    from cloudcover.train.preprocess import _resize

    h, w = raster.pixels.shape[:2]
    x = _resize(raster.pixels, pre.input_size, pre.resize)
    logits = np.asarray(model.predict_on_batch(x[None]))[0, ..., 0]
    logits = _resize_plane(logits, h, w)
    return logits >= float(np.log(threshold / (1 - threshold)))


def write_mask(path: Path, mask: np.ndarray, valid: np.ndarray, profile: dict | None) -> None:
    if profile is not None:
        import rasterio

        data = np.where(valid, mask.astype(np.uint8), 255).astype(np.uint8)
        meta = dict(driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype="uint8", nodata=255,
                    compress="deflate")
        if profile.get("crs") is not None:
            meta.update(crs=profile["crs"], transform=profile["transform"])
        import warnings

        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():  # 38-Cloud inputs carry no georeferencing to keep
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with atomic_path(path) as tmp, rasterio.open(tmp, "w", **meta) as dst:
                dst.write(data[None])
                dst.set_band_description(1, "cloud mask: 1 cloud, 0 clear, 255 nodata")
    else:
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")


def mask_path(mask_dir: Path, src: Path, used: set[str], geotiff: bool) -> Path:
    """<stem>_mask.tif|png, with a counter when two inputs share a stem (e.g. S2L1C.tif of many patches)."""
    stem = src.stem if not _L8_BAND.match(src.stem) else _L8_BAND.match(src.stem).group(2)
    if stem.lower() == "s2l1c":  # CloudSEN12 files are all called S2L1C.tif: name them by their folder
        stem = src.parent.name
    name, k = f"{stem}_mask", 1
    while name in used:
        k += 1
        name = f"{stem}_mask_{k}"
    used.add(name)
    return mask_dir / f"{name}.{'tif' if geotiff else 'png'}"


def predict_segmentation(run_dir: str | Path, files: list[Path], failures: list[tuple[str, str]], mask_dir: Path,
                         threshold: float | None = None, progress: bool = True) -> list[dict]:
    """Masks for `files` into `mask_dir`; rows for the CSV; unreadable files are appended to `failures`."""
    import sys

    from tqdm import tqdm

    from cloudcover.train.data import coverage
    from cloudcover.train.training import load_run

    model, pre = load_run(run_dir)
    thr = pre.threshold if threshold is None else float(threshold)
    if not 0 < thr < 1:
        raise CloudcoverError(f"--threshold {thr}: must lie strictly between 0 and 1")
    mask_dir = Path(mask_dir)
    used: set[str] = set()
    rows = []
    for path in tqdm(files, desc="predict", unit="file", disable=not progress, file=sys.stderr):
        try:
            raster = read_input(path, pre)
            mask = segment(model, raster, pre, thr)
        except CloudcoverError as exc:
            failures.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        except Exception as exc:  # any decoder failure: report and go on with the batch
            failures.append((str(path), f"{type(exc).__name__}: {exc}"))
            continue
        out = mask_path(mask_dir, path, used, raster.profile is not None)
        write_mask(out, mask, raster.valid, raster.profile)
        n_valid = int(raster.valid.sum())
        n_cloud = int((mask & raster.valid).sum())
        cov = 100.0 * n_cloud / n_valid if n_valid else None
        rows.append({"path": str(path), "mask": str(out), "coverage_pct": cov,
                     "class": pre.class_names[coverage.bin_index(cov, pre.bins)] if cov is not None else "",
                     "cloud_pixels": n_cloud, "valid_pixels": n_valid, "threshold": thr})
    return rows
