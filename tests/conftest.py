"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Seeded training is only repeatable with TensorFlow's deterministic kernels (the multi-threaded CPU ones sum in
# varying order): without them the same seed gave 69-91 % val accuracy on the tiny fixture run.
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLOUDCOVER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CloudSEN12 / 38-Cloud samples beside the checkout (CI always has them)."""
    if not (SHARED_DATA / "cloudsen12").is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (a fresh clone has no ../shared; "
                    "set CLOUDCOVER_SHARED_DATA to point at it)")
    return SHARED_DATA
