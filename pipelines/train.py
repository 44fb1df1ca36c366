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
``--no-mlflow``, ``--no-progress``.

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

Every stage: Adam, cosine schedule ``lr -> lr_min`` over the stage's steps, random crops with flips
and 90-degree rotations (``pipelines.data.pairs``), global batch ``train.batch_size``; validation PSNR on a
held-out split of the TRAINING pairs (``split_train_val`` with the global ``seed``), never test data.

Outputs in ``--out``, each written atomically: ``last.pt`` (resume state: model, optimiser, scheduler,
RNG states, step, logs), ``model.pt`` (final weights + spec, see :mod:`models.deblur_model`),
``sample.png`` (blur | restored | sharp of one validation crop), ``curves.csv`` (loss and validation
PSNR per step, for ``dvc plots``: :mod:`pipelines.results.plots_data`), ``metrics.json`` (written last).
One writer per ``--out``: while a run writes it, the folder holds the lock file ``.train.lock``
(``flock``; released by the kernel even on SIGKILL), and a second run on the same folder stops
at once with an error naming it.

Exact resume: the data order, augmentation, diffusion noise and every other draw of step ``s`` are
pure functions of ``(seed, s, rank)``, so a run killed at any moment (even SIGKILL) and restarted
finishes with bit-identical weights and metrics on CPU. A NaN/inf loss stops the run with a clear
message; ``last.pt`` then still holds the last good state.

DDP: under ``torchrun`` (``WORLD_SIZE > 1``, any number of nodes: :mod:`pipelines.training.launch`) the job runs
with DistributedDataParallel (gloo on CPU, nccl on GPU, ``train.gpus > 0``); the global batch is split
across ranks as evenly as possible; only rank 0 validates and writes files and MLflow records.
Paper scale (:mod:`pipelines.training.step`, :mod:`models.activation_checkpointing`): ``train.precision: bf16``
(autocast, float32 master weights and losses), ``train.micro_batch`` (gradient accumulation within a
rank's share), ``train.activation_checkpointing``, ``train.crop_size`` (a backbone's own crop).

Speed: ``train.threads`` torch threads (0 = the cores this process may use, divided between DVC
queue workers and local ranks: :mod:`pipelines.core.threads`); on the CPU
``train.channels_last`` stores weights and batches channels-last (measured 10-25 % faster for the
convolutional backbones at tiny scale, neutral for FFTformer / LoFormer). Progress: a tqdm bar with
loss, learning rate, it/s and ETA; MLflow (:mod:`pipelines.tracking`) gets the loss of every step.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from models.names import DEFAULT_STAGE_COMBO as DEFAULT_VARIANT
from models.names import STAGE_COMBOS
from pipelines.cli import UserError
from pipelines.core.config import BACKBONE_NAMES, DIFFUSION_PRIORS, STAGE_NAMES
from pipelines.core.files import FolderLock

VARIANT_STAGES: dict[str, tuple[str, ...]] = {name: combo.stages for name, combo in STAGE_COMBOS.items()}
VARIANTS = tuple(VARIANT_STAGES)
STUDIES = ("table1", "ablation-prior", "ablation-stages", "t-sweep")
TRAIN_STATE_FORMAT = "blurdm-bench/train-state"
TRAIN_LOCK = ".train.lock"  # in the --out folder while a run writes it (pipelines.core.files.FolderLock)
SAMPLE_CROP = 128

# purpose tags mixed into the per-step seeds
_TAG_ORDER, _TAG_NOISE, _TAG_TORCH = 1, 2, 3


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class TrainJob:
    """One training job. Paths may be folders holding ``model.pt`` or the files themselves."""

    stage: str
    backbone: str
    out_dir: Path
    prior: str = "blurdm"
    T: int = 5
    variant: str = DEFAULT_VARIANT
    seed: int = 0
    stage1: Path | None = None
    stage2: Path | None = None
    data: Path | None = None  # training pairs root; default the folder of train_set
    train_set: str | None = None  # a name of params train_sets (None: the first)
    steps: int | None = None  # override of the stage's step count
    resume: bool = True
    # DVC keeps train outputs (persist: true) so a killed stage resumes; when params changed since,
    # the stale state is discarded and the job starts over instead of refusing.
    restart_if_changed: bool = False
    study: str = "table1"
    group: str | None = None
    dvc_stage: str | None = None
    mlflow: bool = True
    extra_tags: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.stage1 = Path(self.stage1) if self.stage1 is not None else None
        self.stage2 = Path(self.stage2) if self.stage2 is not None else None
        self.data = Path(self.data) if self.data is not None else None
        if self.stage not in STAGE_NAMES:
            raise UserError(f"unknown stage {self.stage!r}; allowed: {', '.join(STAGE_NAMES)}")
        if self.variant not in VARIANTS:
            raise UserError(f"unknown variant {self.variant!r}; allowed: {', '.join(VARIANTS)}")
        if self.stage != "baseline" and self.stage not in VARIANT_STAGES[self.variant]:
            raise UserError(f"variant {self.variant} has no {self.stage} (its stages: "
                            f"{', '.join(VARIANT_STAGES[self.variant])})")
        if self.backbone not in BACKBONE_NAMES:
            raise UserError(f"unknown backbone {self.backbone!r}; allowed: {', '.join(BACKBONE_NAMES)}")
        if self.prior not in DIFFUSION_PRIORS:
            raise UserError(f"unknown prior {self.prior!r}; allowed: {', '.join(DIFFUSION_PRIORS)}")
        from pipelines.core.config import MAX_T

        if isinstance(self.T, bool) or not isinstance(self.T, int) or not 1 <= self.T <= MAX_T:
            raise UserError(f"--T must be an integer >= 1 and <= {MAX_T}, got {self.T!r}")
        if self.steps is not None and self.steps < 0:
            raise UserError(f"--steps must be >= 0, got {self.steps}")
        if self.study not in STUDIES:
            raise UserError(f"unknown study {self.study!r}; allowed: {', '.join(STUDIES)}")

    @property
    def uses_prior(self) -> bool:
        return self.stage in ("stage2", "stage3")

    def describe(self) -> dict:
        """The job's identity (what MLflow tags and ``metrics.json`` record). ``variant`` is set for
        stage 3 only: stages 1 and 2 are shared by every variant that contains them."""
        return {"stage": self.stage, "backbone": self.backbone,
                "prior": self.prior if self.uses_prior else ("sharp_encoder" if self.stage == "stage1" else "none"),
                "T": self.T if self.uses_prior else None,
                "variant": self.variant if self.stage == "stage3" else None, "seed": self.seed}


# --------------------------------------------------------------------------------------------------
# steps, seeds, data order

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


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the non-negative integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class StepBatchSampler(Sampler):
    """Batches of ``(epoch, index)`` for steps ``start .. end-1``: a pure function of ``(seed, step)``.

    Sample position ``p = step * global_batch + j`` of an endless stream of epochs, each epoch a
    seeded permutation of the items; rank ``r`` of ``world_size`` takes its contiguous share of
    each global batch (:func:`pipelines.training.step.rank_share`: as even as possible, e.g. 20 over 8
    processes = 3,3,3,3,2,2,2,2). Resuming at any step therefore continues the exact same order.
    """

    def __init__(self, n_items: int, global_batch: int, seed: int, start: int, end: int,
                 rank: int = 0, world_size: int = 1):
        from pipelines.training.step import rank_share

        if n_items < 1:
            raise ValueError("StepBatchSampler: no training items")
        try:
            self.share = rank_share(global_batch, world_size, rank)
        except ValueError as err:
            raise UserError(str(err)) from None
        self.n, self.global_batch, self.seed = n_items, global_batch, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world_size
        self._cache: tuple[int, list[int]] | None = None

    def _perm(self, epoch: int) -> list[int]:
        if self._cache is None or self._cache[0] != epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, _TAG_ORDER, epoch))
            self._cache = (epoch, torch.randperm(self.n, generator=gen).tolist())
        return self._cache[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, index)`` items of global step ``step``."""
        offset, local = self.share
        first = step * self.global_batch + offset
        out = []
        for p in range(first, first + local):
            epoch, offset = divmod(p, self.n)
            out.append((epoch, self._perm(epoch)[offset]))
        return out

    def __iter__(self):
        for step in range(self.start, self.end):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


class EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: sets the dataset's epoch (its augmentation RNG) for that item."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


# --------------------------------------------------------------------------------------------------
# distributed / device set-up

@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, gpus: int) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = gpus > 0 and torch.cuda.is_available()
        if gpus > 0 and not torch.cuda.is_available():
            warnings.warn(f"train.gpus={gpus} but CUDA is not available: training on the CPU", stacklevel=2)
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        ctx = cls(rank, world, local_rank, device)
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            ctx.initialised = True
        return ctx

    def mean(self, value: torch.Tensor) -> float:
        """Mean of a scalar over all ranks, as a float (synchronises)."""
        if self.world_size > 1:
            import torch.distributed as dist

            value = value.detach().clone().float()
            dist.all_reduce(value)
            value = value / self.world_size
        return float(value)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def close(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialised = False


def configure_torch(train_cfg, dist: Distributed) -> int:
    """Threads (``train.threads``; 0 = the cores this process may use, shared between DVC queue workers
    and local ranks: :mod:`pipelines.core.threads`) and deterministic algorithms."""
    from pipelines.core.threads import apply_threads

    threads = apply_threads(train_cfg.threads).threads
    if dist.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return threads


# --------------------------------------------------------------------------------------------------
# models per stage

def _read_source(kind: str, path: Path | None, job: TrainJob, scale: str) -> tuple[Path, dict]:
    """Read the ``model.pt`` of an earlier stage and check it fits this job."""
    from models.deblur_model import model_file
    from pipelines.core.checkpoint_files import load_checkpoint
    from pipelines.core.files import sha256_file

    flag = "--stage1" if kind == "stage1" else "--stage2"
    if path is None:
        raise UserError(f"{job.stage} (variant {job.variant}) needs a {kind} checkpoint: pass {flag} DIR "
                        f"(the --out folder of a finished `blurdm-bench train --stage {kind}` run)")
    file = model_file(path)
    if not file.is_file():
        raise UserError(f"{job.stage} needs a finished {kind} checkpoint, but {file} does not exist: run "
                        f"`blurdm-bench train --stage {kind} --backbone {job.backbone} --out {path}` first")
    payload = load_checkpoint(file)
    spec = payload.get("spec") or {}
    if spec.get("backbone") != job.backbone or spec.get("scale") != scale:
        raise UserError(f"{file}: holds backbone {spec.get('backbone')!r} at scale {spec.get('scale')!r}, "
                        f"but this job trains {job.backbone!r} at scale {scale!r}")
    if kind == "stage1" and not spec.get("sharp_encoder"):
        raise UserError(f"{file}: not a stage-1 model (it has no sharp encoder; spec {spec})")
    if kind == "stage2":
        if spec.get("prior") is None:
            raise UserError(f"{file}: not a stage-2 model (it has no diffusion prior; spec {spec})")
        if (spec.get("prior"), spec.get("T")) != (job.prior, job.T):
            raise UserError(f"{file}: trained prior {spec.get('prior')} with T={spec.get('T')}, but this job asks "
                            f"for prior {job.prior} with T={job.T}")
    payload["_source"] = {"path": str(file.resolve()), "sha256": sha256_file(file)}
    return file, payload


def build_stage_model(job: TrainJob, params) -> tuple[nn.Module, list[nn.Module], dict]:
    """``(DeblurModel, frozen submodules, init record)`` for the job; fresh parts seeded by ``job.seed``."""
    from models.backbones import zero_init_residual_outputs
    from models.deblur_model import build_deblur_model, copy_parts

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
        file, payload = _read_source("stage1", job.stage1, job, scale)
        model = build_deblur_model({**diffusion, "sharp_encoder": True})
        copy_parts(model, payload, ("backbone", "sharp_encoder"), file)
        frozen = [model.backbone, model.sharp_encoder]
        for module in frozen:
            module.requires_grad_(False)
        return model, frozen, {"stage1": payload["_source"]}
    # stage3
    model = build(diffusion)
    init: dict = {}
    stage2_parent = None  # sha256 of the stage-1 model the stage-2 prior was trained against
    if job.variant in ("s1_s2_s3", "s1_s2"):
        file2, payload = _read_source("stage2", job.stage2, job, scale)
        copy_parts(model, payload, ("backbone", "prior"), file2)
        init["stage2"] = payload["_source"]
        stage2_parent = ((payload.get("meta") or {}).get("init_sha256") or {}).get("stage1")
    if job.variant == "s1_s3" or (job.stage1 is not None and job.variant != "s3_only"):
        file, payload = _read_source("stage1", job.stage1, job, scale)
        if stage2_parent is not None and stage2_parent != payload["_source"]["sha256"]:
            raise UserError(f"{file2} was trained from another stage-1 model than {file} (sha256 differs): "
                            "pass the matching --stage1, or leave it out")
        copy_parts(model, payload, ("backbone",), file)
        init["stage1"] = payload["_source"]
    return model, [], init


class StageObjective(nn.Module):
    """The training loss of a stage as a module (what DDP wraps): ``forward(blur, sharp, generator)``.

    ``kind="image"`` (stage1/stage3/baseline): :func:`pipelines.training.losses.image_loss` of the model's
    outputs. ``kind="latent"`` (stage2): Charbonnier between the diffusion prior's ``z_0`` and the
    frozen ``SE(blur, sharp)``. ``frozen`` submodules stay in eval mode whatever ``train()`` says.
    """

    def __init__(self, model: nn.Module, kind: str, eps: float = 1e-3, fft_weight: float = 0.1,
                 frozen: list[nn.Module] | None = None, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        if kind not in ("image", "latent"):
            raise ValueError(f"unknown objective kind {kind!r}")
        self.model, self.kind, self.eps, self.fft_weight = model, kind, eps, fft_weight
        self._frozen = list(frozen or [])
        self.autocast_dtype = autocast_dtype  # bf16: the forward under autocast, the loss in float32

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None):
        from pipelines.training.losses import image_loss, latent_loss
        from pipelines.training.step import autocast

        if self.autocast_dtype is not None:  # mixed precision: forward in bf16, loss in float32
            if self.kind == "latent":
                with torch.no_grad():  # the frozen target in float32
                    target = self.model.sharp_encoder(blur, sharp)
            with autocast(blur.device, self.autocast_dtype):
                if self.kind == "latent":
                    z0 = self.model.prior(blur, generator=generator, noise=noise)
                else:
                    outputs = self.model(blur, sharp, generator, noise)
            if self.kind == "latent":
                return latent_loss(z0.float(), target, self.eps)
            return image_loss([o.float() for o in outputs], sharp.float(), self.eps, self.fft_weight)
        if self.kind == "latent":
            with torch.no_grad():
                target = self.model.sharp_encoder(blur, sharp)
            return latent_loss(self.model.prior(blur, generator=generator, noise=noise), target, self.eps)
        return image_loss(self.model(blur, sharp, generator, noise), sharp, self.eps, self.fft_weight)


# --------------------------------------------------------------------------------------------------
# validation

@torch.no_grad()
def score_validation(model: nn.Module, dataset, device: torch.device, seed: int, latent: bool = False) -> dict:
    """Mean PSNR (8-bit RGB) over ``dataset`` with the evaluator's full-resolution inference
    (:func:`models.inference.restore_tensor`: padding, LoFormer tiles, per-image noise seed
    :func:`models.inference.image_seed`) and, with ``latent``, the stage-2 latent loss and
    :func:`latent_r2`, how much of the spread of the target ``SE(blur, sharp)`` the prior's ``z_0``
    explains (1 = exact, 0 = no better than the mean target, < 0 = worse)."""
    from models.inference import (
        image_seed,
        pad_to_multiple,
        restore_tensor,
        to_uint8_image,
    )
    from pipelines.training.losses import latent_loss
    from pipelines.evaluation.image_metrics import psnr

    was_training = model.training
    model.eval()
    psnrs, latents, z0s, targets = [], [], [], []
    try:
        for i in range(len(dataset)):
            item = dataset[i]
            blur = item["blur"][None].to(device)
            sharp = item["sharp"][None].to(device)
            gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
            out = restore_tensor(model, blur, sharp if model.prior_mode == "sharp_encoder" else None, gen)
            psnrs.append(psnr(to_uint8_image(out[0], model.value_range),
                              to_uint8_image(item["sharp"], model.value_range)))
            if latent:
                multiple = math.lcm(int(model.pad_multiple), 4)
                b, s = pad_to_multiple(blur, multiple)[0], pad_to_multiple(sharp, multiple)[0]
                gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
                z0, target = model.prior(b, generator=gen), model.sharp_encoder(b, s)
                latents.append(float(latent_loss(z0, target)))
                z0s.append(z0)
                targets.append(target)
    finally:
        model.train(was_training)
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"psnr": float(np.mean(finite)) if finite else None,
            "latent_loss": float(np.mean(latents)) if latents else None,
            "latent_r2": latent_r2(torch.cat(z0s), torch.cat(targets)) if len(z0s) > 1 else None,
            "images": len(psnrs)}


def latent_r2(prediction: torch.Tensor, target: torch.Tensor) -> float | None:
    """Coefficient of determination of ``prediction`` for ``target`` (both (N, D)), pooled over the D
    latent dimensions: ``1 - sum((pred - target)^2) / sum((target - mean_over_N(target))^2)``. The
    trivial predictor (the mean target) scores 0. ``None`` when the targets do not vary."""
    target = target.double()
    spread = float(((target - target.mean(dim=0, keepdim=True)) ** 2).sum())
    if spread <= 0:
        return None
    return 1.0 - float(((prediction.double() - target) ** 2).sum()) / spread


@torch.no_grad()
def sample_image(model: nn.Module, item: dict, device: torch.device, seed: int) -> np.ndarray:
    """``blur | restored | sharp`` of a centre crop of one validation item, as HxWx3 uint8."""
    from models.inference import image_seed, restore_tensor, to_uint8_image

    was_training = model.training
    model.eval()
    try:
        blur, sharp = item["blur"], item["sharp"]
        h, w = blur.shape[-2:]
        ch, cw = min(h, SAMPLE_CROP), min(w, SAMPLE_CROP)
        top, left = (h - ch) // 2, (w - cw) // 2
        blur, sharp = blur[:, top:top + ch, left:left + cw], sharp[:, top:top + ch, left:left + cw]
        gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
        out = restore_tensor(model, blur[None].to(device),
                             sharp[None].to(device) if model.prior_mode == "sharp_encoder" else None, gen)
        return np.concatenate([to_uint8_image(t, model.value_range) for t in (blur, out[0], sharp)], axis=1)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------------
# what a training job reads of the params

# train.* keys that lay a step out over processes and memory, or say how often to log: they change
# how a run is computed, not what (like gpus and threads), so a run resumes across them
LAYOUT_KEYS = ("threads", "log_every", "val_every", "checkpoint_every", "gpus", "seeds", "micro_batch",
               "activation_checkpointing", "nodes", "node_rank", "rdzv_endpoint", "rdzv_timeout")
TRAIN_DATA_KEYS = ("data.val_fraction", "data.augment", "data.crop_size", "data.num_workers", "data.cache_mb",
                   "data.max_pixels")
SPEED_ONLY_DATA_KEYS = ("data.num_workers", "data.cache_mb")  # change how fast, never what is trained on


def train_params_keys(backbone: str, train_set: str | None = None) -> tuple[str, ...]:
    """The params keys a training job of ``backbone`` on ``train_set`` reads (its DVC stages declare them; the
    prior and T come with the job): the resume fingerprint covers the same keys. Of its training set a job
    reads the folder only (the test list is the evaluation's); without a name, which set is first."""
    where = f"train_sets.{train_set}.train" if train_set else "train_sets"
    return ("profile", "seed", where, *TRAIN_DATA_KEYS, "models.scale", "models.zero_init_residual",
            "models.standardize_latent", "train",
            f"backbone_train.{backbone}", "evaluate.eval_seeds", "mlflow_tracking_uri")


def training_root(job: TrainJob, params) -> Path:
    """The training pairs of ``job``: ``job.data``, else the folder of its training set (default: the first)."""
    if job.data is not None:
        return job.data
    name = job.train_set or next(iter(params.train_sets))
    entry = params.train_sets.get(name)
    if entry is None:
        raise UserError(f"unknown training set {name!r}; allowed: {', '.join(params.train_sets)} (params train_sets)")
    return params.resolve_path(entry.train)


def fingerprint(job: TrainJob, params, steps: int, init: dict) -> dict:
    """What must not change between a run and its resumption: the job, its step count, the models it
    starts from and every params key it reads (:func:`train_params_keys`) except the layout keys
    (:data:`LAYOUT_KEYS`), where it records, and ``train`` as merged with ``backbone_train``."""
    train = params.train.model_dump(mode="json")
    for volatile in LAYOUT_KEYS:
        train.pop(volatile, None)
    # recorded only when set: old runs resume
    for key, default in (("precision", "fp32"), ("crop_size", None), ("stage2_lr", None), ("stage2_ema_decay", None)):
        if train.get(key) == default:
            train.pop(key, None)
    data = {"train": str(training_root(job, params))}
    data.update({key.split(".", 1)[1]: getattr(params.data, key.split(".", 1)[1]) for key in TRAIN_DATA_KEYS
                 if key not in SPEED_ONLY_DATA_KEYS})
    return {"job": {**job.describe(), "steps": steps}, "train": train, "data": data,
            "scale": params.models.scale, "zero_init_residual": params.models.zero_init_residual,
            **({"standardize_latent": True} if params.models.standardize_latent else {}),  # old runs resume
            "split_seed": params.seed, "eval_seeds": list(params.evaluate.eval_seeds),
            "init": {k: v["sha256"] for k, v in init.items()}}


def _diff_keys(a: dict, b: dict) -> list[str]:
    from pipelines.tracking import flatten

    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def _dataset_name(root: Path) -> str:
    return root.parent.name if root.name in ("train", "training") else root.name


def train(job: TrainJob, params, progress: bool = True) -> dict:
    """Run (or resume) one training job; return the final metrics (rank 0; others get ``{}``)."""
    from pipelines.core.params_view import restrict

    params = restrict(params, train_params_keys(job.backbone, job.train_set), f"training job {job.backbone} {job.stage}")
    params = params.for_backbone(job.backbone)  # per-backbone schedule (params backbone_train)
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    dist = Distributed.from_env(params.train.gpus)
    # one writer per run folder: a second `train` on the same --out gets a clear error (taken when the
    # trainer creates the folder, after the checks, so a refused job leaves nothing behind)
    lock = FolderLock(job.out_dir, TRAIN_LOCK, "training run") if dist.is_main else None
    try:
        return Trainer(job, params, dist, progress, lock).fit()
    finally:
        if lock is not None:
            lock.release()
        dist.close()
        torch.set_num_threads(saved[0])  # leave the caller's process as it was (tests run in-process)
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


OUTPUT_FILES = ("last.pt", "model.pt", "metrics.json", "sample.png")


class Trainer:
    """One training job, in the shape of BasicSR's model class: set up the model (:meth:`setup_model`)
    and the data (:meth:`setup_data`), :meth:`resume`, then per step :meth:`feed_data` and
    :meth:`optimize_parameters`, :meth:`validation` every ``val_every`` steps, :meth:`save` (``last.pt``)
    every ``checkpoint_every``, and :meth:`finish` (``model.pt``, sample, curves, ``metrics.json``).
    With a moving average of the weights (:meth:`TrainConfig.ema_decay_of`), :attr:`final_model` is the
    average: it is what is validated and saved. Rank 0 alone validates and writes; every rank steps."""

    def __init__(self, job: TrainJob, params, dist: Distributed, progress: bool = True, lock=None):
        self.job, self.params, self.cfg, self.dist, self.lock = job, params, params.train, dist, lock
        self.device, self.out, self.progress = dist.device, job.out_dir, progress
        self.last = self.out / "last.pt"
        self.threads = configure_torch(self.cfg, dist)
        self.total_steps, self.steps_rule = stage_steps(job, params)
        self.state = {"step": 0, "loss_log": [], "window": [], "val_log": [], "elapsed": 0.0, "train_seconds": 0.0,
                      "mlflow_run_id": None}
        self.resumed_from = self.saved_step = None
        self.setup_model()
        self.setup_data()
        self.fingerprint = fingerprint(job, params, self.total_steps, self.init)

    # ---- set-up
    def setup_model(self) -> None:
        from pipelines.training.step import StepPlan, autocast_dtype

        job, cfg = self.job, self.cfg
        self.model, frozen, self.init = build_stage_model(job, self.params)
        self.crop = cfg.crop_size or self.params.data.crop_size  # train.crop_size: a backbone's own crop
        self.crop_key = "train.crop_size" if cfg.crop_size else "data.crop_size"
        multiple = math.lcm(int(self.model.pad_multiple), 4)
        if self.crop % multiple:
            raise UserError(f"{self.crop_key}={self.crop} must be a multiple of {multiple} for {job.backbone} "
                            f"(its pad_multiple is {self.model.pad_multiple})")
        self.model.to(self.device)
        self.channels_last = cfg.channels_last and self.device.type == "cpu"  # faster for the CNNs on CPU
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.kind = "latent" if job.stage == "stage2" else "image"
        if cfg.activation_checkpointing:
            from models.activation_checkpointing import enable_activation_checkpointing

            enable_activation_checkpointing(self.model.backbone)
        self.plan = StepPlan(cfg.batch_size, self.dist.world_size, self.dist.rank, cfg.micro_batch)
        self.objective = StageObjective(self.model, self.kind, cfg.charbonnier_eps, cfg.fft_loss_weight, frozen,
                                        autocast_dtype=autocast_dtype(cfg.precision))
        self.objective.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr_of(job.stage))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(self.total_steps, 1),
                                                                    eta_min=cfg.lr_min)
        self.ema = None  # the weights' moving average: validated and saved in place of the raw weights
        decay = cfg.ema_decay_of(job.stage)
        if decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # buffers too (the prior's latent statistics); the first update copies the model as it is then
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def final_model(self) -> nn.Module:
        """The model that is validated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def setup_data(self) -> None:
        """Training pairs, and validation as a held-out split of the TRAINING pairs (the same for every job)."""
        from pipelines.data.pairs import (
            PairedImageDataset,
            check_pairs,
            find_pairs,
            split_train_val,
        )

        data, value_range = self.params.data, self.model.value_range
        self.root = training_root(self.job, self.params)
        pairs = find_pairs(self.root)
        check_pairs(pairs, self.crop, self.crop_key)  # every pair readable, same size, >= the crop: before step 1
        self.train_pairs, self.val_pairs = split_train_val(pairs, data.val_fraction, self.params.seed)
        if not self.train_pairs:
            raise UserError(f"{self.root}: no training pairs left after the validation split")
        cache = data.cache_mb * 2**20
        self.train_set = PairedImageDataset(self.train_pairs, crop_size=self.crop, augment=data.augment,
                                            value_range=value_range, seed=self.job.seed, cache_bytes=cache)
        self.val_set = (PairedImageDataset(self.val_pairs, crop_size=None, augment=False, value_range=value_range,
                                           seed=0, cache_bytes=cache) if self.val_pairs else None)
        seeds = self.params.evaluate.eval_seeds
        self.eval_seed = seeds[0] if seeds else 0

    LATENT_STATS_SAMPLES = 256

    @torch.no_grad()
    def standardize_prior(self) -> None:
        """Stage 2: standardise the prior's latent space (:meth:`DiffusionPrior.set_latent_stats`) to the
        frozen ``SE(blur, sharp)`` of up to :attr:`LATENT_STATS_SAMPLES` training crops, spread evenly over
        the training pairs (epoch-0 crops of this seed: the same on every rank). Called by :meth:`fit` on a fresh
        start only: a resumed run loads the statistics stored in ``last.pt`` with the rest of the model."""
        n = len(self.train_set)
        indices = list(range(0, n, max(1, n // self.LATENT_STATS_SAMPLES)))[:self.LATENT_STATS_SAMPLES]
        items = EpochIndexed(self.train_set)
        latents = []
        for start in range(0, len(indices), 32):
            batch = [items[(0, i)] for i in indices[start:start + 32]]
            blur = torch.stack([b["blur"] for b in batch]).to(self.device)
            sharp = torch.stack([b["sharp"] for b in batch]).to(self.device)
            latents.append(self.model.sharp_encoder(blur, sharp).float().cpu())
        self.model.prior.set_latent_stats(torch.cat(latents))

    def _clear_outputs(self) -> None:
        if self.dist.is_main:
            for name in OUTPUT_FILES:
                (self.out / name).unlink(missing_ok=True)
        self.dist.barrier()

    def resume(self) -> None:
        """Continue from ``last.pt`` when it was written by the same configuration (:func:`fingerprint`)."""
        from pipelines.core.checkpoint_files import load_checkpoint, set_rng_state
        from pipelines.core.files import remove_orphaned_temporaries

        job = self.job
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.lock is not None:
                self.lock.acquire()
            for name in OUTPUT_FILES:
                remove_orphaned_temporaries(self.out / name)  # left by a killed earlier session
        if not job.resume:
            self._clear_outputs()
        self.dist.barrier()
        if not (job.resume and self.last.is_file()):
            return
        ckpt = load_checkpoint(self.last)
        if ckpt.get("format") != TRAIN_STATE_FORMAT:
            raise UserError(f"{self.last}: not a training state file (format {ckpt.get('format')!r})")
        changed = _diff_keys(ckpt.get("fingerprint", {}), self.fingerprint)
        if changed and job.restart_if_changed:
            print(f"{self.last}: configuration changed ({', '.join(changed[:8])}); starting this job over", flush=True)
            self._clear_outputs()
            return
        if changed:
            raise UserError(f"{self.last}: was written by a different configuration (changed: {', '.join(changed[:8])}); "
                            "rerun with --no-resume to start over, or use another --out")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        self.state = {k: ckpt[k] for k in self.state}
        self.resumed_from = self.saved_step = self.state["step"]

    def start_tracking(self) -> None:
        """The MLflow run (rank 0 only): tags, the params the job read, a parent run per group."""
        from pipelines.tracking import Tracker, source_tags, upstream_run_ids

        job, params = self.job, self.params
        self.tracker = Tracker(params.mlflow_tracking_uri, enabled=job.mlflow and self.dist.is_main)
        self.describe = describe = job.describe()
        tags = {**describe, "scale": params.models.scale, "dataset": _dataset_name(Path(self.root)),
                **source_tags("pipelines/train.py"), "dvc_stage": job.dvc_stage or os.environ.get("DVC_STAGE"),
                "group": job.group or f"{job.study}/{job.backbone}/seed{job.seed}", "study": job.study,
                "profile": params.profile, "world_size": self.dist.world_size, "steps": self.total_steps,
                "steps_rule": self.steps_rule, **({"train_set": job.train_set} if job.train_set else {}),
                **job.extra_tags}
        run_name = "-".join(str(x) for x in (job.backbone, job.stage, describe["prior"],
                                             f"T{job.T}" if job.uses_prior else None, describe["variant"],
                                             f"seed{job.seed}") if x)
        job_params = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(job).items()
                      if k not in ("resume", "restart_if_changed", "mlflow", "extra_tags")}
        parent = {"group": tags["group"], "role": job.stage, "upstream": upstream_run_ids(self.init),  # nested runs
                  "tags": {k: tags[k] for k in ("study", "backbone", "seed", "scale", "profile", "dataset", "train_set") if k in tags}
                  | {k: v for k, v in tags.items() if k.startswith("mlflow.source.")}}
        resumed_run = self.state["mlflow_run_id"]
        read = {**self.fingerprint, "train": params.train.model_dump(mode="json")}  # the whole train block, layout keys too
        self.state["mlflow_run_id"] = self.tracker.start(job.study, run_name, tags, {"job": job_params, "params": read},
                                                         run_id=resumed_run, parent=parent)
        if self.state["mlflow_run_id"] != resumed_run:
            self.tracker.log_dataset(self.root, context="training")  # mlflow.data input: name, manifest sha256

    def loader(self):
        """The batches from the current step on (DDP wraps the objective when there are several ranks)."""
        self.wrapped: nn.Module = self.objective
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(self.objective, device_ids=[self.device.index]
                                                   if self.device.type == "cuda" else None)
        sampler = StepBatchSampler(len(self.train_set), self.cfg.batch_size, self.job.seed, self.state["step"],
                                   self.total_steps, self.dist.rank, self.dist.world_size)
        return torch.utils.data.DataLoader(EpochIndexed(self.train_set), batch_sampler=sampler,
                                           num_workers=self.params.data.num_workers,
                                           pin_memory=self.device.type == "cuda")

    # ---- one step
    def feed_data(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        blur = batch["blur"].to(self.device, non_blocking=True)
        sharp = batch["sharp"].to(self.device, non_blocking=True)
        if self.channels_last:
            blur = blur.contiguous(memory_format=torch.channels_last)
            sharp = sharp.contiguous(memory_format=torch.channels_last)
        return blur, sharp

    def optimize_parameters(self, step: int, blur: torch.Tensor, sharp: torch.Tensor) -> float:
        """Forward + backward in micro-batches (:mod:`pipelines.training.step`), then the update, unless the
        loss is not finite (the run stops; ``last.pt`` keeps the last good state)."""
        from pipelines.training.step import accumulate

        job, rank = self.job, self.dist.rank
        torch.manual_seed(derive_seed(job.seed, _TAG_TORCH, step, rank))
        noise_gen = torch.Generator().manual_seed(derive_seed(job.seed, _TAG_NOISE, step, rank))
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.dist.mean(accumulate(self.wrapped, self.objective, blur, sharp, noise_gen, self.plan))
        if not math.isfinite(loss):
            good = f"{self.last} (step {self.saved_step})" if self.saved_step is not None else "none written yet"
            raise TrainingDiverged(f"{job.backbone} {job.stage}: loss became {loss} at step {step + 1}; "
                                   f"stopped. Last good checkpoint: {good}. Try a lower train.lr.")
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def log_step(self, step: int, loss: float, rate: float, bar) -> None:
        self.state["window"] = (self.state["window"] + [loss])[-self.cfg.log_every:]
        self.tracker.log_metrics({"loss": loss}, step, flush=False)
        bar.update(1)
        if step % self.cfg.log_every == 0 or step == self.total_steps:
            mean_loss = float(np.mean(self.state["window"]))
            self.state["loss_log"].append([step, mean_loss])
            lr = self.scheduler.get_last_lr()[0]
            self.tracker.log_metrics({"loss_window": mean_loss, "lr": lr, "it_per_s": rate}, step)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")

    def validation(self, step: int) -> None:
        if self.dist.is_main and self.val_set is not None:
            result = score_validation(self.final_model, self.val_set, self.device, self.eval_seed,
                                      latent=self.kind == "latent")
            self.state["val_log"].append([step, result["psnr"], result["latent_loss"], result["latent_r2"]])
            self.tracker.log_metrics({"val_psnr": result["psnr"], "val_latent_loss": result["latent_loss"],
                                      "val_latent_r2": result["latent_r2"]}, step)
        self.dist.barrier()

    def save(self) -> None:
        """``last.pt``: everything a resumption needs (model, optimiser, scheduler, RNG states, logs)."""
        from pipelines.core.checkpoint_files import rng_state, save_checkpoint

        if self.dist.is_main:
            save_checkpoint(self.last, {
                "format": TRAIN_STATE_FORMAT, "version": 1, "fingerprint": self.fingerprint,
                "spec": dict(self.model.spec), "total_steps": self.total_steps,
                "model": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                "rng": rng_state(), **self.state})
        self.dist.barrier()

    # ---- the loop
    def fit(self) -> dict:
        """Resume, train to the stage's step count, validate, write the outputs; the final metrics."""
        from tqdm import tqdm

        self.resume()
        if self.resumed_from is None and self.kind == "latent" and self.params.models.standardize_latent:
            self.standardize_prior()  # a resumed run has the statistics in its state already
        self.start_tracking()
        state, cfg, total = self.state, self.cfg, self.total_steps
        loader = self.loader()
        bar = tqdm(total=total, initial=state["step"], desc=f"{self.job.backbone} {self.job.stage}", unit="it",
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True, file=sys.stderr)
        run_started = tick = time.perf_counter()
        steps_here, seconds_here = 0, 0.0
        try:
            for batch in loader:
                loss = self.optimize_parameters(state["step"], *self.feed_data(batch))
                state["step"] = step = state["step"] + 1
                dt = time.perf_counter() - tick  # data loading included; validation and checkpoints not
                steps_here, seconds_here = steps_here + 1, seconds_here + dt
                state["train_seconds"] += dt
                self.log_step(step, loss, steps_here / seconds_here, bar)
                if step % cfg.val_every == 0 and step != total:
                    self.validation(step)
                if step % cfg.checkpoint_every == 0 or step == total:
                    state["elapsed"] += time.perf_counter() - run_started
                    run_started = time.perf_counter()
                    self.save()
                    self.saved_step = step
                tick = time.perf_counter()
        except BaseException:
            self.tracker.end("FAILED" if not isinstance(sys.exc_info()[1], KeyboardInterrupt) else "KILLED")
            raise
        finally:
            bar.close()
        if not state["val_log"] or state["val_log"][-1][0] != total:
            self.validation(total)
        state["elapsed"] += time.perf_counter() - run_started
        metrics = self.finish() if self.dist.is_main else {}
        self.dist.barrier()
        return metrics

    # ---- outputs (rank 0)
    def finish(self) -> dict:
        """``model.pt``, ``sample.png``, the curves, the MLflow records and ``metrics.json`` (written last)."""
        from models.deblur_model import model_payload
        from pipelines.core.checkpoint_files import save_checkpoint
        from pipelines.data.image_files import write_png
        from pipelines.core.files import sha256_file, write_json
        from pipelines.results.plots_data import CURVES_FILE, write_training_curves

        out, tracker = self.out, self.tracker
        # sha256 of the source models only (no absolute paths: the same run gives the same bytes anywhere)
        meta = {**self.describe, "steps": self.total_steps, "steps_rule": self.steps_rule,
                "init_sha256": {k: v["sha256"] for k, v in self.init.items()}}
        model_file = save_checkpoint(out / "model.pt", model_payload(self.final_model, meta))
        model_sha = sha256_file(model_file)
        if self.val_set is not None:
            write_png(out / "sample.png", sample_image(self.final_model, self.val_set[0], self.device, self.eval_seed))
            tracker.log_artifact(out / "sample.png")
        tracker.log_model(model_file, model_sha, dict(self.model.spec), meta)  # model/model.pt + model/spec.json
        tracker.log_artifact(write_training_curves(out / CURVES_FILE, self.state["loss_log"], self.state["val_log"]))
        metrics = self.final_metrics(model_sha)
        tracker.log_metrics({k: metrics[k] for k in ("train_loss", "val_psnr", "val_latent_r2", "it_per_s")
                             if metrics[k] is not None}, self.total_steps)
        tracker.end("FINISHED")
        write_json(out / "metrics.json", metrics)
        return metrics

    def final_metrics(self, model_sha: str) -> dict:
        """``metrics.json``: what ran, how fast, the last losses and validation scores, the lineage."""
        state, cfg, params = self.state, self.cfg, self.params
        final_val = state["val_log"][-1] if state["val_log"] else [self.total_steps, None, None, None]
        # steps per second of training (forward, backward, update, data), over all sessions of the run
        it_per_s = state["step"] / state["train_seconds"] if state["train_seconds"] else None
        return {
            **self.describe, "scale": params.models.scale, "profile": params.profile, "study": self.job.study,
            "steps": self.total_steps, "steps_rule": self.steps_rule, "batch_size": cfg.batch_size,
            "world_size": self.dist.world_size, "device": str(self.device), "threads": self.threads,
            "batching": self.plan.describe(), "precision": cfg.precision, "crop_size": self.crop,
            "activation_checkpointing": cfg.activation_checkpointing,
            "train_loss": state["loss_log"][-1][1] if state["loss_log"] else None,
            "val_psnr": final_val[1], "val_latent_loss": final_val[2], "val_latent_r2": final_val[3],
            "train_pairs": len(self.train_pairs), "val_pairs": len(self.val_pairs),
            "loss_log": state["loss_log"], "val_log": state["val_log"],
            "it_per_s": it_per_s, "train_seconds": state["train_seconds"], "seconds": state["elapsed"],
            "resumed_from_step": self.resumed_from, "mlflow_run_id": state["mlflow_run_id"],
            "mlflow_experiment_id": self.tracker.experiment_id,
            "model": "model.pt", "model_sha256": model_sha, "init": self.init,
        }


# --------------------------------------------------------------------------------------------------
# CLI

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, choices=STAGE_NAMES)
    parser.add_argument("--backbone", required=True, choices=BACKBONE_NAMES)
    parser.add_argument("--prior", default=None, choices=DIFFUSION_PRIORS, help="diffusion prior (default: prior.name)")
    parser.add_argument("--T", type=int, default=None, help="diffusion steps (default: prior.T)")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=VARIANTS, help="stage combination")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: first of train.seeds)")
    parser.add_argument("--stage1", default=None, help="folder (or model.pt) of the finished stage-1 run")
    parser.add_argument("--stage2", default=None, help="folder (or model.pt) of the finished stage-2 run")
    parser.add_argument("--out", required=True, help="output folder (last.pt, model.pt, metrics.json)")
    parser.add_argument("--train-set", default=None,
                        help="a training set of params train_sets: its folder holds the training pairs (default: the first)")
    parser.add_argument("--data", default=None, help="training pairs root (default: the training set's folder)")
    parser.add_argument("--steps", type=int, default=None, help="override the stage's number of steps")
    parser.add_argument("--profile", default=None, help="params profile (smoke, cpu, paper)")
    parser.add_argument("--params", default=None, help="params file (default: params.yaml of the repo)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from OUT/last.pt if present (default: yes)")
    parser.add_argument("--restart-if-changed", action="store_true",
                        help="when OUT/last.pt was written by another configuration, start over instead of refusing "
                             "(what the DVC stages use)")
    parser.add_argument("--study", default="table1", choices=STUDIES, help="MLflow experiment")
    parser.add_argument("--group", default=None, help="MLflow group tag (default: STUDY/BACKBONE/seedN)")
    parser.add_argument("--dvc-stage", default=None, help="DVC stage name tag (default: $DVC_STAGE)")
    parser.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True, help="track in MLflow")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")


def run(args) -> int:
    from pipelines.core.config import load_params

    params = load_params(args.params, profile=args.profile)
    job = TrainJob(
        stage=args.stage, backbone=args.backbone, out_dir=Path(args.out),
        prior=args.prior or params.prior.name, T=args.T if args.T is not None else params.prior.T,
        variant=args.variant, seed=args.seed if args.seed is not None else params.train.seeds[0],
        stage1=args.stage1, stage2=args.stage2, data=args.data, train_set=args.train_set, steps=args.steps,
        resume=args.resume,
        restart_if_changed=args.restart_if_changed,
        study=args.study, group=args.group, dvc_stage=args.dvc_stage, mlflow=args.mlflow)
    metrics = train(job, params, progress=args.progress)
    if metrics:
        psnr = metrics["val_psnr"]
        print(f"{job.backbone} {job.stage}: {metrics['steps']} steps, train loss {metrics['train_loss']}, "
              f"val PSNR {psnr if psnr is None else round(psnr, 3)} dB, "
              f"{metrics['it_per_s'] or 0:.2f} it/s -> {job.out_dir / 'model.pt'}")
    return 0
