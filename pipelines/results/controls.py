"""The study's positive controls: could it have detected what it claims? (``metrics/controls.json``)

A verdict on one of the paper's claims is only as good as the study behind it. Two controls say whether
the study could answer at all, and the report gates every claim on them (:mod:`reports.claims`):

* **deblurring**: every model of a comparison deblurs, i.e. its PSNR gain over the blurred input it was
  given (paired over images, bootstrap 95% CI; per-image values averaged over training and evaluation
  seeds) has its CI low end above ``controls.deblurring_min_gain_db``. A model that does not beat doing
  nothing tells nothing about a prior.
* **sensitivity**: the oracle prior (the stage-1 model fed ``SE(blur, sharp)``: the latent a perfect prior
  would give) beats the no-prior baseline, its CI low end above ``controls.sensitivity_min_gain_db``, on the
  test set of each ablation column. If even a perfect prior shows no gain, a study that finds none for
  BlurDM has shown nothing about BlurDM.

``pipeline_check`` is true for the smoke profile: its models train for a few steps, its numbers check the
pipeline, never the paper. Computed by the tables stage from the tables it has just built (no other input).
"""
from __future__ import annotations

from models.names import column_key
from pipelines.core.config import Params

CONTROL_NAMES = ("deblurring", "sensitivity")
PIPELINE_CHECK_PROFILES = ("smoke",)


def _gain(g: dict | None) -> dict | None:
    if not g:
        return None
    return {k: g[k] for k in ("mean", "ci_low", "ci_high", "seed_std", "n_images", "n_seeds")}


def _entry(kind: str, column: str, backbone: str, model: str, gain: dict | None, threshold: float,
           **where) -> dict:
    gain = _gain(gain)
    return {"control": kind, "column": column, "backbone": backbone, "model": model, **where, "gain": gain,
            "threshold_db": threshold, "passed": gain is not None and gain["ci_low"] > threshold}


def _ablation_rows(table: dict) -> list[tuple[str, list[dict]]]:
    """``(column, rows)`` of an ablation table: its first column and every other one."""
    if not table or not table.get("rows"):
        return []
    return [(table["dataset"], table["rows"])] + [(c, o["rows"]) for c, o in (table.get("other_datasets") or {}).items()]


def deblurring_controls(tables: dict, threshold: float) -> list[dict]:
    """Every model's gain over the blurred input: each Table-1 side, and each ablation variant (once per column)."""
    out = []
    for row in tables["table1"]["rows"]:
        column = column_key(row["dataset"], row.get("scoring"))
        for side in ("baseline", "blurdm"):
            gain = ((row.get("over_input") or {}).get(side) or {}).get("psnr")
            out.append(_entry("deblurring", column, row["backbone"], side, gain, threshold, study="table1",
                              train_set=row.get("train_set")))
    seen = set()
    for name in ("ablation_prior", "ablation_stages", "t_sweep"):
        table = tables.get(name) or {}
        for column, rows in _ablation_rows(table):
            for row in rows:
                key = (column, row["variant"])
                if key in seen:
                    continue
                seen.add(key)
                out.append(_entry("deblurring", column, table["backbone"], row["variant"], row.get("over_input"),
                                  threshold, study="ablations", train_set=table.get("train_set")))
    return out


def sensitivity_controls(tables: dict, threshold: float) -> list[dict]:
    """The oracle against the no-prior baseline on every column of the ablations."""
    table = tables.get("ablation_prior") or {}
    out = []
    for column, rows in _ablation_rows(table):
        oracle = next((r for r in rows if r["variant"] == "oracle"), None)
        out.append(_entry("sensitivity", column, table["backbone"], "oracle", oracle and oracle.get("gain"),
                          threshold, study="ablations", train_set=table.get("train_set")))
    return out


def build_controls(params: Params, tables: dict) -> dict:
    """``metrics/controls.json``: every control, whether it passed, and a summary per control and column."""
    thresholds = params.controls
    entries = {"deblurring": deblurring_controls(tables, thresholds.deblurring_min_gain_db),
               "sensitivity": sensitivity_controls(tables, thresholds.sensitivity_min_gain_db)}
    summary = {}
    for kind, items in entries.items():
        columns = sorted({e["column"] for e in items})
        summary[kind] = {"passed": sum(e["passed"] for e in items), "total": len(items),
                         "by_column": {c: all(e["passed"] for e in items if e["column"] == c) for c in columns}}
    meta = {k: v for k, v in tables["table1"]["meta"].items() if k != "date"}  # the date: run_info/ only
    return {"meta": meta,
            "pipeline_check": params.profile in PIPELINE_CHECK_PROFILES,
            "thresholds": {"deblurring_min_gain_db": thresholds.deblurring_min_gain_db,
                           "sensitivity_min_gain_db": thresholds.sensitivity_min_gain_db,
                           "confidence": tables["table1"]["meta"]["bootstrap"]["confidence"]},
            **entries, "summary": summary}
