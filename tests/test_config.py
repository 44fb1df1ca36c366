"""params.yaml: every profile validates; bad params are rejected before any work, naming the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from pipelines.core.config import PROFILE_NAMES, ParamsError, deep_merge, load_params, resolve_raw, validate


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
    from pipelines.core.config import shared_root
    from pipelines.tracking.store import default_tracking_uri

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


# --- Table 1's training sets (issue 15) --------------------------------------------------------
def test_cpu_and_smoke_have_one_training_set_scored_on_every_test_set(raw):
    for profile in ("cpu", "smoke"):
        params = load_params(profile=profile)
        assert list(params.train_sets) == ["synthetic"] and params.ablations.train_set == "synthetic"
        assert params.train_sets["synthetic"].test == ["synthetic", "gopro_real"] == list(params.data.test)
    assert raw["ablations"]["train_set"] == "synthetic"  # dvc.yaml reads it: written out in the base block


def test_training_sets_are_validated_naming_the_key(raw):
    cases = [
        (lambda r: r["train_sets"]["synthetic"].update(test=["synthetic", "gopro"]), "train_sets.synthetic.test",
         "'gopro' is not a test set"),
        (lambda r: r["train_sets"].update(other={"train": "x", "test": ["gopro_real"]}), "train_sets.other.test",
         "already listed under train_sets.synthetic.test"),
        (lambda r: r["train_sets"]["synthetic"].update(test=[]), "train_sets.synthetic.test", "at least 1"),
        (lambda r: r["train_sets"]["synthetic"].update(test=["synthetic", "synthetic"]), "train_sets.synthetic.test",
         "listed twice"),
        (lambda r: r["train_sets"].update({"real-blur": {"train": "x", "test": ["gopro_real"]}}), "train_sets",
         "pattern"),
        (lambda r: r["train_sets"].update(mimo_unet=r["train_sets"].pop("synthetic")), "train_sets.mimo_unet",
         "named like a backbone"),
        (lambda r: r["ablations"].update(train_set="gopro"), "ablations.train_set", "unknown training set 'gopro'"),
        (lambda r: r["data"].update(train="data/synthetic/train"), "data.train", "replaced by train_sets"),
        (lambda r: r.pop("train_sets"), "train_sets", "Field required"),
    ]
    for mutate, key, message in cases:
        msg = _invalid(raw, mutate)
        assert key in msg and message in msg, msg
    # a profile names test sets the base does not have: the check runs on the profile's own data.test
    msg = _invalid(raw, lambda r: r["profiles"]["paper"]["data"]["test"].update(synthetic=None), "paper")
    assert "train_sets.synthetic.test: 'synthetic' is not a test set of this profile" in msg


def test_profiles_may_change_a_training_set_but_not_its_names(raw):
    raw = copy.deepcopy(raw)
    raw["profiles"]["smoke"]["train_sets"] = {"synthetic": {"train": "elsewhere/train"}}
    smoke = validate(resolve_raw(copy.deepcopy(raw), "smoke"))
    assert smoke.train_sets["synthetic"].train == "elsewhere/train"
    assert smoke.train_sets["synthetic"].test == ["synthetic", "gopro_real"]  # the rest from the base
    for overlay, what in (({"gopro": {"train": "x", "test": ["synthetic"]}}, "add"), ({"synthetic": None}, "remove")):
        raw["profiles"]["smoke"]["train_sets"] = overlay
        with pytest.raises(ParamsError, match=f"profiles.smoke.train_sets.*may not {what} a name of train_sets"):
            resolve_raw(copy.deepcopy(raw), "smoke")
    raw["profiles"]["smoke"].pop("train_sets")
    raw["profiles"]["smoke"]["ablations"] = {"train_set": "synthetic"}
    with pytest.raises(ParamsError, match="profiles.smoke.ablations.train_set"):
        resolve_raw(raw, "smoke")


def _paper_block(repo_root) -> dict:
    """The commented paper block of params.yaml ("replace the block above by this one"), uncommented."""
    lines = (repo_root / "params.yaml").read_text().splitlines()
    start = lines.index("# train_sets:")
    block = ["train_sets:"]
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        block.append(line[1:])
    return yaml.safe_load("\n".join(block))["train_sets"]


def test_the_paper_block_gives_all_four_columns_of_table1(raw, repo_root):
    from pipelines.core.layout import scored_columns

    raw = copy.deepcopy(raw)
    raw["train_sets"] = _paper_block(repo_root)
    raw["ablations"]["train_set"] = "gopro"
    paper = validate(resolve_raw(copy.deepcopy(raw), "paper"))
    assert {name: s.test for name, s in paper.train_sets.items()} == {
        "gopro": ["gopro", "hide"], "realblur_j": ["realblur_j"], "realblur_r": ["realblur_r"]}
    assert [s.train for s in paper.train_sets.values()] == ["data/gopro/train", "data/realblur_j/train",
                                                             "data/realblur_r/train"]
    assert scored_columns(paper, "realblur_j") == [("realblur_j", "authors"), ("realblur_j", "official")]
    assert scored_columns(paper, "gopro") == [("gopro", None), ("hide", None)]
    assert set(paper.fetch.active) == {"gopro", "hide", "realblur_j", "realblur_r"}
    with pytest.raises(ParamsError, match="train_sets.gopro.test: 'gopro' is not a test set"):
        validate(resolve_raw(raw, "cpu"))  # the paper block is the paper study's: cpu has no GoPro test set
