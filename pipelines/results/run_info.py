"""Keep run-specific data out of the tracked metric files.

``metrics/*.json`` are committed (DVC metrics, ``cache: false``): two runs of the same commit and
params must give the same bytes, so ``git diff`` shows only real changes. What legitimately differs
between two runs goes to an untracked sidecar, ``metrics/run_info/<name>.json`` (ignored by git, a
cached DVC output of the stage that writes it):

* metric tables (:mod:`pipelines.tables`): ``meta.date`` and the MLflow run ids (``rows[].runs``,
  keyed by row: ``column/backbone`` in Table 1 (the column: the test set, ``<set>-<scoring>`` for RealBlur),
  the variant in the ablations);
* ``costs.json`` (:mod:`pipelines.profile`): the ``latency`` block and
  ``paper_claims.ours.blurdm_module_latency_ms`` (wall-clock timings).

A sidecar also records the sha256 of the tracked file it belongs to; :func:`merge_run_info` (used by
the report) ignores a sidecar written for other bytes (say, after ``git checkout`` of older tables
without ``dvc checkout``). Home-folder prefixes in the tracked files' strings are written as ``~``.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path

from models.names import column_key
from pipelines.core.errors import InvalidInputError
from pipelines.core.files import sha256_file, write_json

RUN_INFO_DIR = "run_info"
FORMAT = "blurdm-bench/run-info"
NOT_RECORDED = "not recorded"


def run_info_path(tracked: str | os.PathLike) -> Path:
    """The sidecar of the tracked file ``tracked``: ``<its folder>/run_info/<its name>``."""
    tracked = Path(tracked)
    return tracked.parent / RUN_INFO_DIR / tracked.name


def _row_key(row: dict) -> str:
    if "backbone" not in row:
        return str(row.get("variant"))
    return f"{column_key(str(row.get('dataset')), row.get('scoring'))}/{row.get('backbone')}"


def _portable(obj):
    """Strings with the home folder written as ``~`` (an LPIPS reason names the weights' cache path)."""
    home = str(Path.home())
    if isinstance(obj, str):
        return obj.replace(home + os.sep, "~" + os.sep) if len(home) > 1 else obj
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v) for v in obj]
    return obj


def split_table(table: dict) -> tuple[dict, dict]:
    """``(tracked, volatile)`` of a metric table of :mod:`pipelines.tables`."""
    tracked = copy.deepcopy(table)
    volatile: dict = {"runs": {}}
    meta = tracked.get("meta")
    if isinstance(meta, dict) and "date" in meta:
        volatile["date"] = meta.pop("date")
    for row in tracked.get("rows", []):
        if "runs" in row:
            volatile["runs"][_row_key(row)] = row.pop("runs")
    return _portable(tracked), volatile


def split_costs(report: dict) -> tuple[dict, dict]:
    """``(tracked, volatile)`` of ``costs.json`` (:mod:`pipelines.profile`): timings are volatile."""
    tracked = copy.deepcopy(report)
    volatile: dict = {}
    if "latency" in tracked:
        volatile["latency"] = tracked.pop("latency")
    ours = (tracked.get("paper_claims") or {}).get("ours") or {}
    if "blurdm_module_latency_ms" in ours:
        volatile["blurdm_module_latency_ms"] = ours.pop("blurdm_module_latency_ms")
    return _portable(tracked), volatile


def write_tracked(path: str | os.PathLike, tracked: dict, volatile: dict) -> Path:
    """Write ``tracked`` to ``path`` and ``volatile`` (with the date and the sha256 of ``path``'s bytes)
    to its sidecar, both atomically; returns the sidecar's path."""
    path = Path(path)
    write_json(path, tracked)
    sidecar = run_info_path(path)
    volatile = {"format": FORMAT, "table": path.name, "table_sha256": sha256_file(path),
                "date": volatile.get("date") or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **{k: v for k, v in volatile.items() if k != "date"}}
    write_json(sidecar, volatile)
    return sidecar


def read_run_info(tracked: str | os.PathLike) -> tuple[dict | None, str]:
    """``(sidecar, why)``: the sidecar of ``tracked`` when it belongs to ``tracked``'s bytes, else
    ``(None, why not)``. An unreadable sidecar raises ValueError naming it."""
    tracked = Path(tracked)
    sidecar = run_info_path(tracked)
    if not sidecar.is_file():
        return None, f"{NOT_RECORDED} ({RUN_INFO_DIR}/{tracked.name} absent)"
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"{sidecar}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInputError(f"{sidecar}: not a run-info file (expected \"format\": \"{FORMAT}\")")
    if data.get("table_sha256") != sha256_file(tracked):
        return None, f"{NOT_RECORDED} ({RUN_INFO_DIR}/{tracked.name} belongs to another version of {tracked.name})"
    return data, ""


def merge_run_info(data: dict, sidecar: dict | None, why: str = NOT_RECORDED, costs: bool = False) -> dict:
    """The inverse of :func:`split_table` / :func:`split_costs`: ``data`` (parsed tracked JSON) with the
    sidecar's values put back. Without a sidecar the date reads ``why`` and no run is listed; what the
    file holds itself (an older file that still carries its date or run ids) is kept."""
    data = copy.deepcopy(data)
    if not isinstance(data, dict):
        return data
    sidecar = sidecar or {}
    if costs:
        if "latency" in sidecar and "latency" not in data:
            data["latency"] = sidecar["latency"]
        ours = (data.get("paper_claims") or {}).get("ours")
        if isinstance(ours, dict) and "blurdm_module_latency_ms" in sidecar:
            ours.setdefault("blurdm_module_latency_ms", sidecar["blurdm_module_latency_ms"])
        return data
    meta = data.get("meta")
    if isinstance(meta, dict):
        meta.setdefault("date", sidecar.get("date") or why)
    runs = sidecar.get("runs") or {}
    for row in data.get("rows") or []:
        if isinstance(row, dict) and "runs" not in row:
            empty = {"baseline": [], "blurdm": []} if "backbone" in row else []
            row["runs"] = runs.get(_row_key(row), empty)
    return data
