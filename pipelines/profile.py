"""``blurdm-bench profile``: parameters, MACs, FLOPs and (optionally) latency of every model.

The command reads ``params.cost`` and calls :func:`pipelines.evaluation.model_costs.profile_models` (what is
counted and timed, and how: see there). ``--out FILE`` holds the counts only (the same bytes for the same
commit and params, checked by :class:`pipelines.results.metric_schemas.CostsFile`); the timings go to the
untracked ``<folder of FILE>/run_info/<name of FILE>`` (:mod:`pipelines.results.run_info`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models.backbones import BACKBONES
from models.inference import pick_device
from pipelines.core.config import load_params
from pipelines.core.errors import MissingFileError
from pipelines.core.files import write_json
from pipelines.core.params_view import restrict
from pipelines.evaluation.model_costs import profile_model_file, profile_models
from pipelines.results.metric_schemas import CostsFile, validated_json
from pipelines.results.run_info import run_info_path, split_costs, write_tracked


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=("paper", "tiny"), default=None,
                        help="model scale (default: params.models.scale)")
    parser.add_argument("--out", required=True, type=Path, help="output JSON file")
    parser.add_argument("--backbones", nargs="+", default=None, choices=list(BACKBONES),
                        help="backbones to profile (default: all)")
    parser.add_argument("--latency", action="store_true", help="also time inference (params.cost)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="device for --latency (auto: CUDA when present)")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                        help="on CUDA, also time the CUDA-graph path (latency.fast; --no-fast: eager only)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="profile this one model file instead (a run's model.pt, or one `import-weights` wrote): "
                             "params, MACs / FLOPs at params.cost.sizes, latency with --latency")
    parser.add_argument("--profile", default=None, help="params profile (smoke, cpu, paper)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repo's)")


PARAMS_KEYS = ("profile", "cost", "prior.T", "data.max_pixels")  # what this stage reads (dvc.yaml declares them)


def run(args) -> int:
    if args.checkpoint is not None:
        return _profile_model_file(args)
    keys = PARAMS_KEYS + (() if args.scale else ("models.scale",))
    params = restrict(load_params(args.params, profile=args.profile), keys, "the profile stage")
    scale = args.scale or params.models.scale
    report = profile_models(
        scale=scale, backbones=args.backbones, T=params.prior.T, latency=args.latency,
        sizes=[tuple(s) for s in params.cost.sizes], warmup=params.cost.warmup, repeats=params.cost.repeats,
        device=args.device, fast=args.fast, latency_backbones=params.cost.latency_backbones,
    )
    report["params_profile"] = params.profile
    report = validated_json(CostsFile, report)  # the format of costs.json, which the report reads it with
    # timings differ from run to run: they go to the untracked run_info/ sidecar, not the tracked file
    write_tracked(args.out, *split_costs(report))
    print(f"wrote {args.out}" + (f" (timings: {run_info_path(args.out)})" if args.latency else ""))
    return 0


def _profile_model_file(args) -> int:
    if not args.checkpoint.is_file():
        raise MissingFileError(f"{args.checkpoint}: no such model file")
    params = restrict(load_params(args.params, profile=args.profile), ("profile", "cost", "data.max_pixels"),
                      "profile --checkpoint")
    report = profile_model_file(args.checkpoint, [tuple(s) for s in params.cost.sizes], args.latency,
                                params.cost.warmup, params.cost.repeats, pick_device(args.device))
    write_json(args.out, report)
    for row in report["sizes"]:
        timing = f", {row['latency']['median_ms']:.1f} ms" if "latency" in row else ""
        print(f"{args.checkpoint} at {row['size'][0]}x{row['size'][1]}: {row['params'] / 1e6:.2f} M params, "
              f"{row['macs'] / 1e9:.2f} GMACs, {row['flops'] / 1e9:.2f} GFLOPs{timing}")
    print(f"wrote {args.out}")
    return 0
