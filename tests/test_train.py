"""Training: losses, every stage / backbone / prior / variant for a few steps, data order, NaN stop,
overfitting a fixed batch, MLflow records (tiny models, 32x32 crops, one thread)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from _train_fixtures import make_dataset, overrides, small_params
from pipelines.core.config import deep_merge, load_params
from pipelines.core.checkpoint_files import load_checkpoint, load_deblur_model
from pipelines.core.errors import UserError
from pipelines.core.files import sha256_file
from pipelines.training.losses import charbonnier, fft_charbonnier, image_loss, latent_loss
from pipelines.training.job import TrainJob
from pipelines.training.objective import StageObjective
from pipelines.training.sampler import StepBatchSampler
from pipelines.training.stages import build_stage_model, stage_steps
from pipelines.training.trainer import TrainingDiverged, train

BACKBONES = ["mimo_unet", "mimo_unet_plus", "stripformer", "fftformer", "loformer"]
PRIORS = ["blurdm", "rddm", "ddpm"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def params(data_root):
    return small_params(data_root)


@pytest.fixture(scope="module")
def stage1_dir(tmp_path_factory, params):
    out = tmp_path_factory.mktemp("stage1")
    train(TrainJob(stage="stage1", backbone="mimo_unet", out_dir=out, mlflow=False), params, progress=False)
    return out


def run_job(params, **kwargs) -> dict:
    job = TrainJob(mlflow=kwargs.pop("mlflow", False), **kwargs)
    return train(job, params, progress=False)


def states_equal(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


# ---------------------------------------------------------------------------------------------- losses

def test_charbonnier_values():
    x = torch.zeros(2, 3, 4, 4)
    assert charbonnier(x, x, eps=1e-3).item() == pytest.approx(1e-3)
    assert charbonnier(x + 3.0, x, eps=1e-3).item() == pytest.approx(math.sqrt(9 + 1e-6))
    with pytest.raises(ValueError, match="shapes differ"):
        charbonnier(x, x[..., :2])


def test_fft_loss_is_a_2d_transform():
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 8, 6), torch.rand(1, 3, 8, 6)
    spec_a, spec_b = torch.fft.fft2(a), torch.fft.fft2(b)
    expected = torch.sqrt((torch.view_as_real(spec_a) - torch.view_as_real(spec_b)) ** 2 + 1e-6).mean()
    assert fft_charbonnier(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    # a 1-D (last axis only) transform gives a different value: the loss really uses both axes
    one_d = torch.view_as_real(torch.fft.fft(a)) - torch.view_as_real(torch.fft.fft(b))
    assert abs(torch.sqrt(one_d ** 2 + 1e-6).mean().item() - expected.item()) > 1e-3


def test_image_loss_sums_scales_with_resized_targets():
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 16, 16)
    full = sharp.clone()
    half = torch.nn.functional.interpolate(sharp, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    # perfect outputs at both scales: only the eps floor remains (2 scales x (1 + 0.1) x eps)
    assert image_loss([half, full], sharp, eps=1e-3, fft_weight=0.1).item() == pytest.approx(2 * 1.1e-3, rel=1e-3)
    worse = image_loss([half + 0.1, full], sharp)
    assert worse.item() > image_loss([half, full], sharp).item() + 0.05
    assert latent_loss(torch.ones(2, 256), torch.ones(2, 256)).item() == pytest.approx(1e-3)


# ---------------------------------------------------------------------------------------------- data order

def test_step_batches_are_a_pure_function_of_seed_and_step():
    full = StepBatchSampler(10, 4, seed=3, start=0, end=8)
    late = StepBatchSampler(10, 4, seed=3, start=5, end=8)
    assert list(full)[5:] == list(late)
    items = [i for batch in list(full)[:5] for _, i in batch]  # 20 positions = 2 epochs
    assert sorted(items[:10]) == list(range(10)) and sorted(items[10:]) == list(range(10))
    assert items[:10] != items[10:]  # a new permutation each epoch
    assert list(StepBatchSampler(10, 4, seed=4, start=0, end=8)) != list(full)
    ranks = [StepBatchSampler(10, 4, seed=3, start=0, end=8, rank=r, world_size=2) for r in (0, 1)]
    for step in range(8):
        assert ranks[0].batch(step) + ranks[1].batch(step) == full.batch(step)
    # a global batch that does not divide evenly: contiguous shares differing by at most one item
    uneven = [StepBatchSampler(10, 3, seed=0, start=0, end=4, rank=r, world_size=2) for r in (0, 1)]
    whole = StepBatchSampler(10, 3, seed=0, start=0, end=4)
    for step in range(4):
        assert [len(u.batch(step)) for u in uneven] == [2, 1]
        assert uneven[0].batch(step) + uneven[1].batch(step) == whole.batch(step)
    with pytest.raises(UserError, match="smaller than the 4 processes"):
        StepBatchSampler(10, 3, seed=0, start=0, end=1, world_size=4)


# ---------------------------------------------------------------------------------------------- stages

@pytest.mark.parametrize("backbone", BACKBONES)
def test_stage1_runs_for_every_backbone(tmp_path, params, backbone):
    metrics = run_job(params, stage="stage1", backbone=backbone, out_dir=tmp_path)
    assert metrics["steps"] == 2 and metrics["stage"] == "stage1"
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_psnr"])
    assert json.loads((tmp_path / "metrics.json").read_text())["val_psnr"] == metrics["val_psnr"]
    model, spec = load_deblur_model(tmp_path / "model.pt")
    assert spec["prior_mode"] == "sharp_encoder" and spec["backbone"] == backbone and not model.training
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert (tmp_path / "sample.png").is_file()


def test_stage2_needs_a_stage1_checkpoint(tmp_path, params):
    with pytest.raises(UserError, match=r"needs a stage1 checkpoint: pass --stage1"):
        run_job(params, stage="stage2", backbone="mimo_unet", out_dir=tmp_path / "a")
    with pytest.raises(UserError, match=r"model\.pt does not exist"):
        run_job(params, stage="stage2", backbone="mimo_unet", stage1=tmp_path / "missing", out_dir=tmp_path / "b")
    with pytest.raises(UserError, match="variant s3_only has no stage2"):
        TrainJob(stage="stage2", backbone="mimo_unet", variant="s3_only", out_dir=tmp_path)


@pytest.mark.parametrize("prior", PRIORS)
def test_stage2_then_stage3_for_every_prior(tmp_path, params, stage1_dir, prior):
    s2, s3 = tmp_path / "s2", tmp_path / "s3"
    m2 = run_job(params, stage="stage2", backbone="mimo_unet", prior=prior, T=3, stage1=stage1_dir, out_dir=s2)
    assert math.isfinite(m2["train_loss"]) and m2["val_latent_loss"] is not None
    s1_state = load_checkpoint(stage1_dir / "model.pt")["model"]
    s2_payload = load_checkpoint(s2 / "model.pt")
    s2_state = s2_payload["model"]
    # backbone and SE frozen (SE in eval mode: BatchNorm running stats unchanged too)
    assert states_equal(s1_state, s2_state, "backbone.") and states_equal(s1_state, s2_state, "sharp_encoder.")
    assert s2_payload["spec"] == {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": prior,
                                  "T": 3, "fusion": True, "sharp_encoder": True}
    fresh = build_stage_model(TrainJob(stage="stage2", backbone="mimo_unet", prior=prior, T=3, stage1=stage1_dir,
                                       out_dir=s2, mlflow=False), params)[0].state_dict()
    assert not states_equal(fresh, s2_state, "prior.")  # the prior did train
    load_deblur_model(s2 / "model.pt", prior_mode="sharp_encoder")  # the oracle loads from stage 2 as well

    m3 = run_job(params, stage="stage3", backbone="mimo_unet", prior=prior, T=3, stage2=s2, out_dir=s3)
    assert m3["init"]["stage2"]["sha256"] == sha256_file(s2 / "model.pt")
    assert math.isfinite(m3["train_loss"])
    model, spec = load_deblur_model(s3 / "model.pt")
    assert spec["prior_mode"] == "diffusion" and model.sharp_encoder is None
    out = model(torch.zeros(1, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert out[-1].shape == (1, 3, 32, 32)


def test_variants_and_baseline(tmp_path, params, stage1_dir):
    s2 = tmp_path / "s2"
    run_job(params, stage="stage2", backbone="mimo_unet", stage1=stage1_dir, out_dir=s2)
    s2_state = load_checkpoint(s2 / "model.pt")["model"]

    # s1_s2: no stage 3 training, the final model is the stage-1 backbone + the stage-2 prior
    m = run_job(params, stage="stage3", variant="s1_s2", backbone="mimo_unet", stage2=s2, out_dir=tmp_path / "s1_s2")
    assert m["steps"] == 0 and "no stage 3" in m["steps_rule"]
    final = load_checkpoint(tmp_path / "s1_s2" / "model.pt")["model"]
    assert states_equal(s2_state, final, "backbone.") and states_equal(s2_state, final, "prior.")
    assert not any(k.startswith("sharp_encoder.") for k in final)

    # s1_s2_s3 given both earlier stages (as the study does): they must belong together
    m = run_job(params, stage="stage3", backbone="mimo_unet", stage1=stage1_dir, stage2=s2, out_dir=tmp_path / "full")
    assert set(m["init"]) == {"stage1", "stage2"}
    other = tmp_path / "other_stage1"
    run_job(params, stage="stage1", backbone="mimo_unet", seed=1, steps=1, out_dir=other)
    with pytest.raises(UserError, match="trained from another stage-1 model"):
        run_job(params, stage="stage3", backbone="mimo_unet", stage1=other, stage2=s2, out_dir=tmp_path / "bad")

    # s1_s3: stage 3 from the stage-1 backbone with an untrained prior
    m = run_job(params, stage="stage3", variant="s1_s3", backbone="mimo_unet", stage1=stage1_dir,
                out_dir=tmp_path / "s1_s3")
    assert set(m["init"]) == {"stage1"} and m["steps"] == 2
    with pytest.raises(UserError, match="needs a stage1 checkpoint"):
        run_job(params, stage="stage3", variant="s1_s3", backbone="mimo_unet", out_dir=tmp_path / "x")

    # s3_only: everything fresh
    m = run_job(params, stage="stage3", variant="s3_only", backbone="mimo_unet", out_dir=tmp_path / "s3_only")
    assert m["init"] == {} and math.isfinite(m["train_loss"])

    # baseline: no prior, budget = stage1 + stage3 steps
    steps = params.train.steps
    m = run_job(params, stage="baseline", backbone="mimo_unet", out_dir=tmp_path / "baseline")
    assert m["steps"] == steps.stage1 + steps.stage3 and "stage1 + steps.stage3" in m["steps_rule"]
    model, spec = load_deblur_model(tmp_path / "baseline" / "model.pt")
    assert spec["prior_mode"] == "none" and model.prior_vector(torch.zeros(1, 3, 32, 32)) is None
    assert not any("fusion" in k or "prior" in k for k in model.state_dict())


def test_resume_refuses_a_changed_configuration(tmp_path, params):
    run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=2)
    with pytest.raises(UserError, match="different configuration.*--no-resume"):
        run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=3)
    m = run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=3, resume=False)
    assert m["steps"] == 3 and m["resumed_from_step"] is None


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, params, monkeypatch):
    from pipelines.training import objective

    calls = {"n": 0}
    real = objective.image_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] == 4 else value

    monkeypatch.setattr(objective, "image_loss", poisoned)  # the loss StageObjective computes
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4.*last\.pt \(step 2\)"):
        run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=6)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_overfits_a_fixed_batch(params, data_root):
    from pipelines.data.pairs import PairedImageDataset

    job = TrainJob(stage="stage1", backbone="mimo_unet", out_dir=data_root / "unused", mlflow=False)
    model, frozen, _ = build_stage_model(job, params)
    objective = StageObjective(model, "image", frozen=frozen).train()
    items = [PairedImageDataset(data_root, crop_size=32, value_range=model.value_range)[i] for i in (0, 1)]
    blur, sharp = torch.stack([it["blur"] for it in items]), torch.stack([it["sharp"] for it in items])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(120):
        optimizer.zero_grad()
        loss = objective(blur, sharp)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # the untrained residual network returns ~the blurred input; 120 steps must clearly beat that
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_stage_steps_rules(params, tmp_path):
    job = TrainJob(stage="stage3", variant="s1_s2", backbone="mimo_unet", out_dir=tmp_path)
    assert stage_steps(job, params)[0] == 0
    job = TrainJob(stage="stage2", backbone="mimo_unet", out_dir=tmp_path, steps=7)
    assert stage_steps(job, params) == (7, "--steps override")
    with pytest.raises(UserError, match="unknown backbone"):
        TrainJob(stage="stage1", backbone="unet", out_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- MLflow

def test_mlflow_run_records_tags_params_metrics_and_artifacts(tmp_path, params, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_STAGE", "train@mimo_unet")
    out = tmp_path / "run"
    metrics = run_job(params, stage="stage1", backbone="mimo_unet", out_dir=out, study="t-sweep", mlflow=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("t-sweep")
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "t-sweep").as_uri()
    run = client.get_run(metrics["mlflow_run_id"])
    tags = run.data.tags
    assert tags["backbone"] == "mimo_unet" and tags["stage"] == "stage1" and tags["dvc_stage"] == "train@mimo_unet"
    assert tags["group"] == "t-sweep/mimo_unet/seed0" and tags["scale"] == "tiny"
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mlflow.source.name"] == "pipelines/train.py"
    parent = client.get_run(tags["mlflow.parentRunId"])  # nested: one parent per study x backbone x seed
    assert parent.info.run_name == "t-sweep/mimo_unet/seed0" and parent.data.tags["blurdm.group"] == tags["group"]
    assert run.data.params["params.train.lr"] == str(params.train.lr)
    assert run.data.params["params.data.crop_size"] == "32"
    # the whole train block (layout keys too, which the resume fingerprint leaves out) beside the fingerprint
    assert run.data.params["params.train.log_every"] == str(params.train.log_every)
    assert run.data.params["params.train.threads"] == str(params.train.threads)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["val_psnr"] == pytest.approx(metrics["val_psnr"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "sample.png", "curves.csv"} <= artifacts
    # the model itself (not a pointer to a file outside the store), with its spec
    card = json.loads((tmp_path / "mlartifacts" / "t-sweep" / run.info.run_id / "artifacts" / "model" /
                       "spec.json").read_text())
    assert card["sha256"] == sha256_file(out / "model.pt") == tags["model_checkpoint.sha256"]
    assert card["spec"]["backbone"] == "mimo_unet"
    (inp,) = run.inputs.dataset_inputs  # the training set, digest = its manifest's sha256
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    assert run.info.status == "FINISHED" and parent.info.status == "FINISHED"


def test_dvc_driven_job_restarts_when_params_changed(tmp_path, params):
    """Under DVC the outputs persist (so a killed stage resumes); a params change restarts the job."""
    run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=2)
    m = run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=3, restart_if_changed=True)
    assert m["steps"] == 3 and m["resumed_from_step"] is None
    # unchanged configuration: resumes (here: already finished) instead of starting over
    m = run_job(params, stage="stage1", backbone="mimo_unet", out_dir=tmp_path, steps=3, restart_if_changed=True)
    assert m["resumed_from_step"] == 3


def test_stage2_standardises_the_prior_latent_to_the_sharp_encoder(tmp_path, data_root, stage1_dir):
    """``models.standardize_latent``: stage 2 stores the per-dimension mean / std of the frozen SE's latents
    on training crops in the prior (and stage 3 keeps them); off, the prior stays the identity."""
    from pipelines.data.pairs import PairedImageDataset, find_pairs

    on = small_params(data_root)
    assert on.models.standardize_latent  # the cpu / smoke default
    run_job(on, stage="stage2", backbone="mimo_unet", prior="encoder", stage1=stage1_dir, out_dir=tmp_path / "on")
    state = load_checkpoint(tmp_path / "on" / "model.pt")["model"]
    mean, std = state["prior.latent_mean"], state["prior.latent_std"]
    # the SE latents of the training images (whole images: the statistics' crops come from them)
    model, _ = load_deblur_model(stage1_dir / "model.pt")
    items = PairedImageDataset(find_pairs(data_root), crop_size=None, augment=False, value_range=model.value_range)
    with torch.no_grad():
        latents = torch.cat([model.sharp_encoder(it["blur"][None], it["sharp"][None]) for it in items])
    assert torch.isfinite(mean).all() and (std > 0).all() and not torch.equal(std, torch.ones_like(std))
    assert (mean - latents.mean(0)).abs().max() < 0.5 * latents.abs().max()
    ratio = std.double().pow(2).sum().sqrt() / latents.std(0).double().pow(2).sum().sqrt()
    assert 0.2 < ratio < 5  # the SE's scale, not the unit scale of the chain (std << 1 here)
    assert std.max() < 0.5
    run_job(on, stage="stage3", backbone="mimo_unet", prior="encoder", stage2=tmp_path / "on", out_dir=tmp_path / "s3")
    s3 = load_checkpoint(tmp_path / "s3" / "model.pt")["model"]
    assert torch.equal(s3["prior.latent_mean"], mean) and torch.equal(s3["prior.latent_std"], std)

    off = load_params(profile="smoke", overrides=deep_merge(overrides(data_root), {"models": {"standardize_latent": False}}))
    run_job(off, stage="stage2", backbone="mimo_unet", prior="encoder", stage1=stage1_dir, out_dir=tmp_path / "off")
    state = load_checkpoint(tmp_path / "off" / "model.pt")["model"]
    assert torch.equal(state["prior.latent_mean"], torch.zeros(32)) and torch.equal(state["prior.latent_std"], torch.ones(32))


def test_stage2_lr_is_stage_2s_own_learning_rate(tmp_path, data_root, stage1_dir, monkeypatch):
    """``train.stage2_lr``: Adam starts stage 2 (the prior alone) at it, every other stage at ``train.lr``;
    null (the paper profile: the authors use one rate) means ``train.lr`` for stage 2 too."""
    started = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, parameters, lr, **kwargs):
            started.append(lr)
            super().__init__(parameters, lr=lr, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    own = load_params(profile="smoke", overrides=deep_merge(overrides(data_root),
                                                            {"train": {"lr": 2e-3, "stage2_lr": 7e-3}}))
    job = {"backbone": "mimo_unet", "prior": "encoder", "steps": 1}
    run_job(own, stage="stage1", backbone="mimo_unet", out_dir=tmp_path / "s1", steps=1)
    run_job(own, stage="stage2", stage1=stage1_dir, out_dir=tmp_path / "s2", **job)
    run_job(own, stage="stage3", stage2=tmp_path / "s2", out_dir=tmp_path / "s3", **job)
    assert started == [2e-3, 7e-3, 2e-3]
    same = own.model_copy(update={"train": own.train.model_copy(update={"stage2_lr": None})})
    run_job(same, stage="stage2", stage1=stage1_dir, out_dir=tmp_path / "n2", **job)
    assert started[-1] == 2e-3
    paper = load_params(profile="paper").train
    assert paper.stage2_lr is None and paper.lr_of("stage2") == paper.lr == 1e-4


def test_resumed_stage2_keeps_its_latent_statistics(tmp_path, data_root, stage1_dir, monkeypatch):
    """The latent statistics are computed on a fresh start only; a resumed run takes them from its state."""
    from pipelines.training.trainer import Trainer

    p = small_params(data_root)
    job = {"stage": "stage2", "backbone": "mimo_unet", "prior": "encoder", "stage1": stage1_dir, "steps": 2}
    first = run_job(p, out_dir=tmp_path, **job)
    assert first["resumed_from_step"] is None

    def refuse(self):
        raise AssertionError("latent statistics recomputed on resume")

    monkeypatch.setattr(Trainer, "standardize_prior", refuse)
    again = run_job(p, out_dir=tmp_path, **job)
    assert again["resumed_from_step"] == 2
    with pytest.raises(AssertionError, match="recomputed"):
        run_job(p, out_dir=tmp_path / "new", **job)


def test_stage2_ema_is_what_stage_2_validates_saves_and_resumes(tmp_path, data_root, stage1_dir, monkeypatch):
    """``train.stage2_ema_decay``: stage 2 saves (``model.pt``) and validates the moving average of its weights,
    not the raw weights; ``last.pt`` keeps both, and a run interrupted after a checkpoint ends with the same
    bytes as one that was not. Other stages have no average; the paper profile has none."""
    from pipelines.training.trainer import Trainer

    p = small_params(data_root, {"stage2_ema_decay": 0.5})
    job = {"stage": "stage2", "backbone": "mimo_unet", "prior": "blurdm", "stage1": stage1_dir, "steps": 4}
    run_job(p, out_dir=tmp_path / "ref", **job)
    saved = load_checkpoint(tmp_path / "ref" / "model.pt")["model"]
    last = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert int(last["ema"]["n_averaged"]) == 4
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    prior = [k for k in saved if k.startswith("prior.") and saved[k].is_floating_point()]
    assert prior and all(torch.equal(saved[k], averaged[k]) for k in saved)
    assert not all(torch.equal(saved[k], last["model"][k]) for k in prior)  # not the raw weights

    real = Trainer.optimize_parameters

    def interrupted(self, step, *batch):
        if step == 2:  # after the checkpoint of step 2
            raise KeyboardInterrupt
        return real(self, step, *batch)

    monkeypatch.setattr(Trainer, "optimize_parameters", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_job(p, out_dir=tmp_path / "cut", **job)
    monkeypatch.setattr(Trainer, "optimize_parameters", real)
    resumed = run_job(p, out_dir=tmp_path / "cut", **job)
    assert resumed["resumed_from_step"] == 2
    assert sha256_file(tmp_path / "cut" / "model.pt") == sha256_file(tmp_path / "ref" / "model.pt")

    off = p.model_copy(update={"train": p.train.model_copy(update={"stage2_ema_decay": None})})
    raw = run_job(off, out_dir=tmp_path / "raw", **job)
    assert "ema" not in load_checkpoint(tmp_path / "raw" / "last.pt") and raw["resumed_from_step"] is None
    assert p.train.ema_decay_of("stage1") is None and p.train.ema_decay_of("stage3") is None
    assert load_params(profile="paper").train.ema_decay_of("stage2") is None
