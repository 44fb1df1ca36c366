"""Every name the suite knows, registered once, with the label a reader sees (no torch import).

The params schema (``pipelines.core.config`` ``Literal`` types), the builders (``models.backbones``,
``models.diffusion``), the trainer, the tables and the report all read these. Adding a backbone or a
prior means one line here plus its implementation.

Each registry is a dict ``name -> (label, ...)`` in the order tables and the report show them.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

SCALES = ("paper", "tiny")  # model sizes: the paper's configs and the CPU-sized ones
PROFILE_NAMES = ("smoke", "cpu", "paper")  # params.yaml profiles
MAX_T = 1000  # diffusion steps: a larger T is a typo (and would allocate its schedules before failing)
# The studies: one MLflow experiment each, one folder under runs/ each (the ablations' evaluation is one stage).
STUDIES = ("table1", "ablation-prior", "ablation-stages", "t-sweep")

class Registered(NamedTuple):
    label: str
    impl: str | None  # "package.module:Class" that builds it (None: nothing to build)


def load(impl: str):
    """The class behind ``"package.module:Class"`` (imported on first use, so one broken backbone
    cannot break the others)."""
    module_name, _, class_name = impl.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


BACKBONES: dict[str, Registered] = {
    "mimo_unet": Registered("MIMO-UNet", "models.backbones.mimo_unet:MIMOUNet"),
    "mimo_unet_plus": Registered("MIMO-UNet+", "models.backbones.mimo_unet:MIMOUNetPlus"),
    "stripformer": Registered("Stripformer", "models.backbones.stripformer:Stripformer"),
    "fftformer": Registered("FFTformer", "models.backbones.fftformer:FFTformer"),
    "loformer": Registered("LoFormer", "models.backbones.loformer:LoFormerS"),
}

# Priors injected into a backbone: ``none`` (the baseline, no fusion at all), the diffusion processes
# behind the one ``DiffusionPrior`` interface (models/diffusion; ``encoder`` is the control: the Blur
# Encoder alone, no diffusion) and ``oracle`` (the encoder of the sharp image: an upper bound, not a
# method).
PRIORS: dict[str, Registered] = {
    "none": Registered("none (baseline)", None),
    "encoder": Registered("encoder only (no diffusion)", "models.diffusion.encoder_only:EncoderOnlyProcess"),
    "ddpm": Registered("DDPM", "models.diffusion.ddpm:DDPMProcess"),
    "rddm": Registered("RDDM", "models.diffusion.rddm:RDDMProcess"),
    "blurdm": Registered("BlurDM", "models.diffusion.blurdm:BlurDMProcess"),
    "oracle": Registered("oracle (sharp prior)", None),
}
DIFFUSION_PRIORS = tuple(name for name, prior in PRIORS.items() if prior.impl)  # built by models.diffusion

# Training stages: the three of the paper and the baseline (the backbone alone, no prior).
STAGES: dict[str, str] = {
    "stage1": "stage 1 (joint pre-training with the sharp prior)",
    "stage2": "stage 2 (prior training)",
    "stage3": "stage 3 (joint fine-tuning)",
    "baseline": "baseline (no prior)",
}
# Stage combinations of the ablation (paper Table 4): name -> (label, stages that are trained). A training
# job's ``variant`` (``--variant``, ``metrics.json``) is one of them. ``s1_s2`` trains stage 3 for 0 steps: the
# stage-1 backbone with the stage-2 prior.


class StageCombo(NamedTuple):
    label: str
    stages: tuple[str, ...]


STAGE_COMBOS: dict[str, StageCombo] = {
    "s3_only": StageCombo("stage 3 only", ("stage3",)),
    "s1_s2": StageCombo("stages 1+2", ("stage1", "stage2", "stage3")),
    "s1_s3": StageCombo("stages 1+3", ("stage1", "stage3")),
    "s1_s2_s3": StageCombo("stages 1+2+3", ("stage1", "stage2", "stage3")),
}
DEFAULT_STAGE_COMBO = "s1_s2_s3"  # the full method: what Table 1 trains


class Metric(NamedTuple):
    label: str
    higher_is_better: bool
    note: str  # how it is computed (the report prints it under each table)
    value_digits: int
    gain_digits: int


# Image-quality metrics, in the column order of every scores file and table.
METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR (dB)", True,
                   "RGB uint8, no border crop, peak 255 (BasicSR formula), capped at 100 dB (identical images)", 2, 2),
    "ssim": Metric("SSIM (per-channel, BasicSR)", True,
                   "BasicSR per-channel Gaussian SSIM (11x11, sigma 1.5), mean over channels", 3, 4),
    "ssim3d": Metric("SSIM (3-D, as the paper)", True,
                     "the authors' 3-D Gaussian SSIM (11x11x11 over H, W and channels, replicate padding)", 3, 4),
    "lpips": Metric("LPIPS (lower is better)", False,
                    "LPIPS AlexNet v0.1 (pyiqa), both images resized to 256x256, inputs in [-1, 1]", 4, 4),
}
METRIC_NAMES = tuple(METRICS)

# The two models a Table-1 row compares, and every backbone's cost is counted for: the backbone alone (the
# baseline) and with the BlurDM prior.
SIDES = ("baseline", "blurdm")

# Test sets the tables and the report can name (fetch / synth write them under data/).
DATASETS: dict[str, str] = {
    "synthetic": "synthetic (embedded)",
    "gopro_real": "real GoPro crops (dev pairs)",
    "gopro": "GoPro",
    "hide": "HIDE",
    "realblur_j": "RealBlur-J",
    "realblur_r": "RealBlur-R",
}


# How a test set is scored. A RealBlur test set (named ``realblur*``) is scored both ways
# (pipelines/evaluation/alignment.py), each a Table-1 column of its own; every other test set has one plain scoring.
SCORINGS: dict[str, str] = {
    "authors": "authors' scoring (no alignment)",
    "official": "official RealBlur scoring (ECC-aligned, masked)",
}
REALBLUR_PREFIX = "realblur"


def scorings(dataset: str) -> tuple[str | None, ...]:
    """The scorings of test set ``dataset``: both RealBlur ones for a RealBlur set, else ``(None,)`` (plain)."""
    return tuple(SCORINGS) if dataset.lower().startswith(REALBLUR_PREFIX) else (None,)


def column_key(dataset: str, scoring: str | None) -> str:
    """A Table-1 column (a test set under one scoring): ``gopro``, ``realblur_j-official``; also the name of
    its evaluation folders."""
    return dataset if scoring is None else f"{dataset}-{scoring}"


def split_column(column: str) -> tuple[str, str | None]:
    """``(test set, scoring)`` of a column key (the inverse of :func:`column_key`)."""
    for scoring in SCORINGS:
        dataset = column.removesuffix(f"-{scoring}")
        if dataset != column and scoring in scorings(dataset):
            return dataset, scoring
    return column, None


def label(name: str) -> str:
    """The reader's label of any registered name (the name itself when it is not registered)."""
    for registry in (BACKBONES, PRIORS, STAGE_COMBOS, METRICS):
        if name in registry:
            return registry[name].label
    return DATASETS.get(name, SCORINGS.get(name, name))
