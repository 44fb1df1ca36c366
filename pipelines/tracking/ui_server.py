"""The ``mlflow ui`` command line for ``blurdm-bench ui``: loopback only unless exposed on purpose, an argument
list (no shell), the ``mlflow`` of this environment."""
from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from pathlib import Path

from pipelines.core.errors import UserError

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5000  # the port reports/build.py links runs to (http://127.0.0.1:5000)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def mlflow_executable() -> list[str]:
    """The ``mlflow`` console script of this environment, else ``python -m mlflow``."""
    script = Path(sys.executable).with_name("mlflow")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def ui_command(store: str, host: str = LOOPBACK, port: int = DEFAULT_PORT, expose: bool = False) -> list[str]:
    """The ``mlflow ui`` argv (a list, for ``subprocess`` without a shell); bad values are UserErrors."""
    if not store or store.startswith("-"):
        raise UserError(f"--store: not a tracking store URI: {store!r}")
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise UserError(f"--host: not a host name or address: {host!r}")
    if not is_loopback(host) and not expose:
        raise UserError(f"--host {host}: the MLflow UI has no authentication, so it binds to {LOOPBACK} only; "
                        "pass --expose as well to make it reachable from other machines")
    if not 1 <= int(port) <= 65535:
        raise UserError(f"--port must be in 1..65535, got {port}")
    return [*mlflow_executable(), "ui", "--backend-store-uri", store, "--host", host, "--port", str(int(port))]
