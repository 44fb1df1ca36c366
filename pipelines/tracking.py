"""MLflow tracking: every job is one MLflow run in one store.

Store: ``$MLFLOW_TRACKING_URI`` if set, else ``params.mlflow_tracking_uri`` if set, else
``sqlite:///<repo_root>/mlflow.db`` (absolute, so DVC's working directory does not matter).
Artifacts of a sqlite store go to ``<folder of the .db>/mlartifacts/<experiment>`` (for the default
store: ``<repo>/mlartifacts``). One experiment per study (``table1``, ``ablation-prior``,
``ablation-stages``, ``t-sweep``).

MLflow is imported lazily (it takes seconds) and only after telemetry is switched off
(``MLFLOW_DISABLE_TELEMETRY=true``). :class:`Tracker` with ``enabled=False`` does nothing, so
callers never branch on whether tracking is on.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

STUDIES = ("table1", "ablation-prior", "ablation-stages", "t-sweep")
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_VALUE = 6000


def default_tracking_uri(configured: str | None = None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    from pipelines.config import shared_root

    return f"sqlite:///{(shared_root() / 'mlflow.db').as_posix()}"


def artifact_root_for(uri: str) -> str | None:
    """``<db folder>/mlartifacts`` for a sqlite store (a file URI); ``None`` lets the server decide."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = uri[len("sqlite:///"):]
    if not db_path or db_path == ":memory:":
        return None
    return (Path(db_path).resolve().parent / "mlartifacts").as_uri()


def flatten(obj, prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys; lists and scalars as JSON text (MLflow params are strings)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
        out[prefix] = text[:_MAX_PARAM_VALUE]
    return out


def git_commit(root: str | os.PathLike | None = None) -> str:
    """HEAD's commit hash of the repository (with ``-dirty`` if tracked files changed), or ``unknown``."""
    if root is None:
        from pipelines.config import repo_root

        root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """One MLflow run: ``start`` (or reopen), ``log_metrics``, ``log_artifact``, ``end``."""

    def __init__(self, uri: str | None = None, enabled: bool = True):
        self.enabled = enabled
        self.uri = default_tracking_uri(uri) if enabled else None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client = None
        self._pending: list = []

    @property
    def client(self):
        if self._client is None:
            from pipelines.compat import set_offline_env

            set_offline_env()
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        root = artifact_root_for(self.uri)
        location = f"{root}/{name}" if root else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created by a concurrent job in the meantime
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start(self, experiment: str, run_name: str, tags: dict, params: dict,
              run_id: str | None = None) -> str | None:
        """Create a run (logging ``tags`` and flattened ``params``) or reopen ``run_id`` on resume."""
        if not self.enabled:
            return None
        from mlflow.entities import Param

        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                self.run_id = run.info.run_id
                self.experiment_id = run.info.experiment_id
                self.client.update_run(self.run_id, status="RUNNING")
                return self.run_id
            except Exception as err:  # noqa: BLE001 - store changed / run deleted: start a new run
                warnings.warn(f"MLflow run {run_id} cannot be reopened ({err}); starting a new run", stacklevel=2)
        self.experiment_id = self._experiment(experiment)
        str_tags = {k: str(v) for k, v in tags.items() if v is not None}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=str_tags)
        self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH])
        return self.run_id

    def set_tags(self, tags: dict) -> None:
        if self.enabled and self.run_id:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = True) -> None:
        """Queue metrics at ``step``; written in one batch on ``flush`` (or by :meth:`flush`)."""
        if not self.enabled or not self.run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if v is not None]
        if flush:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or not self.run_id or not self._pending:
            return
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=pending[i:i + _MAX_METRICS_PER_BATCH])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled and self.run_id:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_file_reference(self, path: str | os.PathLike, name: str, sha256: str, extra: dict | None = None) -> dict:
        """Log a JSON reference to a file (absolute path, size, sha256), not the file itself."""
        path = Path(path).resolve()
        ref = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256, **(extra or {})}
        if self.enabled and self.run_id:
            self.client.log_dict(self.run_id, ref, f"{name}.json")
            self.set_tags({f"{name}.sha256": sha256, f"{name}.path": str(path)})
        return ref

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self.flush()
            self.client.set_terminated(self.run_id, status=status)
