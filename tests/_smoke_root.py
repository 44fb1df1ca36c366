"""A fresh project root for a reduced smoke run: params.yaml with the smoke profile active and smaller
step counts / data, plus the committed real test crops (params ``data.test.gopro_real``)."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def reduced_smoke_root(folder: Path, smoke_overrides: dict, active: bool = True, base_overrides: dict | None = None) -> Path:
    """``folder`` made a project root whose params.yaml is the smoke profile as ``dvc exp run -S profile=smoke``
    composes it (pipelines/conf), merged with ``base_overrides`` (e.g. the keys that shape the DAG) and then
    ``smoke_overrides``. A params file holds one profile: ``active`` is kept for the callers' readability."""
    from pipelines.core.config import compose, deep_merge

    folder.mkdir(parents=True)
    raw = deep_merge(deep_merge(compose("smoke"), base_overrides or {}), smoke_overrides)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    crops = Path("pipelines") / "data" / "gopro_real_crops"
    shutil.copytree(REPO / crops, folder / crops)
    return folder
