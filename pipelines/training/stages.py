"""What each stage trains: its model, the parts that stay frozen, the earlier stages it starts from, its steps.

* ``stage1``: backbone + Sharp Encoder, fresh; ``baseline``: the backbone alone, without fusion layers.
* ``stage2``: a diffusion prior next to the stage-1 backbone and Sharp Encoder, both copied from the
  stage-1 ``model.pt`` and frozen.
* ``stage3``: backbone + diffusion prior; by stage combo (``variant``): ``s1_s2_s3`` / ``s1_s2`` copy both from
  the stage-2 model (the backbone from ``--stage1`` when given), ``s1_s3`` the backbone from stage 1 (a fresh
  prior), ``s3_only`` neither.

Every earlier model is checked against the job (backbone, scale, prior and T) and recorded by sha256.
The loss each stage minimises is :class:`pipelines.training.objective.StageObjective`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.backbones import zero_init_residual_outputs
from models.deblur_model import ModelPayloadError, build_deblur_model, copy_parts
from pipelines.core.checkpoint_files import (
    CheckpointError,
    load_model_payload,
    model_file,
)
from pipelines.core.errors import UserError
from pipelines.core.files import sha256_file
from pipelines.training.job import TrainJob


def _copy_parts(model: nn.Module, payload: dict, parts: tuple[str, ...], file: Path) -> None:
    """:func:`models.deblur_model.copy_parts`, a part that does not fit being a :class:`CheckpointError`."""
    try:
        copy_parts(model, payload, parts, file)
    except ModelPayloadError as err:
        raise CheckpointError(str(err)) from None


def stage_steps(job: TrainJob, params) -> tuple[int, str]:
    """``(steps, rule)`` of the job: the stage's budget from params (or ``job.steps``)."""
    s = params.train.steps
    if job.steps is not None:
        return job.steps, "--steps override"
    if job.stage == "baseline":
        return s.stage1 + s.stage3, "steps.stage1 + steps.stage3 (same image-loss budget as stage 1 + stage 3)"
    if job.stage == "stage3" and job.variant == "s1_s2":
        return 0, "variant s1_s2 has no stage 3: stage-1 backbone + stage-2 prior, no training"
    return getattr(s, job.stage), f"steps.{job.stage}"


def read_stage_source(kind: str, path: Path | None, job: TrainJob, scale: str) -> tuple[Path, dict]:
    """Read the ``model.pt`` of an earlier stage and check it fits this job."""
    flag = "--stage1" if kind == "stage1" else "--stage2"
    if path is None:
        raise UserError(f"{job.stage} (variant {job.variant}) needs a {kind} checkpoint: pass {flag} DIR "
                        f"(the --out folder of a finished `blurdm-bench train --stage {kind}` run)")
    file = model_file(path)
    if not file.is_file():
        raise UserError(f"{job.stage} needs a finished {kind} checkpoint, but {file} does not exist: run "
                        f"`blurdm-bench train --stage {kind} --backbone {job.backbone} --out {path}` first")
    payload = load_model_payload(file)
    spec = payload["spec"]
    if spec.get("backbone") != job.backbone or spec.get("scale") != scale:
        raise UserError(f"{file}: holds backbone {spec.get('backbone')!r} at scale {spec.get('scale')!r}, "
                        f"but this job trains {job.backbone!r} at scale {scale!r}")
    check_stage(file, kind, payload, flag)
    if kind == "stage2" and (spec.get("prior"), spec.get("T")) != (job.prior, job.T):
        raise UserError(f"{file}: trained prior {spec.get('prior')} with T={spec.get('T')}, but this job asks "
                        f"for prior {job.prior} with T={job.T}")
    payload["_source"] = {"path": str(file.resolve()), "sha256": sha256_file(file)}
    return file, payload


# what the spec of each earlier stage's model holds: (a sharp encoder, a diffusion prior)
STAGE_PARTS = {"stage1": (True, False), "stage2": (True, True)}


def check_stage(file: Path, kind: str, payload: dict, flag: str) -> None:
    """Refuse a model of another stage as the ``kind`` (stage1 / stage2) source: the stage its training recorded
    (``meta.stage``) and the parts its spec holds must be those of ``kind`` (a stage-3 model also has a prior,
    a stage-2 model also a sharp encoder: either would silently start this job from the wrong lineage)."""
    spec, recorded = payload["spec"], payload.get("meta", {}).get("stage")
    parts = (bool(spec.get("sharp_encoder")), spec.get("prior") is not None)
    if (recorded is not None and recorded != kind) or parts != STAGE_PARTS[kind]:
        what = f"a {recorded} model" if recorded is not None else "a model"
        has = " and ".join(name for name, present in zip(("a sharp encoder", "a diffusion prior"), parts) if present)
        raise UserError(f"{file}: not a {kind} model: {what} with {has or 'neither a sharp encoder nor a prior'}; "
                        f"{flag} takes the --out folder of a finished `blurdm-bench train --stage {kind}` run")


def build_stage_model(job: TrainJob, params) -> tuple[nn.Module, list[nn.Module], dict]:
    """``(DeblurModel, frozen submodules, init record)`` for the job; fresh parts seeded by ``job.seed``."""
    scale = params.models.scale
    base = {"backbone": job.backbone, "scale": scale}
    torch.manual_seed(job.seed)

    def build(spec: dict):
        model = build_deblur_model(spec)
        if params.models.zero_init_residual:  # a backbone copied from an earlier stage overwrites this
            zero_init_residual_outputs(model.backbone)
        return model

    if job.stage == "baseline":
        return build({**base, "prior_mode": "none"}), [], {}
    if job.stage == "stage1":
        return build({**base, "prior_mode": "sharp_encoder"}), [], {}
    diffusion = {**base, "prior_mode": "diffusion", "prior": job.prior, "T": job.T}
    if job.stage == "stage2":
        file, payload = read_stage_source("stage1", job.stage1, job, scale)
        model = build_deblur_model({**diffusion, "sharp_encoder": True})
        _copy_parts(model, payload, ("backbone", "sharp_encoder"), file)
        frozen = [model.backbone, model.sharp_encoder]
        for module in frozen:
            module.requires_grad_(False)
        return model, frozen, {"stage1": payload["_source"]}
    # stage3
    model = build(diffusion)
    init: dict = {}
    stage2_parent = None  # sha256 of the stage-1 model the stage-2 prior was trained against
    if job.variant in ("s1_s2_s3", "s1_s2"):
        file2, payload = read_stage_source("stage2", job.stage2, job, scale)
        _copy_parts(model, payload, ("backbone", "prior"), file2)
        init["stage2"] = payload["_source"]
        stage2_parent = ((payload.get("meta") or {}).get("init_sha256") or {}).get("stage1")
    if job.variant == "s1_s3" or (job.stage1 is not None and job.variant != "s3_only"):
        file, payload = read_stage_source("stage1", job.stage1, job, scale)
        if stage2_parent is not None and stage2_parent != payload["_source"]["sha256"]:
            raise UserError(f"{file2} was trained from another stage-1 model than {file} (sha256 differs): "
                            "pass the matching --stage1, or leave it out")
        _copy_parts(model, payload, ("backbone",), file)
        init["stage1"] = payload["_source"]
    return model, [], init
