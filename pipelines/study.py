"""``blurdm-bench study``: the DVC-facing drivers of the whole study, and the ONE home of its layout.

Each DVC stage runs one ``study`` action: it loops over the training seeds of the active profile
in one process (no per-seed interpreter start-up) and calls the same functions as
``blurdm-bench train`` / ``evaluate``. Runs land in a fixed layout (:func:`train_dir`,
:func:`eval_dir`), which the tables stage (:mod:`pipelines.tables`) reads back.

Actions::

    study train  --study table1 --train-set S --backbone B --stage {stage1,stage2,stage3,baseline}
    study train  --study ablation-prior  --prior {ddpm,rddm}           # stage2 + stage3 on models.ablation_backbone
    study train  --study ablation-stages --variant {s3_only,s1_s2,s1_s3}
    study train  --study t-sweep --T N                                  # stage2 + stage3 with T = N
    study evaluate --study table1 --train-set S --backbone B            # baseline and +BlurDM on S's test sets
    study evaluate --study ablations                                    # oracle, priors, stage variants, T sweep

Table 1 has a training-set dimension (params ``train_sets``): the models of training set S train on its
folder and are scored on its test sets only; the ablations train on ``ablations.train_set`` (the first
training set unless set) and are scored on its test sets. A RealBlur test set is scored both ways
(:data:`models.names.SCORINGS`), each a column of its own (:func:`models.names.column_key`).

Layout (``runs/`` and ``eval/`` at the repo root)::

    runs/table1/<train_set>/<backbone>/<stage>/seed<k>/    model.pt, last.pt, metrics.json, sample.png
    runs/ablation-prior/<prior>/<stage>/seed<k>/           stage1 reused from table1/<ablations.train_set>/<ablation_backbone>
    runs/ablation-stages/<variant>/stage3/seed<k>/
    runs/t-sweep/T<N>/<stage>/seed<k>/
    plots/training/<study>/<key>/<stage>/seed<k>.csv       the run's curves.csv, for dvc plots
    eval/table1/<train_set>/<backbone>/<column>/<method>/seed<k>/   scores.csv, summary.json, crops/
    eval/ablations/<column>/<variant>/seed<k>/

(``<column>``: the test set's name, ``<name>-<scoring>`` for a RealBlur set.) The BlurDM / T = prior.T /
s1_s2_s3 run of the ablation backbone is the Table-1 run of the ablations' training set: the ablations reuse
it rather than training it twice.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from models.names import column_key, scorings
from pipelines.core.config import (
    BACKBONE_NAMES,
    DIFFUSION_PRIORS,
    STAGE_COMBO_NAMES,
    Params,
    load_params,
    repo_root,
)

TABLE1_METHODS = ("baseline", "blurdm")


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------
def runs_root() -> Path:
    return repo_root() / "runs"


def eval_root() -> Path:
    return repo_root() / "eval"


def train_dir(study: str, key: str, stage: str, seed: int) -> Path:
    return runs_root() / study / key / stage / f"seed{seed}"


def table1_key(train_set: str, backbone: str) -> str:
    """Where the Table-1 runs of ``backbone`` on ``train_set`` live under ``runs/table1/`` and ``eval/table1/``."""
    return f"{train_set}/{backbone}"


def table1_stage(family: str, train_set: str, backbone: str) -> str:
    """The DVC stage of a Table-1 family (``train_stage1``, ``evaluate_table1``...) for one training set and
    backbone: dvc.yaml's ``matrix`` names it ``<family>@<train_set>-<backbone>``."""
    return f"{family}@{train_set}-{backbone}"


def scored_columns(params: Params, train_set: str) -> list[tuple[str, str | None]]:
    """``(test set, scoring)`` of every column the models of ``train_set`` are scored on, in order."""
    return [(dataset, scoring) for dataset in params.train_sets[train_set].test for scoring in scorings(dataset)]


def eval_dir(study: str, *parts: str, seed: int) -> Path:
    return eval_root().joinpath(study, *parts, f"seed{seed}")


def curves_path(run_dir: Path) -> Path:
    """``plots/training/<study>/<key>/<stage>/seed<k>.csv``: the training curves of the run in ``run_dir``
    (a :func:`train_dir`), where the ``plots:`` of the training stages in dvc.yaml find them."""
    rel = Path(run_dir).resolve().relative_to(runs_root().resolve())
    return repo_root() / "plots" / "training" / rel.parent / f"{rel.name}.csv"


def _publish_curves(out: Path) -> None:
    from pipelines.core.files import write_bytes
    from pipelines.results.plots_data import CURVES_FILE

    if (out / CURVES_FILE).is_file():
        write_bytes(curves_path(out), (out / CURVES_FILE).read_bytes())


def t_key(T: int) -> str:
    return f"T{T}"


def ablation_variants(params: Params) -> dict[str, dict]:
    """Every ablation model: variant name -> how to find its final model and what it is."""
    key = table1_key(params.ablations.train_set, params.models.ablation_backbone)
    T = params.prior.T
    out: dict[str, dict] = {
        "none": dict(study="table1", key=key, stage="baseline", kind="prior", oracle=False),
        "oracle": dict(study="table1", key=key, stage="stage1", kind="both", oracle=True),
        "blurdm": dict(study="table1", key=key, stage="stage3", kind="both", oracle=False, T=T),
    }
    for prior in params.ablations.priors:
        out[prior] = dict(study="ablation-prior", key=prior, stage="stage3", kind="prior", oracle=False)
    for variant in params.ablations.stages:
        out[variant] = dict(study="ablation-stages", key=variant, stage="stage3", kind="stages", oracle=False)
    for t in params.ablations.t_sweep:
        if t != T:
            out[f"T={t}"] = dict(study="t-sweep", key=t_key(t), stage="stage3", kind="t", oracle=False, T=t)
    return out


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def _train(params: Params, *, study: str, backbone: str, stage: str, seed: int, out: Path, train_set: str,
           prior: str | None = None, T: int | None = None, variant: str = "s1_s2_s3",
           stage1: Path | None = None, stage2: Path | None = None, group: str, dvc_stage: str | None,
           progress: bool = True, source: tuple[str | None, str | None] = (None, None)) -> dict:
    from pipelines.train import TrainJob, train

    uses_prior = stage in ("stage2", "stage3")  # stage 1 and the baseline read nothing of `prior`
    prior = prior or (params.prior.name if uses_prior else TrainJob.prior)
    T = T if T is not None else (params.prior.T if uses_prior else TrainJob.T)
    job = TrainJob(stage=stage, backbone=backbone, out_dir=out, prior=prior, T=T, variant=variant, seed=seed,
                   stage1=str(stage1) if stage1 else None, stage2=str(stage2) if stage2 else None,
                   data=None, train_set=train_set, steps=None, resume=True, restart_if_changed=True, study=study,
                   group=group, dvc_stage=dvc_stage, mlflow=True)
    print(f"[study] {study}: {backbone} on {train_set} {stage} prior={job.prior} T={job.T} variant={variant} "
          f"seed={seed} -> {out}", flush=True)
    from pipelines.training.launch import resolve_launch

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


def torchrun_argv(job, gpus: int, params_file: str | None, profile: str | None, progress: bool = True,
                  launch=None) -> list[str]:
    """``torchrun --nproc_per_node GPUS -m pipelines.cli train ...`` for ``job`` (an argv list: no shell);
    ``launch`` (:class:`pipelines.training.launch.Launch`) adds the nodes, node rank and rendezvous."""
    from pipelines.training.launch import Launch, torchrun_prefix

    launch = launch or Launch(procs_per_node=gpus)
    argv = [*torchrun_prefix(launch),
            "-m", "pipelines.cli", "train", "--stage", job.stage, "--backbone", job.backbone,
            "--prior", job.prior, "--T", str(job.T), "--variant", job.variant, "--seed", str(job.seed),
            "--out", str(job.out_dir), "--study", job.study, "--restart-if-changed"]
    for flag, value in (("--stage1", job.stage1), ("--stage2", job.stage2), ("--train-set", job.train_set),
                        ("--data", job.data), ("--group", job.group), ("--dvc-stage", job.dvc_stage),
                        ("--params", params_file), ("--profile", profile)):
        if value is not None:
            argv += [flag, str(value)]
    if not progress:
        argv.append("--no-progress")
    if not job.mlflow:
        argv.append("--no-mlflow")
    return argv


def _train_table1(params: Params, args, seed: int, common: dict) -> None:
    if not args.backbone or not args.stage or not args.train_set:
        raise ValueError("study train --study table1 needs --train-set, --backbone and --stage")
    key, stage = table1_key(args.train_set, args.backbone), args.stage
    prev = {"stage2": dict(stage1=train_dir("table1", key, "stage1", seed)),
            "stage3": dict(stage1=train_dir("table1", key, "stage1", seed),
                           stage2=train_dir("table1", key, "stage2", seed))}.get(stage, {})
    _train(params, study="table1", backbone=args.backbone, stage=stage, out=train_dir("table1", key, stage, seed),
           group=f"table1/{key}/seed{seed}", **prev, **common)


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
            raise ValueError("study train --study t-sweep needs --T >= 1")
        s2 = train_dir("t-sweep", t_key(args.T), "stage2", seed)
        group = f"t-sweep/{t_key(args.T)}/seed{seed}"
        _train(params, study="t-sweep", stage="stage2", T=args.T, stage1=s1, out=s2, group=group, **common)
        _train(params, study="t-sweep", stage="stage3", T=args.T, stage1=s1, stage2=s2,
               out=train_dir("t-sweep", t_key(args.T), "stage3", seed), group=group, **common)
    else:
        raise ValueError(f"unknown study {args.study!r}")


def train_action(params: Params, args) -> None:
    table1 = args.study == "table1"
    train_set = args.train_set if table1 else params.ablations.train_set  # the ablations train on theirs
    seeds = params.seeds_for(args.backbone if table1 and args.backbone else params.models.ablation_backbone)
    for seed in seeds:
        common = dict(seed=seed, train_set=train_set, dvc_stage=args.dvc_stage, progress=args.progress,
                      source=(args.params, args.profile))
        if table1:
            _train_table1(params, args, seed, common)
        else:
            _train_ablation(params, args, seed, common)


def _required(value, flag: str, allowed):
    if value not in allowed:
        raise ValueError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
def _evaluate(params: Params, model_dir: Path, out: Path, dataset: str, scoring: str | None, *,
              oracle: bool = False) -> dict:
    from models.inference import pick_device
    from pipelines.evaluation.evaluator import evaluate_checkpoint

    column = column_key(dataset, scoring)
    print(f"[study] evaluate {model_dir} on {column}{' (oracle)' if oracle else ''} -> {out}", flush=True)
    from pipelines.tracking import log_evaluation

    root = params.resolve_path(params.data.test[dataset])
    summary = evaluate_checkpoint(params, model_dir, root, out, dataset=dataset, oracle=oracle, realblur_mode=scoring,
                                  device=pick_device(params.evaluate.device), fast=params.evaluate.fast)
    # the test results onto the training run of the model (MLflow: sortable by test PSNR), one name per column
    log_evaluation(model_dir, summary, column, root, out, oracle=oracle, uri=params.mlflow_tracking_uri)
    return summary


def evaluate_table1(params: Params, train_set: str, backbone: str) -> None:
    """Baseline and +BlurDM of ``backbone`` trained on ``train_set``, on that set's test sets only."""
    key = table1_key(train_set, backbone)
    for seed in params.seeds_for(backbone):
        for dataset, scoring in scored_columns(params, train_set):
            for method, stage in (("baseline", "baseline"), ("blurdm", "stage3")):
                _evaluate(params, train_dir("table1", key, stage, seed),
                          eval_dir("table1", key, column_key(dataset, scoring), method, seed=seed), dataset, scoring)


def evaluate_ablations(params: Params) -> None:
    """Every ablation model (and the oracle) on the test sets of the ablations' training set."""
    for seed in params.seeds_for(params.models.ablation_backbone):
        for dataset, scoring in scored_columns(params, params.ablations.train_set):
            for variant, where in ablation_variants(params).items():
                if where["study"] == "table1" and variant != "oracle":
                    continue  # none / blurdm are evaluated by the table1 stage of the ablation backbone
                _evaluate(params, train_dir(where["study"], str(where["key"]), where["stage"], seed),
                          eval_dir("ablations", column_key(dataset, scoring), variant, seed=seed), dataset, scoring,
                          oracle=where["oracle"])


def evaluate_action(params: Params, args) -> None:
    from pipelines.core.threads import apply_threads

    apply_threads(params.train.threads)  # the cores this process may use, shared with parallel experiments
    if args.study == "table1":
        if not args.backbone or not args.train_set:
            raise ValueError("study evaluate --study table1 needs --train-set and --backbone")
        evaluate_table1(params, args.train_set, args.backbone)
    elif args.study == "ablations":
        evaluate_ablations(params)
    else:
        raise ValueError(f"unknown evaluation study {args.study!r}; use table1 or ablations")


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("train", "evaluate"))
    parser.add_argument("--study", required=True,
                        choices=("table1", "ablation-prior", "ablation-stages", "t-sweep", "ablations"))
    parser.add_argument("--train-set", default=None, help="table1: a training set of params train_sets")
    parser.add_argument("--backbone", default=None, choices=BACKBONE_NAMES)
    parser.add_argument("--stage", default=None, choices=("stage1", "stage2", "stage3", "baseline"))
    parser.add_argument("--prior", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--T", type=int, default=None)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's)")
    parser.add_argument("--params", default=None, help="params file (default: the repo's params.yaml)")
    parser.add_argument("--dvc-stage", default=None, help="DVC stage name for MLflow tags (default $DVC_STAGE)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def stage_params_keys(params, args) -> tuple[str, ...]:
    """The params keys a ``study`` action reads (its DVC stage declares them): training keys of the
    backbone and training set it trains (:func:`pipelines.train.train_params_keys`) or the evaluation keys
    (the test list of that training set and the test folders)."""
    table1 = args.study == "table1"
    backbone = args.backbone if table1 else params.models.ablation_backbone
    train_set = args.train_set if table1 else params.ablations.train_set
    own = () if table1 else ("models.ablation_backbone", "ablations.train_set")
    if args.action == "train":
        from pipelines.train import train_params_keys  # (the evaluate stages do not import the trainer)

        prior = ("prior",) if not table1 or args.stage in ("stage2", "stage3") else ()
        return train_params_keys(backbone, train_set) + prior + own
    ablations = () if table1 else ("ablations", "prior.T")
    return ("profile", f"train_sets.{train_set}.test", "data.test", "data.max_pixels", "evaluate", "train.seeds",
            "train.threads", f"backbone_train.{backbone}", "mlflow_tracking_uri") + ablations + own


def run(args) -> int:
    from pipelines.core.params_view import restrict

    params = load_params(args.params, profile=args.profile)
    table1 = args.study == "table1"
    if table1 and args.train_set is not None and params.train_sets.get(args.train_set) is None:
        raise ValueError(f"--train-set {args.train_set!r}: not a training set of params train_sets "
                         f"({', '.join(params.train_sets)})")
    params = restrict(params, stage_params_keys(params, args), f"study {args.action} --study {args.study}")
    if args.action == "train":
        train_action(params, args)
    else:
        evaluate_action(params, args)
    return 0
