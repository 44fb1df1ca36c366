"""Diffusion priors over the prior latent: one process interface (:mod:`.base`), three diffusion
processes and the ``encoder`` control (Blur Encoder only, no diffusion)."""
from models.diffusion.base import DiffusionPrior, DiffusionProcess, Estimator
from models.diffusion.blurdm import BlurDMProcess
from models.diffusion.ddpm import DDPMProcess
from models.diffusion.encoder_only import EncoderOnlyProcess
from models.diffusion.rddm import RDDMProcess

PROCESSES: dict[str, type[DiffusionProcess]] = {
    "blurdm": BlurDMProcess,
    "rddm": RDDMProcess,
    "ddpm": DDPMProcess,
    "encoder": EncoderOnlyProcess,
}

__all__ = ["PROCESSES", "BlurDMProcess", "DDPMProcess", "DiffusionPrior", "DiffusionProcess", "EncoderOnlyProcess", "Estimator", "RDDMProcess"]
