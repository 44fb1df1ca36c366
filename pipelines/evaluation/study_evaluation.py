"""The study's evaluation stages: every model of a training set scored on that set's test sets, every seed.

``blurdm-bench study evaluate`` (:mod:`pipelines.study`) calls :func:`evaluate_action`::

    study evaluate --study table1 --train-set S --backbone B            # baseline and +BlurDM on S's test sets
    study evaluate --study ablations                                    # oracle, priors, stage variants, T sweep

Each evaluation is :func:`pipelines.evaluation.evaluator.evaluate_checkpoint` into the layout of
:mod:`pipelines.core.layout`, its means logged onto the model's training run
(:func:`pipelines.tracking.evaluation_records.log_evaluation`). A RealBlur test set is scored both ways
(:data:`models.names.SCORINGS`), each a column of its own (:func:`models.names.column_key`).
"""
from __future__ import annotations

from pathlib import Path

from models.inference import pick_device
from models.names import column_key
from pipelines.core.config import Params
from pipelines.core.errors import InvalidInputError
from pipelines.core.layout import (
    ablation_columns,
    ablation_variants,
    eval_dir,
    scored_columns,
    table1_key,
    train_dir,
)
from pipelines.core.threads import apply_threads
from pipelines.evaluation.evaluator import evaluate_checkpoint
from pipelines.tracking.evaluation_records import log_evaluation


def _evaluate(params: Params, model_dir: Path, out: Path, dataset: str, scoring: str | None, *,
              oracle: bool = False) -> dict:
    column = column_key(dataset, scoring)
    print(f"[study] evaluate {model_dir} on {column}{' (oracle)' if oracle else ''} -> {out}", flush=True)
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
    """Every ablation model (and the oracle) on the ablations' test sets (:func:`ablation_columns`)."""
    for seed in params.seeds_for(params.models.ablation_backbone):
        for dataset, scoring in ablation_columns(params):
            for variant, where in ablation_variants(params).items():
                if where["study"] == "table1" and variant != "oracle" and not params.ablations.extra_base:
                    continue  # none / blurdm: evaluated by the Table-1 stage of the ablation backbone
                _evaluate(params, train_dir(where["study"], str(where["key"]), where["stage"], seed),
                          eval_dir("ablations", column_key(dataset, scoring), variant, seed=seed), dataset, scoring,
                          oracle=where["oracle"])


def evaluate_action(params: Params, args) -> None:
    apply_threads(params.train.threads)  # the cores this process may use, shared with parallel experiments
    if args.study == "table1":
        if not args.backbone or not args.train_set:
            raise InvalidInputError("study evaluate --study table1 needs --train-set and --backbone")
        evaluate_table1(params, args.train_set, args.backbone)
    elif args.study == "ablations":
        evaluate_ablations(params)
    else:
        raise InvalidInputError(f"unknown evaluation study {args.study!r}; use table1 or ablations")
