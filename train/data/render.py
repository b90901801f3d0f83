"""Render satellite bands to the uint8 RGB the classifiers see, with one FIXED reflectance scaling.

Why fixed: a per-image stretch (min/max, percentiles) makes a fully overcast patch and a clear one look
alike in contrast, which is exactly what a coverage classifier must tell apart; the same transfer
function is applied to training data and, later, to any GeoTIFF given to `predict`.

    reflectance = DN * scale + offset                      (per source, below)
    u8          = round(255 * clip(reflectance / 0.6, 0, 1) ** (1 / 2.2))

Sentinel-2 L1C (CloudSEN12): reflectance = DN / 10000 (the processing-baseline-04.00 offset of -1000
is not applied: CloudSEN12 v1 stores pre-2022 scenes). Landsat 8 L1 (38-Cloud): reflectance =
DN * 2e-5 - 0.1 (the USGS REFLECTANCE_MULT/ADD constants, without the sun-elevation correction).
A reflectance of 0.6 (thick cloud, snow) maps to white; the 2.2 gamma keeps dark ground (water, forest,
shadow) apart. Nodata (0 DN, NaN, -3.4e38) renders black.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcover.train.data.raster import open_raster, read_raster
from cloudcover.train.errors import CloudcoverError

WHITE_REFLECTANCE = 0.6
GAMMA = 2.2
SCALING = (f"u8 = round(255 * clip(reflectance / {WHITE_REFLECTANCE}, 0, 1) ** (1/{GAMMA})); "
           "reflectance = DN/10000 (Sentinel-2 L1C) or DN*2e-5 - 0.1 (Landsat 8, 38-Cloud)")


@dataclass(frozen=True)
class RenderRule:
    """Which bands are red, green, blue (1-based, as rasterio counts) and how DN becomes reflectance."""

    name: str
    rgb_indexes: tuple[int, int, int]
    scale: float
    offset: float


S2_13 = RenderRule("sentinel2-l1c-13band", (4, 3, 2), 1e-4, 0.0)  # B4, B3, B2
S2_RGB = RenderRule("sentinel2-rgb-3band", (1, 2, 3), 1e-4, 0.0)  # CloudSEN12 RGB samples
L8_4 = RenderRule("landsat8-rgbn-4band", (1, 2, 3), 2e-5, -0.1)  # 38-Cloud red, green, blue, nir
L8_RGB = RenderRule("landsat8-rgb-3band", (1, 2, 3), 2e-5, -0.1)

RULES: dict[str, dict[int, RenderRule]] = {
    "cloudsen12": {13: S2_13, 3: S2_RGB},
    "38cloud": {4: L8_4, 3: L8_RGB},
}


def rule_for(source: str, count: int, where: str = "") -> RenderRule:
    """The rendering rule for a source and band count; a clear error for counts it cannot render."""
    if source not in RULES:
        raise CloudcoverError(f"unknown source {source!r}; known: {', '.join(RULES)}")
    rule = RULES[source].get(count)
    if rule is None:
        known = " or ".join(str(c) for c in RULES[source])
        prefix = f"{where}: " if where else ""
        raise CloudcoverError(f"{prefix}{count} bands; {source} images must have {known} bands")
    return rule


def _transfer(refl: np.ndarray) -> np.ndarray:
    x = np.clip(np.nan_to_num(refl, nan=0.0, posinf=0.0, neginf=0.0) / WHITE_REFLECTANCE, 0.0, 1.0)
    return np.rint(255.0 * x ** (1.0 / GAMMA)).astype(np.uint8)


_LUTS: dict[tuple[float, float], np.ndarray] = {}


def _lut(rule: RenderRule) -> np.ndarray:
    """uint16 DN -> uint8 in one table lookup (the fast path for real and synthetic data)."""
    key = (rule.scale, rule.offset)
    if key not in _LUTS:
        dn = np.arange(65536, dtype=np.float64)
        lut = _transfer(dn * rule.scale + rule.offset)
        lut[0] = 0  # 0 DN is nodata in both products
        _LUTS[key] = lut
    return _LUTS[key]


def render_bands(rgb_bands: np.ndarray, rule: RenderRule) -> np.ndarray:
    """Three bands-first DN planes (R, G, B) -> uint8 HxWx3."""
    if rgb_bands.dtype == np.uint16:
        out = _lut(rule)[rgb_bands]
    else:
        a = rgb_bands.astype(np.float32, copy=False)
        refl = np.where(a > 0, a * np.float32(rule.scale) + np.float32(rule.offset), 0.0)
        out = _transfer(refl)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1))


def render_rgb(bands: np.ndarray, source: str) -> np.ndarray:
    """Bands-first array as rasterio reads it -> uint8 HxWx3 RGB.

    source "cloudsen12": 13-band Sentinel-2 L1C (B1..B12 with B8A) or 3-band RGB, DN = reflectance x 10000;
    source "38cloud": 4-band red, green, blue, nir (or 3-band RGB) Landsat 8 DN.
    """
    bands = np.asarray(bands)
    if bands.ndim != 3:
        raise CloudcoverError(f"expected a bands-first (C, H, W) array, got shape {bands.shape}")
    rule = rule_for(source, bands.shape[0])
    idx = [i - 1 for i in rule.rgb_indexes]
    return render_bands(bands[idx], rule)


def resize_rgb(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """Area-average (box) resampling to size x size, so a downscaled patch keeps its cloud share."""
    if size is None or (rgb.shape[0] == size and rgb.shape[1] == size):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BOX))


_L8_BAND = re.compile(r"^(red|green|blue|nir)_(patch_.+)$", re.IGNORECASE)


def _read_38cloud_siblings(path: Path) -> np.ndarray | None:
    """A single 38-Cloud band file (train_red/red_patch_....TIF): read its red, green, blue siblings."""
    m = _L8_BAND.match(path.stem)
    if not m:
        return None
    planes = []
    for band in ("red", "green", "blue"):
        sib = path.parent.parent / f"{path.parent.name.rsplit('_', 1)[0]}_{band}" / f"{band}_{m.group(2)}{path.suffix}"
        if not sib.is_file():
            raise CloudcoverError(f"{path}: looks like a 38-Cloud band file but {sib} is missing")
        with open_raster(sib) as src:
            planes.append(read_raster(src, sib, 1))
    return np.stack(planes)


def read_patch_rgb(path: str | Path) -> np.ndarray:
    """Read any supported patch file and render it: uint8 HxWx3.

    The rule follows from the file: 13 bands -> Sentinel-2 L1C; 4 bands -> 38-Cloud red/green/blue/nir;
    3 bands uint8 -> already rendered (a prepared PNG/JPEG/TIFF), returned as is; 3 bands of another
    type -> Sentinel-2 RGB reflectance x 10000 (the CloudSEN12 samples); 1 band inside 38-Cloud's
    layout -> its red, green and blue files are read together.
    """
    path = Path(path)
    if not path.is_file():
        raise CloudcoverError(f"{path}: no such file")
    with open_raster(path) as src:
        count, dtype = src.count, src.dtypes[0]
        if count == 3 and dtype == "uint8":
            return np.ascontiguousarray(np.moveaxis(read_raster(src, path), 0, -1))
        if count == 13:
            rule = S2_13
        elif count == 3:
            rule = S2_RGB
        elif count == 4:
            rule = L8_4
        elif count == 1:
            planes = _read_38cloud_siblings(path)
            if planes is None:
                raise CloudcoverError(f"{path}: 1 band; expected 13 (Sentinel-2 L1C), 4 (38-Cloud "
                                      "red/green/blue/nir), 3 (RGB) or a 38-Cloud band file")
            return render_bands(planes, L8_RGB)
        else:
            raise CloudcoverError(f"{path}: {count} bands; expected 13 (Sentinel-2 L1C), 4 (38-Cloud "
                                  "red/green/blue/nir) or 3 (RGB)")
        return render_bands(read_raster(src, path, list(rule.rgb_indexes)), rule)
