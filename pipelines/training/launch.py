"""Launching a training job on several GPUs and several machines (``torchrun``).

The study (:func:`pipelines.training.study_training._train`) starts every training job under ``torchrun`` when it needs
more than one process: ``train.gpus > 1`` (one process per GPU) or ``nodes > 1`` (every machine runs
the same ``blurdm-bench study ...`` command; each starts ``torchrun`` for its share and they meet at
the rendezvous). Everything else is unchanged: the global batch ``train.batch_size`` is split over all
``nodes x processes`` (:mod:`pipelines.training.step`), rank 0 (on node 0) writes checkpoints, metrics and
MLflow records, so the run folders (``runs/``) must be on a filesystem every node sees at the same path.

Where the numbers come from (first found wins):

* nodes: ``$BLURDM_NODES``, ``$SLURM_NNODES`` (``$SLURM_JOB_NUM_NODES``), ``train.nodes``
* node rank: ``$BLURDM_NODE_RANK``, ``$SLURM_NODEID``, ``train.node_rank``
* rendezvous endpoint (``host:port`` of node 0): ``$BLURDM_RDZV_ENDPOINT``,
  ``$MASTER_ADDR[:$MASTER_PORT]`` (port 29500 when unset), ``train.rdzv_endpoint``
* processes per node: ``train.gpus`` (at least 1: a CPU node runs one process, gloo)

Rendezvous is torchrun's ``static`` backend: node ``r`` joins as ``--node_rank r`` at the TCP store of
node 0 (``--rdzv_endpoint``), waiting at most ``train.rdzv_timeout`` seconds for the others.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.core.errors import InvalidInputError

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Launch:
    nodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    procs_per_node: int = 1
    rdzv_timeout: int = 600
    sources: tuple[str, ...] = ()  # where nodes / node_rank / endpoint came from (for messages)

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def needs_torchrun(self) -> bool:
        return self.world_size > 1

    def torchrun_args(self) -> list[str]:
        """The ``torchrun`` options (after ``python -m torch.distributed.run``)."""
        if self.nodes == 1:
            return ["--standalone", f"--nproc_per_node={self.procs_per_node}"]
        return [f"--nnodes={self.nodes}", f"--node_rank={self.node_rank}", "--rdzv_backend=static",
                f"--rdzv_endpoint={self.rdzv_endpoint}", f"--rdzv_conf=timeout={self.rdzv_timeout}",
                f"--nproc_per_node={self.procs_per_node}"]


def _int_env(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[int | None, str | None]:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value), f"${name}"
            except ValueError:
                raise InvalidInputError(f"${name}={value!r} is not an integer") from None
    return None, None


def check_endpoint(endpoint: str) -> str:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"rendezvous endpoint {endpoint!r} must be HOST:PORT (e.g. node001:29500)")
    return endpoint


def resolve_launch(train_cfg, env: Mapping[str, str] | None = None) -> Launch:
    """The launch of a training job from ``train`` params and the environment (see the module doc)."""
    env = os.environ if env is None else env
    sources = []
    nodes, where = _int_env(env, ("BLURDM_NODES", "SLURM_NNODES", "SLURM_JOB_NUM_NODES"))
    if nodes is None:
        nodes, where = train_cfg.nodes, "train.nodes"
    sources.append(f"nodes={nodes} from {where}")
    rank, where = _int_env(env, ("BLURDM_NODE_RANK", "SLURM_NODEID"))
    if rank is None:
        rank, where = train_cfg.node_rank, "train.node_rank"
    sources.append(f"node_rank={rank} from {where}")
    if nodes < 1 or not 0 <= rank < nodes:
        raise InvalidInputError(f"node rank {rank} must be in 0..{nodes - 1} ({'; '.join(sources)})")
    endpoint = env.get("BLURDM_RDZV_ENDPOINT") or None
    where = "$BLURDM_RDZV_ENDPOINT"
    if endpoint is None and env.get("MASTER_ADDR"):
        endpoint = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT') or DEFAULT_PORT}"
        where = "$MASTER_ADDR:$MASTER_PORT"
    if endpoint is None:
        endpoint, where = train_cfg.rdzv_endpoint, "train.rdzv_endpoint"
    if nodes > 1:
        if not endpoint:
            raise InvalidInputError(f"{nodes} nodes need a rendezvous endpoint HOST:PORT of node 0: set train.rdzv_endpoint, "
                             "$BLURDM_RDZV_ENDPOINT or $MASTER_ADDR (and $MASTER_PORT)")
        check_endpoint(endpoint)
        sources.append(f"endpoint {endpoint} from {where}")
    return Launch(nodes=nodes, node_rank=rank, rdzv_endpoint=endpoint if nodes > 1 else None,
                  procs_per_node=max(1, train_cfg.gpus), rdzv_timeout=train_cfg.rdzv_timeout,
                  sources=tuple(sources))


def torchrun_prefix(launch: Launch) -> list[str]:
    """``python -m torch.distributed.run <options>`` for ``launch`` (an argv list: no shell)."""
    return [sys.executable, "-m", "torch.distributed.run", *launch.torchrun_args()]
