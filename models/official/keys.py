"""Official state-dict keys -> ours: rules per backbone and for the BlurDM module, the one tensor
layout that differs, what is dropped, and :func:`convert_official`, which applies them and checks the
result against our model's keys and shapes.

Rules are regular expressions over the official key (named groups), each with a ``str.format``
template for our key and, where indices shift or a block's inside is renamed, a function deriving
more fields. Block-internal names are mapped by a second rule table applied to the rest of the key.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch

from models.official.configs import (
    OFFICIAL_T,
    SHOWN,
    OfficialCheckpointError,
    official_spec,
    resolve_config,
)


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
