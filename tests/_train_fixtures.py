"""Shared set-up of the training tests: a tiny synthetic dataset and small params (smoke profile)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipelines.core.config import compose, deep_merge, load_params

# Small everything: 1 thread, batch 2, 32x32 crops, checkpoints every 2 steps, no periodic validation.
TRAIN_OVERRIDES = {
    "threads": 1, "batch_size": 2, "checkpoint_every": 2, "val_every": 1000, "log_every": 1,
    "steps": {"stage1": 2, "stage2": 2, "stage3": 2},
}
SYNTH_OVERRIDES = {"n_train": 6, "n_test": 1, "crop_size": 64, "subframes": 5}


def make_dataset(folder: Path) -> Path:
    """Six 64x64 GoPro-layout training pairs from ``pipelines.data.motion_blur``; returns the ``train`` root."""
    from pipelines.data.motion_blur import generate

    params = load_params(profile="smoke", overrides={"synth": SYNTH_OVERRIDES})
    generate(params.synth, folder, progress=False)
    return folder / "train"


def overrides(data_root: Path, train: dict | None = None) -> dict:
    merged = deep_merge(TRAIN_OVERRIDES, train or {})
    return {"data": {"crop_size": 32, "val_fraction": 0.2, "num_workers": 0},
            "train_sets": {"synthetic": {"train": str(data_root)}},  # the first (only) training set of params.yaml
            "train": merged,
            # the profile's per-backbone schedule must not override the tests' small one
            "backbone_train": {name: {"steps": merged["steps"]} for name in ("mimo_unet", "stripformer", "fftformer", "loformer")}}


def small_params(data_root: Path, train: dict | None = None):
    return load_params(profile="smoke", overrides=overrides(data_root, train))


def write_params_file(path: Path, data_root: Path, train: dict | None = None) -> Path:
    """A params.yaml of the smoke profile (as pipelines/conf composes it) with the small overrides (for
    subprocess runs)."""
    raw = deep_merge(compose("smoke"), overrides(data_root, train))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def train_cmd(params_file: Path, data_root: Path, out: Path, steps: int) -> list[str]:
    """A stage-1 MIMO-UNet training command on the smoke profile of ``params_file`` (no MLflow)."""
    import sys

    return [sys.executable, "-m", "pipelines.cli", "train", "--stage", "stage1", "--backbone", "mimo_unet",
            "--params", str(params_file), "--profile", "smoke", "--data", str(data_root), "--out", str(out),
            "--steps", str(steps), "--no-mlflow", "--no-progress"]


def checkpoint_step(path: Path) -> int:
    """The step saved in ``last.pt`` (-1 while absent or half written)."""
    import pickle

    import torch

    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["step"])
    except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError):
        return -1


def train_killed_and_resumed(params_file: Path, data_root: Path, folder: Path, steps: int, last_kill: int,
                             env: dict) -> tuple[Path, Path, int]:
    """Train once without interruption (``folder/reference``) and once SIGKILLed at a random moment after
    a random checkpoint (at most ``last_kill``) and then resumed (``folder/resumed``); returns both folders
    and the step the kill left in ``last.pt``. Asserts the kill landed mid-run and the resumption ended well."""
    import random
    import signal
    import subprocess
    import time

    repo = Path(__file__).resolve().parents[1]
    reference, resumed = folder / "reference", folder / "resumed"
    subprocess.run(train_cmd(params_file, data_root, reference, steps), cwd=repo, env=env, check=True,
                   capture_output=True, timeout=300)
    # one step of this machine, from the uninterrupted run: the kill lands within the step after the checkpoint
    # (a fixed pause of up to 0.3 s let a fast machine finish all the remaining steps first: "killed too late")
    reference_metrics = json.loads((reference / "metrics.json").read_text())
    step_seconds = reference_metrics["train_seconds"] / reference_metrics["steps"]
    kill_after = random.Random().randint(2, last_kill)  # the kill lands mid-step, after this checkpoint
    proc = subprocess.Popen(train_cmd(params_file, data_root, resumed, steps), cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while checkpoint_step(resumed / "last.pt") < kill_after:
            assert proc.poll() is None, "the training process ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.002)
        time.sleep(random.Random().uniform(0, step_seconds))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = checkpoint_step(resumed / "last.pt")
    assert 0 < killed_at < steps and not (resumed / "metrics.json").exists(), f"killed too late (step {killed_at})"
    done = subprocess.run(train_cmd(params_file, data_root, resumed, steps), cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return reference, resumed, killed_at
