"""A deblurring model = backbone + a source for its 256-d prior (the contract training and evaluation share).

``prior_mode`` picks the source:

* ``"none"``: the baseline, a backbone built without fusion layers; no prior.
* ``"sharp_encoder"``: ``SE(blur, sharp)`` (stage 1; at test time this is the *oracle*).
* ``"diffusion"``: ``prior(blur, generator)`` from a diffusion prior (BlurDM / RDDM / DDPM).

A model is described by a plain dict, its *spec*::

    {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion",
     "prior": "blurdm" | None, "T": 5 | None, "fusion": True, "sharp_encoder": False}

An optional ``"value_range": "half" | "unit"`` overrides the backbone's own input range
(``model.value_range``); it is present only when set (absent = the backbone's own, as in every model
trained here). Imported official weights set it: the official MIMO-UNet / MIMO-UNet+ take [0, 1]
where our MIMO backbones (like the BlurDM MIMO variants) take [-0.5, 0.5] (:mod:`models.official`).

``fusion`` says whether the backbone has prior-fusion layers (``False`` only for the baseline),
``sharp_encoder`` whether an SE module is present, ``prior`` (with ``T``) whether a diffusion prior
is present. Both an SE and a diffusion prior may be present (the stage-2 model): ``prior_mode`` then
chooses which one feeds the backbone.

A model file (``model.pt``) is a dict of tensors and plain values only::

    {"format": "blurdm-bench/model", "version": 1, "spec": {...}, "model": state_dict, "meta": {...}}

:func:`model_payload` makes that dict, :func:`check_payload` refuses one of another format version or of the wrong
structure, :func:`deblur_model_from_payload` builds the model back from it
and :func:`copy_parts` copies submodules (backbone, sharp encoder, prior) from an earlier stage's payload
into a new model (stage 2 and 3 start from them). Both raise :class:`ModelPayloadError` for a payload
that is not such a model or does not fit. Files are not read here: reading ``model.pt`` safely
(``torch.load(weights_only=True)``, a crafted pickle refused) is :mod:`pipelines.core.checkpoint_files`.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from models.backbones import build_backbone
from models.encoder import PRIOR_DIM, prior_dim, sharp_encoder
from models.names import MAX_T
from models.priors import build_prior

PRIOR_MODES = ("none", "sharp_encoder", "diffusion")
MODEL_FORMAT = "blurdm-bench/model"
MODEL_FORMAT_VERSION = 1
SPEC_KEYS = ("backbone", "scale", "prior_mode", "prior", "T", "fusion", "sharp_encoder", "value_range")


class DeblurModel(nn.Module):
    """``forward(blur, sharp=None, generator=None) -> list[Tensor]`` (coarse to fine, last = full res)."""

    def __init__(self, backbone: nn.Module, prior_mode: str = "none", sharp_encoder: nn.Module | None = None,
                 prior: nn.Module | None = None, spec: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.sharp_encoder = sharp_encoder
        self.prior = prior
        self.spec = dict(spec or {})
        self.prior_mode = prior_mode  # validated by the setter

    @property
    def prior_mode(self) -> str:
        return self._prior_mode

    @prior_mode.setter
    def prior_mode(self, mode: str) -> None:
        if mode not in PRIOR_MODES:
            raise ValueError(f"unknown prior_mode {mode!r}; allowed: {', '.join(PRIOR_MODES)}")
        if mode == "sharp_encoder" and self.sharp_encoder is None:
            raise ValueError("prior_mode 'sharp_encoder' needs a sharp encoder (a stage-1 or stage-2 model)")
        if mode == "diffusion" and self.prior is None:
            raise ValueError("prior_mode 'diffusion' needs a diffusion prior (a stage-2 or stage-3 model)")
        has_fusion = getattr(self.backbone, "prior_dim", PRIOR_DIM) is not None
        if mode == "none" and has_fusion:
            raise ValueError("prior_mode 'none' is only for a backbone built without fusion layers (the baseline)")
        if mode != "none" and not has_fusion:
            raise ValueError(f"prior_mode {mode!r} needs a backbone with fusion layers; this one has none (baseline)")
        self._prior_mode = mode
        self.spec["prior_mode"] = mode

    # Attributes the evaluator needs, forwarded from the backbone (the spec may override the range).
    @property
    def value_range(self) -> str:
        return self.spec.get("value_range") or self.backbone.value_range

    @property
    def pad_multiple(self) -> int:
        return self.backbone.pad_multiple

    @property
    def tile(self):
        return self.backbone.tile

    def prior_vector(self, blur: torch.Tensor, sharp: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor | None:
        """The (B, 256) prior for ``blur`` under ``prior_mode`` (``None`` for the baseline). ``noise``: the
        diffusion's start noise drawn beforehand (e.g. for a whole batch, then sliced), instead of ``generator``."""
        if self.prior_mode == "none":
            return None
        if self.prior_mode == "sharp_encoder":
            if sharp is None:
                raise ValueError("prior_mode 'sharp_encoder' (stage 1 / oracle) needs the sharp image: "
                                 "call prior_vector(blur, sharp) / model(blur, sharp)")
            return self.sharp_encoder(blur, sharp)
        return self.prior(blur, generator=generator, noise=noise)

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor | None = None,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.backbone(blur, self.prior_vector(blur, sharp, generator, noise))

    def extra_repr(self) -> str:
        return f"prior_mode={self.prior_mode!r}"


def normalise_spec(spec: dict, source: str = "model spec") -> dict:
    """Fill defaults and check a spec dict; errors name ``source`` and the key."""
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: spec must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown spec keys {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    for key in ("backbone", "scale"):
        if not isinstance(spec.get(key), str):
            raise ValueError(f"{source}: spec needs {key!r} (a string)")
    mode = spec.get("prior_mode", "none")
    if mode not in PRIOR_MODES:
        raise ValueError(f"{source}: unknown prior_mode {mode!r}; allowed: {', '.join(PRIOR_MODES)}")
    prior = spec.get("prior")
    out = {
        "backbone": spec["backbone"],
        "scale": spec["scale"],
        "prior_mode": mode,
        "prior": prior,
        "T": spec.get("T") if prior is not None else None,
        "fusion": bool(spec.get("fusion", mode != "none")),
        "sharp_encoder": bool(spec.get("sharp_encoder", mode == "sharp_encoder")),
    }
    value_range = spec.get("value_range")
    if value_range is not None:
        from models.inference import VALUE_RANGES

        if value_range not in VALUE_RANGES:
            raise ValueError(f"{source}: unknown value_range {value_range!r}; allowed: {', '.join(VALUE_RANGES)}")
        out["value_range"] = value_range
    if mode == "diffusion" and prior is None:
        raise ValueError(f"{source}: prior_mode 'diffusion' needs 'prior' (blurdm, rddm or ddpm) and 'T'")
    if prior is not None and (isinstance(out["T"], bool) or not isinstance(out["T"], int)):
        raise ValueError(f"{source}: a diffusion prior needs an integer 'T', got {out['T']!r}")
    if prior is not None:
        if not 1 <= out["T"] <= MAX_T:  # before anything is allocated for T steps
            raise ValueError(f"{source}: 'T' must be in 1..{MAX_T}, got {out['T']}")
    if mode == "sharp_encoder" and not out["sharp_encoder"]:
        raise ValueError(f"{source}: prior_mode 'sharp_encoder' but the model has no sharp encoder")
    if (mode == "none") == out["fusion"]:
        raise ValueError(f"{source}: prior_mode {mode!r} does not match fusion={out['fusion']} "
                         "(only the baseline, prior_mode 'none', has no fusion layers)")
    return out


def build_deblur_model(spec: dict) -> DeblurModel:
    """A freshly initialised :class:`DeblurModel` from a spec dict (see module docstring)."""
    spec = normalise_spec(spec)
    backbone = build_backbone(spec["backbone"], spec["scale"], prior_dim=prior_dim(spec["scale"]) if spec["fusion"] else None)
    sharp = None
    if spec["sharp_encoder"]:
        sharp = sharp_encoder(spec["scale"])
    prior = None
    if spec["prior"] is not None:
        prior = build_prior(spec["prior"], spec["T"], spec["scale"])
    return DeblurModel(backbone, spec["prior_mode"], sharp_encoder=sharp, prior=prior, spec=spec)


def model_payload(model: DeblurModel, meta: dict | None = None) -> dict:
    """The ``model.pt`` dict for ``model`` (tensors on CPU, contiguous)."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "spec": dict(model.spec),
            "model": state, "meta": dict(meta or {})}


class ModelPayloadError(ValueError):
    """A ``model.pt`` payload that is not a blurdm-bench model, or whose weights do not fit the model."""


def check_payload(payload, source: str = "model payload") -> None:
    """Refuse, naming ``source``, a payload that is not a model file of :data:`MODEL_FORMAT_VERSION` or whose
    parts are not what they must be: ``spec`` and ``meta`` mappings with string keys, ``model`` a mapping of
    names (strings) to dense tensors. Runs before anything is built from the payload."""
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelPayloadError(f"{source}: not a blurdm-bench model file (format {found!r}; "
                                f"expected {MODEL_FORMAT!r} with 'spec' and 'model')")
    version = payload.get("version")
    if type(version) is not int or version != MODEL_FORMAT_VERSION:
        raise ModelPayloadError(f"{source}: model-file format version {version!r}; this blurdm-bench reads version "
                                f"{MODEL_FORMAT_VERSION} (a file of another release, or altered)")
    for part in ("spec", "meta"):
        value = payload.get(part, {})
        if not isinstance(value, dict):
            raise ModelPayloadError(f"{source}: {part!r} must be a mapping, got {type(value).__name__}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ModelPayloadError(f"{source}: {part!r} key {bad[0]!r} is {type(bad[0]).__name__}, not a string")
    state = payload.get("model")
    if not isinstance(state, dict):
        raise ModelPayloadError(f"{source}: 'model' must be a mapping of weight names to tensors, "
                                f"got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise ModelPayloadError(f"{source}: weight key {key!r} is {type(key).__name__}, not a string")
        if not isinstance(value, torch.Tensor):
            raise ModelPayloadError(f"{source}: weight {key} is not a tensor ({type(value).__name__})")
        if value.layout != torch.strided:
            raise ModelPayloadError(f"{source}: weight {key} is {value.layout} (sparse); model files hold dense "
                                    "tensors")


def deblur_model_from_payload(payload: dict, prior_mode: str | None = None,
                              source: str = "model payload") -> tuple[DeblurModel, dict]:
    """Build the model a ``model.pt`` payload (:func:`model_payload`) describes and load its weights:
    ``(model in eval mode, spec)``; ``source`` (the file) names it in errors. The payload is checked first
    (:func:`check_payload`); ``load_state_dict`` then refuses any weight whose shape the built model does not have.

    ``prior_mode`` overrides the stored mode: ``"sharp_encoder"`` on a stage-1 (or stage-2) model
    is the oracle; ``"diffusion"`` needs a model that holds a diffusion prior.
    """
    check_payload(payload, source)
    spec = dict(payload["spec"])
    if prior_mode is not None:
        spec["prior_mode"] = prior_mode
    try:
        spec = normalise_spec(spec, source=source)
        model = build_deblur_model(spec)
    except ValueError as err:
        raise ModelPayloadError(f"{source}: {err}" if source not in str(err) else str(err)) from None
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise ModelPayloadError(f"{source}: weights do not match the spec {spec}: {err}") from None
    model.eval()
    return model, spec


def copy_parts(model: nn.Module, payload: dict, parts: tuple[str, ...], file: str | os.PathLike) -> None:
    """Load the weights of the submodules ``parts`` (e.g. ``("backbone", "sharp_encoder")``) of ``model``
    from ``payload`` (a ``model.pt`` dict read from ``file``), strictly; a missing or mismatching part is
    a :class:`ModelPayloadError` naming the file."""
    state = payload["model"]
    for part in parts:
        prefix = f"{part}."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ModelPayloadError(f"{file}: has no {part} weights")
        try:
            getattr(model, part).load_state_dict(sub, strict=True)
        except RuntimeError as err:
            raise ModelPayloadError(f"{file}: {part} weights do not fit this model: {err}") from None
