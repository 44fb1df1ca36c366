"""Conformance with the official code: the BlurDM conformance kit (``tests/fixtures/conformance``, a
byte-identical copy of ``../shared/conformance``) against our networks loaded through
:mod:`models.official`.

For every kit configuration: the official state dict(s) are filled by the kit's weight rule (checked
against its ``check_sum`` / ``check_first``), converted by :func:`models.official.convert_official`,
loaded into our float64 model and run on the kit's input (and start noise); every golden with a
tolerance is compared. Then: mutations that must break the comparison, the round trip through the
official checkpoint files and our model file, the import errors, and LoFormer's padding and tiling.

Measured max |ours - golden| (float64, one thread, torch 2.13 CPU; kit tolerances in brackets:
(a) outputs 1e-9, blur_latent 1e-9, chain_pred_* 1e-8, z0 and (b) outputs 1e-6):

=====================  =======  =======  =======  ===========  =========  =========  =======
config                 out      out_32   out_16   blur_latent  chain_res  chain_nse  z0
=====================  =======  =======  =======  ===========  =========  =========  =======
mimo_unet              8.3e-16  1.0e-15  1.8e-15
mimo_unet_plus         1.3e-15  1.4e-15  3.3e-15
mimo_unet_blurdm       9.7e-09  4.2e-09  6.7e-09  5.6e-17      1.3e-10    1.4e-10    5.5e-08
mimo_unet_plus_blurdm  1.2e-08  5.7e-09  8.5e-09  5.6e-17      1.3e-10    1.4e-10    5.5e-08
stripformer            1.6e-15
stripformer_blurdm     5.4e-09                    5.6e-17      1.3e-10    1.4e-10    5.5e-08
fftformer              1.3e-15
fftformer_blurdm       5.9e-09                    5.6e-17      1.3e-10    1.4e-10    5.5e-08
loformer_s             6.2e-15
loformer_s_blurdm      2.8e-10                    5.6e-17      1.3e-10    1.4e-10    5.5e-08
=====================  =======  =======  =======  ===========  =========  =========  =======

The (b) differences come from our chain's exact float64 constants (the official chain keeps float32
ones; kit README "Prior path" item 4). Through float32 weights (the round trip: official checkpoints
and our model files hold float32) the largest difference is 1.8e-7 (LoFormer-S out).
LoFormer's official tiling at 64x64 (informational goldens ``*.tiled384.out``): 0 without the prior
(the official blending sums the weighted residuals in a float32 buffer; so does ours), 1.5e-8 with it.
"""
from __future__ import annotations

import argparse
import collections
import filecmp
import math

import _conformance_kit as kit
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import official
from models.backbones.loformer import LocalChannelAttention
from models.deblur_model import build_deblur_model, model_payload
from pipelines.core.checkpoint_files import load_deblur_model
from models.inference import official_blend_weights, restore_full, tile_starts
from models.official import (
    OfficialCheckpointError,
    convert_official,
    import_official,
    official_to_ours_key,
)

CONFIGS = kit.configs()
ROUND_TRIP_TOLERANCE = 1e-6  # float32 weights (measured <= 1.8e-7 against the goldens)

# A plausible mapping mistake per configuration (swap everything under two prefixes of our state dict)
# and the goldens it must break (the others must still pass, where listed under "keeps").
MUTATIONS = {
    "mimo_unet": ("backbone.encoders.0.0.body.0.", "backbone.encoders.0.0.body.1."),  # a block's two convs
    "mimo_unet_plus": ("backbone.encoders.0.0.body.0.", "backbone.encoders.0.0.body.1."),
    "stripformer": ("backbone.bottleneck.0.qkv_rows.", "backbone.bottleneck.0.qkv_cols."),  # rows vs columns
    "fftformer": ("backbone.decoder1.0.norm1.", "backbone.decoder1.0.norm2."),  # the two norms of a block
    "loformer_s": ("backbone.middle.0.", "backbone.middle.1."),  # trans1 vs trans2
}
ESTIMATOR_SWAP = ("prior.estimators.residual.", "prior.estimators.noise.")  # lcr_model vs noise_model


# ---------------------------------------------------------------------------------------------
# fixtures: one configuration at a time (module scope groups the tests by configuration)

@pytest.fixture(scope="module", params=CONFIGS)
def config(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def converted(config):
    state = kit.official_state_dicts(config)
    return convert_official(config, state["backbone"], state.get("blurdm"), source=config)


@pytest.fixture(scope="module")
def model64(converted):
    torch.set_num_threads(1)
    state, spec = converted
    model = build_deblur_model(spec).double().eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def observed(config, model64):
    torch.set_num_threads(1)
    return kit.run_ours(model64, config)


def _tolerances(config: str) -> dict[str, float]:
    return {name: entry["tolerance_abs"] for name, entry in kit.goldens(config).items()
            if entry["tolerance_abs"] is not None}


# ---------------------------------------------------------------------------------------------
# the kit itself

def test_kit_copy_is_byte_identical_to_shared(shared_dir):
    source = shared_dir / "conformance"
    if not source.is_dir():
        pytest.skip("../shared/conformance is not present")
    ours = sorted(p.relative_to(kit.KIT) for p in kit.KIT.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert ours == theirs
    different = [str(p) for p in ours if not filecmp.cmp(kit.KIT / p, source / p, shallow=False)]
    assert not different, f"tests/fixtures/conformance differs from {source}: {different}"


def test_weight_rule_reproduces_the_kit_checks(config):
    assert kit.check_values(config) == []


# ---------------------------------------------------------------------------------------------
# the key mapping

def test_key_mapping_is_a_bijection_onto_our_state_dict(config, converted, model64):
    state, spec = converted
    ours = model64.state_dict()
    assert set(state) == set(ours)
    assert all(state[k].shape == ours[k].shape for k in ours)
    cfg = official.OFFICIAL_CONFIGS[config]
    assert (spec["backbone"], spec["scale"], spec["value_range"]) == (cfg.backbone, "paper", kit.index()["configs"][config]["value_range"])
    for part, prefix in (("backbone", "backbone."), ("blurdm", "prior.")):
        keys = kit.keys_file(config)["state_dicts"].get(part, {})
        mapped = {k: official_to_ours_key(cfg.backbone, k, part) for k in keys}
        unmapped = {k for k, v in mapped.items() if v is None}
        expected_unmapped = (set(official.SCHEDULE_BUFFERS) if part == "blurdm"
                             else set(official.DROPPED_KEYS.get(cfg.backbone, ()))) & set(keys)
        assert unmapped == expected_unmapped  # FFTformer's unused reduce_chan_level2; the schedule buffers
        targets = [prefix + v for v in mapped.values() if v is not None]
        assert len(targets) == len(set(targets))  # injective
        assert set(targets) <= set(ours)
    uncovered = {k for k in ours if k not in {"prior.latent_mean", "prior.latent_std"}} - {
        prefix + v for part, prefix in (("backbone", "backbone."), ("blurdm", "prior."))
        for k in kit.keys_file(config)["state_dicts"].get(part, {})
        if (v := official_to_ours_key(cfg.backbone, k, part)) is not None}
    assert not uncovered  # onto


def test_fftformer_filter_layout_is_converted(monkeypatch):
    state = kit.official_state_dicts("fftformer")
    converted, _ = convert_official("fftformer", state["backbone"])
    official_filter = state["backbone"]["encoder_level1.0.ffn.fft"]
    assert tuple(official_filter.shape) == (288, 1, 1, 8, 5)
    assert torch.equal(converted["backbone.encoder1.0.ffn.spectral_filter"], official_filter[:, 0, 0])
    monkeypatch.setattr("models.official.keys.LAYOUTS", {})  # without the layout conversion: refused, named
    with pytest.raises(OfficialCheckpointError, match=r"mis-shaped: encoder_level1\.0\.ffn\.fft \[288, 1, 1, 8, 5\]"):
        convert_official("fftformer", state["backbone"])


# ---------------------------------------------------------------------------------------------
# the goldens

def test_matches_every_golden(config, observed):
    diffs = kit.max_differences(config, observed)
    tolerances = _tolerances(config)
    assert set(diffs) == set(tolerances) and diffs
    failing = {name: f"{diffs[name]:.2e} > {tolerances[name]:.0e}" for name in diffs if not diffs[name] <= tolerances[name]}
    assert not failing, f"{config}: {failing}"


def _swap(state: dict, first: str, second: str) -> dict:
    mutated = dict(state)
    pairs = [(k, second + k[len(first):]) for k in state if k.startswith(first)]
    assert pairs and all(b in state and state[a].shape == state[b].shape for a, b in pairs)
    for a, b in pairs:
        mutated[a], mutated[b] = state[b], state[a]
    return mutated


def test_a_plausible_mapping_mistake_breaks_the_comparison(config, converted, model64):
    """Shows the golden comparison can fail: swapping two same-shaped parts of the converted state dict
    (a mapping mistake that keeps every shape) pushes the affected goldens far past the tolerance."""
    state, _ = converted
    prior = kit.index()["configs"][config]["start_noise_file"] is not None
    if prior:  # residual vs noise estimator: the chain breaks, the blur latent does not
        first, second = ESTIMATOR_SWAP
        broken, kept = {"chain_pred_residual", "chain_pred_noise", "z0"}, {"blur_latent"}
    else:
        first, second = MUTATIONS[config]
        broken, kept = {name for name in _tolerances(config)}, set()
    model64.load_state_dict(_swap(state, first, second))
    try:  # with the prior, only the prior is run (what the estimator swap breaks first)
        diffs = kit.max_differences(config, kit.run_ours(model64, config, backbone=not prior))
    finally:
        model64.load_state_dict(state)
    tolerances = _tolerances(config)
    assert all(diffs[name] > 1000 * tolerances[name] for name in broken), diffs
    assert all(diffs[name] <= tolerances[name] for name in kept), diffs


# ---------------------------------------------------------------------------------------------
# official checkpoint files -> our model file

def _official_file(config: str, path) -> None:
    """Write the kit-rule weights (float32, as released) inside the wrapper the official project saves."""
    state = {part: {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
             for part, sd in kit.official_state_dicts(config).items()}
    backbone = official.OFFICIAL_CONFIGS[config].backbone
    if "blurdm" in state:  # BlurDM stage-3 training state: both modules, the run's argparse.Namespace
        args = argparse.Namespace(model=config, crop_size=256, device=torch.device("cpu"), best_psnr=30.5)
        payload = {"epoch": 3000, "model_state": state["backbone"], "model_dm_state": state["blurdm"],
                   "optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0, 1]}]},
                   "scheduler_state": None, "best_panr": 30.5, "args": args}
    elif backbone.startswith("mimo"):  # chosj95: {'model': ...} (training snapshots add more entries)
        payload = {"model": state["backbone"], "epoch": 3000}
    elif backbone == "stripformer":  # the bare state dict of nn.DataParallel(Stripformer())
        payload = {f"module.{k}": v for k, v in state["backbone"].items()}
    else:  # BasicSR
        payload = {"params": state["backbone"]}
    torch.save(payload, path)


def test_round_trip_official_file_to_our_model_file(config, tmp_path):
    torch.set_num_threads(1)
    cfg = official.OFFICIAL_CONFIGS[config]
    source = tmp_path / f"{config}.pth"
    _official_file(config, source)
    imported = import_official(cfg.backbone, cfg.prior, source)
    assert not imported.training and all(p.dtype == torch.float32 for p in imported.state_dict().values()
                                         if p.is_floating_point())
    assert imported.value_range == kit.index()["configs"][config]["value_range"]
    source.unlink()
    torch.save(model_payload(imported, {"imported_from": "official"}), tmp_path / "model.pt")
    loaded, spec = load_deblur_model(tmp_path / "model.pt")
    assert spec["value_range"] == cfg.value_range and loaded.value_range == cfg.value_range
    assert all(torch.equal(a, b) for a, b in zip(imported.state_dict().values(), loaded.state_dict().values()))
    del imported
    diffs = kit.max_differences(config, kit.run_ours(loaded.double(), config))
    assert set(diffs) == set(_tolerances(config))
    assert all(d <= max(ROUND_TRIP_TOLERANCE, _tolerances(config)[n]) for n, d in diffs.items()), diffs


def test_import_weights_writes_a_model_file_with_provenance(tmp_path):
    source = tmp_path / "Stripformer_gopro.pth"
    _official_file("stripformer", source)
    out = official.import_weights("stripformer", source, tmp_path / "out" / "model.pt")
    _, spec = load_deblur_model(out)
    payload = torch.load(out, weights_only=True)
    assert spec["backbone"] == "stripformer" and spec["prior_mode"] == "none"
    assert payload["meta"]["config"] == "stripformer"
    assert payload["meta"]["checkpoints"][0]["file"] == "Stripformer_gopro.pth"
    assert len(payload["meta"]["checkpoints"][0]["sha256"]) == 64


def test_import_reads_split_blurdm_files(tmp_path):
    """BlurDM's final files split the backbone ('model_state') and the module ('model_dm_state'), each
    with the run's argparse.Namespace; DataParallel prefixes are removed."""
    state = kit.official_state_dicts("mimo_unet_blurdm")
    args = argparse.Namespace(model="MIMOUNetBlurDM", device=torch.device("cpu"))
    backbone_file, module_file = tmp_path / "final_deblur_MIMOUNetBlurDM.pth", tmp_path / "final_dm_MIMOUNetBlurDM.pth"
    torch.save({"model_state": {f"module.{k}": v for k, v in state["backbone"].items()}, "args": args}, backbone_file)
    torch.save({"model_dm_state": state["blurdm"], "args": args}, module_file)
    model = import_official("mimo_unet", "blurdm", backbone_file, module_file)
    expected, spec = convert_official("mimo_unet_blurdm", state["backbone"], state["blurdm"])
    assert model.spec == spec and model.prior_mode == "diffusion" and model.value_range == "half"
    loaded = model.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k].to(loaded[k].dtype)) for k in expected)
    with pytest.raises(OfficialCheckpointError, match=r"final_deblur_MIMOUNetBlurDM\.pth: has no BlurDM module"):
        import_official("mimo_unet", "blurdm", backbone_file)


def test_read_basicsr_file_picks_params_unless_told(tmp_path):
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": {"output.weight": torch.zeros(1)}, "params_ema": {"output.weight": torch.ones(1)}}, path)
    assert float(official.read_official_checkpoint(path).backbone["output.weight"]) == 0.0
    assert float(official.read_official_checkpoint(path, param_key="params_ema").backbone["output.weight"]) == 1.0
    with pytest.raises(OfficialCheckpointError, match=r"net_g_latest\.pth: has no entry 'params_x'"):
        official.read_official_checkpoint(path, param_key="params_x")


@pytest.fixture(scope="module")
def mimo_official_state():
    return {k: v.float() for k, v in kit.official_state_dicts("mimo_unet")["backbone"].items()}


@pytest.mark.parametrize("change, message", [
    ("missing", r"1 missing: \(ours\) backbone\.encoders\.1\.3\.body\.0\.0\.bias"),
    ("extra", r"1 unexpected: Encoder\.0\.layers\.99\.main\.0\.main\.0\.weight"),
    ("shape", r"1 mis-shaped: feat_extract\.5\.main\.0\.bias \[4\] \(ours backbone\.out_full\.0\.bias \[3\]\)"),
])
def test_import_refuses_keys_or_shapes_that_do_not_fit(change, message, mimo_official_state, tmp_path):
    state = dict(mimo_official_state)
    if change == "missing":
        del state["Encoder.1.layers.3.main.0.main.0.bias"]
    elif change == "extra":
        state["Encoder.0.layers.99.main.0.main.0.weight"] = torch.zeros(32, 32, 3, 3)
    else:
        state["feat_extract.5.main.0.bias"] = torch.zeros(4)
    path = tmp_path / "MIMO-UNet.pkl"
    torch.save({"model": state}, path)
    with pytest.raises(OfficialCheckpointError, match=rf"MIMO-UNet\.pkl: .*{message}"):
        import_official("mimo_unet", None, path)


class NotATensor:  # a custom class: a pickle holding it must be refused (weights_only)
    def __init__(self):
        self.value = 1


def test_import_refuses_a_pickle_with_other_objects(mimo_official_state, tmp_path):
    path = tmp_path / "crafted.pkl"
    torch.save({"model": mimo_official_state, "extra": NotATensor()}, path)
    with pytest.raises(OfficialCheckpointError, match=r"crafted\.pkl: refused to load .*NotATensor"):
        import_official("mimo_unet", None, path)


def test_import_refuses_a_wrong_prior_or_module(mimo_official_state, tmp_path):
    path = tmp_path / "MIMO-UNet.pkl"
    torch.save({"model": mimo_official_state}, path)
    with pytest.raises(OfficialCheckpointError, match=r"MIMO-UNet\.pkl: has no BlurDM module"):
        import_official("mimo_unet", "blurdm", path)
    with pytest.raises(ValueError, match="no official mimo_unet model with prior 'rddm'"):
        import_official("mimo_unet", "rddm", path)
    with pytest.raises(OfficialCheckpointError, match=r"MIMO-UNet\.pkl: the official weights do not fit the network: 288 missing: "
                                                       r"\(ours\) backbone\.encoders\.0\.8\.body"):
        import_official("mimo_unet_plus", None, path)  # MIMO-UNet+ has 12 more blocks in each of 6 stages


# ---------------------------------------------------------------------------------------------
# LoFormer: padding inside the attention, tiles at full resolution

def _reflect_index(length: int, pad: int) -> list[int]:
    return list(range(length)) + [length - 2 - i for i in range(pad)]


@pytest.mark.parametrize("mode, should_match", [("reflect", True), ("constant", False)])
def test_loformer_attention_reflect_pads_to_whole_windows(mode, should_match, monkeypatch):
    """The official attention reflect-pads q/k/v (bottom / right) to whole windows and crops its output.
    Written out window by window here; with zero padding instead the comparison fails."""
    torch.manual_seed(0)
    attn = LocalChannelAttention(channels=4, heads=2, window=4, prior_dim=None).double()
    monkeypatch.setattr(LocalChannelAttention, "window_pad_mode", mode)
    x = torch.randn(1, 4, 7, 10, dtype=torch.float64)
    with torch.no_grad():
        out = attn(x, None)
        qkv = attn.qkv_dw(attn.qkv(x))
        qkv = qkv[:, :, _reflect_index(7, 1)][:, :, :, _reflect_index(10, 2)]  # 8 x 12
        full = torch.zeros(1, 4, 8, 12, dtype=torch.float64)
        for top in range(0, 8, 4):
            for left in range(0, 12, 4):
                win = qkv[0, :, top:top + 4, left:left + 4].reshape(3, 2, 2, 16)
                for head in range(2):
                    q, k, v = win[0, head], win[1, head], win[2, head]
                    y = torch.softmax(q @ k.T * attn.temperature[head], dim=-1) @ v * F.gelu(attn.position_mlp(v))
                    full[0, 2 * head:2 * head + 2, top:top + 4, left:left + 4] = y.reshape(2, 4, 4)
        expected = attn.project_out(full[..., :7, :10])
    assert (float((out - expected).abs().max()) <= 1e-12) == should_match


def _observed_tiled(config: str, model64) -> np.ndarray:
    cfg = kit.index()["configs"][config]
    x = kit.tensor(cfg["input_file"])
    prior_fn = None
    if cfg["start_noise_file"]:
        noise = kit.tensor(cfg["start_noise_file"])
        prior_fn = lambda window: model64.prior(window, noise=noise)  # one window at 64x64: the kit's noise
    return restore_full(model64.backbone, x, prior_fn).numpy()


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("loformer")], indirect=True)
def test_loformer_tiles_as_the_official_code_at_64(config, model64, observed):
    """The kit's tiled goldens are informational (no tolerance): held to the untiled ``out`` tolerance
    (measured: 0 without the prior; 1.5e-8 with it, 13 values one float32 rounding apart, from z0's
    5.5e-8)."""
    golden = kit.array(kit.goldens(config)["tiled384_out"]["file"])
    tolerance = _tolerances(config)["out"]
    with torch.no_grad():
        tiled = _observed_tiled(config, model64)
    assert float(np.max(np.abs(tiled - golden))) <= tolerance
    # the official tile blending is observable: the untiled output is far from the tiled golden
    assert float(np.max(np.abs(observed["out"] - golden))) > 1000 * tolerance


class WindowStub(torch.nn.Module):
    """A stand-in network whose residual is a known function of the window and of its prior (one
    number per window: which window it is), so placement and blending are visible everywhere."""

    pad_multiple = 8
    tile = (384, 32)

    def forward(self, x, prior=None):
        rows = torch.arange(x.shape[-2], dtype=x.dtype)[:, None]
        cols = torch.arange(x.shape[-1], dtype=x.dtype)[None, :]
        residual = torch.sin(3 * x) + 0.01 * rows - 0.02 * cols + prior[:, :1, None, None]
        return [x + residual]


def _official_tiling_written_out(image: torch.Tensor, network, prior_fn, size=384, overlap=32) -> torch.Tensor:
    """The official LoFormer procedure as the kit README and the public code describe it, written
    out with its own loops: cut, restore every window, multiply each residual by the ramps in place,
    add them up, add the input."""
    _, _, h, w = image.shape
    k1, k2 = min(h, size), min(w, size)
    s1, s2 = k1 - overlap, k2 - overlap
    n1, n2 = (h - overlap - 1) // s1 + 1, (w - overlap - 1) // s2 + 1
    e1, e2 = n1 * s1 + 2 * overlap - h, n2 * s2 + 2 * overlap - w
    places = []
    i, last_i = 0, False
    while i < h and not last_i:
        if i + k1 >= h:
            i, last_i = h - k1, True
        j, last_j = 0, False
        while j < w and not last_j:
            if j + k2 >= w:
                j, last_j = w - k2, True
            places.append((i, j))
            j += k2 if n2 == 1 else s2
        i += k1 if n1 == 1 else s1
    up = lambda n: torch.linspace(0.0, 1.0, n).double()
    down = lambda n: torch.linspace(1.0, 0.0, n).double()
    total = torch.zeros(image.shape, dtype=torch.float32)  # the official buffer: torch.zeros, float32
    for i, j in places:
        window = image[..., i:i + k1, j:j + k2]
        res = network(window, prior_fn(window))[-1] - window
        if i != 0 and i + k1 != h:
            res[..., :overlap, :] *= up(overlap)[:, None]
        if i + 2 * k1 - e1 < h:
            res[..., -overlap:, :] *= down(overlap)[:, None]
        if i + k1 == h:
            res[..., :e1, :] *= up(e1)[:, None]
        if i + 2 * k1 - e1 == h:
            res[..., -e1:, :] *= down(e1)[:, None]
        if j != 0 and j + k2 != w:
            res[..., :overlap] *= up(overlap)
        if j + 2 * k2 - e2 < w:
            res[..., -overlap:] *= down(overlap)
        if j + k2 == w:
            res[..., :e2] *= up(e2)
        if j + 2 * k2 - e2 == w:
            res[..., -e2:] *= down(e2)
        total[..., i:i + k1, j:j + k2] += res
    return image + total


class WindowCounter:
    def __init__(self):
        self.shapes = []

    def __call__(self, window):
        self.shapes.append(tuple(window.shape[-2:]))
        return torch.full((window.shape[0], 256), float(len(self.shapes)), dtype=window.dtype)


@pytest.mark.parametrize("size, rows, cols", [((400, 700), [0, 16], [0, 316]),
                                              ((720, 1280), [0, 336], [0, 352, 704, 896])])
def test_loformer_tiling_at_full_size_matches_the_written_out_procedure(size, rows, cols):
    torch.manual_seed(0)
    image = torch.rand(1, 3, *size, dtype=torch.float64)
    ours_counter, reference_counter = WindowCounter(), WindowCounter()
    ours = restore_full(WindowStub(), image, ours_counter)
    reference = _official_tiling_written_out(image, WindowStub(), reference_counter)
    assert tile_starts(size[0], 384, 32) == rows and tile_starts(size[1], 384, 32) == cols
    assert ours_counter.shapes == reference_counter.shapes == [(384, 384)] * (len(rows) * len(cols))
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    # where windows overlap regularly (here, and at GoPro's 720x1280) the weights are a partition of unity
    for length, starts in ((size[0], rows), (size[1], cols)):
        assert float((sum(_axis_weights(length, starts)) - 1).abs().max()) < 1e-6


def _axis_weights(length: int, starts: list[int]) -> list[torch.Tensor]:
    out = []
    for start, weight in zip(starts, official_blend_weights(length, 384, 32, starts)):
        full = torch.zeros(length, dtype=torch.float64)
        full[start:start + 384] = weight
        out.append(full)
    return out


def test_a_different_blending_rule_is_detected():
    """Normalised cross-fading (what we did before) is not the official rule: the comparison fails."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 400, 700, dtype=torch.float64)
    reference = _official_tiling_written_out(image, WindowStub(), WindowCounter())
    ramp = torch.minimum((torch.arange(384) + 0.5) / 32, (384 - torch.arange(384) - 0.5) / 32).clamp(max=1).double()
    weight = ramp[:, None] * ramp[None, :]
    total, norm = torch.zeros_like(image), torch.zeros(400, 700, dtype=torch.float64)
    counter = WindowCounter()
    for top in tile_starts(400, 384, 32):
        for left in tile_starts(700, 384, 32):
            window = image[..., top:top + 384, left:left + 384]
            total[..., top:top + 384, left:left + 384] += WindowStub()(window, counter(window))[-1] * weight
            norm[top:top + 384, left:left + 384] += weight
    assert float((total / norm - reference).abs().max()) > 1e-3
    assert math.isfinite(float(reference.abs().max()))


# ---------------------------------------------------------------------------------------------------------
# `blurdm-bench import-weights`: the command a user with the published weights runs, and what it feeds
# ---------------------------------------------------------------------------------------------------------
def _tiny_test_folder(root, n: int = 2, size: int = 64):
    """A test folder of ``n`` blurred / sharp pairs (the kit's crop and a shifted copy) in the flat layout."""
    from PIL import Image

    crop = kit.array("golden/input_crop_uint8.npy")[:size, :size]
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.roll(crop, i, axis=1)).save(root / "input" / f"pair{i}.png")
        Image.fromarray(crop).save(root / "target" / f"pair{i}.png")
    return root


def test_import_weights_command_feeds_evaluate_deblur_and_profile(tmp_path, capsys):
    """An official MIMO-UNet+ .pkl through the command line: import, then evaluate, deblur and profile take the
    model file; the imported model runs on [0, 1] inputs, as chosj95's code feeds it."""
    from pipelines.cli import main

    source = tmp_path / "MIMO-UNetPlus.pkl"
    _official_file("mimo_unet_plus", source)
    out = tmp_path / "mimo_plus.pt"
    assert main(["import-weights", "--backbone", "mimo_unet_plus", "--checkpoint", str(source), "--out", str(out)]) == 0
    _, spec = load_deblur_model(out)
    assert spec["value_range"] == "unit" and spec["scale"] == "paper" and spec["prior_mode"] == "none"
    data = _tiny_test_folder(tmp_path / "pairs")
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(data), "--out", str(tmp_path / "eval"),
                 "--no-lpips"]) == 0
    summary = (tmp_path / "eval" / "summary.json").read_text()
    assert '"n_images": 2' in summary.replace("\n", "").replace("  ", " ") or '"n_images":2' in summary
    assert main(["deblur", str(data / "input"), "-o", str(tmp_path / "restored"), "--checkpoint", str(out)]) == 0
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["pair0.png", "pair1.png"]
    assert main(["profile", "--checkpoint", str(out), "--out", str(tmp_path / "costs.json"), "--profile", "smoke"]) == 0
    import json

    costs = json.loads((tmp_path / "costs.json").read_text())
    assert costs["sizes"][0]["params"] == kit.index()["configs"]["mimo_unet_plus"]["n_parameters"]


def test_import_weights_command_refuses_a_bad_checkpoint_by_name(tmp_path, capsys):
    """Keys that do not fit, and a pickle that is not plain tensors: one line naming the file, exit 2."""
    from pipelines.cli import main

    state = {k: v.float() for k, v in kit.official_state_dicts("mimo_unet")["backbone"].items()}
    state.pop("Decoder.0.layers.0.main.0.main.0.weight")
    torch.save({"model": state}, tmp_path / "bad.pkl")
    code = main(["import-weights", "--backbone", "mimo_unet", "--checkpoint", str(tmp_path / "bad.pkl"),
                 "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.pkl" in err and "missing" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()
    torch.save({"model": state, "extra": collections.Counter(a=1)}, tmp_path / "code.pkl")  # a non-plain class
    assert main(["import-weights", "--backbone", "mimo_unet", "--checkpoint", str(tmp_path / "code.pkl"),
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "code.pkl" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()
