"""``blurdm-bench check``: compare fresh metric tables against a committed reference.

CI runs the smoke pipeline, then ``blurdm-bench check`` against ``reports/reference/smoke/``.
Every JSON file of the reference is compared leaf by leaf with the same file under ``metrics/``:

* structure (keys present, list lengths), strings, booleans and integers (counts, parameter numbers,
  image counts, seeds) must match **exactly**;
* floats are compared with the tolerance of the first rule in :data:`TOLERANCES` whose pattern
  occurs in the leaf's path (absolute tolerances in the metric's unit); anything else uses
  :data:`DEFAULT_REL_TOL` (relative);
* leaves that legitimately change between runs (dates, run ids, commit, machine, wall-clock
  timings, file paths) are skipped (:data:`IGNORED`).

A readable diff is printed and the exit code is 1 when anything differs beyond tolerance.
``--update`` copies the current tables over the reference (commit the result on purpose).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from pipelines.core.config import repo_root

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
    if isinstance(reference, float) or (isinstance(current, float) and isinstance(reference, int)
                                        and not isinstance(reference, bool)):
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
        raise FileNotFoundError(f"{reference_dir}: no reference tables (*.json) to compare against")
    result = {}
    for ref_file in files:
        cur_file = metrics_dir / ref_file.name
        if not cur_file.is_file():
            result[ref_file.name] = [dict(path="", reference="present", current="<missing file>", why=f"{cur_file} not found")]
            continue
        try:
            current = json.loads(cur_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{cur_file}: not valid JSON ({err})") from None
        result[ref_file.name] = compare(json.loads(ref_file.read_text()), current)
    return result


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


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", default=None, help="reference tables folder (default reports/reference/<profile>)")
    parser.add_argument("--metrics", default=None, help="fresh tables folder (default metrics/)")
    parser.add_argument("--profile", default="smoke", help="profile whose reference to use (default smoke)")
    parser.add_argument("--update", action="store_true", help="copy the current tables over the reference")


def run(args) -> int:
    root = repo_root()
    reference = Path(args.reference) if args.reference else root / "reports" / "reference" / args.profile
    metrics = Path(args.metrics) if args.metrics else root / "metrics"
    if args.update:
        reference.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in metrics.glob("*.json"))
        if not names:
            raise FileNotFoundError(f"{metrics}: no metric tables to copy")
        for name in names:
            shutil.copyfile(metrics / name, reference / name)
        print(f"reference updated: {len(names)} table(s) copied to {reference}")
        return 0
    result = check_dirs(reference, metrics)
    print(format_report(result))
    failed = sum(bool(d) for d in result.values())
    if failed:
        print(f"\n{failed} table(s) differ from {reference} beyond tolerance. If the change is intended, "
              f"run `blurdm-bench check --update` and commit the new reference.")
        return 1
    print(f"\nall {len(result)} table(s) match {reference}")
    return 0
