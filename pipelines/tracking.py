"""MLflow tracking: every job is one MLflow run in one store.

Store: ``$MLFLOW_TRACKING_URI`` if set, else ``params.mlflow_tracking_uri`` if set, else
``sqlite:///<repo_root>/mlflow.db`` (absolute, so DVC's working directory does not matter).
Artifacts of a sqlite store go to ``<folder of the .db>/mlartifacts/<experiment>`` (for the default
store: ``<repo>/mlartifacts``). One experiment per study (``table1``, ``ablation-prior``,
``ablation-stages``, ``t-sweep``).

MLflow is imported lazily (it takes seconds) and only after telemetry is switched off
(``MLFLOW_DISABLE_TELEMETRY=true``). :class:`Tracker` with ``enabled=False`` does nothing, so
callers never branch on whether tracking is on.

MLflow's own conventions (what the UI and ``MlflowClient`` users expect):

* source tags: ``mlflow.source.name`` (the module that ran), ``mlflow.source.type`` (``LOCAL``),
  ``mlflow.source.git.commit`` / ``.branch`` / ``.dirty`` / ``.repoURL`` (:func:`source_tags`);
* nested runs: every training run is the child (``mlflow.parentRunId``) of one parent run per
  study x backbone (or ablation variant / T) x seed, the ``group`` (``table1/mimo_unet/seed0``); the
  parent carries the tag ``blurdm.group`` and, inside a DVC experiment, ``blurdm.dvc_exp``
  (``$DVC_EXP_NAME``), so two experiments never share a parent (:meth:`Tracker.start`);
* dataset inputs: the training set (context ``training``) and every test set (context ``testing``)
  as ``mlflow.data`` datasets: name, digest = sha256 of the dataset's ``manifest.json`` (its first
  36 hex digits, MLflow's digest limit; the whole sha256 is the input tag ``manifest_sha256``),
  source = the dataset folder (:func:`dataset_for`);
* the model: artifact folder ``model/`` with ``model.pt`` (weights + spec, loadable with
  ``torch.load(weights_only=True)``) and ``spec.json``; :func:`load_logged_model` downloads and loads
  it again;
* test results: :func:`log_evaluation` puts every evaluation's means (and the spread over sampling
  seeds) onto the training run it evaluated, as ``test/<dataset>/<metric>`` (the oracle:
  ``oracle_test/...``), so the runs sort by test PSNR in the UI.
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
    from pipelines.core.config import shared_root

    return f"sqlite:///{(shared_root() / 'mlflow.db').as_posix()}"


def ui_url(configured: str | None = None, local_ui: str = "http://127.0.0.1:5000") -> str:
    """Where the MLflow UI of the tracking store is: the tracking server itself for an http(s) store,
    else ``local_ui`` (what ``blurdm-bench ui`` serves for a file / sqlite store)."""
    uri = default_tracking_uri(configured)
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else local_ui


def run_href(ui: str, run_ids: list[str], experiments: dict[str, str] | None = None) -> str | None:
    """A link into the MLflow UI at ``ui``: the run page of one run; for several runs (training seeds)
    the compare page (it needs their experiment ids: ``experiments``), else the first run's page."""
    ids = [r for r in dict.fromkeys(run_ids or []) if r]
    if not ids:
        return None
    ui = ui.rstrip("/")
    exps = [(experiments or {}).get(r) for r in ids]
    if len(ids) == 1 or not all(exps):
        return f"{ui}/#/runs/{ids[0]}"
    from urllib.parse import quote

    return (f"{ui}/#/compare-runs?runs={quote(json.dumps(ids, separators=(',', ':')))}"
            f"&experiments={quote(json.dumps(sorted(set(exps)), separators=(',', ':')))}")


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


UNKNOWN_COMMIT = "unknown"


def git_commit(root: str | os.PathLike | None = None, mark_dirty: bool = True) -> str:
    """HEAD's commit hash of the repository (with ``-dirty`` if tracked files changed, unless
    ``mark_dirty`` is false), or :data:`UNKNOWN_COMMIT` outside a git checkout."""
    if root is None:
        from pipelines.core.config import repo_root

        root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return UNKNOWN_COMMIT
        if not mark_dirty:
            return head.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT


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
        if self._client is None:
            from pipelines.core.environment import set_offline_env

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
                self.run_id = run.info.run_id
                self.experiment_id = run.info.experiment_id
                self.client.update_run(self.run_id, status="RUNNING")
                self.parent_id = run.data.tags.get(PARENT_RUN_TAG)
                self._mark_parent("RUNNING")
                return self.run_id
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
        self.client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(), tags=[
            InputTag("mlflow.data.context", context), InputTag("manifest_sha256", info["sha256"]),
            InputTag("digest_of", info["digest_of"])])])
        return info

    def log_model(self, model_file: str | os.PathLike, sha256: str, spec: dict, meta: dict | None = None) -> None:
        """The trained model as the artifact folder ``model/``: ``model.pt`` and ``spec.json``."""
        if not (self.enabled and self.run_id):
            return
        model_file = Path(model_file)
        card = {"format": MODEL_FORMAT, "file": MODEL_FILE, "sha256": sha256, "bytes": model_file.stat().st_size,
                "spec": spec, "meta": meta or {},
                "load": "pipelines.tracking.load_logged_model(run_id) or "
                        "models.deblur_model.load_deblur_model('model/model.pt')"}
        self.client.log_artifact(self.run_id, str(model_file), MODEL_ARTIFACT)
        self.client.log_dict(self.run_id, card, f"{MODEL_ARTIFACT}/{MODEL_CARD}")
        self.set_tags({"model_checkpoint.sha256": sha256})


PARENT_RUN_TAG = "mlflow.parentRunId"
GROUP_TAG = "blurdm.group"
LINEAGE_TAG = "blurdm.dvc_exp"
ROLE_TAG = "blurdm.role"
NO_DVC_EXP = "none"
MODEL_ARTIFACT = "model"
MODEL_FILE = "model.pt"
MODEL_CARD = "spec.json"
MODEL_FORMAT = "blurdm-bench/model"
DIGEST_LIMIT = 36  # MLflow's maximum dataset digest length
LISTING_HASH_LIMIT = 256 * 2**20  # a dataset folder without manifest.json: hash file contents up to this size
TEST_PREFIX, ORACLE_PREFIX = "test", "oracle_test"


def _quote(value: str) -> str:
    return str(value).replace("'", "\\'")


def dvc_experiment_name() -> str:
    """``$DVC_EXP_NAME`` (set by ``dvc exp run`` / the DVC queue for every stage it runs), else ``none``."""
    return os.environ.get("DVC_EXP_NAME") or NO_DVC_EXP


def _git(root, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_tags(source_name: str, root: str | os.PathLike | None = None) -> dict[str, str]:
    """MLflow's standard source tags: ``mlflow.source.name`` / ``.type`` and the git commit (without
    ``-dirty``: that is ``mlflow.source.git.dirty``), branch and remote URL when known, of the checkout
    that holds this code (else of the repo root)."""
    if root is None:
        from pipelines.core.config import repo_root

        code = Path(__file__).resolve().parents[1]
        root = code if (code / ".git").exists() else repo_root()
    tags = {"mlflow.source.name": source_name, "mlflow.source.type": "LOCAL"}
    commit = git_commit(root)
    if commit != UNKNOWN_COMMIT:
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
        tags["mlflow.source.git.dirty"] = "true" if commit.endswith("-dirty") else "false"
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        remote = _git(root, "config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
    return tags


def upstream_run_ids(init: dict) -> list[str]:
    """MLflow run ids of the source models of a job (``init``: name -> {"path": model.pt, ...}), read
    from the ``metrics.json`` beside each model file."""
    ids = []
    for source in (init or {}).values():
        path = Path(source.get("path", "")) if isinstance(source, dict) else None
        metrics = path.parent / "metrics.json" if path else None
        try:
            run_id = json.loads(metrics.read_text()).get("mlflow_run_id") if metrics else None
        except (OSError, ValueError):
            run_id = None
        if run_id:
            ids.append(run_id)
    return ids


# --------------------------------------------------------------------------------------------------
# datasets

def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def dataset_manifest(root: str | os.PathLike) -> Path | None:
    """``manifest.json`` of the dataset holding ``root`` (the folder itself or its parent:
    ``data/synthetic/train`` -> ``data/synthetic/manifest.json``), or None."""
    root = Path(root)
    for folder in (root, root.parent):
        if (folder / "manifest.json").is_file():
            return folder / "manifest.json"
    return None


def dataset_for(root: str | os.PathLike, name: str | None = None):
    """``(mlflow.data MetaDataset, info)`` of the dataset folder ``root``: digest = sha256 of its
    manifest; a folder without one (the committed real crops) gets the sha256 of its file listing
    (relative path + sha256 of every file, sorted; above :data:`LISTING_HASH_LIMIT` bytes in all, the
    file sizes instead of their sha256)."""
    from pipelines.core.environment import set_offline_env

    set_offline_env()
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset

    from pipelines.core.files import sha256_file

    root = Path(root).resolve()
    manifest = dataset_manifest(root)
    if manifest is not None:
        sha, digest_of = sha256_file(manifest), f"{manifest.parent.name}/manifest.json"
    else:  # (a large folder: names and sizes only, not every byte)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        by_content = sum(p.stat().st_size for p in files) <= LISTING_HASH_LIMIT
        listing = "".join(f"{p.relative_to(root).as_posix()}\t{sha256_file(p) if by_content else p.stat().st_size}\n"
                          for p in files)
        sha = _sha256_bytes(listing.encode())
        digest_of = f"file listing (relative path + {'sha256' if by_content else 'size'} of every file)"
    split = root.name if root.name in ("train", "training", "val", "test") else None
    name = f"{name or root.parent.name}/{split}" if split else (name or root.name)
    source = get_dataset_source_from_json(json.dumps({"uri": root.as_uri()}), source_type="local")
    dataset = MetaDataset(source, name=name, digest=sha[:DIGEST_LIMIT])
    return dataset, {"name": name, "sha256": sha, "digest": sha[:DIGEST_LIMIT], "digest_of": digest_of,
                     "source": root.as_uri()}


# --------------------------------------------------------------------------------------------------
# the model, downloaded again

def load_logged_model(run_id: str, uri: str | None = None, dst: str | os.PathLike | None = None):
    """Download the ``model/`` artifact of ``run_id`` and load it: ``(DeblurModel, spec)``. The file's
    sha256 must match ``spec.json`` (what training logged)."""
    import tempfile

    from models.deblur_model import load_deblur_model
    from pipelines.core.files import sha256_file

    tracker = Tracker(uri)
    folder = Path(tracker.client.download_artifacts(run_id, MODEL_ARTIFACT, str(dst) if dst else tempfile.mkdtemp()))
    card = json.loads((folder / MODEL_CARD).read_text())
    if card.get("format") != MODEL_FORMAT or sha256_file(folder / MODEL_FILE) != card.get("sha256"):
        raise ValueError(f"run {run_id}: {MODEL_ARTIFACT}/{MODEL_FILE} does not match its {MODEL_CARD}")
    return load_deblur_model(folder / MODEL_FILE)


# --------------------------------------------------------------------------------------------------
# evaluation results onto the training run

def public_text(text: str) -> str:
    """``text`` with absolute / home paths cut to their file names (no paths of the producing machine in
    tags or in the report): ``/root/.cache/x/alexnet.pth`` -> ``alexnet.pth``."""
    import re

    return re.sub(r"(?:~|[A-Za-z]:\\|/)[^\s,;:()'\"<>{}]*[/\\]([^/\\\s,;:()'\"<>{}]+)", r"\1", text)


def evaluation_metrics(summary: dict, dataset: str, oracle: bool = False) -> dict[str, float]:
    """``{"test/<dataset>/<metric>": mean, ".../<metric>_seed_std": spread over sampling seeds, ...}``
    of an evaluation's ``summary.json`` (``oracle_test/...`` for the oracle); NA metrics are left out."""
    prefix = f"{ORACLE_PREFIX if oracle else TEST_PREFIX}/{dataset}"
    out: dict[str, float] = {}
    for metric in ("psnr", "ssim", "ssim3d", "lpips"):
        entry = (summary.get("metrics") or {}).get(metric) or {}
        mean = entry.get("mean")
        if isinstance(mean, (int, float)) and not isinstance(mean, bool):
            out[f"{prefix}/{metric}"] = float(mean)
            if isinstance(entry.get("std"), (int, float)):
                out[f"{prefix}/{metric}_seed_std"] = float(entry["std"])
        inp = ((summary.get("input_metrics") or {}).get(metric) or {}).get("mean")
        if isinstance(mean, (int, float)) and isinstance(inp, (int, float)) and not isinstance(inp, bool):
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
        tracker.client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - another store, or the run was deleted
        warnings.warn(f"MLflow run {run_id} of {metrics_file} not found in {tracker.uri} ({err}); "
                      "test results not logged", stacklevel=2)
        return None
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
