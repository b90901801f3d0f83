"""Synthetic CloudSEN12-like and 38-Cloud-like scenes: the offline default for the demo and the tests.

A scene is a ground (synth_terrain: biome land cover, field mosaics, rivers, roads, towns with bright
roofs, relief shading lit from the sun, snow on the heights, sand and salt flats, sun glint on water)
under clouds (synth_clouds: cumulus fields, stratiform decks, decks with cumulus, thin haze or cirrus)
and their shadows cast away from the same sun, seen through an atmosphere (synth_spectra: surface
reflectance per cover and band, transmittance and path radiance for all 13 Sentinel-2 bands; B10 sees
only high cloud, SWIR B11/B12 tells snow from cloud). The mask comes from exact quantile thresholds on
the cloud field, so it meets the drawn coverage to one pixel (TOLERANCE_PCT states what the tests hold it
to): bright confounders are clear, haze is thin cloud, shadow is labelled where it darkens clear ground.
Coverage targets are balanced over the classes and kept MARGIN_PCT away from inner class edges so that
a label is decidable from a 96 x 96 rendering. Each ROI has its own style (biome, snow, water, relief,
sun, aerosol, cloud habits); every patch of it is a neighbouring tile on another date.
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
from cloudcover.train.data.synth_clouds import RIM_PX, make_clouds, shadow
from cloudcover.train.data.synth_spectra import (CLOUD, CLOUD_B10_HIGH, COARSEN, CONFOUNDERS, COVER, LANDSAT, PATH,
                                                 SHADOW_KEEP, SNOW, TRANSMIT, jittered_surface)
from cloudcover.train.data.synth_terrain import BIOME_NAMES, make_ground
from cloudcover.train.data.parallel import default_workers, pmap
from cloudcover.train.data.sources import CloudSEN12
from cloudcover.train.errors import CloudcoverError

FORMATS = ("cloudsen12", "38cloud")
NATIVE_SIZE = {"cloudsen12": 509, "38cloud": 384}
TOLERANCE_PCT = 0.01  # |coverage of the written mask - drawn target|, in percentage points
MARGIN_PCT = 4.0

MORPH_P = {  # cloud habits of a place: probabilities of cumulus, stratiform, mixed, haze
    "convective": (0.6, 0.1, 0.2, 0.1), "maritime": (0.2, 0.45, 0.25, 0.1), "hazy": (0.25, 0.2, 0.15, 0.4),
    "any": (0.35, 0.25, 0.2, 0.2)}

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
    # Pixels of a 509 px patch: label a faint rim around visible cloud as real manual labels do (RIM_PX = 12, the
    # width measured on the real CloudSEN12 samples; README, *Synthetic scenes on real patches*); 0 puts the label
    # edge where cloud becomes visible (the scenes before 2026-12-01).
    label_rim: float = RIM_PX


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
    label_rim: float = 0.0


# ----------------------------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class RoiStyle:
    """What stays the same over the patches of one ROI (place and season)."""

    biome: str  # synth_terrain.BIOMES key
    natural_bias: tuple[float, float, float]  # log-weights of the biome's three natural covers
    farmland: float  # share of the ground in field mosaics
    urban: float
    roads: bool
    river: bool
    water: float  # share in lakes
    snow: float
    salt: float  # share of salt flats (desert lows)
    relief: float  # hill-shading strength
    glint: float  # specular reflectance on water (0: none)
    sun: float  # illumination factor
    sun_azimuth: float  # radians; shading and shadows are consistent with it
    aerosol: float  # multiplier on the path radiance
    spectra: np.ndarray  # (len(COVER), 13) surface signatures with this ROI's jitter
    cloud_bright: float
    cloud_relief: float  # brightness difference of sunlit and far sides of clouds
    morphology_p: tuple[float, float, float, float]
    thick: tuple[float, float]  # thick share of (non-haze) cloud
    edge_opacity: tuple[float, float]  # opacity at the edge of labelled cloud
    shadow_dist: tuple[float, float]  # pixels of a 509 px patch, for a low cloud


def roi_style(seed: int, roi: int, label_rim: float = 0.0) -> RoiStyle:
    rng = np.random.default_rng([seed, roi, 7919])
    biome = BIOME_NAMES[int(rng.choice(len(BIOME_NAMES), p=(0.32, 0.32, 0.07, 0.14, 0.15)))]
    r = rng.random()  # snow: absent mostly, sometimes most of the scene (a clear scene can be white)
    snow = 0.0 if r < 0.85 else float(rng.uniform(0.05, 0.3)) if r < 0.93 else float(rng.uniform(0.3, 0.6))
    water = float(rng.uniform(0.02, 0.2)) if rng.random() < 0.35 else 0.0
    habit = ("convective", "maritime", "hazy", "any")[int(rng.integers(4))]
    thick_lo = float(rng.uniform(0.55, 0.85))
    # With a labelled rim the label edge is where the cloud barely lifts the ground, as in real manual labels
    # (realism edge profile: mean RGB 0.02-0.035 above the local clear ground in the outer 3 px of 509, opacity
    # ~0.06); without one it is where the cloud becomes visible (0.28-0.48).
    edge_lo = float(rng.uniform(0.04, 0.08) if label_rim > 0 else rng.uniform(0.28, 0.38))
    # Shadow displacement of a low cloud, pixels of 509: the real CloudSEN12 samples' shadows lie 40-111 px from
    # their clouds (the peak of the cloud-to-shadow label cross-correlation; 0.4-1.1 km at 10 m).
    dist_lo = float(rng.uniform(25, 90))
    return RoiStyle(
        biome=biome, natural_bias=tuple(float(x) for x in rng.normal(0, 0.6, 3)),
        farmland=float(rng.uniform(0.0, 0.8)) if rng.random() < 0.75 else 0.0,
        urban=float(rng.uniform(0.0, 0.12)) if rng.random() < 0.5 else 0.0,
        roads=bool(rng.random() < 0.6), river=bool(rng.random() < 0.4), water=water, snow=snow,
        salt=float(rng.uniform(0.02, 0.12)) if biome == "desert" and water == 0 and rng.random() < 0.3 else 0.0,
        relief=float(rng.uniform(0.02, 0.12)) * (3.0 if snow > 0 else 1.0),
        glint=float(rng.uniform(0.05, 0.35)) if rng.random() < 0.3 else 0.0,
        sun=float(rng.uniform(0.8, 1.15)), sun_azimuth=float(rng.uniform(0, 2 * math.pi)),
        aerosol=float(rng.uniform(0.5, 1.8)), spectra=jittered_surface(rng),
        # A darker range for the whole scene (0.6-1.05) cost the demo classifier 2.8 points of synthetic test
        # accuracy over 2 seeds and moved no real patch (realism); real cloud is greyer cloud by cloud instead
        # (synth_clouds.CLOUD_GREY).
        cloud_bright=float(rng.uniform(0.8, 1.15)), cloud_relief=float(rng.uniform(0.03, 0.12)),
        morphology_p=MORPH_P[habit], thick=(thick_lo, min(1.0, thick_lo + 0.15)),
        edge_opacity=(edge_lo, edge_lo + (0.03 if label_rim > 0 else 0.1)), shadow_dist=(dist_lo, dist_lo * 1.5),
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
               bands: tuple[int, ...] = tuple(range(13)), info: dict | None = None,
               label_rim: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """TOA reflectance (len(bands), size, size) float32 and the CloudSEN12 mask (size, size) uint8.

    label_rim: see synth_clouds.make_clouds (give the style roi_style(..., label_rim) too).
    `info`, when given, receives what the scene holds: cloud morphology and height, snow and other bright
    clear cover shares in percent (synth.json lists them per patch)."""
    import scipy.fft

    canvas = scipy.fft.next_fast_len(size, real=True)
    ground = make_ground(rng, style, size, canvas)
    # Per scene (date): illumination, aerosol and a slight colour cast vary around the place's values. Drawn
    # before the clouds, so one rng state gives the same ground under any cloud cover (what the tests compare).
    light = ground.light * np.float32(style.sun * rng.uniform(0.92, 1.08))
    aerosol = np.float32(style.aerosol * rng.uniform(0.8, 1.25))
    cast = rng.normal(1.0, 0.02, 13).astype(np.float32)
    noise = rng.standard_normal((size + 13, size), dtype=np.float32) * np.float32(0.0008)
    clouds = make_clouds(rng, style, target_pct, size, canvas, label_rim)
    shade = shadow(clouds, style, rng, size)
    a = clouds.alpha[:size, :size]
    if info is not None:
        info.update(morphology=clouds.morphology, cloud_height=round(clouds.height, 3), biome=style.biome,
                    snow_pct=round(100.0 * float((ground.cover == SNOW).mean()), 3),
                    bright_ground_pct=round(100.0 * float(np.isin(ground.cover, CONFOUNDERS).mean()), 3))
    lit = light * (1 - a)  # surface weight outside shadow ...
    dark = lit * shade  # ... and the part of it in shadow
    lit -= dark
    cb = clouds.bright * a
    out = np.empty((len(bands), size, size), np.float32)
    tmp = np.empty((size, size), np.float32)
    for j, b in enumerate(bands):
        band = out[j]
        np.multiply(dark, SHADOW_KEEP[b], out=band)
        band += lit
        np.take(style.spectra[:, b], ground.cover, out=tmp)
        band *= tmp
        if ground.glint is not None:
            band += ground.glint * (1 - a) * (1 - shade)
        band *= TRANSMIT[b] * cast[b]
        band += (1 - a) * (PATH[b] * aerosol)  # path radiance below the cloud top is hidden by it
        cloud_b = CLOUD_B10_HIGH * np.float32(clouds.height) + np.float32(0.01) if b == 10 else CLOUD[b]
        band += cb * np.float32(cloud_b)
        if len(bands) == 13 and COARSEN[b] > 1:
            band[:] = _coarsen(band, COARSEN[b])
        band += noise[j:j + size]  # one noise draw, a different window per band
    return out, clouds.mask


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
    style = roi_style(task.seed, task.roi, task.label_rim)
    info: dict = {}
    if task.fmt == "cloudsen12":
        refl, mask = make_scene(rng, style, task.target_pct, task.size, info=info, label_rim=task.label_rim)
        dn = np.clip(np.rint(refl * 10000.0), 1, 65535).astype(np.uint16)
        _write_tif(root / task.files[0], dn, task.epsg, task.origin, CloudSEN12.bands)
        _write_tif(root / task.files[1], mask[None], task.epsg, task.origin)
    else:
        idx = tuple(LANDSAT.values())
        refl, mask = make_scene(rng, style, task.target_pct, task.size, bands=idx, info=info, label_rim=task.label_rim)
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
            "shadow_pct": round(coverage.shadow_pct(mask), 4), **info}


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
                               32600 + zone, origin, config.label_rim))
    return tasks


def _check(config: SynthConfig) -> int:
    if config.format not in FORMATS:
        raise CloudcoverError(f"--format {config.format!r}: choose one of {', '.join(FORMATS)}")
    if config.n < 1:
        raise CloudcoverError(f"--n {config.n}: need at least one patch")
    if config.label_rim < 0:
        raise CloudcoverError(f"label_rim {config.label_rim}: must be >= 0 (pixels of a 509 px patch)")
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
            "label_rim": config.label_rim,
            "bins": list(config.bins), "classes": names, "counts": counts, "margin_pct": config.margin_pct,
            "tolerance_pct": TOLERANCE_PCT, "max_error_pct": max_err, "cover_types": list(COVER),
            "patches": rows,
        }
        (tmp / "synth.json").write_text(json.dumps(report, indent=1) + "\n")
    return SynthResult(out, config.n, report["rois"], counts, max_err, seconds, out / "synth.json")
