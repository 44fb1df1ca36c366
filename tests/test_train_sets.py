"""Table 1's training-set dimension (issue 15): a params file with two small training sets, standing in for
GoPro (tested on GoPro + HIDE) and RealBlur-J (tested on its own test split), runs the smoke-sized Table-1
DAG (the training and evaluation stages as dvc.yaml's matrix resolves them, then tables and report) in a
fresh root. Table 1 then has one column per test set (RealBlur-J: one per scoring), each filled by the
models of the training set that lists it, and no RealBlur-J model is ever scored on GoPro or HIDE."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _smoke_root import REPO, reduced_smoke_root

pytestmark = pytest.mark.timeout(600)

TABLE1_FAMILIES = ("train_stage1", "train_stage2", "train_stage3", "train_baseline", "evaluate_table1")
SMOKE = {"train": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}},
         "backbone_train": {"mimo_unet": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}}},
         "evaluate": {"max_images": 3}}
# the two training sets replace the base block's one (null removes it): names shape the DAG
DAG = {"models": {"backbones": ["mimo_unet"]}, "ablations": {"train_set": "gopro"},
       "data": {"test": {"gopro": "sets/gopro_like/test", "hide": "pipelines/data/gopro_real_crops",
                         "realblur_j": "sets/realblur_like/test"}},
       "train_sets": {"synthetic": None,
                      "gopro": {"train": "sets/gopro_like/train", "test": ["gopro", "hide"]},
                      "realblur_j": {"train": "sets/realblur_like/train", "test": ["realblur_j"]}}}
DRIVER = ("import json, sys\nfrom pipelines.cli import main\nfor c in json.loads(sys.argv[1]):\n"
          "    code = main(c)\n    if code:\n        sys.exit(code)\n")
COLUMNS = {("gopro", "gopro", None), ("gopro", "hide", None), ("realblur_j", "realblur_j", "authors"),
           ("realblur_j", "realblur_j", "official")}


def _make_sets(root: Path) -> None:
    """Two small embedded datasets from different photographs and seeds (pipelines.data.motion_blur)."""
    from pipelines.core.config import load_params
    from pipelines.data.motion_blur import generate

    for name, seed, train, test in (("gopro_like", 11, ["astronaut", "coffee"], ["chelsea"]),
                                    ("realblur_like", 12, ["monarch", "sail"], ["tulips"])):
        synth = {"n_train": 6, "n_test": 3, "crop_size": 64, "subframes": 5, "seed": seed,
                 "train_sources": train, "test_sources": test, "dead_leaves": {"fraction": 0.0}}
        params = load_params(profile="smoke", overrides={"synth": synth})
        generate(params.synth, root / "sets" / name, progress=False)


def _stages(root: Path) -> dict[str, str]:
    """DVC stage name -> command, as DVC resolves the repo's dvc.yaml with this root's params."""
    from dvc.repo import Repo

    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    Repo.init(str(root), no_scm=True)
    with Repo(str(root)) as repo:
        return {stage.name: stage.cmd for stage in repo.index.stages}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = reduced_smoke_root(tmp_path_factory.mktemp("sets") / "root", SMOKE, active=True, base_overrides=DAG)
    _make_sets(root)
    stages = _stages(root)
    chain = [shlex.split(cmd)[1:] for name, cmd in stages.items() if name.split("@")[0] in TABLE1_FAMILIES]
    chain += [shlex.split(stages["tables"])[1:], shlex.split(stages["report"])[1:]]
    env = {**os.environ, "BLURDM_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    env.pop("DVC_EXP_NAME", None)
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(chain)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=560, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, stages


def test_the_dag_is_a_matrix_over_training_sets_and_backbones(study):
    root, stages = study
    for family in TABLE1_FAMILIES:
        assert {n for n in stages if n.startswith(family + "@")} == {f"{family}@gopro-mimo_unet",
                                                                     f"{family}@realblur_j-mimo_unet"}
    assert "--train-set realblur_j --backbone mimo_unet" in stages["evaluate_table1@realblur_j-mimo_unet"]
    assert "--dvc-stage train_stage1@gopro-mimo_unet" in stages["train_stage1@gopro-mimo_unet"]
    assert "ablation_prior@ddpm" in stages  # the ablations stay one family (on ablations.train_set: gopro)
    dag = subprocess.run([sys.executable, "-m", "dvc", "dag", "--dot"], cwd=root, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for train_set in ("gopro", "realblur_j"):  # each training set's chain, down to its evaluation
        for a, b in (("train_stage1", "train_stage2"), ("train_stage3", "evaluate_table1")):
            assert f'"{a}@{train_set}-mimo_unet" -> "{b}@{train_set}-mimo_unet";' in dag, (a, b, train_set)
    assert '"train_stage1@gopro-mimo_unet" -> "ablation_prior@ddpm";' in dag
    assert '"train_stage1@realblur_j-mimo_unet" -> "ablation_prior@ddpm";' not in dag


def test_table1_has_one_column_per_test_set_from_the_right_models(study):
    root, _ = study
    table = json.loads((root / "metrics" / "table1.json").read_text())
    rows = {(r["train_set"], r["dataset"], r["scoring"]) for r in table["rows"]}
    assert rows == COLUMNS
    assert set(table["average_gain"]) == {"gopro", "hide", "realblur_j-authors", "realblur_j-official"}
    for row in table["rows"]:
        assert row["dvc_stages"]["evaluation"] == f"evaluate_table1@{row['train_set']}-mimo_unet"
        for path in row["per_image"].values():
            assert path.startswith(f"eval/table1/{row['train_set']}/mimo_unet/"), path
    headline = json.loads((root / "metrics" / "headline.json").read_text())["table1_psnr_gain"]
    assert set(headline) == set(table["average_gain"])


def test_each_model_trained_on_its_set_and_realblur_is_never_scored_on_gopro(study):
    root, _ = study
    for train_set, folder in (("gopro", "gopro_like"), ("realblur_j", "realblur_like")):
        for stage in ("stage1", "stage2", "stage3", "baseline"):
            state = torch.load(root / "runs" / "table1" / train_set / "mimo_unet" / stage / "seed0" / "last.pt",
                               weights_only=True, map_location="cpu")
            assert state["fingerprint"]["data"]["train"] == str(root / "sets" / folder / "train")
    summaries = list((root / "eval" / "table1").rglob("summary.json"))
    assert summaries
    for summary_file in summaries:
        train_set = summary_file.relative_to(root / "eval" / "table1").parts[0]
        summary = json.loads(summary_file.read_text())
        assert Path(summary["checkpoint"]).is_relative_to(root / "runs" / "table1" / train_set)
        if train_set == "realblur_j":  # a RealBlur-J model: only RealBlur-J, in both scorings
            assert summary["dataset"] == "realblur_j" and summary["realblur_mode"] in ("authors", "official")
            assert summary_file.parts[-4] == f"realblur_j-{summary['realblur_mode']}"
        else:
            assert summary["dataset"] in ("gopro", "hide") and summary["realblur_mode"] is None
    assert not list((root / "eval" / "table1" / "realblur_j").rglob("gopro*"))


def test_the_report_names_the_training_set_of_each_column(study):
    root, _ = study
    page = (root / "reports" / "site" / "index.html").read_text()
    for table_id in ("table1-gopro", "table1-hide", "table1-realblur_j-authors", "table1-realblur_j-official",
                     "table1-realblur_r"):
        assert f'id="{table_id}"' in page, table_id
    assert "GoPro (models trained on GoPro)" in page and "HIDE (models trained on GoPro)" in page
    assert "RealBlur-J, official RealBlur scoring (ECC-aligned, masked) (models trained on RealBlur-J)" in page
    assert "RealBlur-J, authors&#39; scoring (no alignment) (models trained on RealBlur-J)" in page
    assert "RealBlur-R: not run (no training set lists it in params train_sets)" in page
