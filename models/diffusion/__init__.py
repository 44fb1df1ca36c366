"""Diffusion priors over the prior latent: one process interface (:mod:`.base`), three diffusion
processes and the ``encoder`` control (Blur Encoder only, no diffusion)."""
from models.diffusion.base import ChainTrace, DiffusionPrior, DiffusionProcess, Estimator
from models.diffusion.blurdm import BlurDMProcess
from models.diffusion.ddpm import DDPMProcess
from models.diffusion.encoder_only import EncoderOnlyProcess
from models.diffusion.rddm import RDDMProcess
from models.names import DIFFUSION_PRIORS, PRIORS, load

# name -> process class, for every diffusion prior registered in models.names.PRIORS
PROCESSES: dict[str, type[DiffusionProcess]] = {name: load(PRIORS[name].impl) for name in DIFFUSION_PRIORS}

__all__ = ["PROCESSES", "BlurDMProcess", "ChainTrace", "DDPMProcess", "DiffusionPrior", "DiffusionProcess", "EncoderOnlyProcess", "Estimator", "RDDMProcess"]
