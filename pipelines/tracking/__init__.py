"""MLflow tracking: every job is one MLflow run in one store.

Modules: :mod:`.store` (where records go, links into the UI), :mod:`.runs` (:class:`~.runs.Tracker`, one run),
:mod:`.lineage` (git, DVC experiment, upstream runs, dataset inputs), :mod:`.evaluation_records` (test
results onto training runs, a logged model loaded again), :mod:`.ui_server` (``blurdm-bench ui``).

Store: ``$MLFLOW_TRACKING_URI`` if set, else ``params.mlflow_tracking_uri`` if set, else
``sqlite:///<repo_root>/mlflow.db`` (absolute, so DVC's working directory does not matter).
Artifacts of a sqlite store go to ``<folder of the .db>/mlartifacts/<experiment>`` (for the default
store: ``<repo>/mlartifacts``). One experiment per study (``table1``, ``ablation-prior``,
``ablation-stages``, ``t-sweep``).

MLflow is imported lazily (it takes seconds) and only after telemetry is switched off
(``MLFLOW_DISABLE_TELEMETRY=true``) and its HTTP retries are capped. :class:`~.runs.Tracker` with ``enabled=False``
does nothing, so callers never branch on whether tracking is on. When it is on, a store that cannot be used
(corrupt, locked, read-only, unreachable, in a folder that does not exist, or copied with artifact locations
that point into the original) is a :class:`~.store.TrackingError` naming it (:class:`~.store.GuardedClient`).

MLflow's own conventions (what the UI and ``MlflowClient`` users expect):

* source tags: ``mlflow.source.name`` (the module that ran), ``mlflow.source.type`` (``LOCAL``),
  ``mlflow.source.git.commit`` / ``.branch`` / ``.dirty`` / ``.repoURL`` (:func:`.lineage.source_tags`);
* nested runs: every training run is the child (``mlflow.parentRunId``) of one parent run per
  study x backbone (or ablation variant / T) x seed, the ``group`` (``table1/mimo_unet/seed0``); the
  parent carries the tag ``blurdm.group`` and, inside a DVC experiment, ``blurdm.dvc_exp``
  (``$DVC_EXP_NAME``), so two experiments never share a parent (:meth:`.runs.Tracker.start`);
* dataset inputs: the training set (context ``training``) and every test set (context ``testing``)
  as ``mlflow.data`` datasets: name, digest = sha256 of the dataset's ``manifest.json`` (its first
  36 hex digits, MLflow's digest limit; the whole sha256 is the input tag ``manifest_sha256``),
  source = the dataset folder (:func:`.lineage.dataset_for`);
* the model: artifact folder ``model/`` with ``model.pt`` (weights + spec, loadable with
  ``torch.load(weights_only=True)``) and ``spec.json``; :func:`.evaluation_records.load_logged_model` downloads and loads
  it again;
* test results: :func:`.evaluation_records.log_evaluation` puts every evaluation's means (and the spread over sampling
  seeds) onto the training run it evaluated, as ``test/<dataset>/<metric>`` (the oracle:
  ``oracle_test/...``), so the runs sort by test PSNR in the UI.
"""
