"""``blurdm-bench check``: compare fresh metric tables against a committed reference.

CI runs the smoke pipeline, then ``blurdm-bench check`` against ``reports/reference/smoke/``; the comparison
rules (exact for structure and counts, tolerances for metrics, ignored run-specific leaves) are
:mod:`pipelines.results.reference_check`. A readable diff is printed and the exit code is 1 when anything
differs beyond tolerance. ``--update`` copies the current tables over the reference (commit the result on
purpose).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.core.config import repo_root
from pipelines.core.errors import MissingFileError
from pipelines.core.files import write_bytes
from pipelines.results.reference_check import check_dirs, format_report, read_table


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
            raise MissingFileError(f"{metrics}: no metric tables to copy")
        tables = {name: (metrics / name).read_bytes() for name in names}
        for name, data in tables.items():
            read_table(metrics / name, data)  # a truncated table never becomes the reference
        for name, data in tables.items():
            write_bytes(reference / name, data)  # atomic: a `check` reading the reference sees the old or the new
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
