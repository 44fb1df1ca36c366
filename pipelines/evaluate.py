"""``blurdm-bench evaluate``: score a trained model on a folder of blurred / sharp pairs.

The command only: it reads the arguments and ``params.evaluate`` and calls
:func:`pipelines.evaluation.evaluator.evaluate_checkpoint`, the evaluation the study's stages run as well (protocol,
eval seeds and the output folder are described there; the score files in :mod:`pipelines.evaluation.score_files`,
inference in :mod:`models.inference`). Nothing imports this module but the command-line dispatch
(:mod:`pipelines.cli`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models.inference import pick_device
from models.names import METRIC_NAMES, SCORINGS
from pipelines.core.config import load_params
from pipelines.core.errors import UserError
from pipelines.core.param_rules import seed_argument
from pipelines.core.threads import apply_threads
from pipelines.evaluation.evaluator import evaluate_checkpoint
from pipelines.evaluation.score_files import NA


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model.pt of a training run (or its folder)")
    parser.add_argument("--data", default=None, help="test folder (any layout find_pairs reads)")
    parser.add_argument("--dataset", default=None,
                        help="dataset name: a key of params.data.test (its folder is used unless --data is given); "
                             "also the name written to the outputs (default: the folder name)")
    parser.add_argument("--out", required=True, help="output folder (scores.csv, summary.json, images/, crops/)")
    parser.add_argument("--oracle", action="store_true",
                        help="run a stage-1 model with the sharp-encoder prior SE(blur, sharp) (upper bound)")
    parser.add_argument("--realblur-mode", choices=tuple(SCORINGS), default=None,
                        help="RealBlur scoring: authors (no alignment) or official (ECC alignment, masked metrics); "
                             "default: authors for a dataset named realblur*, none otherwise")
    parser.add_argument("--eval-seeds", type=seed_argument, nargs="+", default=None,
                        help="noise seeds for a diffusion prior (default: params.evaluate.eval_seeds)")
    parser.add_argument("--max-images", type=int, default=None, help="first N pairs only (default: params)")
    parser.add_argument("--save-images", action=argparse.BooleanOptionalAction, default=None,
                        help="write the restored PNGs (default: params.evaluate.save_images)")
    parser.add_argument("--lpips", action=argparse.BooleanOptionalAction, default=None,
                        help="score LPIPS (default: params.evaluate.lpips; NA with the reason when weights are missing)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                        help="on CUDA, replay prior + backbone from CUDA graphs (--no-fast: eager; "
                             "default: params.evaluate.fast); the CPU always runs eager")
    parser.add_argument("--profile", default=None, help="params profile (smoke, cpu, paper)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repo's)")


def run(args) -> int:
    params = load_params(args.params, profile=args.profile)
    apply_threads(params.train.threads)  # cores this process may use, shared with parallel jobs (train.threads wins)
    if args.data is not None:
        root = Path(args.data)
    elif args.dataset is not None:
        if args.dataset not in params.data.test:
            raise UserError(f"--dataset {args.dataset!r} is not in params.data.test ({', '.join(params.data.test)}); "
                            "pass --data FOLDER")
        root = params.resolve_path(params.data.test[args.dataset])
    else:
        raise UserError("give the test folder with --data FOLDER or --dataset NAME")
    dataset = args.dataset or root.resolve().name
    summary = evaluate_checkpoint(
        params, args.checkpoint, root, args.out, dataset=dataset, oracle=args.oracle,
        realblur_mode=args.realblur_mode, eval_seeds=args.eval_seeds, max_images=args.max_images,
        lpips=args.lpips, save_images=args.save_images, device=pick_device(args.device), fast=args.fast)
    means = ", ".join(f"{m} {v['mean']:.4f}" if v["mean"] != NA else f"{m} NA"
                      for m, v in summary["metrics"].items() if m in METRIC_NAMES)
    print(f"{dataset}: {summary['n_images']} images: {means} -> {args.out}")
    return 0
