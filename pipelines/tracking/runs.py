"""One MLflow run: :class:`Tracker` starts (or reopens) it, logs params, metrics, artifacts, datasets and the
model, and ends it; every training run is nested in the parent run of its group.

MLflow is imported lazily (it takes seconds) and only after telemetry is switched off
(``MLFLOW_DISABLE_TELEMETRY=true``). A :class:`Tracker` with ``enabled=False`` does nothing, so
callers never branch on whether tracking is on.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

from pipelines.core.environment import set_offline_env
from pipelines.tracking.lineage import NO_DVC_EXP, dataset_for, dvc_experiment_name
from pipelines.tracking.store import (
    GuardedClient,
    TrackingError,
    artifact_root_for,
    check_artifact_location,
    check_store,
    default_tracking_uri,
)

_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_VALUE = 6000
PARENT_RUN_TAG = "mlflow.parentRunId"
# what the store says when another process inserted the same dataset row first (sqlite; other databases word it
# otherwise, and a server store serialises the inserts itself), and how often log_dataset tries
DATASET_RACE = "UNIQUE constraint failed: datasets."
DATASET_RACE_TRIES = 3
GROUP_TAG = "blurdm.group"
LINEAGE_TAG = "blurdm.dvc_exp"
ROLE_TAG = "blurdm.role"
MODEL_ARTIFACT = "model"
MODEL_FILE = "model.pt"
MODEL_CARD = "spec.json"
MODEL_FORMAT = "blurdm-bench/model"


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




class Tracker:
    """One MLflow run: ``start`` (or reopen), ``log_metrics``, ``log_artifact``, ``end``."""

    def __init__(self, uri: str | None = None, enabled: bool = True):
        self.enabled = enabled
        self.uri = default_tracking_uri(uri) if enabled else None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client = None
        self._pending: list = []
        self.parent_id: str | None = None

    @property
    def client(self):
        """The store's ``MlflowClient``; every failure of the store is a :class:`TrackingError` naming it
        (:class:`GuardedClient`), and a local store whose folder does not exist is refused first."""
        if self._client is None:
            set_offline_env()  # also caps MLflow's HTTP retries before mlflow is imported
            check_store(self.uri)
            self._client = GuardedClient(self.uri)
        return self._client

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            check_artifact_location(self.uri, exp.artifact_location, f"experiment {name!r}")
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

    def client_experiment(self, name: str) -> str | None:
        """Open the store (creating its tables when it is new) and the experiment ``name``; its id (None when
        tracking is off). Done once by a stage before its seeds' processes start, so they never race for it."""
        return self._experiment(name) if self.enabled else None

    def start(self, experiment: str, run_name: str, tags: dict, params: dict,
              run_id: str | None = None, parent: dict | None = None) -> str | None:
        """Create a run (logging ``tags`` and flattened ``params``) or reopen ``run_id`` on resume.

        ``parent``: ``{"group", "role", "upstream", "tags"}``: the new run becomes a child of the group's
        parent run (:meth:`_parent_run`)."""
        if not self.enabled:
            return None
        from mlflow.entities import Param

        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                check_artifact_location(self.uri, run.info.artifact_uri, f"run {run_id}")
                self.run_id = run.info.run_id
                self.experiment_id = run.info.experiment_id
                self.client.update_run(self.run_id, status="RUNNING")
                self.parent_id = run.data.tags.get(PARENT_RUN_TAG)
                self._mark_parent("RUNNING")
                return self.run_id
            except TrackingError:
                raise
            except Exception as err:  # noqa: BLE001 - store changed / run deleted: start a new run
                warnings.warn(f"MLflow run {run_id} cannot be reopened ({err}); starting a new run", stacklevel=2)
        self.experiment_id = self._experiment(experiment)
        str_tags = {k: str(v) for k, v in tags.items() if v is not None}
        if parent is not None:
            self.parent_id = self._parent_run(**parent)
            str_tags[PARENT_RUN_TAG] = self.parent_id
            str_tags[ROLE_TAG] = str(parent["role"])
            self._mark_parent("RUNNING")
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
            self._mark_parent(status)

    # ---- nested runs: one parent per group (study x backbone / variant x seed)
    def _parent_run(self, group: str, role: str, upstream: list[str] | None = None, tags: dict | None = None) -> str:
        """The parent run of ``group`` in this experiment: the parent of an upstream run of the same
        group (stage 2 -> its stage 1, stage 3 -> its stage 2), else the newest parent of the group in
        this DVC experiment when it holds no run of ``role`` yet, else a new parent."""
        client = self.client
        for run_id in upstream or []:
            try:
                up = client.get_run(run_id)
                parent_id = up.data.tags.get(PARENT_RUN_TAG)
                same_parent = (up.info.experiment_id == self.experiment_id and parent_id
                               and client.get_run(parent_id).data.tags.get(GROUP_TAG) == group)
            except TrackingError:
                raise
            except Exception:  # noqa: BLE001 - an upstream run from another store / deleted: ignore it
                same_parent = False
            if same_parent:
                return parent_id
        lineage = dvc_experiment_name()
        same_group = f"tags.`{GROUP_TAG}` = '{_quote(group)}' and tags.`{LINEAGE_TAG}` = '{_quote(lineage)}'"
        newest = client.search_runs([self.experiment_id], same_group, order_by=["attributes.start_time DESC"],
                                    max_results=1)
        if newest:
            parent_id = newest[0].info.run_id
            same_role = f"tags.`{PARENT_RUN_TAG}` = '{parent_id}' and tags.`{ROLE_TAG}` = '{_quote(role)}'"
            taken = client.search_runs([self.experiment_id], same_role, max_results=1)
            if not taken:
                return parent_id
        parent_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
        where = f" in DVC experiment {lineage}" if lineage != NO_DVC_EXP else ""
        parent_tags.update({GROUP_TAG: group, LINEAGE_TAG: lineage,
                            "mlflow.note.content": f"Every stage of {group}{where}"})
        run = client.create_run(self.experiment_id, run_name=group, tags=parent_tags)
        return run.info.run_id

    def _mark_parent(self, status: str) -> None:
        if not self.parent_id:
            return
        try:
            if status == "RUNNING":
                self.client.update_run(self.parent_id, status="RUNNING")
            else:
                self.client.set_terminated(self.parent_id, status=status)
        except Exception as err:  # noqa: BLE001 - bookkeeping only: never fail a job over it
            warnings.warn(f"MLflow parent run {self.parent_id}: status not updated ({err})", stacklevel=2)

    # ---- inputs and outputs
    def log_dataset(self, root: str | os.PathLike, context: str, name: str | None = None) -> dict | None:
        """Log the dataset under ``root`` as an input of this run (:func:`dataset_for`)."""
        if not (self.enabled and self.run_id):
            return None
        from mlflow.entities import DatasetInput, InputTag

        dataset, info = dataset_for(root, name)
        inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=[
            InputTag("mlflow.data.context", context), InputTag("manifest_sha256", info["sha256"]),
            InputTag("digest_of", info["digest_of"])])]
        for attempt in range(DATASET_RACE_TRIES):
            try:
                self.client.log_inputs(self.run_id, inputs)
                return info
            except TrackingError as err:
                # the seeds of a stage train side by side, each in its own process: two of them may insert the same
                # dataset row at once (MLflow looks it up, then inserts it); the one that loses finds it next time
                if DATASET_RACE not in str(err) or attempt == DATASET_RACE_TRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return info

    def log_model(self, model_file: str | os.PathLike, sha256: str, spec: dict, meta: dict | None = None) -> None:
        """The trained model as the artifact folder ``model/``: ``model.pt`` and ``spec.json``."""
        if not (self.enabled and self.run_id):
            return
        model_file = Path(model_file)
        card = {"format": MODEL_FORMAT, "file": MODEL_FILE, "sha256": sha256, "bytes": model_file.stat().st_size,
                "spec": spec, "meta": meta or {},
                "load": "pipelines.tracking.evaluation_records.load_logged_model(run_id) or "
                        "pipelines.core.checkpoint_files.load_deblur_model('model/model.pt')"}
        self.client.log_artifact(self.run_id, str(model_file), MODEL_ARTIFACT)
        self.client.log_dict(self.run_id, card, f"{MODEL_ARTIFACT}/{MODEL_CARD}")
        self.set_tags({"model_checkpoint.sha256": sha256})



def _quote(value: str) -> str:
    return str(value).replace("'", "\\'")
