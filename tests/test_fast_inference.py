"""The fast inference path (issue 16, item 2): capture / replay logic on the CPU with the graph step
swapped for :class:`models.fast_inference.EagerReplayBackend`, the window restorers against the eager
path for every prior mode (LoFormer's tiles included), the CLI switches, and on a CUDA machine the real
CUDA graphs against eager within ``FAST_ATOL`` (skipped without CUDA)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.deblur_model import build_deblur_model, model_payload
from models.fast_inference import (
    FAST_ATOL,
    EagerReplayBackend,
    GraphedFunction,
    clear_graphs,
    fast_adapter,
    fast_available,
    fast_prior,
)
from models.inference import restore_full, restore_tensor
from models.priors import build_prior

SPECS = {
    "baseline": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"},
    "blurdm": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 2},
    "oracle": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "sharp_encoder", "sharp_encoder": True},
    "loformer": {"backbone": "loformer", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 2},
}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _model(name: str, device="cpu"):
    torch.manual_seed(3)
    return build_deblur_model(SPECS[name]).to(device).eval()


def _images(h: int, w: int, device="cpu"):
    gen = torch.Generator().manual_seed(4)
    return ((torch.rand(1, 3, h, w, generator=gen) - 0.5).to(device),
            (torch.rand(1, 3, h, w, generator=gen) - 0.5).to(device))


# ---------------------------------------------------------------------------------------------- the wrapper

def test_graphed_function_captures_a_repeated_shape_and_replays_into_copies():
    calls = []
    weight = torch.nn.Parameter(torch.tensor(2.0))

    def fn(x):
        calls.append(tuple(x.shape))
        return x * weight

    backend = EagerReplayBackend()
    runner = GraphedFunction(fn, parameters=lambda: [weight], backend=backend, capture_after=2, max_graphs=2)
    a, b = torch.ones(2, 3), torch.full((2, 3), 3.0)
    assert torch.equal(runner(a), a * 2) and backend.captures == 0 and runner.eager_calls == 1  # first sight: eager
    out_a = runner(a)  # second sight: captured, then replayed
    assert backend.captures == 1 and runner.replays == 1 and torch.equal(out_a, a * 2)
    out_b = runner(b)  # same shape: replay with the new input copied into the static buffer
    assert backend.captures == 1 and torch.equal(out_b, b * 2)
    assert torch.equal(out_a, a * 2)  # an earlier result is a copy, not the reused output buffer
    a[0, 0] = 100.0
    assert torch.equal(runner(b), b * 2)  # the caller's tensor is never captured by reference
    for size in (4, 5):  # two more shapes: the least recently used graph goes (max_graphs=2)
        runner(torch.ones(size))
        runner(torch.ones(size))
    assert len(runner.graphs) == 2 and ((2, 3),) not in {k[0][:1] for k in runner.graphs}
    captures = backend.captures
    with torch.no_grad():
        weight.data = torch.tensor(5.0)  # new weight storage: every graph is stale
    assert torch.equal(runner(torch.ones(5)), torch.full((5,), 5.0))
    assert backend.captures == captures + 1  # recaptured against the new weights
    with torch.inference_mode():  # profile times under inference_mode, evaluation under no_grad
        assert torch.equal(runner(torch.ones(4)), torch.full((4,), 5.0))
        assert torch.equal(runner(torch.ones(4)), torch.full((4,), 5.0))
    with torch.no_grad():
        assert torch.equal(runner(torch.ones(4)), torch.full((4,), 5.0))


@pytest.mark.parametrize("name", list(SPECS))
def test_fast_window_restorer_matches_eager_for_every_prior_mode(name):
    """Padding (odd sizes), the SE(blur, sharp) oracle, a diffusion prior's noise from the caller's
    generator and LoFormer's tiles: the replayed restorer gives the eager output."""
    model = _model(name)
    blur, sharp = _images(37, 45) if name != "loformer" else _images(70, 90)
    uses_sharp = model.prior_mode == "sharp_encoder"
    eager = restore_tensor(model, blur, sharp if uses_sharp else None, torch.Generator().manual_seed(9))
    backend = EagerReplayBackend()
    inputs = torch.cat([blur, sharp], dim=1) if uses_sharp else blur
    for _ in range(3):  # eager, capture + replay, replay
        with torch.no_grad():
            fast = restore_full(fast_adapter(model, torch.Generator().manual_seed(9), backend), inputs)
        assert fast.shape == eager.shape
        assert (fast - eager).abs().max().item() <= FAST_ATOL
    assert backend.captures >= 1
    other = restore_tensor(model, blur, sharp if uses_sharp else None, torch.Generator().manual_seed(10))
    with torch.no_grad():
        again = restore_full(fast_adapter(model, torch.Generator().manual_seed(10), backend), inputs)
    assert (again - other).abs().max().item() <= FAST_ATOL  # a new seed is a new noise input, not a stale one
    clear_graphs(model)
    assert "_fast_graph_runners" not in model.__dict__


def test_fast_prior_matches_the_eager_chain():
    torch.manual_seed(0)
    prior = build_prior("blurdm", 5, "tiny").eval()
    x = torch.rand(1, 3, 32, 32)
    run = fast_prior(prior, EagerReplayBackend())
    for seed in (1, 2, 2, 3):
        with torch.no_grad():
            eager = prior(x, generator=torch.Generator().manual_seed(seed))
            fast = run(x, torch.Generator().manual_seed(seed))
        assert (fast - eager).abs().max().item() <= 1e-6


def test_on_the_cpu_the_fast_switch_runs_eager():
    assert not fast_available("cpu")
    model = _model("blurdm")
    blur, _ = _images(32, 32)
    a = restore_tensor(model, blur, None, torch.Generator().manual_seed(1), fast=True)
    b = restore_tensor(model, blur, None, torch.Generator().manual_seed(1), fast=False)
    assert torch.equal(a, b) and "_fast_graph_runners" not in model.__dict__


def test_evaluate_and_deblur_take_the_fast_switch(tmp_path):
    from pipelines.core.checkpoint_files import save_checkpoint
    from pipelines.cli import main
    from pipelines.data.image_files import write_png

    rng = np.random.default_rng(0)
    for i in range(2):
        img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        write_png(tmp_path / "data" / "input" / f"{i}.png", img)
        write_png(tmp_path / "data" / "target" / f"{i}.png", img)
    ckpt = save_checkpoint(tmp_path / "m" / "model.pt", model_payload(_model("baseline")))
    for flag in ("--fast", "--no-fast"):
        out = tmp_path / f"eval{flag}"
        assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--out", str(out),
                     "--no-lpips", flag]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["inference"] == "eager"  # no CUDA here: the fast switch falls back to eager
    assert main(["deblur", str(tmp_path / "data" / "input"), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt),
                 "--fast"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]


def test_the_study_evaluates_on_the_auto_device_with_the_fast_switch(monkeypatch, tmp_path):
    from pipelines.core.config import load_params
    from pipelines.evaluation import study_evaluation as study

    seen = {}
    monkeypatch.setattr(study, "evaluate_checkpoint", lambda *a, **k: seen.update(k) or {})
    study._evaluate(load_params(profile="cpu"), tmp_path, tmp_path / "out", "synthetic", None)
    assert seen["device"] == torch.device("cuda" if torch.cuda.is_available() else "cpu") and seen["fast"] is True
    study._evaluate(load_params(profile="cpu", overrides={"evaluate": {"device": "cpu", "fast": False}}),
                    tmp_path, tmp_path / "out", "synthetic", None)
    assert seen["device"] == torch.device("cpu") and seen["fast"] is False


def test_profile_fast_latency_table_with_the_graph_step_mocked():
    from pipelines.evaluation.model_costs import measure_fast_latency, measure_latency

    device = torch.device("cpu")
    eager = measure_latency(["mimo_unet"], "tiny", 2, [(32, 32)], 0, 1, device, progress=False)
    fast = measure_fast_latency(["mimo_unet"], "tiny", 2, [(32, 32)], 0, 1, device, progress=False, eager=eager,
                                backend=EagerReplayBackend())
    assert {(r["model"], r["variant"]) for r in fast["results"]} == {("blurdm_module", None),
                                                                     ("mimo_unet", "baseline"), ("mimo_unet", "blurdm")}
    assert all(r["mode"] == "fast" and r["median_ms"] > 0 for r in fast["results"])
    assert fast["warmup"] >= 3  # captured during warm-up: the timed calls are replays
    (over,) = fast["overhead"]
    assert over["model"] == "mimo_unet" and over["latency_ratio"] is not None
    assert all(r["eager_ms"] and r["speedup"] for r in fast["speedup"])


# ---------------------------------------------------------------------------------------------- CUDA only

@cuda
@pytest.mark.parametrize("backbone", ["mimo_unet", "stripformer", "fftformer", "loformer"])
@pytest.mark.parametrize("mode", ["none", "diffusion"])
def test_cuda_graphs_match_eager_within_tolerance(backbone, mode):
    spec = {"backbone": backbone, "scale": "tiny", "prior_mode": mode}
    if mode == "diffusion":
        spec.update(prior="blurdm", T=5)
    torch.manual_seed(0)
    model = build_deblur_model(spec).cuda().eval()
    blur, _ = _images(72, 100, "cuda")
    eager = restore_tensor(model, blur, None, torch.Generator().manual_seed(2023))
    for _ in range(3):
        fast = restore_tensor(model, blur, None, torch.Generator().manual_seed(2023), fast=True)
        assert (fast - eager).abs().max().item() <= FAST_ATOL
    runner = next(iter(model.__dict__["_fast_graph_runners"].values()))
    assert runner.replays >= 1 and runner.graphs


@cuda
def test_cuda_graph_of_the_paper_blurdm_module_matches_eager():
    torch.manual_seed(0)
    prior = build_prior("blurdm", 5, "paper").cuda().eval()
    x = torch.rand(1, 3, 256, 256, device="cuda")
    run = fast_prior(prior)
    with torch.no_grad():
        eager = prior(x, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            fast = run(x, torch.Generator().manual_seed(1))
    assert (fast - eager).abs().max().item() <= FAST_ATOL
