"""What a training job reads of the params, and its resume fingerprint.

:func:`train_params_keys` lists the params keys a job reads: its DVC stages declare them and the job's
code is handed a view of the params that refuses any other (:func:`pipelines.core.params_view.restrict`).
:func:`fingerprint` covers the same keys, except those that only lay the work out (:data:`LAYOUT_KEYS`):
a run resumes from ``last.pt`` only when its fingerprint is unchanged.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.core.errors import UserError
from pipelines.tracking.runs import flatten
from pipelines.training.job import TrainJob

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


def changed_keys(a: dict, b: dict) -> list[str]:
    """The dotted keys whose values differ between two fingerprints."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))

