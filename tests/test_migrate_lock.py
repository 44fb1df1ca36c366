"""``blurdm-bench migrate-lock`` (issue 15) on a synthetic dvc.lock and run folders of the one-training-set
layout: entries renamed to the matrix names, paths and params rewritten, folders moved, nothing done twice,
nothing half done; step 3 accepts only project code and profile keys a stage does not read. (The same
command on a real finished smoke study, with `dvc status` clean afterwards, is in the report of issue 15.)"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from _smoke_root import REPO, reduced_smoke_root

from pipelines.results.lock_migration import (
    apply,
    load_target,
    new_path,
    plan_migration,
    read_lock,
    why_not_acceptable,
)

DAG = {"models": {"backbones": ["mimo_unet"]},
       "ablations": {"priors": ["ddpm"], "stages": ["s3_only"], "t_sweep": [8]}}
CODE = {"path": "pipelines/train.py", "hash": "md5", "md5": "0" * 32, "size": 1}


def _dep(path: str) -> dict:
    return {"path": path, "hash": "md5", "md5": "1" * 32 + ".dir", "size": 10, "nfiles": 1}


def _old_lock(raw: dict) -> dict:
    """dvc.lock of a finished one-training-set study (what the code before issue 15 wrote), abridged."""
    # the base keys and the whole `profiles` block, as params.yaml held them before it was composed per profile
    common = {"profile": "smoke", "profiles": {"smoke": {}, "cpu": {}}, "data.crop_size": 64}
    train = {**common, "data.train": "data/synthetic/train"}
    old_test = {"synthetic": "data/synthetic/test", "gopro_real": "pipelines/data/gopro_real_crops"}
    return {"schema": "2.0", "stages": {
        "synthesize": {"cmd": "blurdm-bench synth", "deps": [CODE], "outs": [_dep("data/synthetic")]},
        "train_stage1@mimo_unet": {
            "cmd": "blurdm-bench study train --study table1 --backbone mimo_unet --stage stage1 "
                   "--dvc-stage train_stage1@mimo_unet",
            "deps": [_dep("data"), CODE], "params": {"params.yaml": train},
            "outs": [_dep("plots/training/table1/mimo_unet/stage1"), _dep("runs/table1/mimo_unet/stage1")]},
        "evaluate_table1@mimo_unet": {
            "cmd": "blurdm-bench study evaluate --study table1 --backbone mimo_unet",
            "deps": [_dep("runs/table1/mimo_unet/baseline"), _dep("runs/table1/mimo_unet/stage3"), CODE],
            "params": {"params.yaml": {**common, "data.test": old_test}},
            "outs": [_dep("eval/table1/mimo_unet")]},
        "ablation_prior@ddpm": {
            "cmd": "blurdm-bench study train --study ablation-prior --prior ddpm --dvc-stage ablation_prior@ddpm",
            "deps": [_dep("runs/table1/mimo_unet/stage1"), CODE],
            "params": {"params.yaml": {**train, "models.ablation_backbone": "mimo_unet"}},
            "outs": [_dep("plots/training/ablation-prior/ddpm"), _dep("runs/ablation-prior/ddpm")]},
        "evaluate_ablations": {
            "cmd": "blurdm-bench study evaluate --study ablations",
            "deps": [_dep("runs/table1/mimo_unet/stage1"), _dep("runs/ablation-prior"), CODE],
            "params": {"params.yaml": {**common, "data.test": old_test,
                                       "ablations": {"priors": ["ddpm"], "stages": ["s3_only"], "t_sweep": [8]}}},
            "outs": [_dep("eval/ablations")]},
    }}


FILES = ("runs/table1/mimo_unet/stage1/seed0/model.pt", "runs/table1/mimo_unet/stage3/seed0/model.pt",
         "eval/table1/mimo_unet/synthetic/blurdm/seed0/scores.csv", "plots/training/table1/mimo_unet/stage1/seed0.csv",
         "runs/ablation-prior/ddpm/stage3/seed0/model.pt")


@pytest.fixture
def project(tmp_path, monkeypatch):
    from dvc.repo import Repo

    root = reduced_smoke_root(tmp_path / "root", {}, active=True, base_overrides=DAG)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    Repo.init(str(root), no_scm=True).close()
    raw = yaml.safe_load((root / "params.yaml").read_text())
    (root / "dvc.lock").write_text(yaml.safe_dump(_old_lock(raw), sort_keys=False))
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    monkeypatch.delenv("BLURDM_PARAMS", raising=False)
    return root


def test_new_path_puts_the_training_set_in_the_old_layout_only():
    assert new_path("runs/table1/mimo_unet/stage1", "gopro") == "runs/table1/gopro/mimo_unet/stage1"
    assert new_path("eval/table1/loformer", "gopro") == "eval/table1/gopro/loformer"
    assert new_path("plots/training/table1/mimo_unet/stage2", "s") == "plots/training/table1/s/mimo_unet/stage2"
    for kept in ("runs/table1/gopro/mimo_unet/stage1", "runs/ablation-prior/ddpm", "data", "pipelines/study.py"):
        assert new_path(kept, "gopro") == kept


def test_migration_renames_rewrites_and_moves(project):
    target = load_target(project, None)
    plan = plan_migration(target, read_lock(project / "dvc.lock"))
    assert plan.renamed == {"train_stage1@mimo_unet": "train_stage1@synthetic-mimo_unet",
                            "evaluate_table1@mimo_unet": "evaluate_table1@synthetic-mimo_unet"}
    assert sorted(plan.rewritten) == ["ablation_prior@ddpm", "evaluate_ablations"] and not plan.notes
    apply(plan, project)
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert list(stages) == ["synthesize", "train_stage1@synthetic-mimo_unet", "evaluate_table1@synthetic-mimo_unet",
                            "ablation_prior@ddpm", "evaluate_ablations"]
    train = stages["train_stage1@synthetic-mimo_unet"]
    assert train["cmd"] == target.stages["train_stage1@synthetic-mimo_unet"]  # as dvc.yaml resolves it
    assert [o["path"] for o in train["outs"]] == ["plots/training/table1/synthetic/mimo_unet/stage1",
                                                  "runs/table1/synthetic/mimo_unet/stage1"]
    recorded = train["params"]["params.yaml"]
    assert "data.train" not in recorded and recorded["train_sets.synthetic.train"] == "data/synthetic/train"
    evaluate = stages["evaluate_table1@synthetic-mimo_unet"]
    assert evaluate["params"]["params.yaml"]["train_sets.synthetic.test"] == ["synthetic", "gopro_real"]
    assert [o["path"] for o in evaluate["outs"]] == ["eval/table1/synthetic/mimo_unet"]
    assert stages["ablation_prior@ddpm"]["params"]["params.yaml"]["ablations.train_set"] == "synthetic"
    assert stages["ablation_prior@ddpm"]["deps"][0]["path"] == "pipelines/train.py"  # sorted, as DVC writes
    assert stages["evaluate_ablations"]["params"]["params.yaml"]["ablations"]["train_set"] == "synthetic"
    assert stages["synthesize"] == _read_lock_entry_before("synthesize", project)
    for rel in FILES:  # the same bytes, in the new layout
        moved = new_path(rel, "synthetic")
        assert not (project / rel).exists() or rel == moved
        assert (project / moved).read_text() == rel
    again = plan_migration(load_target(project, None), read_lock(project / "dvc.lock"))
    assert again.empty and again.lock == yaml.safe_load((project / "dvc.lock").read_text())


def _read_lock_entry_before(name: str, project: Path) -> dict:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    return _old_lock(raw)["stages"][name]


def test_runs_trained_elsewhere_are_left_to_retrain(project):
    lock = read_lock(project / "dvc.lock")
    recorded = lock["stages"]["train_stage1@mimo_unet"]["params"]["params.yaml"]
    recorded["profiles"]["smoke"]["data"] = {"train": "data/gopro/train"}  # the old paper-like profile
    plan = plan_migration(load_target(project, None), lock)
    migrated = plan.lock["stages"]["train_stage1@synthetic-mimo_unet"]["params"]["params.yaml"]
    assert "train_sets.synthetic.train" not in migrated and "data.train" not in migrated
    assert any("trained on data/gopro/train" in note for note in plan.notes)


def test_a_conflict_changes_nothing(project):
    (project / "runs" / "table1" / "synthetic" / "mimo_unet").mkdir(parents=True)
    before = (project / "dvc.lock").read_text()
    with pytest.raises(ValueError, match="both exist"):
        plan_migration(load_target(project, None), read_lock(project / "dvc.lock"))
    assert (project / "dvc.lock").read_text() == before
    assert (project / "runs" / "table1" / "mimo_unet" / "stage1" / "seed0" / "model.pt").is_file()


def test_the_command_refuses_to_accept_what_is_more_than_code(project, capsys):
    from pipelines.cli import main

    assert main(["migrate-lock"]) == 0
    out = capsys.readouterr().out
    assert "rename  train_stage1@mimo_unet -> train_stage1@synthetic-mimo_unet" in out
    # the fake lock's hashes match no real folder: outputs and data differ, so nothing is accepted
    assert "accept " not in out and "train_stage1@synthetic-mimo_unet: not accepted" in out
    assert main(["migrate-lock", "--no-accept"]) == 0 and "nothing to migrate" in capsys.readouterr().out


def test_what_step_3_accepts():
    from pipelines.core.config import compose

    raw = compose("smoke")  # params.yaml now: composed for one profile
    # a lock of the old layout: base keys plus the profiles' overlays (the smoke one makes the same effective train)
    recorded = {"profile": "smoke", "profiles": {"smoke": {"train": copy.deepcopy(raw["train"])},
                                                 "paper": {"data": {"crop_size": 256}}},
                "train": {}, "data.crop_size": raw["data"]["crop_size"]}
    code = [{"changed deps": {"pipelines/study.py": "modified", "models": "modified"}}]
    assert why_not_acceptable(code, recorded, raw) == []
    layout = [{"changed deps": {"params.yaml": {"profiles": "deleted", "train": "modified"}}}]
    assert why_not_acceptable(layout, recorded, raw) == []  # same effective values: only the layout changed
    other_profile = copy.deepcopy(recorded)
    other_profile["profiles"]["paper"]["data"]["train"] = "data/gopro/train"  # a profile the stage does not run
    assert why_not_acceptable(layout, other_profile, raw) == []
    read_key = copy.deepcopy(recorded)
    read_key["profiles"]["smoke"]["train"]["batch_size"] = 3  # the active profile, a key the stage reads
    assert why_not_acceptable(layout, read_key, raw)
    base_key = copy.deepcopy(recorded)
    base_key["data.crop_size"] = 48  # a base key the stage reads
    assert why_not_acceptable([{"changed deps": {"params.yaml": {"data.crop_size": "modified"}}}], base_key, raw)
    for change in ({"changed deps": {"data": "modified"}}, {"changed outs": {"runs/x": "modified"}},
                   "changed command", {"changed deps": {"params.yaml": {"seed": "new"}}}):
        assert why_not_acceptable([change], recorded, raw), change
    switched = {**raw, "profile": "cpu"}  # another profile than the runs were made with
    assert why_not_acceptable(layout, recorded, switched)
    # a lock that declared the active overlay only (profiles.<active>)
    active_only = {"profile": "smoke", "profiles.smoke": {"train": copy.deepcopy(raw["train"])}, "train": {},
                   "data.crop_size": raw["data"]["crop_size"]}
    changed = [{"changed deps": {"params.yaml": {"profiles.smoke": "deleted"}}}]
    assert why_not_acceptable(changed, active_only, raw) == []
    active_only["profiles.smoke"]["train"]["batch_size"] = 3
    assert why_not_acceptable(changed, active_only, raw)


# issue 26, item 22: a corrupt dvc.lock is one clear line naming it, not a DVC traceback; nothing is changed
@pytest.mark.parametrize("corrupt", [
    "schema: '2.0'\nstages:\n  train_stage1@mimo_unet: {cmd: [unclosed\n",  # not YAML
    "schema: '2.0'\nstages:\n  train_stage1@mimo_unet: 5\n",  # YAML, not a lock entry
    "schema: '2.0'\nstages: [1, 2]\n",
    "schema: '2.0'\nstages:\n  train_stage1@mimo_unet: {cmd: x, deps: 5}\n",  # a mapping DVC's schema refuses
    "\x00\x01binary",
])
def test_a_corrupt_lock_is_one_clear_error(project, capsys, corrupt):
    from pipelines.cli import main

    (project / "dvc.lock").write_text(corrupt)
    before = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".dvc" not in p.parts)
    assert main(["migrate-lock"]) == 2
    err = capsys.readouterr().err
    assert str(project / "dvc.lock") in err and "Traceback" not in err, err
    assert (project / "dvc.lock").read_text() == corrupt
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".dvc" not in p.parts) == before
