"""One interface for every diffusion prior: a process (schedule + one reverse step) and one sampler.

* :class:`DiffusionProcess` owns ``T`` and its schedule (float64, held as Python floats: T <= ~10, so
  every step coefficient is a scalar and the process needs no device handling). It declares the
  estimators it needs (``estimator_names``), where the reverse chain starts (``start``) and how one
  deterministic step goes (``reverse_step``). ``forward_marginal`` and ``true_predictions`` give the
  exact forward process and the estimator outputs that make ``reverse_step`` invert it, for tests
  and training-free checks.
* :class:`DiffusionPrior` owns the Blur Encoder ``BE``, one :class:`Estimator` per estimator name and
  the process, and runs the whole reverse chain in ``forward``. The chain runs in a STANDARDISED latent
  space: the returned prior is ``latent_mean + latent_std * z_0`` (buffers, identity by default;
  :meth:`DiffusionPrior.set_latent_stats`), the per-dimension latent normalisation of latent diffusion
  models (Rombach et al. 2022's scale factor, per channel as in Karras et al. 2024's EDM2). The
  processes assume latents of unit scale (BlurDM adds noise of std 0.18 at T = 5); a small
  stage-1 Sharp Encoder can give latents of std ~0.02, which that noise buries. The chain is differentiable end to
  end (stage 2 trains BE and the estimators through it). Randomness comes only from ``noise`` or the
  explicit ``generator``, so evaluation can repeat a run or report the spread over seeds.

Time convention: steps ``t = T .. 1``; the estimators see ``t / T``; ``reverse_step(t, z_t)`` returns
``z_{t-1}``, and ``z_0`` is the prior. ``forward(..., trace=ChainTrace())`` records the condition,
the start noise, every step's estimator outputs and ``z_0`` (:class:`ChainTrace`; the conformance
tests compare them with the official chain's).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn

from models.encoder import PRIOR_DIM, LatentEncoder, blur_encoder
from models.names import MAX_T

NEGATIVE_SLOPE = 0.1
# Number of Linear layers (each followed by LeakyReLU(0.1)) of an estimator, and their hidden width
# (paper: 6 layers of 256, spec; tiny: 3 layers of 32 on a 32-d latent, see models.encoder.PRIOR_DIMS).
ESTIMATOR_DEPTH = {"paper": 6, "tiny": 3}
ESTIMATOR_HIDDEN = {"paper": 256, "tiny": 32}


def check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= MAX_T:
        raise ValueError(f"T (number of diffusion steps) must be an integer >= 1 and <= {MAX_T}, got {T!r}")
    return T


class Estimator(nn.Module):
    """MLP on ``concat(c [256], t/T [1], z_t [256])`` (513 inputs) -> 256.

    ``depth`` Linear layers of width 256, each followed by LeakyReLU(0.1), no skips (paper: 6 layers,
    460,544 parameters). The LAST layer is also followed by LeakyReLU, as the spec says the authors
    do, although the targets (residual, noise) can be negative: negative outputs are reachable but
    their pre-activation must be 10x larger.
    """

    def __init__(self, depth: int = ESTIMATOR_DEPTH["paper"], dim: int = PRIOR_DIM, hidden: int = PRIOR_DIM):
        super().__init__()
        if depth < 1:
            raise ValueError(f"Estimator depth must be >= 1, got {depth}")
        sizes = [2 * dim + 1] + [hidden] * (depth - 1) + [dim]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.net = nn.Sequential(*layers)

    def forward(self, c: torch.Tensor, t_frac: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([c, t_frac, z_t], dim=1))


class DiffusionProcess(ABC):
    """A diffusion over 256-d latents with ``T`` deterministic reverse steps, conditioned on ``c``."""

    name: str = ""
    estimator_names: tuple[str, ...] = ()

    def __init__(self, T: int):
        self.T = check_T(T)

    @abstractmethod
    def start(self, c: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``z_T`` from the condition ``c`` and one standard-normal draw ``noise`` (same shape)."""

    @abstractmethod
    def reverse_step(self, t: int, z_t: torch.Tensor, predictions: dict[str, torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        """``z_{t-1}`` from ``z_t`` and the estimator outputs (keys: ``estimator_names``)."""

    @abstractmethod
    def forward_marginal(self, z0: torch.Tensor, c: torch.Tensor, t: int, noise: torch.Tensor, **kwargs) -> torch.Tensor:
        """``z_t`` of the forward process from the clean latent ``z0``, with ONE noise draw for all t."""

    @abstractmethod
    def true_predictions(self, z0: torch.Tensor, c: torch.Tensor, t: int, noise: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """The estimator outputs at step ``t`` for which ``reverse_step(t, forward_marginal(t))`` equals
        ``forward_marginal(t - 1)`` (same ``kwargs``)."""

    @abstractmethod
    def schedule(self) -> dict[str, list[float]]:
        """The schedule's named coefficient lists (for logs and reports)."""

    def _check_t(self, t: int) -> int:
        if not 0 <= t <= self.T:
            raise ValueError(f"step t must be in 0..{self.T} for {self.name} with T={self.T}, got {t}")
        return t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(T={self.T})"


@dataclass
class ChainTrace:
    """What one run of :meth:`DiffusionPrior.forward` computed (filled in when passed as ``trace``)."""

    condition: torch.Tensor | None = None  # c = BE(blur, blur)
    noise: torch.Tensor | None = None  # the start noise
    steps: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)  # (t, estimator outputs), t = T..1
    z0: torch.Tensor | None = None  # the end of the chain, before the latent statistics


class DiffusionPrior(nn.Module):
    """``forward(blur) -> prior (B, 256)``: condition ``c = BE(blur, blur)``, start ``z_T``, run ``T`` steps,
    then ``latent_mean + latent_std * z_0`` (the identity unless :meth:`set_latent_stats` was called)."""

    def __init__(self, process: DiffusionProcess, scale: str = "tiny", encoder: LatentEncoder | None = None):
        super().__init__()
        if scale not in ESTIMATOR_DEPTH:
            raise ValueError(f"unknown prior scale {scale!r}; allowed: {', '.join(ESTIMATOR_DEPTH)}")
        self.process = process
        self.scale = scale
        self.encoder = encoder if encoder is not None else blur_encoder(scale)
        self.dim = self.encoder.out_dim
        self.estimators = nn.ModuleDict({name: Estimator(ESTIMATOR_DEPTH[scale], dim=self.dim, hidden=ESTIMATOR_HIDDEN[scale])
                                         for name in process.estimator_names})
        self.register_buffer("latent_mean", torch.zeros(self.dim))
        self.register_buffer("latent_std", torch.ones(self.dim))

    @torch.no_grad()
    def set_latent_stats(self, latents: torch.Tensor, min_std: float = 1e-6) -> None:
        """Standardise the chain to ``latents`` (N, dim), samples of the target ``SE(blur, sharp)``: the
        prior becomes ``mean + std * z_0`` with their per-dimension mean and std (floored at ``min_std``)."""
        if latents.ndim != 2 or latents.shape[1] != self.dim or latents.shape[0] < 2:
            raise ValueError(f"latent statistics need (N >= 2, {self.dim}) samples, got {tuple(latents.shape)}")
        latents = latents.detach().double()
        self.latent_mean.copy_(latents.mean(dim=0))
        self.latent_std.copy_(latents.std(dim=0).clamp_min(min_std))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # model files written before the latent statistics existed: the identity (what they computed)
        for name, value in (("latent_mean", 0.0), ("latent_std", 1.0)):
            state_dict.setdefault(prefix + name, torch.full((self.dim,), value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def T(self) -> int:
        return self.process.T

    @property
    def name(self) -> str:
        return self.process.name

    def condition(self, blur: torch.Tensor) -> torch.Tensor:
        """``c = BE(blur, blur)``, shape (B, 256)."""
        return self.encoder(blur, blur)

    def sample_noise(self, batch: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Standard-normal (batch, 256) drawn on the generator's device (CPU draws are identical across
        machines), then moved to ``device``."""
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(batch, self.dim, generator=generator, device=gen_device, dtype=dtype)
        return noise.to(device) if device is not None else noise

    def predict(self, t: int, z_t: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        t_frac = torch.full((z_t.shape[0], 1), t / self.T, device=z_t.device, dtype=z_t.dtype)
        return {name: est(c, t_frac, z_t) for name, est in self.estimators.items()}

    def forward(self, blur: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, trace: ChainTrace | None = None) -> torch.Tensor:
        c = self.condition(blur)
        if noise is None:
            noise = self.sample_noise(c.shape[0], generator, device=c.device, dtype=c.dtype)
        elif noise.shape != c.shape:
            raise ValueError(f"noise must have shape {tuple(c.shape)} (batch, {self.dim}), got {tuple(noise.shape)}")
        else:
            noise = noise.to(device=c.device, dtype=c.dtype)
        z = self.process.start(c, noise)
        for t in range(self.T, 0, -1):
            predictions = self.predict(t, z, c)
            if trace is not None:
                trace.steps.append((t, predictions))
            z = self.process.reverse_step(t, z, predictions, c)
        if trace is not None:
            trace.condition, trace.noise, trace.z0 = c, noise, z
        return self.latent_mean.to(z.dtype) + self.latent_std.to(z.dtype) * z

    def extra_repr(self) -> str:
        return f"process={self.process!r}, scale={self.scale!r}"
