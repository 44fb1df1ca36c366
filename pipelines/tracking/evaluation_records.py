"""Test results onto the training run of the model they score, and a logged model downloaded again.

:func:`log_evaluation` puts every evaluation's means (and the spread over sampling seeds) onto the training
run it evaluated, as ``test/<dataset>/<metric>`` (the oracle: ``oracle_test/...``), one per metric of the
registry (:data:`models.names.METRICS`), so the runs sort by test PSNR in the UI. :func:`load_logged_model`
downloads a run's ``model/`` artifact and loads it.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

from models.names import METRIC_NAMES
from pipelines.core.checkpoint_files import load_deblur_model
from pipelines.core.errors import InvalidInputError
from pipelines.core.files import sha256_file
from pipelines.tracking.runs import (
    MODEL_ARTIFACT,
    MODEL_CARD,
    MODEL_FILE,
    MODEL_FORMAT,
    Tracker,
)
from pipelines.tracking.store import TrackingError, check_artifact_location, public_text

TEST_PREFIX, ORACLE_PREFIX = "test", "oracle_test"


def load_logged_model(run_id: str, uri: str | None = None, dst: str | os.PathLike | None = None):
    """Download the ``model/`` artifact of ``run_id`` and load it: ``(DeblurModel, spec)``. The file's
    sha256 must match ``spec.json`` (what training logged)."""
    tracker = Tracker(uri)
    folder = Path(tracker.client.download_artifacts(run_id, MODEL_ARTIFACT, str(dst) if dst else tempfile.mkdtemp()))
    card = json.loads((folder / MODEL_CARD).read_text())
    if card.get("format") != MODEL_FORMAT or sha256_file(folder / MODEL_FILE) != card.get("sha256"):
        raise InvalidInputError(f"run {run_id}: {MODEL_ARTIFACT}/{MODEL_FILE} does not match its {MODEL_CARD}")
    return load_deblur_model(folder / MODEL_FILE)


# --------------------------------------------------------------------------------------------------
# evaluation results onto the training run

def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def evaluation_metrics(summary: dict, dataset: str, oracle: bool = False) -> dict[str, float]:
    """``{"test/<dataset>/<metric>": mean, ".../<metric>_seed_std": spread over sampling seeds, ...}``
    of an evaluation's ``summary.json`` (``oracle_test/...`` for the oracle); NA metrics are left out, and
    so is a non-finite value (an older summary's infinite PSNR: MLflow would store it as 1.8e308)."""
    prefix = f"{ORACLE_PREFIX if oracle else TEST_PREFIX}/{dataset}"
    out: dict[str, float] = {}
    for metric in METRIC_NAMES:
        entry = (summary.get("metrics") or {}).get(metric) or {}
        mean = entry.get("mean")
        if _finite(mean):
            out[f"{prefix}/{metric}"] = float(mean)
            if _finite(entry.get("std")):
                out[f"{prefix}/{metric}_seed_std"] = float(entry["std"])
        inp = ((summary.get("input_metrics") or {}).get(metric) or {}).get("mean")
        if _finite(mean) and _finite(inp):
            out[f"{prefix}/{metric}_blurred_input"] = float(inp)
    if summary.get("n_images") is not None:
        out[f"{prefix}/n_images"] = float(summary["n_images"])
    out[f"{prefix}/n_sampling_seeds"] = float(len(summary.get("eval_seeds") or []) or 1)
    return out


def log_evaluation(run_dir: str | os.PathLike, summary: dict, dataset: str, data_root: str | os.PathLike | None,
                   eval_dir: str | os.PathLike | None = None, oracle: bool = False,
                   uri: str | None = None) -> str | None:
    """Log the test results of the model in ``run_dir`` onto its training run (``mlflow_run_id`` of
    ``run_dir/metrics.json``): :func:`evaluation_metrics` at the run's last step, the test set as a
    ``testing`` input, ``summary.json`` / ``scores.csv`` under ``evaluation/<dataset>/``. Returns the
    run id, or None (with a warning) when there is no run to log to."""
    metrics_file = Path(run_dir) / "metrics.json"
    try:
        record = json.loads(metrics_file.read_text())
    except (OSError, ValueError):
        warnings.warn(f"{metrics_file}: unreadable; test results not logged to MLflow", stacklevel=2)
        return None
    run_id = record.get("mlflow_run_id")
    if not run_id:
        warnings.warn(f"{metrics_file}: no MLflow run (trained with --no-mlflow); test results not logged",
                      stacklevel=2)
        return None
    tracker = Tracker(uri)
    try:
        run = tracker.client.get_run(run_id)
    except TrackingError:
        raise  # the store itself failed (corrupt, locked, read-only, unreachable): never a silent exit 0
    except Exception as err:  # noqa: BLE001 - another store, or the run was deleted
        warnings.warn(f"MLflow run {run_id} of {metrics_file} not found in {tracker.uri} ({err}); "
                      "test results not logged", stacklevel=2)
        return None
    check_artifact_location(tracker.uri, run.info.artifact_uri, f"run {run_id} (of {metrics_file})")
    tracker.run_id = run_id
    tracker.log_metrics(evaluation_metrics(summary, dataset, oracle), int(record.get("steps") or 0))
    prefix = f"{ORACLE_PREFIX if oracle else TEST_PREFIX}/{dataset}"
    if summary.get("lpips_available") is False:
        tracker.set_tags({f"{prefix}/lpips": "unavailable: " + public_text(str(summary.get("lpips_reason") or "n/a"))})
    if data_root is not None:
        tracker.log_dataset(data_root, context="testing", name=dataset)
    if eval_dir is not None:
        for name in ("summary.json", "scores.csv"):
            if (Path(eval_dir) / name).is_file():
                tracker.log_artifact(Path(eval_dir) / name, f"evaluation{'-oracle' if oracle else ''}/{dataset}")
    return run_id
