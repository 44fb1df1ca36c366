"""The study's training stages: every run a DVC training stage trains, for every training seed, in one process.

``blurdm-bench study train`` (:mod:`pipelines.study`) calls :func:`train_action`; it loops over the training
seeds of the active profile (no per-seed interpreter start-up) and trains each run with
:func:`pipelines.training.trainer.train`, into the layout of :mod:`pipelines.core.layout`, each job under
``torchrun`` when it needs several GPUs or machines (:func:`torchrun_argv`). Actions::

    study train  --study table1 --train-set S --backbone B --stage {stage1,stage2,stage3,baseline}
    study train  --study ablation-prior  --prior {ddpm,rddm}           # stage2 + stage3 on models.ablation_backbone
    study train  --study ablation-stages --variant {s3_only,s1_s2,s1_s3}
    study train  --study t-sweep --T N                                  # stage2 + stage3 with T = N
    study train  --study ablation-base                                  # stages 1-3 + baseline of the ablation
                                                                        # backbone when it is not in Table 1

Table 1's models of training set S train on its folder; the ablations train on ``ablations.train_set``, from
the Table-1 stage-1 (and stage-2) runs of the ablation backbone.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from models.names import DEFAULT_STAGE_COMBO
from pipelines.core.config import DIFFUSION_PRIORS, STAGE_COMBO_NAMES, Params
from pipelines.core.errors import InvalidInputError, UserError
from pipelines.core.files import write_bytes
from pipelines.core.layout import curves_path, t_key, table1_key, train_dir
from pipelines.core.threads import WORKERS_ENV, parallel_workers, plan_threads
from pipelines.results.plots_data import CURVES_FILE
from pipelines.tracking.runs import Tracker
from pipelines.training.job import TrainJob, job_argv
from pipelines.training.launch import Launch, resolve_launch, torchrun_prefix
from pipelines.training.trainer import train


class TrainingFailedError(UserError):
    """A training seed run in its own process failed (its own message was printed by that process)."""


def _publish_curves(out: Path) -> None:
    if (out / CURVES_FILE).is_file():
        write_bytes(curves_path(out), (out / CURVES_FILE).read_bytes())


def _train(params: Params, *, study: str, backbone: str, stage: str, seed: int, out: Path, train_set: str,
           prior: str | None = None, T: int | None = None, variant: str = DEFAULT_STAGE_COMBO,
           stage1: Path | None = None, stage2: Path | None = None, group: str, dvc_stage: str | None,
           progress: bool = True, source: tuple[str | None, str | None] = (None, None)) -> dict:
    uses_prior = stage in ("stage2", "stage3")  # stage 1 and the baseline read nothing of `prior`
    prior = prior or (params.prior.name if uses_prior else TrainJob.prior)
    T = T if T is not None else (params.prior.T if uses_prior else TrainJob.T)
    job = TrainJob(stage=stage, backbone=backbone, out_dir=out, prior=prior, T=T, variant=variant, seed=seed,
                   stage1=str(stage1) if stage1 else None, stage2=str(stage2) if stage2 else None,
                   data=None, train_set=train_set, steps=None, resume=True, restart_if_changed=True, study=study,
                   group=group, dvc_stage=dvc_stage, mlflow=True)
    print(f"[study] {study}: {backbone} on {train_set} {stage} prior={job.prior} T={job.T} variant={variant} "
          f"seed={seed} -> {out}", flush=True)
    launch = resolve_launch(params.for_backbone(backbone).train)  # nodes / node rank: params or $SLURM_*
    if launch.needs_torchrun and "WORLD_SIZE" not in os.environ:
        # several GPUs and/or machines: the same job under torchrun (DDP); rank 0 writes metrics.json
        argv = torchrun_argv(job, launch.procs_per_node, *source, progress=progress, launch=launch)
        subprocess.run(argv, check=True)
        if launch.node_rank != 0:
            return {}  # node 0 wrote the outputs (runs/ is on a filesystem every node shares)
        _publish_curves(out)
        return json.loads((out / "metrics.json").read_text())
    metrics = train(job, params, progress=progress)
    _publish_curves(out)  # for dvc plots
    return metrics


def torchrun_argv(job: TrainJob, gpus: int, params_file: str | None, profile: str | None, progress: bool = True,
                  launch: Launch | None = None) -> list[str]:
    """``torchrun --nproc_per_node GPUS -m pipelines.cli train ...`` for ``job`` (an argv list: no shell): the
    job's own options (:func:`pipelines.training.job.job_argv`) and the params file and profile; ``launch``
    (:class:`pipelines.training.launch.Launch`) adds the nodes, node rank and rendezvous."""
    launch = launch or Launch(procs_per_node=gpus)
    argv = [*torchrun_prefix(launch), "-m", "pipelines.cli", "train", *job_argv(job)]
    for flag, value in (("--params", params_file), ("--profile", profile)):
        if value is not None:
            argv += [flag, str(value)]
    if not progress:
        argv.append("--no-progress")
    return argv


def _train_base_run(params: Params, train_set: str, backbone: str, stage: str, seed: int, common: dict) -> None:
    """One run of the Table-1 layout (``runs/table1/<train_set>/<backbone>/<stage>/seed<k>``), from the earlier
    stages' runs of the same seed."""
    key = table1_key(train_set, backbone)
    prev = {"stage2": dict(stage1=train_dir("table1", key, "stage1", seed)),
            "stage3": dict(stage1=train_dir("table1", key, "stage1", seed),
                           stage2=train_dir("table1", key, "stage2", seed))}.get(stage, {})
    _train(params, study="table1", backbone=backbone, stage=stage, out=train_dir("table1", key, stage, seed),
           group=f"table1/{key}/seed{seed}", **prev, **common)


def _train_table1(params: Params, args, seed: int, common: dict) -> None:
    if not args.backbone or not args.stage or not args.train_set:
        raise InvalidInputError("study train --study table1 needs --train-set, --backbone and --stage")
    _train_base_run(params, args.train_set, args.backbone, args.stage, seed, common)


def _train_ablation_base(params: Params, seed: int, common: dict) -> None:
    """The ablation backbone's own runs on the ablations' training set when it is not a Table-1 backbone
    (``ablations.extra_base``, the paper profile): stage 1, the baseline, stage 2 and stage 3, in the Table-1
    layout, so every ablation finds them where it finds Table-1 runs."""
    if not params.ablations.extra_base:
        raise InvalidInputError(f"study train --study ablation-base: {params.models.ablation_backbone} is a Table-1 "
                                f"backbone (ablations.extra_base is []): its Table-1 runs are the ablations' base")
    for stage in ("stage1", "baseline", "stage2", "stage3"):
        _train_base_run(params, params.ablations.train_set, params.models.ablation_backbone, stage, seed, common)


def _train_ablation(params: Params, args, seed: int, common: dict) -> None:
    """One training seed of an ablation: stage 2 and / or 3 of the ablation backbone, from the Table-1 runs of
    the ablations' training set."""
    bb = params.models.ablation_backbone
    base = table1_key(params.ablations.train_set, bb)
    s1 = train_dir("table1", base, "stage1", seed)
    common = dict(common, backbone=bb)
    if args.study == "ablation-prior":
        prior = _required(args.prior, "--prior", DIFFUSION_PRIORS)
        s2 = train_dir("ablation-prior", prior, "stage2", seed)
        group = f"ablation-prior/{prior}/seed{seed}"
        _train(params, study="ablation-prior", stage="stage2", prior=prior, stage1=s1, out=s2, group=group, **common)
        _train(params, study="ablation-prior", stage="stage3", prior=prior, stage1=s1, stage2=s2,
               out=train_dir("ablation-prior", prior, "stage3", seed), group=group, **common)
    elif args.study == "ablation-stages":
        variant = _required(args.variant, "--variant", STAGE_COMBO_NAMES)
        s2 = train_dir("table1", base, "stage2", seed)
        links = {"s3_only": {}, "s1_s3": dict(stage1=s1), "s1_s2": dict(stage1=s1, stage2=s2),
                 "s1_s2_s3": dict(stage1=s1, stage2=s2)}[variant]
        _train(params, study="ablation-stages", stage="stage3", variant=variant,
               out=train_dir("ablation-stages", variant, "stage3", seed),
               group=f"ablation-stages/{variant}/seed{seed}", **links, **common)
    elif args.study == "t-sweep":
        if args.T is None or args.T < 1:
            raise InvalidInputError("study train --study t-sweep needs --T >= 1")
        s2 = train_dir("t-sweep", t_key(args.T), "stage2", seed)
        group = f"t-sweep/{t_key(args.T)}/seed{seed}"
        _train(params, study="t-sweep", stage="stage2", T=args.T, stage1=s1, out=s2, group=group, **common)
        _train(params, study="t-sweep", stage="stage3", T=args.T, stage1=s1, stage2=s2,
               out=train_dir("t-sweep", t_key(args.T), "stage3", seed), group=group, **common)
    else:
        raise InvalidInputError(f"unknown study {args.study!r}")


def seed_workers(params: Params, backbone: str, n_seeds: int) -> int:
    """How many training seeds of a stage run side by side, each in its own process: on a CPU-only, one-process
    layout with at least 2 cores for this experiment, every seed at once (up to the cores + 1), each process with
    its share of the cores; else 1 (the seeds run one after the other in this process). Measured on 2 cores: the
    tiny models train 1.3x faster in total as two 1-thread processes than as one 2-thread process (README
    "Method notes")."""
    train = params.for_backbone(backbone).train
    if n_seeds < 2 or train.gpus > 0 or resolve_launch(train).needs_torchrun or "WORLD_SIZE" in os.environ:
        return 1
    cores = plan_threads(train.threads).threads  # the cores this experiment may use
    return min(n_seeds, cores + 1) if cores >= 2 else 1


def _die_with_parent() -> None:
    """In a seed's process: end when the stage's process ends (a killed stage leaves no orphan training)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: a killed stage may leave its seeds' processes to finish (they resume or restart anyway)


def _train_seeds_in_parallel(args, seeds: list[int], workers: int, uri: str | None) -> None:
    """Every seed in its own ``blurdm-bench study train ... --seed K`` process, ``workers`` at a time, each told
    how many run beside it ($BLURDM_WORKERS, so it sizes its threads to its share); fails if any seed failed."""
    base = [sys.executable, "-m", "pipelines.cli", "study", "train", "--study", args.study]
    for flag, value in (("--train-set", args.train_set), ("--backbone", args.backbone), ("--stage", args.stage),
                        ("--prior", args.prior), ("--variant", args.variant), ("--T", args.T),
                        ("--profile", args.profile), ("--params", args.params), ("--dvc-stage", args.dvc_stage)):
        if value is not None:
            base += [flag, str(value)]
    if not args.progress:
        base.append("--no-progress")
    # the tracking store and the study's experiment made once, here: the seeds' processes would otherwise race to
    # create the tables of a fresh store (and the experiment) at the same moment
    Tracker(uri).client_experiment("table1" if args.study == "ablation-base" else args.study)
    outer, _ = parallel_workers()
    env = {**os.environ, WORKERS_ENV: str(outer * workers)}
    print(f"[study] {len(seeds)} seeds, {workers} side by side ({WORKERS_ENV}={env[WORKERS_ENV]})", flush=True)
    pending, running, failed = list(seeds), {}, []
    while pending or running:
        while pending and len(running) < workers:
            seed = pending.pop(0)
            running[seed] = subprocess.Popen([*base, "--seed", str(seed)], env=env, preexec_fn=_die_with_parent)
        done = [s for s, proc in running.items() if proc.poll() is not None]
        for seed in done:
            if running.pop(seed).returncode != 0:
                failed.append(seed)
        if not done:
            time.sleep(0.5)
    if failed:
        raise TrainingFailedError(f"study train --study {args.study}: training seed(s) {failed} failed (their "
                                  f"messages are above); the other seeds finished and are kept")


def train_action(params: Params, args) -> None:
    table1 = args.study == "table1"
    train_set = args.train_set if table1 else params.ablations.train_set  # the ablations train on theirs
    backbone = args.backbone if table1 and args.backbone else params.models.ablation_backbone
    seeds = params.seeds_for(backbone)
    if getattr(args, "seed", None) is not None:
        if args.seed not in seeds:
            raise InvalidInputError(f"--seed {args.seed}: not a training seed of {backbone} ({seeds})")
        seeds = [args.seed]
    workers = seed_workers(params, backbone, len(seeds))
    if workers > 1:
        _train_seeds_in_parallel(args, seeds, workers, params.mlflow_tracking_uri)
        return
    for seed in seeds:
        common = dict(seed=seed, train_set=train_set, dvc_stage=args.dvc_stage, progress=args.progress,
                      source=(args.params, args.profile))
        if table1:
            _train_table1(params, args, seed, common)
        elif args.study == "ablation-base":
            _train_ablation_base(params, seed, common)
        else:
            _train_ablation(params, args, seed, common)


def _required(value, flag: str, allowed):
    if value not in allowed:
        raise InvalidInputError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    return value
