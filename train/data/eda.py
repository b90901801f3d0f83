"""`cloudcover data eda DATASET --out DIR`: what a prepared dataset holds, before anything is trained on it.

    DIR/eda.json              per split: patches, cloud fraction (mean, quantiles, histogram), share of empty
                              (no cloud pixel) and of full (every valid pixel cloud) masks, nodata share,
                              per-class counts; per band: mean, std, min, max, 2nd and 98th percentiles
    DIR/cloud_fraction.png    histogram of the cloud fraction per split, class edges marked
    DIR/band_stats.png        per-band value distribution (2-98 % range, mean +- std) over the train split
    DIR/samples.png           patches across the coverage range with their cloud masks overlaid

Cloud fraction comes from the masks for a segmentation dataset (cloud / valid pixels at the prepared size)
and from the manifest's coverage_pct for a classification dataset (which has no masks to show). Written
whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cloudcover.train.atomic import atomic_dir, check_replaceable
from cloudcover.train.errors import CloudcoverError

HIST_EDGES = np.linspace(0, 100, 21)


def _band_stats(images: list[np.ndarray], names: list[str]) -> list[dict]:
    flat = np.concatenate([im.reshape(-1, im.shape[-1]) for im in images]).astype(np.float64)
    out = []
    for b in range(flat.shape[1]):
        v = flat[:, b]
        p2, p98 = np.percentile(v, [2, 98])
        out.append({"band": names[b] if b < len(names) else f"band{b + 1}", "mean": float(v.mean()),
                    "std": float(v.std()), "min": float(v.min()), "max": float(v.max()), "p2": float(p2),
                    "p98": float(p98)})
    return out


def eda(data_dir: str | Path, out: str | Path, samples: int = 8, max_band_images: int = 64, seed: int = 0) -> dict:
    """Analyse `data_dir` (a prepared dataset of either task) into `out`; returns eda.json's content."""
    from cloudcover.train.preprocess import _read_pixels_or_fail, read_dataset
    from cloudcover.train.segmentation import read_mask

    check_replaceable(out, "eda.json", "an EDA folder")
    if samples < 0 or max_band_images < 1:
        raise CloudcoverError("--samples must be >= 0 and --band-images >= 1")
    info = read_dataset(data_dir)
    if not info.rows:
        raise CloudcoverError(f"{info.root / 'manifest.csv'} lists no patches")
    segment = info.task == "segmentation"
    names = [str(b) for b in info.meta.get("bands") or []]

    fractions: dict[str, list[float]] = {}
    nodata: dict[str, list[float]] = {}
    masks: dict[str, np.ndarray] = {}
    for r in info.rows:
        if segment:
            m = read_mask(info.root / r["target"])
            valid = m != 255
            n = int(valid.sum())
            frac = 100.0 * int((m == 1).sum()) / n if n else float("nan")
            nodata.setdefault(r["split"], []).append(100.0 * (1 - n / m.size))
            masks[r["patch_id"]] = m
        else:
            frac = float(r["coverage_pct"])
        fractions.setdefault(r["split"], []).append(frac)

    splits = {}
    for split, vals in fractions.items():
        v = np.asarray(vals)
        rows = info.split_rows(split)
        entry = {"patches": len(v), "cloud_fraction_mean": float(np.nanmean(v)),
                 "cloud_fraction_quantiles": {q: float(np.nanpercentile(v, int(q[1:]))) for q in ("p5", "p25", "p50",
                                                                                                   "p75", "p95")},
                 "empty_share": float(np.mean(v == 0)), "full_share": float(np.mean(v == 100)),
                 "histogram": {"edges": HIST_EDGES.tolist(), "counts": np.histogram(v, HIST_EDGES)[0].tolist()},
                 "per_class": {c: sum(r["label"] == c for r in rows) for c in info.classes},
                 "rois": len({r["roi"] for r in rows})}
        if segment:
            entry["nodata_pixel_share_mean"] = float(np.mean(nodata[split])) / 100.0
        splits[split] = entry

    train_rows = info.split_rows("train") or info.rows
    pick = np.random.default_rng(seed).permutation(len(train_rows))[:max_band_images]
    images = [_read_pixels_or_fail(info.root / train_rows[i]["image"]) for i in sorted(pick)]
    bands = _band_stats(images, names)

    # samples across the coverage range: evenly spaced ranks of the cloud fraction
    order = sorted(range(len(info.rows)), key=lambda i: float(info.rows[i]["coverage_pct"]))
    chosen = [order[int(round(k))] for k in np.linspace(0, len(order) - 1, min(samples, len(order)))] if samples else []

    report = {"dataset": str(info.root.resolve()), "task": info.task, "n": len(info.rows),
              "source": info.meta.get("source"), "size": info.meta.get("size"), "bands": bands,
              "classes": info.classes, "bins": info.bins, "splits": splits,
              "cloud_fraction_from": "masks (cloud / valid pixels)" if segment else "manifest coverage_pct"}
    with atomic_dir(out, "eda.json", "an EDA folder") as tmp:
        (tmp / "eda.json").write_text(json.dumps(report, indent=2) + "\n")
        _plot_fractions(fractions, info.bins, tmp / "cloud_fraction.png")
        _plot_bands(bands, tmp / "band_stats.png")
        _plot_samples(info, [info.rows[i] for i in chosen], masks, names, tmp / "samples.png")
    return report


def _plot_fractions(fractions: dict[str, list[float]], bins: list[float], path: Path) -> None:
    from cloudcover.train.plots import _agg, save_figure

    plt = _agg()
    fig, ax = plt.subplots(figsize=(7, 4))
    for split, vals in fractions.items():
        v = np.asarray(vals)
        ax.hist(v[np.isfinite(v)], HIST_EDGES, histtype="step", lw=2, density=True, label=f"{split} ({len(v)})")
    for edge in bins[1:-1]:
        ax.axvline(edge, color="0.5", ls=":", lw=1)
    ax.set(xlabel="cloud fraction (%)", ylabel="density", title="Cloud fraction per split (class edges dotted)")
    ax.legend()
    save_figure(fig, path)


def _plot_bands(bands: list[dict], path: Path) -> None:
    from cloudcover.train.plots import _agg, save_figure

    plt = _agg()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(bands) + 2), 4))
    x = np.arange(len(bands))
    ax.vlines(x, [b["p2"] for b in bands], [b["p98"] for b in bands], lw=8, color="C0", alpha=0.35,
              label="2-98 % range")
    ax.errorbar(x, [b["mean"] for b in bands], yerr=[b["std"] for b in bands], fmt="o", color="C3",
                label="mean +- std")
    ax.set_xticks(x, [b["band"] for b in bands])
    ax.set(ylabel="raw value", title="Per-band statistics (train split sample)")
    ax.legend()
    save_figure(fig, path)


def _plot_samples(info, rows: list[dict], masks: dict, names: list[str], path: Path) -> None:
    from cloudcover.train.plots import _agg, save_figure, to_display_rgb
    from cloudcover.train.preprocess import _read_pixels_or_fail
    from cloudcover.train.seg_evaluate import overlay, rgb_indexes

    plt = _agg()
    n = max(1, len(rows))
    cols = min(4, n)
    fig, axes = plt.subplots(int(np.ceil(n / cols)), cols, figsize=(3 * cols, 3.2 * int(np.ceil(n / cols))),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows):
        x = _read_pixels_or_fail(info.root / r["image"]).astype(np.float32)
        rgb = to_display_rgb(x[..., rgb_indexes(names, x.shape[-1])], (0, 255) if x.max() <= 255 else (0, 65535))
        m = masks.get(r["patch_id"])
        if m is not None and m.shape == rgb.shape[:2]:
            rgb = overlay(rgb, m == 1, (0, 230, 255), 0.35)
        ax.imshow(rgb)
        ax.set_title(f"{float(r['coverage_pct']):.1f} % ({r['split']})", fontsize=8)
    fig.suptitle("Samples across the coverage range" + (" (cloud mask in cyan)" if masks else ""))
    save_figure(fig, path)
