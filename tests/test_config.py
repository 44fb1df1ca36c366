"""params.yaml: every profile validates; bad params are rejected before any work, naming the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from pipelines.config import PROFILE_NAMES, ParamsError, deep_merge, load_params, resolve_raw, validate


@pytest.fixture
def raw(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_profile_validates(profile):
    params = load_params(profile=profile)
    assert params.profile == profile


def test_profiles_overlay_the_base(raw):
    smoke = load_params(profile="smoke")
    cpu = load_params(profile="cpu")
    assert smoke.train.steps.stage1 < cpu.train.steps.stage1
    # keys the smoke overlay does not mention come from the base block
    assert smoke.train.lr == cpu.train.lr == raw["train"]["lr"]
    assert load_params(profile="paper").models.scale == "paper"


def test_deep_merge_merges_dicts_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = deep_merge(base, {"a": {"y": [3]}})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 2}
    assert base["a"]["y"] == [1, 2]  # input untouched


def _invalid(raw, mutate, profile="cpu"):
    raw = copy.deepcopy(raw)
    mutate(raw)
    with pytest.raises(ParamsError) as err:
        validate(resolve_raw(raw, profile))
    return str(err.value)


def test_unknown_backbone_is_rejected_with_allowed_values(raw):
    msg = _invalid(raw, lambda r: r["models"].__setitem__("backbones", ["mimo_unet", "unet9000"]))
    assert "models.backbones" in msg and "unet9000" in msg and "stripformer" in msg


def test_unknown_prior_and_zero_T_are_rejected(raw):
    msg = _invalid(raw, lambda r: r["prior"].update(name="ddim", T=0))
    assert "prior.name" in msg and "'blurdm'" in msg
    assert "prior.T" in msg


def test_negative_steps_and_T_in_sweep_are_rejected(raw):
    msg = _invalid(raw, lambda r: r["train"]["steps"].update(stage1=-5))
    assert "train.steps.stage1" in msg
    msg = _invalid(raw, lambda r: r["ablations"].update(t_sweep=[0, 5]))
    assert "ablations.t_sweep" in msg


def test_unknown_profile_and_typo_keys_are_rejected(raw):
    with pytest.raises(ParamsError, match="unknown profile 'fast'.*smoke"):
        resolve_raw(copy.deepcopy(raw), "fast")
    msg = _invalid(raw, lambda r: r["train"].__setitem__("lrr", 1))
    assert "train.lrr" in msg and "unknown key" in msg


def test_unknown_stage_combination_is_rejected(raw):
    msg = _invalid(raw, lambda r: r["ablations"].__setitem__("stages", ["s1_s2", "s2_only"]))
    assert "ablations.stages" in msg and "s1_s2_s3" in msg


def test_missing_or_broken_params_file_names_the_file(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ParamsError, match="bad.yaml.*not valid YAML"):
        load_params(bad)


def test_profiles_may_not_change_the_dag_shape(raw):
    raw = copy.deepcopy(raw)
    raw["profiles"]["smoke"]["ablations"] = {"t_sweep": [1]}
    with pytest.raises(ParamsError, match="profiles.smoke.ablations.t_sweep"):
        resolve_raw(raw, "smoke")


def test_mlflow_store_of_a_dvc_temp_experiment_is_the_main_repo(tmp_path, monkeypatch):
    """`dvc exp run --temp` runs in <repo>/.dvc/tmp/exps/<tmp>: runs must land in <repo>/mlflow.db."""
    from pipelines.config import shared_root
    from pipelines.tracking import default_tracking_uri

    workspace = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BLURDM_ROOT", str(workspace))
    assert shared_root() == tmp_path / "repo"
    assert default_tracking_uri() == f"sqlite:///{(tmp_path / 'repo' / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("BLURDM_ROOT", str(tmp_path / "repo"))
    assert shared_root() == tmp_path / "repo"


def test_backbone_train_overrides_merge_and_are_validated(raw):
    params = load_params(profile="cpu")
    mimo = params.for_backbone("mimo_unet").train
    assert mimo.steps.stage1 == raw["backbone_train"]["mimo_unet"]["steps"]["stage1"]
    assert mimo.lr == params.train.lr  # keys the override does not name come from `train`
    assert params.for_backbone("mimo_unet_plus").train == params.train  # no override
    msg = _invalid(raw, lambda r: r["backbone_train"].__setitem__("stripformer", {"steps": {"stage1": -1}}))
    assert "backbone_train.stripformer" in msg and "steps.stage1" in msg
    msg = _invalid(raw, lambda r: r["backbone_train"].__setitem__("resnet", {}))
    assert "backbone_train" in msg and "resnet" in msg
