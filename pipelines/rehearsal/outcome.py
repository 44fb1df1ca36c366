"""Did the rehearsal of the paper profile do what a GPU run must do? Checks of its outputs, and the summary.

Each ``check_*`` function takes what a finished run left (plain dicts, paths) and returns the problems it
found, one sentence each; an empty list is a pass. :func:`check_run` runs them all on a rehearsal's copy of
the repository, :func:`summary_lines` prints the one screen ``make rehearse`` ends with.

What is checked (issue 24, "Done when"):

* every stage of the DAG ran (none skipped, none missing);
* ``metrics/table1.json``: the four Table-1 columns, each from the training set the paper trains it on
  (:data:`PAPER_COLUMNS`: GoPro and HIDE from GoPro, RealBlur-J / -R each from its own training split; RealBlur
  under both scorings), for every Table-1 backbone, with finite scores;
* the ablations (prior, stage combinations, T sweep) are on GoPro, on the ablation backbone, with every variant;
* the code paths of a GPU run were taken: every training run in bf16, activation checkpointing on, FFTformer in
  several micro-batches; a full-resolution (720 x 1280) evaluation through every Table-1 backbone; the
  latency of at least one backbone at 720 x 1280, and the counts of every backbone;
* the report exists and names the four columns and their training sets.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from models.names import DATASETS as DATASET_LABELS
from models.names import column_key, scorings

# Table 1 of the paper: test set -> the training set whose models score it
PAPER_COLUMNS = {"gopro": "gopro", "hide": "gopro", "realblur_j": "realblur_j", "realblur_r": "realblur_r"}
ABLATION_TRAIN_SET = "gopro"  # the paper's ablations are on GoPro
FULL_RES = "1280x720"  # evaluation summaries name sizes as WxH
METRIC_FILES = ("table1", "ablation_prior", "ablation_stages", "t_sweep")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_stages(expected: list[str], ran: list[str], skipped: list[str]) -> list[str]:
    """Every stage of ``expected`` ran once; none was skipped as unchanged (a fresh copy has no results)."""
    problems = []
    missing = [s for s in expected if s not in ran]
    if missing:
        problems.append(f"{len(missing)} of {len(expected)} stages did not run: {', '.join(missing[:12])}"
                        + (" ..." if len(missing) > 12 else ""))
    if skipped:
        problems.append(f"{len(skipped)} stages were skipped as unchanged in a fresh copy: {', '.join(skipped[:8])}")
    unknown = sorted(set(ran) - set(expected))
    if unknown:
        problems.append(f"stages ran that the DAG does not list: {', '.join(unknown[:8])}")
    return problems


def check_table1(table: dict, backbones: list[str]) -> list[str]:
    """The four columns of Table 1 (:data:`PAPER_COLUMNS`), each from its training set, for every backbone."""
    problems = []
    rows = table.get("rows") or []
    for dataset, train_set in PAPER_COLUMNS.items():
        for scoring in scorings(dataset):
            column = column_key(dataset, scoring)
            for backbone in backbones:
                found = [r for r in rows if r.get("dataset") == dataset and r.get("scoring") == scoring
                         and r.get("backbone") == backbone]
                if not found:
                    problems.append(f"table1.json: no {column} row for {backbone} (the column is missing)")
                    continue
                row = found[0]
                if row.get("train_set") != train_set:
                    problems.append(f"table1.json: {column} of {backbone} comes from training set "
                                    f"{row.get('train_set')!r}, not {train_set!r}")
                for side in ("baseline", "blurdm"):
                    if not _finite((row.get(side) or {}).get("psnr")):
                        problems.append(f"table1.json: {column} of {backbone}: no finite {side} PSNR")
    extra = sorted({r.get("dataset") for r in rows} - set(PAPER_COLUMNS))
    if extra:
        problems.append(f"table1.json: columns outside the paper's Table 1: {extra}")
    return problems


def check_ablations(files: dict[str, dict], backbone: str, priors: list[str], stages: list[str],
                    t_values: list[int]) -> list[str]:
    """Every ablation table is on GoPro (trained and scored there, on no other test set), on ``backbone``, with
    every variant."""
    problems = []
    wanted = {"ablation_prior": ("variant", priors), "ablation_stages": ("variant", stages), "t_sweep": ("T", t_values)}
    for name, (key, values) in wanted.items():
        data = files.get(name)
        if not data:
            problems.append(f"{name}.json: missing")
            continue
        for field, value in (("train_set", ABLATION_TRAIN_SET), ("dataset", ABLATION_TRAIN_SET), ("backbone", backbone)):
            if data.get(field) != value:
                problems.append(f"{name}.json: {field} is {data.get(field)!r}, not {value!r}")
        if data.get("other_datasets"):  # the paper scores its ablations on GoPro alone (ablations.test)
            problems.append(f"{name}.json: also scored on {sorted(data['other_datasets'])}, the paper's ablations "
                            f"only on {ABLATION_TRAIN_SET!r}")
        present = {row.get(key) for row in data.get("rows") or []}
        absent = [v for v in values if v not in present]
        if absent:
            problems.append(f"{name}.json: no row for {key} {absent}")
    return problems


def check_training_runs(metrics: dict[str, dict], micro_batched: str = "fftformer") -> list[str]:
    """``metrics`` (run folder -> its metrics.json): bf16 everywhere, activation checkpointing somewhere,
    ``micro_batched``'s runs in more than one micro-batch."""
    problems = []
    if not metrics:
        return ["no training run wrote a metrics.json"]
    fp32 = sorted(run for run, m in metrics.items() if m.get("precision") != "bf16")
    if fp32:
        problems.append(f"{len(fp32)} training runs not in bf16: {', '.join(fp32[:4])}")
    if not any(m.get("activation_checkpointing") for m in metrics.values()):
        problems.append("no training run used activation checkpointing")
    micro = {run: m for run, m in metrics.items() if m.get("backbone") == micro_batched}
    if not micro:
        problems.append(f"no {micro_batched} training run")
    single = sorted(run for run, m in micro.items() if (m.get("batching") or {}).get("accumulation_steps", 1) < 2)
    if single:
        problems.append(f"{micro_batched} runs in one micro-batch (no accumulation): {', '.join(single[:4])}")
    return problems


def check_full_resolution(summaries: dict[str, dict], backbones: list[str]) -> list[str]:
    """``summaries`` (evaluation folder -> summary.json): every Table-1 backbone restored a 720 x 1280 image."""
    done = {s.get("model", {}).get("backbone") for s in summaries.values() if FULL_RES in (s.get("image_sizes") or [])}
    missing = [b for b in backbones if b not in done]
    return [f"no full-resolution ({FULL_RES}) evaluation through {', '.join(missing)}"] if missing else []


def check_costs(costs: dict, backbones: list[str], size=(720, 1280)) -> list[str]:
    """Counts of every backbone; the latency of at least one at ``size`` (H, W)."""
    problems = []
    counted = set((costs.get("backbones") or {}))
    if not set(backbones) <= counted:
        problems.append(f"costs.json: no counts for {sorted(set(backbones) - counted)}")
    results = ((costs.get("latency") or {}).get("results")) or []
    timed = sorted({r.get("model") for r in results if list(r.get("size") or []) == list(size)
                    and r.get("model") != "blurdm_module" and _finite(r.get("median_ms"))})
    if not timed:
        problems.append(f"costs: no backbone timed at {size[0]}x{size[1]}")
    return problems


def check_report(html: str | None, train_sets: dict[str, str] = PAPER_COLUMNS) -> list[str]:
    """The report page exists and names each Table-1 column and the training set it comes from."""
    if html is None:
        return ["reports/site/index.html was not written"]
    missing = [DATASET_LABELS.get(d, d) for d in train_sets if DATASET_LABELS.get(d, d) not in html]
    return [f"the report does not name the column(s) {missing}"] if missing else []


# ------------------------------------------------------------------------------------------------ a run
def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _costs(root: Path) -> dict | None:
    """``metrics/costs.json`` with its run-specific sidecar (the latency) merged in, as the report reads it."""
    from pipelines.results.run_info import merge_run_info, read_run_info

    path = root / "metrics" / "costs.json"
    data = _json(path)
    if data is None:
        return None
    try:
        sidecar = read_run_info(path)[0]
    except ValueError:
        sidecar = None
    return merge_run_info(data, sidecar, costs=True)


def check_run(root: Path, params: dict, expected_stages: list[str], ran: list[str], skipped: list[str]) -> list[str]:
    """Every check on the rehearsal copy ``root`` whose composed params are ``params`` (a plain dict)."""
    backbones = list(params["models"]["backbones"])
    ablations = params["ablations"]
    problems = check_stages(expected_stages, ran, skipped)
    problems += check_table1(_json(root / "metrics" / "table1.json") or {}, backbones)
    T = params["prior"]["T"]
    problems += check_ablations({n: _json(root / "metrics" / f"{n}.json") for n in METRIC_FILES[1:]},
                                params["models"]["ablation_backbone"], list(ablations["priors"]),
                                list(ablations["stages"]), sorted({*ablations["t_sweep"], T}))
    metrics = {str(p.parent.relative_to(root)): m for p in sorted((root / "runs").rglob("metrics.json"))
               if (m := _json(p)) is not None}
    problems += check_training_runs(metrics)
    summaries = {str(p.parent.relative_to(root)): s for p in sorted((root / "eval" / "table1").rglob("summary.json"))
                 if (s := _json(p)) is not None}
    problems += check_full_resolution(summaries, backbones)
    problems += check_costs(_costs(root) or {}, backbones)
    page = root / "reports" / "site" / "index.html"
    problems += check_report(page.read_text(errors="replace") if page.is_file() else None)
    return problems


def table1_columns(root: Path) -> list[str]:
    """``column <- training set`` of every Table-1 column the run's table holds (for the summary)."""
    rows = (_json(root / "metrics" / "table1.json") or {}).get("rows") or []
    seen = {}
    for row in rows:
        seen.setdefault(column_key(row.get("dataset"), row.get("scoring")), row.get("train_set"))
    return [f"{column} <- {train_set}" for column, train_set in seen.items()]


def _gb(n: int) -> str:
    """Binary and decimal units both, named: 17,270,000,000 bytes is "16.1 GiB (17.3 GB)"."""
    return f"{n / 2**30:.1f} GiB ({n / 1e9:.1f} GB)"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def summary_lines(*, ok: bool, problems: list[str], stages: list, expected: int, seconds: float,
                  phases: dict[str, float], peak_rss: int, largest_process: int, report: Path, log: Path,
                  columns: list[str], cpu_seconds: float = 0.0, mean_load: float = 0.0, cores: int = 0,
                  slowest: int = 6) -> list[str]:
    """The one screen ``make rehearse`` ends with."""
    families: dict[str, int] = {}
    for stage in stages:
        family = stage.name.split("@")[0]
        families[family] = families.get(family, 0) + 1
    lines = [f"Rehearsal of the paper profile: {'PASSED' if ok else 'FAILED'}",
             f"  stages run:  {len(stages)} of {expected} ("
             + ", ".join(f"{k} {v}" for k, v in families.items()) + ")",
             f"  wall time:   {_minutes(seconds)} (" + ", ".join(f"{k} {_minutes(v)}" for k, v in phases.items()) + ")",
             f"  peak RSS:    {_gb(peak_rss)} (every process of the run together, sampled); largest single "
             f"process {_gb(largest_process)}",
             f"  CPU:         {_minutes(cpu_seconds)} of CPU time on {cores} cores ({cpu_seconds / max(seconds, 1):.2f} busy "
             f"on average); machine load {mean_load:.2f} on average, other users' work included",
             "  slowest:     " + "; ".join(f"{s.name} {_minutes(s.seconds)} ({_gb(s.peak_rss)})"
                                           for s in sorted(stages, key=lambda s: -s.seconds)[:slowest]),
             "  Table 1:     " + ", ".join(columns or ["(no table)"]),
             f"  report:      {report}",
             f"  stage log:   {log}"]
    if problems:
        lines.append(f"  problems ({len(problems)}):")
        lines += [f"    - {p}" for p in problems]
    return lines

