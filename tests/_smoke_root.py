"""A fresh project root for a reduced smoke run: params.yaml with the smoke profile active and smaller
step counts / data, plus the committed real test crops (params ``data.test.gopro_real``)."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def reduced_smoke_root(folder: Path, smoke_overrides: dict, active: bool = False, base_overrides: dict | None = None) -> Path:
    """``folder`` made a project root whose smoke profile is the repo's merged with ``smoke_overrides``
    (and its base block with ``base_overrides``: the keys that shape the DAG); ``active``: smoke is the
    active profile (what a bare ``blurdm-bench`` command then uses)."""
    from pipelines.core.config import deep_merge

    folder.mkdir(parents=True)
    raw = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), base_overrides or {})
    raw["profiles"]["smoke"] = deep_merge(raw["profiles"]["smoke"], smoke_overrides)
    if active:
        raw["profile"] = "smoke"
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    crops = Path("pipelines") / "data" / "gopro_real_crops"
    shutil.copytree(REPO / crops, folder / crops)
    return folder
