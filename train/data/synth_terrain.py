"""The ground of a synthetic scene: land cover, field mosaics, rivers, roads, relief, bright confounders.

Lengths are given in pixels of a full 509 px CloudSEN12 patch and scaled by `s = size / 509`, so a patch
synthesized at 256 px shows the same footprint as a real one (and, resized to the model's input, features
of the same apparent size). Everything bright on the ground (snow, sand, salt flats, roofs, sun glint) is
clear in the mask: telling them from cloud is what a model has to learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloudcover.train.data.noise import fractal, quantile_threshold
from cloudcover.train.data.synth_spectra import (DRYVEG, FOREST, ROOF, SALT, SAND, SNOW, SOIL, URBAN, VEG,
                                                 WATER)

# Biomes: natural covers (chosen by smooth selector fields) and crop covers of the field mosaic.
BIOMES = {
    "temperate": ((FOREST, VEG, SOIL), (VEG, VEG, SOIL, DRYVEG)),
    "arid": ((DRYVEG, SOIL, SAND), (DRYVEG, SOIL, VEG, SOIL)),
    "desert": ((SAND, SOIL, DRYVEG), (SOIL, DRYVEG, VEG, SAND)),  # salt flats: style.salt
    "boreal": ((FOREST, FOREST, VEG), (VEG, SOIL, DRYVEG, VEG)),
    "tropical": ((FOREST, VEG, VEG), (VEG, SOIL, VEG, DRYVEG)),
}
BIOME_NAMES = tuple(BIOMES)
# Per cover (COVER order), half of the first values: real CloudSEN12 ground at 96 px is twice as smooth (texture
# 0.013 against 0.027, red spread 0.028 against 0.062 in the realism benchmark).
TEXTURE = np.array([.07, .06, .02, .10, .025, .09, .06, .03, .015, .05], np.float32)
RELIEF = np.array([.6, .7, .0, .3, 1.0, .8, .7, .8, .0, .2], np.float32)  # hill-shading weight per cover


@dataclass(frozen=True)
class Ground:
    cover: np.ndarray  # (size, size) uint8 cover index (synth_spectra.COVER)
    light: np.ndarray  # (size, size) float32 multiplicative brightness (texture, parcels, relief)
    glint: np.ndarray | None  # (size, size) float32 spectrally flat specular reflectance on water, or None


def _parcels(rng: np.random.Generator, size: int, cell: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """A rotated mosaic of rectangular fields: two uniform [0, 1) values per parcel (cover pick, brightness)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    h = cell * float(rng.uniform(0.6, 1.6))
    iv = np.floor(v / np.float32(h)).astype(np.int64)
    shift = rng.random(4096).astype(np.float32)  # staggered field boundaries from row to row
    w = cell * float(rng.uniform(0.8, 2.5))
    iu = np.floor(u / np.float32(w) + shift[iv % 4096]).astype(np.int64)
    key = (iu * 7919 + iv * 104729) % 65521
    table = rng.random((2, 65521)).astype(np.float32)
    return table[0][key], table[1][key]


def _lines(rng: np.random.Generator, canvas: int, size: int, width: float, scale: float) -> np.ndarray:
    """Meandering lines one `width` wide: where a smooth field crosses zero (rivers, roads)."""
    f = fractal(rng, canvas, beta=4.0, n=1, scale_px=scale)[0][:size, :size]
    gy, gx = np.gradient(f)
    grad = np.sqrt(gx * gx + gy * gy) + np.float32(1e-6)
    return np.abs(f) / grad < np.float32(width / 2)


def tex_rough(rng: np.random.Generator, canvas: int, crop: tuple, s: float) -> np.ndarray:
    return fractal(rng, canvas, beta=2.6, n=1, scale_px=60 * s)[0][crop]


def make_ground(rng: np.random.Generator, style, size: int, canvas: int) -> Ground:
    """Cover map and brightness of the ground under the style's biome, snow, water, relief and sun."""
    s = size / 509.0
    crop = (slice(0, size), slice(0, size))
    n_px = size * size
    natural, crops = BIOMES[style.biome]
    g = fractal(rng, canvas, beta=4.0, n=6, scale_px=canvas / 2)[(slice(None),) + crop]
    elev, wet, ag = g[0], g[1], g[2]
    sel = g[3:6] + np.asarray(style.natural_bias, np.float32)[:, None, None]
    cover = np.asarray(natural, np.uint8)[np.argmax(sel, axis=0)]

    # Farmland: a mosaic of rectangular parcels over part of the scene, each with its own crop and brightness.
    pick, bright = _parcels(rng, size, 30.0 * s * float(rng.uniform(0.6, 1.6)), float(rng.uniform(0, math.pi)))
    crop_cover = np.asarray(crops, np.uint8)[np.minimum((pick * len(crops)).astype(np.int64), len(crops) - 1)]
    farm = ag > quantile_threshold(ag, round(style.farmland * n_px))
    cover = np.where(farm, crop_cover, cover)
    parcel_light = np.where(farm, np.float32(0.9) + np.float32(0.2) * bright, np.float32(1.0))

    # Towns with bright roofs (small blocks).
    town = g[3] * 0.6 + g[4] * 0.4
    urban = town > quantile_threshold(town, round(style.urban * n_px))
    block = max(2, round(6 * s))
    nb = size // block + 1
    roofs = np.repeat(np.repeat(rng.random((nb, nb), dtype=np.float32), block, 0), block, 1)[:size, :size]
    cover[urban] = URBAN
    cover[urban & (roofs > 0.8)] = ROOF

    # Roads and rivers; lakes in the lows of a wetness field.
    if style.roads:
        cover[_lines(rng, canvas, size, max(1.0, 3.0 * s), canvas / 3) & ~urban] = URBAN
    if style.water > 0:
        cover[wet < -quantile_threshold(-wet, round(style.water * n_px))] = WATER
    if style.river:
        cover[_lines(rng, canvas, size, max(1.5, float(rng.uniform(4, 14)) * s), canvas / 1.5)] = WATER

    # Snow on the heights, its edge broken by a rough field; salt in the desert lows.
    if style.snow > 0:  # mountains: ridges and valleys (ridged noise) that the snow line follows
        ridged = fractal(rng, canvas, beta=3.0, n=1, scale_px=canvas / 4)[0][crop]
        elev = elev + np.float32(1.2) * (np.float32(1) - np.abs(ridged))
        snowfield = elev + np.float32(0.5) * tex_rough(rng, canvas, crop, s)  # ragged, dendritic snow line
        cover[snowfield > quantile_threshold(snowfield, round(style.snow * n_px))] = SNOW
    if style.salt > 0:
        cover[wet < -quantile_threshold(-wet, round(style.salt * n_px))] = SALT

    # Brightness: texture per cover, parcels, relief shading lit from the sun's azimuth.
    tex = fractal(rng, canvas, beta=2.2, n=1, scale_px=40 * s)[0][crop]
    dy, dx = math.sin(style.sun_azimuth), math.cos(style.sun_azimuth)
    gy, gx = np.gradient(elev)
    slope = gx * np.float32(dx) + gy * np.float32(dy)
    slope = np.clip(slope / (np.std(slope) + np.float32(1e-6)), -3, 3)
    light = (1 + TEXTURE[cover] * tex) * (1 + np.float32(style.relief) * RELIEF[cover] * slope) * parcel_light
    if style.snow > 0:  # old, wind-blown or tree-dotted snow is greyer than fresh snow; shading then shows
        rocks = np.float32(1) + np.float32(0.25) * tex_rough(rng, canvas, crop, s / 3)  # rock, trees, crust
        light = np.where(cover == SNOW, light * rocks * np.float32(rng.uniform(0.5, 0.85)), light)
    light = np.maximum(light, np.float32(0.2)).astype(np.float32)

    glint = None
    if style.glint > 0 and (cover == WATER).any():
        gl = fractal(rng, canvas, beta=3.0, n=1, scale_px=canvas / 3)[0][crop]
        glint = np.where(cover == WATER, np.float32(style.glint) * np.clip(0.6 + 0.4 * gl, 0, 1.5), 0).astype(np.float32)
    return Ground(cover, light, glint)
