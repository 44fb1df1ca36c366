"""Torch threads that fit the machine: the cores this process may use, shared between the jobs that run
side by side on them.

``threads = train.threads`` when set (> 0); otherwise ``cores // (workers * local_processes)``, at least 1:

* ``cores``: the CPUs this process may run on, ``os.sched_getaffinity(0)`` (``taskset``, cpusets,
  Slurm / Docker ``--cpuset-cpus``), capped by a cgroup CPU quota (Docker ``--cpus``, Kubernetes
  limits: ``/sys/fs/cgroup/cpu.max`` or the cgroup-v1 ``cpu.cfs_quota_us``) and by
  ``$OMP_NUM_THREADS`` when that is set;
* ``workers``: how many experiments run side by side. ``$BLURDM_WORKERS`` when set (the documented,
  explicit way: ``BLURDM_WORKERS=2 dvc queue start -j 2``); otherwise, when this process runs under a
  DVC queue worker (``dvc queue start -j N`` starts N processes ``dvc exp queue-worker <node>``, and
  the experiment's stages are their children), the number of DVC queue workers running on the
  machine. DVC itself passes no worker count to the stages it runs (it sets ``DVC_EXP_NAME``,
  ``DVC_EXP_BASELINE_REV``, ``DVC_ROOT`` and ``DVC_STAGE``, nothing about ``-j``), so the workers are
  counted from ``/proc``; anything else (``dvc repro``, ``dvc exp run`` in the workspace) counts 1;
* ``local_processes``: ``$LOCAL_WORLD_SIZE`` under ``torchrun`` (its processes on this machine),
  else ``$WORLD_SIZE``, else 1.

Without this, two queue workers on a 2-core machine each ran torch with 2 threads: 4 spinning OpenMP
threads on 2 cores, and FFTformer's stage 3 fell from 7.7 to 0.1-0.5 it/s.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

WORKERS_ENV = "BLURDM_WORKERS"
QUEUE_WORKER_ARG = "queue-worker"  # argv of a DVC queue worker: dvc exp queue-worker <node> [--clean]


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    cores: int
    workers: int
    local_processes: int
    rule: str  # how ``threads`` was chosen, for metrics.json / MLflow

    def as_dict(self) -> dict:
        return {"threads": self.threads, "cores": self.cores, "workers": self.workers,
                "local_processes": self.local_processes, "rule": self.rule}


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def available_cores() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup quota and ``$OMP_NUM_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    omp = _positive_int(os.environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        cores = min(cores, omp)
    return max(1, cores)


def _cmdline(pid: str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _parent(pid: str) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    return fields[1] if len(fields) > 1 else None


def _is_queue_worker(argv: list[str]) -> bool:
    return QUEUE_WORKER_ARG in argv and "exp" in argv


def under_dvc_queue_worker(pid: str | None = None) -> bool:
    """Whether a DVC queue worker is an ancestor of this process."""
    pid = pid or str(os.getpid())
    seen = set()
    while pid and pid not in ("0", "1") and pid not in seen:
        seen.add(pid)
        if _is_queue_worker(_cmdline(pid)):
            return True
        pid = _parent(pid)
    return False


def dvc_queue_workers() -> int | None:
    """Running DVC queue workers on this machine, when this process is a descendant of one; else None."""
    proc = Path("/proc")
    if not proc.is_dir() or not under_dvc_queue_worker():
        return None
    count = sum(1 for entry in proc.iterdir() if entry.name.isdigit() and _is_queue_worker(_cmdline(entry.name)))
    return count or None


def parallel_workers() -> tuple[int, str]:
    """``(workers, where the number came from)``."""
    explicit = _positive_int(os.environ.get(WORKERS_ENV))
    if explicit is not None:
        return explicit, f"${WORKERS_ENV}"
    queue = dvc_queue_workers()
    if queue is not None:
        return queue, "DVC queue workers running"
    return 1, "one experiment"


def local_processes() -> int:
    """Processes of this job on this machine (torchrun sets ``LOCAL_WORLD_SIZE``)."""
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        value = _positive_int(os.environ.get(name))
        if value is not None:
            return value
    return 1


def plan_threads(configured: int = 0, local: int | None = None) -> ThreadPlan:
    """The thread count for a job (see the module doc). ``configured`` > 0 wins (``train.threads``)."""
    cores = available_cores()
    workers, source = parallel_workers()
    local = local if local is not None else local_processes()
    if configured and configured > 0:
        return ThreadPlan(int(configured), cores, workers, local, "train.threads")
    threads = max(1, cores // max(1, workers * local))
    return ThreadPlan(threads, cores, workers, local,
                      f"{cores} core(s) // ({workers} worker(s) [{source}] x {local} local process(es))")


def apply_threads(configured: int = 0, local: int | None = None) -> ThreadPlan:
    """:func:`plan_threads`, then ``torch.set_num_threads``."""
    plan = plan_threads(configured, local)
    torch.set_num_threads(plan.threads)
    return plan
