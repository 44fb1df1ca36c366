"""Diffusion priors: BlurDM constants, exact one-step inversion for every process, determinism,
gradients through the whole chain, the BlurDM module's cost against the spec, build_prior errors."""
from __future__ import annotations

import pytest
import torch

from models.costs import count_costs, count_params
from models.diffusion import (
    BlurDMProcess,
    ChainTrace,
    DDPMProcess,
    DiffusionPrior,
    EncoderOnlyProcess,
    Estimator,
    RDDMProcess,
)
from models.names import DIFFUSION_PRIORS as PRIORS
from models.priors import build_prior

TS = (1, 3, 5, 10)


def _latents(batch=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z0, c, eps = (torch.randn(batch, 256, generator=g, dtype=dtype) for _ in range(3))  # any dimension works
    return z0, c, eps


def test_blurdm_schedule_matches_spec():
    p = BlurDMProcess(T=5)
    assert p.betas == pytest.approx([0, 0.005, 0.010, 0.015, 0.020], abs=1e-12)
    assert p.alphas == pytest.approx([1.0, 1.2, 1.4, 1.6, 1.8, 2.0], abs=1e-12)
    # spec: beta_bar and k for t = 1..5 (beta_bar_0 = 0)
    assert p.beta_bar[0] == 0
    assert p.beta_bar[1:] == pytest.approx([0, 0.0606, 0.1023, 0.1419, 0.1803], abs=1e-4)
    assert p.k[1:] == pytest.approx([0, 0.0707, 0.0563, 0.0573, 0.0585], abs=1e-4)


def test_blurdm_T1_has_no_noise():
    p = BlurDMProcess(T=1)
    assert p.betas == [0.0] and p.alphas == [1.0, 2.0]
    assert p.beta_bar == [0.0, 0.0] and p.k[1] == 0.0


@pytest.mark.parametrize("process_cls", [BlurDMProcess, RDDMProcess, DDPMProcess])
@pytest.mark.parametrize("T", TS)
def test_true_predictions_invert_one_forward_step(process_cls, T):
    p = process_cls(T)
    z0, c, eps = _latents()
    for t in range(1, T + 1):
        z_t = p.forward_marginal(z0, c, t, eps)
        back = p.reverse_step(t, z_t, p.true_predictions(z0, c, t, eps), c)
        torch.testing.assert_close(back, p.forward_marginal(z0, c, t - 1, eps), atol=1e-9, rtol=1e-9)
    # and the forward marginal at t = 0 is the clean latent
    torch.testing.assert_close(p.forward_marginal(z0, c, 0, eps), z0)


@pytest.mark.parametrize("process_cls", [BlurDMProcess, RDDMProcess])
@pytest.mark.parametrize("T", TS)
def test_chain_from_start_recovers_z0_with_true_predictions(process_cls, T):
    """BlurDM / RDDM start at c + noise, which is the forward marginal at T (mu_T = c)."""
    p = process_cls(T)
    z0, c, eps = _latents()
    z = p.start(c, eps)
    torch.testing.assert_close(z, p.forward_marginal(z0, c, T, eps))
    for t in range(T, 0, -1):
        z = p.reverse_step(t, z, p.true_predictions(z0, c, t, eps), c)
    torch.testing.assert_close(z, z0, atol=1e-9, rtol=1e-9)


def test_blurdm_explicit_residuals_end_at_blur_latent():
    p = BlurDMProcess(T=3)
    z0, c, eps = _latents()
    g = torch.Generator().manual_seed(5)
    e = [torch.randn(3, 256, generator=g, dtype=torch.float64) for _ in range(3)]
    # alpha_T mu_T = alpha_0 z0 + sum(e)
    torch.testing.assert_close(p.mean(z0, c, 3, e), (z0 + sum(e)) / 2.0)
    torch.testing.assert_close(p.mean(z0, c, 3), c)  # default residuals: mu_T is the blur latent
    for t in range(1, 4):
        back = p.reverse_step(t, p.forward_marginal(z0, c, t, eps, e), p.true_predictions(z0, c, t, eps, e), c)
        torch.testing.assert_close(back, p.forward_marginal(z0, c, t - 1, eps, e))
    with pytest.raises(ValueError, match="needs 3 residuals"):
        p.mean(z0, c, 2, e[:2])


def test_ddpm_is_diffir_style_z0_prediction_from_pure_noise():
    """DiffIR-style: linear betas 0.1 -> 0.99, pure-noise start, posterior-mean steps on a z0 estimate;
    the last step returns the estimate itself and no coefficient amplifies an estimator's error."""
    p = DDPMProcess(5)
    z0, c, eps = _latents()
    assert p.estimator_names == ("z0",)
    assert torch.equal(p.start(c, eps), eps)
    assert p.betas[1:] == pytest.approx([0.1, 0.3225, 0.545, 0.7675, 0.99])
    assert p.alpha_bar[0] == 1.0 and p.alpha_bar[-1] < 1e-3
    assert all(a > b for a, b in zip(p.alpha_bar, p.alpha_bar[1:]))
    assert p.coef_z0[1] == pytest.approx(1.0) and p.coef_z[1] == pytest.approx(0.0)
    assert all(0 <= a <= 1 + 1e-12 and 0 <= b <= 1 for a, b in zip(p.coef_z0[1:], p.coef_z[1:]))
    # with a perfect z0 estimate the chain from pure noise lands on z0 exactly
    z = p.start(c, eps)
    for t in range(5, 0, -1):
        z = p.reverse_step(t, z, {"z0": z0}, c)
    torch.testing.assert_close(z, z0, atol=1e-9, rtol=1e-9)
    # an error in the estimate is never amplified: it reaches z_0 at most 1x
    z = p.start(c, eps)
    for t in range(5, 0, -1):
        z = p.reverse_step(t, z, {"z0": z0 + 0.1}, c)
    assert (z - z0).abs().max() <= 0.1 + 1e-9


def test_ddpm_prior_learns_better_than_the_trivial_predictor():
    """After a short fit through the whole chain, the DDPM prior's z0 error is below the error of the
    best constant (the mean target): it no longer explodes (it once did, at ~60 against ~0.3)."""
    torch.manual_seed(0)
    prior = build_prior("ddpm", T=5, scale="tiny")
    g = torch.Generator().manual_seed(1)
    blur = torch.rand(64, 3, 16, 16, generator=g) - 0.5
    mix = torch.randn(3, prior.dim, generator=g)
    target = blur.mean(dim=(2, 3)) @ mix  # a latent that the blurred image determines
    trivial = float(((target - target.mean(0)) ** 2).mean())
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for step in range(300):
        opt.zero_grad()
        loss = ((prior(blur, generator=torch.Generator().manual_seed(step)) - target) ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(((prior(blur, generator=torch.Generator().manual_seed(999)) - target) ** 2).mean())
    assert final < 0.5 * trivial, (final, trivial)


def test_encoder_prior_is_the_blur_encoder_alone():
    prior = build_prior("encoder", T=5, scale="tiny").eval()
    blur = torch.rand(2, 3, 16, 16)
    assert len(prior.estimators) == 0
    with torch.no_grad():
        a = prior(blur, generator=torch.Generator().manual_seed(1))
        b = prior(blur, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, prior.condition(blur))
    assert torch.equal(a, b)  # no noise: no sampling spread


def test_rddm_schedule_ends_at_one():
    for T in TS:
        p = RDDMProcess(T)
        assert p.abar[0] == 0 and p.abar[T] == 1.0 and p.bbar[0] == 0
        assert p.bbar[T] == pytest.approx(0.18)
        assert all(b > a for a, b in zip(p.bbar, p.bbar[1:]))


@pytest.mark.parametrize("name", PRIORS)
@pytest.mark.parametrize("T", [1, 5])
def test_prior_forward_shape_and_seed_determinism(name, T):
    prior = build_prior(name, T=T, scale="tiny").eval()
    blur = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a = prior(blur, generator=torch.Generator().manual_seed(2023))
        b = prior(blur, generator=torch.Generator().manual_seed(2023))
        d = prior(blur, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 32) and torch.isfinite(a).all()  # the tiny latent is 32-d (models.encoder.PRIOR_DIMS)
    assert torch.equal(a, b)
    if (name == "blurdm" and T == 1) or name == "encoder":
        assert torch.equal(a, d)  # T = 1: beta_bar_1 = 0, BlurDM ignores the noise; the encoder draws none
    else:
        assert not torch.allclose(a, d)
    # explicit noise equals the same draw through the generator
    noise = prior.sample_noise(2, torch.Generator().manual_seed(2023))
    with torch.no_grad():
        assert torch.equal(prior(blur, noise=noise), a)


def test_sampler_runs_process_steps_with_estimators():
    """The generic sampler is exactly start + T reverse steps with the estimator outputs."""
    prior = build_prior("blurdm", T=3).eval()
    blur = torch.rand(1, 3, 8, 8)
    noise = torch.randn(1, prior.dim)
    with torch.no_grad():
        c = prior.condition(blur)
        z = c + prior.process.beta_bar[3] * noise
        for t in (3, 2, 1):
            tt = torch.full((1, 1), t / 3)
            e_hat = prior.estimators["residual"](c, tt, z)
            eps_hat = prior.estimators["noise"](c, tt, z)
            z = (prior.process.alphas[t] * z - e_hat) / prior.process.alphas[t - 1] - prior.process.k[t] * eps_hat
        torch.testing.assert_close(prior(blur, noise=noise), z)


def test_trace_records_condition_noise_every_step_and_z0():
    """``trace`` records what the chain computed: the same numbers the sampler used, steps t = T..1."""
    prior = build_prior("blurdm", T=3).eval()
    with torch.no_grad():  # non-identity latent statistics: z0 is recorded before them
        prior.latent_mean.fill_(0.5)
        prior.latent_std.fill_(2.0)
    blur = torch.rand(1, 3, 8, 8)
    noise = torch.randn(1, prior.dim)
    trace = ChainTrace()
    with torch.no_grad():
        out = prior(blur, noise=noise, trace=trace)
        c = prior.condition(blur)
        z = c + prior.process.beta_bar[3] * noise
        assert [t for t, _ in trace.steps] == [3, 2, 1]
        for t, recorded in trace.steps:
            expected = prior.predict(t, z, c)
            assert recorded.keys() == expected.keys()
            for name in expected:
                torch.testing.assert_close(recorded[name], expected[name], rtol=0, atol=0)
            z = prior.process.reverse_step(t, z, expected, c)
    torch.testing.assert_close(trace.condition, c, rtol=0, atol=0)
    assert torch.equal(trace.noise, noise)
    torch.testing.assert_close(trace.z0, z, rtol=0, atol=0)
    torch.testing.assert_close(out, 0.5 + 2.0 * z)


def test_noise_shape_checked():
    prior = build_prior("rddm", T=2)
    with pytest.raises(ValueError, match=r"noise must have shape \(1, 32\)"):
        prior(torch.rand(1, 3, 8, 8), noise=torch.randn(1, 128))


@pytest.mark.parametrize("name", PRIORS)
def test_gradients_reach_encoder_and_every_estimator(name):  # the encoder control has no estimators
    prior = build_prior(name, T=3, scale="tiny")
    z0 = prior(torch.rand(2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    z0.square().mean().backward()
    groups = {"encoder": prior.encoder, **{f"estimator {k}": v for k, v in prior.estimators.items()}}
    assert set(prior.estimators) == set(prior.process.estimator_names)
    for label, module in groups.items():
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), label
        assert sum(g.abs().sum().item() for g in grads) > 0, label


def test_estimator_shape_and_paper_size():
    est = Estimator()
    assert count_params(est) == 513 * 256 + 256 + 5 * (256 * 256 + 256)  # ~0.46 M
    out = est(torch.randn(4, 256), torch.rand(4, 1), torch.randn(4, 256))
    assert out.shape == (4, 256)


def test_blurdm_paper_module_cost_matches_spec():
    prior = build_prior("blurdm", T=5, scale="paper")
    assert isinstance(prior, DiffusionPrior)
    params = count_params(prior)
    assert abs(params - 2.07e6) / 2.07e6 < 0.02, params
    costs = count_costs(prior, torch.zeros(1, 3, 256, 256))  # meta device: no arithmetic
    assert abs(costs["macs"] - 4.16e9) / 4.16e9 < 0.05, costs["macs"]


def test_registered_priors_are_what_config_accepts_and_the_builder_builds():
    from models.diffusion import PROCESSES
    from pipelines.core.config import DIFFUSION_PRIORS

    assert set(PRIORS) == {"blurdm", "rddm", "ddpm", "encoder"}
    assert tuple(PROCESSES) == PRIORS == DIFFUSION_PRIORS


def test_build_prior_errors():
    with pytest.raises(ValueError, match="allowed: encoder, ddpm, rddm, blurdm"):
        build_prior("oracle")
    for bad_T in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            build_prior("blurdm", T=bad_T)
    with pytest.raises(ValueError, match="allowed: paper, tiny"):
        build_prior("ddpm", scale="big")
    with pytest.raises(ValueError, match="step t must be in 0..3"):
        BlurDMProcess(3).reverse_step(4, torch.zeros(1, 256), {}, torch.zeros(1, 256))


@pytest.mark.parametrize("name", PRIORS)
def test_latent_stats_standardise_the_chain(name):
    """``set_latent_stats``: the prior becomes ``mean + std * z_0`` of the chain it ran before (identity by
    default), per dimension; model files without the statistics load as the identity."""
    prior = build_prior(name, T=3, scale="tiny").eval()
    assert torch.equal(prior.latent_mean, torch.zeros(32)) and torch.equal(prior.latent_std, torch.ones(32))
    blur, noise = torch.rand(2, 3, 16, 16), torch.randn(2, 32)
    with torch.no_grad():
        raw = prior(blur, noise=noise)
    samples = torch.randn(500, 32, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 2, 32) + 3.0
    prior.set_latent_stats(samples)
    torch.testing.assert_close(prior.latent_mean, samples.mean(0))
    torch.testing.assert_close(prior.latent_std, samples.std(0))
    with torch.no_grad():
        torch.testing.assert_close(prior(blur, noise=noise), samples.mean(0) + samples.std(0) * raw)
    with pytest.raises(ValueError, match=r"\(N >= 2, 32\)"):
        prior.set_latent_stats(torch.randn(5, 16))
    old = {k: v for k, v in prior.state_dict().items() if not k.startswith("latent_")}  # an older model file
    prior.load_state_dict(old, strict=True)
    assert torch.equal(prior.latent_mean, torch.zeros(32)) and torch.equal(prior.latent_std, torch.ones(32))
    with torch.no_grad():
        torch.testing.assert_close(prior(blur, noise=noise), raw)
