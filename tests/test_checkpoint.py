"""Checkpoints: plain-values-only files, crafted pickles refused, the model file contract, RNG states,
and exact resume after SIGKILL (subprocess)."""
from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_fixtures import make_dataset, train_killed_and_resumed, write_params_file

from models.deblur_model import (
    DeblurModel,
    ModelPayloadError,
    build_deblur_model,
    copy_parts,
    model_payload,
)
from pipelines.core.checkpoint_files import (
    CheckpointError,
    check_plain,
    load_checkpoint,
    load_deblur_model,
    model_file,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pipelines.core.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
STAGE1_SPEC = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "sharp_encoder"}


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_roundtrip_and_plain_values_only(tmp_path):
    payload = {"step": 3, "name": "x", "t": torch.arange(4), "nested": {"a": [1, 2.5, None, (True, "y")]}}
    path = save_checkpoint(tmp_path / "c.pt", payload)
    back = load_checkpoint(path)
    assert back["step"] == 3 and torch.equal(back["t"], torch.arange(4)) and back["nested"]["a"][3] == (True, "y")
    again = save_checkpoint(tmp_path / "d.pt", payload)
    assert again.read_bytes() == path.read_bytes()  # byte-reproducible whatever the (temporary) file name
    with pytest.raises(TypeError, match=r"c\.pt\.p: PosixPath is not allowed"):
        save_checkpoint(tmp_path / "c.pt", {"p": tmp_path})
    with pytest.raises(TypeError, match="ndarray"):
        check_plain({"a": np.zeros(2)})
    assert not list(tmp_path.glob(".c.pt.*"))  # the refused write left nothing behind


def test_crafted_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_deblur_model(evil)
    raw = tmp_path / "raw.pt"  # a plain pickle (not torch's zip format) with the same payload
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(CheckpointError, match="raw.pt"):
        load_checkpoint(raw)
    assert not marker.exists()


def test_corrupt_and_missing_files(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"t": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"c\.pt: not a readable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "other.pt", {"format": "something else", "model": {}})
    with pytest.raises(CheckpointError, match="not a blurdm-bench model file"):
        load_deblur_model(tmp_path / "other.pt")


def test_rng_state_roundtrip_through_a_file(tmp_path):
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    first = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    second = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def test_model_file_contract(tmp_path):
    torch.manual_seed(0)
    model = build_deblur_model(STAGE1_SPEC)
    assert isinstance(model, DeblurModel)
    assert (model.value_range, model.pad_multiple, model.tile) == ("half", 8, None)
    blur, sharp = torch.rand(1, 3, 16, 16) - 0.5, torch.rand(1, 3, 16, 16) - 0.5
    with pytest.raises(ValueError, match="needs the sharp image"):
        model(blur)
    assert model.prior_vector(blur, sharp).shape == (1, 32)  # the tiny latent (models.encoder.PRIOR_DIMS)
    save_checkpoint(tmp_path / "model.pt", model_payload(model, {"stage": "stage1"}))

    oracle, spec = load_deblur_model(tmp_path / "model.pt", prior_mode="sharp_encoder")
    assert spec["prior_mode"] == "sharp_encoder" and not oracle.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(blur, sharp)[-1], oracle(blur, sharp)[-1])
    with pytest.raises(CheckpointError, match=r"model\.pt: .*needs 'prior'"):
        load_deblur_model(tmp_path / "model.pt", prior_mode="diffusion")
    with pytest.raises(CheckpointError, match=r"prior_mode 'none' does not match fusion=True"):
        load_deblur_model(tmp_path / "model.pt", prior_mode="none")

    diffusion = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion",
                                    "prior": "blurdm", "T": 2})
    with torch.no_grad():
        first = diffusion.prior_vector(blur, generator=torch.Generator().manual_seed(5))
        again = diffusion.prior_vector(blur, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="unknown spec keys"):
        build_deblur_model({**STAGE1_SPEC, "colour": "red"})


def test_spec_value_range_overrides_the_backbone_and_survives_the_model_file(tmp_path):
    baseline = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"}
    plain = build_deblur_model(baseline)
    assert plain.value_range == "half" and "value_range" not in plain.spec  # absent unless set
    unit = build_deblur_model({**baseline, "value_range": "unit"})
    assert unit.value_range == "unit" and unit.backbone.value_range == "half"
    save_checkpoint(tmp_path / "model.pt", model_payload(unit))
    loaded, spec = load_deblur_model(tmp_path / "model.pt")
    assert loaded.value_range == "unit" and spec["value_range"] == "unit"
    with pytest.raises(ValueError, match="unknown value_range 'minus_one_one'"):
        build_deblur_model({**baseline, "value_range": "minus_one_one"})



def test_model_file_of_a_run_and_copying_parts_between_stages(tmp_path):
    run = tmp_path / "run"
    assert model_file(run) == run / "model.pt"  # a run folder not written yet
    run.mkdir()
    assert model_file(run) == run / "model.pt"
    assert model_file(run / "model.pt") == run / "model.pt"  # a model file not written yet
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    assert model_file(other) == other  # an existing file is itself, whatever its name

    torch.manual_seed(0)
    stage1 = build_deblur_model({**STAGE1_SPEC, "sharp_encoder": True})
    payload = model_payload(stage1)
    stage2 = build_deblur_model({**STAGE1_SPEC, "prior_mode": "diffusion", "prior": "blurdm", "T": 2,
                                 "sharp_encoder": True})
    copy_parts(stage2, payload, ("backbone", "sharp_encoder"), run / "model.pt")
    for part in ("backbone", "sharp_encoder"):
        for key, value in getattr(stage2, part).state_dict().items():
            assert torch.equal(value, payload["model"][f"{part}.{key}"])
    with pytest.raises(ModelPayloadError, match=r"model\.pt: has no prior weights"):
        copy_parts(stage2, payload, ("prior",), run / "model.pt")
    wrong = model_payload(build_deblur_model({"backbone": "stripformer", "scale": "tiny", "prior_mode": "none"}))
    with pytest.raises(ModelPayloadError, match="backbone weights do not fit this model"):
        copy_parts(stage2, wrong, ("backbone",), run / "model.pt")

# ---------------------------------------------------------------------------------------------- SIGKILL

def test_resume_after_sigkill_gives_identical_weights_and_metrics(tmp_path):
    data_root = make_dataset(tmp_path / "synthetic")
    params_file = write_params_file(tmp_path / "params.yaml", data_root, {"val_every": 5, "checkpoint_every": 3})
    steps = 24
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    reference, resumed, killed_at = train_killed_and_resumed(params_file, data_root, tmp_path, steps, 14, env)

    ref_model = load_checkpoint(reference / "model.pt")["model"]
    new_model = load_checkpoint(resumed / "model.pt")["model"]
    assert ref_model.keys() == new_model.keys()
    for key in ref_model:
        assert ref_model[key].numpy().tobytes() == new_model[key].numpy().tobytes(), key
    assert sha256_file(reference / "model.pt") == sha256_file(resumed / "model.pt")
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    new_metrics = json.loads((resumed / "metrics.json").read_text())
    assert new_metrics["resumed_from_step"] == killed_at
    for key in ("train_loss", "val_psnr", "loss_log", "val_log", "steps"):
        assert ref_metrics[key] == new_metrics[key], key
    assert not list(resumed.glob(".*.tmp"))
