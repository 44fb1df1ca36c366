"""Comparing fresh metric tables against a committed reference: the work behind ``blurdm-bench check``.

CI runs the smoke pipeline, then ``blurdm-bench check`` against ``reports/reference/smoke/``.
Every JSON file of the reference is compared leaf by leaf with the same file under ``metrics/``:

* structure (keys present, list lengths), strings, booleans and integers (counts, parameter numbers,
  image counts, seeds) must match **exactly**, and by type (``4.04`` is not the count ``4``, ``1`` not ``true``);
* floats are compared with the tolerance of the first rule in :data:`TOLERANCES` whose pattern
  occurs in the leaf's path (absolute tolerances in the metric's unit); anything else uses
  :data:`DEFAULT_REL_TOL` (relative);
* leaves that legitimately change between runs (dates, run ids, commit, machine, wall-clock
  timings, file paths) are skipped (:data:`IGNORED`).

:func:`check_dirs` compares two folders, :func:`format_report` words the differences.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from pipelines.core.errors import InvalidInputError, MissingFileError

# (path substring, absolute tolerance); first match wins
TOLERANCES: list[tuple[str, float]] = [
    ("psnr", 0.05),      # dB
    ("ssim", 0.002),     # covers ssim and ssim3d
    ("lpips", 0.002),
    ("ci_", 0.05),       # CI bounds of a gain (PSNR-dominated)
    ("std", 0.05),
    ("mean", 0.05),
]



DEFAULT_REL_TOL = 1e-3
IGNORED = ("date", "git_commit", "machine", "runs", "run_id", "dvc_stage", "per_image", "crops",
           "seconds", "latency", "it_per_s", "wall", "torch", "threads", "device", "path", "source")


def _ignored(path: str) -> bool:
    """A leaf is skipped when any part of its path contains an IGNORED word
    (``blurdm_module_latency_ms``, ``published_backbones_source``, ...)."""
    parts = path.replace("[", ".").split(".")
    return any(any(key in part for key in IGNORED) for part in parts)


def _tolerance(path: str) -> tuple[float, bool]:
    """(tolerance, is_absolute) for a float leaf."""
    lower = path.lower()
    for pattern, tol in TOLERANCES:
        if pattern in lower:
            return tol, True
    return DEFAULT_REL_TOL, False


def compare(reference, current, path: str = "") -> list[dict]:
    """Differences between two JSON values; each {path, reference, current, why}."""
    diffs: list[dict] = []
    if path and _ignored(path):
        return diffs
    if isinstance(reference, dict):
        if not isinstance(current, dict):
            return [dict(path=path, reference="{...}", current=_short(current), why="type changed")]
        for key in sorted(set(reference) | set(current)):
            sub = f"{path}.{key}" if path else str(key)
            if _ignored(sub):
                continue
            if key not in current:
                diffs.append(dict(path=sub, reference=_short(reference[key]), current="<missing>", why="missing"))
            elif key not in reference:
                diffs.append(dict(path=sub, reference="<absent>", current=_short(current[key]), why="new key"))
            else:
                diffs.extend(compare(reference[key], current[key], sub))
        return diffs
    if isinstance(reference, list):
        if not isinstance(current, list) or len(current) != len(reference):
            n = len(current) if isinstance(current, list) else _short(current)
            return [dict(path=path, reference=f"list of {len(reference)}", current=f"list of {n}", why="length changed")]
        for i, (r, c) in enumerate(zip(reference, current)):
            diffs.extend(compare(r, c, f"{path}[{i}]"))
        return diffs
    if isinstance(reference, (bool, int)) and not isinstance(reference, float):
        # a count or a switch: the same type and value, exactly (4 -> 4.04 is no rounding, true is not 1)
        if type(current) is not type(reference):
            return [dict(path=path, reference=reference, current=_short(current), why="type changed")]
    elif isinstance(reference, float):
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            return [dict(path=path, reference=reference, current=_short(current), why="type changed")]
        if math.isnan(reference) and math.isnan(current):
            return diffs
        tol, absolute = _tolerance(path)
        allowed = tol if absolute else tol * max(abs(reference), 1e-12)
        if not abs(current - reference) <= allowed:
            sign = "higher" if current > reference else "lower"
            diffs.append(dict(path=path, reference=reference, current=current,
                              why=f"{sign} by {abs(current - reference):.4g} (tolerance {allowed:.3g})"))
        return diffs
    if reference != current:
        diffs.append(dict(path=path, reference=_short(reference), current=_short(current), why="changed (exact)"))
    return diffs


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_dirs(reference_dir: Path, metrics_dir: Path) -> dict[str, list[dict]]:
    files = sorted(reference_dir.glob("*.json"))
    if not files:
        raise MissingFileError(f"{reference_dir}: no reference tables (*.json) to compare against")
    result = {}
    for ref_file in files:
        cur_file = metrics_dir / ref_file.name
        if not cur_file.is_file():
            result[ref_file.name] = [dict(path="", reference="present", current="<missing file>", why=f"{cur_file} not found")]
            continue
        result[ref_file.name] = compare(read_table(ref_file), read_table(cur_file))
    return result


def read_table(path: Path, data: bytes | None = None):
    """The JSON value in ``path`` (or in ``data``, its bytes read already); a file that cannot be read or is not
    (whole) JSON names itself."""
    try:
        return json.loads((path.read_bytes() if data is None else data).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}: not valid JSON ({err}); truncated or still being written?") from None


def format_report(result: dict[str, list[dict]]) -> str:
    lines = []
    for name, diffs in result.items():
        if not diffs:
            lines.append(f"ok        {name}")
            continue
        lines.append(f"CHANGED   {name}: {len(diffs)} difference(s)")
        width = max(len(d["path"]) for d in diffs)
        for d in diffs:
            lines.append(f"    {d['path']:<{width}}  reference={d['reference']}  current={d['current']}  ({d['why']})")
    return "\n".join(lines)
