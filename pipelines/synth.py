"""``blurdm-bench synth``: the embedded synthetic motion-blur dataset (GoPro layout).

The command reads ``params.synth`` and calls :func:`pipelines.data.motion_blur.generate` (how the blur is
made, the layout of the output and its ``manifest.json``: see there).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.core.config import load_params
from pipelines.core.params_view import restrict
from pipelines.data.motion_blur import generate


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None, help="params file (default: params.yaml of the repo)")
    parser.add_argument("--profile", default=None, help="profile to apply (smoke, cpu, paper)")
    parser.add_argument("--out", default=None, help="output folder (default: synth.out_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


PARAMS_KEYS = ("profile", "synth", "data.max_pixels")  # what this stage reads (dvc.yaml declares them)


def run(args) -> int:
    params = restrict(load_params(args.params, profile=args.profile), PARAMS_KEYS, "the synthesize stage")
    out_dir = Path(args.out) if args.out else params.resolve_path(params.synth.out_dir)
    start = time.perf_counter()
    manifest = generate(params.synth, out_dir, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    summary = manifest["summary"]
    psnr = summary["psnr_blur_vs_sharp"]["test"]
    print(f"wrote {out_dir}: {summary['counts']['train']['pairs']} train / {summary['counts']['test']['pairs']} "
          f"test pairs in {seconds:.1f} s; test blurred-vs-sharp PSNR "
          f"min {psnr.get('min')} / median {psnr.get('median')} / max {psnr.get('max')} dB")
    return 0
