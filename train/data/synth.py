"""Synthetic CloudSEN12-like and 38-Cloud-like scenes: the offline default for the demo and the tests.

A scene is a textured ground (vegetation, bare soil, water, urban, snow; each with its own 13-band
top-of-atmosphere spectrum, texture and relief shading) under clouds made from one multi-scale noise
field F:

    cloud = F > t1          t1 chosen so that exactly round(target% x pixels) pixels are cloud
    thick = F > t2          t2 chosen so that a drawn share (45-85 %) of the cloud is an opaque core
    thin  = t1 < F <= t2    semi-transparent edge, opacity 0.35 .. 0.9 rising towards the core
    halo  = F <= t1         unlabelled haze fading from opacity 0.1 to 0
    shadow                  the cloud opacity displaced along the ROI's sun direction, darkening the ground

so the mask meets the drawn coverage to one pixel (TOLERANCE_PCT states what the tests hold it to).
Targets are snapped to whole pixels, so the only error left is ties in F (none in practice).
Coverage targets are balanced over the classes and kept MARGIN_PCT away from inner class edges so that
a label is decidable from a 96 x 96 rendering. Each ROI has its own style (land-cover mix, snow,
haze, sun, cloud type, shadow direction); every patch of it is a neighbouring tile on another date.
Deterministic: the same seed gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.data import coverage
from cloudcover.train.data.noise import fractal, quantile_threshold
from cloudcover.train.data.parallel import default_workers, pmap
from cloudcover.train.data.sources import CloudSEN12
from cloudcover.train.errors import CloudcoverError

FORMATS = ("cloudsen12", "38cloud")
NATIVE_SIZE = {"cloudsen12": 509, "38cloud": 384}
TOLERANCE_PCT = 0.01  # |coverage of the written mask - drawn target|, in percentage points
MARGIN_PCT = 4.0

COVER = ("vegetation", "soil", "water", "urban", "snow")
VEG, SOIL, WATER, URBAN, SNOW = range(5)
# Rough Sentinel-2 L1C top-of-atmosphere reflectance, B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12.
SIGNATURES = np.array([
    [.105, .072, .074, .048, .100, .240, .290, .310, .320, .100, .004, .170, .080],  # vegetation
    [.130, .110, .130, .165, .200, .230, .250, .265, .275, .090, .005, .330, .270],  # bare soil
    [.100, .075, .060, .035, .028, .022, .018, .016, .015, .006, .002, .008, .006],  # water
    [.160, .150, .150, .160, .180, .200, .210, .220, .230, .080, .005, .250, .220],  # urban
    [.700, .720, .700, .680, .660, .630, .600, .580, .560, .280, .020, .080, .050],  # snow (dark in SWIR)
], dtype=np.float32)
CLOUD = np.array([.520, .520, .510, .510, .520, .530, .530, .530, .530, .270, .110, .420, .320], np.float32)
# Share of light that still reaches shadowed ground (more in the blue: diffuse skylight).
SHADOW_KEEP = np.array([.55, .50, .45, .40, .38, .36, .35, .35, .35, .35, .35, .33, .33], np.float32)
HAZE = np.array([.020, .014, .008, .004, .004, .002, .001, .001, .001, .0, .0, .0, .0], np.float32)
TEXTURE = np.array([.18, .12, .04, .22, .06], np.float32)  # multiplicative texture amplitude per cover
RELIEF = np.array([.08, .10, .0, .04, .30], np.float32)  # hill-shading strength per cover
# Native resolution per band in 10 m pixels (B1, B9, B10 are 60 m; rendered here as 4 x 4 blocks).
COARSEN = (4, 1, 1, 1, 2, 2, 2, 1, 2, 4, 4, 2, 2)
LANDSAT = {"red": 3, "green": 2, "blue": 1, "nir": 7}  # 38-Cloud bands taken from the S2 spectra


@dataclass
class SynthConfig:
    """What `cloudcover data synth` makes."""

    out: Path
    format: str = "cloudsen12"  # cloudsen12 | 38cloud
    n: int = 480
    seed: int = 0
    size: int | None = None  # pixels; None = the dataset's native size (509 or 384)
    patches_per_roi: int = 8
    bins: tuple[float, ...] = coverage.DEFAULT_BINS  # classes the coverage is balanced over
    margin_pct: float = MARGIN_PCT
    workers: int = field(default_factory=default_workers)
    progress: bool = True


@dataclass
class SynthResult:
    out: Path
    n: int
    rois: int
    counts: dict[str, int]  # patches per class
    max_error_pct: float  # largest |mask coverage - target| over all patches
    seconds: float
    report: Path


@dataclass(frozen=True)
class _Task:
    fmt: str
    seed: int
    roi: int
    k: int  # index within the ROI
    roi_name: str  # the split group: ROI folder (CloudSEN12) or Landsat scene id (38-Cloud)
    size: int
    target_pct: float
    cls: str
    files: tuple[str, ...]  # relative output paths: image file(s) then mask
    epsg: int
    origin: tuple[float, float]


# ----------------------------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class RoiStyle:
    """What stays the same over the patches of one ROI (place and season)."""

    cover_bias: tuple[float, float, float]  # log-weights of vegetation, soil, urban
    water: float  # share of the ground
    snow: float
    sun: float  # illumination factor
    haze: float  # multiplier on the blue path radiance
    spectra: np.ndarray  # (5, 13) signatures with this ROI's jitter
    cloud_bright: float
    cloud_beta: tuple[float, float]
    thick: tuple[float, float]  # thick share of cloud
    shadow_angle: float  # radians
    shadow_dist: tuple[float, float]  # pixels at 10 m


def roi_style(seed: int, roi: int) -> RoiStyle:
    rng = np.random.default_rng([seed, roi, 7919])
    snow = float(rng.uniform(0.08, 0.3)) if rng.random() < 0.2 else 0.0  # present, never dominant
    water = float(rng.uniform(0.03, 0.25)) if rng.random() < 0.6 else 0.0
    jitter = rng.normal(1.0, 0.08, size=(5, 1)) * rng.normal(1.0, 0.03, size=(5, 13))
    beta_lo = float(rng.uniform(2.7, 3.4))
    thick_lo = float(rng.uniform(0.45, 0.7))
    dist_lo = float(rng.uniform(6, 25))
    return RoiStyle(
        cover_bias=tuple(float(x) for x in rng.normal(0, 0.6, 3) + np.array([0.4, 0.0, -0.9])),
        water=water, snow=snow, sun=float(rng.uniform(0.85, 1.15)), haze=float(rng.uniform(0.3, 1.5)),
        spectra=(SIGNATURES * jitter).astype(np.float32), cloud_bright=float(rng.uniform(0.85, 1.2)),
        cloud_beta=(beta_lo, beta_lo + 0.5), thick=(thick_lo, thick_lo + 0.15),
        shadow_angle=float(rng.uniform(0, 2 * math.pi)), shadow_dist=(dist_lo, dist_lo * 1.6),
    )


def _coarsen(x: np.ndarray, f: int) -> np.ndarray:
    """Block-average f x f and expand back: a 20 m / 60 m band seen on the 10 m grid."""
    if f == 1:
        return x
    h, w = x.shape
    ph, pw = -h % f, -w % f
    xp = np.pad(x, ((0, ph), (0, pw)), mode="edge") if ph or pw else x
    blocks = xp.reshape(xp.shape[0] // f, f, xp.shape[1] // f, f).mean(axis=(1, 3))
    return np.repeat(np.repeat(blocks, f, axis=0), f, axis=1)[:h, :w]


def make_scene(rng: np.random.Generator, style: RoiStyle, target_pct: float, size: int,
               bands: tuple[int, ...] = tuple(range(13))) -> tuple[np.ndarray, np.ndarray]:
    """TOA reflectance (len(bands), size, size) float32 and the CloudSEN12 mask (size, size) uint8."""
    import scipy.fft

    canvas = scipy.fft.next_fast_len(size, real=True)
    crop = (slice(0, size), slice(0, size))
    n_px = size * size

    # Ground: smooth selector fields give land-cover regions; water in the lows of a wetness field,
    # snow on the heights of an elevation field that also provides the hill shading.
    g = fractal(rng, canvas, beta=4.0, n=5, scale_px=canvas / 2)[(slice(None),) + crop]
    elev, wet, sel = g[0], g[1], g[2:] + np.asarray(style.cover_bias, np.float32)[:, None, None]
    cover = np.array([VEG, SOIL, URBAN], np.uint8)[np.argmax(sel, axis=0)]
    cover[wet > quantile_threshold(wet, round(style.water * n_px))] = WATER
    cover[elev > quantile_threshold(elev, round(style.snow * n_px))] = SNOW
    tex = fractal(rng, canvas, beta=2.0, n=1, scale_px=48)[0][crop]
    slope = np.clip((elev - np.roll(elev, 1, axis=1)) / (np.std(elev - np.roll(elev, 1, axis=1)) + 1e-6), -3, 3)
    mult = (1 + TEXTURE[cover] * tex) * (1 + RELIEF[cover] * slope) * np.float32(style.sun)
    blocks = rng.random((size // 6 + 1, size // 6 + 1), dtype=np.float32)
    blocks = np.repeat(np.repeat(blocks, 6, axis=0), 6, axis=1)[:size, :size]
    mult = np.where(cover == URBAN, mult * (0.7 + 0.6 * blocks), mult).astype(np.float32)

    # Clouds: exact quantile thresholds on one multi-scale field.
    beta = float(rng.uniform(*style.cloud_beta))
    F = fractal(rng, canvas, beta=beta, n=1, scale_px=float(rng.uniform(canvas / 4, canvas)))[0]
    Fc = F[crop]
    n_cloud = int(round(target_pct / 100.0 * n_px))
    n_thick = int(round(float(rng.uniform(*style.thick)) * n_cloud))
    t1 = quantile_threshold(Fc, n_cloud)
    t2 = quantile_threshold(Fc, n_thick)
    hi = t2 if math.isfinite(t2) else float(Fc.max()) + 1e-3  # thin ramp top when there is no core
    lo = t1 if math.isfinite(t1) else float(Fc.min()) - 1e-3
    ramp = np.clip((F - np.float32(lo)) / np.float32(max(hi - lo, 1e-6)), 0, 1) ** np.float32(0.7)
    halo = np.float32(0.1) * np.exp(np.minimum(F - np.float32(lo), 0) / np.float32(0.15))
    alpha = np.where(F > t2, np.float32(1.0), np.where(F > t1, np.float32(0.35) + np.float32(0.55) * ramp, halo))
    if n_cloud == 0:
        alpha = np.zeros_like(F)
    alpha = alpha.astype(np.float32)

    # Shadow: the opacity displaced along the sun direction (periodic canvas: clouds just outside cast too).
    dist = float(rng.uniform(*style.shadow_dist))
    dy, dx = int(round(dist * math.sin(style.shadow_angle))), int(round(dist * math.cos(style.shadow_angle)))
    shade = np.roll(alpha, (dy, dx), axis=(0, 1))[crop] ** np.float32(1.5)

    mask = np.zeros((size, size), np.uint8)
    mask[Fc > t1] = coverage.THIN
    mask[Fc > t2] = coverage.THICK
    mask[(mask == coverage.CLEAR) & (shade > 0.45)] = coverage.SHADOW

    # Cloud brightness: textured, brighter in the opaque cores, lit on the sun side.
    ctex = fractal(rng, canvas, beta=2.6, n=1, scale_px=canvas / 4)[0][crop]
    core = np.clip((Fc - np.float32(hi)) / np.float32(0.8), 0, 1)
    side = Fc - np.roll(F, (dy // 4, dx // 4), axis=(0, 1))[crop]
    side = np.clip(side / (side.std() + 1e-6), -2, 2)
    cbright = (np.float32(style.cloud_bright) * (1 + 0.06 * ctex + 0.15 * core) * (1 - 0.06 * side)).astype(np.float32)
    a = alpha[crop]

    # Per band: ground (lit + shadowed part) under the cloud, plus haze and the cloud itself; the products
    # that do not depend on the band are formed once.
    lit = mult * (1 - a)  # ground weight outside shadow ...
    dark = lit * shade  # ... and the part of it in shadow
    lit -= dark
    noise = rng.standard_normal((size + 13, size), dtype=np.float32) * np.float32(0.0008)
    out = np.empty((len(bands), size, size), np.float32)
    tmp = np.empty((size, size), np.float32)
    clear = 1 - a
    for j, b in enumerate(bands):
        band = out[j]
        np.multiply(dark, SHADOW_KEEP[b], out=band)
        band += lit
        np.take(style.spectra[:, b], cover, out=tmp)
        band *= tmp
        np.multiply(clear, HAZE[b] * np.float32(style.haze), out=tmp)
        band += tmp
        np.multiply(cbright, CLOUD[b], out=tmp)
        tmp *= a
        band += tmp
        if len(bands) == 13 and COARSEN[b] > 1:
            band[:] = _coarsen(band, COARSEN[b])
        band += noise[j:j + size]  # one noise draw, a different window per band
    return out, mask


# ----------------------------------------------------------------------------------------------- files


def _write_tif(path: Path, data: np.ndarray, epsg: int, origin: tuple[float, float],
               descriptions: tuple[str, ...] | None = None) -> None:
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=f"EPSG:{epsg}", transform=Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]),
                   compress="deflate", zlevel=1, predictor=2, interleave="band", tiled=True,
                   blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)


def _make_patch(task: _Task, root: Path) -> dict:
    rng = np.random.default_rng([task.seed, task.roi, task.k])
    style = roi_style(task.seed, task.roi)
    if task.fmt == "cloudsen12":
        refl, mask = make_scene(rng, style, task.target_pct, task.size)
        dn = np.clip(np.rint(refl * 10000.0), 1, 65535).astype(np.uint16)
        _write_tif(root / task.files[0], dn, task.epsg, task.origin, CloudSEN12.bands)
        _write_tif(root / task.files[1], mask[None], task.epsg, task.origin)
    else:
        idx = tuple(LANDSAT.values())
        refl, mask = make_scene(rng, style, task.target_pct, task.size, bands=idx)
        dn = np.clip(np.rint((refl + 0.1) / 2e-5), 1, 65535).astype(np.uint16)
        for j, rel in enumerate(task.files[:-1]):
            _write_tif(root / rel, dn[j:j + 1], task.epsg, task.origin)
        gt = np.where((mask == coverage.THICK) | (mask == coverage.THIN), 255, 0).astype(np.uint8)
        _write_tif(root / task.files[-1], gt[None], task.epsg, task.origin)
    cov = coverage.coverage_pct(mask)
    if abs(cov - task.target_pct) > TOLERANCE_PCT:  # a bug in the thresholds, never a user error
        raise RuntimeError(f"synth: {task.files[0]} has {cov:.4f} % cloud, target {task.target_pct:.4f} %")
    return {"roi": task.roi_name, "image": task.files[0], "mask": task.files[-1], "class": task.cls,
            "target_pct": round(task.target_pct, 6), "coverage_pct": round(cov, 6),
            "shadow_pct": round(coverage.shadow_pct(mask), 4)}


class _Worker:
    """Picklable callable: one task -> files on disk + one report row."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, task: _Task) -> dict:
        return _make_patch(task, self.root)


def _draw_target(rng: np.random.Generator, c: int, bins: tuple[float, ...], margin: float) -> float:
    lo, hi = bins[c], bins[c + 1]
    last = c == len(bins) - 2
    if c == 0 and rng.random() < 0.25:
        return 0.0  # clear scenes
    if last and rng.random() < 0.15:
        return 100.0  # overcast scenes
    a = lo if c == 0 else lo + margin
    b = hi if last else hi - margin
    return float(rng.uniform(a, b))


def _snap(target: float, size: int, c: int, bins: tuple[float, ...]) -> float:
    """The nearest share a size x size mask can have (whole pixels), kept inside class c."""
    n_px = size * size
    k = round(target / 100.0 * n_px)
    while coverage.bin_index(100.0 * k / n_px, bins) < c:
        k += 1
    while coverage.bin_index(100.0 * k / n_px, bins) > c:
        k -= 1
    return 100.0 * k / n_px


def plan(config: SynthConfig, size: int) -> list[_Task]:
    """Every patch's class, coverage target and file names; classes balanced within each ROI."""
    bins = tuple(float(b) for b in config.bins)
    names = coverage.class_names(bins)
    k_cls = len(names)
    rng = np.random.default_rng([config.seed, 1])
    tasks = []
    start = dt.datetime(2018, 1, 1, 5, 0, 0)
    n_roi = math.ceil(config.n / config.patches_per_roi)
    for roi in range(n_roi):
        first = roi * config.patches_per_roi
        count = min(config.patches_per_roi, config.n - first)
        offset = int(rng.integers(k_cls))
        classes = rng.permutation([(first + i + offset) % k_cls for i in range(count)])
        zone = int(rng.integers(10, 60))
        x0, y0 = float(rng.integers(20, 60)) * 10000, float(rng.integers(100, 900)) * 10000
        day0 = start + dt.timedelta(days=int(rng.integers(0, 365)), minutes=int(rng.integers(0, 300)))
        path_row = (int(rng.integers(1, 233)), int(rng.integers(1, 248)))
        for k in range(count):
            c = int(classes[k])
            target = _snap(_draw_target(rng, c, bins, config.margin_pct), size, c, bins)
            when = day0 + dt.timedelta(days=5 * k)
            col, row = k % 4, k // 4
            origin = (x0 + col * size * 10.0, y0 - row * size * 10.0)
            if config.format == "cloudsen12":
                stamp = when.strftime("%Y%m%dT%H%M%S")
                pid = f"{stamp}_{stamp}_T{zone:02d}S{'ABCDEFGH'[roi % 8]}{'JKLMNPQR'[k % 8]}"
                roi_name = f"ROI_{roi:05d}"
                base = f"{roi_name}/{pid}"
                files = (f"{base}/S2L1C.tif", f"{base}/labels/manual_hq.tif")
            else:
                scene = roi_name = f"LC08_L1TP_{path_row[0]:03d}{path_row[1]:03d}_{day0:%Y%m%d}_{day0:%Y%m%d}_01_T1"
                stem = f"patch_{k + 1}_{row + 1}_by_{col + 1}_{scene}"
                files = tuple(f"38-Cloud_training/train_{b}/{b}_{stem}.TIF" for b in (*LANDSAT, "gt"))
            tasks.append(_Task(config.format, config.seed, roi, k, roi_name, size, target, names[c], files,
                               32600 + zone, origin))
    return tasks


def _check(config: SynthConfig) -> int:
    if config.format not in FORMATS:
        raise CloudcoverError(f"--format {config.format!r}: choose one of {', '.join(FORMATS)}")
    if config.n < 1:
        raise CloudcoverError(f"--n {config.n}: need at least one patch")
    if config.patches_per_roi < 1:
        raise CloudcoverError(f"--patches-per-roi {config.patches_per_roi}: need at least 1")
    size = config.size or NATIVE_SIZE[config.format]
    if size < 32:
        raise CloudcoverError(f"--size {size}: scenes need at least 32 pixels")
    bins = config.bins
    widths = [b - a for a, b in zip(bins, bins[1:])]
    if config.margin_pct < 0 or 2 * config.margin_pct >= min(widths):
        raise CloudcoverError(f"--margin {config.margin_pct}: must be >= 0 and under half the narrowest bin")
    out = Path(config.out)
    check_replaceable(out, "synth.json", "a synth output")
    return size


def synthesize(config: SynthConfig) -> SynthResult:
    """Write config.n scenes and OUT/synth.json (targets and achieved coverage per patch), atomically."""
    size = _check(config)
    t0 = time.perf_counter()
    tasks = plan(config, size)
    out = Path(config.out)
    with atomic_dir(out, "synth.json", "a synth output") as tmp:
        rows = pmap(_Worker(tmp), tasks, config.workers, desc=f"synth {config.format}", progress=config.progress)
        names = coverage.class_names(config.bins)
        counts = {c: sum(r["class"] == c for r in rows) for c in names}
        max_err = max(abs(r["coverage_pct"] - r["target_pct"]) for r in rows)
        seconds = time.perf_counter() - t0
        report = {
            "format": config.format, "n": config.n, "seed": config.seed, "size": size,
            "patches_per_roi": config.patches_per_roi, "rois": len({t.roi for t in tasks}),
            "bins": list(config.bins), "classes": names, "counts": counts, "margin_pct": config.margin_pct,
            "tolerance_pct": TOLERANCE_PCT, "max_error_pct": max_err, "cover_types": list(COVER),
            "patches": rows,
        }
        (tmp / "synth.json").write_text(json.dumps(report, indent=1) + "\n")
    return SynthResult(out, config.n, report["rois"], counts, max_err, seconds, out / "synth.json")
