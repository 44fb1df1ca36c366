"""``blurdm-bench gpu-check`` (``make gpu-check``): does paper scale run on this GPU, how fast, in how much memory.

Training bursts of every backbone and stage at the paper profile's settings, then the eager and CUDA-graph
latency table, within a time budget; the work and the output format: :mod:`pipelines.training.gpu_bursts`.
On a machine without CUDA the command stops at once with ``needs CUDA`` (exit code 2), before it builds
anything.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from models.backbones import BACKBONES
from pipelines.core.config import STAGE_NAMES, load_params
from pipelines.core.errors import UserError
from pipelines.core.files import write_json
from pipelines.training.gpu_bursts import DEFAULT_OUT, require_cuda, run_check


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output JSON (default {DEFAULT_OUT}, untracked)")
    parser.add_argument("--profile", default="paper", help="params profile whose settings are checked (default paper)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repo's)")
    parser.add_argument("--backbones", nargs="+", default=None, help="default: models.backbones")
    parser.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=STAGE_NAMES)
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per burst (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    parser.add_argument("--processes", type=int, default=1,
                        help="time one GPU's share of an N-process run (default 1: the whole global batch)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="override train.precision")
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="override train.activation_checkpointing")
    parser.add_argument("--micro-batch", type=int, default=None, help="override train.micro_batch")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="also time inference eager and fast (default yes)")
    parser.add_argument("--latency-warmup", type=int, default=3)
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="stop starting new measurements after this many seconds (default 540)")


def run(args) -> int:
    device = require_cuda()  # first: on a CPU machine nothing else happens
    params = load_params(args.params, profile=args.profile)
    backbones = args.backbones or list(params.models.backbones)
    unknown = [b for b in backbones if b not in BACKBONES]
    if unknown:
        raise UserError(f"unknown backbone(s) {unknown}; allowed: {', '.join(BACKBONES)}")
    if (args.steps < 1 or args.warmup < 0 or args.processes < 1 or not math.isfinite(args.budget_s)
            or (args.micro_batch is not None and args.micro_batch < 1)):
        raise UserError("--steps >= 1, --warmup >= 0, --processes >= 1, --micro-batch >= 1 and a finite --budget-s "
                        "are needed")
    overrides = {"precision": args.precision, "activation_checkpointing": args.activation_checkpointing,
                 "micro_batch": args.micro_batch}
    report = run_check(params, device, backbones=backbones, stages=list(args.stages), steps=args.steps,
                       warmup=args.warmup, processes=args.processes, overrides=overrides, latency=args.latency,
                       latency_warmup=args.latency_warmup, latency_repeats=args.latency_repeats,
                       budget_s=args.budget_s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    bad = [f"{r['backbone']} {r['stage']}: {r['status']}" for r in report["train"] if r["status"] != "ok"]
    print(f"[gpu-check] {len(report['train']) - len(bad)} of {len(report['train'])} training bursts ran; "
          f"{report['seconds']:.0f} s -> {out}" + (f"; not ok: {', '.join(bad)}" if bad else ""))
    return 0 if not bad else 1
