"""The report's inputs, read and checked: the metric files and the paper's published numbers.

A metric file (``--metrics-dir``: :data:`METRIC_FILES`) is merged with its untracked sidecar
``run_info/<name>`` (date, MLflow run ids, latency: :mod:`pipelines.results.run_info`) and validated through
its schema (:mod:`pipelines.results.metric_schemas`, the one the writer used). The paper's numbers come from
``reports/published/blurdm-neurips2025.yaml`` (:class:`Published`). An absent metric file is
``None`` (its section says "not run"); a malformed file raises ValueError naming the file and the key.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from models.names import SIDES
from pipelines.core.errors import InvalidInputError, MissingFileError
from pipelines.data.image_files import IMAGE_EXTENSIONS, ImageReadError, read_image_size
from pipelines.results.metric_schemas import (
    SCHEMAS,
    Table1File,
    describe,
    invalid_at,
)
from pipelines.results.run_info import merge_run_info, read_run_info

PUBLISHED_YAML = Path(__file__).resolve().parent / "published" / "blurdm-neurips2025.yaml"
METRIC_FILES = {key: f"{key}.json" for key in SCHEMAS}  # key -> file name under --metrics-dir
# our metric -> column name in the paper YAML (the paper's SSIM is the 3-D Gaussian one; it has no BasicSR SSIM)
PAPER_METRIC = {"psnr": "psnr", "ssim3d": "ssim", "lpips": "lpips"}
PAPER_SCORING = "authors"  # how the paper scores RealBlur (models.names.SCORINGS): no alignment
REFERENCE_DATASET = "gopro"  # the paper's numbers shown beside a dataset the paper does not have (synthetic)
PAPER_VARIANT_KEY = {"none": "baseline"}  # our variant name -> key in the paper YAML's ablation blocks
# our backbone -> its row in the paper's Table 1 (the YAML's keys). The paper's "MIMO-UNet" row is MIMO-UNet+ (the
# authors build only MIMO-UNet+ with the prior; its baseline is MIMO-UNet+'s published GoPro PSNR, spec): the paper
# profile's mimo_unet_plus rows sit beside it. The cpu profile's tiny MIMO-UNet is shown beside the same row as a
# reference only (other data, other scale: only the gains compare).
PAPER_TABLE1_ROW = {"mimo_unet_plus": "mimo_unet"}


# --- the metric files -----------------------------------------------------------------------
def read_metric_file(path: Path, key: str):
    """The metric file ``path`` (of kind ``key``) with its sidecar merged in, as its schema's model;
    ``None`` when the file does not exist."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"{path}: not a readable JSON file ({err})") from None
    data = merge_run_info(data, *read_run_info(path), costs=key == "costs")
    try:
        return SCHEMAS[key].model_validate(data)
    except ValidationError as err:
        raise InvalidInputError(f"{path}: {describe(err)}") from None


def load_inputs(metrics_dir: Path, root: Path) -> dict:
    """Every metric file by key (absent: ``None``); every path Table 1 names must lie under ``root``."""
    parsed: dict = {}
    for key, name in METRIC_FILES.items():
        parsed[key] = read_metric_file(Path(metrics_dir) / name, key)
        if key == "table1" and parsed[key] is not None:
            check_input_paths(parsed[key], Path(metrics_dir) / name, root)
    return parsed


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_input_paths(t1: Table1File, path: Path, root: Path) -> None:
    """Every path ``table1.json`` (at ``path``) names must resolve (symlinks followed) under ``root``,
    and a crop that exists must be an image: the report copies crops into the site and reads the
    per-image CSVs, so a crafted file naming ``/etc/passwd`` or ``../../secret`` is refused, naming
    the file and key."""
    real_root = Path(root).resolve()
    for i, row in enumerate(t1.rows):
        named = [(f"rows[{i}].per_image.{side}[{j}]", p, False) for side in SIDES
                 for j, p in enumerate(row.per_image.files(side))]
        named += [(f"rows[{i}].crops.{kind}[{j}]", p, True) for kind, paths in row.crops.items()
                  for j, p in enumerate(paths)]
        for where, rel, image in named:
            real = (Path(root) / rel).resolve()
            if not _inside(real, real_root):
                raise InvalidInputError(f"{path}: {where}: {rel!r} resolves to {real}, outside --root {real_root}: refused")
            if image and real.exists():
                if real.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise InvalidInputError(f"{path}: {where}: {rel!r} is not an image file (extension {real.suffix!r}): "
                                     f"refused")
                try:
                    read_image_size(real)
                except ImageReadError as err:
                    raise InvalidInputError(f"{path}: {where}: {rel!r} is not a readable image ({err}): refused") from None


def load_run_experiments(metrics_dir: Path) -> dict[str, str]:
    """MLflow run id -> experiment id, from the tables' sidecars (``run_info/<name>``: ``experiments``)."""
    out: dict[str, str] = {}
    for name in METRIC_FILES.values():
        if (Path(metrics_dir) / name).is_file():
            try:
                sidecar, _ = read_run_info(Path(metrics_dir) / name)
            except ValueError:
                continue  # an unreadable sidecar is reported where the table is read
            experiments = (sidecar or {}).get("experiments")
            if isinstance(experiments, dict):
                out.update({str(k): str(v) for k, v in experiments.items()})
    return out


# --- the paper's numbers --------------------------------------------------------------------
class PaperSchema(BaseModel):
    """Strict, finite numbers; keys the report does not read (notes) are ignored."""
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class PaperPair(PaperSchema):
    baseline: list[float]  # one value per column of table1.columns
    blurdm: list[float]


class PaperTable1(PaperSchema):
    """``columns``, ``average_gain`` (dataset -> one value per column) and, beside them, one block
    per dataset (backbone -> :class:`PaperPair`)."""
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, dict[str, PaperPair]]
    columns: list[str]
    average_gain: dict[str, list[float]]

    @property
    def datasets(self) -> dict[str, dict[str, PaperPair]]:
        return self.model_extra or {}

    @model_validator(mode="after")
    def _one_value_per_column(self) -> PaperTable1:
        for needed in PAPER_METRIC.values():
            if needed not in self.columns:
                raise invalid_at(("columns",), f"missing column {needed!r}")
        for dataset, backbones in self.datasets.items():
            for backbone, pair in backbones.items():
                for side in SIDES:
                    values = getattr(pair, side)
                    if len(values) != len(self.columns):
                        raise invalid_at((dataset, backbone, side), f"expected {len(self.columns)} values "
                                         f"({', '.join(self.columns)}), got {values!r}")
        return self


class PaperOverhead(PaperSchema):
    gflops: float  # thop MACs of the BlurDM module at 256x256 (the paper's "GFLOPs")
    params_m: float
    latency_ms: float
    flops_share_max: float


class PaperBackbone(PaperSchema):
    params_m: float
    gmacs: float


class PaperTSweep(PaperSchema):
    best_T: int


class Published(PaperSchema):
    """The published numbers (reports/published/blurdm-neurips2025.yaml), validated on load."""
    table1: PaperTable1
    ablation_prior: dict[str, float]
    ablation_stages: dict[str, float]
    t_sweep: PaperTSweep
    overhead: PaperOverhead
    backbones_published: dict[str, PaperBackbone]

    def t1(self, dataset: str, backbone: str, side: str, metric: str) -> float | None:
        column = PAPER_METRIC.get(metric)
        values = self.table1.datasets.get(dataset, {}).get(PAPER_TABLE1_ROW.get(backbone, backbone))
        if column is None or values is None:
            return None
        return getattr(values, side)[self.table1.columns.index(column)]

    def t1_gain(self, dataset: str, backbone: str, metric: str) -> float | None:
        base, method = self.t1(dataset, backbone, "baseline", metric), self.t1(dataset, backbone, "blurdm", metric)
        return None if base is None or method is None else method - base

    def average(self, dataset: str, metric: str) -> float | None:
        column = PAPER_METRIC.get(metric)
        values = self.table1.average_gain.get(dataset)
        return None if column is None or values is None else values[self.table1.columns.index(column)]

    def ablation(self, block: str, variant: str) -> float | None:
        values = self.ablation_prior if block == "prior" else self.ablation_stages
        return values.get(PAPER_VARIANT_KEY.get(variant, variant))


def load_published(path: Path = PUBLISHED_YAML) -> Published:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path}: published numbers not found") from None
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInputError(f"{path}: not a readable YAML file ({err})") from None
    try:
        return Published.model_validate(data)
    except ValidationError as err:
        raise InvalidInputError(f"{path}: {describe(err)}") from None
