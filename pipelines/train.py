"""``blurdm-bench train``: one training job = stage x backbone x prior x T x variant x seed.

Usage::

    blurdm-bench train --stage stage1 --backbone mimo_unet --out runs/mimo/stage1
    blurdm-bench train --stage stage2 --backbone mimo_unet --prior blurdm --T 5 \\
        --stage1 runs/mimo/stage1 --out runs/mimo/stage2
    blurdm-bench train --stage stage3 --backbone mimo_unet --prior blurdm --T 5 \\
        --stage2 runs/mimo/stage2 --out runs/mimo/stage3
    blurdm-bench train --stage baseline --backbone mimo_unet --out runs/mimo/baseline
    torchrun --nproc_per_node 2 -m pipelines.cli train --stage stage1 ...      # DDP, same flags

Other flags: ``--variant {s1_s2_s3,s3_only,s1_s2,s1_s3}``, ``--seed N``, ``--profile NAME``,
``--params FILE``, ``--train-set NAME`` (a training set of params ``train_sets``, default the first: its
folder holds the training pairs), ``--data DIR`` (training pairs, overrides the set's folder), ``--steps N`` (override
the stage's step count), ``--resume/--no-resume`` (default: resume from ``OUT/last.pt``),
``--study NAME`` (MLflow experiment), ``--group NAME``, ``--dvc-stage NAME`` (default ``$DVC_STAGE``),
``--no-mlflow``, ``--no-progress``. The job's flags are the fields of
:class:`pipelines.training.job.TrainJob`.

Stages (shared/spec/blurdm-method.md):

* ``stage1``: backbone + Sharp Encoder trained together, prior ``SE(blur, sharp)``; loss
  :func:`pipelines.training.losses.image_loss` (Charbonnier on every output scale + 0.1 x Charbonnier of their
  2-D FFTs). ``steps.stage1`` steps.
* ``stage2``: needs ``--stage1`` (its ``model.pt``). Backbone and SE frozen (SE in eval mode); the
  chosen diffusion prior (Blur Encoder + estimators) is trained through the whole reverse chain with
  ``Charbonnier(z_0, SE(blur, sharp))``. Its ``model.pt`` holds backbone + SE + prior (prior mode
  ``diffusion``): that is already the ``s1_s2`` model, and with ``prior_mode="sharp_encoder"`` the oracle.
* ``stage3``: backbone + diffusion prior trained jointly with the stage-1 image loss, prior from the
  diffusion. Variants: ``s1_s2_s3`` (needs ``--stage2``; backbone from ``--stage1`` if given, else the
  stage-1 backbone inside the stage-2 model), ``s1_s3`` (needs ``--stage1``; untrained prior),
  ``s3_only`` (fresh backbone + fresh prior), ``s1_s2`` (needs ``--stage2``; 0 steps: the final model
  is the stage-1 backbone + stage-2 prior, validated and written like any other stage-3 output).
* ``baseline``: backbone without fusion layers or prior, stage-1 loss, ``steps.stage1 + steps.stage3``
  steps (the same image-loss budget as stage 1 + stage 3; recorded as ``steps_rule``).

The work is :func:`pipelines.training.trainer.train` (outputs, exact resume, DDP, paper scale: see there).
"""
from __future__ import annotations

import argparse

from pipelines.core.config import load_params
from pipelines.training.job import add_job_arguments, job_from_args
from pipelines.training.trainer import train


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument("--profile", default=None, help="params profile (smoke, cpu, paper)")
    parser.add_argument("--params", default=None, help="params file (default: params.yaml of the repo)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")


def run(args) -> int:
    params = load_params(args.params, profile=args.profile)
    job = job_from_args(args, params)
    metrics = train(job, params, progress=args.progress)
    if metrics:
        psnr = metrics["val_psnr"]
        print(f"{job.backbone} {job.stage}: {metrics['steps']} steps, train loss {metrics['train_loss']}, "
              f"val PSNR {psnr if psnr is None else round(psnr, 3)} dB, "
              f"{metrics['it_per_s'] or 0:.2f} it/s -> {job.out_dir / 'model.pt'}")
    return 0
