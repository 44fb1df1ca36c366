"""FFTformer and LoFormer-S: tiny-scale forward/backward with and without prior fusion, paper-scale
parameter counts, fusion deltas and MACs (counted on the meta device: no paper-scale arithmetic)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from models.backbones import build_backbone
from models.backbones.fftformer import (
    ChannelLayerNorm,
    from_patches,
    patch_spectral_product,
    spectral_input,
    to_patches,
)
from models.backbones.loformer import LocalChannelAttention, dct2, idct2
from models.costs import count_costs, count_layer_macs, count_params
from models.fusion import PriorFusion

NAMES = ("fftformer", "loformer")
# backbones_published (official classes, no prior, 1x3x256x256), packaged copy of the paper YAML
_PACKAGED = yaml.safe_load((Path(__file__).resolve().parents[1] / "models" / "published_costs.yaml").read_text())
PUBLISHED = {"fftformer": _PACKAGED["backbones_published"]["fftformer"],
             "loformer": _PACKAGED["backbones_published"]["loformer_s"]}
# PFM Linear(256, 2C) per modulated block (spec): FFTformer no bias, LoFormer with bias
FUSION_DELTA = {
    "fftformer": 512 * (12 * 192 + 6 * 96 + 6 * 48 + 4 * 48),
    "loformer": 6 * (512 * 128 + 256) + 8 * (512 * 64 + 128),
}
FUSION_COUNT = {"fftformer": 28, "loformer": 14}


def _fusions(model):
    return [m for m in model.modules() if isinstance(m, PriorFusion)]


def _meta_model(name, prior_dim):
    with torch.device("meta"):
        return build_backbone(name, "paper", prior_dim)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_backward_with_prior(name):
    model = build_backbone(name, "tiny", 256)
    assert model.value_range == "unit" and model.prior_dim == 256 and model.scale == "tiny"
    x = torch.rand(2, 3, 64, 64)
    prior = torch.randn(2, 256)
    outs = model(x, prior)
    assert isinstance(outs, list) and len(outs) == 1
    assert outs[-1].shape == x.shape
    outs[-1].square().mean().backward()
    fusions = _fusions(model)
    assert fusions, "tiny model with prior_dim=256 has no fusion layers"
    for layer in fusions:
        assert layer.proj.weight.grad is not None and layer.proj.weight.grad.abs().sum() > 0
    # the prior changes the output
    with torch.no_grad():
        assert not torch.allclose(model(x, prior)[-1], model(x, torch.randn(2, 256))[-1])


@pytest.mark.parametrize("name", NAMES)
def test_tiny_baseline_has_no_fusion_and_runs_without_prior(name):
    model = build_backbone(name, "tiny", None)
    assert model.prior_dim is None and not _fusions(model)
    x = torch.rand(1, 3, 64, 64)
    out = model(x)[-1]
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_fused_model_without_prior_raises(name):
    model = build_backbone(name, "tiny", 256)
    with pytest.raises(ValueError, match="prior"):
        model(torch.rand(1, 3, 64, 64))


def test_fftformer_size_not_multiple_raises():
    model = build_backbone("fftformer", "tiny", None)
    m = model.pad_multiple
    with pytest.raises(ValueError, match=f"multiples of {m}"):
        model(torch.rand(1, 3, m + 4, m))


def test_fft_dtype_float32_except_float64():
    assert spectral_input(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert spectral_input(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("size", [(40, 40), (42, 58)])
def test_loformer_pads_any_size_as_the_official_network(size):
    """Like the official LoFormer, any size runs: the input is reflect-padded to a multiple of
    ``2**levels`` and cropped back, and each attention reflect-pads q/k/v to whole windows. At a
    size that is a multiple of both, nothing is padded: the same as running on the larger input."""
    torch.manual_seed(0)
    model = build_backbone("loformer", "paper" if size == (40, 40) else "tiny", None).double().eval()
    x = torch.rand(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)[-1]
    assert out.shape == x.shape and torch.isfinite(out).all()
    m = model.pad_multiple
    if size[0] % m or size[1] % m:  # padded internally: equals running on the explicitly padded input
        padded = F.pad(x, (0, -size[1] % m, 0, -size[0] % m), mode="reflect")
        with torch.no_grad():
            torch.testing.assert_close(out, model(padded)[-1][..., :size[0], :size[1]] - padded[..., :size[0], :size[1]] + x)


def test_pad_multiples_and_tiles():
    assert build_backbone("fftformer", "paper", None).pad_multiple == 32
    assert build_backbone("fftformer", "tiny", None).tile is None
    with torch.device("meta"):
        lo = build_backbone("loformer", "paper", None)
    assert lo.pad_multiple == 8 and lo.tile == (384, 32)  # the official LoFormer pads to multiples of 8
    tiny = build_backbone("loformer", "tiny", None)
    assert tiny.tile[0] % tiny.pad_multiple == 0


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_conversion(name):
    model = build_backbone(name, "tiny", 256).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    assert model(x, torch.randn(1, 256))[-1].shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_paper_parameter_counts_and_fusion_delta(name):
    base = count_params(_meta_model(name, None))
    fused_model = _meta_model(name, 256)
    published = PUBLISHED[name]["params_m"] * 1e6
    assert abs(base - published) / published < 0.02, f"{name}: {base / 1e6:.3f} M vs published {published / 1e6} M"
    assert count_params(fused_model) - base == FUSION_DELTA[name]
    assert len(_fusions(fused_model)) == FUSION_COUNT[name]


def test_fusion_deltas_match_spec_rounding():
    assert round(FUSION_DELTA["fftformer"] / 1e6, 2) == 1.72
    assert round(FUSION_DELTA["loformer"] / 1e6, 2) == 0.66


def test_fftformer_paper_thop_macs_match_published():
    macs = count_layer_macs(_meta_model("fftformer", None), torch.empty(1, 3, 256, 256, device="meta"))
    published = PUBLISHED["fftformer"]["gmacs"] * 1e9
    assert abs(macs - published) / published < 0.05, macs / 1e9


def test_loformer_paper_macs_match_published_with_dct_matmuls():
    """LoFormer's DCT is a matrix product: thop-style layer hooks miss it (and the window attention),
    the complete count (FlopCounterMode) includes it and matches the published 83.6 G."""
    model = _meta_model("loformer", None)
    x = torch.empty(1, 3, 256, 256, device="meta")
    complete = count_costs(model, x)["macs"]
    layers_only = count_layer_macs(model, x)
    published = PUBLISHED["loformer"]["gmacs"] * 1e9
    assert abs(complete - published) / published < 0.05, complete / 1e9
    assert layers_only < complete


def test_fftformer_complete_count_includes_ffts():
    costs = count_costs(_meta_model("fftformer", None), torch.empty(1, 3, 256, 256, device="meta"))
    assert costs["fft_flops"] > 0 and costs["macs"] > PUBLISHED["fftformer"]["gmacs"] * 1e9


def test_dct_is_orthonormal_dct2():
    scipy_fft = pytest.importorskip("scipy.fft")
    x = torch.randn(2, 3, 12, 20, dtype=torch.float64)
    expected = scipy_fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(dct2(x).numpy(), expected, atol=1e-10)
    torch.testing.assert_close(idct2(dct2(x)), x)


def test_channel_layer_norm_normalises_over_channels():
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 6, 5, 7)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, 1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    plain = ChannelLayerNorm(6)(x)
    torch.testing.assert_close(plain.mean(dim=1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)


def test_patch_round_trip():
    x = torch.randn(2, 3, 16, 24)
    patches = to_patches(x, 8)
    assert patches.shape == (2, 3, 2, 3, 8, 8)
    torch.testing.assert_close(patches[0, 1, 1, 2], x[0, 1, 8:16, 16:24])
    torch.testing.assert_close(from_patches(patches), x)


def test_loformer_trains_after_inference_mode_use():
    """The cached DCT matrices must not become inference tensors (evaluation then training)."""
    model = build_backbone("loformer", "tiny", None)
    x = torch.rand(1, 3, 96, 96)  # a size no other test uses, so the cache is filled here
    with torch.inference_mode():
        model(x)
    model(x)[-1].mean().backward()
    assert model.embed.weight.grad is not None


def test_patch_spectral_product_is_circular_convolution_per_patch():
    p = 4
    q = torch.randn(1, 2, 8, 4, dtype=torch.float64)
    k = torch.randn(1, 2, 8, 4, dtype=torch.float64)
    out = patch_spectral_product(q, k, p)
    expected = torch.zeros_like(q)
    for top in range(0, 8, p):
        qp, kp = q[..., top:top + p, :], k[..., top:top + p, :]
        for m in range(p):
            for n in range(p):
                rolled = torch.roll(kp.flip(-2, -1), shifts=(m + 1, n + 1), dims=(-2, -1))  # k[(m-a)%p, (n-b)%p]
                expected[..., top + m, n] = (qp * rolled).sum(dim=(-2, -1))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)  # float64 inputs: the FFTs run in float64


def test_local_channel_attention_matches_per_window_computation():
    torch.manual_seed(0)
    attn = LocalChannelAttention(channels=4, heads=2, window=4, prior_dim=None).double()
    x = torch.randn(1, 4, 8, 12, dtype=torch.float64)
    out = attn(x, None)
    with torch.no_grad():
        qkv = attn.qkv_dw(attn.qkv(x))
        expected = torch.zeros_like(x)
        for top in range(0, 8, 4):
            for left in range(0, 12, 4):
                win = qkv[0, :, top:top + 4, left:left + 4].reshape(3, 2, 2, 16)  # (q/k/v, head, c, pos)
                for head in range(2):
                    q, k, v = win[0, head], win[1, head], win[2, head]
                    a = torch.softmax(q @ k.T * attn.temperature[head], dim=-1)
                    y = (a @ v) * F.gelu(attn.position_mlp(v))
                    expected[0, 2 * head:2 * head + 2, top:top + 4, left:left + 4] = y.reshape(2, 4, 4)
        expected = attn.project_out(expected)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fftformer_evaluation_path_gives_the_training_paths_values(dtype, monkeypatch):
    """Without autograd FFTformer filters its patch spectra a few channels at a time and multiplies spectra in
    place (a paper-scale 720 x 1280 pass: 16.1 -> ~12 GiB peak): the values must be exactly those of the
    whole-tensor expression that training (autograd) runs, the BlurDM prior's fusion included."""
    from models.backbones import fftformer as fft

    torch.manual_seed(0)
    # dim 16, FFN factor 3: 96 DFFN channels at level 1, 192 in the skip fusion -> several channel groups
    monkeypatch.setitem(fft.CONFIGS, "test", {"dim": 16, "num_blocks": (1, 1, 1), "num_refinement": 1,
                                              "ffn_factor": 3.0, "fuse_ffn_factor": 3.0, "patch": 8})
    model = fft.FFTformer("test", prior_dim=256).to(dtype).eval()
    for module in model.modules():  # learnt-looking filters, not the all-ones start
        if isinstance(module, fft.FrequencyFFN):
            module.spectral_filter.data.uniform_(0.5, 1.5)
    x, prior = torch.rand(1, 3, 64, 96, dtype=dtype), torch.randn(1, 256, dtype=dtype)
    with torch.enable_grad():
        expected = model(x, prior)[0].detach()
    with torch.no_grad():
        assert torch.equal(model(x, prior)[0], expected)
    with torch.inference_mode():
        assert torch.equal(model(x, prior)[0], expected)
    ffn = next(m for m in model.modules() if isinstance(m, fft.FrequencyFFN) and m.spectral_filter.shape[0] > 64)
    assert ffn.spectral_filter.shape[0] > fft.EVAL_CHANNEL_GROUP  # the grouped path really ran in groups
