"""DDP: the same train command under torchrun with 2 CPU processes (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from _train_fixtures import make_dataset, write_params_file
from pipelines.core.checkpoint_files import load_deblur_model

REPO = Path(__file__).resolve().parents[1]


def test_two_process_gloo_training(tmp_path):
    data_root = make_dataset(tmp_path / "synthetic")
    # global batch 4 = 2 per rank; a higher lr so a few steps show a clear decrease
    params_file = write_params_file(tmp_path / "params.yaml", data_root,
                                    {"batch_size": 4, "lr": 1e-3, "checkpoint_every": 4, "val_every": 1000})
    out = tmp_path / "ddp"
    steps = 16
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipelines.cli", "train", "--stage", "stage1", "--backbone", "mimo_unet",
           "--params", str(params_file), "--profile", "smoke", "--data", str(data_root), "--out", str(out),
           "--steps", str(steps), "--no-mlflow", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == steps and metrics["batch_size"] == 4
    losses = [loss for _, loss in metrics["loss_log"]]
    assert len(losses) == steps and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses

    # only rank 0 wrote: exactly one training checkpoint, no per-rank copies or leftovers
    assert sorted(p.name for p in out.iterdir()) == ["curves.csv", "last.pt", "metrics.json", "model.pt", "sample.png"]
    assert torch.load(out / "last.pt", weights_only=True)["step"] == steps
    _, spec = load_deblur_model(out / "model.pt")
    assert spec["backbone"] == "mimo_unet"
    # the one progress line comes from rank 0 only
    assert done.stdout.count("mimo_unet stage1: 16 steps") == 1
