"""``blurdm-bench realcrops``: cut the committed real GoPro test crops from ``shared/realdata/gopro/dev``.

The rule that picks the windows, and the crops' README (source, licence, attribution):
:mod:`pipelines.data.gopro_crops`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.data.gopro_crops import DEFAULT_OUT, make_crops


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="folder with input/ and target/ (shared/realdata/gopro/dev)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--per-pair", type=int, default=2)


def run(args) -> int:
    n = make_crops(Path(args.src), Path(args.out), args.size, args.stride, args.per_pair)
    print(f"wrote {n} crop pairs to {args.out}")
    return 0
