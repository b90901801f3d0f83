"""Host parity: how each exported form agrees with the float Keras model on the test split.

Per backend: the task's score (classifiers: accuracy; segmenters: Dice over valid pixels), agreement with
the float model (classifiers: top-1 class per image; segmenters: cloud/clear per valid pixel), largest
absolute difference of the logits and of the probabilities (softmax, or per-pixel sigmoid), file size. The
goals of issue 3 (int8 agrees on >= 99 % of images (pixels), score drop <= 1 point) are evaluated and
recorded beside the figures. The task is train/task.py's; `compare` defaults to classification.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cloudcover.train.task import get_task

AGREEMENT_GOAL = 0.99
DROP_GOAL_POINTS = 1.0


@dataclass
class BackendParity:
    backend: str  # e.g. "keras fp32", "tflite int8"
    file: str
    size_bytes: int
    accuracy: float
    agreement: float  # fraction of images whose top-1 class equals the float model's
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    note: str = ""
    task: str = "classification"
    score_name: str = "accuracy"  # what `accuracy` holds: accuracy (classifiers) or dice (segmenters)


def compare(backend: str, file: str, size_bytes: int, logits: np.ndarray, reference: np.ndarray, y: np.ndarray,
            note: str = "", task: str = "classification") -> BackendParity:
    """Compare `logits` with the float model's `reference` logits on labels `y` (class indices, or masks with
    0 clear, 1 cloud, 255 nodata for segmentation)."""
    t = get_task(task)
    c = t.compare(logits, reference, y)
    return BackendParity(
        backend=backend, file=file, size_bytes=int(size_bytes),
        accuracy=c["score"],
        agreement=c["agreement"],
        max_abs_logit_diff=float(np.abs(logits - reference).max()),
        max_abs_prob_diff=float(np.abs(t.probabilities(logits) - t.probabilities(reference)).max()),
        note=note, task=t.name, score_name=t.score_name,
    )


def goals(rows: list[BackendParity]) -> dict[str, dict]:
    """Each int8 backend against the agreement and accuracy-drop goals."""
    ref = rows[0]
    out = {}
    for r in rows[1:]:
        if "int8" not in r.backend:
            continue
        drop = (ref.accuracy - r.accuracy) * 100
        out[r.backend] = {"agreement": r.agreement, "agreement_ok": r.agreement >= AGREEMENT_GOAL,
                          f"{r.score_name}_drop_points": drop, "drop_ok": drop <= DROP_GOAL_POINTS}
    return out


def report(rows: list[BackendParity], n_images: int, extra: dict | None = None) -> dict:
    score = rows[0].score_name if rows else "accuracy"
    return {"n_test_images": int(n_images), "backends": [asdict(r) for r in rows], "goals": goals(rows),
            "goal_thresholds": {"agreement": AGREEMENT_GOAL, f"{score}_drop_points": DROP_GOAL_POINTS},
            **(extra or {})}


def markdown(rows: list[BackendParity], n_images: int) -> str:
    """The parity table as Markdown (also what `cloudcover export` prints)."""
    score = rows[0].score_name if rows else "accuracy"
    unit = "pixels" if rows and rows[0].task == "segmentation" else "images"
    lines = [f"Parity on the test split ({n_images} images), against the float Keras model:", "",
             f"| backend | file | size | {score} | agreement ({unit}) | max abs logit diff | max abs prob diff |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r.size_bytes / 1024:.1f} KiB"
        lines.append(f"| {r.backend} | {r.file} | {size} | {r.accuracy * 100:.2f} % | {r.agreement * 100:.2f} % "
                     f"| {r.max_abs_logit_diff:.4f} | {r.max_abs_prob_diff:.4f} |")
    notes = [f"- {r.backend}: {r.note}" for r in rows if r.note]
    g = goals(rows)
    verdicts = [f"- {name}: agreement {v['agreement'] * 100:.2f} % ({'ok' if v['agreement_ok'] else 'BELOW'} "
                f">= {AGREEMENT_GOAL * 100:.0f} %), {score} drop {v[f'{score}_drop_points']:+.2f} points "
                f"({'ok' if v['drop_ok'] else 'ABOVE'} <= {DROP_GOAL_POINTS:g})" for name, v in g.items()]
    return "\n".join(lines + [""] + notes + ([""] if notes else []) + ["Goals:"] + verdicts) + "\n"
