"""The ONE place that reads ``params.yaml``.

``params.yaml`` holds the base configuration (the default ``cpu`` profile), a ``profile`` key naming
the active profile and a ``profiles`` block of named overlays (``smoke``, ``cpu``, ``paper``) that
are deep-merged onto the base (dicts merge, lists and scalars replace). The result is validated by
the pydantic schema below *before any work starts*: an unknown key, backbone, prior, profile or
stage, a negative step count, ``T = 0`` ... is rejected with a message naming the key and the
allowed values. Booleans and integers are strict (``true`` is not a step count, ``1`` is not a
switch), a key given twice in the YAML is an error (not "the last one wins"), seed lists may not be
empty and ``T`` is at most :data:`MAX_T`. Every float is finite, names used in paths are safe identifiers and
seeds lie in ``0 .. 2**32-1``: the rules every section follows are :mod:`pipelines.core.param_rules`.

Usage::

    from pipelines.core.config import load_params
    params = load_params()                 # params.yaml of the repo (or $BLURDM_PARAMS), active profile
    params = load_params(profile="smoke")  # another profile
    params.synth.crop_size
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from models.names import (
    BACKBONES,
    DIFFUSION_PRIORS,
    MAX_T,
    PRIORS,
    PROFILE_NAMES,
    SCALES,
    STAGE_COMBOS,
    STAGES,
)
from pipelines.core.composition import CONF_DIR, compose  # noqa: F401 (re-exported: the one reader)
from pipelines.core.errors import ParamsError
from pipelines.core.limits import ARCHIVE_CAPS, DEFAULT_MAX_PIXELS, set_max_pixels
from pipelines.core.param_rules import FileName, Name, Seed, Strict, shown
from pipelines.core.params_view import recording_view

# Literal types of the params schema, from the one registry (models/names.py)
BACKBONE_NAMES = tuple(BACKBONES)
PRIOR_NAMES = tuple(PRIORS)
STAGE_NAMES = tuple(STAGES)
STAGE_COMBO_NAMES = tuple(STAGE_COMBOS)
# Natural colour photographs that ship inside installed packages (all load offline, no download):
# name -> (package, file inside the package folder). The packages are pinned in constraints.txt.
# Left out on purpose: mahotas' lena.jpg (its subject asked for it to be retired), scikit-image's
# non-photographs (microscopy, deep space, retina fundus, colour wheel) and motorcycle_right (a stereo
# twin of motorcycle_left: the same scene on both sides of a split would leak).
PHOTO_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "barbara": ("sporco", "data/barbara.png"),
    "kodim23": ("sporco", "data/kodim23.png"),
    "monarch": ("sporco", "data/monarch.png"),
    "sail": ("sporco", "data/sail.png"),
    "tulips": ("sporco", "data/tulips.png"),
    "department_store": ("mahotas", "demos/data/DepartmentStore.jpg"),
    "luispedro": ("mahotas", "demos/data/luispedro.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
SYNTH_SOURCES = tuple(PHOTO_SOURCES)


def repo_root() -> Path:
    """The repository root: $BLURDM_ROOT, else the nearest parent of CWD with params.yaml, else the
    folder above this package."""
    env = os.environ.get("BLURDM_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "pipelines").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """Where state shared by every run lives (the MLflow store): :func:`repo_root`, except inside a
    ``dvc exp run --temp`` / queue workspace (``<repo>/.dvc/tmp/exps/<tmp>/``), where it is the repository
    that holds that workspace, so no run is lost when DVC deletes the temporary copy."""
    root = repo_root()
    parts = root.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


class NoiseConfig(Strict):
    shot: float = Field(5e-4, ge=0)  # Poisson: x -> Poisson(x / shot) * shot, variance shot * x (linear light)
    read: float = Field(5e-4, ge=0)  # Gaussian read noise std (linear light)


SamplingRule = Literal["uniform", "log_uniform"]


class BlurLengthSampling(Strict):
    """How each split draws a trajectory's length in ``synth.blur_length``: uniform, or log-uniform (as
    many samples between 0.5 and 1 px as between 12 and 24: the mild blur a model must learn to leave alone)."""
    train: SamplingRule = "uniform"
    test: SamplingRule = "uniform"


class DeadLeavesConfig(Strict):
    """Procedural dead-leaves scenes (occluding shapes, power-law sizes) mixed into the TRAINING split."""
    fraction: float = Field(0.0, ge=0, lt=1)  # share of training samples cut from a dead-leaves scene
    scenes: int = Field(16, ge=1)  # distinct scenes (each a pure function of synth.seed and its index)
    size: int = Field(512, ge=64)  # scene side in px
    shapes: int = Field(10000, ge=1)  # shapes dropped per scene (enough to cover it)
    radius: tuple[float, float] = (3.0, 96.0)  # min, max radius in px (density ~ r^-3)


class SynthConfig(Strict):
    out_dir: str = "data/synthetic"
    train_sources: list[Literal[SYNTH_SOURCES]] = Field(min_length=1)
    test_sources: list[Literal[SYNTH_SOURCES]] = Field(min_length=1)
    n_train: int = Field(ge=1)
    n_test: int = Field(ge=1)
    crop_size: int = Field(ge=16)
    subframes: int = Field(ge=2)
    blur_length: tuple[float, float]
    blur_length_sampling: BlurLengthSampling = BlurLengthSampling()
    max_rotation_deg: float = Field(ge=0, le=360)
    kernel_fraction: float = Field(ge=0, le=1)
    noise: NoiseConfig = NoiseConfig()
    dead_leaves: DeadLeavesConfig = DeadLeavesConfig()
    save_exposures: bool = False
    seed: Seed = 2025

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.blur_length
        if lo < 0 or hi < lo:
            raise ValueError(f"synth.blur_length must be [min, max] with 0 <= min <= max, got {list(self.blur_length)}")
        log_splits = sorted(k for k, v in self.blur_length_sampling.model_dump().items() if v == "log_uniform")
        if log_splits and lo <= 0:
            raise ValueError(f"synth.blur_length_sampling: log_uniform ({', '.join(log_splits)}) needs "
                             f"synth.blur_length min > 0, got {list(self.blur_length)}")
        r_lo, r_hi = self.dead_leaves.radius
        if not 0 < r_lo <= r_hi:
            raise ValueError(f"synth.dead_leaves.radius must be [min, max] with 0 < min <= max, got {[r_lo, r_hi]}")
        overlap = set(self.train_sources) & set(self.test_sources)
        if overlap:
            raise ValueError(f"synth.train_sources and synth.test_sources must be disjoint; both contain {sorted(overlap)}")
        return self


class DataConfig(Strict):
    # test sets: name -> folder. Which models are scored on which is said by ``train_sets``
    test: dict[Name, str] = {"synthetic": "data/synthetic/test"}
    crop_size: int = Field(64, ge=8)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    num_workers: int = Field(0, ge=0)
    cache_mb: int = Field(0, ge=0)  # decoded training / validation pairs kept in memory per loading process
    augment: bool = True
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)  # every image reader refuses larger images (header check)


class TrainSetConfig(Strict):
    """One training set of Table 1: its models train on ``train`` and are scored on the test sets ``test``."""
    train: str  # folder of the training pairs (relative to the repository root)
    test: list[str] = Field(min_length=1)  # names of data.test entries

    @field_validator("test")
    @classmethod
    def _no_repeat(cls, v):
        repeated = sorted({name for name in v if v.count(name) > 1})
        if repeated:
            raise ValueError(f"test sets listed twice: {repeated}")
        return v


class ModelsConfig(Strict):
    scale: Literal[SCALES] = "tiny"
    backbones: list[Literal[BACKBONE_NAMES]] = list(BACKBONE_NAMES[:1])
    ablation_backbone: Literal[BACKBONE_NAMES] = "mimo_unet"
    # start every freshly built backbone from the identity (output residual layers zeroed);
    # see README "Method notes" for the measurement behind the default
    zero_init_residual: bool = False
    # stage 2 standardises every diffusion prior's latent space to the training set's SE latents (per
    # dimension; models/diffusion/base.py): the cpu study's small SE gives latents ~8x smaller than BlurDM's
    # noise (README "Method notes"). The paper profile turns it off: the authors do not standardise.
    standardize_latent: bool = False


class PriorConfig(Strict):
    name: Literal[DIFFUSION_PRIORS] = "blurdm"
    T: int = Field(5, ge=1, le=MAX_T)


class StepsConfig(Strict):
    stage1: int = Field(ge=1)
    stage2: int = Field(ge=1)
    stage3: int = Field(ge=1)


class TrainConfig(Strict):
    seeds: list[Seed] = Field([0], min_length=1)
    batch_size: int = Field(4, ge=1)
    steps: StepsConfig
    lr: float = Field(1e-4, gt=0)
    stage2_lr: float | None = Field(None, gt=0)  # stage 2 trains the prior alone (latent loss); null = lr
    # stage 2 validates and saves an exponential moving average of the weights (torch AveragedModel); null = off
    stage2_ema_decay: float | None = Field(None, gt=0, lt=1)
    lr_min: float = Field(1e-6, ge=0)
    charbonnier_eps: float = Field(1e-3, gt=0)
    fft_loss_weight: float = Field(0.1, ge=0)
    checkpoint_every: int = Field(50, ge=1)
    val_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    # 0 = the cores this process may use, shared by parallel jobs (pipelines/core/threads.py)
    threads: int = Field(0, ge=0, le=1024)
    channels_last: bool = True
    gpus: int = Field(0, ge=0)
    # paper scale (README "Paper scale on a GPU"); the defaults keep the CPU study exactly as it was
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast, fp32 master weights, losses in fp32
    activation_checkpointing: bool = False  # recompute each backbone block in the backward pass
    micro_batch: int | None = Field(None, ge=1)  # per-process micro-batch; null = batch_size / processes
    crop_size: int | None = Field(None, ge=8)  # per-backbone crop (backbone_train); null = data.crop_size
    nodes: int = Field(1, ge=1)  # machines (torchrun --nnodes); env BLURDM_NODES / SLURM_NNODES win
    node_rank: int = Field(0, ge=0)  # this machine's rank; env BLURDM_NODE_RANK / SLURM_NODEID win
    rdzv_endpoint: str | None = None  # host:port of node 0; env BLURDM_RDZV_ENDPOINT / MASTER_ADDR win
    rdzv_timeout: int = Field(600, ge=1)  # seconds to wait for every node to join

    def lr_of(self, stage: str) -> float:
        """Adam's starting learning rate for ``stage`` (then cosine to ``lr_min``)."""
        return self.stage2_lr if stage == "stage2" and self.stage2_lr is not None else self.lr

    def ema_decay_of(self, stage: str) -> float | None:
        """The decay of the weights' moving average that ``stage`` validates and saves; None: the raw weights."""
        return self.stage2_ema_decay if stage == "stage2" else None

    @model_validator(mode="after")
    def _check_nodes(self):
        if self.node_rank >= self.nodes:
            raise ValueError(f"train.node_rank={self.node_rank} must be < train.nodes={self.nodes}")
        return self


class AblationConfig(Strict):
    train_set: str | None = None  # the training set of every ablation (None: the first of train_sets)
    # The ablation backbone's own runs on train_set (stages 1-3 and the baseline, every seed), which every ablation
    # builds on. [] when the ablation backbone is a Table-1 backbone: its Table-1 runs are reused (cpu, smoke).
    # [models.ablation_backbone] when it is not (paper: MIMO-UNet): the ablation_base stage trains them, in the
    # Table-1 layout. A list because it is what dvc.yaml's foreach iterates (checked against the backbones).
    extra_base: list[Literal[BACKBONE_NAMES]] = []
    # the test sets the ablation models are scored on: None = every test set of train_set (cpu, smoke); the
    # paper profile: [gopro], as the paper's ablation tables (a subset of train_sets.<train_set>.test)
    test: list[str] | None = None
    priors: list[Literal[DIFFUSION_PRIORS]] = ["ddpm", "rddm"]
    stages: list[Literal[STAGE_COMBO_NAMES]] = ["s3_only", "s1_s2", "s1_s3"]
    t_sweep: list[int] = [1, 3, 5, 8]

    @field_validator("t_sweep")
    @classmethod
    def _t_positive(cls, v):
        bad = [t for t in v if not 1 <= t <= MAX_T]
        if bad:
            raise ValueError(f"every T must be in 1..{MAX_T}, got {bad}")
        return v


class BootstrapConfig(Strict):
    resamples: int = Field(10000, ge=100, le=1_000_000)
    seed: Seed = 0


class EvaluateConfig(Strict):
    eval_seeds: list[Seed] = Field([2023], min_length=1)
    bootstrap: BootstrapConfig = BootstrapConfig()
    lpips: bool = True
    save_images: bool = False
    max_images: int | None = Field(None, ge=1)
    crop_images: int = Field(4, ge=0)  # fixed centre crops (blur/restored/sharp) of the first N images
    crop_size: int = Field(96, ge=8)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # the study's evaluations (auto: CUDA when present)
    fast: bool = True  # CUDA graphs at a fixed shape on CUDA (models/fast_inference.py); the CPU is always eager


class ControlsConfig(Strict):
    """The study's positive controls (pipelines/results/controls.py): the CI low end each must clear, in dB."""
    deblurring_min_gain_db: float = 0.0  # every compared model over the blurred input
    sensitivity_min_gain_db: float = 0.0  # the oracle prior over the no-prior baseline


class CostConfig(Strict):
    warmup: int = Field(3, ge=0)
    repeats: int = Field(10, ge=1)
    sizes: list[tuple[int, int]] = [(256, 256), (720, 1280)]
    # the backbones whose latency is timed (null: every backbone); the counts always cover every backbone
    latency_backbones: list[Literal[BACKBONE_NAMES]] | None = None


class DatasetSource(Strict):
    """One real dataset for ``blurdm-bench fetch``; its archive's sha256 lives in pipelines/checksums.yaml."""
    urls: list[str] = []  # tried in order: official first, then mirrors of the SAME archive (same sha256)
    url: str | None = None  # one URL (= urls: [url]); after validation always urls[0]. manual: the landing page
    homepage: str | None = None
    manual: bool = False  # url is a landing / Google Drive page: download by hand, pass --archive
    archive: FileName  # archive file name: the key in pipelines/checksums.yaml
    layout: Literal["gopro", "flat", "realblur"] = "gopro"
    out_dir: str
    lists: dict[Literal["train", "test"], FileName] = {}  # realblur: split -> list file inside the archive
    expected_pairs: dict[Literal["train", "test"], int] = {}  # checked after unpacking; {} = unchecked
    # caps (GB) of the download and of the unpacked archive; default: ARCHIVE_CAPS of pipelines/core/limits.py
    # for a known archive, else none of its own (fetch.max_unpacked_gb caps both)
    max_download_gb: float | None = Field(None, gt=0)
    max_unpacked_gb: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_url_list(self):
        download, unpacked = ARCHIVE_CAPS.get(self.archive, (None, None))
        self.max_download_gb = self.max_download_gb or download
        self.max_unpacked_gb = self.max_unpacked_gb or unpacked
        if self.url is not None and self.urls and self.url != self.urls[0]:
            raise ValueError("give either url (one URL) or urls (a list), not both")
        if not self.urls and self.url is None:
            raise ValueError("urls: at least one URL is needed")
        self.urls = self.urls or [self.url]
        self.url = self.urls[0]
        return self


class FetchConfig(Strict):
    datasets: dict[Name, DatasetSource] = {}
    active: list[str] = []
    max_unpacked_gb: float = Field(50.0, gt=0, le=1e6)  # any archive's uncompressed cap (zip bombs); datasets: their own
    checksums_file: str | None = None  # the archives' sha256 table; null = pipelines/checksums.yaml

    @model_validator(mode="after")
    def _known(self):
        unknown = [d for d in self.active if d not in self.datasets]
        if unknown:
            raise ValueError(f"fetch.active names unknown datasets {unknown}; allowed: {sorted(self.datasets)}")
        return self


class Params(Strict):
    profile: Literal[PROFILE_NAMES]
    seed: Seed = 0
    synth: SynthConfig
    data: DataConfig = DataConfig()
    # Table 1's training sets, name -> {train: folder, test: [data.test names]}; the names shape the DAG
    train_sets: dict[Name, TrainSetConfig] = Field(min_length=1)
    models: ModelsConfig = ModelsConfig()
    prior: PriorConfig = PriorConfig()
    train: TrainConfig
    ablations: AblationConfig = AblationConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    controls: ControlsConfig = ControlsConfig()
    cost: CostConfig = CostConfig()
    fetch: FetchConfig = FetchConfig()
    # per-backbone overrides of `train` (deep-merged); each is its own DVC params dependency, so
    # changing one backbone's schedule reruns only that backbone's stages
    backbone_train: dict[Literal[BACKBONE_NAMES], dict] = {}
    mlflow_tracking_uri: str | None = None

    @model_validator(mode="after")
    def _check_backbone_train(self):
        for name in self.backbone_train:
            try:
                self.for_backbone(name)
            except ValidationError as err:
                first = err.errors()[0]
                key = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"backbone_train.{name}.{key}: {first['msg']}") from None
        return self

    @model_validator(mode="after")
    def _check_train_sets(self):
        owner: dict[str, str] = {}
        for name, train_set in self.train_sets.items():
            if name in BACKBONES:  # runs/table1/<train_set>/<backbone>/: the two levels must not be confused
                raise ValueError(f"train_sets.{name}: a training set may not be named like a backbone")
            for test in train_set.test:
                if test not in self.data.test:
                    raise ValueError(f"train_sets.{name}.test: {test!r} is not a test set of this profile "
                                     f"(data.test: {', '.join(self.data.test) or 'none'})")
                if test in owner:  # one column per test set: which models fill it must be unambiguous
                    raise ValueError(f"train_sets.{name}.test: {test!r} is already listed under train_sets."
                                     f"{owner[test]}.test; a test set is scored by the models of one training set")
                owner[test] = name
        if self.ablations.train_set is None:
            self.ablations.train_set = next(iter(self.train_sets))
        elif self.ablations.train_set not in self.train_sets:
            raise ValueError(f"ablations.train_set: unknown training set {self.ablations.train_set!r}; "
                             f"allowed: {', '.join(self.train_sets)}")
        tests = self.train_sets[self.ablations.train_set].test
        if self.ablations.test is not None and (not self.ablations.test or set(self.ablations.test) - set(tests)):
            raise ValueError(f"ablations.test must name one or more test sets of train_sets.{self.ablations.train_set}"
                             f".test ({', '.join(tests)}), got {self.ablations.test}")
        backbone = self.models.ablation_backbone
        needed = [] if backbone in self.models.backbones else [backbone]
        if self.ablations.extra_base != needed:
            why = (f"{backbone} is a Table-1 backbone: the ablations reuse its Table-1 runs" if not needed else
                   f"{backbone} is not a Table-1 backbone (models.backbones): the ablation_base stage must train it")
            raise ValueError(f"ablations.extra_base must be {needed} ({why}), got {self.ablations.extra_base}")
        return self

    def for_backbone(self, name: str) -> "Params":
        """These params with ``backbone_train[name]`` merged into ``train``."""
        override = self.backbone_train.get(name)
        if not override:
            return self
        merged = TrainConfig.model_validate(deep_merge(self.train.model_dump(), override))
        return self.model_copy(update={"train": merged})

    def seeds_for(self, backbone: str) -> list[int]:
        """The training seeds of ``backbone`` (``train.seeds``, or its ``backbone_train`` override)."""
        override = self.backbone_train.get(backbone) or {}  # validated as a whole train block already
        return list(override["seeds"] if "seeds" in override else self.train.seeds)

    def resolve_path(self, path: str | os.PathLike) -> Path:
        """Paths in params are relative to the repository root."""
        p = Path(path)
        return p if p.is_absolute() else repo_root() / p


def deep_merge(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base``: dicts merge, other values replace, and ``null`` removes the key (its
    schema default then applies; e.g. a profile drops a test set of the base)."""
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def params_path(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("BLURDM_PARAMS")
    return Path(env) if env else repo_root() / "params.yaml"


# keys that older params files had, and where they went
MOVED_KEYS = {("data", "train"): "train_sets (name -> {train: FOLDER, test: [data.test names]}; README "
                                 "'Profiles')"}


def validate(resolved: dict, source: str = "params.yaml") -> Params:
    for (section, key), where in MOVED_KEYS.items():
        if isinstance(resolved.get(section), Mapping) and key in resolved[section]:
            raise ParamsError(f"{source}: invalid params:\n  {section}.{key}: this key was replaced by {where}")
    try:
        return Params.model_validate(resolved)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "<top level>"
            msg = e["msg"]
            if e["type"] == "literal_error":
                msg = f"unknown value {shown(e['input'])}; allowed: {e['ctx']['expected']}"
            elif e["type"] == "extra_forbidden":
                msg = "unknown key (typo?)"
            lines.append(f"  {key}: {msg}")
        raise ParamsError(f"{source}: invalid params ({len(lines)} problem(s)):\n" + "\n".join(lines)) from None


def read_params_file(path: str | os.PathLike) -> dict:
    """The mapping of one params file (a ``params.yaml`` composed for one profile), unvalidated."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror or err})") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    if "profiles" in raw:
        raise ParamsError(f"{path}: has a `profiles` block: params files no longer carry the profiles. The base "
                          f"configuration and the profiles live in pipelines/conf/ (config.yaml, profile/*.yaml); "
                          f"`dvc exp run -S profile=NAME` or `blurdm-bench params --profile NAME --write` composes "
                          f"params.yaml from them (README 'Profiles')")
    return raw


def load_params(path: str | os.PathLike | None = None, profile: str | None = None,
                overrides: dict | None = None) -> Params:
    """The validated params: the repository's ``params.yaml`` (or ``path``, or ``$BLURDM_PARAMS``), which
    ``dvc exp run`` composes for one profile. ``profile`` names the profile wanted: when the file was composed
    for another one, the params are composed afresh from ``pipelines/conf/`` (:func:`compose`) if the file is the
    repository's params.yaml, and refused for any other file. ``overrides`` (a nested dict) is merged last."""
    path = params_path(path)
    # a file other than the repository's params.yaml is never silently replaced by a composition
    explicit = path.resolve() != (repo_root() / "params.yaml").resolve()
    raw = read_params_file(path)
    source = str(path)
    if profile is not None and raw.get("profile") != profile:
        if explicit:
            raise ParamsError(f"{path}: composed for profile {raw.get('profile')!r}, not {profile!r}: pass a params "
                              f"file of that profile (`blurdm-bench params --profile {profile}` prints one) or leave "
                              f"out --profile")
        raw, source = compose(profile), f"pipelines/conf (profile {profile})"
    if overrides:
        raw = deep_merge(raw, overrides)
    params = validate(raw, source=source)
    set_max_pixels(params.data.max_pixels)  # every image reader of this process (pipelines/data/image_files.py)
    # $BLURDM_RECORD_READS (the dependency check): a view that records every key the stage reads
    return recording_view(params, always_read=("profile", "data.max_pixels"))


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first given on line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)
