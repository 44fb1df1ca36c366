"""Official checkpoints on our networks: the one home of how the authors' state dicts map onto ours.

For every configuration of the conformance kit (``tests/fixtures/conformance``, a copy of
``../shared/conformance``) this module knows:

* which of our networks computes the official function (:data:`OFFICIAL_CONFIGS`: a backbone of
  :data:`models.names.BACKBONES` at the ``paper`` scale, with or without the BlurDM prior) and the
  input range the official test code feeds it (the official MIMO-UNet / MIMO-UNet+ take [0, 1], our
  MIMO backbones [-0.5, 0.5] like the BlurDM MIMO variants: the imported model's spec says so);
* how the official state-dict keys map onto ours: rules per backbone (:func:`official_to_ours_key`),
  checked to be a bijection onto our ``state_dict()`` keys with equal shapes by :func:`convert_official`
  (and by the tests for every kit configuration). One layout differs: FFTformer's frequency filter
  ``…ffn.fft`` is stored ``(C, 1, 1, 8, 5)`` officially and ``(C, 8, 5)`` here. One official tensor is
  accepted and dropped: FFTformer's ``reduce_chan_level2.weight``, a 1x1 conv its forward never calls.
  The BlurDM module's three schedule buffers (``alphas``, ``betas_bar``, ``time_stamps_list``) are
  checked against our BlurDM schedule and dropped (ours holds the schedule as float64 numbers); our
  latent statistics buffers (``latent_mean`` / ``latent_std``) get the identity.
* how each official project wraps its state dicts in the file it saves (:func:`read_official_checkpoint`).

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

A ``module.`` prefix is removed when every key of a state dict has it. Entry points:
:func:`read_official_checkpoint`, :func:`convert_official`, :func:`import_official` (a
:class:`models.deblur_model.DeblurModel`) and :func:`import_weights` (what the future
``blurdm-bench import-weights`` command calls).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from models.names import BACKBONES

SCALE = "paper"
OFFICIAL_T = 5  # the released BlurDM models run a 5-step chain
SHOWN = 5  # how many keys an error lists per kind of mismatch


class OfficialCheckpointError(ValueError):
    """An official checkpoint cannot be read, or its keys or shapes do not fit the network."""


@dataclass(frozen=True)
class OfficialConfig:
    name: str  # the kit's configuration name
    backbone: str  # ours (models.names.BACKBONES)
    prior: str | None  # None or "blurdm"
    value_range: str  # the official input range: "unit" [0, 1] or "half" [-0.5, 0.5]
    official: str  # the official class


OFFICIAL_CONFIGS: dict[str, OfficialConfig] = {c.name: c for c in (
    OfficialConfig("mimo_unet", "mimo_unet", None, "unit", "chosj95/MIMO-UNet MIMOUNet()"),
    OfficialConfig("mimo_unet_plus", "mimo_unet_plus", None, "unit", "chosj95/MIMO-UNet MIMOUNetPlus()"),
    OfficialConfig("mimo_unet_blurdm", "mimo_unet", "blurdm", "half",
                   "BlurDM MIMOUNetPlusPrior(num_res=8) + LatentExposureDiffusion()"),
    OfficialConfig("mimo_unet_plus_blurdm", "mimo_unet_plus", "blurdm", "half",
                   "BlurDM MIMOUNetPlusPrior() + LatentExposureDiffusion()"),
    OfficialConfig("stripformer", "stripformer", None, "half", "pp00704831/Stripformer Stripformer()"),
    OfficialConfig("stripformer_blurdm", "stripformer", "blurdm", "half",
                   "BlurDM StripformerPrior() + LatentExposureDiffusion(total_timestamps=5)"),
    OfficialConfig("fftformer", "fftformer", None, "unit", "kkkls/FFTformer fftformer()"),
    OfficialConfig("fftformer_blurdm", "fftformer", "blurdm", "unit",
                   "BlurDM fftformer_prior() + LatentExposureDiffusion(total_timestamps=5)"),
    OfficialConfig("loformer_s", "loformer", None, "unit", "INVOKERer/LoFormer LoFormer (LoFormer-S network_g)"),
    OfficialConfig("loformer_s_blurdm", "loformer", "blurdm", "unit",
                   "BlurDM LoFormerPrior() + LatentExposureDiffusion(total_timestamps=5)"),
)}


def official_config(backbone: str, prior: str | None = None) -> OfficialConfig:
    """The official configuration of our ``backbone`` with ``prior`` (``None``/``"none"`` or ``"blurdm"``)."""
    prior = None if prior in (None, "none") else prior
    for config in OFFICIAL_CONFIGS.values():
        if config.backbone == backbone and config.prior == prior:
            return config
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    raise ValueError(f"no official {backbone} model with prior {prior!r}: the official priors are none and 'blurdm'")


# ---------------------------------------------------------------------------------------------
# key rules: official key -> our key (within the backbone, or within the BlurDM module)

class Rule(NamedTuple):
    pattern: re.Pattern
    template: str  # str.format over the named groups and what ``derive`` adds
    derive: Callable[[dict], dict] | None = None


def _rules(*rows) -> tuple[Rule, ...]:
    return tuple(Rule(re.compile(row[0]), *row[1:]) for row in rows)


def _apply(rules: tuple[Rule, ...], key: str) -> str | None:
    for rule in rules:
        match = rule.pattern.fullmatch(key)
        if match:
            fields = match.groupdict()
            if rule.derive is not None:
                fields.update(rule.derive(fields))
            return None if any(v is None for v in fields.values()) else rule.template.format(**fields)
    return None


def _minus(name: str, offset: int) -> Callable[[dict], dict]:
    return lambda g: {name: int(g[name]) - offset}


P = r"(?P<p>weight|bias)"

_MIMO = _rules(
    (rf"feat_extract\.0\.main\.0\.{P}", "head.0.{p}"),
    (rf"feat_extract\.1\.main\.0\.{P}", "down1.0.{p}"),
    (rf"feat_extract\.2\.main\.0\.{P}", "down2.0.{p}"),
    (rf"feat_extract\.3\.main\.0\.{P}", "up1.0.{p}"),
    (rf"feat_extract\.4\.main\.0\.{P}", "up2.0.{p}"),
    (rf"feat_extract\.5\.main\.0\.{P}", "out_full.0.{p}"),
    (rf"Encoder\.(?P<s>\d)\.layers\.(?P<b>\d+)\.main\.(?P<c>[01])\.main\.0\.{P}", "encoders.{s}.{b}.body.{c}.0.{p}"),
    (rf"Decoder\.(?P<s>\d)\.layers\.(?P<b>\d+)\.main\.(?P<c>[01])\.main\.0\.{P}", "decoders.{s}.blocks.{b}.body.{c}.0.{p}"),
    (r"Decoder\.(?P<s>\d)\.kv\.weight", "decoders.{s}.fusion.proj.weight"),
    (rf"Convs\.0\.main\.0\.{P}", "reduce_half.0.{p}"),  # after the 1/2-scale skip concatenation
    (rf"Convs\.1\.main\.0\.{P}", "reduce_full.0.{p}"),
    (rf"ConvsOut\.0\.main\.0\.{P}", "out_quarter.0.{p}"),
    (rf"ConvsOut\.1\.main\.0\.{P}", "out_half.0.{p}"),
    (rf"AFFs\.0\.conv\.(?P<c>[01])\.main\.0\.{P}", "aff_full.body.{c}.0.{p}"),  # AFFs.0: full resolution
    (rf"AFFs\.1\.conv\.(?P<c>[01])\.main\.0\.{P}", "aff_half.body.{c}.0.{p}"),
    (rf"FAM1\.merge\.main\.0\.{P}", "fam_quarter.merge.0.{p}"),  # FAM1 / SCM1: the 1/4-scale input
    (rf"FAM2\.merge\.main\.0\.{P}", "fam_half.merge.0.{p}"),
    (rf"SCM1\.main\.(?P<c>[0-3])\.main\.0\.{P}", "scm_quarter.body.{c}.0.{p}"),
    (rf"SCM1\.conv\.main\.0\.{P}", "scm_quarter.merge.0.{p}"),
    (rf"SCM2\.main\.(?P<c>[0-3])\.main\.0\.{P}", "scm_half.body.{c}.0.{p}"),
    (rf"SCM2\.conv\.main\.0\.{P}", "scm_half.merge.0.{p}"),
)

# inside one Stripformer attention block (intra-strip: Linear qkv; inter-strip: 1x1 conv qkv)
_STRIP_BLOCK = _rules(
    (r"attention_norm\.(?P<p>weight|bias)", "attention_norm.{p}"),
    (r"conv_input\.(?P<p>weight|bias)", "conv_in.{p}"),
    (r"(?:qkv_local_h|conv_h)\.(?P<p>weight|bias)", "qkv_rows.{p}"),
    (r"(?:qkv_local_v|conv_v)\.(?P<p>weight|bias)", "qkv_cols.{p}"),
    (r"fuse_out\.(?P<p>weight|bias)", "conv_out.{p}"),
    (r"ffn_norm\.(?P<p>weight|bias)", "ffn_norm.{p}"),
    (r"ffn\.(?P<fc>fc[12])\.(?P<p>weight|bias)", "ffn.{fc}.{p}"),
    (r"PEG\.PEG\.(?P<p>weight|bias)", "pos_conv.{p}"),
    (r"kv\.weight", "fusion.proj.weight"),
)


def _strip_block(g: dict) -> dict:
    return {"i": int(g["n"]) - 1, "rest": _apply(_STRIP_BLOCK, g["rest"])}


_STRIPFORMER = _rules(
    (rf"encoder\.en_layer1_1\.0\.{P}", "head.0.{p}"),
    (rf"encoder\.en_layer1_(?P<n>[2-9])\.(?P<c>[02])\.{P}", "enc_full.{i}.body.{c}.{p}", lambda g: {"i": int(g["n"]) - 2}),
    (rf"encoder\.en_layer2_1\.0\.{P}", "down1.0.{p}"),
    (rf"encoder\.en_layer2_(?P<n>[2-9])\.(?P<c>[02])\.{P}", "enc_half.{i}.body.{c}.{p}", lambda g: {"i": int(g["n"]) - 2}),
    (rf"encoder\.en_layer3_1\.0\.{P}", "down2.0.{p}"),
    (r"Trans_block_(?P<n>\d+)\.(?P<rest>.+)", "bottleneck.{i}.{rest}", _strip_block),
    (rf"decoder\.de_layer3_1\.0\.{P}", "up1.0.{p}"),
    (rf"decoder\.de_layer2_2\.0\.{P}", "merge_half.0.{p}"),
    (r"decoder\.de_block_(?P<n>\d+)\.(?P<rest>.+)", "decoder.{i}.{rest}", _strip_block),
    (rf"decoder\.de_layer2_1\.0\.{P}", "up2.0.{p}"),
    (rf"decoder\.de_layer1_3\.(?P<c>[02])\.{P}", "merge_full.body.{c}.{p}"),
    (rf"decoder\.de_layer1_2\.(?P<c>[02])\.{P}", "refine_full.body.{c}.{p}"),
    (rf"decoder\.de_layer1_1\.0\.{P}", "tail.0.{p}"),
)

# inside one FFTformer block (and the attention-free block of a skip fusion)
_FFT_BLOCK = _rules(
    (r"norm(?P<n>[12])\.body\.(?P<p>weight|bias)", "norm{n}.{p}"),
    (r"attn\.(?P<m>to_hidden|to_hidden_dw|project_out)\.weight", "attn.{m}.weight"),
    (r"attn\.norm\.body\.(?P<p>weight|bias)", "attn.norm.{p}"),
    (r"attn\.kv\.weight", "attn.fusion.proj.weight"),
    (r"ffn\.(?P<m>project_in|dwconv|project_out)\.weight", "ffn.{m}.weight"),
    (r"ffn\.fft", "ffn.spectral_filter"),  # layout (C, 1, 1, 8, 5) -> (C, 8, 5): LAYOUTS
)


def _fft_block(g: dict) -> dict:
    return {"rest": _apply(_FFT_BLOCK, g["rest"])}


_FFTFORMER = _rules(
    (r"patch_embed\.proj\.weight", "embed.weight"),
    (r"encoder_level(?P<l>[123])\.(?P<b>\d+)\.(?P<rest>.+)", "encoder{l}.{b}.{rest}", _fft_block),
    (r"decoder_level(?P<l>[123])\.(?P<b>\d+)\.(?P<rest>.+)", "decoder{l}.{b}.{rest}", _fft_block),
    (r"refinement\.(?P<b>\d+)\.(?P<rest>.+)", "refinement.{b}.{rest}", _fft_block),
    (r"down1_2\.body\.1\.weight", "down1.1.weight"),
    (r"down2_3\.body\.1\.weight", "down2.1.weight"),
    (r"up3_2\.body\.1\.weight", "up2.1.weight"),
    (r"up2_1\.body\.1\.weight", "up1.1.weight"),
    (rf"fuse(?P<l>[12])\.conv\.{P}", "skip{l}.conv_in.{p}"),
    (rf"fuse(?P<l>[12])\.conv2\.{P}", "skip{l}.conv_out.{p}"),
    (r"fuse(?P<l>[12])\.att_channel\.(?P<rest>.+)", "skip{l}.block.{rest}", _fft_block),
    (r"output\.weight", "output.weight"),
)

# inside one LoFormer sub-block (trans1 / trans2)
_LOFORMER_SUB_BLOCK = _rules(
    (rf"norm(?P<n>[12])\.body\.{P}", "norm{n}.{p}"),
    (r"attn\.0\.temperature", "attn.temperature"),
    (rf"attn\.0\.kv\.{P}", "attn.fusion.proj.{p}"),
    (rf"attn\.0\.mlp\.0\.{P}", "attn.position_mlp.{p}"),
    (rf"attn\.0\.qkv\.{P}", "attn.qkv.{p}"),
    (rf"attn\.0\.qkv_dwconv\.{P}", "attn.qkv_dw.{p}"),
    (rf"attn\.0\.project_out\.{P}", "attn.project_out.{p}"),
    (rf"ffn\.0\.(?P<m>project_in|dwconv|project_out)\.{P}", "ffn.{m}.{p}"),
)


def _loformer_sub_block(g: dict) -> dict:
    """Official block ``b`` holds sub-blocks ``trans1``, ``trans2``; ours lists sub-blocks: ``2b + t - 1``."""
    return {"i": 2 * int(g["b"]) + int(g["t"]) - 1, "rest": _apply(_LOFORMER_SUB_BLOCK, g["rest"])}


_LOFORMER = _rules(
    (r"patch_embed\.proj\.weight", "embed.weight"),
    (rf"output\.{P}", "output.{p}"),
    (r"encoders\.(?P<l>\d)\.(?P<b>\d+)\.trans(?P<t>[12])\.(?P<rest>.+)", "encoders.{l}.{i}.{rest}", _loformer_sub_block),
    (r"middle_blks\.(?P<b>\d+)\.trans(?P<t>[12])\.(?P<rest>.+)", "middle.{i}.{rest}", _loformer_sub_block),
    (r"decoders\.(?P<l>\d)\.(?P<b>\d+)\.trans(?P<t>[12])\.(?P<rest>.+)", "decoders.{l}.{i}.{rest}", _loformer_sub_block),
    (r"downs\.(?P<l>\d)\.body\.0\.weight", "downs.{l}.0.weight"),
    (r"ups\.(?P<l>\d)\.body\.0\.weight", "ups.{l}.0.weight"),
    (rf"reduce_chan\.(?P<l>\d)\.{P}", "reduce.{l}.{p}"),
)

BACKBONE_RULES: dict[str, tuple[Rule, ...]] = {
    "mimo_unet": _MIMO, "mimo_unet_plus": _MIMO, "stripformer": _STRIPFORMER,
    "fftformer": _FFTFORMER, "loformer": _LOFORMER,
}
# official tensors accepted and dropped: present in the official state dict, unused by its forward
DROPPED_KEYS: dict[str, frozenset[str]] = {"fftformer": frozenset({"reduce_chan_level2.weight"})}

_ESTIMATORS = {"lcr_model": "residual", "noise_model": "noise"}
BLURDM_RULES = _rules(
    (rf"condition_encoder\.E\.0\.{P}", "encoder.stem.0.{p}"),
    (rf"condition_encoder\.E\.(?P<n>[2-7])\.body\.(?P<c>[02])\.{P}", "encoder.blocks.{i}.body.{c}.{p}",
     lambda g: {"i": int(g["n"]) - 2}),
    (rf"condition_encoder\.E\.(?P<n>8|10|12)\.{P}", "encoder.head.{i}.{p}", lambda g: {"i": int(g["n"]) - 8}),
    (rf"condition_encoder\.mlp\.(?P<i>[02])\.{P}", "encoder.mlp.{i}.{p}"),
    (rf"(?P<m>lcr_model|noise_model)\.resmlp\.0\.{P}", "estimators.{e}.net.0.{p}", lambda g: {"e": _ESTIMATORS[g["m"]]}),
    (rf"(?P<m>lcr_model|noise_model)\.resmlp\.(?P<k>[2-9])\.resmlp\.0\.{P}", "estimators.{e}.net.{i}.{p}",
     lambda g: {"e": _ESTIMATORS[g["m"]], "i": 2 * (int(g["k"]) - 1)}),
)
SCHEDULE_BUFFERS = ("alphas", "betas_bar", "time_stamps_list")  # checked against ours, then dropped
IDENTITY_BUFFERS = {"latent_mean": 0.0, "latent_std": 1.0}  # ours, absent officially: the identity


def _fft_filter(tensor: torch.Tensor) -> torch.Tensor:
    """FFTformer's per-channel 8x5 half-spectrum filter: official (C, 1, 1, 8, 5) -> ours (C, 8, 5)."""
    if tensor.ndim == 5 and tensor.shape[1:3] == (1, 1):
        return tensor.reshape(tensor.shape[0], *tensor.shape[3:])
    return tensor  # left as it is: the shape check names it


# our key (within the backbone) -> conversion of the official tensor
LAYOUTS: dict[str, tuple[tuple[re.Pattern, Callable[[torch.Tensor], torch.Tensor]], ...]] = {
    "fftformer": ((re.compile(r".*\.ffn\.spectral_filter"), _fft_filter),),
}


def official_to_ours_key(backbone: str, key: str, part: str = "backbone") -> str | None:
    """Our key for an official ``key`` of the ``backbone`` state dict (``part="backbone"``) or of the
    BlurDM module (``part="blurdm"``), without the ``backbone.`` / ``prior.`` prefix; ``None`` when no
    rule maps it."""
    if part == "blurdm":
        return _apply(BLURDM_RULES, key)
    if backbone not in BACKBONE_RULES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONE_RULES)}")
    return _apply(BACKBONE_RULES[backbone], key)


# ---------------------------------------------------------------------------------------------
# reading the files

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


# ---------------------------------------------------------------------------------------------
# conversion

def resolve_config(config_or_backbone: str, with_blurdm: bool) -> OfficialConfig:
    """A kit configuration name (``loformer_s_blurdm``), or our backbone name plus whether the BlurDM
    module comes along."""
    if config_or_backbone in OFFICIAL_CONFIGS:
        config = OFFICIAL_CONFIGS[config_or_backbone]
        if with_blurdm != (config.prior == "blurdm"):
            raise ValueError(f"configuration {config.name} {'needs' if config.prior else 'takes no'} BlurDM module weights")
        return config
    return official_config(config_or_backbone, "blurdm" if with_blurdm else None)


def official_spec(config: OfficialConfig) -> dict:
    """The model spec (:mod:`models.deblur_model`) of an imported official model."""
    prior = config.prior is not None
    return {"backbone": config.backbone, "scale": SCALE, "prior_mode": "diffusion" if prior else "none",
            "prior": config.prior, "T": OFFICIAL_T if prior else None, "fusion": prior, "sharp_encoder": False,
            "value_range": config.value_range}


def _target_shapes(spec: dict) -> dict[str, torch.Size]:
    """Our state-dict keys and shapes for ``spec`` (built on the meta device: no memory, no arithmetic)."""
    from models.deblur_model import build_deblur_model

    with torch.device("meta"):
        model = build_deblur_model(spec)
    return {k: v.shape for k, v in model.state_dict().items()}


def _check_schedule(state: dict[str, torch.Tensor], source: str) -> None:
    """The official schedule buffers must be the schedule our BlurDM computes (to float32 precision)."""
    from models.diffusion.blurdm import BlurDMProcess

    ours = BlurDMProcess(OFFICIAL_T)
    expected = {"alphas": ours.alphas, "betas_bar": ours.beta_bar[1:],
                "time_stamps_list": list(range(OFFICIAL_T, 0, -1))}
    for name, values in expected.items():
        if name not in state:
            continue  # reported as missing by the caller
        got = state[name].detach().to("cpu", torch.float64).flatten()
        want = torch.tensor(values, dtype=torch.float64)
        if got.shape != want.shape or not torch.allclose(got, want, rtol=0, atol=1e-6):
            raise OfficialCheckpointError(
                f"{source}: BlurDM buffer {name} = {got.tolist()} is not the T={OFFICIAL_T} schedule "
                f"{[round(v, 7) for v in values]} this import supports")


def _mismatch_message(source: str, missing: list, unexpected: list, shapes: list, duplicates: list) -> str:
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes),
                         ("mapped twice", duplicates)):
        if items:
            more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(map(str, items[:SHOWN]))}{more}")
    return f"{source}: the official weights do not fit the network: " + "; ".join(parts)


def convert_official(config_or_backbone: str, backbone_state: Mapping[str, torch.Tensor],
                     blurdm_state: Mapping[str, torch.Tensor] | None = None,
                     source: str = "official state dict") -> tuple[dict[str, torch.Tensor], dict]:
    """Official state dict(s) -> ``(our DeblurModel state dict, spec)``.

    ``config_or_backbone``: a kit configuration name or our backbone name (with the BlurDM module when
    ``blurdm_state`` is given). Keys are mapped by the rules above, tensor layouts converted, and the
    result checked against our model's keys and shapes: anything missing, unexpected, mis-shaped or
    mapped twice is an :class:`OfficialCheckpointError` naming ``source`` (e.g. the file) and the
    first few official keys of each kind. Tensors keep their dtype (``load_state_dict`` casts).
    """
    config = resolve_config(config_or_backbone, blurdm_state is not None)
    spec = official_spec(config)
    target = _target_shapes(spec)
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}  # our key -> the official key it came from
    missing: list[str] = []
    unexpected: list[str] = []
    shapes: list[str] = []
    duplicates: list[str] = []
    layouts = LAYOUTS.get(config.backbone, ())
    parts = [("backbone", "backbone.", backbone_state)]
    if blurdm_state is not None:
        parts.append(("blurdm", "prior.", blurdm_state))
        _check_schedule(blurdm_state, source)
    for part, prefix, state in parts:
        skipped = DROPPED_KEYS.get(config.backbone, frozenset()) if part == "backbone" else frozenset(SCHEDULE_BUFFERS)
        for key, tensor in state.items():
            if key in skipped:
                continue
            ours = official_to_ours_key(config.backbone, key, part)
            if ours is None or prefix + ours not in target:
                unexpected.append(key)
                continue
            ours = prefix + ours
            if ours in converted:
                duplicates.append(f"{key} and {origin[ours]} -> {ours}")
                continue
            for pattern, convert in layouts:
                if part == "backbone" and pattern.fullmatch(ours[len(prefix):]):
                    tensor = convert(tensor)
            if tuple(tensor.shape) != tuple(target[ours]):
                shapes.append(f"{key} {list(tensor.shape)} (ours {ours} {list(target[ours])})")
                continue
            converted[ours], origin[ours] = tensor, key
        if part == "blurdm":
            for name in SCHEDULE_BUFFERS:
                if name not in state:
                    missing.append(name)
    for name, value in IDENTITY_BUFFERS.items():
        if "prior." + name in target:
            converted["prior." + name] = torch.full(tuple(target["prior." + name]), value)
    missing += [f"(ours) {k}" for k in target if k not in converted]  # no official key mapped onto it
    if missing or unexpected or shapes or duplicates:
        raise OfficialCheckpointError(_mismatch_message(source, missing, unexpected, shapes, duplicates))
    return converted, spec


# ---------------------------------------------------------------------------------------------
# import

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
