"""Data files for ``dvc plots`` and the headline metrics for ``dvc exp show`` (issue 13, item 3).

* training curves: every training run writes ``curves.csv`` (``step,loss,val_psnr``; ``loss`` is the
  mean over the last ``train.log_every`` steps, ``val_psnr`` is empty where no validation ran) into
  its run folder; the study copies it to ``plots/training/<study>/<key>/<stage>/seed<k>.csv``
  (:func:`pipelines.core.layout.curves_path`), the ``plots:`` output of each training stage in dvc.yaml;
* from the metric tables, ``blurdm-bench tables`` writes ``metrics/plots/t_sweep.csv`` (PSNR and its
  gain over no prior against T, with the 95% CI), ``metrics/plots/ablation_prior.csv`` and
  ``metrics/plots/ablation_stages.csv`` (PSNR gain per variant with the CI), and
  ``metrics/headline.json``: the headline gains as flat numbers, so ``dvc exp show`` / ``dvc metrics
  diff`` show them as columns.

Every file is a pure function of the tables (no date, no run id): the same results give the same bytes.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from models.names import column_key
from pipelines.core.files import write_json, write_text

CURVES_FILE = "curves.csv"
CURVE_COLUMNS = ("step", "loss", "val_psnr")
PLOTS_DIR = "plots"  # under metrics/
HEADLINE_FILE = "headline.json"
ABLATION_COLUMNS = ("variant", "psnr", "psnr_gain", "ci_low", "ci_high", "n_images")
T_SWEEP_COLUMNS = ("T", "psnr", "psnr_gain", "ci_low", "ci_high", "n_images")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _csv(columns, rows) -> str:
    return "\n".join([",".join(columns)] + [",".join(_cell(row.get(c)) for c in columns) for row in rows]) + "\n"


def training_curves_csv(loss_log: list, val_log: list) -> str:
    """``step,loss,val_psnr`` from a training state's ``loss_log`` ([step, mean loss]) and ``val_log``
    ([step, psnr, ...]); one row per step that has either."""
    rows: dict[int, dict] = {}
    for step, loss in loss_log or []:
        rows.setdefault(int(step), {"step": int(step)})["loss"] = loss
    for entry in val_log or []:
        rows.setdefault(int(entry[0]), {"step": int(entry[0])})["val_psnr"] = entry[1]
    return _csv(CURVE_COLUMNS, [rows[s] for s in sorted(rows)])


def write_training_curves(path: str | os.PathLike, loss_log: list, val_log: list) -> Path:
    write_text(path, training_curves_csv(loss_log, val_log))
    return Path(path)


def _gain_row(row: dict) -> dict:
    gain = row.get("gain") or {}
    return {"psnr": row.get("psnr"), "psnr_gain": gain.get("mean"), "ci_low": gain.get("ci_low"),
            "ci_high": gain.get("ci_high"), "n_images": gain.get("n_images")}


def ablation_csv(table: dict) -> str:
    return _csv(ABLATION_COLUMNS, [{"variant": row["variant"], **_gain_row(row)} for row in table.get("rows", [])])


def t_sweep_csv(table: dict) -> str:
    rows = sorted((row for row in table.get("rows", []) if row.get("T") is not None), key=lambda r: r["T"])
    return _csv(T_SWEEP_COLUMNS, [{"T": row["T"], **_gain_row(row)} for row in rows])


def headline(tables: dict) -> dict:
    """The headline numbers of the metric tables (PSNR gains in dB), as a flat-ish dict of numbers."""
    out: dict = {}
    t1 = tables.get("table1") or {}
    for row in t1.get("rows", []):
        gain = (row.get("gain") or {}).get("psnr") or {}
        if gain.get("mean") is not None:
            column = column_key(row["dataset"], row.get("scoring"))  # a RealBlur set: one column per scoring
            out.setdefault("table1_psnr_gain", {}).setdefault(column, {})[row["backbone"]] = gain["mean"]
    for column, values in (t1.get("average_gain") or {}).items():
        if (values or {}).get("psnr") is not None:
            out.setdefault("table1_psnr_gain", {}).setdefault(column, {})["average"] = values["psnr"]
    for name in ("ablation_prior", "ablation_stages"):
        rows = (tables.get(name) or {}).get("rows", [])
        gains = {row["variant"]: row["gain"]["mean"] for row in rows if (row.get("gain") or {}).get("mean") is not None}
        if gains:
            out[f"{name}_psnr_gain"] = gains
    sweep = [row for row in (tables.get("t_sweep") or {}).get("rows", [])
             if row.get("T") is not None and (row.get("gain") or {}).get("mean") is not None]
    if sweep:
        out["t_sweep_psnr_gain"] = {f"T{row['T']}": row["gain"]["mean"] for row in sorted(sweep, key=lambda r: r["T"])}
        out["t_sweep_best_T"] = max(sweep, key=lambda r: (r["gain"]["mean"], -r["T"]))["T"]
    return out


def write_plot_data(tables: dict, metrics_dir: str | os.PathLike) -> list[Path]:
    """Write ``metrics/plots/*.csv`` and ``metrics/headline.json`` from the tables; returns the paths."""
    metrics_dir = Path(metrics_dir)
    written = []
    for name, text in (("t_sweep.csv", t_sweep_csv(tables.get("t_sweep") or {})),
                       ("ablation_prior.csv", ablation_csv(tables.get("ablation_prior") or {})),
                       ("ablation_stages.csv", ablation_csv(tables.get("ablation_stages") or {}))):
        path = metrics_dir / PLOTS_DIR / name
        write_text(path, text)
        written.append(path)
    write_json(metrics_dir / HEADLINE_FILE, headline(tables))
    written.append(metrics_dir / HEADLINE_FILE)
    return written
