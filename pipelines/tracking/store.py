"""Where MLflow records go (the tracking store), how the report links into the MLflow UI, and what text tags
and the report may show (:func:`public_text`: no paths of the producing machine).

Store: ``$MLFLOW_TRACKING_URI`` if set, else ``params.mlflow_tracking_uri`` if set, else
``sqlite:///<repo_root>/mlflow.db`` (absolute, so DVC's working directory does not matter).
Artifacts of a sqlite store go to ``<folder of the .db>/mlartifacts/<experiment>``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote, urlparse

from pipelines.core.config import shared_root
from pipelines.core.errors import InvalidInputError, UserError


def default_tracking_uri(configured: str | None = None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{(shared_root() / 'mlflow.db').as_posix()}"


def ui_url(configured: str | None = None, local_ui: str = "http://127.0.0.1:5000") -> str:
    """Where the MLflow UI of the tracking store is: the tracking server itself for an http(s) store,
    else ``local_ui`` (what ``blurdm-bench ui`` serves for a file / sqlite store)."""
    uri = default_tracking_uri(configured)
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else local_ui


def checked_ui_url(url: str, what: str = "--mlflow-ui") -> str:
    """``url`` when it is an http(s) address with a host (what every run link of the report starts with), else an
    :class:`InvalidInputError`: a ``javascript:`` or ``data:`` address would run script from every link."""
    parsed = urlparse(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname or re.search(r"[\s\x00-\x1f]", url):
        raise InvalidInputError(f"{what} {url!r}: not an http(s) address of the MLflow UI "
                                "(e.g. http://127.0.0.1:5000 or https://mlflow.example.org)")
    return url


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
    return (f"{ui}/#/compare-runs?runs={quote(json.dumps(ids, separators=(',', ':')))}"
            f"&experiments={quote(json.dumps(sorted(set(exps)), separators=(',', ':')))}")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite store URI (also SQLite's own ``file:PATH?mode=ro&uri=true`` form); ``None``
    for another kind of store or an in-memory database."""
    if urlparse(uri).scheme != "sqlite":
        return None
    db_path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    if db_path.startswith("file:"):
        db_path = urlparse(db_path).path
    db_path = db_path.split("?", 1)[0]
    return Path(db_path) if db_path and db_path != ":memory:" else None


def artifact_root_for(uri: str) -> str | None:
    """``<db folder>/mlartifacts`` for a sqlite store (a file URI); ``None`` lets the server decide."""
    db_path = sqlite_path(uri)
    return (db_path.resolve().parent / "mlartifacts").as_uri() if db_path is not None else None


class TrackingError(UserError):
    """The MLflow store cannot be used (corrupt, locked, read-only, unreachable, missing, or a copy whose runs
    would write elsewhere): one line naming the store and the problem, exit 2, unless tracking is off."""

    def __init__(self, uri: str, problem: str, fix: str = "fix the store, or point MLFLOW_TRACKING_URI (or params "
                 "mlflow_tracking_uri) at a working one"):
        super().__init__(f"MLflow store {uri}: {problem}. To go on: {fix} (or train with --no-mlflow)")


def check_store(uri: str) -> None:
    """Refuse a local store (sqlite, or a folder) whose folder does not exist: MLflow would create the folders
    and an empty store there, and every run would land in it unnoticed (a typo in the URI). The default store
    lies in the repository, which exists: it is created on first use."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = sqlite_path(uri)
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri)
    else:
        return  # a server (http, databricks...): it says for itself what it lacks
    if path is not None and not path.absolute().parent.is_dir():
        raise TrackingError(uri, f"the folder {path.absolute().parent} does not exist (a typo? the store is created "
                                 "on first use, its folder is not)")


def check_artifact_location(uri: str, location: str | None, what: str) -> None:
    """Refuse an experiment or run of a sqlite store whose artifacts live outside the store's folder: a study
    copied with its ``mlflow.db`` (``cp -a``) keeps the original's absolute ``file://`` locations, so its runs
    would write into the ORIGINAL's ``mlartifacts/``."""
    db_path = sqlite_path(uri)
    parsed = urlparse(location or "")
    if db_path is None or parsed.scheme not in ("", "file") or not parsed.path.startswith("/"):
        return  # another kind of store, a remote artifact store, or a relative location
    folder = db_path.resolve().parent
    if not Path(parsed.path).resolve().is_relative_to(folder):
        raise TrackingError(uri, f"{what} keeps its artifacts in {parsed.path}, outside this store's folder {folder}: "
                                 "this mlflow.db was copied from another folder, and its runs would write into the "
                                 "original's files", "point MLFLOW_TRACKING_URI at the original store, or move this "
                                 "mlflow.db (and its mlartifacts/) aside to start a new store here")


# MLflow errors that answer a question about a working store (a run that is not there, a name taken): the
# callers handle them; every other failure of the store is a TrackingError
STORE_ANSWERS = ("RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE")
STORE_LIBRARIES = ("sqlalchemy", "sqlite3", "requests", "urllib3", "alembic")


def store_failure(err: Exception) -> str | None:
    """What ``err`` says went wrong with the store, or None when it is no store failure (an answer of a working
    store, or a bug, which keeps its traceback)."""
    # lazy: only once MLflow raised something
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        if err.error_code in STORE_ANSWERS:
            return None
    elif not isinstance(err, OSError) and not type(err).__module__.startswith(STORE_LIBRARIES):
        return None
    text = str(err)
    sql = re.search(r"\((?:sqlite3\.)?\w+Error\) ([^\n]+)", text)  # the database's own words
    if sql:
        return sql.group(1)[:300]
    refused = re.search(r"(?:Max retries exceeded|Failed to establish)[^\n]*?\[Errno -?\d+\] ([^'\")\]]+)", text)
    if refused:
        return f"cannot reach the tracking server ({refused.group(1).strip()})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


def guarded(uri: str, call):
    """``call`` whose failures of the store (:func:`store_failure`) become a :class:`TrackingError` naming ``uri``."""
    def run(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except UserError:
            raise
        except Exception as err:
            problem = store_failure(err)
            if problem is None:
                raise
            raise TrackingError(uri, problem) from err
    return run


class GuardedClient:
    """An ``MlflowClient`` of ``uri`` (opening it included) whose every call is :func:`guarded`."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient  # lazy: MLflow takes seconds to import

        self._uri = uri
        self._client = guarded(uri, MlflowClient)(tracking_uri=uri)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        return guarded(self._uri, attr) if callable(attr) else attr


def public_text(text: str) -> str:
    """``text`` with absolute / home paths cut to their file names (no paths of the producing machine in
    tags or in the report): ``/root/.cache/x/alexnet.pth`` -> ``alexnet.pth``."""
    return re.sub(r"(?:~|[A-Za-z]:\\|/)[^\s,;:()'\"<>{}]*[/\\]([^/\\\s,;:()'\"<>{}]+)", r"\1", text)
