"""Diffusion priors over the 256-d latent: one process interface (:mod:`.base`) and three processes."""
from models.diffusion.base import DiffusionPrior, DiffusionProcess, Estimator
from models.diffusion.blurdm import BlurDMProcess
from models.diffusion.ddpm import DDPMProcess
from models.diffusion.rddm import RDDMProcess

PROCESSES: dict[str, type[DiffusionProcess]] = {
    "blurdm": BlurDMProcess,
    "rddm": RDDMProcess,
    "ddpm": DDPMProcess,
}

__all__ = ["PROCESSES", "BlurDMProcess", "DDPMProcess", "DiffusionPrior", "DiffusionProcess", "Estimator", "RDDMProcess"]
