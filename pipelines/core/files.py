"""Atomic file output: write to a temporary sibling, fsync, then rename into place.

A reader (or a later DVC stage) therefore sees either the old file or the complete new one, never a
partial write, even if the process is killed or the disk fills up half-way.

Temporary siblings are named ``.<name>.<host>.<pid>-<random>.tmp`` (a long ``<name>`` cut and hashed so
that the whole stays within :data:`NAME_MAX`), and a replaced folder is parked as ``....old`` for an
instant. One left behind by a process of this machine that no longer runs (SIGKILL, power loss) is
deleted by the next write of the same target, so retries of a large fetch or synthesis do not fill the
disk; one of a process that still runs is never touched. A write that fails because the
disk is full, the quota is exhausted or the folder is read-only raises an :class:`OSError` naming the
destination (:class:`pipelines.core.errors.NotWritableError`: one line, exit code 1). Outputs get the
usual permissions (``0o666`` / ``0o777`` minus the umask), not the private ``0o600`` / ``0o700`` of :mod:`tempfile`.

A folder is only ever replaced when it is ours: :func:`atomic_dir` with a ``marker`` refuses an existing
``--out`` that is not empty and does not hold that marker file (what the command always writes).
:func:`walk_files` reads a folder tree without looping through folder symlinks, and :class:`FolderLock`
gives one writer per folder (:func:`beside_lock`: per output folder replaced whole, or per file).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from tqdm import tqdm

from pipelines.core.errors import InvalidInputError, NotWritableError

# errno values that can only mean "the destination cannot be written"
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# ... and those that mean it when our own steps (create, chmod, rename) fail
NOT_WRITABLE = FULL_OR_READ_ONLY + (errno.EACCES, errno.EPERM)
# free bytes below which a failed file write is reported as a full disk: torch.save, for one, turns
# ENOSPC into a RuntimeError ("unexpected pos ...") that names neither the file nor the cause
NEARLY_FULL_BYTES = 1 << 20
NAME_MAX = 255  # bytes in one file name: ext4, xfs, btrfs, tmpfs, NFS
# bytes a temporary sibling adds to its target's name: "." + ".<host, 24>.<pid, 7>-<random, 8>" + ".tmp"
# (or a short suffix of atomic_path's): 64 leaves room to spare
_DECORATION = 64


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the portable way (briefly sets it)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def name_bytes(name: str) -> int:
    """The length of a file name as the filesystem counts it (bytes), to compare with :data:`NAME_MAX`."""
    return len(os.fsencode(name))


def _temporary_stem(name: str) -> str:
    """``name`` as it appears in the names of its temporary siblings: whole when the decorated name fits in
    :data:`NAME_MAX`, else cut and followed by ``~`` and 12 hex digits of its sha256 (still one per target,
    so orphans are found again), so that a legal long name (say 240 bytes) can still be written."""
    raw = os.fsencode(name)
    if len(raw) <= NAME_MAX - _DECORATION:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return os.fsdecode(raw[:NAME_MAX - _DECORATION - 13]) + "~" + digest


def _cannot_write(path: Path, err: OSError) -> NotWritableError:
    return NotWritableError(err.errno, f"cannot write: {os.strerror(err.errno)}", str(path))


@contextlib.contextmanager
def _naming(path: Path):
    """Our own steps (create, chmod, rename): a full / read-only / forbidden location names ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            raise
        raise _cannot_write(path, err) from err


def _body_error(path: Path, err: Exception, guess_full: bool) -> Exception:
    """What to raise when writing ``path`` failed with ``err``: an OSError naming ``path`` when the
    disk is full or read-only, else ``err`` itself."""
    if isinstance(err, OSError):
        return _cannot_write(path, err) if err.errno in FULL_OR_READ_ONLY else err
    if guess_full:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            return err
        if free < NEARLY_FULL_BYTES:
            return NotWritableError(errno.ENOSPC, f"cannot write: {os.strerror(errno.ENOSPC)} ({free} bytes free; the "
                                         f"writer failed with {type(err).__name__}: {err})", str(path))
    return err


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def remove_orphaned_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporary siblings of ``path`` whose writer (a process of this machine) no longer runs."""
    path = Path(path)
    stem, host = re.escape(_temporary_stem(path.name)), re.escape(_host())
    pattern = re.compile(rf"^\.{stem}\.{host}\.(\d+)-[A-Za-z0-9_]+\.(?:tmp|old)$")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for tmp in siblings:
        match = pattern.match(tmp.name)
        if not match or int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _prepare(path: Path) -> str:
    """Create the parent folder, clear orphans; the prefix of this process's temporary sibling."""
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path)
    return f".{_temporary_stem(path.name)}.{_host()}.{os.getpid()}-"


@contextlib.contextmanager
def _body_errors(path: Path, guess_full: bool):
    """Re-raise a failure of the caller's writing code as :func:`_body_error` words it (naming ``path``)."""
    try:
        yield
    except Exception as err:
        wrapped = _body_error(path, err, guess_full=guess_full)
        if wrapped is err:
            raise
        raise wrapped from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    prefix = _prepare(path)
    with _naming(path):
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with _body_errors(path, guess_full=True):
            yield tmp
        with _naming(path):
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int = 2, allow_nan: bool = True) -> None:
    """``obj`` as JSON, keys sorted. ``allow_nan=False``: strict JSON, a NaN or infinity is a ValueError (a
    bug to fix where it was computed) instead of the ``NaN`` / ``Infinity`` no JSON parser but Python's reads."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default, allow_nan=allow_nan) + "\n")


def read_json(path: str | os.PathLike):
    """The JSON value in ``path``; a file that cannot be read, or is not (whole) JSON, e.g. one truncated by a
    killed writer, is an :class:`InvalidInputError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}: not valid JSON ({err}); truncated? Rerun the stage that writes it") from None


def _json_default(obj):
    # lazy: numpy only for numpy values; every stage imports this module and fetch needs no numpy (+0.12 s)
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_replaceable(path: str | os.PathLike, marker: str | Mapping[str, bytes | None],
                      signature: bytes | None = None) -> None:
    """Refuse to replace ``path`` unless it is absent, an empty folder, or a folder holding the file
    ``marker`` (whose content includes ``signature``, when given): what one of our commands wrote. A
    ``ValueError`` names the folder, so a typo in ``--out`` never deletes someone's files.

    ``marker`` may also map several marker files to their signatures (None: any content): one of them
    is enough (e.g. the placeholder of a skipped fetch, or the manifest of a finished one)."""
    path = Path(path)
    markers = {marker: signature} if isinstance(marker, str) else dict(marker)
    if path.is_symlink():
        raise InvalidInputError(f"{path}: is a symbolic link, not a folder this command wrote: refusing to replace it "
                         "(the output folder is replaced whole); choose another --out")
    if not path.exists():
        return
    if not path.is_dir():
        raise InvalidInputError(f"{path}: exists and is not a folder: refusing to replace it; choose another --out")
    if not any(path.iterdir()):
        return
    for name, sign in markers.items():
        mark = path / name
        ours = mark.is_file() and not mark.is_symlink()
        if ours and sign is not None:
            try:
                ours = sign in mark.read_bytes()
            except OSError:
                ours = False
        if ours:
            return
    signed = any(sign is not None for sign in markers.values())
    what = f"no {' or '.join(markers)}" + (" written by blurdm-bench" if signed else "")
    raise InvalidInputError(f"{path}: folder is not empty and holds {what}: refusing to replace it (the output "
                     "folder is replaced whole, deleting everything in it); choose a new or empty --out")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str | Mapping[str, bytes | None] | None = None,
               signature: bytes | None = None):
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` whole.

    With ``marker``, an existing ``path`` must be empty or hold that file, or one of several (see
    :func:`check_replaceable`), checked before the work starts and again just before the replacement."""
    path = Path(path)
    if marker is not None:
        check_replaceable(path, marker, signature)
    prefix = _prepare(path)
    with _naming(path):
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
    try:
        with _body_errors(path, guess_full=False):
            yield tmp
        # the previous output is parked under a name of this run's own (``.<name>.<host>.<pid>-<random>.old``,
        # never a folder of the user's such as ``.<name>.old``); one parked by a run killed between the two
        # renames is an orphan that the next write removes (:func:`remove_orphaned_temporaries`)
        old = tmp.with_name(tmp.name[:-len(".tmp")] + ".old")
        if marker is not None:
            check_replaceable(path, marker, signature)  # it may have changed while we worked
        with _naming(path):
            os.chmod(tmp, 0o777 & ~_umask())
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike, progress: bool = False, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks (with a tqdm bar when ``progress``)."""
    path = Path(path)
    digest = hashlib.sha256()
    bar = None
    if progress:
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"sha256 {path.name}")
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest()


class SkippedPathWarning(UserWarning):
    """A path met while reading a folder was skipped (broken or looping symlink, folder already read)."""


def _warn(message: str) -> None:
    warnings.warn(message, SkippedPathWarning, stacklevel=3)


def walk_files(folder: str | os.PathLike, suffixes: tuple[str, ...] | None = None, warn=None):
    """Yield every regular file below ``folder`` (folders sorted, then files sorted; hidden names skipped;
    with ``suffixes``, only names ending in one of them, case-insensitively).

    Folder symlinks are followed, but never into a folder already read (tracked by real path), so a
    loop such as ``again -> .`` is read once, not again and again. A broken or looping file symlink is
    skipped with a warning naming it (``warn(message)``; default: a :class:`SkippedPathWarning`).
    """
    warn = warn or _warn
    folder = Path(folder)
    visited = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            sub = os.path.join(dirpath, name)
            real = os.path.realpath(sub)
            if real in visited:
                warn(f"{sub}: skipped: symbolic link to a folder already read ({real}); a folder is read once")
                continue
            visited.add(real)
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or (suffixes is not None and not name.lower().endswith(suffixes)):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                try:
                    os.stat(path)
                except OSError as err:
                    why = "symbolic link loop" if err.errno == errno.ELOOP else "broken symbolic link"
                    warn(f"{path}: skipped: {why} ({os.strerror(err.errno)})")
                    continue
            if path.is_file():
                yield path


class FolderLockedError(InvalidInputError):
    """Another process holds the lock of a folder it is writing."""


class FolderLock:
    """An exclusive lock of one writer on a folder: ``flock`` on the file ``<folder>/<name>``.

    The kernel drops the lock when its holder exits, even on SIGKILL, so a stale lock file never
    blocks a later run; :meth:`release` removes the file. A second writer gets a
    :class:`FolderLockedError` naming the folder and the holder (pid and host).

    ``target``: what the lock guards when that is not ``folder`` itself, e.g. an output folder that is
    replaced whole (its lock file lives beside it, in ``folder``: :func:`beside_lock`) or a partial
    download; the error then names ``target``."""

    def __init__(self, folder: str | os.PathLike, name: str = ".lock", what: str = "run",
                 target: str | os.PathLike | None = None, advice: str = "or use another --out"):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self.target = Path(target) if target is not None else None
        self.advice = advice
        self._fd: int | None = None
        self._unlocked = False  # held without a lock (a filesystem that has none)

    def acquire(self) -> Self:
        if self._fd is not None or self._unlocked:
            return self
        with _naming(self.path):
            self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            with _naming(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
                    os.close(fd)  # a filesystem without locks: warn, and write unlocked rather than not at all
                    warnings.warn(f"{self.path}: cannot lock ({os.strerror(err.errno)}); make sure no other "
                                  f"{self.what} writes this folder", RuntimeWarning, stacklevel=2)
                    self._unlocked = True
                    return self
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                try:
                    holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                finally:
                    os.close(fd)
                what = f"{self.folder}: another {self.what} is writing this folder" if self.target is None \
                    else f"{self.target}: another {self.what} is writing it"
                raise FolderLockedError(f"{what} ({holder}; lock file {self.path}); wait for it to finish, "
                                        f"{self.advice}") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and our lock: retry
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self._fd = fd
            return self

    def release(self) -> None:
        if self._unlocked:
            self._unlocked = False
            self.path.unlink(missing_ok=True)
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiting writer then retries
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def beside_lock(path: str | os.PathLike, what: str) -> FolderLock:
    """The lock of one writer on ``path``, a folder replaced whole (or a file), held on the hidden file
    ``.<name>.lock`` beside it: the lock outlives the replacement of ``path`` itself."""
    path = Path(path)
    return FolderLock(path.parent, f".{_temporary_stem(path.name)}.lock", what, target=path)  # a long name: cut
