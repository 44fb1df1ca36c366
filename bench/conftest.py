"""Micro-benchmarks (``make bench``: ``pytest bench --benchmark-only``), not part of ``make test``.

Offline and seeded like the tests; torch keeps its default thread count (the benchmarks measure this
machine). Results: ``bench/results.json`` (pytest-benchmark's JSON, written by ``make bench``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipelines.core.environment import set_offline_env

set_offline_env()
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(autouse=True)
def _seeded():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def params():
    from pipelines.core.config import load_params

    return load_params()
