"""params.yaml and its sources (pipelines/conf): every profile composes and validates, params.yaml is the composition
of its profile, the paper profile is the authors' experiment, bad params are rejected before any work, naming the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from pipelines.core.config import PROFILE_NAMES, ParamsError, compose, deep_merge, load_params, validate


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
    # keys the smoke profile does not mention come from the base configuration
    assert smoke.train.lr == cpu.train.lr == raw["train"]["lr"]
    assert load_params(profile="paper").models.scale == "paper"


def test_params_yaml_is_the_composition_of_its_profile(raw):
    """params.yaml is generated (dvc exp run / `blurdm-bench params --write`): a hand edit that pipelines/conf
    does not hold would be lost at the next `dvc exp run`."""
    assert raw == compose(raw["profile"])


def test_a_params_file_holds_one_profile(tmp_path, raw):
    old_style = dict(raw, profiles={"smoke": {}})
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old_style))
    with pytest.raises(ParamsError, match="old.yaml: has a `profiles` block.*pipelines/conf"):
        load_params(tmp_path / "old.yaml")
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="cpu.yaml: composed for profile 'cpu', not 'smoke'"):
        load_params(tmp_path / "cpu.yaml", profile="smoke")  # an explicit file is never silently replaced
    assert load_params(profile="smoke").profile == "smoke"  # the repo's params.yaml: composed afresh


def test_deep_merge_merges_dicts_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = deep_merge(base, {"a": {"y": [3]}})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 2}
    assert base["a"]["y"] == [1, 2]  # input untouched


def _invalid(raw, mutate, profile="cpu"):
    raw = copy.deepcopy(raw) if profile == "cpu" else compose(profile)
    mutate(raw)
    with pytest.raises(ParamsError) as err:
        validate(raw)
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
        compose("fast")
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


def test_a_profile_shapes_its_own_dag():
    """Each profile names its Table-1 training sets and backbones (dvc.yaml's matrix reads the composed
    params.yaml): cpu and smoke keep their shape, paper has the authors' (checked below)."""
    cpu, smoke, paper = (load_params(profile=p) for p in ("cpu", "smoke", "paper"))
    assert list(cpu.train_sets) == list(smoke.train_sets) == ["synthetic"]
    assert cpu.models.backbones == ["mimo_unet", "stripformer", "fftformer", "loformer"]
    assert smoke.models.backbones == ["mimo_unet"]  # every stage family, Table 1 on the ablation backbone
    assert list(paper.train_sets) == ["gopro", "realblur_j", "realblur_r"]


def test_extra_base_must_match_the_ablation_backbone(raw):
    msg = _invalid(raw, lambda r: r["ablations"].update(extra_base=["mimo_unet"]))
    assert "ablations.extra_base must be [] (mimo_unet is a Table-1 backbone" in msg
    msg = _invalid(raw, lambda r: r["ablations"].update(extra_base=[]), "paper")
    assert "ablations.extra_base must be ['mimo_unet'] (mimo_unet is not a Table-1 backbone" in msg


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
    # the paper profile's training sets name its own test sets: without them in data.test the check fails
    msg = _invalid(raw, lambda r: r["data"].update(test={"synthetic": "data/synthetic/test"}), "paper")
    assert "train_sets.gopro.test: 'gopro' is not a test set of this profile" in msg


def test_the_paper_profile_is_the_authors_experiment():
    """`dvc exp run -S profile=paper` with no hand edit: MIMO-UNet+ in Table 1, default initialisation, the four
    Table-1 columns from three training sets, the authors' schedule and metrics (spec: shared/spec)."""
    from pipelines.core.layout import ablation_columns, scored_columns

    paper = load_params(profile="paper")
    assert paper.models.backbones == ["mimo_unet_plus", "stripformer", "fftformer", "loformer"]
    assert paper.models.scale == "paper"
    assert paper.models.zero_init_residual is False and paper.models.standardize_latent is False
    assert {name: s.test for name, s in paper.train_sets.items()} == {
        "gopro": ["gopro", "hide"], "realblur_j": ["realblur_j"], "realblur_r": ["realblur_r"]}
    assert [s.train for s in paper.train_sets.values()] == ["data/gopro/train", "data/realblur_j/train",
                                                             "data/realblur_r/train"]
    assert scored_columns(paper, "realblur_j") == [("realblur_j", "authors"), ("realblur_j", "official")]
    assert scored_columns(paper, "gopro") == [("gopro", None), ("hide", None)]
    assert set(paper.fetch.active) == {"gopro", "hide", "realblur_j", "realblur_r"}
    # the ablations: MIMO-UNet (the paper's ablation baseline, 31.78 dB, is MIMO-UNet's 31.73, not MIMO-UNet+'s
    # 32.45) on GoPro, trained by the ablation_base stage since it is not a Table-1 backbone here
    assert paper.models.ablation_backbone == "mimo_unet" and paper.ablations.train_set == "gopro"
    assert paper.ablations.extra_base == ["mimo_unet"]
    # scored on GoPro alone, as the paper's ablation tables (HIDE is Table 1's column only)
    assert ablation_columns(paper) == [("gopro", None)]
    # the authors' schedule for every backbone: Adam 1e-4 cosine to 1e-6, global batch 20, crop 256,
    # 600k + 300k + 600k steps, one rate for all stages, no weight average; T = 5; test seed 2023 first
    for backbone in (*paper.models.backbones, paper.models.ablation_backbone):
        train = paper.for_backbone(backbone).train
        assert (train.lr, train.lr_min, train.stage2_lr, train.stage2_ema_decay) == (1e-4, 1e-6, None, None)
        assert train.batch_size == 20 and (train.crop_size or paper.data.crop_size) == 256
        assert (train.steps.stage1, train.steps.stage2, train.steps.stage3) == (600_000, 300_000, 600_000)
        assert (train.charbonnier_eps, train.fft_loss_weight) == (1e-3, 0.1)
    assert paper.prior.name == "blurdm" and paper.prior.T == 5 and paper.evaluate.eval_seeds[0] == 2023
    assert paper.data.augment is True


def test_ablations_test_keeps_the_ablation_columns_to_named_test_sets_of_their_training_set():
    from pipelines.core.layout import ablation_columns

    cpu = load_params(profile="cpu")
    assert cpu.ablations.test is None  # every test set of the ablations' training set
    assert ablation_columns(cpu) == [("synthetic", None), ("gopro_real", None)]
    only = load_params(profile="cpu", overrides={"ablations": {"test": ["gopro_real"]}})
    assert ablation_columns(only) == [("gopro_real", None)]
    for bad in ([], ["hide"]):
        with pytest.raises(ParamsError, match="ablations.test must name one or more test sets of train_sets.synthetic"):
            load_params(profile="cpu", overrides={"ablations": {"test": bad}})
