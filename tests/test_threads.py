"""Torch threads sized to the cores a job may use, shared between parallel experiments (issue 13, item 5)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core import threads as th

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    for name in (th.WORKERS_ENV, "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(th, "_cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(th, "dvc_queue_workers", lambda: None)
    return monkeypatch


def _cores(monkeypatch, n: int):
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(n)))


def test_one_job_takes_every_core_it_may_use(clean_env):
    _cores(clean_env, 8)
    plan = th.plan_threads(0)
    assert (plan.threads, plan.cores, plan.workers, plan.local_processes) == (8, 8, 1, 1)


def test_workers_and_local_ranks_share_the_cores(clean_env):
    _cores(clean_env, 16)
    clean_env.setenv(th.WORKERS_ENV, "2")
    assert th.plan_threads(0).threads == 8
    clean_env.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes on this machine
    clean_env.setenv("WORLD_SIZE", "8")  # (2 machines): the local count is what shares the cores
    plan = th.plan_threads(0)
    assert (plan.threads, plan.workers, plan.local_processes) == (2, 2, 4)
    assert "BLURDM_WORKERS" in plan.rule
    clean_env.setenv(th.WORKERS_ENV, "64")
    assert th.plan_threads(0).threads == 1  # never 0


def test_explicit_threads_win(clean_env):
    _cores(clean_env, 2)
    clean_env.setenv(th.WORKERS_ENV, "2")
    plan = th.plan_threads(6)
    assert plan.threads == 6 and plan.rule == "train.threads"


def test_affinity_quota_and_omp_cap_the_cores(clean_env):
    _cores(clean_env, 8)
    clean_env.setattr(th, "_cgroup_cpu_limit", lambda root=None: 2.5)  # docker --cpus 2.5
    assert th.available_cores() == 2
    clean_env.setenv("OMP_NUM_THREADS", "1")
    assert th.available_cores() == 1


def test_cgroup_quota_files(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert th._cgroup_cpu_limit(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert th._cgroup_cpu_limit(v2) == pytest.approx(1.5)
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert th._cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert th._cgroup_cpu_limit(v1) == pytest.approx(3.0)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_dvc_queue_workers_are_counted_from_proc():
    """A stage under a DVC queue worker (argv ``dvc exp queue-worker <node>``) sees the running workers;
    outside one it counts nothing."""
    probe = ("import json; from pipelines.core import threads as t; "
             "print(json.dumps([t.under_dvc_queue_worker(), t.dvc_queue_workers(), t.parallel_workers()[0]]))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(th.WORKERS_ENV, None)
    # a stand-in worker: a python process whose argv reads like `dvc exp queue-worker node@localhost`
    worker = ("import subprocess, sys; r = subprocess.run([sys.executable, '-c', sys.argv[1]], "
              "capture_output=True, text=True); print(r.stdout, end=''); sys.stderr.write(r.stderr)")
    out = subprocess.run([sys.executable, "-c", worker, probe, "exp", "queue-worker", "dvc-exp-test-1@localhost"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    inside, count, workers = json.loads(out.stdout)
    assert inside and count >= 1 and workers == count
    alone = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                           cwd=REPO, check=False)
    assert json.loads(alone.stdout) == [False, None, 1]


def test_training_records_the_thread_plan(clean_env):
    """configure_torch (what training calls) sizes the threads by the plan."""
    import torch

    from pipelines.training.distributed import Distributed, configure_torch

    _cores(clean_env, 4)
    clean_env.setenv(th.WORKERS_ENV, "2")
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())

    class Cfg:
        threads = 0

    try:
        assert configure_torch(Cfg(), Distributed()) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
