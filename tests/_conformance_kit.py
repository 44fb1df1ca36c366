"""Test helpers for the BlurDM conformance kit (``tests/fixtures/conformance``, a copy of
``../shared/conformance``): its files, the deterministic weight rule and our model run the way the kit's
goldens were produced (float64, one thread, the kit's input and start noise).

The weight rule (kit README, "Weight rule"), for every OFFICIAL key, one fresh CPU generator per key
seeded with ``crc32(key) ^ salt``: kept buffers take their listed official value; tensors of >= 2
dimensions ``gain * randn(shape) / sqrt(numel // shape[0])``; 1-D ``…weight`` ``1 + 0.1 * randn``;
other 1-D ``0.1 * randn`` (all float64).
"""
from __future__ import annotations

import functools
import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

KIT = Path(__file__).resolve().parent / "fixtures" / "conformance"


@functools.cache
def index() -> dict:
    return json.loads((KIT / "index.json").read_text())


def configs() -> list[str]:
    return list(index()["configs"])


@functools.cache
def keys_file(config: str) -> dict:
    return json.loads((KIT / index()["configs"][config]["keys_file"]).read_text())


def array(relative: str) -> np.ndarray:
    return np.load(KIT / relative)


def tensor(relative: str) -> torch.Tensor:
    return torch.from_numpy(array(relative))


def goldens(config: str) -> dict[str, dict]:
    """Golden name -> its index entry (``file``, ``tolerance_abs``, ...), for every golden of ``config``."""
    return dict(index()["configs"][config]["files"])


def generate(key: str, entry: dict, salt: int, gain: float) -> torch.Tensor:
    """The tensor the weight rule gives the official ``key`` (float64; kept buffers in their dtype)."""
    shape = tuple(entry["shape"])
    if entry["kind"] == "buffer" or len(shape) == 0:
        return torch.tensor(entry["official_value"], dtype=getattr(torch, entry["dtype"])).reshape(shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")) ^ salt)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    if len(shape) >= 2:
        return gain * noise / math.sqrt(math.prod(shape) // shape[0])
    return 1 + 0.1 * noise if key.endswith("weight") else 0.1 * noise


@functools.lru_cache(maxsize=1)  # one configuration at a time (up to 24 M float64 numbers)
def official_state_dicts(config: str) -> dict[str, dict[str, torch.Tensor]]:
    """``{"backbone": ..., ["blurdm": ...]}``: the official state dicts in the official key order, filled
    by the weight rule (cached: the tests share them; never modify them in place)."""
    meta = keys_file(config)
    salt, gain = int(meta["weight_rule_salt"]), float(meta["weight_rule_gain"])
    return {part: {key: generate(key, entry, salt, gain) for key, entry in entries.items()}
            for part, entries in meta["state_dicts"].items()}


def check_values(config: str) -> list[str]:
    """Keys whose generated tensor disagrees with the kit's ``check_sum`` / ``check_first`` (empty = all agree)."""
    bad = []
    for part, entries in keys_file(config)["state_dicts"].items():
        state = official_state_dicts(config)[part]
        for key, entry in entries.items():
            t = state[key]
            if list(t.shape) != entry["shape"]:
                bad.append(f"{key}: shape {list(t.shape)}")
            elif "official_value" in entry:
                if t.flatten().tolist() != entry["official_value"]:
                    bad.append(f"{key}: kept value")
            elif not (math.isclose(float(t.sum()), entry["check_sum"], rel_tol=1e-12, abs_tol=1e-12)
                      and float(t.flatten()[0]) == entry["check_first"]):
                bad.append(f"{key}: check_sum/check_first")
    return bad


def run_ours(model, config: str, backbone: bool = True) -> dict[str, np.ndarray]:
    """Our float64 ``model`` (a DeblurModel) on the kit's input: every observable the kit has a golden
    for (outputs; with the prior also the blur latent, the estimators' outputs per step and z0).
    ``backbone=False``: the prior's observables only."""
    from models.diffusion import ChainTrace

    cfg = index()["configs"][config]
    x = tensor(cfg["input_file"])
    observed: dict[str, np.ndarray] = {}
    with torch.no_grad():
        prior = None
        if cfg["start_noise_file"]:
            trace = ChainTrace()
            prior = model.prior(x, noise=tensor(cfg["start_noise_file"]), trace=trace)
            observed["blur_latent"] = trace.condition.numpy()
            observed["z0"] = prior.numpy()
            observed["chain_pred_residual"] = torch.stack([p["residual"] for _, p in trace.steps]).numpy()
            observed["chain_pred_noise"] = torch.stack([p["noise"] for _, p in trace.steps]).numpy()
            assert [t for t, _ in trace.steps] == [5, 4, 3, 2, 1]
        if not backbone:
            return observed
        outputs = model.backbone(x, prior)
    names = {1: ["out"], 3: ["out_16", "out_32", "out"]}[len(outputs)]
    observed.update({name: out.numpy() for name, out in zip(names, outputs)})
    return observed


def max_differences(config: str, observed: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |ours - golden| for every golden of ``config`` that has a tolerance (informational ones skipped)."""
    diffs = {}
    for name, entry in goldens(config).items():
        if entry["tolerance_abs"] is None or name not in observed:
            continue
        golden = array(entry["file"])
        assert observed[name].shape == golden.shape, (name, observed[name].shape, golden.shape)
        diffs[name] = float(np.max(np.abs(observed[name] - golden)))
    return diffs
