"""Reading official checkpoint files, and importing them as our models.

Checkpoint files accepted (facts read from the public code; no code is taken from it). Every file is
read with ``torch.load(weights_only=True)``; the only non-container class allowed is
``argparse.Namespace`` (an attribute bag the BlurDM training scripts store as ``'args'``); anything
else that is not tensors and plain containers is refused (:class:`OfficialCheckpointError`).

=====================================  ==================================================================
project                                what the file holds
=====================================  ==================================================================
MIMO-UNet, MIMO-UNet+ (chosj95)        ``{'model': state_dict}`` (``MIMO-UNet.pkl``; training snapshots
                                       add ``'optimizer'``, ``'scheduler'``, ``'epoch'``); its
                                       ``eval.py`` loads entry ``'model'``
Stripformer (pp00704831)               the bare state dict of ``nn.DataParallel(Stripformer())``: every
                                       key starts with ``module.``
FFTformer, LoFormer (BasicSR)          ``{'params': state_dict}`` (``'params_ema'`` too when trained
                                       with EMA); BasicSR loads ``'params'`` unless told otherwise
                                       (``param_key``)
BlurDM (MIMO-UNet+, Stripformer,       ``{'model_state': backbone, 'model_dm_state': BlurDM module,
FFTformer, LoFormer with the prior)    'args': Namespace, ...}`` (the training state adds
                                       ``'optimizer_state'``, ``'scheduler_state'``, ``'epoch'``,
                                       ``'best_panr'``; the final files split it into
                                       ``{'model_state', 'args'}`` and ``{'model_dm_state', 'args'}``);
                                       the predict scripts load the backbone from ``'model_state'``
                                       (else ``'model'``, else the bare dict) and the module from
                                       ``'model_dm_state'``, both with ``module.`` removed
=====================================  ==================================================================

A ``module.`` prefix is removed when every key of a state dict has it.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.official.configs import SHOWN, OfficialCheckpointError, official_config
from models.official.keys import DROPPED_KEYS, SCHEDULE_BUFFERS, convert_official


@dataclass
class OfficialCheckpoint:
    """The state dicts found in one official file (``module.`` prefixes removed)."""

    path: Path
    backbone: dict[str, torch.Tensor] | None
    blurdm: dict[str, torch.Tensor] | None
    entries: list[str] = field(default_factory=list)  # where they were found, e.g. ["model_state", "model_dm_state"]


def _load_error_reason(err: Exception) -> str:
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it holds a {found.group(1)} object, which is not a tensor or a plain container"
    lines = [line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line]
    return lines[0] if lines else (text.strip().splitlines() or [type(err).__name__])[0]


def _load(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: official checkpoint not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise OfficialCheckpointError(f"{path}: refused to load with torch.load(weights_only=True): "
                                      f"{_load_error_reason(err)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise OfficialCheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


def _state_dict(obj, path: Path, entry: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise OfficialCheckpointError(f"{path}: entry {entry!r} is not a non-empty state dict "
                                      f"(found {type(obj).__name__})")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise OfficialCheckpointError(f"{path}: entry {entry!r} holds non-tensor values, e.g. {bad[:SHOWN]}")
    not_finite = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not_finite:
        raise OfficialCheckpointError(f"{path}: entry {entry!r} holds NaN or Inf in {not_finite[:SHOWN]}")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_official_checkpoint(path: str | os.PathLike, param_key: str | None = None) -> OfficialCheckpoint:
    """Read an official checkpoint file and unwrap its state dict(s) (module docstring: the wrappers).

    The backbone comes from entry ``param_key`` when given (e.g. ``"params_ema"`` of a BasicSR file),
    else the first of ``model_state`` (BlurDM), ``model`` (MIMO-UNet), ``params`` (BasicSR) that is
    present, else the file itself when it is a bare state dict (Stripformer). The BlurDM module comes
    from ``model_dm_state``. Either may be absent (``None``), not both.
    """
    path = Path(path)
    payload = _load(path)
    if not isinstance(payload, Mapping):
        raise OfficialCheckpointError(f"{path}: expected a dict at the top level, found {type(payload).__name__}")
    found = OfficialCheckpoint(path, None, None)
    if param_key is not None:
        if param_key not in payload:
            raise OfficialCheckpointError(f"{path}: has no entry {param_key!r}; entries: {sorted(map(str, payload))}")
        keys = [param_key]
    else:
        keys = [k for k in ("model_state", "model", "params") if k in payload]
    if keys:
        found.backbone = _state_dict(payload[keys[0]], path, keys[0])
        found.entries.append(keys[0])
    elif "model_dm_state" not in payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        found.backbone = _state_dict(payload, path, "(bare state dict)")
        found.entries.append("(bare state dict)")
    if "model_dm_state" in payload:
        found.blurdm = _state_dict(payload["model_dm_state"], path, "model_dm_state")
        found.entries.append("model_dm_state")
    if found.backbone is None and found.blurdm is None:
        raise OfficialCheckpointError(
            f"{path}: no state dict found: expected entry 'model_state', 'model', 'params' or 'model_dm_state', "
            f"or a bare state dict; entries: {sorted(map(str, payload))[:10]}")
    return found


def import_official(backbone: str, prior: str | None, checkpoint_path: str | os.PathLike,
                    dm_checkpoint_path: str | os.PathLike | None = None, param_key: str | None = None):
    """An official checkpoint as a :class:`models.deblur_model.DeblurModel` (eval mode, float32).

    ``backbone``: ours (``mimo_unet``, ``mimo_unet_plus``, ``stripformer``, ``fftformer``,
    ``loformer``); ``prior``: ``None`` / ``"none"`` (the backbone's own release) or ``"blurdm"`` (a
    BlurDM release: backbone with prior fusion + the BlurDM module, both from ``checkpoint_path``
    unless the module is in ``dm_checkpoint_path``). ``param_key`` picks the backbone's entry (e.g.
    ``"params_ema"``). The model's spec carries the official input range (``value_range``).
    Keys or shapes that do not fit raise :class:`OfficialCheckpointError` naming the file.
    """
    from models.deblur_model import build_deblur_model

    prior = None if prior in (None, "none") else prior
    config = official_config(backbone, prior)
    checkpoint = read_official_checkpoint(checkpoint_path, param_key)
    if checkpoint.backbone is None:
        raise OfficialCheckpointError(f"{checkpoint.path}: holds no backbone weights (only {checkpoint.entries})")
    source = str(checkpoint.path)
    blurdm = None
    if config.prior == "blurdm":
        module_file = read_official_checkpoint(dm_checkpoint_path) if dm_checkpoint_path is not None else checkpoint
        if module_file.blurdm is None:
            raise OfficialCheckpointError(f"{module_file.path}: has no BlurDM module (entry 'model_dm_state') "
                                          f"for --prior blurdm; entries found: {module_file.entries}")
        blurdm = module_file.blurdm
        if dm_checkpoint_path is not None:
            source = f"{checkpoint.path} + {module_file.path}"
    state, spec = convert_official(config.name, checkpoint.backbone, blurdm, source=source)
    model = build_deblur_model(spec)
    model.load_state_dict(state, strict=True)  # keys and shapes checked above; values cast to float32
    return model.float().eval()


def import_weights(backbone: str, checkpoint: str | os.PathLike, out: str | os.PathLike,
                   prior: str | None = None, dm_checkpoint: str | os.PathLike | None = None,
                   param_key: str | None = None) -> Path:
    """What ``blurdm-bench import-weights --backbone NAME [--prior blurdm] --checkpoint FILE --out MODEL.pt``
    does: :func:`import_official`, then write our model file (``model_payload``: format, spec with the
    official ``value_range``, float32 weights, and ``meta`` naming the source file, its SHA-256, the
    configuration and the entries read). Accepts every file described in the module docstring; the
    BlurDM module may come from a second file (``dm_checkpoint``). Returns the written path.
    """
    from models.deblur_model import model_payload

    model = import_official(backbone, prior, checkpoint, dm_checkpoint, param_key)
    config = official_config(backbone, prior)
    sources = [Path(checkpoint)] + ([Path(dm_checkpoint)] if dm_checkpoint is not None else [])
    meta = {"imported_from": "official", "config": config.name, "official": config.official,
            "checkpoints": [{"file": p.name, "sha256": _sha256(p)} for p in sources],
            "param_key": param_key,
            "dropped": sorted(DROPPED_KEYS.get(backbone, ())) + (list(SCHEDULE_BUFFERS) if config.prior else [])}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(model_payload(model, meta), tmp)
    os.replace(tmp, out)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
