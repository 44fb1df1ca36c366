"""Paper scale on the CPU (issue 16): bf16 autocast, activation checkpointing, gradient accumulation over
micro-batches and uneven per-process shares, and exact resume after SIGKILL with all of them on.
Tiny models, 32x32 crops, one thread."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from _train_fixtures import (
    make_dataset,
    small_params,
    train_killed_and_resumed,
    write_params_file,
)

from models.activation_checkpointing import (
    checkpoint_block_types,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
    is_checkpointed,
)
from models.deblur_model import build_deblur_model
from pipelines.core.checkpoint_files import load_checkpoint
from pipelines.core.errors import UserError
from pipelines.core.config import ParamsError, load_params
from pipelines.core.files import sha256_file
from pipelines.training.fingerprint import fingerprint as _fingerprint
from pipelines.training.job import TrainJob
from pipelines.training.objective import StageObjective
from pipelines.training.trainer import train
from pipelines.training.step import StepPlan, accumulate, micro_slices, rank_share

REPO = Path(__file__).resolve().parents[1]
SIZES = {"mimo_unet": 32, "mimo_unet_plus": 32, "stripformer": 32, "fftformer": 32, "loformer": 64}


def spec(backbone: str, mode: str = "diffusion", prior: str = "blurdm") -> dict:
    out = {"backbone": backbone, "scale": "tiny", "prior_mode": mode}
    if mode == "diffusion":
        out.update(prior=prior, T=3)
    return out


def images(batch: int, size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=gen) - 0.5, torch.rand(batch, 3, size, size, generator=gen) - 0.5


def loss_and_grads(objective: StageObjective, run) -> tuple[torch.Tensor, dict]:
    objective.model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # dropout (MIMO-UNet+) draws the same masks in every compared run
    loss = run()
    grads = {n: p.grad.detach().clone() for n, p in objective.model.named_parameters() if p.grad is not None}
    assert grads
    return loss.detach().float(), grads


def backward(loss: torch.Tensor) -> torch.Tensor:
    loss.backward()
    return loss


def assert_grads_close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(value, b[name], rtol=rtol, atol=atol, msg=name)


# ---------------------------------------------------------------------------------------------- shares

def test_rank_shares_cover_the_global_batch_contiguously():
    for batch, world in ((20, 1), (20, 2), (20, 8), (3, 2), (7, 7)):
        shares = [rank_share(batch, world, r) for r in range(world)]
        assert sum(n for _, n in shares) == batch
        assert [first for first, _ in shares] == [sum(n for _, n in shares[:r]) for r in range(world)]
        assert max(n for _, n in shares) - min(n for _, n in shares) <= 1
    assert [rank_share(20, 8, r)[1] for r in range(8)] == [3, 3, 3, 3, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        rank_share(3, 4, 0)
    assert micro_slices(5, None) == [slice(0, 5)]
    assert micro_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert micro_slices(3, 8) == [slice(0, 3)]
    plan = StepPlan(20, 8, 5, 1)
    assert plan.share == 2 and plan.accumulation_steps == 2 and plan.share_weight == pytest.approx(0.8)
    assert StepPlan(20, 1, 0, 4).describe() == {"global_batch": 20, "processes": 1, "per_process": 20,
                                                "micro_batch": 4, "accumulation_steps": 5}


# ---------------------------------------------------------------------------------------------- accumulation

@pytest.mark.parametrize("kind", ["image", "latent"])
def test_accumulation_gives_the_gradient_of_one_big_batch(kind):
    """Stage 3 (image loss through BlurDM) and stage 2 (latent loss through the chain): micro-batches of
    1, 2 and 3 (an uneven last one) give the whole batch's loss and gradients; the start noise is the
    whole batch's draw, sliced."""
    torch.manual_seed(0)
    model = build_deblur_model({**spec("mimo_unet"), "sharp_encoder": kind == "latent"})
    frozen = [model.backbone, model.sharp_encoder] if kind == "latent" else []
    for module in frozen:
        module.requires_grad_(False)
    objective = StageObjective(model, kind, frozen=frozen)
    objective.train()
    blur, sharp = images(5, 32)

    def step(micro):
        return accumulate(objective, objective, blur, sharp, torch.Generator().manual_seed(7), StepPlan(5, 1, 0, micro))

    ref_loss, ref = loss_and_grads(objective, lambda: step(None))
    direct_loss, direct = loss_and_grads(
        objective, lambda: backward(objective(blur, sharp, torch.Generator().manual_seed(7))))
    assert torch.equal(ref_loss, direct_loss)  # one micro-batch = the plain step, bit for bit
    assert all(torch.equal(ref[k], direct[k]) for k in ref)
    for micro in (1, 2, 3):
        loss, grads = loss_and_grads(objective, lambda micro=micro: step(micro))
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
        assert_grads_close(grads, ref, rtol=1e-4, atol=1e-6)


def test_uneven_process_shares_average_to_the_global_batch_gradient():
    """What DDP computes for a global batch of 5 on 2 processes (shares 3 and 2, micro-batches of 2):
    the mean over processes of each process's gradient equals the one-device gradient of all 5."""
    torch.manual_seed(0)
    model = build_deblur_model(spec("mimo_unet", mode="none"))
    objective = StageObjective(model, "image")
    objective.train()
    blur, sharp = images(5, 32)
    ref_loss, ref = loss_and_grads(objective, lambda: accumulate(objective, objective, blur, sharp, None,
                                                                 StepPlan(5, 1, 0, None)))
    world, summed, losses = 2, {}, []
    for rank in range(world):
        first, count = rank_share(5, world, rank)
        part = slice(first, first + count)
        plan = StepPlan(5, world, rank, 2)
        loss, grads = loss_and_grads(objective, lambda part=part, plan=plan: accumulate(
            objective, objective, blur[part], sharp[part], None, plan))
        losses.append(loss)
        for name, grad in grads.items():
            summed[name] = summed.get(name, 0) + grad
    mean = {name: grad / world for name, grad in summed.items()}  # DDP's all-reduce average
    torch.testing.assert_close(sum(losses) / world, ref_loss, rtol=1e-5, atol=1e-6)
    assert_grads_close(mean, ref, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- bf16

@pytest.mark.parametrize("kind", ["image", "latent"])
def test_bf16_autocast_on_cpu_keeps_fp32_weights_gradients_and_loss(kind):
    torch.manual_seed(0)
    model = build_deblur_model({**spec("mimo_unet"), "sharp_encoder": kind == "latent"})
    objective = StageObjective(model, kind, frozen=[model.backbone, model.sharp_encoder] if kind == "latent" else [])
    objective.train()
    blur, sharp = images(2, 32)
    fp32_loss, fp32_grads = loss_and_grads(objective,
                                           lambda: backward(objective(blur, sharp, torch.Generator().manual_seed(3))))
    seen = []
    probe = model.prior.estimators["residual"].net[0] if kind == "latent" else model.backbone.out_full
    hook = probe.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    objective.autocast_dtype = torch.bfloat16
    try:
        loss = objective(blur, sharp, torch.Generator().manual_seed(3))
        assert loss.dtype == torch.float32  # the loss is computed in float32
        objective.model.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        hook.remove()
    assert seen and seen[0] == torch.bfloat16  # the forward ran in bf16
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == fp32_grads.keys()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())
    assert float(loss.detach()) == pytest.approx(float(fp32_loss), rel=3e-2)


# ---------------------------------------------------------------------------------------------- checkpointing

@pytest.mark.parametrize("backbone", list(SIZES))
def test_activation_checkpointing_gives_the_same_loss_and_gradients(backbone, monkeypatch):
    torch.manual_seed(0)
    model = build_deblur_model(spec(backbone))
    objective = StageObjective(model, "image")
    objective.train()
    blur, sharp = images(2, SIZES[backbone])
    keys = list(model.state_dict())

    def run():
        return backward(objective(blur, sharp, torch.Generator().manual_seed(3)))

    ref_loss, ref = loss_and_grads(objective, run)
    blocks = enable_activation_checkpointing(model.backbone)
    assert blocks == sum(isinstance(m, checkpoint_block_types(model.backbone)) for m in model.backbone.modules()) > 0
    assert enable_activation_checkpointing(model.backbone) == blocks  # idempotent
    import models.activation_checkpointing as ckpt

    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    loss, grads = loss_and_grads(objective, run)
    assert len(calls) == blocks
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    assert_grads_close(grads, ref, rtol=1e-5, atol=1e-7)
    assert list(model.state_dict()) == keys  # same names: same model.pt / last.pt layout
    calls.clear()
    with torch.no_grad():
        model(blur, sharp, torch.Generator().manual_seed(3))
    assert not calls  # evaluation runs the blocks plainly
    objective.autocast_dtype = torch.bfloat16  # and it composes with bf16
    loss, _ = loss_and_grads(objective, run)
    assert torch.isfinite(loss)
    disable_activation_checkpointing(model.backbone)
    assert not any(is_checkpointed(m) for m in model.modules())


# ---------------------------------------------------------------------------------------------- params

def test_new_train_keys_default_to_todays_behaviour_and_are_validated():
    for profile in ("cpu", "smoke"):
        cfg = load_params(profile=profile).train
        assert (cfg.precision, cfg.activation_checkpointing, cfg.micro_batch, cfg.crop_size, cfg.nodes,
                cfg.node_rank) == ("fp32", False, None, None, 1, 0)
    paper = load_params(profile="paper")
    assert paper.train.batch_size == 20 and paper.train.precision == "bf16"
    assert paper.for_backbone("fftformer").train.micro_batch == 4
    with pytest.raises(ParamsError, match="precision"):
        load_params(profile="cpu", overrides={"train": {"precision": "fp16"}})
    with pytest.raises(ParamsError, match="node_rank=2 must be < train.nodes=2"):
        load_params(profile="cpu", overrides={"train": {"nodes": 2, "node_rank": 2}})
    with pytest.raises(ParamsError, match="micro_batch"):
        load_params(profile="cpu", overrides={"train": {"micro_batch": 0}})


def test_fingerprint_keeps_old_runs_resumable_and_records_what_changes_numbers(tmp_path):
    job = TrainJob(stage="stage1", backbone="mimo_unet", out_dir=tmp_path)
    base = _fingerprint(job, load_params(profile="cpu"), 10, {})["train"]
    for key in ("precision", "crop_size", "micro_batch", "activation_checkpointing", "nodes", "node_rank",
                "rdzv_endpoint", "rdzv_timeout"):
        assert key not in base  # the fingerprint of a default run is what it was before these keys existed
    laid_out = load_params(profile="cpu", overrides={"train": {"micro_batch": 1, "activation_checkpointing": True,
                                                               "nodes": 2, "node_rank": 1}})
    assert _fingerprint(job, laid_out, 10, {})["train"] == base
    bf16 = _fingerprint(job, load_params(profile="cpu", overrides={"train": {"precision": "bf16"}}), 10, {})["train"]
    assert bf16["precision"] == "bf16"


# ---------------------------------------------------------------------------------------------- training jobs

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


SWITCHES = {"precision": "bf16", "activation_checkpointing": True, "micro_batch": 1, "batch_size": 3}


def test_every_stage_trains_with_bf16_checkpointing_and_micro_batches(tmp_path, data_root):
    params = small_params(data_root, SWITCHES)
    runs = {}
    for stage, links in (("stage1", {}), ("stage2", {"stage1": tmp_path / "stage1"}),
                         ("stage3", {"stage1": tmp_path / "stage1", "stage2": tmp_path / "stage2"})):
        runs[stage] = train(TrainJob(stage=stage, backbone="mimo_unet", out_dir=tmp_path / stage, mlflow=False,
                                     **links), params, progress=False)
    for metrics in runs.values():
        assert metrics["precision"] == "bf16" and metrics["activation_checkpointing"] is True
        assert metrics["batching"] == {"global_batch": 3, "processes": 1, "per_process": 3, "micro_batch": 1,
                                       "accumulation_steps": 3}
        assert all(torch.isfinite(torch.tensor(loss)) for _, loss in metrics["loss_log"])
    # a changed precision is a different run; a changed micro-batch / checkpointing is not
    with pytest.raises(UserError, match="train.precision"):
        train(TrainJob(stage="stage1", backbone="mimo_unet", out_dir=tmp_path / "stage1", mlflow=False),
              small_params(data_root, {**SWITCHES, "precision": "fp32"}), progress=False)


def test_train_crop_size_is_the_backbones_own_crop(tmp_path, data_root):
    params = small_params(data_root, {"crop_size": 16})
    metrics = train(TrainJob(stage="baseline", backbone="mimo_unet", out_dir=tmp_path, mlflow=False, steps=1),
                    params, progress=False)
    assert metrics["crop_size"] == 16
    with pytest.raises(UserError, match=r"train.crop_size=20 must be a multiple of 8"):
        train(TrainJob(stage="baseline", backbone="mimo_unet", out_dir=tmp_path / "b", mlflow=False, steps=1),
              small_params(data_root, {"crop_size": 20}), progress=False)


# ---------------------------------------------------------------------------------------------- SIGKILL

def test_resume_after_sigkill_is_exact_with_bf16_checkpointing_and_accumulation(tmp_path, data_root):
    params_file = write_params_file(tmp_path / "params.yaml", data_root,
                                    {**SWITCHES, "val_every": 6, "checkpoint_every": 3})
    steps = 15
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    reference, resumed, killed_at = train_killed_and_resumed(params_file, data_root, tmp_path, steps, 9, env)

    ref_model, new_model = (load_checkpoint(d / "model.pt")["model"] for d in (reference, resumed))
    assert ref_model.keys() == new_model.keys()
    for key in ref_model:
        assert ref_model[key].numpy().tobytes() == new_model[key].numpy().tobytes(), key
    assert sha256_file(reference / "model.pt") == sha256_file(resumed / "model.pt")
    ref_metrics, new_metrics = (json.loads((d / "metrics.json").read_text()) for d in (reference, resumed))
    assert new_metrics["resumed_from_step"] == killed_at
    assert new_metrics["precision"] == "bf16" and new_metrics["batching"]["accumulation_steps"] == 3
    for key in ("train_loss", "val_psnr", "loss_log", "val_log", "steps"):
        assert ref_metrics[key] == new_metrics[key], key
