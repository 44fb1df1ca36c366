"""``blurdm-bench fetch`` against a local HTTP server on 127.0.0.1 (no test touches the internet)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import posixpath
import re
import socket
import stat
import tarfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipelines.cli import main
from pipelines.core.errors import UserError
from pipelines.core.config import PROFILE_NAMES, DatasetSource, load_params
from pipelines.data.fetching.dataset import fetch_dataset
from pipelines.data.fetching.verify import load_checksums

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent

# GoPro-style archive content: 2 train pairs (scene A) + 1 test pair (scene B), plus blur_gamma copies
# that the normaliser must leave out.
GOPRO_FILES = {
    f"GOPRO_Large/{split}/{scene}/{kind}/{frame}.png": (split, scene, kind, frame)
    for split, scene, frames in (("train", "GOPR0001_11_00", ("000001", "000002")),
                                 ("test", "GOPR0002_11_00", ("000001",)))
    for kind in ("blur", "blur_gamma", "sharp")
    for frame in frames
}


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def layout_bytes(files: dict[str, object]) -> dict[str, bytes]:
    return {name: png_bytes(i) for i, name in enumerate(sorted(files))}


def make_tar(path: Path, files: dict[str, bytes], extra=()) -> Path:
    """A tar.gz of ``files``; ``extra`` holds (TarInfo, bytes | None) members appended at the end."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path: Path, files: dict[str, bytes], extra=()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(path: Path, table: dict) -> Path:
    path.write_text(yaml.safe_dump(table))
    return path


def spec(url: str = "http://127.0.0.1:9/unused", archive: str = "GOPRO_Large.zip", **kw) -> DatasetSource:
    return DatasetSource(url=url, archive=archive, out_dir="unused", **kw)


def quiet(_msg: str) -> None:
    pass


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():
        assert [p.name for p in out.parent.iterdir()] == [], f"stray files next to {out}"


def send_body(handler, body: bytes, *, honour_range: bool = True, cut_after: int | None = None,
              headers: dict | None = None, content_range: str | None = None) -> int:
    """Answer ``handler``'s GET with ``body``: 206 + Content-Range for a ``Range: bytes=N-`` request when
    ``honour_range``, else 200 with all of it; ``cut_after`` closes the connection after that many body
    bytes (Content-Length still announces them all). Returns the body bytes sent."""
    start, status = 0, 200
    match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
    if match and honour_range:
        start = int(match.group(1))
        if start >= len(body):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(body)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return 0
        status = 206
    chunk = body[start:]
    handler.send_response(status)
    if status == 206:
        handler.send_header("Content-Range", content_range or f"bytes {start}-{len(body) - 1}/{len(body)}")
    for key, value in {"Content-Type": "application/octet-stream", **(headers or {})}.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(chunk)))
    handler.end_headers()
    sent = chunk if cut_after is None else chunk[:cut_after]
    handler.wfile.write(sent)
    if cut_after is not None:
        handler.wfile.flush()
        handler.close_connection = True
    return len(sent)


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1:<free port>: ``routes[path] = (body, headers)``;
    ``truncated[path] = body`` announces len(body) but sends only half; ``custom[path] = fn(handler,
    query)`` answers by itself (``path`` without the query string); ``hits`` lists the request paths,
    ``requests`` (path, headers) pairs."""
    routes: dict[str, tuple[bytes, dict]] = {}
    truncated: dict[str, bytes] = {}
    custom: dict = {}
    hits: list[str] = []
    requests: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # bounds every socket read of the handler

        def do_GET(self):
            hits.append(self.path)
            requests.append((self.path, dict(self.headers)))
            split = urllib.parse.urlsplit(self.path)
            if split.path in custom:
                custom[split.path](self, dict(urllib.parse.parse_qsl(split.query)))
                return
            if self.path in truncated:
                body = truncated[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            if self.path not in routes:
                self.send_error(404, "not found")
                return
            body, headers = routes[self.path]
            self.send_response(200)
            for key, value in {"Content-Type": "application/octet-stream", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield type("Server", (), {"base": base, "routes": routes, "truncated": truncated, "hits": hits,
                                  "custom": custom, "requests": requests})
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def gopro_files():
    return layout_bytes(GOPRO_FILES)


def check_gopro_output(out: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        rel = Path(name).relative_to("GOPRO_Large")
        dst = out / rel
        if rel.parts[2] == "blur_gamma":
            assert not dst.exists()
        else:
            assert dst.read_bytes() == data, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == {"train": 2, "test": 1}
    assert manifest["file_count"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test", "train"]
    assert reader_pairs(out / "train") == ["GOPR0001_11_00/000001.png", "GOPR0001_11_00/000002.png"]
    assert reader_pairs(out / "test") == ["GOPR0002_11_00/000001.png"]


def reader_pairs(root: Path) -> list[str]:
    """What the data reader sees: the fetch output must be in one of its layouts."""
    from pipelines.data.pairs import find_pairs

    return [pair.name for pair in find_pairs(root)]


# --------------------------------------------------------------------------------------- downloads
@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_download_verify_unpack_normalise(tmp_path, server, gopro_files, fmt):
    archive = (make_tar if fmt == "tar.gz" else make_zip)(tmp_path / f"gopro.{fmt}", gopro_files)
    server.routes[f"/gopro.{fmt}"] = (archive.read_bytes(), {})
    sums = write_checksums(tmp_path / "sums.yaml", {f"GOPRO_Large.{fmt}": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    manifest = fetch_dataset("gopro", spec(f"{server.base}/gopro.{fmt}", f"GOPRO_Large.{fmt}",
                                           expected_pairs={"train": 2, "test": 1}),
                             out, checksums_path=sums, log=quiet)
    check_gopro_output(out, gopro_files)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "gopro"
    assert manifest["source"] == f"{server.base}/gopro.{fmt}" and manifest["source_kind"] == "download"
    assert manifest["archive_sha256"] == sha256(archive) and manifest["sha256_verified"] is True
    assert manifest["date"][:4].isdigit()
    assert [p.name for p in out.parent.iterdir()] == ["gopro"]  # no temp dirs, no downloaded archive


def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, server, gopro_files):
    archive = make_tar(tmp_path / "gopro.tar.gz", gopro_files)
    server.routes["/gopro.tar.gz"] = (archive.read_bytes(), {})
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.tar.gz": "0" * 64})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError) as err:
        fetch_dataset("gopro", spec(f"{server.base}/gopro.tar.gz", "GOPRO_Large.tar.gz"), out,
                      checksums_path=sums, log=quiet)
    msg = str(err.value)
    assert "checksum mismatch for GOPRO_Large.tar.gz" in msg
    assert f"expected sha256 {'0' * 64}" in msg and f"got {sha256(archive)}" in msg
    assert_nothing_left(out)


def test_truncated_download_is_refused(tmp_path, server, gopro_files):
    archive = make_tar(tmp_path / "gopro.tar.gz", gopro_files)
    server.truncated["/gopro.tar.gz"] = archive.read_bytes()
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.tar.gz": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    url = f"{server.base}/gopro.tar.gz"
    with pytest.raises(UserError, match="truncated download") as err:
        fetch_dataset("gopro", spec(url, "GOPRO_Large.tar.gz"), out, checksums_path=sums, retry_wait=0, log=quiet)
    assert url in str(err.value) and f"of {archive.stat().st_size} bytes" in str(err.value)
    # this server cuts every answer half-way and ignores Range: one resume (restarting from byte 0) added
    # nothing, so no more tries; the partial download (and the URL it came from) stays for the next run
    assert len(server.hits) == 2 and "Range" in server.requests[1][1]
    part = out.parent / ".GOPRO_Large.tar.gz.part"
    assert "kept in " + str(part) in str(err.value)
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [part.name, part.name + ".json"]
    assert part.read_bytes() == archive.read_bytes()[: archive.stat().st_size // 2]
    assert json.loads((out.parent / (part.name + ".json")).read_text())["url"] == url


def test_network_failure_names_the_url(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gopro.zip"
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "a" * 64})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match="network failure") as err:
        fetch_dataset("gopro", spec(url), out, checksums_path=sums, timeout=5, log=quiet)
    assert url in str(err.value)
    assert_nothing_left(out)


def test_http_error_and_web_page_are_refused(tmp_path, server):
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "a" * 64})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match="HTTP 404") as err:
        fetch_dataset("gopro", spec(f"{server.base}/missing.zip"), out, checksums_path=sums, log=quiet)
    assert f"{server.base}/missing.zip" in str(err.value)
    server.routes["/landing"] = (b"<html>sign in</html>", {"Content-Type": "text/html; charset=utf-8"})
    with pytest.raises(UserError, match="web page.*--archive"):
        fetch_dataset("gopro", spec(f"{server.base}/landing"), out, checksums_path=sums, log=quiet)
    assert_nothing_left(out)


def test_null_checksum_refuses_unless_trusted(tmp_path, server, gopro_files, capsys):
    archive = make_zip(tmp_path / "gopro.zip", gopro_files)
    server.routes["/gopro.zip"] = (archive.read_bytes(), {})
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": None})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match="no sha256 is recorded for GOPRO_Large.zip.*--trust-unverified"):
        fetch_dataset("gopro", spec(f"{server.base}/gopro.zip"), out, checksums_path=sums, log=quiet)
    assert server.hits == []  # refused before downloading anything
    assert_nothing_left(out)

    manifest = fetch_dataset("gopro", spec(f"{server.base}/gopro.zip"), out, checksums_path=sums,
                             trust_unverified=True)
    assert manifest["archive_sha256"] == sha256(archive) and manifest["sha256_verified"] is False
    assert sha256(archive) in capsys.readouterr().out  # printed so the user can record it
    check_gopro_output(out, gopro_files)
    assert load_checksums(sums) == {"GOPRO_Large.zip": None}  # --trust-unverified alone records nothing


def test_repo_checksums_file_covers_every_configured_archive():
    table = load_checksums()
    params = load_params(REPO / "params.yaml", profile="paper")
    for name, ds in params.fetch.datasets.items():
        assert ds.archive in table, f"{name}: {ds.archive} missing from pipelines/checksums.yaml"
    assert all(v is None or len(v) == 64 for v in table.values())


def test_bad_checksum_entry_is_rejected(tmp_path):
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "not-a-hash"})
    with pytest.raises(ValueError, match="GOPRO_Large.zip: expected 64 hex digits"):
        load_checksums(sums)


# ------------------------------------------------------------------------ mirrors, resume, Google Drive
def spec_urls(urls: list[str], archive: str = "GOPRO_Large.zip", **kw) -> DatasetSource:
    return DatasetSource(urls=urls, archive=archive, out_dir="unused", **kw)


GOPRO_PAIRS = {"train": 2, "test": 1}


def test_urls_are_tried_in_order_until_one_verifies(tmp_path, server, gopro_files):
    """Official URL first, then the mirrors: an HTTP error, a web page (announced or only sniffed), a
    file with the wrong sha256 each move on to the next URL, saying why; later URLs are not touched."""
    archive = make_zip(tmp_path / "gopro.zip", gopro_files)
    server.routes["/page"] = (b"<html><body>Sign in to continue</body></html>", {"Content-Type": "text/html"})
    server.routes["/sniffed.zip"] = (b"\n<!DOCTYPE html>\n<html><body>Quota exceeded</body></html>", {})
    server.routes["/other.zip"] = (make_zip(tmp_path / "other.zip", {"x.png": png_bytes(1)}).read_bytes(), {})
    server.routes["/good.zip"] = (archive.read_bytes(), {})
    server.routes["/never.zip"] = (archive.read_bytes(), {})
    paths = ["/official.zip", "/page", "/sniffed.zip", "/other.zip", "/good.zip", "/never.zip"]
    urls = [server.base + path for path in paths]
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    logs: list[str] = []
    manifest = fetch_dataset("gopro", spec_urls(urls, expected_pairs=GOPRO_PAIRS), out, checksums_path=sums,
                             timeout=5, log=logs.append)
    assert server.hits == paths[:5]
    assert manifest["source"] == urls[4] and manifest["sha256_verified"] is True
    check_gopro_output(out, gopro_files)
    moved_on = [line for line in logs if "trying the next URL" in line]
    assert len(moved_on) == 4
    assert f"{urls[0]} answered HTTP 404" in moved_on[0]
    assert f"{urls[1]} returned a web page (text/html)" in moved_on[1]
    assert f"{urls[2]} returned a web page (application/octet-stream)" in moved_on[2]
    assert f"checksum mismatch for GOPRO_Large.zip ({urls[3]})" in moved_on[3]
    assert [p.name for p in out.parent.iterdir()] == ["gopro"]  # no partial download, no temp dirs


def test_all_urls_failing_lists_every_reason(tmp_path, server):
    server.routes["/page"] = (b"<html>login</html>", {"Content-Type": "text/html"})
    urls = [f"{server.base}/gone.zip", f"{server.base}/page"]
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "a" * 64})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError) as err:
        fetch_dataset("gopro", spec_urls(urls), out, checksums_path=sums, timeout=5, log=quiet)
    msg = str(err.value)
    assert msg.startswith("gopro: all 2 URLs failed:")
    assert f"1. network failure: {urls[0]} answered HTTP 404" in msg and f"2. {urls[1]} returned a web page" in msg
    assert_nothing_left(out)


def serve_cut_once(server, path: str, data: bytes, cut_at: int, *, honour_range: bool = True,
                   headers: dict | None = None, content_range: str | None = None) -> list[int]:
    """``path``: the first answer closes the connection after ``cut_at`` body bytes, the next ones send
    everything (206 + Content-Range for a Range request when ``honour_range``). Returns the bytes sent per
    request."""
    sent: list[int] = []

    def answer(handler, _query):
        first = not sent
        sent.append(send_body(handler, data, honour_range=honour_range and not first, headers=headers,
                              cut_after=cut_at if first else None, content_range=None if first else content_range))

    server.custom[path] = answer
    return sent


@pytest.mark.parametrize("when", ["same-run", "next-run"])
def test_cut_connection_is_resumed_with_range(tmp_path, server, gopro_files, when):
    """The server closes the socket after N bytes on the first request and honours Range on the next:
    only the rest is transferred (in the same run by a retry, or by the next run from the kept
    partial file), with If-Range carrying the ETag, and the result verifies."""
    data = make_zip(tmp_path / "gopro.zip", gopro_files).read_bytes()
    cut = len(data) // 3
    sent = serve_cut_once(server, "/gopro.zip", data, cut, headers={"ETag": '"v1"'})
    url = f"{server.base}/gopro.zip"
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": hashlib.sha256(data).hexdigest()})
    out = tmp_path / "data" / "gopro"
    part = out.parent / ".GOPRO_Large.zip.part"
    logs: list[str] = []
    run = dict(checksums_path=sums, timeout=5, retry_wait=0, log=logs.append)
    if when == "next-run":
        with pytest.raises(UserError, match=f"truncated download from {re.escape(url)}.* after {cut} of {len(data)} bytes"):
            fetch_dataset("gopro", spec_urls([url], expected_pairs=GOPRO_PAIRS), out, retries=0, **run)
        assert part.read_bytes() == data[:cut] and not out.exists()
    manifest = fetch_dataset("gopro", spec_urls([url], expected_pairs=GOPRO_PAIRS), out, **run)
    assert sent == [cut, len(data) - cut]
    resumed = server.requests[1][1]
    assert resumed["Range"] == f"bytes={cut}-" and resumed["If-Range"] == '"v1"'
    assert manifest["archive_sha256"] == hashlib.sha256(data).hexdigest() and manifest["sha256_verified"] is True
    check_gopro_output(out, gopro_files)
    assert [p.name for p in out.parent.iterdir()] == ["gopro"]  # the partial file and its .json are gone
    if when == "same-run":
        assert any(f"after {cut} of {len(data)} bytes; resuming" in line for line in logs), logs


@pytest.mark.parametrize("answer", ["ignores-range", "wrong-content-range"])
def test_server_ignoring_range_restarts_from_zero(tmp_path, server, gopro_files, answer):
    """A partial file is kept from a cut; the server then answers a Range request with the whole file
    (HTTP 200), or with a 206 that does not start where asked: the download starts over from byte 0."""
    data = make_zip(tmp_path / "gopro.zip", gopro_files).read_bytes()
    cut = len(data) // 2
    sent = serve_cut_once(server, "/gopro.zip", data, cut, honour_range=answer != "ignores-range",
                          content_range=f"bytes 0-{len(data) - cut - 1}/{len(data)}")
    url = f"{server.base}/gopro.zip"
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": hashlib.sha256(data).hexdigest()})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match="truncated download"):
        fetch_dataset("gopro", spec_urls([url]), out, checksums_path=sums, timeout=5, retries=0, log=quiet)
    logs: list[str] = []
    manifest = fetch_dataset("gopro", spec_urls([url], expected_pairs=GOPRO_PAIRS), out, checksums_path=sums,
                             timeout=5, retry_wait=0, log=logs.append)
    assert server.requests[1][1]["Range"] == f"bytes={cut}-"
    if answer == "ignores-range":
        assert sent == [cut, len(data)]
        assert any("answered the whole file (HTTP 200" in line and "restarting from byte 0" in line for line in logs)
    else:
        assert len(sent) == 3 and "Range" not in server.requests[2][1]  # the bad 206, then a plain request
        assert any("answered a range other than the one asked for" in line and "starting over from byte 0" in line
                   for line in logs), logs
    assert manifest["sha256_verified"] is True
    check_gopro_output(out, gopro_files)
    assert [p.name for p in out.parent.iterdir()] == ["gopro"]


@pytest.mark.parametrize("total_known", [True, False])
def test_complete_partial_file_is_not_downloaded_again(tmp_path, server, gopro_files, total_known):
    """A partial file that already holds every byte (a run killed before the rename): no second
    download; when its size was not announced, the server's 416 (range not satisfiable) says so."""
    data = make_zip(tmp_path / "gopro.zip", gopro_files).read_bytes()
    server.custom["/gopro.zip"] = lambda handler, _query: send_body(handler, data)
    url = f"{server.base}/gopro.zip"
    out = tmp_path / "data" / "gopro"
    out.parent.mkdir(parents=True)
    part = out.parent / ".GOPRO_Large.zip.part"
    part.write_bytes(data)
    (out.parent / (part.name + ".json")).write_text(json.dumps(
        {"url": url, "validator": None, "total": len(data) if total_known else None}))
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": hashlib.sha256(data).hexdigest()})
    fetch_dataset("gopro", spec_urls([url], expected_pairs=GOPRO_PAIRS), out, checksums_path=sums, timeout=5,
                  log=quiet)
    assert server.hits == ([] if total_known else ["/gopro.zip"])
    check_gopro_output(out, gopro_files)
    assert [p.name for p in out.parent.iterdir()] == ["gopro"]


def test_partial_file_of_another_url_is_not_continued(tmp_path, server, gopro_files):
    """Bytes from one URL are never continued with another URL's (with a null checksum nothing would
    catch the mix): the partial file of mirror 1 is replaced by a full download from mirror 2."""
    data = make_zip(tmp_path / "gopro.zip", gopro_files).read_bytes()
    server.custom["/b.zip"] = lambda handler, _query: send_body(handler, data)
    out = tmp_path / "data" / "gopro"
    out.parent.mkdir(parents=True)
    part = out.parent / ".GOPRO_Large.zip.part"
    part.write_bytes(b"x" * 100)
    (out.parent / (part.name + ".json")).write_text(json.dumps({"url": f"{server.base}/a.zip", "total": len(data)}))
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": hashlib.sha256(data).hexdigest()})
    fetch_dataset("gopro", spec_urls([f"{server.base}/b.zip"], expected_pairs=GOPRO_PAIRS), out,
                  checksums_path=sums, timeout=5, log=quiet)
    assert "Range" not in server.requests[0][1]
    check_gopro_output(out, gopro_files)


DRIVE_ID = "1FiLe-Id_0123456789"
DRIVE_UUID = "4c1e2f3a-uuid"


def drive_server(server, data: bytes, style: str) -> None:
    """Imitates Google Drive for a file too large for its virus scan.

    ``usercontent-form``: ``/uc?export=download&id=ID`` redirects to ``/download?id=ID&export=download``,
    which answers the "can't scan this file for viruses" page holding a GET form (``id="download-form"``,
    hidden id / export / confirm=t / uuid); only the submitted form gets the file. ``confirm-link`` and
    ``cookie`` (the older drive.google.com page): ``/uc`` answers a page that sets a
    ``download_warning_*`` cookie and (``confirm-link``) has a "Download anyway" link with
    ``confirm=<token>``; only a request carrying both the token and the cookie gets the file.
    ``endless``: the form never leads to the file."""
    token = "T0k3n_x"

    def page(body: str, cookie: str | None = None):
        def write(handler):
            raw = body.encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html; charset=utf-8")
            if cookie:
                handler.send_header("Set-Cookie", cookie)
            handler.send_header("Content-Length", str(len(raw)))
            handler.end_headers()
            handler.wfile.write(raw)
        return write

    form = (f'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
            f'<p>Google Drive can&#39;t scan this file for viruses.</p>'
            f'<form id="download-form" action="{server.base}/download" method="get">'
            f'<input type="submit" id="uc-download-link" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{DRIVE_ID}"><input type="hidden" name="export" value="download">'
            f'<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{DRIVE_UUID}">'
            f'</form></body></html>')
    link = (f'<html><body>Google Drive can&#39;t scan this file for viruses. <a id="uc-download-link" '
            f'href="/uc?export=download&amp;confirm={token}&amp;id={DRIVE_ID}">Download anyway</a></body></html>')
    cookie = f"download_warning_13058876669334088843_{DRIVE_ID}={token}; Path=/; HttpOnly"

    def uc(handler, query):
        if style in ("usercontent-form", "endless"):
            handler.send_response(303)
            handler.send_header("Location", f"{server.base}/download?id={query.get('id')}&export=download")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif query.get("confirm") == token and f"={token}" in (handler.headers.get("Cookie") or ""):
            send_body(handler, data, headers={"Content-Disposition": 'attachment; filename="GOPRO_Large.zip"'})
        else:
            page(link if style == "confirm-link" else "<html><body>Virus scan warning</body></html>", cookie)(handler)

    def usercontent(handler, query):
        wanted = {"id": DRIVE_ID, "export": "download", "confirm": "t", "uuid": DRIVE_UUID}
        if style == "usercontent-form" and query == wanted:
            send_body(handler, data, headers={"Content-Disposition": 'attachment; filename="GOPRO_Large.zip"'})
        else:
            page(form)(handler)

    server.custom["/uc"] = uc
    server.custom["/download"] = usercontent


@pytest.mark.parametrize("style", ["usercontent-form", "confirm-link", "cookie"])
def test_google_drive_confirmation_page_is_followed(tmp_path, server, gopro_files, style):
    data = make_zip(tmp_path / "gopro.zip", gopro_files).read_bytes()
    drive_server(server, data, style)
    url = f"{server.base}/uc?export=download&id={DRIVE_ID}"
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": hashlib.sha256(data).hexdigest()})
    out = tmp_path / "data" / "gopro"
    logs: list[str] = []
    manifest = fetch_dataset("gopro", spec_urls([url], expected_pairs=GOPRO_PAIRS), out, checksums_path=sums,
                             timeout=5, log=logs.append)
    assert manifest["source"] == url and manifest["sha256_verified"] is True
    check_gopro_output(out, gopro_files)
    assert sum("following the download confirmation page" in line for line in logs) == 1
    if style == "usercontent-form":
        assert len(server.hits) == 3 and server.hits[-1].startswith("/download?") and "uuid=" in server.hits[-1]
    else:
        assert len(server.hits) == 2 and "confirm=T0k3n_x" in server.hits[-1]


def test_google_drive_page_that_never_gives_the_file_is_refused(tmp_path, server):
    drive_server(server, b"", "endless")
    url = f"{server.base}/uc?export=download&id={DRIVE_ID}"
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "a" * 64})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match=f"{re.escape(url)} returned a web page.*--archive"):
        fetch_dataset("gopro", spec_urls([url]), out, checksums_path=sums, timeout=5, log=quiet)
    assert len(server.hits) <= 6  # a bounded number of confirmation hops
    assert_nothing_left(out)


# ------------------------------------------------------------------------------ recording checksums
def repo_style_checksums(path: Path) -> Path:
    """A copy of the repository's pipelines/checksums.yaml (comments, nulls) to record into."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((REPO / "pipelines" / "checksums.yaml").read_text())
    assert load_checksums(path)["GOPRO_Large.zip"] is None
    return path


def test_record_checksum_writes_the_first_verified_download(tmp_path, server, gopro_files):
    """--record-checksum on a null entry: the sha256 of the download is written into the checksums file
    once the whole fetch succeeded; only that line changes (comments stay), the file is replaced
    atomically (no temporary left), and the next fetch verifies against it."""
    archive = make_zip(tmp_path / "gopro.zip", gopro_files)
    server.routes["/gopro.zip"] = (archive.read_bytes(), {})
    url = f"{server.base}/gopro.zip"
    sums = repo_style_checksums(tmp_path / "sums" / "checksums.yaml")
    before = sums.read_text().splitlines()
    out = tmp_path / "data" / "gopro"
    logs: list[str] = []
    manifest = fetch_dataset("gopro", spec(url, expected_pairs=GOPRO_PAIRS), out, checksums_path=sums,
                             record=True, timeout=5, log=logs.append)
    assert manifest["sha256_verified"] is False  # it was not verified: it is recorded now
    after = sums.read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert len(after) == len(before) and len(changed) == 1
    assert changed[0][0].startswith("GOPRO_Large.zip: null")
    assert changed[0][1].startswith(f"GOPRO_Large.zip: {sha256(archive)}  # recorded by") and url in changed[0][1]
    assert load_checksums(sums) == {"GOPRO_Large.zip": sha256(archive), "HIDE_dataset.zip": None, "RealBlur.tar.gz": None}
    assert [p.name for p in sums.parent.iterdir()] == ["checksums.yaml"]
    assert any(f"recorded `GOPRO_Large.zip: {sha256(archive)}` in {sums}" in line for line in logs)

    again = fetch_dataset("gopro", spec(url, expected_pairs=GOPRO_PAIRS), out, checksums_path=sums, force=True,
                          record=True, timeout=5, log=quiet)
    assert again["sha256_verified"] is True and sums.read_text().splitlines() == after  # nothing rewritten


def test_record_checksum_writes_nothing_when_the_fetch_fails(tmp_path, server, gopro_files):
    archive = make_zip(tmp_path / "gopro.zip", gopro_files)
    server.routes["/gopro.zip"] = (archive.read_bytes(), {})
    sums = repo_style_checksums(tmp_path / "checksums.yaml")
    text = sums.read_text()
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match="found 2 train pairs .* expected 2103"):
        fetch_dataset("gopro", spec(f"{server.base}/gopro.zip", expected_pairs={"train": 2103, "test": 1111}), out,
                      checksums_path=sums, record=True, timeout=5, log=quiet)
    assert sums.read_text() == text
    assert_nothing_left(out)


def test_record_checksum_cli_with_a_hand_downloaded_archive(tmp_path, gopro_files, capsys):
    """The CLI flag, with --archive (RealBlur is only downloaded by hand); an entry missing from the
    file is appended; no local path goes into the (committed) file."""
    archive = make_zip(tmp_path / "GOPRO_Large.zip", gopro_files)
    sums = write_checksums(tmp_path / "sums.yaml", {"HIDE_dataset.zip": None})
    out = tmp_path / "data" / "gopro"
    params = write_params(tmp_path, {"gopro": {"url": "http://127.0.0.1:9/x", "archive": "GOPRO_Large.zip",
                                               "out_dir": str(out), "expected_pairs": GOPRO_PAIRS}}, [])
    common = ["--params", str(params), "--profile", "cpu", "--checksums", str(sums)]
    assert main(["fetch", "gopro", "--archive", str(archive), *common]) == 2
    assert "--record-checksum" in capsys.readouterr().err
    assert main(["fetch", "gopro", "--archive", str(archive), "--record-checksum", *common]) == 0
    assert load_checksums(sums) == {"HIDE_dataset.zip": None, "GOPRO_Large.zip": sha256(archive)}
    assert "from --archive GOPRO_Large.zip" in sums.read_text() and str(tmp_path) not in sums.read_text()
    assert f"recorded `GOPRO_Large.zip: {sha256(archive)}`" in capsys.readouterr().out


def test_record_checksum_never_overwrites_a_value(tmp_path):
    from pipelines.data.fetching.verify import record_checksum

    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": "a" * 64})
    assert record_checksum(sums, "GOPRO_Large.zip", "a" * 64, "x") is False
    with pytest.raises(UserError, match="not overwriting"):
        record_checksum(sums, "GOPRO_Large.zip", "b" * 64, "x")
    assert load_checksums(sums) == {"GOPRO_Large.zip": "a" * 64}


# ------------------------------------------------------------------------------- malicious archives
def _tar_member(name, kind, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _zip_symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def _zip_special(name, kind):
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o644) << 16
    return info, b""


def _file(name, data=b"owned"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


MALICIOUS = {
    "tar-dotdot": ("tar", [_file("GOPRO_Large/" + "../" * 12 + "evil")], "GOPRO_Large/" + "../" * 12 + "evil", "'..' path component"),
    "tar-absolute": ("tar", [_file("/tmp/evil")], "/tmp/evil", "absolute path"),
    "tar-symlink": ("tar", [(_tar_member("GOPRO_Large/passwd", tarfile.SYMTYPE, "/etc/passwd"), None)],
                    "GOPRO_Large/passwd", "symlink pointing outside"),
    "tar-relative-symlink": ("tar", [(_tar_member("GOPRO_Large/up", tarfile.SYMTYPE, "../../.."), None)],
                             "GOPRO_Large/up", "symlink pointing outside"),
    "tar-hardlink": ("tar", [(_tar_member("GOPRO_Large/hl", tarfile.LNKTYPE, "../outside"), None)],
                     "GOPRO_Large/hl", "hard link pointing outside"),
    "tar-hardlink-absolute": ("tar", [(_tar_member("GOPRO_Large/hl", tarfile.LNKTYPE, "/etc/passwd"), None)],
                              "GOPRO_Large/hl", "hard link pointing outside"),
    "tar-device": ("tar", [(_tar_member("GOPRO_Large/null", tarfile.CHRTYPE), None)],
                   "GOPRO_Large/null", "device file"),
    # links are refused even when they stay inside the target: dataset archives need none, and a chain
    # of inside-looking links can lead out (CVE-2025-4517, test_symlink_chain_escape_is_refused)
    "tar-symlink-inside": ("tar", [(_tar_member("GOPRO_Large/alias", tarfile.SYMTYPE, "train"), None)],
                           "GOPRO_Large/alias", "symlink ('train'): links are refused"),
    "tar-hardlink-inside": ("tar", [(_tar_member("GOPRO_Large/copy.png", tarfile.LNKTYPE,
                                                 "GOPRO_Large/test/GOPR0002_11_00/blur/000001.png"), None)],
                            "GOPRO_Large/copy.png", "hard link ('GOPRO_Large/test/GOPR0002_11_00/blur/000001.png'): links are refused"),
    "tar-fifo": ("tar", [(_tar_member("GOPRO_Large/pipe", tarfile.FIFOTYPE), None)], "GOPRO_Large/pipe", "special file"),
    "zip-dotdot": ("zip", [("GOPRO_Large/" + "../" * 12 + "evil", b"owned")], "GOPRO_Large/" + "../" * 12 + "evil", "'..' path component"),
    "zip-absolute": ("zip", [("/tmp/evil", b"owned")], "/tmp/evil", "absolute path"),
    "zip-symlink": ("zip", [_zip_symlink("GOPRO_Large/passwd", "/etc/passwd")], "GOPRO_Large/passwd",
                    "symbolic link"),
    "zip-symlink-inside": ("zip", [_zip_symlink("GOPRO_Large/alias", "train")], "GOPRO_Large/alias", "symbolic link"),
    "zip-device": ("zip", [_zip_special("GOPRO_Large/null", stat.S_IFCHR)], "GOPRO_Large/null", "device file"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archive_is_refused(tmp_path, gopro_files, case):
    fmt, extra, member, problem = MALICIOUS[case]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    suffix = "tar.gz" if fmt == "tar" else "zip"
    archive = (make_tar if fmt == "tar" else make_zip)(downloads / f"evil.{suffix}", gopro_files, extra)
    sums = write_checksums(downloads / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "work" / "data" / "gopro"
    with pytest.raises(UserError) as err:
        fetch_dataset("gopro", spec(), out, archive=archive, checksums_path=sums, log=quiet)
    msg = str(err.value)
    assert f"refusing to unpack {archive}" in msg and repr(member) in msg and problem in msg, msg
    assert_nothing_left(out)
    assert not list(tmp_path.rglob("evil")) and not list(tmp_path.rglob("passwd"))


def symlink_chain_escape(dest_len: int, up: int, into: str) -> list:
    """Tar members of a CVE-2025-4517-style escape, built the way the public proofs of concept do.

    16 symlinks ``a``, ``a/b`` ... each step into a sibling folder with a very long name, so that
    ``a/b/.../p`` really is ``ddd/ddd/...`` (16 deep, close to PATH_MAX). A symlink ``a/b/.../p/lll`` (a
    254-character name) points 16 levels up, back to the target folder; ``escape`` points at
    ``a/b/.../p/lll/..`` * ``up`` + ``/into``. As text every link stays inside the target, and
    ``os.path.realpath`` gives up with ENAMETOOLONG on the long path and resolves it as text, which is
    how tarfile's ``filter="data"`` is defeated on unpatched Pythons (3.11.7 here); the kernel follows
    ``lll`` to the target and then ``up`` levels above it, so the member ``escape/evil.png`` lands in
    ``into`` outside. ``dest_len`` is the length of the extraction folder's path (sizes the long names so
    that the folders can be created but the full path passes PATH_MAX)."""
    steps = "abcdefghijklmnop"
    comp = "d" * ((3920 - dest_len) // len(steps) - 1)
    members, path = [], ""
    for step in steps:
        members.append((_tar_member(posixpath.join(path, comp), tarfile.DIRTYPE), None))
        members.append((_tar_member(posixpath.join(path, step), tarfile.SYMTYPE, comp), None))
        path = posixpath.join(path, comp)
    long_link = posixpath.join(*steps, "l" * 254)
    members.append((_tar_member(long_link, tarfile.SYMTYPE, posixpath.join(*[".."] * len(steps))), None))
    members.append((_tar_member("escape", tarfile.SYMTYPE, long_link + "/.." * up + "/" + into), None))
    members.append(_file("escape/evil.png", png_bytes(99)))
    return members


def test_symlink_chain_escape_is_refused(tmp_path):
    """The reliability issue: `fetch realblur_j --archive X.tar.gz --trust-unverified` wrote a file into
    another folder. Now the first link is refused (no link is ever created), nothing lands outside."""
    victim = tmp_path / "victim"
    victim.mkdir()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    out = tmp_path / "work" / "data" / "realblur_j"
    # the extraction folder is <out parent>/.<name>.<host>.<pid>-<8>.tmp/.fetch/raw (pipelines.core.files.atomic_dir)
    dest_len = len(str(out.parent)) + len(out.name) + 60
    # 5 levels above .fetch/raw: raw -> .fetch -> the temporary output -> data -> work -> tmp_path
    extra = symlink_chain_escape(dest_len, up=5, into="victim")
    archive = make_tar(downloads / "RealBlur.tar.gz", {}, extra)
    sums = write_checksums(downloads / "sums.yaml", {"RealBlur.tar.gz": None})
    def files_and_links():
        return sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_symlink() or not p.is_dir())

    before = files_and_links()
    realblur = spec("http://x/", "RealBlur.tar.gz", manual=True, layout="realblur",
                    lists={"train": "RealBlur_J_train_list.txt", "test": "RealBlur_J_test_list.txt"})
    with pytest.raises(UserError) as err:
        fetch_dataset("realblur_j", realblur, out, archive=archive, trust_unverified=True,
                      checksums_path=sums, log=quiet)
    msg = str(err.value)
    assert f"refusing to unpack {archive}" in msg and "member 'a'" in msg and "links are refused" in msg, msg
    assert list(victim.iterdir()) == []
    assert_nothing_left(out)
    assert files_and_links() == before


@pytest.mark.parametrize("order", ["links-first", "files-first"])
def test_symlink_chain_is_refused_by_unpack_archive(tmp_path, gopro_files, order):
    """The same attack against unpack_archive itself, with the regular members before or after it."""
    from pipelines.data.fetching.unpack import unpack_archive

    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "t" / "raw"
    attack = symlink_chain_escape(len(str(dest)), up=2, into="victim")
    files = [_file(name, data) for name, data in gopro_files.items()]
    archive = make_tar(tmp_path / "evil.tar", {}, attack + files if order == "links-first" else files + attack)
    with pytest.raises(UserError, match=rf"refusing to unpack {archive}: member 'a': symlink"):
        unpack_archive(archive, dest)
    assert list(victim.iterdir()) == []
    assert not [p for p in dest.rglob("*") if p.is_symlink()]


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_declared_size_over_the_limit_is_refused(tmp_path, fmt):
    """Zip bombs: the declared uncompressed total is checked against fetch.max_unpacked_gb."""
    files = {"GOPRO_Large/train/S/blur/000001.png": bytes(3_000_000), "GOPRO_Large/train/S/sharp/000001.png": b"x"}
    archive = (make_tar if fmt == "tar.gz" else make_zip)(tmp_path / f"bomb.{fmt}", files)
    assert archive.stat().st_size < 100_000
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError) as err:
        fetch_dataset("gopro", spec(), out, archive=archive, checksums_path=sums, max_unpacked_gb=0.002, log=quiet)
    msg = str(err.value)
    assert f"refusing to unpack {archive}" in msg and "GOPRO_Large/train/S/blur/000001.png" in msg
    assert "more than 0.002 GB (params fetch.max_unpacked_gb)" in msg, msg
    assert_nothing_left(out)
    # the limit comes from params through the CLI
    params = write_params(tmp_path, {"gopro": {"url": "http://127.0.0.1:9/x", "archive": "GOPRO_Large.zip",
                                               "out_dir": str(out)}}, [], max_unpacked_gb=0.002)
    assert load_params(params, profile="cpu").fetch.max_unpacked_gb == 0.002
    assert main(["fetch", "gopro", "--archive", str(archive), "--params", str(params), "--profile", "cpu",
                 "--checksums", str(sums)]) == 2
    assert_nothing_left(out)


def test_tar_made_with_dot_root_is_unpacked(tmp_path, gopro_files):
    """`tar -C dir -czf x.tar.gz .` starts with a "./" folder and names every member "./...": fine."""
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    archive = make_tar(tmp_path / "dot.tar.gz", {}, [(root, None)] + [_file("./" + n, d) for n, d in gopro_files.items()])
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    fetch_dataset("gopro", spec(expected_pairs=GOPRO_PAIRS), out, archive=archive, checksums_path=sums, log=quiet)
    check_gopro_output(out, gopro_files)


def test_broken_archive_is_refused(tmp_path, gopro_files):
    good = make_tar(tmp_path / "good.tar.gz", gopro_files).read_bytes()
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(good[: len(good) * 2 // 3])
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    with pytest.raises(UserError, match=f"broken or truncated archive {archive}"):
        fetch_dataset("gopro", spec(), out, archive=archive, checksums_path=sums, log=quiet)
    assert_nothing_left(out)


# ------------------------------------------------------------------------------- --archive / --source
def write_params(tmp_path: Path, datasets: dict, active: list[str], **fetch) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["fetch"] = {"active": active, "datasets": datasets, **fetch}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_archive_and_source(tmp_path, gopro_files, capsys):
    archive = make_zip(tmp_path / "GOPRO_Large.zip", gopro_files)
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "data" / "gopro"
    params = write_params(tmp_path, {"gopro": {"url": "http://127.0.0.1:9/x", "archive": "GOPRO_Large.zip",
                                               "out_dir": str(out), "expected_pairs": {"train": 2, "test": 1}}}, [])
    common = ["--params", str(params), "--profile", "cpu", "--checksums", str(sums)]
    assert main(["fetch", "gopro", "--archive", str(archive), *common]) == 0
    check_gopro_output(out, gopro_files)
    assert json.loads((out / "manifest.json").read_text())["source"] == str(archive.resolve())

    # an already-fetched folder is left alone; --source (unpacked copy) needs --trust-unverified
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(archive).extractall(unpacked)
    out2 = tmp_path / "data" / "gopro2"
    capsys.readouterr()
    assert main(["fetch", "gopro", "--source", str(unpacked), "--out", str(out2), *common]) == 2
    assert "--trust-unverified" in capsys.readouterr().err
    assert not out2.exists()
    assert main(["fetch", "gopro", "--source", str(unpacked), "--out", str(out2), "--trust-unverified", *common]) == 0
    check_gopro_output(out2, gopro_files)
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["source_kind"] == "source" and manifest["archive_sha256"] is None
    assert (unpacked / "GOPRO_Large/train/GOPR0001_11_00/blur/000001.png").is_file()  # source untouched


def test_cli_unknown_dataset_and_all(tmp_path, server, gopro_files, capsys):
    archive = make_tar(tmp_path / "gopro.tar.gz", gopro_files)
    server.routes["/gopro.tar.gz"] = (archive.read_bytes(), {})
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.tar.gz": sha256(archive), "HIDE.zip": "b" * 64})
    data = tmp_path / "data"
    datasets = {
        "gopro": {"url": f"{server.base}/gopro.tar.gz", "archive": "GOPRO_Large.tar.gz", "out_dir": str(data / "gopro")},
        "hide": {"url": f"{server.base}/hide.zip", "archive": "HIDE.zip", "layout": "flat", "out_dir": str(data / "hide")},
    }
    params = write_params(tmp_path, datasets, ["gopro"])
    common = ["--params", str(params), "--profile", "cpu", "--checksums", str(sums)]
    assert main(["fetch", "nope", *common]) == 2
    assert "unknown dataset 'nope'; allowed: gopro, hide" in capsys.readouterr().err
    assert main(["fetch", "--all", *common]) == 0
    assert (data / "gopro" / "manifest.json").is_file()
    assert not (data / "hide").exists()  # not in fetch.active
    assert server.hits == ["/gopro.tar.gz"]
    assert main(["fetch", "--all", *common]) == 0  # already fetched: no second download
    assert server.hits == ["/gopro.tar.gz"]


def test_manual_dataset_needs_archive(tmp_path):
    sums = write_checksums(tmp_path / "sums.yaml", {"RealBlur.tar.gz": None})
    out = tmp_path / "data" / "realblur_j"
    page = "http://cg.postech.ac.kr/research/realblur/"
    with pytest.raises(UserError, match="download RealBlur.tar.gz from it by hand.*--archive"):
        fetch_dataset("realblur_j", spec(page, "RealBlur.tar.gz", manual=True, layout="realblur"), out,
                      checksums_path=sums, trust_unverified=True, log=quiet)
    assert_nothing_left(out)


# ----------------------------------------------------------------------------------- HIDE, RealBlur
def test_hide_official_layout_to_flat_test(tmp_path):
    root = tmp_path / "HIDE_dataset"
    files = {"GT/a.png": 1, "GT/b.png": 2, "GT/t.png": 3, "test/test-close-ups/a.png": 4,
             "test/test-long-shot/b.png": 5, "train/t.png": 6}
    for rel, seed in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(png_bytes(seed))
    out = tmp_path / "data" / "hide"
    manifest = fetch_dataset("hide", spec(archive="HIDE_dataset.zip", layout="flat", expected_pairs={"test": 2}),
                             out, source=tmp_path, trust_unverified=True,
                             checksums_path=write_checksums(tmp_path / "s.yaml", {}), log=quiet)
    assert manifest["pairs"] == {"test": 2}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "test/input/a.png", "test/input/b.png", "test/target/a.png", "test/target/b.png"]
    assert (out / "test/input/b.png").read_bytes() == png_bytes(5)
    assert (out / "test/target/b.png").read_bytes() == png_bytes(2)
    assert reader_pairs(out / "test") == ["a.png", "b.png"]


def test_realblur_list_files_and_expected_pairs(tmp_path):
    scene_dir = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    files = {}
    for scene, idx in (("scene001", 1), ("scene001", 2), ("scene002", 1)):
        for role in ("blur", "gt"):
            files[f"RealBlur/{scene_dir}/{scene}/{role}/{role}_{idx}.png"] = png_bytes(hash((scene, idx, role)) % 1000)
    files["RealBlur/RealBlur_J_train_list.txt"] = (
        f"{scene_dir}/scene001/gt/gt_1.png {scene_dir}/scene001/blur/blur_1.png\n"
        f"{scene_dir}/scene001/gt/gt_2.png {scene_dir}/scene001/blur/blur_2.png\n").encode()
    files["RealBlur/RealBlur_J_test_list.txt"] = f"{scene_dir}/scene002/gt/gt_1.png {scene_dir}/scene002/blur/blur_1.png\n".encode()
    archive = make_tar(tmp_path / "RealBlur.tar.gz", files)
    sums = write_checksums(tmp_path / "sums.yaml", {"RealBlur.tar.gz": sha256(archive)})
    lists = {"train": "RealBlur_J_train_list.txt", "test": "RealBlur_J_test_list.txt"}
    out = tmp_path / "data" / "realblur_j"
    bad = spec("http://x/", "RealBlur.tar.gz", manual=True, layout="realblur", lists=lists,
               expected_pairs={"train": 3758, "test": 980})
    with pytest.raises(UserError, match="found 2 train pairs .* expected 3758"):
        fetch_dataset("realblur_j", bad, out, archive=archive, checksums_path=sums, log=quiet)
    assert not out.exists()

    good = spec("http://x/", "RealBlur.tar.gz", manual=True, layout="realblur", lists=lists,
                expected_pairs={"train": 2, "test": 1})
    manifest = fetch_dataset("realblur_j", good, out, archive=archive, checksums_path=sums, log=quiet)
    assert manifest["pairs"] == {"train": 2, "test": 1}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        f"{split}/{kind}/{scene}/{i}.png" for split, scene, i in
        (("train", "scene001", 1), ("train", "scene001", 2), ("test", "scene002", 1)) for kind in ("blur", "sharp"))
    assert (out / "test/sharp/scene002/1.png").read_bytes() == files[f"RealBlur/{scene_dir}/scene002/gt/gt_1.png"]
    assert (out / "test/blur/scene002/1.png").read_bytes() == files[f"RealBlur/{scene_dir}/scene002/blur/blur_1.png"]

    assert reader_pairs(out / "train") == ["scene001/1.png", "scene001/2.png"]

    # the normalised {blur,sharp}/<scene>/ layout is accepted back as a --source
    out2 = tmp_path / "data" / "copy"
    again = fetch_dataset("realblur_j", good, out2, source=out, trust_unverified=True, checksums_path=sums, log=quiet)
    assert again["pairs"] == manifest["pairs"]


@pytest.mark.parametrize("missing, message", [
    ("GOPRO_Large/train/GOPR0001_11_00/sharp/000002.png", "unpaired images.*without a sharp partner.*000002.png"),
    ("GOPRO_Large/test/GOPR0002_11_00/sharp/000001.png", "unpaired scene.*GOPR0002_11_00/blur has no sibling sharp"),
])
def test_unpaired_images_fail_cleanly(tmp_path, gopro_files, missing, message):
    del gopro_files[missing]
    archive = make_zip(tmp_path / "a.zip", gopro_files)
    sums = write_checksums(tmp_path / "sums.yaml", {"GOPRO_Large.zip": sha256(archive)})
    out = tmp_path / "out" / "gopro"
    with pytest.raises(UserError, match=message):
        fetch_dataset("gopro", spec(), out, archive=archive, checksums_path=sums, log=quiet)
    assert_nothing_left(out)


# ------------------------------------------------------------------------------------------ params
@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_profile_validates(profile):
    params = load_params(REPO / "params.yaml", profile=profile)
    assert set(params.fetch.datasets) == {"gopro", "hide", "realblur_j", "realblur_r"}
    # the paper profile fetches every Table-1 dataset (RealBlur by hand: README "all four columns of Table 1")
    assert params.fetch.active == (["gopro", "hide", "realblur_j", "realblur_r"] if profile == "paper" else [])
    for ds in params.fetch.datasets.values():
        assert ds.url.startswith(("http://", "https://"))
        assert ds.urls[0] == ds.url and all(u.startswith(("http://", "https://")) for u in ds.urls)


def test_url_and_urls_in_params():
    one = DatasetSource(url="https://a/x.zip", archive="x.zip", out_dir="d")
    assert one.urls == ["https://a/x.zip"] and one.url == "https://a/x.zip"
    many = DatasetSource(urls=["https://a/x.zip", "https://b/x.zip"], archive="x.zip", out_dir="d")
    assert many.url == "https://a/x.zip"
    with pytest.raises(ValueError, match="either url .* or urls"):
        DatasetSource(url="https://c/x.zip", urls=["https://a/x.zip"], archive="x.zip", out_dir="d")
    with pytest.raises(ValueError, match="at least one URL"):
        DatasetSource(archive="x.zip", out_dir="d")


def test_if_active_skips_datasets_outside_the_profile(tmp_path, capsys):
    """The DVC fetch stage of an inactive dataset downloads nothing and says why."""
    from pipelines import cli

    out = tmp_path / "gopro"
    assert cli.main(["fetch", "gopro", "--if-active", "--profile", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["NOT_FETCHED.txt"]
    assert "not in fetch.active of profile 'cpu'" in (out / "NOT_FETCHED.txt").read_text()
