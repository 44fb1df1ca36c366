"""Score files: the ``scores.csv`` / ``input_scores.csv`` an evaluation writes, its ``summary.json``
metric summary, reading them back, and comparing two evaluations.

``scores.csv`` holds one row per image, and for a stochastic prior one row per (image, eval seed), with
the columns :data:`CSV_COLUMNS`: ``seed`` is ``NA`` for deterministic models, ``lpips`` is ``NA`` when
LPIPS is unavailable (and ``ssim3d`` in RealBlur's official mode, which defines none); ``seconds`` is
the restoration time of that image (model only, not scoring). ``input_scores.csv`` scores the blurred
input itself against the sharp image (doing nothing), in the same columns.

:func:`summarise` gives the per-metric means of ``summary.json`` (for stochastic priors the mean and std
over eval seeds of the per-seed means). :func:`read_scores` / :func:`per_image` read a file back, and
:func:`compare_runs` compares two evaluations (method vs baseline) with a paired bootstrap over images.
Written by :mod:`pipelines.evaluation.evaluator`; read by the tables stage and the report.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models.names import METRIC_NAMES, METRICS
from pipelines.core.errors import InvalidInputError, MissingFileError
from pipelines.evaluation.paired_stats import (
    gain_over_seeds,
    paired_bootstrap,
    seed_spread,
)

CSV_COLUMNS = ("name", "seed", *METRIC_NAMES, "seconds")
NA = "NA"
SCORES_FILE = "scores.csv"
INPUT_SCORES_FILE = "input_scores.csv"  # the blurred input itself scored against the sharp image (doing nothing)
SUMMARY_FILE = "summary.json"
METRIC_NOTES = {name: metric.note for name, metric in METRICS.items()}


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_line(cells: list[str]) -> str:
    """One line of a scores file, quoted by the csv module wherever a cell needs it (a comma, a quote, a
    line break or a lone carriage return in an image name), ended by ``\n``."""
    buf = io.StringIO()
    # "\r\n" as the writer's terminator: the csv module quotes a cell holding a lone "\r" only when "\r" is
    # part of it (Python 3.11); the file still ends its lines with "\n" (a name's own line breaks are quoted)
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(cells)
    return buf.getvalue()[:-2] + "\n"


def rows_to_csv(rows: list[dict]) -> str:
    """The text of a scores file: a header of :data:`CSV_COLUMNS`, then one line per row (``None`` / NaN
    written as ``NA``, floats at full precision, names quoted by the csv module where they need it, so
    any name reads back as it was: :func:`read_scores`)."""
    return "".join([_csv_line(list(CSV_COLUMNS)),
                    *(_csv_line([_fmt(row.get(col)) for col in CSV_COLUMNS]) for row in rows)])


def _mean_or_na(values: Sequence) -> float | str:
    vals = [v for v in values if v is not None]
    if not vals or len(vals) != len(values):
        return NA
    return float(np.mean(vals))


def summarise(rows: list[dict], seeds: list[int | None]) -> dict:
    """Per-metric summary: ``mean`` (over images; for several seeds the mean of the per-seed means),
    and with several seeds ``std`` over seeds (:func:`pipelines.evaluation.paired_stats.seed_spread`) and ``per_seed``."""
    out: dict = {}
    for metric in METRIC_NAMES + ("seconds",):
        per_seed = {}
        for seed in seeds:
            per_seed[seed] = _mean_or_na([r[metric] for r in rows if r["seed"] == seed])
        if any(v == NA for v in per_seed.values()):
            out[metric] = {"mean": NA}
            continue
        if seeds == [None]:
            out[metric] = {"mean": per_seed[None]}
            continue
        values = [per_seed[s] for s in seeds]
        entry: dict = {"mean": float(np.mean(values)), "per_seed": {str(s): v for s, v in per_seed.items()}}
        if all(math.isfinite(v) for v in values):
            spread = seed_spread(values)
            entry["std"] = spread["std"]
            entry["n_seeds"] = spread["n"]
        out[metric] = entry
    return out


# ---------------------------------------------------------------------------------------------
# reading and comparing
# ---------------------------------------------------------------------------------------------
def _number(text: str, column: str, where: str) -> float:
    if text == NA:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{where}: {column} is {text[:40]!r}, not a number or {NA}: a damaged scores "
                                "file") from None
    if column == "seed" and not value.is_integer():
        raise InvalidInputError(f"{where}: seed is {text[:40]!r}, not an integer or {NA}: a damaged scores file")
    return value


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """A ``scores.csv`` (or the folder holding it) as a DataFrame; ``NA`` cells become NaN (an image name
    is taken as it is, ``NA`` included).

    The file is checked line by line: a row with too few or too many cells (a truncated or damaged file),
    a value that is not a number, a quote never closed, or a missing column raises
    :class:`~pipelines.core.errors.InvalidInputError` naming the file and the line."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise MissingFileError(f"{path}: scores file not found")
    records: list[list] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None) or []
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise InvalidInputError(f"{path}: line 1: not a scores file, missing columns {missing}")
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                if len(row) != len(header):
                    raise InvalidInputError(f"{where}: expected {len(header)} fields, found {len(row)} (a truncated "
                                            "or damaged scores file)")
                records.append([cell if column == "name" else _number(cell, column, where)
                                for column, cell in zip(header, row)])
    except csv.Error as err:
        raise InvalidInputError(f"{path}: line {reader.line_num}: {err} (a quote that is never closed, or a damaged "
                                "file)") from None
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    frame = pd.DataFrame(records, columns=header)
    frame["name"] = frame["name"].astype(str)
    if len(frame) and frame["seed"].notna().all():
        frame["seed"] = frame["seed"].astype("int64")  # integers, as pandas reads a column without NA
    frame.attrs["path"] = str(path)
    return frame


def per_image(frame: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per image name, averaged over evaluation seeds (a stochastic prior's rows)."""
    where = frame.attrs.get("path", "scores")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRIC_NAMES)}")
    values = frame[["name", metric]]
    if values[metric].isna().any():
        bad = values.loc[values[metric].isna(), "name"].tolist()
        raise InvalidInputError(f"{where}: {metric} is NA for {len(bad)} row(s) (e.g. {bad[:3]}); cannot compare")
    return values.groupby("name", sort=True)[metric].mean()


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _check_same_images(files: list, runs: list[pd.Series]) -> None:
    """Every run scores the same image names as the first (pairing is by name; a mismatch is an error)."""
    reference, reference_path = runs[0], str(files[0])
    for path, run in zip(files, runs):
        if set(run.index) != set(reference.index):
            only_ref = sorted(set(reference.index) - set(run.index))
            only_run = sorted(set(run.index) - set(reference.index))
            raise InvalidInputError(f"image names differ between {reference_path} and {path}: "
                             f"{len(only_ref)} only in the first (e.g. {only_ref[:3]}), "
                             f"{len(only_run)} only in the second (e.g. {only_run[:3]})")


def compare_runs(method_csv, baseline_csv, metric: str = "psnr", resamples: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of a method with its baseline on the same images.

    ``method_csv`` / ``baseline_csv``: one ``scores.csv`` each (or a folder holding it), or a list of
    them, one per training seed. Per file the metric is averaged per image over evaluation seeds; over
    several training-seed files it is averaged per image. The gain ``method - baseline`` is then
    bootstrapped over images (:func:`pipelines.evaluation.paired_stats.paired_bootstrap`); pairing is by image name and
    any mismatch is an error. With several files per side, ``training_seeds`` gives the spread of the
    per-file means (:func:`pipelines.evaluation.paired_stats.seed_spread`).
    """
    method_files, baseline_files = _as_list(method_csv), _as_list(baseline_csv)
    if not method_files or not baseline_files:
        raise ValueError("compare_runs: need at least one scores file per side")
    method_runs = [per_image(read_scores(p), metric) for p in method_files]
    baseline_runs = [per_image(read_scores(p), metric) for p in baseline_files]
    _check_same_images(method_files + baseline_files, method_runs + baseline_runs)
    names = sorted(method_runs[0].index)
    method = np.mean([run.loc[names].to_numpy() for run in method_runs], axis=0)
    baseline = np.mean([run.loc[names].to_numpy() for run in baseline_runs], axis=0)
    result = {
        "metric": metric,
        "higher_is_better": METRICS[metric].higher_is_better,
        "method_mean": float(method.mean()),
        "baseline_mean": float(baseline.mean()),
        "method_files": [str(p) for p in method_files],
        "baseline_files": [str(p) for p in baseline_files],
        **paired_bootstrap(method, baseline, resamples=resamples, seed=seed),
    }
    result["training_seeds"] = {
        "method": seed_spread([run.mean() for run in method_runs]),
        "baseline": seed_spread([run.mean() for run in baseline_runs]),
    }
    if len(method_runs) == len(baseline_runs) and len(method_runs) > 1:
        result["training_seeds"]["gain"] = gain_over_seeds([run.mean() for run in method_runs],
                                                           [run.mean() for run in baseline_runs])
    return result
