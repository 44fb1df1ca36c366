"""Several machines (issue 16, item 4): nodes, node rank and rendezvous from params or the environment
(SLURM-style), the torchrun command the study starts, and a real 2-node x 1-process gloo run on 127.0.0.1."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from _train_fixtures import make_dataset, write_params_file

from pipelines.core.config import load_params
from pipelines.training.launch import resolve_launch
from pipelines.training.job import TrainJob
from pipelines.training.study_training import torchrun_argv

REPO = Path(__file__).resolve().parents[1]


def _train(**overrides):
    return load_params(profile="cpu", overrides={"train": overrides}).train


def test_launch_comes_from_params_and_the_environment_wins():
    plain = resolve_launch(_train(), env={})
    assert (plain.nodes, plain.node_rank, plain.world_size, plain.needs_torchrun) == (1, 0, 1, False)
    gpus = resolve_launch(_train(gpus=4), env={})
    assert gpus.needs_torchrun and gpus.torchrun_args() == ["--standalone", "--nproc_per_node=4"]

    params = resolve_launch(_train(nodes=2, node_rank=1, rdzv_endpoint="head:1234", rdzv_timeout=30, gpus=8), env={})
    assert params.world_size == 16
    assert params.torchrun_args() == ["--nnodes=2", "--node_rank=1", "--rdzv_backend=static",
                                      "--rdzv_endpoint=head:1234", "--rdzv_conf=timeout=30", "--nproc_per_node=8"]
    slurm = resolve_launch(_train(gpus=8), env={"SLURM_NNODES": "4", "SLURM_NODEID": "3", "MASTER_ADDR": "node001"})
    assert (slurm.nodes, slurm.node_rank, slurm.rdzv_endpoint) == (4, 3, "node001:29500")
    ours = resolve_launch(_train(nodes=2, rdzv_endpoint="a:1"),
                          env={"BLURDM_NODES": "3", "SLURM_NNODES": "4", "BLURDM_NODE_RANK": "2", "SLURM_NODEID": "0",
                               "BLURDM_RDZV_ENDPOINT": "b:2", "MASTER_ADDR": "c", "MASTER_PORT": "3"})
    assert (ours.nodes, ours.node_rank, ours.rdzv_endpoint) == (3, 2, "b:2")
    assert resolve_launch(_train(), env={"SLURM_NNODES": "1", "MASTER_ADDR": "x"}).needs_torchrun is False

    with pytest.raises(ValueError, match="need a rendezvous endpoint"):
        resolve_launch(_train(nodes=2), env={})
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        resolve_launch(_train(nodes=2, rdzv_endpoint="head"), env={})
    with pytest.raises(ValueError, match=r"node rank 4 must be in 0\.\.3"):
        resolve_launch(_train(), env={"SLURM_NNODES": "4", "SLURM_NODEID": "4", "MASTER_ADDR": "h"})
    with pytest.raises(ValueError, match=r"\$SLURM_NNODES='two' is not an integer"):
        resolve_launch(_train(), env={"SLURM_NNODES": "two"})


def test_the_study_runs_a_job_under_torchrun_on_every_node(monkeypatch, tmp_path):
    from pipelines.training import study_training as study

    calls = []
    monkeypatch.setattr(study.subprocess, "run", lambda argv, check: calls.append(argv))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name in ("SLURM_NNODES", "SLURM_JOB_NUM_NODES", "SLURM_NODEID", "MASTER_ADDR", "BLURDM_NODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BLURDM_NODE_RANK", "1")
    params = load_params(profile="cpu", overrides={"train": {"nodes": 2, "rdzv_endpoint": "127.0.0.1:29999"}})
    out = tmp_path / "run"
    common = {"study": "table1", "backbone": "mimo_unet", "stage": "stage1", "seed": 0, "out": out, "group": "g", "train_set": "synthetic",
              "dvc_stage": None, "progress": False, "source": ("params.yaml", "cpu")}
    assert study._train(params, **common) == {}  # node 1: node 0 writes the outputs
    argv = calls[-1]
    assert argv[1:3] == ["-m", "torch.distributed.run"] and "--standalone" not in argv
    for part in ("--nnodes=2", "--node_rank=1", "--rdzv_endpoint=127.0.0.1:29999", "--nproc_per_node=1"):
        assert part in argv
    assert argv[argv.index("--out") + 1] == str(out)
    monkeypatch.setenv("BLURDM_NODE_RANK", "0")
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"steps": 3}))
    assert study._train(params, **common) == {"steps": 3}  # node 0 reads what rank 0 wrote
    assert "--node_rank=0" in calls[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_with_one_process_each_train_together_over_loopback(tmp_path):
    """Two torchrun launches (node ranks 0 and 1) that meet at 127.0.0.1 with gloo: one DDP job of world
    size 2 with an uneven split of the global batch (3 = 2 + 1); only node 0's rank writes."""
    data_root = make_dataset(tmp_path / "synthetic")
    steps = {"stage1": 4, "stage2": 2, "stage3": 2}
    params_file = write_params_file(tmp_path / "params.yaml", data_root,
                                    {"batch_size": 3, "steps": steps, "checkpoint_every": 2, "rdzv_timeout": 60})
    params = load_params(params_file, profile="smoke")
    out = tmp_path / "two-nodes"
    job = TrainJob(stage="stage1", backbone="mimo_unet", out_dir=out, mlflow=False)
    endpoint = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    procs = []
    for rank in (0, 1):
        launch = resolve_launch(params.train, env={"BLURDM_NODES": "2", "BLURDM_NODE_RANK": str(rank),
                                                   "BLURDM_RDZV_ENDPOINT": endpoint})
        argv = torchrun_argv(job, launch.procs_per_node, str(params_file), "smoke", progress=False, launch=launch)
        procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, text in zip(procs, outputs):
        assert proc.returncode == 0, text[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4 and metrics["batch_size"] == 3
    assert metrics["batching"]["per_process"] == 2
    losses = [loss for _, loss in metrics["loss_log"]]
    assert len(losses) == 4 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sorted(p.name for p in out.iterdir()) == ["curves.csv", "last.pt", "metrics.json", "model.pt", "sample.png"]
    assert sum(text.count("mimo_unet stage1: 4 steps") for text in outputs) == 1
