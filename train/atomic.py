"""Write-then-rename, so an interrupted or failed step never leaves a half-written artifact behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cloudcover.train.errors import CloudcoverError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is racy once threads run.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success rename it onto `final`, on error delete it.

    The temp name keeps the final suffix (libraries such as Keras and TFLite check it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts should be readable like any file
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_replaceable(final: str | os.PathLike, marker: str, what: str) -> None:
    """Refuse an --out that exists and is not an earlier output of the same kind (it holds no `marker` file):
    replacing it whole would delete whatever the user keeps there (e.g. `--out demo`). Call it before long work."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / marker).is_file())):
        raise CloudcoverError(f"--out {final}: exists and is not {what} (it has no {marker}); "
                              "choose another folder or remove it")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, marker: str, what: str = "an earlier output of this command") -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` whole, on error it is removed.

    `final` may only be replaced when it is empty or an earlier output of the same kind, recognised by its
    `marker` file (see check_replaceable).
    """
    final = Path(final)
    check_replaceable(final, marker, what)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)
