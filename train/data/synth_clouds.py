"""The clouds of a synthetic scene: morphology, opacity, labels and shadow.

One field F per patch decides the label by exact quantile thresholds (so the coverage target is met to a
pixel): cloud = F > t1, thick = F > t2, thin = t1 < F <= t2. What F looks like depends on the morphology:

    cumulus     many small blobs (a few % of the scene wide), clustered by a large-scale field; the blobs grow
                with the cover, so a cloudy scene holds merged masses rather than a denser speckle
    stratiform  one large multi-scale deck with broken edges
    mixed       a deck with cumulus on and around it (clouds over clouds)
    haze        a smooth, thin, semi-transparent veil over large parts of the scene: mostly thin cloud

Opacity rises from a low value at the label's edge (real manual labels include the faint outskirts of a
cloud), slowly with the field to nearly opaque in small cores (5-25 % of the cloud), and with the depth inside
the cloud to full opacity 16-32 px (of 509) from its edge: small clouds let the ground show through, large
masses are opaque inside, as in real patches; a faint unlabelled halo fades outside. About a third of the decks
are grey. The shadow is the cloud's footprint (all of it that blocks the direct sun, see `shadow`) moved along the
sun's azimuth by a distance set by the cloud height, labelled where it falls on clear ground.

With `label_rim` (what `data synth` does by default, 12 px of 509) the label of clouds other than haze is the
visible cloud grown by a rim of fixed width (F dilated by an octagon, then the same exact quantile), and opacity
fades across the rim to barely anything at the label edge: where real manual labels put it (realism's edge
profile), and still decidable from the image. With label_rim=0 the label edge is where cloud becomes visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloudcover.train.data import coverage
from cloudcover.train.data.noise import fractal, quantile_threshold

MORPHOLOGIES = ("cumulus", "stratiform", "mixed", "haze")
SHADOW_LABEL = 0.35  # share of the direct sun blocked from which a clear pixel is labelled cloud shadow
SHADE_OPACITY = 0.3  # cloud opacity (as seen from above) that blocks all of the direct sun
SHADOW_DARK = (0.5, 0.9)  # per scene: how dark a full shadow is (1 - the diffuse share of the light)
GREY_DECK_P, GREY_DECK = 0.35, (0.6, 0.85)  # share of decks that are grey, and their brightness factor
# `label_rim`: the label runs a faint rim around visible cloud, as real manual labels do. RIM_PX is the
# width measured on the real CloudSEN12 samples (realism edge profile); RIM_OPACITY the opacity where the rim
# meets the visible cloud.
RIM_PX = 12.0
RIM_OPACITY = (0.35, 0.5)
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
# Real cumulus at high cover are merged masses, not a denser field of the same small blobs: half the cloudy
# CloudSEN12 sample's labelled cloud lies more than 24 px (of 509) from the label edge, against 8 px for blobs of
# a fixed scale at the same cover. Blob scale grows with the cover, x (1 + CUMULUS_GROW * cover): 13-16 px at 57 %,
# while 15 % cover keeps small clouds (5-6 px; real 6-7).
CUMULUS_GROW = 3.0
# Depth inside visible cloud (pixels of 509) at which opacity reaches the cloud's full value; the real cloudy sample
# is 0.2 above its ground 12-24 px inside the label and 0.3-0.4 deeper.
DEPTH_PX = (16.0, 32.0)
# Real clouds are not all white: a small or thin cumulus, or one in the shade of another, is grey. The brightness
# of non-haze cloud varies over the scene at the scale of cumulus cells (CLOUD_GREY_PX, pixels of 509) by a factor
# uniform in [1 - CLOUD_GREY, 1]: real cloud at 96 px has red p50 0.29, 0.33 here without it and 0.29 with it.
CLOUD_GREY, CLOUD_GREY_PX = 0.4, 60.0


@dataclass(frozen=True)
class Clouds:
    alpha: np.ndarray  # (canvas, canvas) opacity 0..1 (periodic: clouds just outside the crop cast shadows)
    mask: np.ndarray  # (size, size) uint8 codes CLEAR / THICK / THIN (shadow added by `shadow`)
    bright: np.ndarray  # (size, size) cloud brightness factor (texture, sunlit side)
    height: float  # 0 low (B10 dark) .. 1 high ice cloud (B10 bright)
    morphology: str


def _field(rng: np.random.Generator, kind: str, canvas: int, s: float, grow: float = 1.0) -> np.ndarray:
    def cumulus() -> np.ndarray:
        blobs = fractal(rng, canvas, beta=float(rng.uniform(4.0, 5.0)), n=1,
                        scale_px=float(rng.uniform(30, 80)) * s * grow)[0]
        cluster = fractal(rng, canvas, beta=4.0, n=1, scale_px=canvas / 2)[0]
        return blobs + np.float32(rng.uniform(0.4, 1.2)) * cluster

    if kind == "cumulus":
        return cumulus()
    deck = fractal(rng, canvas, beta=float(rng.uniform(3.2, 3.9)), n=1,
                   scale_px=float(rng.uniform(0.35, 1.0)) * canvas)[0]
    if kind == "stratiform":
        return deck
    if kind == "mixed":
        return deck + np.float32(rng.uniform(0.4, 0.9)) * cumulus()
    return fractal(rng, canvas, beta=float(rng.uniform(3.6, 4.4)), n=1, scale_px=canvas)[0]  # haze


def _dilate(F: np.ndarray, r: int) -> np.ndarray:
    """Grey dilation of a periodic field by an octagon of radius r (alternating 3 x 3 square and cross)."""
    from scipy.ndimage import maximum_filter, maximum_filter1d

    G = F
    for i in range(r):
        if i % 2 == 0:
            G = maximum_filter1d(maximum_filter1d(G, 3, axis=0, mode="wrap"), 3, axis=1, mode="wrap")
        else:
            G = maximum_filter(G, footprint=_CROSS, mode="wrap")
    return G


def _depth(inside: np.ndarray, scale: float) -> np.ndarray:
    """Distance of each pixel of a periodic region to its edge, in units of `scale`: exact up to 2, at least 2 beyond
    (the region is padded periodically by 2 scales); the whole canvas inside: 1 everywhere."""
    from scipy.ndimage import distance_transform_edt

    if inside.all():
        return np.ones(inside.shape, np.float32)
    p = int(2 * scale) + 2  # the canvas is periodic: the region continues across its border
    return distance_transform_edt(np.pad(inside, p, mode="wrap"))[p:-p, p:-p].astype(np.float32) / np.float32(scale)


def make_clouds(rng: np.random.Generator, style, target_pct: float, size: int, canvas: int,
                label_rim: float = 0.0) -> Clouds:
    """label_rim > 0 (pixels of a 509 px patch, e.g. RIM_PX): labelled cloud other than haze is the visible cloud
    grown by a rim of that width whose opacity fades from RIM_OPACITY to style.edge_opacity at the label edge;
    0: the label edge is where the cloud becomes visible (style.edge_opacity)."""
    s = size / 509.0
    crop = (slice(0, size), slice(0, size))
    n_px = size * size
    kind = MORPHOLOGIES[int(rng.choice(len(MORPHOLOGIES), p=style.morphology_p))]
    F = _field(rng, kind, canvas, s, grow=1.0 + CUMULUS_GROW * target_pct / 100.0)
    F = F / (F.std() + np.float32(1e-6))
    n_cloud = int(round(target_pct / 100.0 * n_px))
    haze = kind == "haze"
    rim_px = 0 if haze or label_rim <= 0 else max(1, int(round(label_rim * s)))
    # The label is the visible cloud grown by a rim of rim_px: thresholds on F dilated by an octagon of that
    # radius select exactly F's superlevel sets grown by it. The dilation's ties are broken by 1e-4 (F - G)
    # (<= 0, 0 at each maximum itself), so the quantile hits the target to a pixel and every labelled pixel
    # still has a visible source within the rim.
    if rim_px:  # in float64: the tie-breaker is finer than float32 resolves
        G = _dilate(F, rim_px).astype(np.float64)
        G += 1e-4 * (F - G)
    else:
        G = F
    Fc = G[crop]
    thick_share = float(rng.uniform(0.0, 0.3)) if haze else float(rng.uniform(*style.thick))
    n_thick = int(round(thick_share * n_cloud))
    t1 = quantile_threshold(Fc, n_cloud)
    t2 = quantile_threshold(Fc, n_thick)
    mask = np.zeros((size, size), np.uint8)
    mask[Fc > t1] = coverage.THIN
    mask[Fc > t2] = coverage.THICK
    if n_cloud == 0:
        return Clouds(np.zeros_like(F), mask, np.ones((size, size), np.float32), 0.0, "none")

    # Opacity: a_edge at the label's edge rising to a_max over the cloud's inner part.
    lo = t1 if math.isfinite(t1) else float(Fc.min()) - 1e-3
    # Real labelled cloud is mostly semi-transparent around small bright cores (CloudSEN12 samples at 96 px:
    # red p5 / p50 / p95 0.19 / 0.29 / 0.52 against 0.25 / 0.42 / 0.56 here with linear ramps to 15-40 %
    # cores; the cores match, the median did not), so the cores are smaller and opacity rises slower.
    core_n = max(1, int(round(float(rng.uniform(0.05, 0.25)) * n_cloud)))
    top = quantile_threshold(F[crop], core_n)  # (= Fc without a rim)
    top = top if math.isfinite(top) else float(Fc.max())
    width = max(top - lo, 1e-3)
    if haze:
        a_edge, a_max = float(rng.uniform(0.22, 0.32)), float(rng.uniform(0.5, 0.7))
    else:
        a_edge, a_max = float(rng.uniform(*style.edge_opacity)), float(rng.uniform(0.85, 1.0))
    u = np.clip((F - np.float32(lo)) / np.float32(width), 0, None)
    ramp = np.float32(rng.uniform(1.0, 2.0))  # > 1: opacity stays low over more of the cloud
    a_vis = float(rng.uniform(*RIM_OPACITY)) if label_rim > 0 else 0.0  # drawn for haze too: one rng sequence
    if not haze:
        # Opacity also grows with the depth inside visible cloud, full at depth D: a large mass is opaque inside
        # while a small cloud stays semi-transparent (the F ramp alone left big masses as faint as small clouds).
        u = np.maximum(u, _depth(F > np.float32(lo), max(1.0, float(rng.uniform(*DEPTH_PX)) * s)))
    if not rim_px:
        inside = np.float32(a_edge) + np.float32(a_max - a_edge) * np.minimum(u, 1) ** ramp
        halo = np.float32(0.15 * a_edge) * np.exp(np.minimum(F - np.float32(lo), 0) / np.float32(0.08 * width + 0.02))
        alpha = np.where(F > np.float32(lo), inside, halo).astype(np.float32)
    else:
        # Real manual labels run a rim beyond the visible cloud: opacity grows about linearly from the label
        # edge (~0.06 / 0.14 / 0.25 / 0.5 at 0-3 / 3-6 / 6-12 / 12-24 px of 509). Here it rises from a_edge at the
        # label edge to a_vis at the visible cloud over a rim of fixed width, and on to a_max in the cores, so
        # the labelled extent stays decidable from what is visible (the visible cloud grown by the rim).
        vis = (F > np.float32(lo)) & (G > lo)  # never empty: F's maxima are G's (the tie-breaker above)
        d = _depth(~vis, rim_px)  # distance from visible cloud, in rims
        ring = np.where(d <= 1, np.float32(a_edge) + np.float32(a_vis - a_edge) * (1 - d),
                        np.float32(a_edge) * np.exp((1 - d) / np.float32(0.25)))
        inside = np.float32(a_vis) + np.float32(a_max - a_vis) * np.minimum(u, 1) ** ramp
        alpha = np.where(vis, inside, ring).astype(np.float32)

    # Brightness: bumpy tops, a bit brighter in the cores, the sunlit side brighter and the far side darker.
    ctex = fractal(rng, canvas, beta=2.4, n=1, scale_px=40 * s)[0][crop]
    dy, dx = math.sin(style.sun_azimuth), math.cos(style.sun_azimuth)
    gy, gx = np.gradient(F[crop])
    side = gx * np.float32(dx) + gy * np.float32(dy)
    side = np.clip(side / (side.std() + np.float32(1e-6)), -2.5, 2.5)
    core = np.minimum(u[crop], 1)
    # Bumps of +-5 % (real cloud texture at 96 px 0.035 against 0.049 with +-8 %).
    bright = (np.float32(style.cloud_bright) * (1 + np.float32(0.05) * ctex + np.float32(0.08) * core)
              * (1 - np.float32(style.cloud_relief) * side)).astype(np.float32)
    if kind in ("stratiform", "mixed") and rng.random() < GREY_DECK_P:
        # a grey deck (thinner, lower albedo, or in the shade of higher cloud): real thick cloud at 96 px has
        # red p5 / p50 0.19 / 0.29 against 0.32 / 0.43 here, but all-grey clouds cost synthetic accuracy
        bright *= np.float32(rng.uniform(*GREY_DECK))
    if not haze:  # cloud to cloud: some bright, some grey (see CLOUD_GREY)
        from scipy.special import ndtr

        g = fractal(rng, canvas, beta=3.0, n=1, scale_px=CLOUD_GREY_PX * s)[0][crop]
        bright *= (1 - np.float32(CLOUD_GREY) * ndtr(g / (g.std() + 1e-6))).astype(np.float32)
    height = float(rng.uniform(0.5, 1.0)) if (haze and rng.random() < 0.7) else float(rng.uniform(0.0, 0.15))
    return Clouds(alpha, mask, bright, height, kind)


def shadow(clouds: Clouds, style, rng: np.random.Generator, size: int) -> np.ndarray:
    """Shade strength (size, size) 0..1 cast by the clouds; labels it into clouds.mask where clear.

    A cloud blocks the direct sun long before it looks opaque from above (optical depth ~1 already removes most
    of the direct beam), so the shadow's footprint is the cloud's down to SHADE_OPACITY and its label reaches
    nearly to the cloud label's faint edge; how dark a full shadow is (the diffuse light left) varies per scene
    (SHADOW_DARK). Real CloudSEN12 samples: shadow 0.9-1.1 x the cloud's area at 15 % cover, red 0.56-0.77 of
    the nearby ground deep inside. A thin haze veil does not stop the direct beam: its faint shade is
    opacity ** 1.5, labelled only where it darkens the ground by SHADOW_LABEL."""
    s = size / 509.0
    dist = float(rng.uniform(*style.shadow_dist)) * s * (1.0 + 2.0 * clouds.height)
    # Shadows fall away from the sun.
    dy = int(round(-dist * math.sin(style.sun_azimuth)))
    dx = int(round(-dist * math.cos(style.sun_azimuth)))
    high = np.float32(1.0 - 0.6 * clouds.height)  # high cloud: more diffuse light reaches its shadow
    haze = clouds.morphology == "haze"
    cast = clouds.alpha ** np.float32(1.5) if haze else np.minimum(clouds.alpha / np.float32(SHADE_OPACITY), 1)
    block = np.roll(cast, (dy, dx), axis=(0, 1))[:size, :size] * high
    clouds.mask[(clouds.mask == coverage.CLEAR) & (block > SHADOW_LABEL)] = coverage.SHADOW
    if haze:
        return block.astype(np.float32)
    return (block * np.float32(rng.uniform(*SHADOW_DARK))).astype(np.float32)

