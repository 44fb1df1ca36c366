"""Official checkpoints on our networks: the one home of how the authors' state dicts map onto ours.

For every configuration of the conformance kit (``tests/fixtures/conformance``, a copy of
``../shared/conformance``) this package knows:

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
* how each official project wraps its state dicts in the file it saves (:mod:`.files` lists them;
  :func:`read_official_checkpoint`).

A ``module.`` prefix is removed when every key of a state dict has it. Entry points:
:func:`read_official_checkpoint`, :func:`convert_official`, :func:`import_official` (a
:class:`models.deblur_model.DeblurModel`) and :func:`import_weights` (what the future
``blurdm-bench import-weights`` command calls).

Modules: :mod:`.configs` (the configurations, the error), :mod:`.keys` (the key rules and
:func:`convert_official`), :mod:`.files` (the checkpoint wrappers, :func:`read_official_checkpoint`,
:func:`import_official`, :func:`import_weights`).
"""
from __future__ import annotations

from models.official.configs import (
    OFFICIAL_CONFIGS,
    OfficialCheckpointError,
    OfficialConfig,
    official_config,
    official_spec,
    resolve_config,
)
from models.official.files import (
    OfficialCheckpoint,
    import_official,
    import_weights,
    read_official_checkpoint,
)
from models.official.keys import (
    BACKBONE_RULES,
    BLURDM_RULES,
    DROPPED_KEYS,
    IDENTITY_BUFFERS,
    LAYOUTS,
    SCHEDULE_BUFFERS,
    convert_official,
    official_to_ours_key,
)

__all__ = [
    "BACKBONE_RULES", "BLURDM_RULES", "DROPPED_KEYS", "IDENTITY_BUFFERS", "LAYOUTS", "OFFICIAL_CONFIGS",
    "SCHEDULE_BUFFERS", "OfficialCheckpoint", "OfficialCheckpointError", "OfficialConfig", "convert_official",
    "import_official", "import_weights", "official_config", "official_spec", "official_to_ours_key",
    "read_official_checkpoint", "resolve_config",
]
