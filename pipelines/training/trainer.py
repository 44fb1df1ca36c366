"""The trainer: one training job from its start (or its ``last.pt``) to its outputs.

:func:`train` runs one :class:`~pipelines.training.job.TrainJob` on the params it may read; the
:class:`Trainer` follows BasicSR's model class: set up the model (:meth:`~Trainer.setup_model`, the stage's
parts: :mod:`pipelines.training.stages`) and the data (:meth:`~Trainer.setup_data`), :meth:`~Trainer.resume`,
then per step :meth:`~Trainer.feed_data` and :meth:`~Trainer.optimize_parameters` (ONE training step:
:func:`pipelines.training.step.accumulate` over the micro-batches of
:class:`~pipelines.training.objective.StageObjective`, then Adam and the cosine schedule),
:meth:`~Trainer.validation` every ``val_every`` steps, :meth:`~Trainer.save` (``last.pt``) every
``checkpoint_every``, and :meth:`~Trainer.finish`.

Every stage: Adam, cosine schedule ``lr -> lr_min`` over the stage's steps, random crops with flips
and 90-degree rotations (:mod:`pipelines.data.pairs`), global batch ``train.batch_size``; validation PSNR on a
held-out split of the TRAINING pairs (``split_train_val`` with the global ``seed``), never test data.

Outputs in ``--out``, each written atomically: ``last.pt`` (resume state: model, optimiser, scheduler,
RNG states, step, logs), ``model.pt`` (final weights + spec, see :mod:`models.deblur_model`),
``sample.png`` (blur | restored | sharp of one validation crop), ``curves.csv`` (loss and validation
PSNR per step, for ``dvc plots``: :mod:`pipelines.results.plots_data`), ``metrics.json`` (written last).
One writer per ``--out``: while a run writes it, the folder holds the lock file ``.train.lock``
(``flock``; released by the kernel even on SIGKILL), and a second run on the same folder stops
at once with an error naming it.

Exact resume: the data order, augmentation, diffusion noise and every other draw of step ``s`` are
pure functions of ``(seed, s, rank)`` (:mod:`pipelines.training.sampler`), so a run killed at any moment
(even SIGKILL) and restarted finishes with bit-identical weights and metrics on CPU. A NaN/inf loss stops the
run with a clear message; ``last.pt`` then still holds the last good state.

DDP: under ``torchrun`` (:mod:`pipelines.training.distributed`) the global batch is split across ranks as
evenly as possible; only rank 0 validates and writes files and MLflow records. Paper scale
(:mod:`pipelines.training.step`, :mod:`models.activation_checkpointing`): ``train.precision: bf16``
(autocast, float32 master weights and losses), ``train.micro_batch`` (gradient accumulation within a
rank's share), ``train.activation_checkpointing``, ``train.crop_size`` (a backbone's own crop).

Speed: ``train.threads`` torch threads (0 = the cores this process may use, divided between DVC
queue workers and local ranks: :mod:`pipelines.core.threads`); on the CPU
``train.channels_last`` stores weights and batches channels-last (measured 10-25 % faster for the
convolutional backbones at tiny scale, neutral for FFTformer / LoFormer). Progress: a tqdm bar with
loss, learning rate, it/s and ETA; MLflow (:mod:`pipelines.tracking`) gets the loss of every step.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from models.activation_checkpointing import enable_activation_checkpointing
from models.deblur_model import model_payload
from pipelines.core.checkpoint_files import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pipelines.core.errors import UserError
from pipelines.core.files import (
    FolderLock,
    remove_orphaned_temporaries,
    sha256_file,
    write_json,
)
from pipelines.core.params_view import restrict
from pipelines.data.image_files import write_png
from pipelines.data.pairs import (
    PairedImageDataset,
    check_pairs,
    find_pairs,
    split_train_val,
)
from pipelines.results.plots_data import CURVES_FILE, write_training_curves
from pipelines.tracking.lineage import source_tags, upstream_run_ids
from pipelines.tracking.runs import Tracker
from pipelines.training.distributed import Distributed, configure_torch
from pipelines.training.fingerprint import (
    changed_keys,
    fingerprint,
    train_params_keys,
    training_root,
)
from pipelines.training.job import TrainJob
from pipelines.training.objective import StageObjective, autocast_dtype
from pipelines.training.sampler import (
    TAG_NOISE,
    TAG_TORCH,
    EpochIndexed,
    StepBatchSampler,
    derive_seed,
)
from pipelines.training.stages import build_stage_model, stage_steps
from pipelines.training.step import StepPlan, accumulate
from pipelines.training.validation import sample_image, score_validation

TRAIN_STATE_FORMAT = "blurdm-bench/train-state"
TRAIN_LOCK = ".train.lock"  # in the --out folder while a run writes it (pipelines.core.files.FolderLock)
OUTPUT_FILES = ("last.pt", "model.pt", "metrics.json", "sample.png")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def dataset_name(root: Path) -> str:
    """The name of the dataset whose training folder is ``root`` (``data/synthetic/train`` -> ``synthetic``)."""
    return root.parent.name if root.name in ("train", "training") else root.name


def train(job: TrainJob, params, progress: bool = True) -> dict:
    """Run (or resume) one training job; return the final metrics (rank 0; others get ``{}``)."""
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
            # buffers too (the prior's latent statistics); the first update copies the model as it is then
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def final_model(self) -> nn.Module:
        """The model that is validated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def setup_data(self) -> None:
        """Training pairs, and validation as a held-out split of the TRAINING pairs (the same for every job)."""
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
        changed = changed_keys(ckpt.get("fingerprint", {}), self.fingerprint)
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
        job, params = self.job, self.params
        self.tracker = Tracker(params.mlflow_tracking_uri, enabled=job.mlflow and self.dist.is_main)
        self.describe = describe = job.describe()
        tags = {**describe, "scale": params.models.scale, "dataset": dataset_name(Path(self.root)),
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
        """ONE TRAINING STEP: the step's seeds, forward + backward of the stage's loss in micro-batches
        (:func:`pipelines.training.step.accumulate` -> :class:`~pipelines.training.objective.StageObjective`),
        then the update, unless the loss is not finite (the run stops; ``last.pt`` keeps the last good state)."""
        job, rank = self.job, self.dist.rank
        torch.manual_seed(derive_seed(job.seed, TAG_TORCH, step, rank))
        noise_gen = torch.Generator().manual_seed(derive_seed(job.seed, TAG_NOISE, step, rank))
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
