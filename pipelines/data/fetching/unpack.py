"""Unpacking an archive safely (zip, tar, tar.gz/bz2/xz), with our own extraction.

No ``tarfile``/``zipfile`` ``extract``, no reliance on ``filter="data"``, so the Python patch level does not
matter: only regular files and folders are written, each to a path computed from its normalised name and
checked to resolve inside the target; every symlink and hard link (wherever it points: chains of
harmless-looking links escape, CVE-2025-4517), device and special file is refused, as are absolute paths and
``..`` components, naming the archive and member; an archive whose declared uncompressed size passes its
cap (params ``fetch.datasets.<name>.max_unpacked_gb``, default sized to the real archive, and
``fetch.max_unpacked_gb``) is refused, as is a compression ratio no image data reaches (zip bombs).
"""
from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from pipelines.core.errors import UserError

CHUNK = 1 << 20



# Dataset archives hold only regular files and folders. Every link (symbolic or hard), device, fifo or
# other special member is refused, whatever it points at: a link that looks harmless as text can still
# lead outside through a chain of other links (CVE-2025-4517 defeats tarfile's filter="data" that way on
# unpatched Pythons, 3.11.7 included). Nothing here relies on tarfile's / zipfile's own extraction: each
# regular member's bytes are copied to a path this module computed from the member name and checked.
DEFAULT_MAX_UNPACKED_GB = 50.0  # params fetch.max_unpacked_gb (the largest dataset cap is 35 GB)
# Compression-ratio guard (bombs under the size cap). Dataset archives hold PNG / JPEG images, which zip and
# gzip barely compress (ratio ~1); a member or an archive that expands much further is not a dataset.
MAX_MEMBER_RATIO = 100  # a zip member over 1 MiB may not expand more than this (its sizes are in the archive)
MAX_TOTAL_RATIO = 10  # all members together: at most this times the archive's size ...
RATIO_FLOOR = 64 << 20  # ... once past 64 MiB (small archives of tiny files carry much header padding)


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

    def __init__(self, archive: Path, dest: Path, max_bytes: int,
                 limit_key: str = "params fetch.max_unpacked_gb"):
        self.archive = archive
        self.root = Path(os.path.realpath(dest))
        self.max_bytes = max_bytes
        self.limit_key = limit_key
        self.declared = 0
        self.ratio_limit = max(RATIO_FLOOR, MAX_TOTAL_RATIO * archive.stat().st_size)

    def refuse(self, name: str, problem: str) -> UserError:
        return _refuse(self.archive, name, problem)

    def declare(self, name: str, size: int, compressed: int | None = None) -> None:
        """Add a member's declared uncompressed size (``compressed``: its size in a zip); refuse once the
        total passes the limit, or the compression ratio passes what image data reaches (a bomb)."""
        if size < 0:
            raise self.refuse(name, f"negative size {size}")
        self.declared += size
        if self.declared > self.max_bytes:
            raise self.refuse(name, f"the declared uncompressed sizes add up to more than {_gb(self.max_bytes)} "
                                    f"({self.limit_key}): a zip bomb, or raise the limit")
        if compressed is not None and size > 1 << 20 and size > MAX_MEMBER_RATIO * max(compressed, 1):
            raise self.refuse(name, f"compression ratio {size / max(compressed, 1):.0f} ({size} bytes from "
                                    f"{compressed}), over {MAX_MEMBER_RATIO}: image data never compresses so far; "
                                    "a zip bomb")
        if self.declared > self.ratio_limit:
            raise self.refuse(name, f"compression ratio over {MAX_TOTAL_RATIO}: the members declare more than "
                                    f"{_gb(self.declared)} from a {_gb(self.archive.stat().st_size)} archive, "
                                    "which image data never reaches; a zip bomb")

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


def _unpack_zip(archive: Path, dest: Path, max_bytes: int, limit_key: str) -> None:
    ex = _Extractor(archive, dest, max_bytes, limit_key)
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
                    ex.declare(info.filename, info.file_size, info.compress_size)
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


def _unpack_tar(archive: Path, dest: Path, max_bytes: int, limit_key: str) -> None:
    # A tar declares its sizes member by member (no table up front, and reading every header of a .gz
    # means decompressing it all): members are checked one at a time as the stream goes by; a refusal
    # half-way leaves only files inside the temporary folder, which is then removed.
    ex = _Extractor(archive, dest, max_bytes, limit_key)
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


def unpack_archive(archive: Path, dest: Path, max_bytes: int | None = None,
                   limit_key: str = "params fetch.max_unpacked_gb") -> None:
    """Extract the regular files and folders of a zip or tar(.gz/.bz2/.xz) archive into ``dest``.

    Refuses (:class:`UserError` naming the archive and the member) any link, device or special member,
    absolute or ``..`` names, a path that would resolve outside ``dest``, archives whose declared
    uncompressed size passes ``max_bytes`` (default: 50 GB; ``limit_key`` names the params key that set
    it), and a compression ratio image data never reaches (a zip member over 1 MiB expanding more than
    :data:`MAX_MEMBER_RATIO` times, all members more than :data:`MAX_TOTAL_RATIO` times the archive once past
    64 MiB), each before a byte of that member is written."""
    archive = Path(archive)
    if max_bytes is None:
        max_bytes = int(DEFAULT_MAX_UNPACKED_GB * 1e9)
    Path(dest).mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _unpack_zip(archive, dest, max_bytes, limit_key)
    elif tarfile.is_tarfile(archive):
        _unpack_tar(archive, dest, max_bytes, limit_key)
    else:
        raise UserError(f"{archive}: not a zip or tar archive (a broken or truncated download, or a web "
                        f"page saved in place of the archive?)")
