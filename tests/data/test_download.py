"""download against a real http.server on 127.0.0.1 serving generated tars (no mocks)."""

import hashlib
import io
import random
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudcover.riscv.cli import main
from cloudcover.train.data.download import DownloadConfig, download, parse_url_list
from cloudcover.train.errors import CloudcoverError


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    """Serves server.files with Range support; paths in server.drop_once lose their connection mid-body once."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in srv.drop_once:
            srv.drop_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.drop_once, srv.log = {}, set(), []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


ROI = {"ROI_0001/s2id/S2L1C.tif": random.Random(0).randbytes(300_000), "ROI_0001/s2id/labels/manual_hq.tif": b"m" * 1000}


def _urls(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "urls.txt"
    p.write_text("# CloudSEN12 ROIs\n" + "\n".join(lines) + "\n")
    return p


def _cfg(tmp_path, urls, **kw):
    return DownloadConfig(urls=urls, out=tmp_path / "out", backoff_s=0.01, timeout_s=5, progress=False, **kw)


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = make_tar(ROI)
    server.files["/roi1.tar.gz"] = data
    server.drop_once.add("/roi1.tar.gz")
    sha = hashlib.sha256(data).hexdigest()
    urls = _urls(tmp_path, [f"{server.url}/roi1.tar.gz sha256={sha} size={len(data)}"])
    r = download(_cfg(tmp_path, urls))
    assert r.downloaded == ["roi1.tar.gz"] and r.bytes == len(data)
    assert server.log[0] == ("/roi1.tar.gz", None)
    assert server.log[1] == ("/roi1.tar.gz", f"bytes={len(data) // 2}-")  # resumed, not restarted
    out = tmp_path / "out"
    assert (out / "ROI_0001/s2id/S2L1C.tif").read_bytes() == ROI["ROI_0001/s2id/S2L1C.tif"]
    assert (out / "archives/roi1.tar.gz").read_bytes() == data
    assert not list(out.rglob("*.part")) and not list(out.glob(".extract-*"))
    # a second run skips what is complete: no request at all
    n = len(server.log)
    assert download(_cfg(tmp_path, urls)).skipped == ["roi1.tar.gz"] and len(server.log) == n


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = make_tar(ROI)
    server.files["/roi2.tar.gz"] = data
    (tmp_path / "out/archives").mkdir(parents=True)
    (tmp_path / "out/archives/roi2.tar.gz.part").write_bytes(data[:1000])
    download(_cfg(tmp_path, _urls(tmp_path, [f"{server.url}/roi2.tar.gz"])))
    assert server.log == [("/roi2.tar.gz", "bytes=1000-")]
    assert (tmp_path / "out/ROI_0001/s2id/labels/manual_hq.tif").is_file()


def test_only_the_first_n_urls(server, tmp_path):
    for i in range(3):
        server.files[f"/r{i}.tar"] = make_tar({f"ROI_{i}/a.txt": b"a"})
    urls = _urls(tmp_path, [f"{server.url}/r{i}.tar" for i in range(3)])
    assert main(["data", "download", "--urls", str(urls), "--n", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("ROI_*")) == ["ROI_0", "ROI_1"]


def test_corrupt_archive_is_refused(server, tmp_path, capsys):
    server.files["/bad.tar"] = b"this is not a tar archive" * 100
    urls = _urls(tmp_path, [f"{server.url}/bad.tar"])
    rc = main(["data", "download", "--urls", str(urls), "--out", str(tmp_path / "out"), "--quiet", "--backoff", "0"])
    err = capsys.readouterr().err
    assert rc == 1 and "not a valid tar archive" in err and "bad.tar" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["archives"]
    assert not list((tmp_path / "out/archives").iterdir())  # nothing half-written, nothing kept


@pytest.mark.parametrize("members,links", [
    ({"../evil.txt": b"x"}, None),
    ({"/tmp/evil.txt": b"x"}, None),
    ({"ROI_1/ok.txt": b"x"}, {"ROI_1/link": "../../../etc/passwd"}),
])
def test_path_traversal_archive_is_refused(server, tmp_path, members, links):
    server.files["/evil.tar"] = make_tar({"ROI_1/first.txt": b"ok", **members}, links)
    with pytest.raises(CloudcoverError, match="refused the archive, nothing extracted"):
        download(_cfg(tmp_path, _urls(tmp_path, [f"{server.url}/evil.tar"])))
    out = tmp_path / "out"
    assert not (out / "ROI_1").exists() and not (tmp_path / "evil.txt").exists()
    assert not (out.parent.parent / "evil.txt").exists()


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    server.files["/r.tar"] = make_tar(ROI)
    with pytest.raises(CloudcoverError, match="sha256 mismatch"):
        download(_cfg(tmp_path, _urls(tmp_path, [f"{server.url}/r.tar sha256={'0' * 64}"])))
    assert not list((tmp_path / "out/archives").iterdir())


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(CloudcoverError, match="HTTP 404"):
        download(_cfg(tmp_path, _urls(tmp_path, [f"{server.url}/missing.tar"])))
    assert len(server.log) == 1


def test_gives_up_after_retries_and_keeps_the_part(tmp_path):
    urls = _urls(tmp_path, ["http://127.0.0.1:9/r.tar"])  # discard port: connection refused
    with pytest.raises(CloudcoverError, match="failed after 3 attempts"):
        download(_cfg(tmp_path, urls, retries=2))


def test_negative_retries_is_refused(server, tmp_path):
    with pytest.raises(CloudcoverError, match="--retries must be >= 0"):
        download(_cfg(tmp_path, _urls(tmp_path, [f"{server.url}/a.tar"]), retries=-1))
    assert server.log == []


@pytest.mark.parametrize("line,match", [("ftp://x/a.tar", "not an http"), ("http://x/a.tar size=big", "byte count"),
                                        ("http://x/a.tar sha1=abc", "cannot read"), ("http://x/", "file name")])
def test_bad_url_lists(tmp_path, line, match):
    with pytest.raises(CloudcoverError, match=match):
        parse_url_list(_urls(tmp_path, [line]))
