"""Download and safely extract per-ROI tar archives (how CloudSEN12 is distributed).

URL list: one archive per line, `URL [sha256=HEX | md5=HEX | HEX] [size=BYTES]`; blank lines and
`#` comments are ignored (a bare 64/32-digit hex token is a sha256/md5).

    OUT/archives/NAME.part      the download in progress (resumed with an HTTP Range request)
    OUT/archives/NAME           complete: size and checksum verified, then renamed from .part
    OUT/archives/NAME.done      extracted: the list of files it contributed (a re-run skips it)
    OUT/<archive contents>      extracted into a temporary folder first, then moved into place

Every member is checked before anything is extracted (no absolute paths, no `..`, no links that
leave OUT, no devices), and extraction also runs with tarfile's "data" filter.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from cloudcover.train.atomic import write_text
from cloudcover.train.errors import CloudcoverError

CHUNK = 1 << 20
RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class UrlEntry:
    url: str
    name: str  # archive file name (last URL path component)
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass
class DownloadConfig:
    urls: Path  # the URL list file
    out: Path
    n: int | None = None  # first N entries; None = all
    retries: int = 5  # per archive, after the first attempt
    backoff_s: float = 1.0  # wait before retry k: backoff_s * 2**(k-1)
    timeout_s: float = 60.0  # socket timeout per request
    progress: bool = True


@dataclass
class DownloadResult:
    out: Path
    downloaded: list[str] = field(default_factory=list)  # archive names fetched (fully or resumed)
    skipped: list[str] = field(default_factory=list)  # already downloaded and extracted
    extracted: list[str] = field(default_factory=list)
    bytes: int = 0  # bytes received over the network
    seconds: float = 0.0


def parse_url_list(path: Path) -> list[UrlEntry]:
    """Read the URL list; a malformed line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise CloudcoverError(f"--urls {path}: no such file")
    entries, names = [], set()
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        tokens = raw.split()
        cut = next((i for i, t in enumerate(tokens) if t.startswith("#")), len(tokens))
        if cut == 0:
            continue
        url, *extra = tokens[:cut]
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise CloudcoverError(f"{path}:{no}: {url!r} is not an http(s) URL")
        name = urllib.parse.unquote(PurePosixPath(parsed.path).name)
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise CloudcoverError(f"{path}:{no}: cannot take an archive file name from {url!r}")
        if name in names:
            raise CloudcoverError(f"{path}:{no}: a second URL for the archive name {name!r}")
        names.add(name)
        kw: dict = {}
        for tok in extra:
            key, _, val = tok.partition("=") if "=" in tok else ("", "", tok)
            val = val.lower()
            if key == "size":
                if not val.isdigit():
                    raise CloudcoverError(f"{path}:{no}: size={val!r} is not a byte count")
                kw["size"] = int(val)
            elif key in ("sha256", "") and len(val) == 64 and _is_hex(val):
                kw["sha256"] = val
            elif key in ("md5", "") and len(val) == 32 and _is_hex(val):
                kw["md5"] = val
            else:
                raise CloudcoverError(f"{path}:{no}: cannot read {tok!r} (expected sha256=HEX, md5=HEX or size=N)")
        entries.append(UrlEntry(url, name, **kw))
    if not entries:
        raise CloudcoverError(f"--urls {path}: no URLs in the file")
    return entries


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


class _Retry(Exception):
    """A transient failure: the next attempt resumes from what the .part file holds."""


def _fetch_once(entry: UrlEntry, part: Path, timeout: float, bar: tqdm, received: list[int]) -> None:
    """One request appending to part; received[0] counts bytes; raises _Retry on transient failures."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "cloudcover-download/1", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(entry.url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = getattr(resp, "status", 200)
            if have and status == 200:  # the server ignored the range: start over
                have = 0
            elif status == 206:
                crange = resp.headers.get("Content-Range", "")
                start = crange.split()[1].split("-")[0] if crange.startswith("bytes ") else ""
                if start != str(have):
                    raise _Retry(f"server resumed at {crange!r}, expected byte {have}")
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            if entry.size is not None and total is not None and total != entry.size:
                raise CloudcoverError(f"{entry.url}: server sends {total} bytes but the list says size={entry.size}")
            bar.reset(total=total)
            bar.update(have)
            with open(part, "ab" if have else "wb") as f:
                while True:
                    try:
                        buf = resp.read(CHUNK)
                    except http.client.IncompleteRead as exc:
                        f.write(exc.partial)
                        received[0] += len(exc.partial)
                        raise _Retry("connection closed mid-file") from None
                    if not buf:
                        break
                    f.write(buf)
                    received[0] += len(buf)
                    bar.update(len(buf))
            size = part.stat().st_size
            if total is not None and size < total:
                raise _Retry(f"connection closed after {size} of {total} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is (probably) complete; _verify decides
            return
        if exc.code in RETRY_HTTP:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise CloudcoverError(f"{entry.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException,
            OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # disk full is not transient
            raise CloudcoverError(f"{part}: {exc.strerror}; the partial download is kept for resuming") from None
        raise _Retry(str(getattr(exc, "reason", exc))) from None


def _verify(entry: UrlEntry, part: Path) -> None:
    size = part.stat().st_size
    if entry.size is not None and size != entry.size:
        part.unlink()
        raise CloudcoverError(f"{entry.url}: got {size} bytes, the list says size={entry.size}; removed the download")
    for algo in ("sha256", "md5"):
        want = getattr(entry, algo)
        if want is None:
            continue
        h = hashlib.new(algo)
        with open(part, "rb") as f:
            for buf in iter(lambda: f.read(CHUNK), b""):
                h.update(buf)
        if h.hexdigest() != want:
            part.unlink()
            raise CloudcoverError(f"{entry.url}: {algo} mismatch (got {h.hexdigest()}, list says {want}); "
                                  "removed the download")


def fetch(entry: UrlEntry, final: Path, config: DownloadConfig) -> int:
    """Download entry to final via final.part, resuming and retrying; returns bytes received."""
    if config.retries < 0:
        raise CloudcoverError(f"--retries must be >= 0, got {config.retries}")
    part = final.with_name(final.name + ".part")
    received = [0]
    with tqdm(desc=entry.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not config.progress,
              dynamic_ncols=True, leave=False) as bar:
        for attempt in range(config.retries + 1):
            try:
                _fetch_once(entry, part, config.timeout_s, bar, received)
                break
            except _Retry as exc:
                if attempt == config.retries:
                    raise CloudcoverError(f"{entry.url}: failed after {attempt + 1} attempts ({exc}); "
                                          f"run again to resume from {part}") from None
                wait = config.backoff_s * 2 ** attempt
                bar.write(f"{entry.name}: {exc}; retrying in {wait:g} s", file=sys.stderr)
                time.sleep(wait)
    if not part.exists():
        part.touch()
    _verify(entry, part)
    os.replace(part, final)
    return received[0]


def _check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse the whole archive if any member could land outside the target folder."""
    for m in members:
        p = PurePosixPath(m.name)
        why = None
        if p.is_absolute() or m.name.startswith(("/", "\\")) or (len(m.name) > 1 and m.name[1] == ":"):
            why = "has an absolute path"
        elif ".." in p.parts:
            why = "contains '..'"
        elif m.issym() or m.islnk():
            target = PurePosixPath(m.linkname)
            base = p.parent if m.issym() else PurePosixPath()
            depth = 0
            for part in (base / target).parts if not target.is_absolute() else ("/",):
                if part == "/":
                    depth = -1
                    break
                depth += -1 if part == ".." else (0 if part == "." else 1)
                if depth < 0:
                    break
            if target.is_absolute() or depth < 0:
                why = f"is a link to {m.linkname!r} outside the folder"
        elif not (m.isfile() or m.isdir()):
            why = "is a device, fifo or other special file"
        if why:
            raise CloudcoverError(f"{archive}: member {m.name!r} {why}; refused the archive, nothing extracted")


def _merge(src: Path, dst: Path) -> list[str]:
    """Move every file of src into dst (creating folders); returns the paths relative to dst."""
    moved = []
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(root) / name, dst / rel / name)
            moved.append(str(rel / name))
    return sorted(moved)


def extract(archive: Path, out: Path) -> list[str]:
    """Safely extract a tar archive into out (all members checked first); returns the files written."""
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{archive.name}.", suffix=".part", dir=out))
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                _check_members(archive, members)
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise CloudcoverError(f"{archive}: not a valid tar archive ({exc}); nothing extracted") from None
        return _merge(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(config: DownloadConfig) -> DownloadResult:
    """Fetch and extract the first config.n archives of the list; complete ones are skipped."""
    t0 = time.perf_counter()
    entries = parse_url_list(config.urls)
    if config.n is not None:
        if config.n < 1:
            raise CloudcoverError(f"--n {config.n}: need at least 1")
        entries = entries[: config.n]
    out = Path(config.out)
    archives = out / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    result = DownloadResult(out)
    for entry in entries:
        final = archives / entry.name
        done = archives / f"{entry.name}.done"
        if done.is_file() and final.is_file():
            result.skipped.append(entry.name)
            continue
        if not final.is_file():
            result.bytes += fetch(entry, final, config)
            result.downloaded.append(entry.name)
        try:
            files = extract(final, out)
        except CloudcoverError:
            final.unlink(missing_ok=True)  # useless as it is; a re-run downloads it again
            raise
        write_text(done, json.dumps({"url": entry.url, "files": files}, indent=1) + "\n")
        result.extracted.append(entry.name)
    result.seconds = time.perf_counter() - t0
    return result
