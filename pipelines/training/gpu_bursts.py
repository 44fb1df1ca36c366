"""Does paper scale run on this GPU, how fast, in how much memory: the work behind ``blurdm-bench gpu-check``.

Two parts, within a time budget (default 540 s, so the whole check stays under 10 minutes):

1. **Training bursts**: for every backbone of ``models.backbones`` and every stage (``stage1``,
   ``stage2``, ``stage3``, ``baseline``) the paper-scale model is built fresh (no earlier stage is needed:
   stage 2 freezes a fresh backbone and Sharp Encoder, stage 3 starts from a fresh prior) and trained for
   ``--warmup`` untimed + ``--steps`` timed optimiser steps with exactly the trainer's step
   (:func:`pipelines.training.step.accumulate`, :class:`pipelines.training.objective.StageObjective`, Adam) at the
   backbone's paper settings: ``train.batch_size`` (global, the authors' 20), ``train.micro_batch``,
   ``train.precision``, ``train.activation_checkpointing`` and the crop (``train.crop_size`` or
   ``data.crop_size``) from ``backbone_train.<name>`` of the ``paper`` profile, on random images.
   ``--processes N`` measures what ONE GPU of an N-GPU run sees (its share of the global batch).
   Recorded: steps/s, seconds/step, peak memory allocated and reserved, the last loss; an out-of-memory
   error is recorded as ``status: "oom"`` and the check goes on.
2. **Latency table**: :func:`pipelines.evaluation.model_costs.measure_latency` (eager) and
   :func:`pipelines.evaluation.model_costs.measure_fast_latency` (CUDA graphs) for every backbone, baseline and
   +BlurDM, and the BlurDM module alone, at every size of the profile's ``cost.sizes`` (paper: 256x256
   and 720x1280), with ``--latency-warmup`` / ``--latency-repeats``.

Output: one JSON file (default ``metrics/gpu_check.json``, untracked), written atomically::

    {"format": "blurdm-bench/gpu-check", "version": 1, "created": ISO time, "seconds": total,
     "budget_s": 540, "profile": "paper", "scale": "paper",
     "environment": {"device", "device_name", "capability", "memory_gb", "torch_version", "cuda_version",
                     "cudnn_version", "threads", "python_version"},
     "train": [{"backbone", "stage", "status": "ok" | "oom" | "error" | "skipped", "error": str | null,
                "global_batch", "processes", "per_process", "micro_batch", "accumulation_steps", "crop",
                "precision", "activation_checkpointing", "warmup", "steps", "steps_per_s", "seconds_per_step",
                "images_per_s", "peak_memory_gb", "peak_reserved_gb", "loss"}],
     "latency": {"sizes", "warmup", "repeats", "status": "ok" | "skipped" | "error", "error",
                 "eager": {"results": [{"model", "variant", "size", "median_ms", "iqr_ms", ...}],
                           "overhead": [{"model", "size", "baseline_ms", "blurdm_ms", "added_ms", "latency_ratio"}]},
                 "fast": {"results": [...], "overhead": [...],
                          "speedup": [{"model", "variant", "size", "eager_ms", "fast_ms", "speedup"}]}}}

On a machine without CUDA the command stops at once with ``needs CUDA`` (exit code 2), before it
builds anything.
"""
from __future__ import annotations

import gc
import platform
import time
from datetime import datetime, timezone

import torch

from models.activation_checkpointing import enable_activation_checkpointing
from models.deblur_model import build_deblur_model
from pipelines.core.config import STAGE_NAMES
from pipelines.core.errors import UserError
from pipelines.evaluation.model_costs import measure_fast_latency, measure_latency
from pipelines.training.objective import StageObjective, autocast_dtype
from pipelines.training.step import StepPlan, accumulate

FORMAT = "blurdm-bench/gpu-check"
DEFAULT_OUT = "metrics/gpu_check.json"


def require_cuda() -> torch.device:
    """The CUDA device, or a :class:`UserError` saying the check needs one."""
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise UserError(f"gpu-check needs CUDA: no CUDA device is visible (torch {torch.__version__}, CUDA build: "
                        f"{built}). Run it on a GPU machine with a CUDA build of torch (README: GPU users)")
    return torch.device("cuda", torch.cuda.current_device())


def cuda_environment(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {"device": str(device), "device_name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gb": props.total_memory / 2**30, "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
            "threads": torch.get_num_threads(), "python_version": platform.python_version()}


def stage_model(backbone: str, stage: str, scale: str, prior: str = "blurdm", T: int = 5):
    """``(DeblurModel, frozen modules, objective kind)`` of ``stage``, freshly initialised."""
    base = {"backbone": backbone, "scale": scale}
    if stage == "baseline":
        return build_deblur_model({**base, "prior_mode": "none"}), [], "image"
    if stage == "stage1":
        return build_deblur_model({**base, "prior_mode": "sharp_encoder"}), [], "image"
    diffusion = {**base, "prior_mode": "diffusion", "prior": prior, "T": T}
    if stage == "stage2":
        model = build_deblur_model({**diffusion, "sharp_encoder": True})
        frozen = [model.backbone, model.sharp_encoder]
        for module in frozen:
            module.requires_grad_(False)
        return model, frozen, "latent"
    if stage == "stage3":
        return build_deblur_model(diffusion), [], "image"
    raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGE_NAMES)}")


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_burst(backbone: str, stage: str, params, device: torch.device, *, steps: int = 5, warmup: int = 2,
                processes: int = 1, overrides: dict | None = None, seed: int = 0) -> dict:
    """Time ``warmup + steps`` optimiser steps of ``stage`` at the backbone's paper settings (module doc)."""
    p = params.for_backbone(backbone)
    cfg = p.train.model_copy(update={k: v for k, v in (overrides or {}).items() if v is not None})
    crop = cfg.crop_size or p.data.crop_size
    plan = StepPlan(cfg.batch_size, processes, 0, cfg.micro_batch)
    row = {"backbone": backbone, "stage": stage, "status": "ok", "error": None, **plan.describe(), "crop": crop,
           "precision": cfg.precision, "activation_checkpointing": cfg.activation_checkpointing,
           "warmup": warmup, "steps": steps, "steps_per_s": None, "seconds_per_step": None, "images_per_s": None,
           "peak_memory_gb": None, "peak_reserved_gb": None, "loss": None}
    model = objective = optimizer = blur = sharp = None
    try:
        torch.manual_seed(seed)
        model, frozen, kind = stage_model(backbone, stage, p.models.scale, p.prior.name, p.prior.T)
        model.to(device)
        if cfg.activation_checkpointing:
            enable_activation_checkpointing(model.backbone)
        objective = StageObjective(model, kind, cfg.charbonnier_eps, cfg.fft_loss_weight, frozen,
                                   autocast_dtype=autocast_dtype(cfg.precision))
        objective.train()
        optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=cfg.lr_of(stage))
        share = plan.share
        offset = 0.5 if model.value_range == "half" else 0.0
        gen = torch.Generator(device=device).manual_seed(seed)
        blur = torch.rand(share, 3, crop, crop, device=device, generator=gen) - offset
        sharp = torch.rand(share, 3, crop, crop, device=device, generator=gen) - offset
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = None
        loss = None
        for i in range(warmup + steps):
            if i == warmup:
                torch.cuda.synchronize(device)
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = accumulate(objective, objective, blur, sharp, torch.Generator().manual_seed(seed + i), plan)
            optimizer.step()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        row.update(steps_per_s=steps / seconds, seconds_per_step=seconds / steps,
                   images_per_s=steps * share / seconds, loss=float(loss),
                   peak_memory_gb=torch.cuda.max_memory_allocated(device) / 2**30,
                   peak_reserved_gb=torch.cuda.max_memory_reserved(device) / 2**30)
    except torch.cuda.OutOfMemoryError as err:
        row.update(status="oom", error=str(err).splitlines()[0],
                   peak_memory_gb=torch.cuda.max_memory_allocated(device) / 2**30)
    except RuntimeError as err:
        row.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    finally:
        del model, objective, optimizer, blur, sharp
        _release()
    return row


def latency_table(backbones: list[str], params, device: torch.device, *, warmup: int, repeats: int,
                  deadline: float) -> dict:
    """Eager and fast latency per backbone (one backbone at a time, so the budget is checked in between)."""
    sizes = [tuple(s) for s in params.cost.sizes]
    out = {"sizes": [list(s) for s in sizes], "warmup": warmup, "repeats": repeats, "status": "ok", "error": None,
           "skipped_backbones": [],
           "eager": {"results": [], "overhead": []}, "fast": {"results": [], "overhead": [], "speedup": []}}
    scale, T = params.models.scale, params.prior.T
    groups = [[]] + [[b] for b in backbones]  # the BlurDM module alone first, then one backbone at a time
    for group in groups:
        if time.monotonic() > deadline:
            out["status"] = "partial: time budget"
            out["skipped_backbones"] += group
            continue
        try:
            eager = measure_latency(group, scale, T, sizes, warmup, repeats, device, progress=False)
            fast = measure_fast_latency(group, scale, T, sizes, warmup, repeats, device, progress=False, eager=eager)
        except torch.cuda.OutOfMemoryError as err:
            out["status"], out["error"] = "error", f"out of memory timing {group or 'the BlurDM module'}: {err}"
            _release()
            continue
        keep = (lambda r: True) if not group else (lambda r: r["model"] != "blurdm_module")
        out["eager"]["results"] += [r for r in eager["results"] if keep(r)]
        out["eager"]["overhead"] += eager["overhead"]
        out["fast"]["results"] += [r for r in fast["results"] if keep(r)]
        out["fast"]["overhead"] += fast["overhead"]
        out["fast"]["speedup"] += [r for r in fast["speedup"] if keep(r)]
        for key in ("timer", "what"):
            out["eager"].setdefault(key, eager.get(key))
        out["fast"].setdefault("what", fast.get("what"))
        _release()
    return out


def run_check(params, device: torch.device, *, backbones: list[str], stages: list[str], steps: int, warmup: int,
              processes: int, overrides: dict, latency: bool, latency_warmup: int, latency_repeats: int,
              budget_s: float, log=print) -> dict:
    started = time.monotonic()
    deadline = started + budget_s
    report = {"format": FORMAT, "version": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget_s": budget_s, "profile": params.profile, "scale": params.models.scale,
              "environment": cuda_environment(device),
              "overrides": {k: v for k, v in overrides.items() if v is not None},
              "train": [], "latency": None}
    for backbone in backbones:
        for stage in stages:
            if time.monotonic() > deadline:
                report["train"].append({"backbone": backbone, "stage": stage, "status": "skipped",
                                        "error": "time budget used up"})
                continue
            row = train_burst(backbone, stage, params, device, steps=steps, warmup=warmup, processes=processes,
                              overrides=overrides)
            report["train"].append(row)
            speed = f"{row['steps_per_s']:.2f} steps/s" if row["steps_per_s"] else row["status"]
            mem = f"{row['peak_memory_gb']:.1f} GB" if row["peak_memory_gb"] is not None else "-"
            log(f"[gpu-check] {backbone:15s} {stage:8s} batch {row.get('global_batch')} micro {row.get('micro_batch')} "
                f"{row.get('precision')} ckpt={row.get('activation_checkpointing')}: {speed}, peak {mem}")
    if latency:
        report["latency"] = latency_table(backbones, params, device, warmup=latency_warmup, repeats=latency_repeats,
                                          deadline=deadline)
        for row in report["latency"]["fast"]["speedup"]:
            log(f"[gpu-check] latency {row['model']:15s} {row['variant']!s:8s} {row['size'][0]}x{row['size'][1]}: "
                f"eager {row['eager_ms']:.2f} ms, fast {row['fast_ms']:.2f} ms")
    report["seconds"] = time.monotonic() - started
    return report
