"""The study's folder layout: where every run, evaluation and training curve lives (the ONE home of it).

The training stages write the runs, the evaluation stages read them and write the evaluations, the tables
stage reads both (:mod:`pipelines.results.gain_tables`), all through these functions::

    runs/table1/<train_set>/<backbone>/<stage>/seed<k>/    model.pt, last.pt, metrics.json, sample.png
    runs/ablation-prior/<prior>/<stage>/seed<k>/           stage1 reused from table1/<ablations.train_set>/<ablation_backbone>
    runs/ablation-stages/<variant>/stage3/seed<k>/
    runs/t-sweep/T<N>/<stage>/seed<k>/
    plots/training/<study>/<key>/<stage>/seed<k>.csv       the run's curves.csv, for dvc plots
    eval/table1/<train_set>/<backbone>/<column>/<method>/seed<k>/   scores.csv, summary.json, crops/
    eval/ablations/<column>/<variant>/seed<k>/

(``runs/`` and ``eval/`` at the repo root; ``<column>``: the test set's name, ``<name>-<scoring>`` for a RealBlur
set.) The BlurDM / T = prior.T / s1_s2_s3 run of the ablation backbone is the Table-1 run of the ablations'
training set: the ablations reuse it rather than training it twice (:func:`ablation_variants`).
"""
from __future__ import annotations

from pathlib import Path

from models.names import scorings
from pipelines.core.config import Params, repo_root

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


def ablation_columns(params: Params) -> list[tuple[str, str | None]]:
    """``(test set, scoring)`` of every column the ablation models are scored on: those of the ablations' training
    set, kept to ``ablations.test`` when it names some (paper: GoPro only, as the paper's ablation tables)."""
    wanted = params.ablations.test
    return [c for c in scored_columns(params, params.ablations.train_set) if wanted is None or c[0] in wanted]


def eval_dir(study: str, *parts: str, seed: int) -> Path:
    return eval_root().joinpath(study, *parts, f"seed{seed}")


def curves_path(run_dir: Path) -> Path:
    """``plots/training/<study>/<key>/<stage>/seed<k>.csv``: the training curves of the run in ``run_dir``
    (a :func:`train_dir`), where the ``plots:`` of the training stages in dvc.yaml find them."""
    rel = Path(run_dir).resolve().relative_to(runs_root().resolve())
    return repo_root() / "plots" / "training" / rel.parent / f"{rel.name}.csv"


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
