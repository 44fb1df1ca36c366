"""Shared set-up of the training tests: a tiny synthetic dataset and small params (smoke profile)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from pipelines.config import deep_merge, load_params, params_path

# Small everything: 1 thread, batch 2, 32x32 crops, checkpoints every 2 steps, no periodic validation.
TRAIN_OVERRIDES = {
    "threads": 1, "batch_size": 2, "checkpoint_every": 2, "val_every": 1000, "log_every": 1,
    "steps": {"stage1": 2, "stage2": 2, "stage3": 2},
}
SYNTH_OVERRIDES = {"n_train": 6, "n_test": 1, "crop_size": 64, "subframes": 5}


def make_dataset(folder: Path) -> Path:
    """Six 64x64 GoPro-layout training pairs from ``pipelines.synth``; returns the ``train`` root."""
    from pipelines.synth import generate

    params = load_params(profile="smoke", overrides={"synth": SYNTH_OVERRIDES})
    generate(params.synth, folder, progress=False)
    return folder / "train"


def overrides(data_root: Path, train: dict | None = None) -> dict:
    merged = deep_merge(TRAIN_OVERRIDES, train or {})
    return {"data": {"train": str(data_root), "crop_size": 32, "val_fraction": 0.2, "num_workers": 0},
            "train": merged,
            # the profile's per-backbone schedule must not override the tests' small one
            "backbone_train": {name: {"steps": merged["steps"]} for name in ("mimo_unet", "stripformer", "fftformer", "loformer")}}


def small_params(data_root: Path, train: dict | None = None):
    return load_params(profile="smoke", overrides=overrides(data_root, train))


def write_params_file(path: Path, data_root: Path, train: dict | None = None) -> Path:
    """A params.yaml whose smoke profile carries the small overrides (for subprocess runs)."""
    raw = yaml.safe_load(params_path().read_text())
    raw = copy.deepcopy(raw)
    raw["profiles"]["smoke"] = deep_merge(raw["profiles"].get("smoke", {}), overrides(data_root, train))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
