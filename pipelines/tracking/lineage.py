"""Where a run comes from: the git commit of the code, the DVC experiment, the upstream runs of its source
models, and its datasets as ``mlflow.data`` inputs (digest: the sha256 of the dataset's ``manifest.json``).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from pipelines.core.config import repo_root
from pipelines.core.environment import set_offline_env
from pipelines.core.files import sha256_file

NO_DVC_EXP = "none"
DIGEST_LIMIT = 36  # MLflow's maximum dataset digest length
LISTING_HASH_LIMIT = 256 * 2**20  # a dataset folder without manifest.json: hash file contents up to this size


UNKNOWN_COMMIT = "unknown"


def git_commit(root: str | os.PathLike | None = None, mark_dirty: bool = True) -> str:
    """HEAD's commit hash of the repository (with ``-dirty`` if tracked files changed, unless
    ``mark_dirty`` is false), or :data:`UNKNOWN_COMMIT` outside a git checkout."""
    if root is None:
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
        code = Path(__file__).resolve().parents[2]
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
    set_offline_env()
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset

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
