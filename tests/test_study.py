"""The study layer: layout, ablation bookkeeping and the multi-GPU launcher."""
from __future__ import annotations

from pathlib import Path

from pipelines.core.config import load_params
from pipelines.core.layout import ablation_variants, train_dir
from pipelines.training.job import TrainJob
from pipelines.training.study_training import torchrun_argv


def test_ablation_variants_reuse_the_table1_runs():
    params = load_params(profile="cpu")
    variants = ablation_variants(params)
    bb = params.models.ablation_backbone
    assert variants["none"]["study"] == variants["blurdm"]["study"] == variants["oracle"]["study"] == "table1"
    assert variants["oracle"]["oracle"] and variants["oracle"]["stage"] == "stage1"
    assert f"T={params.prior.T}" not in variants  # the Table-1 BlurDM run is T = prior.T: not retrained
    assert all(f"T={t}" in variants for t in params.ablations.t_sweep if t != params.prior.T)
    assert set(params.ablations.priors) <= set(variants) and set(params.ablations.stages) <= set(variants)
    assert train_dir("table1", bb, "stage1", 2).parts[-4:] == ("table1", bb, "stage1", "seed2")


def test_torchrun_argv_is_a_list_with_the_whole_job():
    job = TrainJob(stage="stage3", backbone="stripformer", out_dir=Path("runs/x"), prior="rddm", T=3, seed=1,
                   stage2=Path("runs/s2"), study="ablation-prior", group="g", dvc_stage="ablation_prior@rddm",
                   restart_if_changed=True)
    argv = torchrun_argv(job, 4, "params.yaml", "paper", progress=False)
    assert argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    joined = " ".join(argv)
    for part in ("--stage stage3", "--backbone stripformer", "--prior rddm", "--T 3", "--seed 1",
                 "--stage2 runs/s2", "--profile paper", "--params params.yaml", "--restart-if-changed",
                 "--dvc-stage ablation_prior@rddm", "--no-progress"):
        assert part in joined
    assert "--stage1" not in argv


def test_the_train_command_line_and_torchrun_argv_come_from_the_job_fields():
    """Every field of TrainJob is a flag of `blurdm-bench train`, and the argv torchrun gets parses back into
    the same job: a new job field needs no edit in the parser or in torchrun_argv."""
    import argparse
    import dataclasses

    from pipelines import train as train_command
    from pipelines.training.job import job_from_args

    parser = argparse.ArgumentParser()
    train_command.configure_parser(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for f in dataclasses.fields(TrainJob):
        if f.metadata["cli"]:
            assert (f.metadata["flag"] or "--" + f.name.replace("_", "-")) in flags, f.name
    params = load_params(profile="cpu")
    for job in (TrainJob(stage="stage3", backbone="stripformer", out_dir=Path("runs/x"), prior="rddm", T=3, seed=1,
                         variant="s1_s3", stage1=Path("runs/s1"), train_set="synthetic", steps=7, resume=False,
                         restart_if_changed=True, study="ablation-stages", group="g", dvc_stage="d", mlflow=False),
                TrainJob(stage="stage1", backbone="mimo_unet", out_dir=Path("o"), data=Path("pairs"))):
        argv = torchrun_argv(job, 2, None, None)
        args = parser.parse_args(argv[argv.index("train") + 1:])
        assert job_from_args(args, params) == job
    # left out, prior / T / seed come from the params
    args = parser.parse_args(["--stage", "stage2", "--backbone", "mimo_unet", "--out", "o"])
    job = job_from_args(args, params)
    assert (job.prior, job.T, job.seed) == (params.prior.name, params.prior.T, params.train.seeds[0])


def test_table1_layout_and_stage_names_have_the_training_set():
    from types import SimpleNamespace

    from pipelines.core.layout import scored_columns, table1_key, table1_stage
    from pipelines.study import stage_params_keys

    params = load_params(profile="cpu")
    key = table1_key("synthetic", "mimo_unet")
    assert train_dir("table1", key, "stage3", 0).parts[-6:] == ("runs", "table1", "synthetic", "mimo_unet", "stage3",
                                                                "seed0")
    assert table1_stage("train_stage1", "realblur_j", "mimo_unet") == "train_stage1@realblur_j-mimo_unet"
    assert scored_columns(params, "synthetic") == [("synthetic", None), ("gopro_real", None)]
    assert ablation_variants(params)["blurdm"]["key"] == table1_key(params.ablations.train_set, "mimo_unet")
    args = SimpleNamespace(study="table1", action="train", train_set="synthetic", backbone="stripformer", stage="stage1")
    keys = stage_params_keys(params, args)
    assert "train_sets.synthetic.train" in keys and not any(k.startswith("train_sets.synthetic.test") for k in keys)
    keys = stage_params_keys(params, SimpleNamespace(**{**vars(args), "action": "evaluate"}))
    assert "train_sets.synthetic.test" in keys and "train_sets.synthetic.train" not in keys
    ablation = SimpleNamespace(study="t-sweep", action="train", train_set=None, backbone=None, stage=None)
    assert {"train_sets.synthetic.train", "ablations.train_set"} <= set(stage_params_keys(params, ablation))


def test_seeds_run_side_by_side_on_two_cores_or_more(monkeypatch):
    """The ablation backbone's three seeds run as three one-thread processes on 2 cores (the tiny models train
    faster in total that way); one seed, GPUs or a single core keep one process."""
    from pipelines.training import study_training

    params = load_params(profile="cpu")
    monkeypatch.delenv("BLURDM_WORKERS", raising=False)
    monkeypatch.setattr(study_training, "plan_threads", lambda configured: type("P", (), {"threads": 2})())
    assert study_training.seed_workers(params, "mimo_unet", 3) == 3
    assert study_training.seed_workers(params, "mimo_unet", 1) == 1
    monkeypatch.setattr(study_training, "plan_threads", lambda configured: type("P", (), {"threads": 8})())
    assert study_training.seed_workers(params, "mimo_unet", 3) == 3
    monkeypatch.setattr(study_training, "plan_threads", lambda configured: type("P", (), {"threads": 1})())
    assert study_training.seed_workers(params, "mimo_unet", 3) == 1
    paper = load_params(profile="paper")  # train.gpus 1: the GPU runs one job at a time
    monkeypatch.setattr(study_training, "plan_threads", lambda configured: type("P", (), {"threads": 16})())
    assert study_training.seed_workers(paper, "mimo_unet", 3) == 1


def test_the_paper_ablations_train_their_own_base_in_the_table1_layout():
    """MIMO-UNet is not a Table-1 backbone of the paper profile: the ablation_base stage trains its four runs into
    runs/table1/gopro/mimo_unet/, where the ablations and the evaluation find them."""
    from pipelines.core.layout import table1_key

    paper = load_params(profile="paper")
    variants = ablation_variants(paper)
    assert paper.models.ablation_backbone not in paper.models.backbones
    assert variants["none"]["key"] == variants["oracle"]["key"] == table1_key("gopro", "mimo_unet")


def test_a_stage_trains_its_seeds_side_by_side_with_a_share_of_the_cores_each(tmp_path):
    """Two seeds of one stage on this machine's cores: each in its own process (when there are 2+ cores), each
    sized to its share; both finish, into one fresh MLflow store that the stage opened before them."""
    import json
    import os
    import subprocess
    import sys

    from _smoke_root import REPO, reduced_smoke_root
    from pipelines.core.threads import available_cores

    smoke = {"synth": {"n_train": 8, "n_test": 2}, "backbone_train": {"mimo_unet": {"seeds": [0, 1]}},
             "train": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}}}
    root = reduced_smoke_root(tmp_path / "root", smoke)
    env = {**os.environ, "BLURDM_ROOT": str(root), "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    for var in ("OMP_NUM_THREADS", "BLURDM_WORKERS", "DVC_EXP_NAME"):
        env.pop(var, None)
    subprocess.run([sys.executable, "-m", "pipelines.cli", "synth"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=600)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "study", "train", "--study", "table1", "--train-set",
                           "synthetic", "--backbone", "mimo_unet", "--stage", "stage1", "--no-progress"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cores = available_cores()
    threads = [json.loads((root / "runs" / "table1" / "synthetic" / "mimo_unet" / "stage1" / f"seed{s}" /
                           "metrics.json").read_text())["threads"] for s in (0, 1)]
    if cores >= 2:
        assert "2 seeds, 2 side by side" in done.stdout
        assert threads == [max(1, cores // 2)] * 2
    else:
        assert threads == [1, 1]
