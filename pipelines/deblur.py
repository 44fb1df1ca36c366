"""``blurdm-bench deblur IN... -o OUT --checkpoint CKPT``: restore your own photos.

Inputs are image files and/or folders (searched recursively); every image is restored at full resolution
exactly as in evaluation and written as an 8-bit RGB PNG (names, conversions and failures:
:mod:`pipelines.evaluation.photo_restoration`). The exit code is 1 when any file failed (the count is
printed), 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.inference import pick_device
from pipelines.core.checkpoint_files import load_deblur_model, model_file
from pipelines.core.errors import UserError
from pipelines.core.param_rules import seed_argument
from pipelines.evaluation.photo_restoration import (
    DEFAULT_SEED,
    collect_inputs,
    deblur_files,
    plan_outputs,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders")
    parser.add_argument("-o", "--out", required=True, help="output folder for the restored PNGs")
    parser.add_argument("--checkpoint", required=True, help="model.pt of a trained model (or its run folder)")
    parser.add_argument("--seed", type=seed_argument, default=DEFAULT_SEED,
                        help=f"noise seed of a diffusion prior (default {DEFAULT_SEED}, the authors')")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                        help="on CUDA, replay prior + backbone from a CUDA graph once an image size repeats "
                             "(--no-fast: eager); the CPU always runs eager")


def run(args) -> int:
    inputs = collect_inputs(args.inputs)
    if not inputs:
        raise UserError(f"no image files found in {', '.join(map(str, args.inputs))}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: -o must be a folder, this is a file")
    model, spec = load_deblur_model(model_file(args.checkpoint))
    if spec["prior_mode"] == "sharp_encoder":
        raise UserError(f"{args.checkpoint}: a stage-1 model needs the sharp image for its prior; deblur with a "
                        "stage-3 (BlurDM) or baseline model")
    jobs = plan_outputs(inputs, out_dir)
    failures = deblur_files(model, jobs, device=pick_device(args.device), seed=args.seed, fast=args.fast)
    written = len(jobs) - len(failures)
    print(f"restored {written} of {len(jobs)} image(s) -> {out_dir}")
    if failures:
        print(f"{len(failures)} of {len(jobs)} file(s) failed:", file=sys.stderr)
        for path, problem in failures:
            print(f"  {problem}" if str(path) in problem else f"  {path}: {problem}", file=sys.stderr)
        return 1
    return 0
