"""Scene elements of the synthetic generator carry their intended label, with physically sensible values.

The oracle for each element is the same scene rendered without clouds: make_scene draws the ground, the
illumination and the noise before the clouds, so one rng seed gives the identical ground at any coverage
(checked first). Spectral facts come from synth_spectra's documented physics, not from the labels.
"""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cloudcover.train.data import coverage, synth_clouds
from cloudcover.train.data.synth import (TOLERANCE_PCT, SynthConfig, make_scene, plan, roi_style, synthesize)
from cloudcover.train.data.synth_clouds import MORPHOLOGIES
from cloudcover.train.errors import CloudcoverError

B2, B3, B4, B8, B10, B11 = 1, 2, 3, 7, 10, 11
ONLY = {m: tuple(float(i == k) for i in range(len(MORPHOLOGIES))) for k, m in enumerate(MORPHOLOGIES)}


def _style(roi: int = 3, **kw):
    return dataclasses.replace(roi_style(0, roi), **kw)


def _pair(style, target: float, size: int = 128, seed: int = 5):
    """The scene at `target` % cloud and the same scene without clouds."""
    cloudy = make_scene(np.random.default_rng(seed), style, target, size)
    clear = make_scene(np.random.default_rng(seed), style, 0.0, size)
    return cloudy, clear


def test_ground_is_the_same_under_any_cloud_cover():
    (refl, mask), (clear, cmask) = _pair(_style(morphology_p=ONLY["cumulus"]), 30.0)
    assert (cmask == coverage.CLEAR).all()
    untouched = mask == coverage.CLEAR
    # far from clouds and shadows the two renderings agree to the sensor noise
    far = untouched & (np.abs(refl[B4] - clear[B4]) < 0.5)
    assert np.median(np.abs(refl[B4][far] - clear[B4][far])) < 0.01


@pytest.mark.parametrize("snow", [0.3, 0.8])
def test_snow_is_clear_bright_in_visible_dark_in_swir(snow):
    style = _style(snow=snow)
    refl, mask = make_scene(np.random.default_rng(1), style, 0.0, 128)
    ndsi = (refl[B3] - refl[B11]) / (refl[B3] + refl[B11])
    snowy = (refl[B3] > 0.25) & (ndsi > 0.5)  # the snow signature (NDSI); nothing else has it
    assert snowy.mean() > 0.5 * snow
    assert (mask[snowy] == coverage.CLEAR).all()
    # cloud, unlike snow, stays bright in SWIR
    refl2, mask2 = make_scene(np.random.default_rng(1), _style(snow=snow, morphology_p=ONLY["stratiform"]), 60.0, 128)
    thick = mask2 == coverage.THICK
    assert np.median(refl2[B11][thick]) > 2 * np.median(refl[B11][snowy])


def test_bright_confounders_without_cloud_are_all_clear():
    """Salt flats, sand, roofs and sun glint can be as bright as cloud in RGB; at 0 % they are all clear."""
    style = _style(roi=2, biome="desert", salt=0.15, water=0.1, glint=0.3, urban=0.1, snow=0.0)
    refl, mask = make_scene(np.random.default_rng(2), style, 0.0, 128)
    bright = refl[[B4, B3, B2]].mean(axis=0) > 0.3
    assert bright.mean() > 0.05
    assert (mask == coverage.CLEAR).all()


def test_haze_is_thin_cloud_semi_transparent_and_seen_by_cirrus_band():
    style = _style(morphology_p=ONLY["haze"])
    for seed in range(4):
        (refl, mask), (clear, _) = _pair(style, 60.0, seed=seed)
        cloud = mask != coverage.CLEAR
        cloud &= mask != coverage.SHADOW
        thin = mask == coverage.THIN
        assert coverage.coverage_pct(mask) == pytest.approx(60.0, abs=TOLERANCE_PCT)
        assert thin.sum() >= 0.7 * cloud.sum()  # mostly thin
        lift = refl[B2][thin] - clear[B2][thin]
        assert np.median(lift) > 0.01  # brighter than the ground it veils ...
        assert np.corrcoef(refl[B4][thin], clear[B4][thin])[0, 1] > 0.3  # ... which still shows through
        # B10 sees the veil when it is high (cirrus), never the ground
        assert clear[B10].max() < 0.02
        if refl[B10][thin].mean() > 0.05:
            assert refl[B10][thin].mean() > 3 * refl[B10][mask == coverage.CLEAR].mean()


def test_shadow_is_labelled_darker_and_cast_away_from_the_sun():
    style = _style(morphology_p=ONLY["cumulus"], sun_azimuth=0.0)  # sun in +x: shadows fall towards -x
    (refl, mask), (clear, _) = _pair(style, 20.0, size=192, seed=7)
    sh = mask == coverage.SHADOW
    assert sh.mean() > 0.005
    ratio = refl[B8][sh] / clear[B8][sh]
    assert 0.3 < np.median(ratio) < 0.85  # diffuse light remains: darker, not black
    cloud = (mask == coverage.THICK) | (mask == coverage.THIN)
    # a shadow pixel has its cloud towards the sun (+x) within the cast distance, not away from it
    toward = np.zeros_like(cloud)
    away = np.zeros_like(cloud)
    reach = int(style.shadow_dist[1] * 192 / 509 * 1.3) + 2  # the longest cast of a low (cumulus) cloud
    for k in range(1, reach + 1):
        toward |= np.roll(cloud, -k, axis=1)  # 192 px is its own canvas: clouds across the edge cast in
        away |= np.roll(cloud, k, axis=1)
    assert toward[sh].mean() > 0.9
    assert toward[sh].mean() > away[sh].mean() + 0.2


def test_a_cumulus_shadow_is_about_as_large_as_its_cloud():
    # A cloud blocks the direct sun down to its faint edge, so at low cover (shadows land on clear ground) the
    # labelled shadow is of the order of the labelled cloud: the real CloudSEN12 samples at 15 % cover have 0.9-1.1
    # times as much shadow as cloud. Shadows cut at a visible opacity gave 0.1.
    ratios = []
    for roi in range(8):
        style = dataclasses.replace(roi_style(0, roi, 12.0), morphology_p=ONLY["cumulus"])
        _, mask = make_scene(np.random.default_rng(roi), style, 12.0, 128, bands=(3,), label_rim=12.0)
        cloud = np.isin(mask, (coverage.THICK, coverage.THIN)).sum()
        ratios.append((mask == coverage.SHADOW).sum() / cloud)
    assert 0.4 < np.median(ratios) < 1.2


@pytest.mark.parametrize("morph", ["cumulus", "stratiform", "haze"])
def test_clouds_are_grey_or_white_cloud_by_cloud(monkeypatch, morph):
    # The same rng without greying (CLOUD_GREY = 0 still draws its field) is the oracle: the brightness ratio is
    # the greying factor itself, uniform in [1 - CLOUD_GREY, 1] over the scene; a haze veil is not greyed.
    style = _style(morphology_p=ONLY[morph])
    grey = synth_clouds.make_clouds(np.random.default_rng(4), style, 40.0, 128, 128, 12.0)
    monkeypatch.setattr(synth_clouds, "CLOUD_GREY", 0.0)
    white = synth_clouds.make_clouds(np.random.default_rng(4), style, 40.0, 128, 128, 12.0)
    assert np.array_equal(grey.mask, white.mask) and np.array_equal(grey.alpha, white.alpha)
    ratio = grey.bright / white.bright
    if morph == "haze":
        assert np.allclose(ratio, 1.0)
        return
    assert ratio.min() >= 0.6 - 1e-6 and ratio.max() <= 1.0 + 1e-6
    assert np.quantile(ratio, 0.1) < 0.7 and np.quantile(ratio, 0.9) > 0.9


@pytest.mark.parametrize("morph", MORPHOLOGIES)
@pytest.mark.parametrize("target", [0.0, 0.3, 37.5, 100.0])
def test_requested_coverage_is_met_for_every_morphology(morph, target):
    _, mask = make_scene(np.random.default_rng(3), _style(morphology_p=ONLY[morph]), target, 64)
    assert coverage.coverage_pct(mask) == pytest.approx(target, abs=max(TOLERANCE_PCT, 100 / 64 ** 2))


def test_cumulus_fields_have_many_small_clouds_and_decks_few_large():
    from scipy import ndimage

    counts = {}
    for morph in ("cumulus", "stratiform"):
        n = []
        for seed in range(3):
            _, mask = make_scene(np.random.default_rng(seed), _style(morphology_p=ONLY[morph]), 20.0, 256)
            lab, _ = ndimage.label(np.isin(mask, (coverage.THICK, coverage.THIN)))
            n.append(int((np.bincount(lab.ravel())[1:] >= 20).sum()))  # clouds, not specks of a broken deck edge
        counts[morph] = np.median(n)
    assert counts["cumulus"] > counts["stratiform"]


def test_classes_stay_balanced_at_demo_scale():
    tasks = plan(SynthConfig(out=Path("unused"), n=1440, seed=0, size=256), 256)
    per_class = {}
    for t in tasks:
        per_class[t.cls] = per_class.get(t.cls, 0) + 1
    assert sorted(per_class.values()) == [360, 360, 360, 360]


def test_38cloud_same_seed_same_bytes(tmp_path):
    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.TIF"))}

    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        synthesize(SynthConfig(out=out, format="38cloud", n=4, seed=3, size=48, workers=1, progress=False))
    assert digest(a) == digest(b) and len(digest(a)) == 20


def test_synth_json_says_what_each_scene_holds(tmp_path):
    import json

    out = tmp_path / "s"
    synthesize(SynthConfig(out=out, n=8, seed=0, size=48, patches_per_roi=4, workers=1, progress=False))
    rows = json.loads((out / "synth.json").read_text())["patches"]
    assert all(r["morphology"] in (*MORPHOLOGIES, "none") and 0 <= r["snow_pct"] <= r["bright_ground_pct"] <= 100 for r in rows)
    assert all(r["morphology"] == "none" or r["target_pct"] > 0 for r in rows)


def test_grey_decks_are_the_same_cloud_dimmed_by_the_drawn_factor(monkeypatch):
    """A grey deck keeps its shape, label and opacity; only its brightness drops, by one factor in GREY_DECK."""
    style = _style(morphology_p=ONLY["stratiform"])
    monkeypatch.setattr(synth_clouds, "CLOUD_GREY", 0.0)  # (its field is drawn after the deck's factor)

    def clouds(p: float):
        monkeypatch.setattr(synth_clouds, "GREY_DECK_P", p)
        return synth_clouds.make_clouds(np.random.default_rng(4), style, 50.0, 96, 96)

    plain, grey = clouds(0.0), clouds(1.0)
    np.testing.assert_array_equal(plain.mask, grey.mask)
    np.testing.assert_array_equal(plain.alpha, grey.alpha)
    ratio = grey.bright / plain.bright
    lo, hi = synth_clouds.GREY_DECK
    assert lo <= ratio.min() and ratio.max() <= hi
    assert ratio.max() - ratio.min() < 1e-5  # one factor for the whole deck


def _depth_px(region: np.ndarray) -> np.ndarray:
    """Distance of each pixel of a periodic region to the nearest pixel outside it (0 outside)."""
    from scipy.ndimage import distance_transform_edt

    n = region.shape[0]
    return distance_transform_edt(np.tile(region, (3, 3)))[n:2 * n, n:2 * n]


@pytest.mark.parametrize("morph", ["cumulus", "stratiform", "mixed"])
def test_opacity_rises_from_the_label_edge_and_with_depth(morph):
    """The label starts where cloud is faint but visible (edge opacity >= 0.28); opacity grows inward, with the
    field and with the depth, so whatever lies DEPTH_PX[1] (of 509) inside the cloud is at its full opacity, while
    the first pixel inside lets the ground show through."""
    from cloudcover.train.data.synth_clouds import DEPTH_PX, make_clouds

    size, n_deep = 128, 0
    for seed in range(3):
        c = make_clouds(np.random.default_rng(seed), _style(morphology_p=ONLY[morph]), 50.0, size, size)
        lab = c.mask != coverage.CLEAR
        a = c.alpha[lab]
        assert a.min() >= 0.27
        depth = _depth_px(lab)
        deep = depth >= DEPTH_PX[1] * size / 509 + 1
        assert (c.alpha[deep] >= a.max() - 1e-5).all()  # full opacity deep inside
        assert np.median(c.alpha[lab & (depth <= 1)]) < 0.6  # semi-transparent at the edge
        n_deep += int(deep.sum())
    assert n_deep > 0


def test_small_clouds_stay_semi_transparent_and_masses_grow_with_cover():
    """A field of small cumulus is mostly semi-transparent (real almost-clear samples: half the labelled cloud
    under 0.07 above its ground); at high cover the clouds merge into masses whose inside is far from any edge
    (real cloudy sample: median depth 24 px of 509), not a denser field of the same small blobs."""
    from cloudcover.train.data import synth_clouds
    from cloudcover.train.data.synth_clouds import make_clouds

    size = 256
    style = _style(morphology_p=ONLY["cumulus"])
    small = make_clouds(np.random.default_rng(0), style, 12.0, size, size)
    assert np.median(small.alpha[small.mask != coverage.CLEAR]) < 0.8

    def median_depth(cover: float, grow: float) -> float:
        depths = []
        for seed in range(3):
            old = synth_clouds.CUMULUS_GROW
            synth_clouds.CUMULUS_GROW = grow
            try:
                c = make_clouds(np.random.default_rng(seed), style, cover, size, size)
            finally:
                synth_clouds.CUMULUS_GROW = old
            lab = c.mask != coverage.CLEAR
            depths.append(np.median(_depth_px(lab)[lab]) * 509 / size)
        return float(np.median(depths))

    merged, fixed = median_depth(57.0, synth_clouds.CUMULUS_GROW), median_depth(57.0, 0.0)
    assert merged > 1.4 * fixed
    assert median_depth(15.0, synth_clouds.CUMULUS_GROW) < 0.6 * merged


@pytest.mark.parametrize("morph", ["cumulus", "stratiform", "mixed"])
@pytest.mark.parametrize("size", [128, 256])
def test_label_rim_labels_visible_cloud_with_a_faint_rim(morph, size):
    """The label runs a
    faint rim (opacity from ~0.04-0.11 at its edge) around visible cloud (opacity >= RIM_OPACITY[0]) and no
    further: every labelled pixel lies within the rim's width of visible cloud, as real manual labels do."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    from cloudcover.train.data.synth_clouds import RIM_OPACITY, RIM_PX, make_clouds

    rim = max(1, round(RIM_PX * size / 509))
    style = dataclasses.replace(roi_style(0, 3, label_rim=RIM_PX), morphology_p=ONLY[morph])
    assert 0.04 <= style.edge_opacity[0] and style.edge_opacity[1] <= 0.11
    for seed in range(3):
        c = make_clouds(np.random.default_rng(seed), style, 40.0, size, size, label_rim=RIM_PX)
        lab = c.mask != coverage.CLEAR
        a = c.alpha[lab]
        assert coverage.coverage_pct(c.mask) == pytest.approx(40.0, abs=TOLERANCE_PCT)
        assert a.min() >= 0.02  # faint, never nothing
        edge = lab & ~binary_erosion(lab, border_value=1)
        assert np.median(c.alpha[edge]) < 0.15  # the label edge is barely visible ...
        visible = c.alpha >= RIM_OPACITY[0] - 1e-6
        tiles = np.tile(visible, (3, 3))  # the canvas is periodic
        dist = distance_transform_edt(~tiles)[size:2 * size, size:2 * size]
        assert dist[lab].max() <= 1.2 * rim + 1  # ... and at most a rim away from visible cloud (octagon rim)


@pytest.mark.parametrize("fmt,size,ext", [("cloudsen12", 128, "tif"), ("38cloud", 96, "TIF")])
def test_label_rim_keeps_coverage_balance_and_determinism(tmp_path, fmt, size, ext):
    from cloudcover.train.data.synth_clouds import RIM_PX

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob(f"*.{ext}"))}

    cfg = dict(format=fmt, n=16, seed=2, size=size, patches_per_roi=8, workers=1, progress=False)
    runs = {name: synthesize(SynthConfig(out=tmp_path / name, label_rim=rim, **cfg))
            for name, rim in (("a", RIM_PX), ("b", RIM_PX), ("plain", 0.0))}
    assert runs["a"].max_error_pct <= TOLERANCE_PCT and set(runs["a"].counts.values()) == {4}
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    changed = {k for k, v in digest(tmp_path / "a").items() if digest(tmp_path / "plain")[k] != v}
    assert len(changed) >= len(digest(tmp_path / "a")) // 2  # the rim changes the cloudy scenes
    with pytest.raises(CloudcoverError, match="label_rim"):
        synthesize(SynthConfig(out=tmp_path / "bad", label_rim=-1.0, **cfg))
