"""MIMO-UNet, MIMO-UNet+ and Stripformer: tiny forward/backward, prior handling, strip attention
against a naive per-strip computation, and paper-scale size/cost against the published numbers
(counted on the meta device, no paper-scale arithmetic)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from models.backbones import build_backbone
from models.backbones.stripformer import InterStripAttention, IntraStripAttention
from models.costs import count_costs, count_layer_macs, count_params
from models.fusion import PriorFusion

NAMES = ("mimo_unet", "mimo_unet_plus", "stripformer")
PACKAGED_COSTS = Path(__file__).resolve().parents[1] / "models" / "published_costs.yaml"
# fusion parameters added at paper scale (shared/spec/blurdm-method.md), in millions, 2 decimals
SPEC_FUSION_DELTA_M = {"mimo_unet_plus": 0.11, "stripformer": 2.56}


def _fusion_layers(model: torch.nn.Module) -> list[PriorFusion]:
    return [m for m in model.modules() if isinstance(m, PriorFusion)]


def _expected_fusion_params(name: str) -> int:
    """256 x 2C per fused block: 3 MIMO decoder stages (4b, 2b, b); Stripformer 12 x 320 + 6 x 192."""
    if name.startswith("mimo"):
        return 256 * 2 * (128 + 64 + 32)
    return 256 * 2 * (12 * 320 + 6 * 192)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_backward_with_prior(name):
    model = build_backbone(name, "tiny", 256)
    assert model.value_range == "half" and model.tile is None and model.prior_dim == 256
    assert model.pad_multiple == (8 if name.startswith("mimo") else 32)
    h, w = 32, 64  # not square: the strip attentions must handle H != W
    x = torch.rand(2, 3, h, w) - 0.5
    prior = torch.randn(2, 256)
    outs = model(x, prior)
    if name.startswith("mimo"):
        assert [tuple(o.shape) for o in outs] == [(2, 3, h // 4, w // 4), (2, 3, h // 2, w // 2), (2, 3, h, w)]
    else:
        assert len(outs) == 1 and outs[0].shape == x.shape
    sum(o.square().mean() for o in outs).backward()
    fusions = _fusion_layers(model)
    assert len(fusions) == (3 if name.startswith("mimo") else 4)
    for layer in fusions:
        assert layer.proj.weight.grad is not None and layer.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_tiny_prior_changes_output(name):
    model = build_backbone(name, "tiny", 256).eval()
    x = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        a = model(x, torch.randn(1, 256))[-1]
        b = model(x, torch.randn(1, 256))[-1]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_baseline_has_no_fusion_and_trains(name):
    model = build_backbone(name, "tiny", None)
    assert model.prior_dim is None and not _fusion_layers(model)
    assert not any("fusion" in n for n, _ in model.named_parameters())
    x = torch.rand(2, 3, 32, 32) - 0.5
    outs = model(x)
    assert outs[-1].shape == x.shape
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    fused = build_backbone(name, "tiny", 256)
    assert count_params(fused) - count_params(model) == sum(count_params(f) for f in _fusion_layers(fused))


@pytest.mark.parametrize("name", NAMES)
def test_prior_errors_are_clear(name):
    x = torch.rand(1, 3, 32, 32) - 0.5
    with pytest.raises(ValueError, match="prior fusion"):
        build_backbone(name, "tiny", 256)(x)
    with pytest.raises(ValueError, match="shape"):
        build_backbone(name, "tiny", 256)(x, torch.randn(1, 128))
    with pytest.raises(ValueError, match="without prior"):
        build_backbone(name, "tiny", None)(x, torch.randn(1, 256))


def test_unknown_scale_is_rejected():
    from models.backbones.mimo_unet import MIMOUNet
    from models.backbones.stripformer import Stripformer

    for cls in (MIMOUNet, Stripformer):
        with pytest.raises(ValueError, match="huge"):
            cls(scale="huge")


def _naive_attention(q, k, v):
    """Softmax attention of (L, D) tokens."""
    return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v


def test_intra_strip_attention_matches_per_row_and_column_loops():
    block = IntraStripAttention(dim=8, heads=2, prior_dim=None)
    b, c, h, w = 2, 4, 3, 5
    rows, cols = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    out_rows, out_cols = block.attend(rows, cols)
    d = c // 2
    for bi in range(b):
        for i in range(h):  # every row is a sequence of its W pixels
            q, k, v = block.qkv_rows(rows[bi, :, i, :].T).chunk(3, dim=-1)
            ref = torch.cat([_naive_attention(q[:, s:s + d], k[:, s:s + d], v[:, s:s + d]) for s in (0, d)], -1)
            torch.testing.assert_close(out_rows[bi, :, i, :], ref.T, atol=1e-5, rtol=1e-4)
        for j in range(w):  # every column is a sequence of its H pixels
            q, k, v = block.qkv_cols(cols[bi, :, :, j].T).chunk(3, dim=-1)
            ref = torch.cat([_naive_attention(q[:, s:s + d], k[:, s:s + d], v[:, s:s + d]) for s in (0, d)], -1)
            torch.testing.assert_close(out_cols[bi, :, :, j], ref.T, atol=1e-5, rtol=1e-4)


def test_inter_strip_attention_matches_whole_strip_tokens():
    block = InterStripAttention(dim=8, heads=2, prior_dim=None)
    b, c, h, w = 2, 4, 3, 5
    rows, cols = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    out_rows, out_cols = block.attend(rows, cols)
    ch = c // 2  # channels per head
    for bi in range(b):
        q, k, v = block.qkv_rows(rows[bi:bi + 1]).chunk(3, dim=1)
        for g in range(2):  # head g: channels g*ch..; token i = row i of those channels, flattened
            sel = slice(g * ch, (g + 1) * ch)
            tokens = [t[0, sel].permute(1, 0, 2).reshape(h, ch * w) for t in (q, k, v)]
            ref = _naive_attention(*tokens).reshape(h, ch, w).permute(1, 0, 2)
            torch.testing.assert_close(out_rows[bi, sel], ref, atol=1e-5, rtol=1e-4)
        q, k, v = block.qkv_cols(cols[bi:bi + 1]).chunk(3, dim=1)
        for g in range(2):  # token j = column j of the head's channels, flattened channel-major
            sel = slice(g * ch, (g + 1) * ch)
            tokens = [t[0, sel].permute(2, 0, 1).reshape(w, ch * h) for t in (q, k, v)]
            ref = _naive_attention(*tokens).reshape(w, ch, h).permute(1, 2, 0)
            torch.testing.assert_close(out_cols[bi, sel], ref, atol=1e-5, rtol=1e-4)


# ---- paper scale, on the meta device -------------------------------------------------------------


def _published(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["backbones_published"]


def test_packaged_published_costs_match_paper_yaml(shared_dir):
    paper_yaml = shared_dir / "paper" / "blurdm-neurips2025.yaml"
    if not paper_yaml.is_file():
        pytest.skip(f"{paper_yaml} is absent")
    packaged, paper = _published(PACKAGED_COSTS), _published(paper_yaml)
    for name, numbers in paper.items():
        assert packaged[name] == numbers, name


def _meta_model(name: str, prior_dim: int | None):
    with torch.device("meta"):
        return build_backbone(name, "paper", prior_dim)


@pytest.mark.parametrize("name", NAMES)
def test_paper_params_and_fusion_delta(name):
    published = _published(PACKAGED_COSTS)[name]
    base = count_params(_meta_model(name, None))
    assert abs(base / 1e6 - published["params_m"]) <= 0.02 * published["params_m"], base
    delta = count_params(_meta_model(name, 256)) - base
    assert delta == _expected_fusion_params(name)
    if name in SPEC_FUSION_DELTA_M:
        assert round(delta / 1e6, 2) == SPEC_FUSION_DELTA_M[name]


@pytest.mark.parametrize("name", NAMES)
def test_paper_macs_at_256(name):
    published = _published(PACKAGED_COSTS)[name]
    model = _meta_model(name, None)
    x = torch.zeros(1, 3, 256, 256, device="meta")
    layer_gmacs = count_layer_macs(model, x) / 1e9  # thop-style: conv/linear only
    full_gmacs = count_costs(model, x)["macs"] / 1e9  # plus attention matmuls
    assert abs(layer_gmacs - published["gmacs"]) <= 0.05 * published["gmacs"], layer_gmacs
    assert abs(full_gmacs - published["gmacs"]) <= 0.05 * published["gmacs"], full_gmacs
    assert full_gmacs >= layer_gmacs
    if name.startswith("mimo"):  # no attention: both counts agree
        assert full_gmacs == pytest.approx(layer_gmacs, rel=1e-6)
