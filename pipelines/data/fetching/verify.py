"""The expected sha256 of every archive (``pipelines/checksums.yaml``), and recording one on first use.

:func:`load_checksums` reads the table (a ``null`` value: not known yet); :func:`record_checksum` writes a
digest into its one ``null`` line (``blurdm-bench fetch --record-checksum``: trust on first use), keeping the
comments, replacing the file atomically and never overwriting a recorded value.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipelines.core.errors import InvalidInputError, MissingFileError, UserError
from pipelines.core.files import (
    write_text,
)

CHECKSUMS_PATH = Path(__file__).resolve().parents[2] / "checksums.yaml"  # pipelines/checksums.yaml
_SHA256_RE = re.compile(r"[0-9a-f]{64}")



def load_checksums(path: str | os.PathLike | None = None) -> dict[str, str | None]:
    """``{archive file name: sha256 hex or None}`` from ``pipelines/checksums.yaml`` (or ``path``)."""
    path = Path(path) if path is not None else CHECKSUMS_PATH
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise MissingFileError(f"{path}: cannot read checksums file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{path}: not valid YAML: {err}") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{path}: expected a mapping 'archive file name: sha256 or null'")
    table: dict[str, str | None] = {}
    for key, value in raw.items():
        if value is not None and not (isinstance(value, str) and _SHA256_RE.fullmatch(value.lower())):
            raise InvalidInputError(f"{path}: {key}: expected 64 hex digits or null, got {value!r}")
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
