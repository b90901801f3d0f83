"""Pictures of a study and of an evaluation, written as files (never shown): PNG via matplotlib, HTML via plotly.

Study plots use Optuna's own visualizations, once with the matplotlib backend (PNG, for reports and
CI artifacts) and once with plotly (interactive HTML that loads one shared plotly.min.js beside the
pages, so it works offline). A plot Optuna cannot draw yet (e.g. importances with a single finished
trial) is skipped with its reason rather than failing the study. Every file is written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cloudcover.train.atomic import atomic_path

STUDY_PLOTS = ("optimization_history", "param_importances", "slice", "contour", "parallel_coordinate",
               "intermediate_values")


def _agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    plt = _agg()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def varying_params(study: Any) -> list[str]:
    """Parameters that took more than one value among finished trials, most important first."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    seen: dict[str, set] = {}
    for t in trials:
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    names = [k for k, vals in seen.items() if len(vals) > 1]
    try:
        importances = optuna.importance.get_param_importances(study, params=names) if len(trials) > 1 else {}
    except Exception:  # importance needs enough trials; fall back to alphabetical
        importances = {}
    return sorted(names, key=lambda k: (-importances.get(k, 0.0), k))


def write_study_plots(study: Any, out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Write the six study plots as PNG and HTML into `out_dir`; returns {plot: {png, html} or {skipped}}."""
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    plt = _agg()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = varying_params(study)
    # Slices and parallel coordinates stay readable up to ~6 axes; a contour grid up to 3x3.
    kwargs: dict[str, dict[str, Any]] = {
        "optimization_history": {}, "param_importances": {}, "intermediate_values": {},
        "slice": {"params": params[:6]}, "parallel_coordinate": {"params": params[:6]},
        "contour": {"params": params[:3]},
    }
    report: dict[str, dict[str, Any]] = {}
    for name in STUDY_PLOTS:
        kw = kwargs[name]
        if "params" in kw and len(kw["params"]) < (2 if name == "contour" else 1):
            report[name] = {"skipped": "needs more parameters that varied across finished trials"}
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna flags its matplotlib backend as experimental
                ax = getattr(vis_mpl, f"plot_{name}")(study, **kw)
                fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).get_figure()
                fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
                png = save_figure(fig, out_dir / f"{name}.png")
                html = out_dir / f"{name}.html"
                pfig = getattr(vis, f"plot_{name}")(study, **kw)
                with atomic_path(html) as tmp:
                    pfig.write_html(str(tmp), include_plotlyjs="directory")
            report[name] = {"png": png.name, "html": html.name}
        except Exception as exc:  # e.g. importances with one finished trial
            plt.close("all")
            report[name] = {"skipped": (str(exc).splitlines() or [type(exc).__name__])[0]}
    return report


# ----------------------------------------------------------------------------------------------------
# Evaluation pictures


def plot_confusion(cm: Sequence[Sequence[int]], cm_norm: Sequence[Sequence[float]], classes: Sequence[str],
                   path: str | Path) -> Path:
    """Row-normalized heatmap (colour) annotated with the counts and the row share."""
    plt = _agg()
    cm, cm_norm = np.asarray(cm), np.asarray(cm_norm, dtype=float)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.4 * n + 2.5, 1.2 * n + 2))
    im = ax.imshow(cm_norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of the true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{cm_norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if cm_norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (counts, row-normalized colour)")
    return save_figure(fig, Path(path))


def plot_roc(roc: dict, path: str | Path) -> Path:
    """One-vs-rest ROC per class with the micro and macro averages."""
    plt = _agg()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for name, c in roc["per_class"].items():
        if c["auc"] is not None:
            ax.plot(c["fpr"], c["tpr"], lw=1.2, label=f"{name} (AUC {c['auc']:.3f})")
    for key, style in (("micro", ":"), ("macro", "--")):
        c = roc[key]
        if c["auc"] is not None:
            ax.plot(c["fpr"], c["tpr"], style, lw=2.2, label=f"{key} average (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title="ROC, one vs rest")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, Path(path))


def plot_gallery(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, cols: int = 6,
                 title: str = "") -> Path:
    """A grid of RGB uint8 images with a caption each (e.g. misclassified patches)."""
    plt = _agg()
    n = max(1, len(images))
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not images:
        axes[0, 0].text(0.5, 0.5, "nothing misclassified", ha="center", va="center")
    for ax, img, cap in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title("\n".join(_ellipsize(line, 34) for line in cap.split("\n")), fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, Path(path))


def _ellipsize(text: str, width: int) -> str:
    """Long patch ids would run into the neighbouring caption: keep both ends, which identify them."""
    if len(text) <= width:
        return text
    keep = (width - 1) // 2
    return f"{text[:keep]}…{text[-keep:]}"


def to_display_rgb(x: np.ndarray, value_range: Sequence[float] = (0.0, 255.0)) -> np.ndarray:
    """Raw model input (HxWxC float) -> uint8 RGB for display: first three bands, 2-98 % stretch if not 8-bit."""
    img = np.asarray(x, dtype=np.float32)
    img = np.repeat(img[..., :1], 3, axis=-1) if img.shape[-1] < 3 else img[..., :3]
    lo, hi = float(value_range[0]), float(value_range[1])
    if img.max() > hi or hi != 255.0:
        lo, hi = np.percentile(img, 2), np.percentile(img, 98)
    return np.clip((img - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)


