"""The miniature official archives (pipelines/rehearsal/archives.py) and the 127.0.0.1 file server
(pipelines/rehearsal/server.py): deterministic bytes, the official list-file format, the real
``blurdm-bench fetch`` command downloading each archive from the server, HTTP Range, refused paths."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from pipelines.rehearsal.archives import (
    GOPRO_ARCHIVE,
    HIDE_ARCHIVE,
    REALBLUR_ARCHIVE,
    read_info,
    write_archives,
    write_params,
)
from pipelines.rehearsal.server import serve

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
ARCHIVES = (GOPRO_ARCHIVE, HIDE_ARCHIVE, REALBLUR_ARCHIVE)
ARGS = {"pairs_per_split": 2, "size": (40, 64), "seed": 0}
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archives")
    write_archives(folder, **ARGS)
    return folder


def members(archive: Path) -> dict[str, bytes]:
    """Regular files of a zip or tar.gz: name -> bytes."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    with tarfile.open(archive) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


# ------------------------------------------------------------------------------------ the archives
def test_same_arguments_give_byte_identical_archives(archives, tmp_path):
    again = write_archives(tmp_path / "again", **ARGS)
    other = write_archives(tmp_path / "other", **{**ARGS, "seed": 1})
    for name in ARCHIVES:
        assert again[name].read_bytes() == (archives / name).read_bytes(), name
        assert other[name].read_bytes() != (archives / name).read_bytes(), name  # the seed matters
    assert read_info(tmp_path / "again")["archives"] == read_info(archives)["archives"]


def test_layouts_follow_the_official_archives(archives):
    gopro = members(archives / GOPRO_ARCHIVE)
    assert {n.split("/")[0] for n in gopro} == {"train", "test"}  # the zip's root holds train/ and test/
    assert all(re.fullmatch(r"(train|test)/GOPR\d{4}_\d\d_\d\d/(blur|blur_gamma|sharp)/\d{6}\.png", n) for n in gopro)
    assert len(gopro) == 3 * 2 * ARGS["pairs_per_split"]

    hide = members(archives / HIDE_ARCHIVE)
    blurred = [n for n in hide if not n.startswith("HIDE_dataset/GT/")]
    assert {n.rsplit("/", 1)[0] for n in blurred} == {"HIDE_dataset/train", "HIDE_dataset/test/test-close-ups",
                                                     "HIDE_dataset/test/test-long-shot"}
    assert all(re.fullmatch(r"\d+fromGOPR\d{4}(\.MP4)?\.png", n.rsplit("/", 1)[1]) for n in hide)
    assert sorted(f"HIDE_dataset/GT/{n.rsplit('/', 1)[1]}" for n in blurred) == sorted(set(hide) - set(blurred))

    realblur = members(archives / REALBLUR_ARCHIVE)
    for camera, folder in (("J", "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"),
                           ("R", "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref")):
        for split in ("train", "test"):
            text = realblur[f"RealBlur_{camera}_{split}_list.txt"].decode()
            lines = text.split("\n")
            assert len(lines) == ARGS["pairs_per_split"] and not text.endswith("\n")
            pattern = rf"({folder}/scene\d{{3}})/gt/gt_(\d+)\.png \1/blur/blur_\2\.png"
            for number, line in enumerate(lines, start=1):  # "<gt> <blur> ", no trailing space on the last
                assert re.fullmatch(pattern + (" " if number < len(lines) else ""), line), line
                gt, blur = line.split()
                assert gt in realblur and blur in realblur


def test_info_lists_checksums_and_expected_pairs(archives):
    info = read_info(archives)
    checksums = dict(line.split(": ") for line in (archives / "checksums.yaml").read_text().splitlines()
                     if not line.startswith("#"))
    for name in ARCHIVES:
        digest = hashlib.sha256((archives / name).read_bytes()).hexdigest()
        assert info["archives"][name]["sha256"] == digest == checksums[name]
    n = ARGS["pairs_per_split"]
    assert {k: v["expected_pairs"] for k, v in info["datasets"].items()} == {
        "gopro": {"train": n, "test": n}, "hide": {"test": n},
        "realblur_j": {"train": n, "test": n}, "realblur_r": {"train": n, "test": n}}


# ----------------------------------------------------------------- the real fetcher, over 127.0.0.1
def expected_files(name: str, archive: dict[str, bytes]) -> set[str]:
    """The files ``blurdm-bench fetch`` must leave, derived from the archive's own members."""
    if name == "gopro":  # <split>/<sequence>/{blur,sharp}/<frame>.png, blur_gamma left out
        return {"/".join(m.split("/")[-4:]) for m in archive if m.split("/")[-2] in ("blur", "sharp")}
    if name == "hide":
        test = [m.rsplit("/", 1)[1] for m in archive if m.startswith("HIDE_dataset/test/")]
        return {f"test/{kind}/{f}" for f in test for kind in ("input", "target")}
    camera = name[-1].upper()
    files = set()
    for split in ("train", "test"):
        for line in archive[f"RealBlur_{camera}_{split}_list.txt"].decode().splitlines():
            gt, _blur = line.split()
            scene, k = gt.split("/")[1], gt.rsplit("_", 1)[1]
            files |= {f"{split}/blur/{scene}/{k}", f"{split}/sharp/{scene}/{k}"}
    return files


@pytest.mark.parametrize("name", ["gopro", "hide", "realblur_j", "realblur_r"])
def test_fetch_downloads_each_miniature_archive_from_the_local_server(archives, tmp_path, name):
    info = read_info(archives)
    archive_name = info["datasets"][name]["archive"]
    out = tmp_path / name
    with serve(archives) as url:
        params = write_params(REPO / "params.yaml", tmp_path / "params.yaml", url, info)
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "fetch", name, "--params", str(params),
             "--checksums", str(archives / "checksums.yaml"), "--out", str(out), "--timeout", "20"],
            check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == info["datasets"][name]["expected_pairs"]
    assert manifest["source"] == f"{url}/{archive_name}" and manifest["source_kind"] == "download"
    assert manifest["sha256_verified"] is True
    assert manifest["archive_sha256"] == info["archives"][archive_name]["sha256"]
    found = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert found == expected_files(name, members(archives / archive_name))
    assert len(found) == 2 * sum(manifest["pairs"].values())


# ------------------------------------------------------------------------------------------ the server
def request(url: str, path: str, method: str = "GET", headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    (folder / "sub").mkdir(parents=True)
    data = bytes(range(256)) * 4
    (folder / "blob.bin").write_bytes(data)
    (folder / "sub" / "inner.bin").write_bytes(b"inner")
    (folder / ".hidden").write_bytes(b"hidden")
    (tmp_path / "secret.txt").write_text("outside the served folder")
    (folder / "link").symlink_to(tmp_path / "secret.txt")
    return folder, data


def test_server_answers_whole_files_heads_and_ranges(served):
    folder, data = served
    with serve(folder) as url:
        assert url.startswith("http://127.0.0.1:")
        status, headers, body = request(url, "/blob.bin")
        assert (status, body, headers["Content-Length"], headers["Accept-Ranges"]) == (200, data, "1024", "bytes")
        etag = headers["ETag"]
        assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', etag)
        status, head_headers, body = request(url, "/blob.bin", "HEAD")
        assert (status, body, head_headers["Content-Length"], head_headers["ETag"]) == (200, b"", "1024", etag)
        status, headers, body = request(url, "/blob.bin", headers={"Range": "bytes=10-"})
        assert (status, headers["Content-Range"], headers["Content-Length"], body) == (206, "bytes 10-1023/1024",
                                                                                      "1014", data[10:])
        status, headers, body = request(url, "/blob.bin", headers={"Range": "bytes=10-19", "If-Range": etag})
        assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/1024", data[10:20])
        status, headers, body = request(url, "/blob.bin", headers={"Range": "bytes=10-", "If-Range": '"changed"'})
        assert (status, body) == (200, data)  # another version: the whole file, from byte 0
        status, headers, _ = request(url, "/blob.bin", headers={"Range": "bytes=1024-"})
        assert (status, headers["Content-Range"]) == (416, "bytes */1024")


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/sub/inner.bin",
                                  "/sub%2finner.bin", "/.hidden", "/link", "//etc/passwd", "/"])
def test_server_refuses_paths_outside_its_folder(served, path):
    folder, _ = served
    with serve(folder) as url:
        status, _, body = request(url, path)
    assert status == 403 and b"outside" not in body and b"inner" not in body


def test_server_says_404_for_a_missing_file(served):
    with serve(served[0]) as url:
        assert request(url, "/nothing.zip")[0] == 404


def test_server_command_line_writes_its_url_and_stops_on_sigterm(served, tmp_path):
    folder, data = served
    url_file = tmp_path / "server.url"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.rehearsal.server", str(folder),
                             "--port-file", str(url_file)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = url_file.read_text().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert request(url, "/blob.bin", headers={"Range": "bytes=1000-"})[2] == data[1000:]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == url
