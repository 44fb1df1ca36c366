"""Composing the params of a profile from ``pipelines/conf/`` (Hydra), as ``dvc exp run -S profile=NAME`` does.

``pipelines/conf/config.yaml`` is the base configuration (the default ``cpu`` profile's values) with a Hydra
defaults list; ``pipelines/conf/profile/<name>.yaml`` holds what a profile changes (``# @package _global_``),
its Table-1 training sets and backbones included. DVC composes ``params.yaml`` with Hydra on every
``dvc exp run`` (``.dvc/config``: ``hydra.enabled``, ``hydra.config_dir``); :func:`compose` is the same
composition in-process, for ``load_params(profile=...)`` and ``blurdm-bench params``.
"""
from __future__ import annotations

import os
from pathlib import Path

from models.names import PROFILE_NAMES
from pipelines.core.errors import ParamsError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra config tree params.yaml is composed from


def compose(profile: str | None = None, overrides: list[str] | tuple[str, ...] = (),
            conf_dir: str | os.PathLike | None = None) -> dict:
    """The params of ``profile`` as ``dvc exp run -S profile=NAME`` composes them: the base
    ``pipelines/conf/config.yaml`` with ``pipelines/conf/profile/NAME.yaml`` merged onto it (dicts merge,
    lists and scalars replace), then ``overrides`` (Hydra override strings, e.g. ``"train.lr=3e-3"``).
    A plain dict, not validated."""
    from hydra import (
        compose as hydra_compose,  # hydra-core comes with dvc; ~0.3 s to import
    )
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = Path(conf_dir) if conf_dir is not None else CONF_DIR
    name = profile or "cpu"
    if name not in PROFILE_NAMES:
        raise ParamsError(f"profile: unknown profile {name!r}; allowed: {', '.join(PROFILE_NAMES)}")
    if not (conf / "profile" / f"{name}.yaml").is_file():
        raise ParamsError(f"{conf / 'profile'}: no file for profile {name!r}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=[f"profile={name}", *overrides])
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ParamsError(f"{conf}: cannot compose profile {name!r}: {err}") from None
    finally:
        GlobalHydra.instance().clear()
