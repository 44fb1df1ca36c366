"""Environment set-up that must happen before torchvision / pyiqa / mlflow are imported: telemetry and hub
downloads off, MLflow's HTTP retries capped (:func:`set_offline_env`), and the torchvision work-around below.

The only torchvision 0.28.0 wheel on the registry is a CUDA build. Next to the CPU-only torch
2.13.0 wheel its C extension fails to load and importing torchvision raises
``RuntimeError: operator torchvision::nms does not exist``. :func:`import_torchvision` is the ONE
place that deals with it: it tries the import, and only when exactly that error occurs registers
placeholder schemas for the missing ``torchvision::nms`` / ``torchvision::qnms`` operators (we never
call them: detection ops are not used by this project) and imports again. A working torchvision is
never shadowed.
"""
from __future__ import annotations

import os
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # pyiqa / huggingface_hub: fail fast instead of waiting on the network
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
}

# MLflow's HTTP client retries a failed request 7 times with a doubling back-off (~4 minutes per call on an
# unreachable server) and waits 120 s for an answer: capped here (the user's own values win), so a tracking
# server that is down fails a command in seconds with a clear error (pipelines.tracking.store.TrackingError)
MLFLOW_HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_placeholders_registered = False


def set_offline_env() -> None:
    """Switch telemetry and hub downloads off and cap MLflow's HTTP retries (:data:`MLFLOW_HTTP_LIMITS`), unless
    the user already chose a value."""
    for key, value in {**OFFLINE_ENV, **MLFLOW_HTTP_LIMITS}.items():
        os.environ.setdefault(key, value)


def _register_placeholders() -> None:
    global _placeholders_registered
    if _placeholders_registered:
        return
    import torch.library

    lib = torch.library.Library("torchvision", "FRAGMENT")  # noqa: F841 - kept alive below
    for name, schema in _MISSING_OPS.items():
        try:
            lib.define(schema)
        except RuntimeError:
            pass  # already defined (a working extension, or an earlier call)
    _LIBS.append(lib)
    _placeholders_registered = True


_LIBS: list = []


def import_torchvision():
    """Import torchvision, working around the CUDA-only wheel on CPU torch (see module doc)."""
    set_offline_env()
    try:
        import torchvision  # noqa: F401

        return sys.modules["torchvision"]
    except RuntimeError as err:
        if "torchvision::nms does not exist" not in str(err):
            raise
    # Drop the half-imported modules and retry with the placeholder schemas in place.
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    _register_placeholders()
    import torchvision  # noqa: F401

    return sys.modules["torchvision"]
