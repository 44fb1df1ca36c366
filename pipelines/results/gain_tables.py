"""The metric tables: the evaluations of the study gathered into gains with CIs (the work behind
``blurdm-bench tables``).

Reads the layout of :mod:`pipelines.core.layout` and writes, atomically, under ``metrics/`` (DVC metrics
files, and the input of the report and of ``blurdm-bench check``):

* ``table1.json``: per column x backbone, baseline and +BlurDM means, and the gain of every metric
  with a paired bootstrap 95% CI over images (per-image values averaged over training seeds and
  evaluation seeds) and the spread over training seeds. A column is a test set (a RealBlur one once per
  scoring, :data:`models.names.SCORINGS`) and is filled by the models of the training set that lists it
  (params ``train_sets``); each row names its ``train_set`` and ``scoring``;
* ``ablation_prior.json``, ``ablation_stages.json``, ``t_sweep.json``: one row per variant, with its
  PSNR gain over the no-prior baseline of the same backbone, paired on the same images, on the test sets of
  the ablations' training set (``ablations.train_set``);
* ``controls.json``: the study's positive controls, computed from the tables above
  (:mod:`pipelines.results.controls`).

Beside them, for DVC (:mod:`pipelines.results.plots_data`): ``plots/t_sweep.csv``, ``plots/ablation_prior.csv``,
``plots/ablation_stages.csv`` (``dvc plots``) and ``headline.json`` (the headline gains, ``dvc exp show``).

These tracked files hold no run-specific field: the date and the MLflow run ids go to the untracked
``metrics/run_info/<name>.json`` (:mod:`pipelines.results.run_info`). Every table is checked against its schema
(:mod:`pipelines.results.metric_schemas`, which the report reads it with) before it is written.

Only what was run appears; a missing evaluation is left out (the report says "not run").
"""
from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import torch

from models.names import METRIC_NAMES, PRIORS, STAGE_COMBOS, column_key
from pipelines.core.config import Params, repo_root
from pipelines.core.files import read_json
from pipelines.core.layout import (
    ablation_columns,
    ablation_variants,
    eval_dir,
    scored_columns,
    table1_key,
    table1_stage,
    train_dir,
)
from pipelines.evaluation.score_files import (
    INPUT_SCORES_FILE,
    compare_runs,
    per_image,
    read_scores,
)
from pipelines.results.controls import build_controls
from pipelines.results.metric_schemas import SCHEMAS, validated_json
from pipelines.results.plots_data import write_plot_data
from pipelines.results.run_info import split_table, write_tracked
from pipelines.tracking.lineage import UNKNOWN_COMMIT, git_commit

ABLATION_ORDER = {
    "ablation_prior": list(PRIORS),
    "ablation_stages": [*STAGE_COMBOS, "oracle"],
}


def meta(params: Params) -> dict:
    # HEAD without "-dirty": the same commit gives the same bytes (dvc.lock changes while the study runs)
    commit = git_commit(mark_dirty=False)
    return {
        "profile": params.profile, "scale": params.models.scale, "train_seeds": list(params.train.seeds),
        "train_seeds_by_backbone": {bb: params.seeds_for(bb) for bb in params.models.backbones},
        "eval_seeds": list(params.evaluate.eval_seeds),
        "bootstrap": {"resamples": params.evaluate.bootstrap.resamples, "seed": params.evaluate.bootstrap.seed,
                      "confidence": 0.95},
        "git_commit": None if commit == UNKNOWN_COMMIT else commit,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "device": "cpu",
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
    }


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(repo_root()))
    except ValueError:
        return str(path)


_EXPERIMENTS: dict[str, str] = {}  # MLflow run id -> experiment id, as read by _run_ids (for the report's links)


def _run_ids(study: str, key: str, stage: str, seeds) -> list[str]:
    ids = []
    for seed in seeds:
        f = train_dir(study, key, stage, seed) / "metrics.json"
        if f.is_file():
            record = read_json(f)
            run_id = record.get("mlflow_run_id")
            if run_id:
                ids.append(run_id)
                if record.get("mlflow_experiment_id") is not None:
                    _EXPERIMENTS[run_id] = str(record["mlflow_experiment_id"])
    return ids


def _experiments_of(runs: dict) -> dict[str, str]:
    """Experiment ids of the run ids in a sidecar's ``runs`` (lists, or dicts of lists)."""
    ids = [i for v in runs.values() for i in (v if isinstance(v, list) else [x for side in v.values() for x in side])]
    return {i: _EXPERIMENTS[i] for i in sorted(set(ids)) if i in _EXPERIMENTS}


def _lpips_reason(summary_dirs: list[Path]) -> str | None:
    for d in summary_dirs:
        f = d / "summary.json"
        if f.is_file():
            s = read_json(f)
            if not s.get("lpips_available", False):
                return s.get("lpips_reason") or "LPIPS unavailable"
    return None


def _gain(method: list[Path], baseline: list[Path], metric: str, params: Params) -> dict | None:
    try:
        result = compare_runs(method, baseline, metric, resamples=params.evaluate.bootstrap.resamples,
                              seed=params.evaluate.bootstrap.seed)
    except ValueError as err:
        if "is NA" in str(err):
            return None  # metric unavailable (LPIPS offline): reported with its reason, never as 0
        raise
    seeds = result["training_seeds"]
    gain = {"mean": result["mean_gain"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
            # the spread of the per-seed gains; None (not 0) with one training seed: no spread was measured
            "seed_std": seeds["gain"]["std"] if "gain" in seeds else None,
            "n_images": result["n"], "n_seeds": len(method)}
    return {"gain": gain, "method_mean": result["method_mean"], "baseline_mean": result["baseline_mean"]}


def _input_file(dirs: list[Path]) -> Path:
    """The blurred input's own scores (written by every evaluation of the same test set; the first)."""
    return dirs[0] / INPUT_SCORES_FILE


def _input_means(dirs: list[Path]) -> dict[str, float | None]:
    """Scores of doing nothing: the blurred test input against the sharp images, per metric."""
    frame = read_scores(_input_file(dirs))
    out = {}
    for metric in METRIC_NAMES:
        try:
            out[metric] = float(per_image(frame, metric).mean())
        except ValueError:
            out[metric] = None  # LPIPS unavailable offline: said once, with its reason
    return out


def _over_input(dirs: list[Path], params: Params, metrics=METRIC_NAMES) -> dict[str, dict | None]:
    """Gain of the models in ``dirs`` over the blurred input itself, per metric (paired over images). The
    input's scores stand beside every training seed, so the gain's seed spread is that of the seeds."""
    out = {}
    for metric in metrics:
        g = _gain(dirs, [_input_file(dirs)] * len(dirs), metric, params)
        out[metric] = None if g is None else {**g["gain"], "n_seeds": len(dirs)}
    return out


def _stage2_r2(study: str, key: str, seeds) -> dict | None:
    """Validation R^2 of the stage-2 prior against SE(blur, sharp) (mean and per training seed)."""
    values = {}
    for seed in seeds:
        f = train_dir(study, key, "stage2", seed) / "metrics.json"
        if f.is_file():
            r2 = read_json(f).get("val_latent_r2")
            if r2 is not None:
                values[str(seed)] = r2
    if not values:
        return None
    return {"mean": sum(values.values()) / len(values), "per_seed": values}


def _crops(folder: Path) -> dict:
    crops = folder / "crops"
    if not crops.is_dir():
        return {}
    out: dict[str, list[str]] = {"blurred": [], "restored": [], "sharp": []}
    for f in sorted(crops.glob("*_blur.png")):
        stem = f.name[: -len("_blur.png")]
        out["blurred"].append(_rel(f))
        out["restored"].append(_rel(crops / f"{stem}_restored.png"))
        out["sharp"].append(_rel(crops / f"{stem}_sharp.png"))
    return out


def table1_row(params: Params, train_set: str, bb: str, dataset: str, scoring: str | None) -> dict | None:
    """The row of ``bb`` trained on ``train_set``, scored on ``dataset`` (``scoring``); None when not evaluated."""
    seeds, key, column = params.seeds_for(bb), table1_key(train_set, bb), column_key(dataset, scoring)
    dirs = {m: [eval_dir("table1", key, column, m, seed=s) for s in seeds] for m in ("baseline", "blurdm")}
    if not all((d / "scores.csv").is_file() for ds in dirs.values() for d in ds):
        return None
    row = {"dataset": dataset, "scoring": scoring, "train_set": train_set, "backbone": bb,
           "baseline": {}, "blurdm": {}, "gain": {}}
    for metric in METRIC_NAMES:
        g = _gain(dirs["blurdm"], dirs["baseline"], metric, params)
        row["baseline"][metric] = None if g is None else g["baseline_mean"]
        row["blurdm"][metric] = None if g is None else g["method_mean"]
        row["gain"][metric] = None if g is None else g["gain"]
    row["input"] = _input_means(dirs["baseline"])
    row["over_input"] = {m: _over_input(dirs[m], params) for m in ("baseline", "blurdm")}
    row["lpips_reason"] = _lpips_reason(dirs["blurdm"]) if row["gain"]["lpips"] is None else None
    row["per_image"] = {m: _rel(dirs[m][0] / "scores.csv") for m in dirs}
    base_crops, method_crops = _crops(dirs["baseline"][0]), _crops(dirs["blurdm"][0])
    row["crops"] = ({"blurred": method_crops["blurred"], "baseline": base_crops["restored"],
                     "blurdm": method_crops["restored"], "sharp": method_crops["sharp"]}
                    if base_crops and method_crops else {})
    row["runs"] = {"baseline": _run_ids("table1", key, "baseline", seeds), "blurdm": _run_ids("table1", key, "stage3", seeds)}
    row["dvc_stages"] = {"baseline": table1_stage("train_baseline", train_set, bb),
                         "blurdm": table1_stage("train_stage3", train_set, bb),
                         "evaluation": table1_stage("evaluate_table1", train_set, bb)}
    return row


def table1(params: Params) -> dict:
    """Every column of Table 1 from the models of the training set that lists its test set."""
    rows, average = [], {}
    for train_set in params.train_sets:
        for dataset, scoring in scored_columns(params, train_set):
            gains_by_metric: dict[str, list[float]] = {m: [] for m in METRIC_NAMES}
            for bb in params.models.backbones:
                row = table1_row(params, train_set, bb, dataset, scoring)
                if row is None:
                    continue
                rows.append(row)
                for metric in METRIC_NAMES:
                    if row["gain"][metric] is not None:
                        gains_by_metric[metric].append(row["gain"][metric]["mean"])
            if any(gains_by_metric.values()):
                average[column_key(dataset, scoring)] = {m: (sum(v) / len(v) if v else None)
                                                         for m, v in gains_by_metric.items()}
    return {"meta": meta(params), "rows": rows, "average_gain": average}


def _ablation_key(params: Params) -> str:
    """Where the Table-1 runs the ablations build on live (their training set, their backbone)."""
    return table1_key(params.ablations.train_set, params.models.ablation_backbone)


def _is_table1_blurdm(params: Params, variant: str) -> bool:
    return variant in ("blurdm", "s1_s2_s3") or variant == f"T={params.prior.T}"


def _variant_dirs(params: Params, column: str, variant: str) -> list[Path]:
    seeds = params.seeds_for(params.models.ablation_backbone)
    if params.ablations.extra_base:  # not a Table-1 backbone: evaluate_ablations scored its base runs too
        base = {"none": "none", "blurdm": "blurdm"}
        if variant == "none" or _is_table1_blurdm(params, variant):
            return [eval_dir("ablations", column, base.get(variant, "blurdm"), seed=s) for s in seeds]
        return [eval_dir("ablations", column, variant, seed=s) for s in seeds]
    if variant == "none":
        return [eval_dir("table1", _ablation_key(params), column, "baseline", seed=s) for s in seeds]
    if _is_table1_blurdm(params, variant):
        return [eval_dir("table1", _ablation_key(params), column, "blurdm", seed=s) for s in seeds]
    return [eval_dir("ablations", column, variant, seed=s) for s in seeds]


def _variant_training(params: Params, variant: str) -> tuple[list[str], str]:
    bb, train_set = params.models.ablation_backbone, params.ablations.train_set
    seeds = params.seeds_for(bb)
    where = ablation_variants(params).get(variant)
    if _is_table1_blurdm(params, variant):
        stage = f"ablation_base@{bb}" if params.ablations.extra_base else table1_stage("train_stage3", train_set, bb)
        return _run_ids("table1", _ablation_key(params), "stage3", seeds), stage
    if where is None:
        return [], ""
    key = where["key"]
    base_stage = (f"ablation_base@{bb}" if params.ablations.extra_base
                  else table1_stage(f"train_{where['stage']}", train_set, bb))
    name = {"table1": base_stage, "ablation-prior": f"ablation_prior@{key}",
            "ablation-stages": f"ablation_stages@{key}", "t-sweep": f"t_sweep@{where.get('T')}"}[where["study"]]
    return _run_ids(where["study"], str(where["key"]), where["stage"], seeds), name


def _variant_r2(params: Params, variant: str) -> dict | None:
    """Stage-2 R^2 of the prior a variant uses (None for variants without a trained stage-2 prior)."""
    seeds = params.seeds_for(params.models.ablation_backbone)
    if _is_table1_blurdm(params, variant) or variant == "s1_s2":
        return _stage2_r2("table1", _ablation_key(params), seeds)
    where = ablation_variants(params).get(variant)
    if where is None or where["study"] not in ("ablation-prior", "t-sweep"):
        return None
    return _stage2_r2(where["study"], str(where["key"]), seeds)


def ablation_rows(params: Params, variants: list[str], dataset: str) -> tuple[list[dict], dict | None]:
    """One row per variant that was run on ``dataset`` (gain over no prior and over the blurred input),
    and the blurred input's own scores."""
    reference = _variant_dirs(params, dataset, "none")
    rows: list[dict] = []
    if not all((d / "scores.csv").is_file() for d in reference):
        return rows, None
    for variant in variants:
        dirs = _variant_dirs(params, dataset, variant)
        if not all((d / "scores.csv").is_file() for d in dirs):
            continue
        row: dict = {"variant": variant}
        for metric in METRIC_NAMES:
            g = _gain(dirs, reference, metric, params)
            row[metric] = None if g is None else g["method_mean"]
            if metric == "psnr":
                row["gain"] = g["gain"]
        row["over_input"] = _over_input(dirs, params, ("psnr",))["psnr"]
        row["stage2_r2"] = _variant_r2(params, variant)
        runs, stage = _variant_training(params, variant)
        row["runs"], row["dvc_stage"] = runs, stage
        if variant.startswith("T="):
            row["T"] = int(variant[2:])
        rows.append(row)
    return rows, _input_means(reference)


def ablation_table(params: Params, variants: list[str], columns: list[str]) -> dict:
    """The ablation on the first column of the ablations' training set (``rows``), and on every other column
    (``other_datasets``)."""
    dataset = columns[0]
    rows, input_means = ablation_rows(params, variants, dataset)
    others = {}
    for other in columns[1:]:
        other_rows, other_input = ablation_rows(params, variants, other)
        for row in other_rows:
            row.pop("runs")  # the same training runs as the first test set's rows
        if other_rows:
            others[other] = {"input": other_input, "rows": other_rows}
    return {"meta": meta(params), "dataset": dataset, "backbone": params.models.ablation_backbone,
            "train_set": params.ablations.train_set, "input": input_means, "rows": rows, "other_datasets": others}


def build_tables(params: Params, out_dir: Path) -> dict[str, dict]:
    columns = [column_key(*c) for c in ablation_columns(params)]
    sweep = sorted(set(params.ablations.t_sweep) | {params.prior.T})
    tables = {
        "table1": table1(params),
        "ablation_prior": ablation_table(params, ABLATION_ORDER["ablation_prior"], columns),
        "ablation_stages": ablation_table(params, ABLATION_ORDER["ablation_stages"], columns),
        "t_sweep": ablation_table(params, [f"T={t}" for t in sweep], columns),
    }
    for name, table in tables.items():
        tables[name] = table = validated_json(SCHEMAS[name], table)  # the format of metrics/<name>.json
        # the same commit and params give the same bytes: date and MLflow run ids go to run_info/<name>.json
        tracked, volatile = split_table(table)
        volatile["experiments"] = _experiments_of(volatile["runs"])  # MLflow UI compare links in the report
        write_tracked(out_dir / f"{name}.json", tracked, volatile)
    write_plot_data(tables, out_dir)  # plots/*.csv for `dvc plots`, headline.json for `dvc exp show`
    # the positive controls, from the tables just built: can the study answer? (the report gates its verdicts on them)
    controls = validated_json(SCHEMAS["controls"], build_controls(params, tables))
    write_tracked(out_dir / "controls.json", controls, {})
    return {**tables, "controls": controls}
