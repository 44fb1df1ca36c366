"""``blurdm-bench gpu-check`` (issue 16, item 5): a clear, fast "needs CUDA" on the CPU; the burst and report
logic with the CUDA calls stubbed (tiny models on the CPU); the whole check at tiny scale on a GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipelines import gpu_check
from pipelines.cli import main
from pipelines.core.config import STAGE_NAMES, load_params
from pipelines.training import gpu_bursts

REPO = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@no_cuda
def test_without_cuda_it_stops_at_once_saying_it_needs_cuda(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    started = time.monotonic()
    assert main(["gpu-check", "--out", str(out)]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "gpu-check needs CUDA" in err and "Traceback" not in err
    assert not out.exists()
    # the way `make gpu-check` runs it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "gpu-check", "--out", str(out)], cwd=REPO, env=env,
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "needs CUDA" in done.stderr and not out.exists()


def test_every_stage_model_is_built_fresh_with_its_objective():
    kinds = {}
    for stage in STAGE_NAMES:
        model, frozen, kind = gpu_bursts.stage_model("mimo_unet", stage, "tiny")
        kinds[stage] = (model.prior_mode, kind, len(frozen))
        assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert kinds == {"stage1": ("sharp_encoder", "image", 0), "stage2": ("diffusion", "latent", 2),
                     "stage3": ("diffusion", "image", 0), "baseline": ("none", "image", 0)}


@pytest.fixture
def cuda_stubbed(monkeypatch):
    """Run the check's logic on the CPU: the CUDA calls it makes become no-ops."""
    for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    for name in ("max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: 3 * 2**30)
    monkeypatch.setattr(gpu_check, "require_cuda", lambda: torch.device("cpu"))  # the command's first check
    monkeypatch.setattr(gpu_bursts, "cuda_environment", lambda device: {"device": str(device), "device_name": "stub"})


def test_bursts_and_the_json_report_with_cuda_stubbed(cuda_stubbed, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    rc = main(["gpu-check", "--profile", "smoke", "--backbones", "mimo_unet", "--steps", "1", "--warmup", "1",
               "--no-latency", "--precision", "bf16", "--activation-checkpointing", "--micro-batch", "1", "--out",
               str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["format"] == "blurdm-bench/gpu-check" and report["version"] == 1 and report["profile"] == "smoke"
    assert [row["stage"] for row in report["train"]] == list(STAGE_NAMES)
    for row in report["train"]:
        assert row["status"] == "ok" and row["error"] is None
        assert (row["global_batch"], row["micro_batch"], row["accumulation_steps"]) == (2, 1, 2)
        assert row["precision"] == "bf16" and row["activation_checkpointing"] is True and row["crop"] == 32
        assert row["steps_per_s"] > 0 and row["peak_memory_gb"] == 3.0 and row["loss"] > 0
    assert report["latency"] is None and report["overrides"]["micro_batch"] == 1


def test_an_exhausted_budget_skips_the_rest(cuda_stubbed):
    params = load_params(profile="smoke")
    report = gpu_bursts.run_check(params, torch.device("cpu"), backbones=["mimo_unet"], stages=["stage1", "stage3"],
                                 steps=1, warmup=0, processes=1, overrides={}, latency=True, latency_warmup=0,
                                 latency_repeats=1, budget_s=0.0, log=lambda msg: None)
    assert [r["status"] for r in report["train"]] == ["skipped", "skipped"]
    assert report["latency"]["status"] == "partial: time budget"
    assert report["latency"]["skipped_backbones"] == ["mimo_unet"]


def test_an_oom_is_recorded_and_the_check_goes_on(cuda_stubbed, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 13.3 GiB")

    monkeypatch.setattr(gpu_bursts, "accumulate", boom)
    row = gpu_bursts.train_burst("mimo_unet", "stage1", load_params(profile="smoke"), torch.device("cpu"), steps=1)
    assert row["status"] == "oom" and "13.3 GiB" in row["error"]


@cuda
def test_the_whole_check_at_tiny_scale_on_this_gpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert main(["gpu-check", "--profile", "smoke", "--backbones", "mimo_unet", "loformer", "--steps", "2",
                 "--latency-warmup", "1", "--latency-repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["environment"]["device_name"] and all(r["status"] == "ok" for r in report["train"])
    assert all(r["peak_memory_gb"] > 0 for r in report["train"])
    lat = report["latency"]
    assert lat["status"] == "ok" and lat["fast"]["speedup"] and lat["eager"]["overhead"]
