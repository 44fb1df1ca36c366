"""Fetching one real deblurring dataset: obtain, verify, unpack, normalise, write its manifest.

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
   size passes its cap is refused, as is one that expands further than image data can (zip bombs). The
   caps: ``fetch.datasets.<name>.max_download_gb`` (the download) and ``max_unpacked_gb`` (the unpacked
   archive, at most ``fetch.max_unpacked_gb``), by default sized to the real archive
   (:data:`pipelines.core.limits.ARCHIVE_CAPS`); a dataset without its own gets ``fetch.max_unpacked_gb``;
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

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipelines.core.config import DatasetSource
from pipelines.core.errors import MissingFileError, UserError
from pipelines.core.files import atomic_dir, sha256_file, write_json
from pipelines.data.fetching.download import download_first
from pipelines.data.fetching.layouts import materialise, plan_pairs
from pipelines.data.fetching.unpack import DEFAULT_MAX_UNPACKED_GB, unpack_archive
from pipelines.data.fetching.verify import (
    CHECKSUMS_PATH,
    load_checksums,
    record_checksum,
)

WORK_DIR = ".fetch"  # scratch folder (download + raw unpack) inside the temporary output, removed at the end



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
            raise MissingFileError(f"--source {source}: no such directory")
        if not trust_unverified:
            raise UserError(f"{name}: --source {source} is an unpacked copy that no sha256 can vouch for; "
                            f"pass --trust-unverified to use it anyway")
        return
    if archive is not None and not archive.is_file():
        raise MissingFileError(f"--archive {archive}: no such file")
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


def _caps(name: str, spec: DatasetSource, max_unpacked_gb: float) -> tuple[tuple[int, str], tuple[int, str]]:
    """``((download cap, its params key), (unpacked cap, its params key))`` in bytes: the dataset's own caps
    (params ``fetch.datasets.<name>.max_download_gb`` / ``max_unpacked_gb``, by default sized to its real
    archive), the unpacked one never over ``fetch.max_unpacked_gb``; a dataset without caps of its own gets
    that for both."""
    unpacked = (max_unpacked_gb, "params fetch.max_unpacked_gb")
    if spec.max_unpacked_gb is not None and spec.max_unpacked_gb < max_unpacked_gb:
        unpacked = (spec.max_unpacked_gb, f"params fetch.datasets.{name}.max_unpacked_gb")
    download = unpacked if spec.max_download_gb is None else \
        (spec.max_download_gb, f"params fetch.datasets.{name}.max_download_gb")
    return (int(download[0] * 1e9), download[1]), (int(unpacked[0] * 1e9), unpacked[1])


def _obtain(name: str, spec: DatasetSource, work: Path, archive: Path | None, source: Path | None, part: Path,
            expected_sha: str | None, record: bool, checksums_path: Path, max_unpacked_gb: float,
            log: Callable[[str], None], **download_options) -> _Raw:
    """Step 1-3: the unpacked dataset, from ``--source`` as it is, or from the verified archive unpacked
    safely into ``work/raw`` (a downloaded archive is deleted once unpacked)."""
    if source is not None:
        raw = _Raw(source, False, str(source.resolve()), "source", None)
        log(f"{name}: WARNING: using the unverified unpacked copy {source} (--trust-unverified)")
        return raw
    (max_download, download_key), (max_unpacked, unpacked_key) = _caps(name, spec, max_unpacked_gb)
    archive_path, origin, kind, digest = _verified_archive(name, spec, work, archive, part, expected_sha, record,
                                                           checksums_path, log, max_bytes=max_download,
                                                           max_key=download_key, **download_options)
    raw = work / "raw"
    raw.mkdir()
    unpack_archive(archive_path, raw, max_bytes=max_unpacked, limit_key=unpacked_key)
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
