"""``blurdm-bench fetch``: download, verify, unpack and normalise a real deblurring dataset.

Datasets (``params.yaml`` ``fetch.datasets``): ``gopro``, ``hide``, ``realblur_j``, ``realblur_r``.
``blurdm-bench fetch gopro`` fetches one; ``blurdm-bench fetch --all`` fetches the datasets in the
active profile's ``fetch.active`` (the ``paper`` profile: gopro, hide).

Steps, all inside a temporary folder next to the output that is renamed into place only at the end
(:func:`pipelines.core.files.atomic_dir`), so a failure at any point leaves nothing behind but a partial
download kept for resuming (step 1):

1. obtain the archive: download it (tqdm progress bar, socket timeout), or take ``--archive PATH`` (an
   archive downloaded by hand), or ``--source DIR`` (an already-unpacked copy, nothing to verify).
   A dataset's ``urls`` (params) are tried in order, the official ones first, then mirrors serving the
   same archive; a URL that fails (network error, HTTP error, a web page instead of the archive, a
   sha256 mismatch) is logged with the reason and the next one is tried. The bytes stream into
   ``.<archive>.part`` next to the output folder, with ``.<archive>.part.json`` naming the URL they
   came from (and its ETag / Last-Modified); a cut connection is resumed with ``Range: bytes=N-``
   (+ ``If-Range``) up to ``--retries`` times in the run, and the partial file is kept for the next run
   otherwise. A 206 answer must continue exactly at byte N (Content-Range), a 200 answer (a server
   that ignores Range, or a changed file) restarts from byte 0, and the final size must equal
   Content-Length / the Content-Range total. Bytes from one URL are never continued with another's.
   Google Drive's large-file page ("can't scan this file for viruses": the
   drive.usercontent.google.com form, or the older ``confirm=`` link / ``download_warning`` cookie)
   is parsed and followed;
2. verify its sha256 against ``pipelines/checksums.yaml``. A ``null`` entry (value unknown) makes the
   fetch refuse unless ``--record-checksum`` or ``--trust-unverified`` is given. ``--record-checksum``
   (trust on first use) accepts the archive and, only after every later step succeeded (in particular
   the expected pair counts), writes its sha256 into the checksums file: that one line is edited,
   comments are kept, the file is replaced atomically, and a recorded value is never overwritten;
   commit the file. ``--trust-unverified`` accepts it without recording: the sha256 is printed and
   stored in ``manifest.json``. ``--source`` always needs ``--trust-unverified``;
3. unpack safely (zip, tar, tar.gz/bz2/xz), with our own extraction (no ``tarfile``/``zipfile``
   ``extract``, no reliance on ``filter="data"``, so the Python patch level does not matter): only
   regular files and folders are written, each to a path computed from its normalised name and
   checked to resolve inside the target; every symlink and hard link (wherever it points: chains of
   harmless-looking links escape, CVE-2025-4517), device and special file is refused, as are absolute
   paths and ``..`` components, naming the archive and member; an archive whose declared uncompressed
   size passes ``fetch.max_unpacked_gb`` (params, default 200) is refused (zip bombs);
4. normalise into the layouts ``pipelines.data.pairs.find_pairs`` reads:
   GoPro    -> ``<out>/{train,test}/<scene>/{blur,sharp}/*.png`` (the ``blur_gamma`` copies are left out);
   HIDE     -> ``<out>/test/{input,target}/*.png`` (official ``GT/`` + ``test/**`` or an ``{input,target}`` copy);
   RealBlur -> ``<out>/{train,test}/{blur,sharp}/<scene>/<n>.png`` following the official list files
   (``RealBlur_J_train_list.txt`` ..., each line ``<gt path> <blur path>``), or an existing
   ``<split>/{blur,sharp}/<scene>/`` copy;
5. write ``<out>/manifest.json``: dataset, source, archive sha256, file count, pairs per split, date.

Manual downloads: the RealBlur project page links a sharing page and a Google Drive *folder*, neither
a direct link to the file (``manual: true`` in params). Download ``RealBlur.tar.gz`` from
http://cg.postech.ac.kr/research/realblur/ and run
``blurdm-bench fetch realblur_j --archive RealBlur.tar.gz --record-checksum`` (then the same for
``realblur_r``, verified against the value just recorded). The same ``--archive`` route works for
GoPro and HIDE behind a firewall.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html.parser
import http.client
import http.cookiejar
import json
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import yaml
from tqdm import tqdm

from pipelines.cli import UserError
from pipelines.core.config import PROFILE_NAMES, DatasetSource, load_params
from pipelines.core.files import (
    FULL_OR_READ_ONLY,
    atomic_dir,
    sha256_file,
    write_json,
    write_text,
)

CHECKSUMS_PATH = Path(__file__).with_name("checksums.yaml")
SPLITS = ("train", "test")
CHUNK = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORK_DIR = ".fetch"  # scratch folder (download + raw unpack) inside the temporary output, removed at the end
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# ----------------------------------------------------------------------------------------- checksums
def load_checksums(path: str | os.PathLike | None = None) -> dict[str, str | None]:
    """``{archive file name: sha256 hex or None}`` from ``pipelines/checksums.yaml`` (or ``path``)."""
    path = Path(path) if path is not None else CHECKSUMS_PATH
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read checksums file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping 'archive file name: sha256 or null'")
    table: dict[str, str | None] = {}
    for key, value in raw.items():
        if value is not None and not (isinstance(value, str) and _SHA256_RE.fullmatch(value.lower())):
            raise ValueError(f"{path}: {key}: expected 64 hex digits or null, got {value!r}")
        table[str(key)] = value.lower() if value else None
    return table


def record_checksum(path: str | os.PathLike, archive: str, digest: str, origin: str) -> bool:
    """Write ``archive: digest`` into the checksums file ``path`` where its entry is null (or absent);
    True when written. The file is edited line by line (its comments stay) and replaced atomically; an
    entry that already holds a value is never changed (a different one is an error)."""
    path = Path(path)
    table = load_checksums(path)
    current = table.get(archive)
    if current is not None:
        if current != digest:
            raise UserError(f"{path} records sha256 {current} for {archive}, not {digest}: not overwriting it")
        return False
    text = path.read_text()
    date = datetime.now(timezone.utc).date().isoformat()
    line = f"{archive}: {digest}  # recorded by `blurdm-bench fetch --record-checksum` on {date} from {origin}"
    entry = re.compile(rf"^(['\"]?){re.escape(archive)}\1[ \t]*:[ \t]*(?:null|~|Null|NULL)?[ \t]*(?:#.*)?$", re.MULTILINE)
    found = entry.findall(text)
    if len(found) == 1:
        new_text = entry.sub(lambda _m: line, text)
    elif not found and archive not in table:
        new_text = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    else:
        raise UserError(f"cannot find the one line `{archive}: null` in {path}: record it by hand as "
                        f"`{archive}: {digest}`")
    after = yaml.safe_load(new_text) or {}
    after = {str(k): v.lower() if isinstance(v, str) else v for k, v in after.items()}
    if after != {**table, archive: digest}:
        raise UserError(f"editing {path} would change more than the {archive} entry: record it by hand as "
                        f"`{archive}: {digest}`")
    write_text(path, new_text)
    return True


# ------------------------------------------------------------------------------------------ download
# A download streams into a partial file (``<archive>.part``, next to the output folder when fetching)
# with a small ``<archive>.part.json`` beside it naming the URL the bytes came from (and its ETag /
# Last-Modified). A cut connection keeps both: the next attempt, in this run (``retries``) or the next
# one, asks the SAME URL for the rest (``Range: bytes=N-``, ``If-Range``); a 206 answer is checked
# against Content-Range and appended, a 200 answer (a server that ignores Range, or a changed file)
# starts over from byte 0. Bytes from one URL are never continued with another's. The finished file's
# size is checked against Content-Length / Content-Range before it is renamed into place.
USER_AGENT = "blurdm-bench-fetch"
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
MAX_PAGE_BYTES = 1 << 20  # an interstitial page larger than this is not parsed
MAX_CONFIRM_HOPS = 3  # Google Drive: at most this many "can't scan for viruses" pages in a row
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


class _Interrupted(Exception):
    """The body stopped before its end (connection cut, timeout, short body): resumable."""

    def __init__(self, size: int, total: int | None, reason: str):
        super().__init__(reason)
        self.size, self.total, self.reason = size, total, reason


def part_meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _resumable(part: Path, url: str) -> tuple[int, str | None, int | None]:
    """(bytes of ``part`` that came from ``url``, their ETag/Last-Modified, announced total)."""
    meta_path = part_meta_path(part)
    try:
        meta = json.loads(meta_path.read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, None, None
    if not isinstance(meta, dict) or meta.get("url") != url:
        return 0, None, None
    total = meta.get("total") if isinstance(meta.get("total"), int) else None
    if total is not None and size > total:
        return 0, None, None
    return size, meta.get("validator"), total


def _drop_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    part_meta_path(part).unlink(missing_ok=True)


def _is_html(response, first: bytes) -> bool:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type in HTML_TYPES or first.lstrip()[:16].lower().startswith(HTML_STARTS)


class _ConfirmPage(html.parser.HTMLParser):
    """Collects the forms (action + hidden inputs) and links of a download interstitial."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.links: list[str] = []
        self._form: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {"id": attrs.get("id", ""), "action": attrs.get("action", ""),
                          "method": attrs.get("method", "get").lower(), "inputs": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attrs.get("name"):
            if attrs.get("type", "text").lower() == "hidden":
                self._form["inputs"].append((attrs["name"], attrs.get("value", "")))
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def _with_query(url: str, extra: list[tuple[str, str]]) -> str:
    parts = urllib.parse.urlsplit(url)
    names = {k for k, _ in extra}
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query + extra)))


def drive_confirmation_url(page: bytes, page_url: str, cookies: http.cookiejar.CookieJar | None = None) -> str | None:
    """The URL that Google Drive's large-file interstitial ("can't scan this file for viruses") asks
    to be fetched instead, or None when ``page`` is not such a page.

    Recognised: the drive.usercontent.google.com form (``<form id="download-form" action=...>`` with
    hidden ``id``, ``export``, ``confirm``, ``uuid`` inputs: submitted as a GET), the older
    drive.google.com page (a link carrying ``confirm=<token>``), and the ``download_warning*`` cookie
    whose value is the token to add as ``confirm=``."""
    parser = _ConfirmPage()
    parser.feed(page.decode("utf-8", errors="replace"))  # lenient: broken markup just yields fewer tags
    parser.close()
    candidates = []
    for form in parser.forms:
        names = {k for k, _ in form["inputs"]}
        if form["method"] == "get" and (form["id"] == "download-form" or "confirm" in names):
            candidates.append(_with_query(urllib.parse.urljoin(page_url, form["action"] or page_url), form["inputs"]))
    for href in parser.links:
        if "confirm=" in href:
            candidates.append(urllib.parse.urljoin(page_url, href))
    for cookie in cookies or ():
        if cookie.name.startswith("download_warning") and cookie.value:
            candidates.append(_with_query(page_url, [("confirm", cookie.value)]))
    for candidate in candidates:
        if urllib.parse.urlsplit(candidate).scheme in ("http", "https") and candidate != page_url:
            return candidate
    return None


def _open(opener, url: str, headers: dict, timeout: float):
    """``opener.open`` that returns HTTP 416 (range not satisfiable) as a response instead of raising."""
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:
            return err
        raise


def _attempt(url: str, part: Path, timeout: float, log: Callable[[str], None]) -> str:
    """One request (plus Drive confirmation hops) continuing ``part``; the sha256 of the whole file.

    Raises :class:`_Interrupted` when the body stops early (``part`` keeps what arrived) and
    :class:`UserError` for anything that is not worth retrying on this URL."""
    offset, validator, total = _resumable(part, url)
    if offset and total == offset:
        log(f"{part.name}: already complete ({offset} bytes from {url})")
        return sha256_file(part)
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    request_url, hops, restarts = url, 0, 0
    while True:
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        response = _open(opener, request_url, headers, timeout)
        with response:
            status = response.status if hasattr(response, "status") else response.code
            if status == 416:
                match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
                if offset and match and match.group(3) == str(offset):
                    log(f"{part.name}: already complete ({offset} bytes from {url})")
                    return sha256_file(part)
                if not offset or restarts:
                    raise UserError(f"network failure: {url} answered HTTP 416 (range not satisfiable)")
                log(f"{url} refused the range request (HTTP 416): starting over from byte 0")
                _drop_part(part)
                offset, validator, restarts = 0, None, restarts + 1
                continue
            first = response.read(min(CHUNK, 65536)) if status != 206 else b""
            if status != 206 and _is_html(response, first):
                page = first + response.read(MAX_PAGE_BYTES - len(first))
                next_url = drive_confirmation_url(page, response.geturl(), cookies)
                content_type = response.headers.get("Content-Type", "") or "no Content-Type"
                if next_url is None or hops >= MAX_CONFIRM_HOPS:
                    raise UserError(f"{url} returned a web page ({content_type}), not an archive: download the "
                                    f"archive by hand from that page and pass it with --archive PATH")
                hops += 1
                log(f"{url}: following the download confirmation page (Google Drive large-file warning)")
                request_url = next_url
                continue
            digest, restart = _receive(response, status, first, url, part, offset, log)
            if digest is not None:
                return digest
            if restarts:
                raise UserError(f"network failure: {url}: {restart}, twice")
            log(f"{restart}: starting over from byte 0")
            _drop_part(part)
            offset, validator, restarts = 0, None, restarts + 1


def _announced(response, status: int, url: str, part: Path, offset: int,
               log: Callable[[str], None]) -> tuple[int | None, int, str | None]:
    """Read what an answer announces: ``(size of the whole file or None, byte it continues from, None)``,
    or ``(None, offset, why)`` to start over from byte 0 (a 206 answer that does not continue ``part``).
    A whole-file answer (not 206) starts at byte 0 and records its URL, validator and size beside ``part``."""
    length_header = response.headers.get("Content-Length", "").strip()
    length = int(length_header) if length_header.isdigit() else None
    if status == 206:
        match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or match.group(1) is None or int(match.group(1)) != offset:
            return None, offset, (f"{url} answered a range other than the one asked for (Content-Range "
                                  f"{response.headers.get('Content-Range')!r}, asked from byte {offset})")
        start, end = int(match.group(1)), int(match.group(2))
        total = int(match.group(3)) if match.group(3) != "*" else None
        if (length is not None and length != end - start + 1) or (total is not None and end + 1 != total):
            return None, offset, (f"{url} answered an inconsistent range "
                                  f"(Content-Range {response.headers.get('Content-Range')!r})")
        return (total if total is not None else end + 1), offset, None
    if offset:
        log(f"{url} answered the whole file (HTTP {status}: it ignores Range requests, or the file "
            f"changed): restarting from byte 0")
    if length is None:
        log(f"{url} does not announce the size (no Content-Length): a cut at a clean end cannot be told "
            f"from the end of the file; the sha256 check still applies when one is recorded")
    etag = response.headers.get("ETag", "")
    validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    write_json(part_meta_path(part), {"url": url, "validator": validator, "total": length})
    return length, 0, None


def _sha256_of_start(part: Path, offset: int):
    """A sha256 object fed with the ``offset`` bytes already in ``part`` (none when starting afresh)."""
    digest = hashlib.sha256()
    if offset:
        with open(part, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
    return digest


def _stream(response, first: bytes, url: str, part: Path, offset: int, expected: int | None, digest) -> int:
    """Append the body (``first``, then the rest) to ``part`` from byte ``offset``, feeding ``digest``;
    returns the size of ``part``. A cut body raises :class:`_Interrupted`; one longer than ``expected``
    is refused (and ``part`` dropped)."""
    size = offset
    try:
        with open(part, "ab" if offset else "wb") as fh, \
                tqdm(total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"download {part.name}") as bar:
            block = first
            while True:  # ends at EOF; each read is bounded by the socket timeout
                if not block:
                    block = response.read(CHUNK)
                    if not block:
                        break
                if expected is not None and size + len(block) > expected:
                    fh.close()
                    _drop_part(part)
                    raise UserError(f"download from {url} is longer than its Content-Length ({expected} bytes): "
                                    f"refusing it")
                fh.write(block)
                digest.update(block)
                size += len(block)
                bar.update(len(block))
                block = b""
    except http.client.IncompleteRead:
        raise _Interrupted(size, expected, "the connection closed early") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
        if isinstance(err, OSError) and err.errno in FULL_OR_READ_ONLY:
            raise
        raise _Interrupted(size, expected, f"{err or type(err).__name__}") from None
    return size


def _receive(response, status: int, first: bytes, url: str, part: Path, offset: int,
             log: Callable[[str], None]) -> tuple[str | None, str | None]:
    """Stream the body into ``part``: (sha256 of the whole file, None) when complete, or (None, why) to
    start over from byte 0 (a 206 answer that does not continue ``part``)."""
    expected, offset, restart = _announced(response, status, url, part, offset, log)
    if restart is not None:
        return None, restart
    digest = _sha256_of_start(part, offset)
    size = _stream(response, first, url, part, offset, expected, digest)
    if expected is not None and size != expected:
        raise _Interrupted(size, expected, "the body ended early")
    return digest.hexdigest(), None


def download(url: str, dest: Path, timeout: float = 60.0, *, part: Path | None = None, retries: int = 3,
             retry_wait: float = 1.0, log: Callable[[str], None] = print) -> str:
    """Download ``url`` into ``dest`` (through the partial file ``part``, default ``<dest>.part``) and
    return its sha256.

    A cut connection is resumed (HTTP Range) up to ``retries`` times, as long as each try adds bytes;
    Google Drive's large-file confirmation page is followed. Raises :class:`UserError` naming the URL
    on a network failure, an HTTP error, a web page served instead of an archive, or a body that stays
    shorter (the partial file is then kept for the next run) or gets longer than announced."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UserError(f"cannot download {url!r}: only http(s) URLs; pass a local file with --archive")
    dest = Path(dest)
    part = Path(part) if part is not None else dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    tries = 0
    while True:
        before = _resumable(part, url)[0]
        try:
            digest = _attempt(url, part, timeout, log)
            break
        except _Interrupted as cut:
            total = cut.total if cut.total is not None else "an unknown number of"
            if cut.size > before and tries < retries:
                tries += 1
                wait = retry_wait * 2 ** (tries - 1)
                log(f"{url}: {cut.reason} after {cut.size} of {total} bytes; resuming in {wait:g} s "
                    f"(retry {tries} of {retries})")
                time.sleep(wait)
                continue
            kept = (f"the {cut.size} bytes received are kept in {part} and the next run resumes from there"
                    if cut.size else "nothing was kept")
            if not cut.size:
                _drop_part(part)
            raise UserError(f"truncated download from {url}: {cut.reason} after {cut.size} of {total} bytes "
                            f"({tries} resume{'s' if tries != 1 else ''} tried); {kept}") from None
        except urllib.error.HTTPError as err:
            raise UserError(f"network failure: {url} answered HTTP {err.code} {err.reason}") from None
        except urllib.error.URLError as err:
            raise UserError(f"network failure: cannot reach {url} ({err.reason})") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise UserError(f"network failure while downloading {url}: {err or type(err).__name__}") from None
    os.replace(part, dest)
    part_meta_path(part).unlink(missing_ok=True)
    return digest


def download_first(name: str, urls: list[str], dest: Path, part: Path, expected_sha: str | None, *,
                   timeout: float = 60.0, retries: int = 3, retry_wait: float = 1.0,
                   log: Callable[[str], None] = print) -> tuple[str, str]:
    """Try ``urls`` in order (official first, then mirrors of the same archive) until one gives a
    complete file whose sha256 matches ``expected_sha`` (any, when None); return (url, sha256).

    Each failure (network, HTTP error, web page, truncation, checksum mismatch) is logged with its
    reason and the next URL is tried; when all fail, the error lists every reason."""
    failures = []
    for number, url in enumerate(urls, start=1):
        log(f"{name}: downloading {url}" + (f" (URL {number} of {len(urls)})" if len(urls) > 1 else ""))
        try:
            digest = download(url, dest, timeout=timeout, part=part, retries=retries, retry_wait=retry_wait, log=log)
        except UserError as err:
            failures.append(str(err))
        else:
            if expected_sha is None or digest == expected_sha:
                return url, digest
            dest.unlink()
            failures.append(f"checksum mismatch for {dest.name} ({url}): expected sha256 {expected_sha}, got "
                            f"{digest}; the file is corrupt or not the official archive")
        if number < len(urls):
            log(f"{name}: {failures[-1]} -- trying the next URL")
    if len(failures) == 1:
        raise UserError(failures[0])
    raise UserError(f"{name}: all {len(urls)} URLs failed:\n" +
                    "\n".join(f"  {number}. {reason}" for number, reason in enumerate(failures, start=1)))


# ------------------------------------------------------------------------------------- safe unpacking
# Dataset archives hold only regular files and folders. Every link (symbolic or hard), device, fifo or
# other special member is refused, whatever it points at: a link that looks harmless as text can still
# lead outside through a chain of other links (CVE-2025-4517 defeats tarfile's filter="data" that way on
# unpatched Pythons, 3.11.7 included). Nothing here relies on tarfile's / zipfile's own extraction: each
# regular member's bytes are copied to a path this module computed from the member name and checked.
DEFAULT_MAX_UNPACKED_GB = 200.0  # params fetch.max_unpacked_gb


def member_name_problem(name: str) -> str | None:
    """Why an archive member name is unsafe to extract (None when it is fine)."""
    if not name or name in (".", "./"):
        return "empty member name"
    if "\0" in name:
        return "NUL character in the name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' path component (path traversal)"
    return None


def _member_parts(name: str) -> list[str]:
    """The path components of a member name (``/`` and ``\\`` both separate; empty and ``.`` dropped)."""
    return [p for p in re.split(r"[\\/]+", name) if p and p != "."]


def _escapes(path: str) -> bool:
    """True when a normalised relative POSIX path leaves its root."""
    return path == ".." or path.startswith("../") or posixpath.isabs(path)


def _link_problem(kind: str, target: str, outside: bool) -> str:
    where = "pointing outside the target " if outside else ""
    return (f"{kind} {where}({target!r}): links are refused, a dataset archive holds only regular files "
            f"and folders")


def tar_member_problem(member: tarfile.TarInfo) -> str | None:
    problem = member_name_problem(member.name)
    if problem:
        return problem
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), target))
        return _link_problem("symlink", target, posixpath.isabs(target) or _escapes(resolved))
    if member.islnk():
        target = member.linkname
        return _link_problem("hard link", target, posixpath.isabs(target) or _escapes(posixpath.normpath(target)))
    if member.ischr() or member.isblk():
        return "device file"
    if not (member.isreg() or member.isdir()):
        return "special file (fifo or unknown type)"
    return None


def zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    problem = member_name_problem(info.filename)
    if problem:
        return problem
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link (refused in zip archives: a dataset archive holds only regular files and folders)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "special file (fifo or socket)"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"special file (unknown type {stat.S_IFMT(mode):o})"
    if info.flag_bits & 0x1:
        return "encrypted member"
    return None


def _refuse(archive: Path, member: str, problem: str) -> UserError:
    return UserError(f"refusing to unpack {archive}: member {member!r}: {problem}")


def _broken(archive: Path, err: BaseException) -> UserError:
    return UserError(f"broken or truncated archive {archive}: {err or type(err).__name__}")


def _gb(n_bytes: int | float) -> str:
    return f"{n_bytes / 1e9:.3g} GB"


class _Extractor:
    """Writes the regular files and folders of one archive below ``dest``, nothing else, nowhere else.

    Each member's destination is computed from its normalised name and checked to resolve inside
    ``dest``: no component on the way may be a link or a file (this module never creates links, so one
    can only come from a race or a bug), and the final ``open`` uses ``O_EXCL | O_NOFOLLOW``."""

    def __init__(self, archive: Path, dest: Path, max_bytes: int):
        self.archive = archive
        self.root = Path(os.path.realpath(dest))
        self.max_bytes = max_bytes
        self.declared = 0

    def refuse(self, name: str, problem: str) -> UserError:
        return _refuse(self.archive, name, problem)

    def declare(self, name: str, size: int) -> None:
        """Add a member's declared uncompressed size; refuse once the total passes the limit."""
        if size < 0:
            raise self.refuse(name, f"negative size {size}")
        self.declared += size
        if self.declared > self.max_bytes:
            raise self.refuse(name, f"the declared uncompressed sizes add up to more than {_gb(self.max_bytes)} "
                                    f"(params fetch.max_unpacked_gb): a zip bomb, or raise the limit")

    def target(self, name: str) -> Path:
        """The checked destination of member ``name``."""
        problem = member_name_problem(name)
        if problem:
            raise self.refuse(name, problem)
        parts = _member_parts(name)
        if not parts:
            raise self.refuse(name, "empty member name")
        target = self.root.joinpath(*parts)
        if os.path.commonpath([str(self.root), os.path.normpath(target)]) != str(self.root):
            raise self.refuse(name, "resolves outside the target")
        current = self.root
        for part in parts:  # what exists on the way must be real folders (the last: a folder or nothing)
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode) or (current != target and not stat.S_ISDIR(mode)):
                raise self.refuse(name, f"its path runs through {current}, which is not a folder")
        resolved = os.path.realpath(target.parent)
        if os.path.commonpath([str(self.root), resolved]) != str(self.root):
            raise self.refuse(name, f"resolves outside the target ({resolved})")
        return target

    def mkdir(self, name: str, folder: Path) -> None:
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            try:
                os.mkdir(current, 0o777)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    raise self.refuse(name, f"{current} exists and is not a folder") from None

    def write(self, name: str, target: Path, src, size: int) -> None:
        """Copy exactly ``size`` bytes of ``src`` into a new file ``target``."""
        self.mkdir(name, target.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(target, flags, 0o666)
        except FileExistsError:
            raise self.refuse(name, "the archive holds this path twice") from None
        written = 0
        with os.fdopen(fd, "wb") as dst:
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                written += len(block)
                if written > size:
                    raise self.refuse(name, f"holds more bytes than its declared size ({size})")
                dst.write(block)
        if written != size:
            raise _broken(self.archive, EOFError(f"member {name!r}: {written} of its {size} bytes"))

    def oserror(self, name: str, err: OSError) -> UserError:
        return UserError(f"cannot unpack {self.archive}: member {name!r}: {err.strerror or err}")


def _zip_is_dir(info: zipfile.ZipInfo) -> bool:
    return info.is_dir() or stat.S_ISDIR(info.external_attr >> 16)


def _unpack_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    ex = _Extractor(archive, dest, max_bytes)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # the central directory is read up front: check every member first
                problem = zip_member_problem(info)
                if problem:
                    raise _refuse(archive, info.filename, problem)
                try:
                    ex.target(info.filename)
                except OSError as err:
                    raise ex.oserror(info.filename, err) from None
                if not _zip_is_dir(info):
                    ex.declare(info.filename, info.file_size)
            for info in tqdm(infos, desc=f"unpack {archive.name}", unit="file"):
                name = info.filename
                try:
                    target = ex.target(name)
                    if _zip_is_dir(info):
                        ex.mkdir(name, target)
                        continue
                    with zf.open(info) as src:
                        ex.write(name, target, src, info.file_size)
                except OSError as err:
                    raise ex.oserror(name, err) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        raise _broken(archive, err) from None


def _unpack_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    # A tar declares its sizes member by member (no table up front, and reading every header of a .gz
    # means decompressing it all): members are checked one at a time as the stream goes by; a refusal
    # half-way leaves only files inside the temporary folder, which is then removed.
    ex = _Extractor(archive, dest, max_bytes)
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tqdm(tf, desc=f"unpack {archive.name}", unit="file"):
                name = member.name
                if member.isdir() and name in (".", "./"):  # `tar -C dir .` names the root "./": nothing to do
                    continue
                problem = tar_member_problem(member)
                if problem:
                    raise _refuse(archive, name, problem)
                try:
                    target = ex.target(name)
                    if member.isdir():
                        ex.mkdir(name, target)
                        continue
                    ex.declare(name, member.size)
                    src = tf.extractfile(member)
                    if src is None:
                        raise _refuse(archive, name, "not a regular file")
                    with src:
                        ex.write(name, target, src, member.size)
                except OSError as err:
                    raise ex.oserror(name, err) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as err:
        raise _broken(archive, err) from None


def unpack_archive(archive: Path, dest: Path, max_bytes: int | None = None) -> None:
    """Extract the regular files and folders of a zip or tar(.gz/.bz2/.xz) archive into ``dest``.

    Refuses (:class:`UserError` naming the archive and the member) any link, device or special member,
    absolute or ``..`` names, a path that would resolve outside ``dest``, and archives whose declared
    uncompressed size passes ``max_bytes`` (default: 200 GB)."""
    archive = Path(archive)
    if max_bytes is None:
        max_bytes = int(DEFAULT_MAX_UNPACKED_GB * 1e9)
    Path(dest).mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _unpack_zip(archive, dest, max_bytes)
    elif tarfile.is_tarfile(archive):
        _unpack_tar(archive, dest, max_bytes)
    else:
        raise UserError(f"{archive}: not a zip or tar archive (a broken or truncated download, or a web "
                        f"page saved in place of the archive?)")


# ---------------------------------------------------------------------------------------- normalising
@dataclass(frozen=True)
class PlannedPair:
    """One blurred / sharp pair: source files and destinations relative to the output folder."""
    split: str
    blur: Path
    sharp: Path
    blur_dst: str
    sharp_dst: str


def _hidden(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _dirs_named(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(name) if p.is_dir() and not _hidden(p, root))


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()}


def _matched(blur_dir: Path, sharp_dir: Path) -> list[tuple[str, Path, Path]]:
    blur, sharp = _pngs(blur_dir), _pngs(sharp_dir)
    if blur.keys() != sharp.keys():
        only_blur = sorted(blur.keys() - sharp.keys())
        only_sharp = sorted(sharp.keys() - blur.keys())
        detail = (f"{len(only_blur)} without a sharp partner (e.g. {blur_dir / only_blur[0]})" if only_blur else
                  f"{len(only_sharp)} without a blurred partner (e.g. {sharp_dir / only_sharp[0]})")
        raise UserError(f"unpaired images: {blur_dir} and {sharp_dir} hold different file names: {detail}")
    return [(name, blur[name], sharp[name]) for name in sorted(blur)]


def plan_gopro(root: Path) -> list[PlannedPair]:
    """``.../{train,test}/<scene>/{blur,sharp}/*.png`` anywhere under ``root``."""
    pairs = []
    for blur_dir in _dirs_named(root, "blur"):
        if not blur_dir.with_name("sharp").is_dir():
            raise UserError(f"unpaired scene: {blur_dir} has no sibling sharp/ folder")
    for sharp_dir in _dirs_named(root, "sharp"):
        blur_dir = sharp_dir.with_name("blur")
        if not blur_dir.is_dir():
            raise UserError(f"unpaired scene: {sharp_dir} has no sibling blur/ folder")
        scene = sharp_dir.parent
        split = scene.parent.name
        if split not in SPLITS:
            raise UserError(f"{scene}: a GoPro scene folder must sit inside a train/ or test/ folder")
        for name, blur, sharp in _matched(blur_dir, sharp_dir):
            pairs.append(PlannedPair(split, blur, sharp, f"{split}/{scene.name}/blur/{name}",
                                     f"{split}/{scene.name}/sharp/{name}"))
    return pairs


def plan_flat(root: Path) -> list[PlannedPair]:
    """HIDE: official ``GT/`` + ``test/**/*.png`` (same file names), else ``[<split>/]{input,target}/``."""
    official = [gt for gt in _dirs_named(root, "GT") if (gt.parent / "test").is_dir()]
    if len(official) > 1:
        raise UserError(f"ambiguous HIDE source: several GT/ + test/ folders under {root}: {official}")
    if official:
        gt_dir = official[0]
        sharp_by_name = _pngs(gt_dir)
        test_dir = gt_dir.parent / "test"
        pairs = []
        for blur in sorted(p for p in test_dir.rglob("*.png") if p.is_file() and not _hidden(p, root)):
            sharp = sharp_by_name.get(blur.name)
            if sharp is None:
                raise UserError(f"unpaired image: {blur} has no ground truth {gt_dir / blur.name}")
            pairs.append(PlannedPair("test", blur, sharp, f"test/input/{blur.name}", f"test/target/{blur.name}"))
        return pairs
    pairs = []
    for input_dir in _dirs_named(root, "input"):
        target_dir = input_dir.with_name("target")
        if not target_dir.is_dir():
            continue
        split = input_dir.parent.name if input_dir.parent.name in SPLITS else "test"
        for name, blur, sharp in _matched(input_dir, target_dir):
            pairs.append(PlannedPair(split, blur, sharp, f"{split}/input/{name}", f"{split}/target/{name}"))
    return pairs


def _find_one_file(root: Path, name: str) -> Path | None:
    found = sorted((p for p in root.rglob(name) if p.is_file() and not _hidden(p, root)),
                   key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def _realblur_from_list(list_file: Path, split: str) -> list[PlannedPair]:
    base = list_file.parent
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{list_file}, line {number}"
        if len(tokens) < 2:
            raise UserError(f"{where}: expected '<gt path> <blur path>', got {line.strip()!r}")
        by_role = {role: tok for tok in tokens[:2] for role in ("gt", "blur") if role in PurePosixPath(tok).parts}
        gt_rel, blur_rel = (by_role["gt"], by_role["blur"]) if len(by_role) == 2 else (tokens[0], tokens[1])
        for rel in (gt_rel, blur_rel):
            problem = member_name_problem(rel)
            if problem:
                raise UserError(f"{where}: unsafe path {rel!r}: {problem}")
        blur, sharp = base / blur_rel, base / gt_rel
        for path in (blur, sharp):
            if not path.is_file():
                raise UserError(f"{where}: listed file {path} is missing")
        folders = [p for p in PurePosixPath(blur_rel).parts[:-1] if p not in ("blur", "gt")]
        scene = folders[-1] if folders else "scene"
        name = re.sub(r"^blur_", "", blur.name)
        pairs.append(PlannedPair(split, blur, sharp, f"{split}/blur/{scene}/{name}", f"{split}/sharp/{scene}/{name}"))
    return pairs


def plan_realblur(root: Path, lists: dict[str, str]) -> list[PlannedPair]:
    """Official list files when all are present, else an existing ``<split>/{blur,sharp}/<scene>/`` copy."""
    list_files = {split: _find_one_file(root, name) for split, name in lists.items()}
    if lists and all(list_files.values()):
        return [pair for split, path in list_files.items() for pair in _realblur_from_list(path, split)]
    pairs = []
    for split in SPLITS:
        for split_dir in _dirs_named(root, split):
            blur_root, sharp_root = split_dir / "blur", split_dir / "sharp"
            if not (blur_root.is_dir() and sharp_root.is_dir()):
                continue
            for scene in sorted(p for p in blur_root.iterdir() if p.is_dir()):
                if not (sharp_root / scene.name).is_dir():
                    raise UserError(f"unpaired scene: {scene} has no {sharp_root / scene.name}")
                for name, blur, sharp in _matched(scene, sharp_root / scene.name):
                    pairs.append(PlannedPair(split, blur, sharp, f"{split}/blur/{scene.name}/{name}",
                                             f"{split}/sharp/{scene.name}/{name}"))
    if not pairs and lists:
        missing = [lists[s] for s, p in list_files.items() if p is None]
        raise UserError(f"RealBlur list file(s) {missing} not found under {root}, and no "
                        f"<split>/{{blur,sharp}}/<scene>/ layout either")
    return pairs


LAYOUT_HELP = {
    "gopro": "<split>/<scene>/{blur,sharp}/*.png",
    "flat": "GT/ + test/**/*.png (HIDE) or [<split>/]{input,target}/*.png",
    "realblur": "the RealBlur list files or <split>/{blur,sharp}/<scene>/*.png",
}


def plan_pairs(spec: DatasetSource, root: Path) -> list[PlannedPair]:
    if spec.layout == "gopro":
        pairs = plan_gopro(root)
    elif spec.layout == "flat":
        pairs = plan_flat(root)
    else:
        pairs = plan_realblur(root, dict(spec.lists))
    if not pairs:
        raise UserError(f"no image pairs found under {root} (expected {LAYOUT_HELP[spec.layout]})")
    return pairs


def _check_png(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise UserError(f"{path}: not a PNG file")


def materialise(pairs: list[PlannedPair], dest: Path, move: bool) -> dict[str, int]:
    """Place every pair under ``dest`` (move from our own scratch unpack, else copy); pairs per split."""
    seen: set[str] = set()
    for pair in pairs:
        for rel in (pair.blur_dst, pair.sharp_dst):
            if rel in seen:
                raise UserError(f"two source images map to the same destination {rel}")
            seen.add(rel)
    placed: dict[Path, Path] = {}  # source -> first destination (a moved file is copied from there)
    counts = {split: 0 for split in SPLITS}
    for pair in tqdm(pairs, desc="normalise", unit="pair"):
        for src, rel in ((pair.blur, pair.blur_dst), (pair.sharp, pair.sharp_dst)):
            dst = dest / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src in placed:
                shutil.copy2(placed[src], dst)
                continue
            _check_png(src)
            if move and not src.is_symlink():
                os.replace(src, dst)
            else:
                shutil.copy2(src, dst)  # follows links
            placed[src] = dst
        counts[pair.split] += 1
    return {split: n for split, n in counts.items() if n}


# ---------------------------------------------------------------------------------------------- fetch
def _existing_manifest(name: str, out_dir: Path, force: bool, log: Callable[[str], None]) -> dict | None:
    """The manifest of a finished earlier fetch into ``out_dir`` (kept unless ``force``); an existing folder
    that is not one is refused unless it is empty or ``force``."""
    if out_dir.exists() and not force:
        if (out_dir / "manifest.json").is_file():
            log(f"{name}: already fetched in {out_dir} (manifest.json present); pass --force to fetch again")
            return json.loads((out_dir / "manifest.json").read_text())
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise UserError(f"{out_dir} exists and holds no manifest.json: remove it or pass --force to replace it")
    return None


def _check_request(name: str, spec: DatasetSource, archive: Path | None, source: Path | None,
                   expected_sha: str | None, trust_unverified: bool, record: bool, checksums_path: Path) -> None:
    """Refuse, before anything is written, what cannot be fetched or verified: a missing ``--source`` /
    ``--archive``, an unverifiable copy without ``--trust-unverified``, a manual dataset without
    ``--archive``, an unknown checksum without ``--record-checksum`` / ``--trust-unverified``."""
    if source is not None:
        if not source.is_dir():
            raise FileNotFoundError(f"--source {source}: no such directory")
        if not trust_unverified:
            raise UserError(f"{name}: --source {source} is an unpacked copy that no sha256 can vouch for; "
                            f"pass --trust-unverified to use it anyway")
        return
    if archive is not None and not archive.is_file():
        raise FileNotFoundError(f"--archive {archive}: no such file")
    if archive is None and spec.manual:
        raise UserError(f"{name}: {spec.url} is a download page, not a direct link: download {spec.archive} "
                        f"from it by hand, then run `blurdm-bench fetch {name} --archive PATH`")
    if expected_sha is None and not (trust_unverified or record):
        raise UserError(f"{name}: no sha256 is recorded for {spec.archive} in {checksums_path} (null = "
                        f"unknown), so the archive cannot be verified; refusing. Pass --record-checksum to "
                        f"accept it and record its sha256 there once the fetch succeeds (trust on first "
                        f"use), or --trust-unverified to accept it without recording (its sha256 is then "
                        f"printed and stored in manifest.json)")


@dataclass
class _Raw:
    """Where the unpacked dataset is before normalising, and where it came from."""

    folder: Path
    move: bool  # our own scratch unpack: its files may be moved rather than copied
    origin: str  # the URL, or the resolved local path
    kind: str  # download | archive | source
    digest: str | None  # sha256 of the archive (None for an unpacked --source)


def _verified_archive(name: str, spec: DatasetSource, work: Path, archive: Path | None, part: Path,
                      expected_sha: str | None, record: bool, checksums_path: Path, log: Callable[[str], None],
                      **download_options) -> tuple[Path, str, str, str]:
    """Download the archive into ``work`` (or take ``archive``) and check its sha256 against
    ``expected_sha``; an unknown one is printed. Returns ``(archive path, origin, kind, sha256)``."""
    if archive is None:
        archive_path, kind = work / spec.archive, "download"
        origin, digest = download_first(name, spec.urls, archive_path, part, expected_sha, log=log,
                                        **download_options)
    else:
        archive_path, origin, kind = archive, str(archive.resolve()), "archive"
        digest = sha256_file(archive, progress=True)
    if expected_sha is not None and digest != expected_sha:
        raise UserError(f"checksum mismatch for {archive_path.name} ({origin}): expected sha256 "
                        f"{expected_sha}, got {digest}; the file is corrupt or not the official archive")
    if expected_sha is None and record:
        log(f"{name}: UNVERIFIED sha256 of {spec.archive}: {digest} -- recorded in {checksums_path} "
            f"if the fetch succeeds (--record-checksum)")
    elif expected_sha is None:
        log(f"{name}: UNVERIFIED sha256 of {spec.archive}: {digest} -- after checking the data, record "
            f"it in {checksums_path} as `{spec.archive}: {digest}` (or fetch again with --record-checksum)")
    return archive_path, origin, kind, digest


def _obtain(name: str, spec: DatasetSource, work: Path, archive: Path | None, source: Path | None, part: Path,
            expected_sha: str | None, record: bool, checksums_path: Path, max_unpacked_gb: float,
            log: Callable[[str], None], **download_options) -> _Raw:
    """Step 1-3: the unpacked dataset, from ``--source`` as it is, or from the verified archive unpacked
    safely into ``work/raw`` (a downloaded archive is deleted once unpacked)."""
    if source is not None:
        raw = _Raw(source, False, str(source.resolve()), "source", None)
        log(f"{name}: WARNING: using the unverified unpacked copy {source} (--trust-unverified)")
        return raw
    archive_path, origin, kind, digest = _verified_archive(name, spec, work, archive, part, expected_sha, record,
                                                           checksums_path, log, **download_options)
    raw = work / "raw"
    raw.mkdir()
    unpack_archive(archive_path, raw, max_bytes=int(max_unpacked_gb * 1e9))
    if archive is None:
        archive_path.unlink()  # free the space before normalising
    return _Raw(raw, True, origin, kind, digest)


def _normalise(name: str, spec: DatasetSource, raw: _Raw, dest: Path) -> dict[str, int]:
    """Step 4: the pairs placed under ``dest`` in our layout; the pair counts must be the expected ones."""
    counts = materialise(plan_pairs(spec, raw.folder), dest, move=raw.move)
    for split, wanted in spec.expected_pairs.items():
        if counts.get(split, 0) != wanted:
            raise UserError(f"{name}: found {counts.get(split, 0)} {split} pairs in {raw.origin}, expected "
                            f"{wanted}: an incomplete or different copy of the dataset")
    return counts


def _manifest(name: str, spec: DatasetSource, raw: _Raw, expected_sha: str | None, counts: dict[str, int],
              folder: Path) -> dict:
    """Step 5: the ``manifest.json`` of the normalised dataset in ``folder``."""
    return {
        "dataset": name,
        "layout": spec.layout,
        "source": raw.origin,
        "source_kind": raw.kind,
        "archive": None if raw.kind == "source" else spec.archive,
        "archive_sha256": raw.digest,
        "sha256_verified": expected_sha is not None and raw.digest == expected_sha,
        "file_count": sum(1 for p in folder.rglob("*") if p.is_file()),
        "pairs": counts,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _record_if_asked(name: str, spec: DatasetSource, raw: _Raw, expected_sha: str | None, record: bool,
                     checksums_path: Path, out_dir: Path, log: Callable[[str], None]) -> None:
    """``--record-checksum`` after a successful fetch: write the archive's sha256 where it was unknown."""
    if record and raw.digest is not None and expected_sha is None:
        where = raw.origin if raw.kind == "download" else f"--archive {Path(raw.origin).name}"
        try:
            written = record_checksum(checksums_path, spec.archive, raw.digest, where)
        except (OSError, ValueError, UserError) as err:
            raise UserError(f"{name}: fetched into {out_dir}, but the sha256 could not be recorded in "
                            f"{checksums_path} ({err}): record it by hand as `{spec.archive}: {raw.digest}`") from None
        if written:
            log(f"{name}: recorded `{spec.archive}: {raw.digest}` in {checksums_path}: commit that file")
    elif record and raw.kind == "source":
        log(f"{name}: --record-checksum: nothing to record for an unpacked --source")


def fetch_dataset(name: str, spec: DatasetSource, out_dir: str | os.PathLike, *,
                  archive: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                  trust_unverified: bool = False, record: bool = False, force: bool = False, timeout: float = 60.0,
                  checksums_path: str | os.PathLike | None = None,
                  max_unpacked_gb: float = DEFAULT_MAX_UNPACKED_GB, retries: int = 3, retry_wait: float = 1.0,
                  log: Callable[[str], None] = print) -> dict:
    """Fetch one dataset into ``out_dir`` (atomically) and return its manifest.

    Downloads try ``spec.urls`` in order; the partial file ``.<archive>.part`` (and its ``.json``) is
    kept next to ``out_dir`` across failed runs so that the next run resumes it. ``record`` (CLI
    ``--record-checksum``): when the archive's checksum entry is null, accept the archive and, once the
    whole fetch has succeeded, write its sha256 into the checksums file."""
    out_dir = Path(out_dir)
    archive = Path(archive) if archive is not None else None
    source = Path(source) if source is not None else None
    checksums_path = Path(checksums_path) if checksums_path is not None else CHECKSUMS_PATH
    if archive is not None and source is not None:
        raise UserError("pass either --archive or --source, not both")
    existing = _existing_manifest(name, out_dir, force, log)
    if existing is not None:
        return existing
    expected_sha = load_checksums(checksums_path).get(spec.archive)
    _check_request(name, spec, archive, source, expected_sha, trust_unverified, record, checksums_path)
    with atomic_dir(out_dir) as tmp:
        work = tmp / WORK_DIR
        work.mkdir()
        raw = _obtain(name, spec, work, archive, source, out_dir.parent / f".{spec.archive}.part", expected_sha,
                      record, checksums_path, max_unpacked_gb, log, timeout=timeout, retries=retries,
                      retry_wait=retry_wait)
        counts = _normalise(name, spec, raw, tmp)
        shutil.rmtree(work)
        manifest = _manifest(name, spec, raw, expected_sha, counts, tmp)
        write_json(tmp / "manifest.json", manifest)
    log(f"{name}: {sum(counts.values())} pairs {counts} -> {out_dir}")
    _record_if_asked(name, spec, raw, expected_sha, record, checksums_path, out_dir, log)
    return manifest


# ------------------------------------------------------------------------------------------------ CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Archives are verified against pipelines/checksums.yaml; a null entry needs "
                     "--record-checksum\n(record it on first use) or --trust-unverified (use it, record nothing)."
                     "\nRealBlur (Google Drive): download RealBlur.tar.gz from "
                     "http://cg.postech.ac.kr/research/realblur/\nand run `blurdm-bench fetch realblur_j "
                     "--archive RealBlur.tar.gz`.")
    parser.add_argument("dataset", nargs="?", help="a dataset of params fetch.datasets (gopro, hide, realblur_j, realblur_r)")
    parser.add_argument("--all", action="store_true", help="fetch every dataset in the profile's fetch.active")
    parser.add_argument("--archive", type=Path, help="an archive you downloaded yourself (verified like a download)")
    parser.add_argument("--source", type=Path, help="an already-unpacked copy (needs --trust-unverified)")
    parser.add_argument("--out", type=Path, help="output folder (default: the dataset's out_dir in params)")
    parser.add_argument("--trust-unverified", action="store_true",
                        help="accept an archive whose sha256 is unknown (null) or an unpacked --source")
    parser.add_argument("--record-checksum", action="store_true",
                        help="where the archive's sha256 is unknown (null): accept it and, once the fetch has "
                             "succeeded (pair counts checked), write its sha256 into the checksums file")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    parser.add_argument("--retries", type=int, default=3,
                        help="resume a cut download this many times per URL (default 3; a partial download is "
                             "also kept for the next run)")
    parser.add_argument("--if-active", action="store_true",
                        help="DVC stage mode: fetch only when the dataset is in the profile's fetch.active; "
                             "otherwise write OUT/NOT_FETCHED.txt saying why")
    parser.add_argument("--params", type=Path, help="params file (default: the repo's params.yaml)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="profile to use (default: params' profile)")
    parser.add_argument("--checksums", type=Path, help=f"checksums file (default: {CHECKSUMS_PATH.name} in pipelines/)")


PARAMS_KEYS = ("profile", "fetch", "data.max_pixels")  # what this stage reads (dvc.yaml declares them)


def run(args: argparse.Namespace) -> int:
    from pipelines.core.params_view import restrict

    params = restrict(load_params(args.params, profile=args.profile), PARAMS_KEYS, "the fetch stage")
    datasets = params.fetch.datasets
    if bool(args.all) == bool(args.dataset):
        raise UserError("name one dataset or pass --all (not both)")
    if args.all:
        if args.archive or args.source or args.out:
            raise UserError("--archive, --source and --out need one named dataset, not --all")
        names = list(params.fetch.active)
        if not names:
            raise UserError(f"fetch.active is empty in profile {params.profile!r}: name a dataset "
                            f"(blurdm-bench fetch gopro) or use --profile paper")
    else:
        names = [args.dataset]
    for name in names:
        if name not in datasets:
            allowed = ", ".join(sorted(datasets)) or "(none configured in params fetch.datasets)"
            raise UserError(f"unknown dataset {name!r}; allowed: {allowed}")
    for name in names:
        spec = datasets[name]
        out_dir = args.out if args.out is not None else params.resolve_path(spec.out_dir)
        if getattr(args, "if_active", False) and name not in params.fetch.active:
            with atomic_dir(out_dir) as tmp:
                (tmp / "NOT_FETCHED.txt").write_text(
                    f"{name} is not in fetch.active of profile {params.profile!r}: not downloaded.\n"
                    f"Use the paper profile (dvc exp run -S profile=paper) or add it to fetch.active.\n")
            print(f"{name}: not active in profile {params.profile!r}; skipped ({out_dir}/NOT_FETCHED.txt)")
            continue
        fetch_dataset(name, spec, out_dir, archive=args.archive, source=args.source,
                      trust_unverified=args.trust_unverified, record=args.record_checksum, force=args.force,
                      timeout=args.timeout, retries=args.retries,
                      checksums_path=args.checksums, max_unpacked_gb=params.fetch.max_unpacked_gb)
    return 0
