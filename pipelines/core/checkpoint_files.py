"""Checkpoint files: tensors and plain Python values only, written atomically, read safely.

A checkpoint is a dict saved with ``torch.save``. :func:`save_checkpoint` refuses anything that is
not a tensor, ``str``/``int``/``float``/``bool``/``None`` or a dict/list/tuple of those, so every
file we write loads with ``torch.load(weights_only=True)``; :func:`load_checkpoint` never loads any
other way, so a crafted pickle (one that would construct arbitrary objects or run code) is refused
with a :class:`CheckpointError` naming the file, and so are model weights holding NaN or Inf
(naming the tensor), a file that is no PyTorch file at all (text, a link to a system file), and a
sparse tensor or one claiming more memory than the file stores for it (a stride-0 view), before any
computation touches it.

A model file (``model.pt``, :func:`models.deblur_model.model_payload`) is read back into a model by
:func:`load_deblur_model` (its format version and structure checked first: :func:`load_model_payload`);
:func:`model_file` finds it in a run folder.

The training resume state (``last.pt``) also carries the random number generator states
(:func:`rng_state` / :func:`set_rng_state`): torch CPU (and CUDA when present), Python ``random``
and NumPy's legacy global generator, all converted to tensors and plain values.
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from models.deblur_model import (
    DeblurModel,
    ModelPayloadError,
    check_payload,
    deblur_model_from_payload,
)
from pipelines.core.errors import InvalidInputError, MissingFileError
from pipelines.core.files import atomic_path

PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointError(InvalidInputError):
    """A checkpoint file is unreadable, unsafe or not what the caller expected."""


def check_plain(obj, where: str = "checkpoint") -> None:
    """Raise TypeError if ``obj`` holds anything but tensors and plain Python values."""
    if isinstance(obj, (torch.Tensor, *PLAIN_TYPES)):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: dict key {key!r} is {type(key).__name__}, not str/int")
            check_plain(value, f"{where}.{key}")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} is not allowed in a checkpoint (tensors and plain values only)")


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Atomically write ``payload`` (tensors + plain values only) to ``path``."""
    path = Path(path)
    check_plain(payload, path.name)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)  # a file object: the archive's inner folder is "archive", not the temp name,
        # so the same payload always gives the same bytes
    return path


# how every file torch.save writes begins: a zip archive (torch >= 1.6), or a pickle (the legacy format)
TORCH_FILE_HEADS = (b"PK\x03\x04", b"\x80")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; unsafe or corrupt files are refused, and so are
    files that are no PyTorch file at all (text, a link to a system file) and tensors that claim more memory
    than the file stores for them (:func:`check_tensors`), before anything is computed on them."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (a folder, device or pipe), so not a checkpoint")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    if not head.startswith(TORCH_FILE_HEADS):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive; this file begins "
                              f"with {head!r}: a text file, or a link to some other file?)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain values "
            f"(weights_only=True): {first}") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as err:
        # what a damaged pickle stream raises inside the unpickler
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, found {type(payload).__name__}")
    check_tensors(payload, path)
    check_finite_weights(payload.get("model"), path)
    return payload


def check_tensors(obj, path: str | os.PathLike, where: str = "") -> None:
    """Refuse a tensor anywhere in a checkpoint that is not dense (sparse, ...) or that claims more elements than
    the file stores for it (a stride-0 view: 100000 x 100000 over one stored value, 40 GB once touched)."""
    if isinstance(obj, torch.Tensor):
        name = where or "the top-level tensor"
        if obj.layout != torch.strided:
            raise CheckpointError(f"{path}: refused: tensor {name} is {obj.layout} (sparse); checkpoints hold dense "
                                  "tensors only")
        claimed = obj.numel() * obj.element_size()
        stored = obj.untyped_storage().nbytes() - obj.storage_offset() * obj.element_size()
        if claimed > stored:
            shape = "x".join(str(n) for n in obj.shape)
            raise CheckpointError(f"{path}: refused: tensor {name} of shape {shape} claims {claimed} bytes but only "
                                  f"{max(stored, 0)} are stored for it (overlapping strides): the file was altered")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            check_tensors(value, path, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_tensors(value, path, f"{where}[{i}]")


def check_finite_weights(state, path: str | os.PathLike) -> None:
    """Refuse model weights (``state``: the checkpoint's ``model`` dict) holding NaN or Inf, naming the
    first such tensor: such a model outputs NaN, which would become a black image or a bogus score."""
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise CheckpointError(f"{path}: refused: weight tensor model.{key} holds {bad} non-finite value(s) "
                                      f"(NaN or Inf) of {value.numel()}: the training that wrote it diverged, or "
                                      "the file was altered")


def model_file(path: str | os.PathLike) -> Path:
    """The ``model.pt`` of a run: ``path`` itself when it is a file (or names a ``.pt`` file not written
    yet), else ``path/model.pt`` (a run folder, existing or not)."""
    path = Path(path)
    if path.is_file() or (path.suffix == ".pt" and not path.is_dir()):
        return path
    return path / "model.pt"


def load_deblur_model(path: str | os.PathLike, prior_mode: str | None = None,
                      map_location: str | torch.device = "cpu") -> tuple[DeblurModel, dict]:
    """Read a ``model.pt`` (weights only) and return ``(model in eval mode, spec)``; a file that is not a
    model, or whose weights do not fit its spec, is a :class:`CheckpointError` naming it.

    ``prior_mode`` overrides the stored mode: ``"sharp_encoder"`` on a stage-1 (or stage-2) model
    is the oracle; ``"diffusion"`` needs a model that holds a diffusion prior.
    """
    path = Path(path)
    payload = load_model_payload(path, map_location=map_location)
    try:
        return deblur_model_from_payload(payload, prior_mode, source=str(path))
    except ModelPayloadError as err:
        raise CheckpointError(str(err)) from None


def load_model_payload(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The payload of a ``model.pt`` (:func:`load_checkpoint`), checked to be a model file of this format version
    with a well-formed spec and weights (:func:`models.deblur_model.check_payload`) before anything is built."""
    payload = load_checkpoint(path, map_location=map_location)
    try:
        check_payload(payload, source=str(path))
    except ModelPayloadError as err:
        raise CheckpointError(str(err)) from None
    return payload


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of ``module.state_dict()`` (layout-independent bytes)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def rng_state() -> dict:
    """All global RNG states as tensors / plain values."""
    np_state = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    random.setstate(_to_tuples(state["python"]))
    nps = state["numpy"]
    np.random.set_state(("MT19937", nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])


def _to_lists(obj):
    return [_to_lists(x) for x in obj] if isinstance(obj, (list, tuple)) else obj


def _to_tuples(obj):
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, (list, tuple)) else obj
