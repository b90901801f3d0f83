"""Write-then-rename: a failure leaves nothing behind, a success leaves a normally readable artifact."""

import os
import stat

import pytest

from cloudcover.train.atomic import atomic_dir, atomic_path, write_text
from cloudcover.train.errors import CloudcoverError


def test_atomic_path_failure_leaves_nothing(tmp_path):
    final = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_suffix_and_normal_mode(tmp_path):
    final = tmp_path / "a" / "report.json"
    with atomic_path(final) as tmp:
        assert tmp.suffix == ".json"
        tmp.write_text("{}")
    mode = stat.S_IMODE(final.stat().st_mode)
    assert mode == 0o666 & ~_umask()


def test_atomic_dir_replaces_whole(tmp_path):
    final = tmp_path / "art"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    (final / "marker.json").write_text("{}")
    with atomic_dir(final, "marker.json") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_atomic_dir_failure_keeps_previous(tmp_path):
    final = tmp_path / "art"
    write_text(final / "keep.txt", "kept")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final, "keep.txt") as tmp:
            (tmp / "partial").write_text("x")
            raise KeyboardInterrupt
    assert (final / "keep.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_dir_refuses_a_folder_it_did_not_write(tmp_path):
    """`--out demo` must not wipe the user's dataset: only an earlier output (its marker file) is replaced."""
    final = tmp_path / "demo"
    write_text(final / "dataset" / "manifest.csv", "precious")
    with pytest.raises(CloudcoverError, match="is not an export folder .*parity.json"):
        with atomic_dir(final, "parity.json", "an export folder") as tmp:
            (tmp / "parity.json").write_text("{}")
    assert (final / "dataset" / "manifest.csv").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
