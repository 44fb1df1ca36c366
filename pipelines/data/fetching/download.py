"""Downloading an archive: progress bar, timeouts, resuming a cut connection, Google Drive's confirmation page.

The bytes stream into ``.<archive>.part`` next to the output folder, with ``.<archive>.part.json`` naming the
URL they came from (and its ETag / Last-Modified); a cut connection is resumed with ``Range: bytes=N-``
(+ ``If-Range``), a 206 answer must continue exactly at byte N (Content-Range), a 200 answer restarts from
byte 0, and the final size must equal Content-Length / the Content-Range total. Bytes from one URL are never
continued with another's. :func:`download_first` tries a dataset's URLs in order (official first, then
mirrors) until one gives the archive with the expected sha256.

Limits (issue 26): only http(s) is spoken, redirects included (:mod:`pipelines.data.fetching.connection`);
a connection slower than :data:`~pipelines.data.fetching.connection.MIN_RATE` bytes a second over
``--timeout`` seconds is dropped (headers or body; what arrived is kept for the next run); a body longer
than the archive may be (``max_bytes``: params ``fetch.datasets.<name>.max_download_gb``) is refused, from its
Content-Length or as it passes the cap, and its partial file removed; and one download at a time writes a
partial file (:func:`part_lock`: a second fetch of the same archive fails at once).
"""
from __future__ import annotations

import contextlib
import hashlib
import html.parser
import http.client
import http.cookiejar
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipelines.core.errors import UserError
from pipelines.core.files import (
    FULL_OR_READ_ONLY,
    FolderLock,
    sha256_file,
    write_json,
)
from pipelines.data.fetching.connection import (
    MIN_RATE,
    HttpOnlyRedirects,
    TooSlowError,
    make_opener,
    where,
)

CHUNK = 1 << 20



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
    """The body stopped before its end (connection cut, timeout, short body): resumable (``retry``: in this
    run; a connection too slow to be worth it is left for the next run)."""

    def __init__(self, size: int, total: int | None, reason: str, retry: bool = True):
        super().__init__(reason)
        self.size, self.total, self.reason, self.retry = size, total, reason, retry


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


@dataclass(frozen=True)
class _Limits:
    """What one download may take: at most ``max_bytes`` (None: no cap; ``key`` says which params key set
    it), at least ``min_rate`` bytes a second over every ``timeout`` seconds."""

    max_bytes: int | None = None
    key: str = "max_bytes"
    min_rate: float = MIN_RATE

    def check_announced(self, url: str, size: int, part: Path) -> None:
        """Refuse, before a byte of it is read, a body announced longer than the cap."""
        if self.max_bytes is not None and size > self.max_bytes:
            _drop_part(part)
            raise UserError(f"{url} announces {size} bytes, more than the {self.max_bytes} this archive may be "
                            f"({self.key}): refusing it")


def _open(opener, url: str, headers: dict, timeout: float):
    """``opener.open`` that returns HTTP 416 (range not satisfiable) as a response instead of raising."""
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:
            return err
        raise


def _attempt(url: str, part: Path, timeout: float, log: Callable[[str], None], redirects: HttpOnlyRedirects,
             limits: _Limits) -> str:
    """One request (plus Drive confirmation hops) continuing ``part``; the sha256 of the whole file.

    Raises :class:`_Interrupted` when the body stops early (``part`` keeps what arrived) and
    :class:`UserError` for anything that is not worth retrying on this URL."""
    offset, validator, total = _resumable(part, url)
    if offset and total == offset:
        log(f"{part.name}: already complete ({offset} bytes from {url})")
        return sha256_file(part)
    cookies = http.cookiejar.CookieJar()
    opener = make_opener(cookies, redirects, limits.min_rate, timeout)
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
            digest, restart = _receive(response, status, first, url, part, offset, log, limits)
            if digest is not None:
                return digest
            if restarts:
                raise UserError(f"network failure: {url}: {restart}, twice")
            log(f"{restart}: starting over from byte 0")
            _drop_part(part)
            offset, validator, restarts = 0, None, restarts + 1


def _announced(response, status: int, url: str, part: Path, offset: int, log: Callable[[str], None],
               limits: _Limits) -> tuple[int | None, int, str | None]:
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
        limits.check_announced(url, total if total is not None else end + 1, part)
        return (total if total is not None else end + 1), offset, None
    if offset:
        log(f"{url} answered the whole file (HTTP {status}: it ignores Range requests, or the file "
            f"changed): restarting from byte 0")
    if length is None:
        log(f"{url} does not announce the size (no Content-Length): a cut at a clean end cannot be told "
            f"from the end of the file; the sha256 check still applies when one is recorded")
    else:
        limits.check_announced(url, length, part)
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


def _stream(response, first: bytes, url: str, part: Path, offset: int, expected: int | None, digest,
            limits: _Limits) -> int:
    """Append the body (``first``, then the rest) to ``part`` from byte ``offset``, feeding ``digest``;
    returns the size of ``part``. A cut body raises :class:`_Interrupted` (a connection under the minimum
    rate too: kept for the next run); one longer than ``expected`` or than the cap ``limits.max_bytes`` is
    refused (and ``part`` dropped)."""
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
                if limits.max_bytes is not None and size + len(block) > limits.max_bytes:
                    fh.close()
                    _drop_part(part)
                    raise UserError(f"download from {url} passed {limits.max_bytes} bytes, the most this archive may "
                                    f"be ({limits.key}): refusing it; {part} removed")
                fh.write(block)
                digest.update(block)
                size += len(block)
                bar.update(len(block))
                block = b""
    except http.client.IncompleteRead:
        raise _Interrupted(size, expected, "the connection closed early") from None
    except TooSlowError as err:  # not worth retrying in this run: the next run resumes
        raise _Interrupted(size, expected, str(err), retry=False) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
        if isinstance(err, OSError) and err.errno in FULL_OR_READ_ONLY:
            raise
        raise _Interrupted(size, expected, f"{err or type(err).__name__}") from None
    return size


def _receive(response, status: int, first: bytes, url: str, part: Path, offset: int, log: Callable[[str], None],
             limits: _Limits) -> tuple[str | None, str | None]:
    """Stream the body into ``part``: (sha256 of the whole file, None) when complete, or (None, why) to
    start over from byte 0 (a 206 answer that does not continue ``part``)."""
    expected, offset, restart = _announced(response, status, url, part, offset, log, limits)
    if restart is not None:
        return None, restart
    digest = _sha256_of_start(part, offset)
    size = _stream(response, first, url, part, offset, expected, digest, limits)
    if expected is not None and size != expected:
        raise _Interrupted(size, expected, "the body ended early")
    return digest.hexdigest(), None


def part_lock(part: Path) -> FolderLock:
    """One download at a time into ``part``: ``flock`` on ``<part>.lock`` beside it. A second fetch of the
    same archive fails at once naming it, instead of both writing the one partial file."""
    part = Path(part)
    return FolderLock(part.parent, part.name + ".lock", "download", target=part,
                      advice="or fetch into another folder (--out)")


def download(url: str, dest: Path, timeout: float = 60.0, *, part: Path | None = None, retries: int = 3,
             retry_wait: float = 1.0, log: Callable[[str], None] = print, max_bytes: int | None = None,
             max_key: str = "max_bytes", min_rate: float = MIN_RATE, lock: bool = True) -> str:
    """Download ``url`` into ``dest`` (through the partial file ``part``, default ``<dest>.part``) and
    return its sha256.

    A cut connection is resumed (HTTP Range) up to ``retries`` times, as long as each try adds bytes;
    Google Drive's large-file confirmation page is followed; a redirect is followed to http(s) only
    (:mod:`pipelines.data.fetching.connection`). Raises :class:`UserError` naming the URL (and where a
    redirect led) on a network failure, an HTTP error, a web page served instead of an archive, a body that
    stays shorter (the partial file is then kept for the next run) or gets longer than announced, a body
    over ``max_bytes`` (the params key ``max_key`` set it; the partial file is removed), and a connection
    slower than ``min_rate`` bytes a second over ``timeout`` seconds (kept for the next run). ``lock``:
    hold :func:`part_lock` meanwhile (:func:`download_first` holds it across its URLs)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UserError(f"cannot download {url!r}: only http(s) URLs; pass a local file with --archive")
    dest = Path(dest)
    part = Path(part) if part is not None else dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    limits = _Limits(max_bytes, max_key, min_rate)
    with part_lock(part) if lock else contextlib.nullcontext():  # until the partial file is ours no more
        digest = _download_locked(url, part, timeout, retries, retry_wait, log, limits)
        os.replace(part, dest)
        part_meta_path(part).unlink(missing_ok=True)
    return digest


def _download_locked(url: str, part: Path, timeout: float, retries: int, retry_wait: float,
                     log: Callable[[str], None], limits: _Limits) -> str:
    """:func:`download`'s tries, while it holds the partial file: the sha256 of the complete ``part``."""
    tries = 0
    while True:
        before = _resumable(part, url)[0]
        redirects = HttpOnlyRedirects()
        try:
            return _attempt(url, part, timeout, log, redirects, limits)
        except _Interrupted as cut:
            total = cut.total if cut.total is not None else "an unknown number of"
            if cut.retry and cut.size > before and tries < retries:
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
            raise UserError(f"truncated download from {where(url, redirects)}: {cut.reason} after {cut.size} of "
                            f"{total} bytes ({tries} resume{'s' if tries != 1 else ''} tried); {kept}") from None
        except urllib.error.HTTPError as err:
            raise UserError(f"network failure: {where(url, redirects)} answered HTTP {err.code} {err.reason}") \
                from None
        except urllib.error.URLError as err:
            raise UserError(f"network failure: cannot reach {where(url, redirects)} ({err.reason})") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:  # TooSlowError included
            raise UserError(f"network failure while downloading {where(url, redirects)}: "
                            f"{err or type(err).__name__}") from None


def download_first(name: str, urls: list[str], dest: Path, part: Path, expected_sha: str | None, *,
                   timeout: float = 60.0, retries: int = 3, retry_wait: float = 1.0,
                   log: Callable[[str], None] = print, max_bytes: int | None = None,
                   max_key: str = "max_bytes") -> tuple[str, str]:
    """Try ``urls`` in order (official first, then mirrors of the same archive) until one gives a
    complete file whose sha256 matches ``expected_sha`` (any, when None); return (url, sha256).

    Each failure (network, HTTP error, web page, truncation, checksum mismatch, over ``max_bytes``) is
    logged with its reason and the next URL is tried; when all fail, the error lists every reason. The
    partial file is locked throughout (:func:`part_lock`): a second fetch of the same archive fails at once."""
    with part_lock(part):
        return _first_that_verifies(name, urls, dest, part, expected_sha, log, timeout=timeout, retries=retries,
                                    retry_wait=retry_wait, log=log, max_bytes=max_bytes, max_key=max_key, lock=False)


def _first_that_verifies(name: str, urls: list[str], dest: Path, part: Path, expected_sha: str | None,
                         say: Callable[[str], None], **options) -> tuple[str, str]:
    failures = []
    for number, url in enumerate(urls, start=1):
        say(f"{name}: downloading {url}" + (f" (URL {number} of {len(urls)})" if len(urls) > 1 else ""))
        try:
            digest = download(url, dest, part=part, **options)
        except UserError as err:
            failures.append(str(err))
        else:
            if expected_sha is None or digest == expected_sha:
                return url, digest
            dest.unlink()
            failures.append(f"checksum mismatch for {dest.name} ({url}): expected sha256 {expected_sha}, got "
                            f"{digest}; the file is corrupt or not the official archive")
        if number < len(urls):
            say(f"{name}: {failures[-1]} -- trying the next URL")
    if len(failures) == 1:
        raise UserError(failures[0])
    raise UserError(f"{name}: all {len(urls)} URLs failed:\n" +
                    "\n".join(f"  {number}. {reason}" for number, reason in enumerate(failures, start=1)))
