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
from pipelines.core.errors import InvalidInputError


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


def artifact_root_for(uri: str) -> str | None:
    """``<db folder>/mlartifacts`` for a sqlite store (a file URI); ``None`` lets the server decide."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = uri[len("sqlite:///"):]
    if not db_path or db_path == ":memory:":
        return None
    return (Path(db_path).resolve().parent / "mlartifacts").as_uri()


def public_text(text: str) -> str:
    """``text`` with absolute / home paths cut to their file names (no paths of the producing machine in
    tags or in the report): ``/root/.cache/x/alexnet.pth`` -> ``alexnet.pth``."""
    return re.sub(r"(?:~|[A-Za-z]:\\|/)[^\s,;:()'\"<>{}]*[/\\]([^/\\\s,;:()'\"<>{}]+)", r"\1", text)
