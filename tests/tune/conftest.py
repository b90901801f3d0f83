"""Fixtures for the tune / evaluate / predict tests: a tiny prepared dataset and a tiny trained run.

The dataset has the format `cloudcover data prepare` writes (manifest.csv + dataset.json + PNGs), with
32x32 images whose white "cloud" area is exactly the coverage of the patch, so a small CNN learns the
classes within a couple of epochs. Written by a seeded function, never downloaded.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CLASSES = ["clouds_0_25", "clouds_25_50", "clouds_50_75", "clouds_75_100"]
BINS = [0, 25, 50, 75, 100]
SIZE = 32
PER_CLASS = {"train": 16, "val": 6, "test": 6}
REPO = Path(__file__).resolve().parents[2]


def cloud_image(rng: np.random.Generator, coverage: float, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A dark noisy ground with white blobs covering exactly `coverage` % of the pixels; (rgb, mask)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=(size, size)), sigma=3)
    k = int(round(coverage / 100 * size * size))
    mask = np.zeros(size * size, bool)
    if k:
        mask[np.argsort(field.ravel())[-k:]] = True
    mask = mask.reshape(size, size)
    ground = rng.integers(20, 90, size=(size, size, 3)).astype(np.uint8)
    ground[..., 1] = np.minimum(ground[..., 1] + 30, 255)
    cloud = rng.integers(225, 256, size=(size, size, 1)).astype(np.uint8).repeat(3, axis=-1)
    return np.where(mask[..., None], cloud, ground), mask


def write_dataset(root: Path, seed: int = 0, per_class: dict[str, int] | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    per_class = per_class or PER_CLASS
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rows = []
    for split, n in per_class.items():
        for c, name in enumerate(CLASSES):
            for i in range(n):
                cov = float(rng.uniform(BINS[c] + 1, BINS[c + 1] - 1))
                rgb, mask = cloud_image(rng, cov)
                pid = f"{split}_{name}_{i:03d}"
                Image.fromarray(rgb).save(root / "images" / f"{pid}.png")
                Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{pid}.png")
                rows.append({"patch_id": pid, "roi": f"roi_{i % 3}", "image": f"images/{pid}.png",
                             "mask": f"masks/{pid}.png", "coverage_pct": f"{cov:.2f}", "shadow_pct": "0.00",
                             "label": name, "split": split})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "dataset.json").write_text(json.dumps({"classes": CLASSES, "bins": BINS, "size": SIZE,
                                                   "source": "synthetic-test", "seed": seed}, indent=2))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """A small trained edge_cnn run folder (32 px, a few epochs): what evaluate and predict read."""
    from cloudcover.train.training import Augment, TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = TrainConfig(data=tiny_dataset, out=out, model="edge_cnn", input_size=SIZE, alpha=0.5, epochs=6,
                      batch_size=16, optimizer="adam", lr=3e-3, dropout=0.0, augment=Augment(), patience=6)
    return train(cfg, verbose=0).run_dir


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cloudcover ARGS` in a fresh interpreter (the way users run it)."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cloudcover.riscv.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


# --------------------------------------------------------------------------------------------------
# A throw-away PostgreSQL server on 127.0.0.1 (Debian's postgresql package)

def _pg_bin() -> Path:
    """Debian installs the server under /usr/lib/postgresql/<major>/bin (15 on bookworm); take the newest."""
    if "CLOUDCOVER_PG_BIN" in os.environ:
        return Path(os.environ["CLOUDCOVER_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> str:
    """Start a private PostgreSQL server as user postgres (initdb refuses root), yield its URL, stop it."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (make setup installs Debian's postgresql)")
    is_root = os.geteuid() == 0
    if is_root and shutil.which("runuser") is None:
        pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as an unprivileged user")
    import tempfile

    # Not under pytest's tmp folder: that is private to root (0700) and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="cloudcover-pg-"))
    data = base / "data"
    sock = base / "sock"
    sock.mkdir()
    as_pg: list[str] = []
    if is_root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start the server as")
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_pg, *cmd], capture_output=True, text=True, timeout=120)

    r = run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "cc", "--auth=trust", "-E", "UTF8", "--no-sync")
    if r.returncode:
        pytest.fail(f"initdb failed: {r.stderr.strip()[-500:]}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=50"
    r = run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "server.log"), "-w", "start")
    if r.returncode:
        pytest.fail(f"pg_ctl start failed: {r.stderr.strip()[-500:]} {(base / 'server.log').read_text()[-500:]}")
    try:
        r = run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "cc", "optuna")
        if r.returncode:
            pytest.fail(f"createdb failed: {r.stderr.strip()}")
        yield f"postgresql://cc@127.0.0.1:{port}/optuna"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
