"""``blurdm-bench report``: render ``reports/site/index.html`` from the pipeline's outputs.

Inputs, all under ``--metrics-dir`` (default ``<repo>/metrics``) and each optional:
``table1.json``, ``ablation_prior.json``, ``ablation_stages.json``, ``t_sweep.json`` (format:
pipelines/tables.py) and ``costs.json`` (pipelines/profile.py), with their untracked sidecars
``run_info/<name>`` (date, MLflow run ids, latency: pipelines/run_info.py); the per-image CSVs and
crops that ``table1.json`` names (relative to ``--root``; a path resolving outside it, or a crop that
is not an image, is refused); the paper's numbers in ``reports/published/``.

A section whose file is absent says "not run"; a file that is present but malformed (missing key,
wrong type) stops the build with the file and the key named. Every number on the page comes from
those files (the templates hold none). The page is rendered with Jinja2 (``StrictUndefined``) into a
temporary folder that then replaces ``--out`` whole, so a killed run never leaves a partial page; an
existing ``--out`` is replaced only when it is empty or a site rendered by this command.
The page is self-contained: inline CSS and JS, figures as local PNGs under ``assets/``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.names import BACKBONES, DATASETS, METRIC_NAMES, PRIORS, STAGE_COMBOS, label
from models.names import METRICS as METRIC_REGISTRY

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
PUBLISHED_YAML = PACKAGE_DIR / "published" / "blurdm-neurips2025.yaml"
MLFLOW_UI = "http://127.0.0.1:5000"
SITE_SIGNATURE = b"Rendered by <code>blurdm-bench report</code>"  # in index.html (templates/index.html.j2)

METRIC_FILES = {
    "table1": "table1.json",
    "ablation_prior": "ablation_prior.json",
    "ablation_stages": "ablation_stages.json",
    "t_sweep": "t_sweep.json",
    "costs": "costs.json",
}
METRICS = METRIC_NAMES  # row order in Table 1
# our metric -> column name in the paper YAML (the paper's SSIM is the 3-D Gaussian one; it has no BasicSR SSIM)
PAPER_METRIC = {"psnr": "psnr", "ssim3d": "ssim", "lpips": "lpips"}
REFERENCE_DATASET = "gopro"  # the paper's numbers shown beside a dataset the paper does not have (synthetic)
PRIOR_VARIANTS = tuple(PRIORS)
STAGE_VARIANTS = (*STAGE_COMBOS, "oracle")
PAPER_VARIANT_KEY = {"none": "baseline"}  # our variant name -> key in the paper YAML's ablation blocks
APPROX_TOLERANCE = 0.25  # "~4 GMACs": within 25 % of the paper's figure
MAX_CROP_IMAGES = 3
CROP_KINDS = ("blurred", "baseline", "blurdm", "sharp")
GAIN_KEYS = ("mean", "ci_low", "ci_high", "seed_std", "n_images", "n_seeds")
REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"

CROP_LABELS = {"blurred": "blurred", "baseline": "baseline", "blurdm": "+BlurDM", "sharp": "sharp"}


def dataset_label(name: str) -> str:
    return DATASETS.get(name, name)


def backbone_label(name: str) -> str:
    return BACKBONES[name].label if name in BACKBONES else name


def variant_label(name: str) -> str:
    return label("none" if name == "baseline" else name)


def slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts)).strip("-")


# ---------------------------------------------------------------------------------------------
# reading input files: every accessor names the file and the key when something is wrong
# ---------------------------------------------------------------------------------------------
class Source:
    """One parsed input file. ``get`` / ``num`` / ... raise ValueError naming the file and key path."""

    def __init__(self, path: Path, data, shown: str | None = None):
        self.path = Path(path)
        self.data = data
        self.shown = shown or str(path)

    @classmethod
    def load_json(cls, path: Path, shown: str | None = None) -> Source | None:
        """The parsed file, or None when it does not exist (the section is "not run")."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable JSON file ({err})") from None
        return cls(path, data, shown)

    @classmethod
    def load_yaml(cls, path: Path) -> Source:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: published numbers not found") from None
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: not a readable YAML file ({err})") from None
        return cls(path, data)

    @staticmethod
    def join(where: str, key) -> str:
        if isinstance(key, int):
            return f"{where}[{key}]"
        return f"{where}.{key}" if where else str(key)

    def fail(self, where: str, problem: str):
        raise ValueError(f"{self.path}: {where or 'top level'}: {problem}")

    def get(self, obj, key, where: str = ""):
        if not isinstance(obj, dict):
            self.fail(where, f"expected a mapping, got {type(obj).__name__}")
        if key not in obj:
            raise ValueError(f"{self.path}: missing key '{self.join(where, key)}'")
        return obj[key]

    def mapping(self, obj, key, where: str = "", optional: bool = False) -> dict | None:
        value = self.get(obj, key, where)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            self.fail(self.join(where, key), f"expected a mapping, got {type(value).__name__}")
        return value

    def items(self, obj, key, where: str = "") -> list:
        value = self.get(obj, key, where)
        if not isinstance(value, list):
            self.fail(self.join(where, key), f"expected a list, got {type(value).__name__}")
        return value

    def num(self, obj, key, where: str = "", optional: bool = False) -> float | None:
        value = self.get(obj, key, where)
        if value is None and optional:
            return None
        return self.number(value, self.join(where, key))

    def number(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"expected a finite number, got {value!r}")
        return float(value)

    def integer(self, obj, key, where: str = "") -> int:
        value = self.get(obj, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self.join(where, key), f"expected an integer, got {value!r}")
        return value

    def text(self, obj, key, where: str = "", optional: bool = False) -> str | None:
        value = self.get(obj, key, where)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(self.join(where, key), f"expected a string, got {value!r}")
        return value

    def paths(self, obj, key, where: str = "") -> list[str]:
        """A string or a list of strings (one file per training seed)."""
        value = self.get(obj, key, where)
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.fail(self.join(where, key), f"expected a path or a list of paths, got {value!r}")
        return values


@dataclass
class Gain:
    """A paired gain (method minus reference) with its bootstrap CI."""
    mean: float
    ci_low: float
    ci_high: float
    seed_std: float | None
    n_images: int
    n_seeds: int

    def excludes_zero(self) -> int:
        """+1 when the CI lies above 0, -1 when below, 0 when it contains 0."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0


@dataclass
class Meta:
    profile: str
    scale: str
    train_seeds: list
    eval_seeds: list
    resamples: int
    bootstrap_seed: int
    confidence: float
    git_commit: str
    date: str
    machine: dict


@dataclass
class Table1Row:
    dataset: str
    backbone: str
    baseline: dict[str, float | None]
    blurdm: dict[str, float | None]
    gain: dict[str, Gain | None]
    lpips_reason: str | None
    per_image: dict[str, list[str]]
    crops: dict[str, list[str]]
    runs: dict[str, list[str]]
    dvc_stages: dict[str, str]
    input: dict[str, float | None] = field(default_factory=dict)  # the blurred input's own scores
    over_input: dict[str, dict[str, Gain | None]] = field(default_factory=dict)  # side -> metric -> gain


@dataclass
class Table1:
    source: Source
    meta: Meta
    rows: list[Table1Row]
    average_gain: dict[str, dict[str, float | None]]


@dataclass
class AblationRow:
    variant: str
    psnr: float
    ssim: float | None
    ssim3d: float | None
    lpips: float | None
    gain: Gain
    runs: list[str]
    dvc_stage: str
    T: int | None = None
    over_input: Gain | None = None  # PSNR gain over the blurred input
    stage2_r2: float | None = None  # validation R^2 of the stage-2 prior against SE(blur, sharp), mean over seeds


@dataclass
class Ablation:
    source: Source
    meta: Meta
    dataset: str
    backbone: str
    rows: list[AblationRow]
    input: dict[str, float | None] = field(default_factory=dict)
    other_datasets: dict[str, "Ablation"] = field(default_factory=dict)

    def by_variant(self) -> dict[str, AblationRow]:
        return {row.variant: row for row in self.rows}


def parse_meta(src: Source, obj, where: str) -> Meta:
    meta = src.mapping(obj, "meta", where)
    w = src.join(where, "meta")
    boot = src.mapping(meta, "bootstrap", w)
    wb = src.join(w, "bootstrap")
    return Meta(
        profile=src.text(meta, "profile", w), scale=src.text(meta, "scale", w),
        train_seeds=src.items(meta, "train_seeds", w), eval_seeds=src.items(meta, "eval_seeds", w),
        resamples=src.integer(boot, "resamples", wb), bootstrap_seed=src.integer(boot, "seed", wb),
        confidence=src.num(boot, "confidence", wb),
        # null: the tables were made outside a git checkout (e.g. an unpacked release archive)
        git_commit=src.text(meta, "git_commit", w, optional=True) or "unknown",
        # the date is run-specific: it lives in the untracked sidecar (merged in by load_inputs), if at all
        date=src.text(meta, "date", w) if "date" in meta else "not recorded",
        machine=src.mapping(meta, "machine", w),
    )


def parse_gain(src: Source, obj, key, where: str, optional: bool = False) -> Gain | None:
    g = src.mapping(obj, key, where, optional=optional)
    if g is None:
        return None
    w = src.join(where, key)
    return Gain(mean=src.num(g, "mean", w), ci_low=src.num(g, "ci_low", w), ci_high=src.num(g, "ci_high", w),
                seed_std=src.num(g, "seed_std", w, optional=True), n_images=src.integer(g, "n_images", w),
                n_seeds=src.integer(g, "n_seeds", w))


def _metric_values(src: Source, obj, key, where: str) -> dict[str, float | None]:
    values = src.mapping(obj, key, where)
    w = src.join(where, key)
    return {m: src.num(values, m, w, optional=True) for m in METRICS}


def _given(obj, key) -> bool:
    """Whether an optional key (added by a later version of pipelines/tables.py) is present and not null."""
    return isinstance(obj, dict) and obj.get(key) is not None


def _optional_metric_values(src: Source, obj, key, where: str) -> dict[str, float | None]:
    return _metric_values(src, obj, key, where) if _given(obj, key) else {}


def _parse_over_input(src: Source, row, where: str) -> dict[str, dict[str, Gain | None]]:
    if not _given(row, "over_input"):
        return {}
    over = src.mapping(row, "over_input", where)
    w = src.join(where, "over_input")
    out = {}
    for side in ("baseline", "blurdm"):
        gains = src.mapping(over, side, w)
        out[side] = {m: parse_gain(src, gains, m, src.join(w, side), optional=True) for m in METRICS}
    return out


def parse_table1(src: Source) -> Table1:
    data = src.data
    meta = parse_meta(src, data, "")
    rows = []
    for i, row in enumerate(src.items(data, "rows")):
        w = f"rows[{i}]"
        gain = src.mapping(row, "gain", w)
        wg = src.join(w, "gain")
        per_image = src.mapping(row, "per_image", w)
        crops = src.mapping(row, "crops", w)
        runs = src.mapping(row, "runs", w) if "runs" in row else {"baseline": [], "blurdm": []}  # (sidecar)
        stages = src.mapping(row, "dvc_stages", w)
        rows.append(Table1Row(
            dataset=src.text(row, "dataset", w), backbone=src.text(row, "backbone", w),
            baseline=_metric_values(src, row, "baseline", w), blurdm=_metric_values(src, row, "blurdm", w),
            gain={m: parse_gain(src, gain, m, wg, optional=True) for m in METRICS},
            lpips_reason=src.text(row, "lpips_reason", w, optional=True),
            per_image={side: src.paths(per_image, side, src.join(w, "per_image")) for side in ("baseline", "blurdm")},
            crops={kind: src.paths(crops, kind, src.join(w, "crops")) for kind in CROP_KINDS} if crops else {},
            runs={side: src.paths(runs, side, src.join(w, "runs")) for side in ("baseline", "blurdm")},
            dvc_stages={side: src.text(stages, side, src.join(w, "dvc_stages")) for side in ("baseline", "blurdm")},
            input=_optional_metric_values(src, row, "input", w),
            over_input=_parse_over_input(src, row, w),
        ))
        if rows[-1].gain["psnr"] is None:
            src.fail(src.join(wg, "psnr"), "the PSNR gain must be given")
    average = src.mapping(data, "average_gain")
    average_gain = {}
    for dataset in dict.fromkeys(r.dataset for r in rows):
        values = src.mapping(average, dataset, "average_gain")
        average_gain[dataset] = {m: src.num(values, m, f"average_gain.{dataset}", optional=True) for m in METRICS}
    return Table1(src, meta, rows, average_gain)


def _parse_ablation_rows(src: Source, rows_obj, where: str, with_t: bool) -> list[AblationRow]:
    rows = []
    for i, row in enumerate(rows_obj):
        w = f"{where}rows[{i}]"
        r2 = src.mapping(row, "stage2_r2", w) if _given(row, "stage2_r2") else None
        rows.append(AblationRow(
            variant=src.text(row, "variant", w), psnr=src.num(row, "psnr", w),
            ssim=src.num(row, "ssim", w, optional=True), ssim3d=src.num(row, "ssim3d", w, optional=True),
            lpips=src.num(row, "lpips", w, optional=True), gain=parse_gain(src, row, "gain", w),
            runs=src.paths(row, "runs", w) if "runs" in row else [], dvc_stage=src.text(row, "dvc_stage", w),
            T=src.integer(row, "T", w) if with_t else None,
            over_input=parse_gain(src, row, "over_input", w) if _given(row, "over_input") else None,
            stage2_r2=src.num(r2, "mean", src.join(w, "stage2_r2")) if r2 is not None else None,
        ))
    return rows


def parse_ablation(src: Source, with_t: bool = False) -> Ablation:
    data = src.data
    meta = parse_meta(src, data, "")
    backbone = src.text(data, "backbone")
    others = {}
    for name, block in (src.mapping(data, "other_datasets") if _given(data, "other_datasets") else {}).items():
        w = f"other_datasets.{name}."
        others[name] = Ablation(src, meta, name, backbone,
                                _parse_ablation_rows(src, src.items(block, "rows", w[:-1]), w, with_t),
                                input=_optional_metric_values(src, block, "input", w[:-1]))
    return Ablation(src, meta, src.text(data, "dataset"), backbone,
                    _parse_ablation_rows(src, src.items(data, "rows"), "", with_t),
                    input=_optional_metric_values(src, data, "input", ""), other_datasets=others)


# --- costs.json (pipelines/profile.py) ---
COST_FIELDS = ("params", "macs", "flops", "thop_macs")
OVERHEAD_FIELDS = ("params", "macs", "params_ratio", "macs_ratio", "flops_ratio", "thop_macs_ratio")


@dataclass
class LatencyRow:
    model: str
    variant: str | None
    size: tuple[int, int]
    median_ms: float
    iqr_ms: float


@dataclass
class Costs:
    source: Source
    scale: str
    T: int
    input_shape: list
    module: dict[str, float]
    backbones: dict[str, dict]  # name -> {"baseline": {...}, "blurdm": {...}, "overhead": {...}, "published_key": str}
    environment: dict
    latency: dict | None  # {"rows": [LatencyRow], "warmup", "repeats", "timer", "device", "device_name", "threads"}
    params_profile: str | None

    def latency_of(self, model: str, variant: str | None, size: tuple[int, int]) -> LatencyRow | None:
        if self.latency is None:
            return None
        for row in self.latency["rows"]:
            if row.model == model and row.variant == variant and row.size == tuple(size):
                return row
        return None

    def sizes(self) -> list[tuple[int, int]]:
        if self.latency is None:
            return []
        return list(dict.fromkeys(row.size for row in self.latency["rows"]))


def parse_costs(src: Source) -> Costs:
    data = src.data
    module = src.mapping(data, "blurdm_module")
    backbones = {}
    for name, entry in src.mapping(data, "backbones").items():
        w = f"backbones.{name}"
        parsed = {}
        for variant in ("baseline", "blurdm"):
            values = src.mapping(entry, variant, w)
            parsed[variant] = {f: src.num(values, f, f"{w}.{variant}") for f in COST_FIELDS}
        overhead = src.mapping(entry, "overhead", w)
        parsed["overhead"] = {f: src.num(overhead, f, f"{w}.overhead", optional=f.endswith("ratio"))
                              for f in OVERHEAD_FIELDS}
        published = src.mapping(entry, "published", w, optional=True)
        parsed["published_key"] = src.text(published, "key", f"{w}.published") if published else name
        backbones[name] = parsed
    env = src.mapping(data, "environment")
    environment = {"device": src.text(env, "device", "environment"), "threads": src.integer(env, "threads", "environment"),
                   "device_name": src.text(env, "device_name", "environment"),
                   "torch_version": src.text(env, "torch_version", "environment")}
    latency = None
    if "latency" in data:
        lat = src.mapping(data, "latency")
        rows = []
        for i, r in enumerate(src.items(lat, "results", "latency")):
            w = f"latency.results[{i}]"
            size = src.items(r, "size", w)
            if len(size) != 2 or not all(isinstance(s, int) for s in size):
                src.fail(f"{w}.size", f"expected [height, width], got {size!r}")
            rows.append(LatencyRow(model=src.text(r, "model", w), variant=src.text(r, "variant", w, optional=True),
                                   size=(size[0], size[1]), median_ms=src.num(r, "median_ms", w),
                                   iqr_ms=src.num(r, "iqr_ms", w)))
        latency = {"rows": rows, "warmup": src.integer(lat, "warmup", "latency"),
                   "repeats": src.integer(lat, "repeats", "latency"), "timer": src.text(lat, "timer", "latency"),
                   "device": src.text(lat, "device", "latency"), "device_name": src.text(lat, "device_name", "latency"),
                   "threads": src.integer(lat, "threads", "latency")}
    return Costs(
        source=src, scale=src.text(data, "scale"), T=src.integer(data, "T"), input_shape=src.items(data, "input_shape"),
        module={f: src.num(module, f, "blurdm_module") for f in COST_FIELDS},
        backbones=backbones, environment=environment, latency=latency,
        params_profile=data.get("params_profile"),
    )


# --- the paper's numbers ---
@dataclass
class Published:
    """The published numbers (reports/published/blurdm-neurips2025.yaml), validated on load."""
    source: Source
    columns: list[str]
    table1: dict[str, dict[str, dict[str, list[float]]]]
    average_gain: dict[str, list[float]]
    ablation_prior: dict[str, float]
    ablation_stages: dict[str, float]
    best_t: int
    overhead: dict[str, float]
    backbones: dict[str, dict[str, float]]

    def t1(self, dataset: str, backbone: str, side: str, metric: str) -> float | None:
        column = PAPER_METRIC.get(metric)
        values = self.table1.get(dataset, {}).get(backbone)
        if column is None or values is None:
            return None
        return values[side][self.columns.index(column)]

    def t1_gain(self, dataset: str, backbone: str, metric: str) -> float | None:
        base, method = self.t1(dataset, backbone, "baseline", metric), self.t1(dataset, backbone, "blurdm", metric)
        return None if base is None or method is None else method - base

    def average(self, dataset: str, metric: str) -> float | None:
        column = PAPER_METRIC.get(metric)
        values = self.average_gain.get(dataset)
        return None if column is None or values is None else values[self.columns.index(column)]

    def ablation(self, block: str, variant: str) -> float | None:
        values = self.ablation_prior if block == "prior" else self.ablation_stages
        return values.get(PAPER_VARIANT_KEY.get(variant, variant))


def load_published(path: Path = PUBLISHED_YAML) -> Published:
    src = Source.load_yaml(path)
    data = src.data
    t1 = src.mapping(data, "table1")
    columns = src.items(t1, "columns", "table1")
    for needed in PAPER_METRIC.values():
        if needed not in columns:
            src.fail("table1.columns", f"missing column {needed!r}")
    table1 = {}
    for dataset in t1:
        if dataset in ("columns", "average_gain"):
            continue
        table1[dataset] = {}
        for backbone in src.mapping(t1, dataset, "table1"):
            w = f"table1.{dataset}.{backbone}"
            pair = src.mapping(t1[dataset], backbone, f"table1.{dataset}")
            table1[dataset][backbone] = {}
            for side in ("baseline", "blurdm"):
                triple = src.items(pair, side, w)
                if len(triple) != len(columns):
                    src.fail(f"{w}.{side}", f"expected {len(columns)} values ({', '.join(columns)}), got {triple!r}")
                table1[dataset][backbone][side] = [src.number(v, f"{w}.{side}[{k}]") for k, v in enumerate(triple)]
    averages = src.mapping(t1, "average_gain", "table1")
    average = {ds: [src.number(v, f"table1.average_gain.{ds}[{k}]")
                    for k, v in enumerate(src.items(averages, ds, "table1.average_gain"))] for ds in averages}
    prior = src.mapping(data, "ablation_prior")
    stages = src.mapping(data, "ablation_stages")
    overhead = src.mapping(data, "overhead")
    backbones = src.mapping(data, "backbones_published")
    return Published(
        source=src, columns=columns, table1=table1, average_gain=average,
        ablation_prior={k: src.num(prior, k, "ablation_prior") for k in prior},
        ablation_stages={k: src.num(stages, k, "ablation_stages") for k in stages},
        best_t=src.integer(src.mapping(data, "t_sweep"), "best_T", "t_sweep"),
        overhead={k: src.num(overhead, k, "overhead") for k in ("gflops", "params_m", "latency_ms", "flops_share_max")},
        backbones={name: {k: src.num(v, k, f"backbones_published.{name}") for k in ("params_m", "gmacs")}
                   for name, v in backbones.items()},
    )


# ---------------------------------------------------------------------------------------------
# what the templates render: plain data, no logic
# ---------------------------------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    value: float | None = None  # the exact number behind the text (data-value), None for words
    col: str = ""  # column key (data-col)
    css: str = ""
    href: str | None = None
    title: str | None = None
    rowspan: int = 1
    colspan: int = 1
    header: bool = False
    lines: list[str] = field(default_factory=list)  # rendered as a list after the text


@dataclass
class Row:
    cells: list[Cell]
    key: str = ""
    anchor: str | None = None
    css: str = ""


@dataclass
class Table:
    id: str
    caption: str
    head: list[list[Cell]]
    rows: list[Row]
    sortable: bool = False
    notes: list[str] = field(default_factory=list)
    kind: str = "table"


@dataclass
class Paragraph:
    text: str
    css: str = ""
    kind: str = "paragraph"


@dataclass
class Figure:
    src: str  # relative to index.html
    alt: str
    caption: str
    css: str = ""
    kind: str = "figure"


@dataclass
class Gallery:
    id: str
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Figure | None]]]
    kind: str = "gallery"


@dataclass
class Claim:
    key: str
    statement: str
    verdict: str  # REPRODUCED / NOT_REPRODUCED / NOT_RUN
    evidence: list[str]
    anchor: str
    kind: str = "claim"

    @property
    def css(self) -> str:
        return "verdict-" + self.verdict.replace(" ", "-")


@dataclass
class Section:
    id: str
    title: str
    status: str  # "ok" or NOT_RUN
    sources: list[str]
    blocks: list


@dataclass
class RunGroup:
    anchor: str
    study: str
    item: str
    entries: list[tuple[str, str, list[str]]]  # (role, DVC stage, MLflow run ids)


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_signed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def fmt_ci(gain: Gain, digits: int) -> str:
    return f"{gain.mean:+.{digits}f} [{gain.ci_low:+.{digits}f}, {gain.ci_high:+.{digits}f}]"


def fmt_pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.1f}%"


def fmt_amount(value: float | None) -> str:
    """Counts in millions / giga: 3 significant digits below 10, two decimals above."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}" if abs(value) < 1000 else f"{value:.1f}"


def not_run(col: str = "", colspan: int = 1) -> Cell:
    return Cell("not run", col=col, css="notrun", colspan=colspan)


def value_cell(col: str, value: float | None, digits: int, na_text: str = "n/a", title: str | None = None) -> Cell:
    if value is None:
        return Cell(na_text, col=col, css="na", title=title)
    return Cell(fmt(value, digits), value=value, col=col, css="num", title=title)


def gain_cell(col: str, gain: Gain | None, digits: int, higher_is_better: bool = True, na_text: str = "n/a",
              title: str | None = None) -> Cell:
    if gain is None:
        return Cell(na_text, col=col, css="na", title=title)
    side = gain.excludes_zero() * (1 if higher_is_better else -1)
    css = "num gain " + ("better" if side > 0 else "worse" if side < 0 else "unclear")
    detail = f"seed std {fmt(gain.seed_std, digits + 1)}; {gain.n_images} images x {gain.n_seeds} seeds"
    return Cell(fmt_ci(gain, digits), value=gain.mean, col=col, css=css,
                title=f"{title}; {detail}" if title else detail)


def linked(cell: Cell, href: str | None) -> Cell:
    """``cell`` linking to ``href`` (its MLflow run) when it holds a number."""
    if href and cell.value is not None:
        cell.href = href
    return cell


def public_text(text: str) -> str:
    """No path of the producing machine on the page: absolute / home paths cut to their file names."""
    from pipelines.tracking import public_text as strip

    return strip(text)


def head_row(labels: list[tuple[str, str]]) -> list[Cell]:
    return [Cell(text, col=col, header=True) for col, text in labels]


def display_path(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# the claims and their verdicts (pure functions of parsed data)
# ---------------------------------------------------------------------------------------------
def claim_every_backbone(table1: Table1 | None, published: Published, anchor: str = "table1") -> Claim:
    paper = ", ".join(f"{dataset_label(ds)} {fmt_signed(published.average(ds, 'psnr'), 2)} dB"
                      for ds in published.average_gain)
    statement = (f"BlurDM improves every backbone: the PSNR gain of each dataset x backbone has its 95% CI above 0 "
                 f"(paper: average gain {paper})")
    if table1 is None or not table1.rows:
        return Claim("every_backbone", statement, NOT_RUN, ["Table 1 was not run (metrics/table1.json absent)."], anchor)
    evidence = []
    for row in table1.rows:
        g = row.gain["psnr"]
        where = {1: "CI above 0", 0: "CI contains 0", -1: "CI below 0: BlurDM worse than the baseline"}[g.excludes_zero()]
        evidence.append(f"{dataset_label(row.dataset)} / {backbone_label(row.backbone)}: {fmt_ci(g, 2)} dB, {where}")
    for dataset, values in table1.average_gain.items():
        evidence.append(f"average gain over backbones on {dataset_label(dataset)}: {fmt_signed(values['psnr'], 2)} dB")
    verdict = REPRODUCED if all(r.gain["psnr"].ci_low > 0 for r in table1.rows) else NOT_REPRODUCED
    return Claim("every_backbone", statement, verdict, evidence, anchor)


def paper_order(values: dict[str, float], variants: tuple[str, ...]) -> list[str]:
    """Our variant names sorted by the paper's PSNR (ascending); variants the paper lacks are left out."""
    known = [v for v in variants if values.get(PAPER_VARIANT_KEY.get(v, v)) is not None]
    return sorted(known, key=lambda v: values[PAPER_VARIANT_KEY.get(v, v)])


def claim_ordering(key: str, statement: str, order: list[str], gains: dict[str, Gain], anchor: str) -> Claim:
    """The variants' PSNR (gains on the same images) rise in ``order``: each step must be supported by
    non-overlapping CIs (a conservative test). Reproduced only when all variants ran and every step is
    supported; a step significantly reversed is a contradiction even when some variants did not run."""
    present = [v for v in order if v in gains]
    missing = [v for v in order if v not in gains]
    if len(present) < 2:
        ran = ", ".join(variant_label(v) for v in present)
        text = f"only {ran} was run; at least two variants are needed." if ran else "no variant was run."
        return Claim(key, statement, NOT_RUN, [text], anchor)
    evidence, supported, reversed_ = [], [], []
    for low, high in itertools.pairwise(present):
        a, b = gains[low], gains[high]
        pair = f"{variant_label(low)} {a.mean:+.2f} [{a.ci_low:+.2f}, {a.ci_high:+.2f}] < " \
               f"{variant_label(high)} {b.mean:+.2f} [{b.ci_low:+.2f}, {b.ci_high:+.2f}]"
        if b.ci_low > a.ci_high:
            supported.append(True)
            evidence.append(f"{pair}: holds, CIs separate")
        elif b.ci_high < a.ci_low:
            reversed_.append(True)
            evidence.append(f"{pair}: reversed, CIs separate")
        else:
            supported.append(False)
            order_word = "means in order" if b.mean > a.mean else "means out of order"
            evidence.append(f"{pair}: {order_word}, CIs overlap (not supported)")
    evidence.insert(0, "gains in dB over the no-prior baseline on the same images, with 95% CIs")
    if missing:
        evidence.append("not run: " + ", ".join(variant_label(v) for v in missing))
    if reversed_:
        verdict = NOT_REPRODUCED
    elif missing:
        verdict = NOT_RUN
    else:
        verdict = REPRODUCED if all(supported) else NOT_REPRODUCED
    return Claim(key, statement, verdict, evidence, anchor)


def claim_best_t(sweep: Ablation | None, paper_best: int, anchor: str = "t-sweep") -> Claim:
    """T = paper_best is best: our mean PSNR gain peaks there, and it beats every smaller T with
    separated CIs (the paper says gains flatten above it, so larger T need only not beat it)."""
    statement = f"T={paper_best} is the best number of diffusion steps (paper; gains flatten above it)"
    if sweep is None or not sweep.rows:
        return Claim("best_t", statement, NOT_RUN, ["The T sweep was not run (metrics/t_sweep.json absent)."], anchor)
    gains = {row.T: row.gain for row in sweep.rows}
    if paper_best not in gains:
        return Claim("best_t", statement, NOT_RUN, [f"T={paper_best} is not in our sweep (T = {sorted(gains)})."], anchor)
    peak = max(sorted(gains), key=lambda t: gains[t].mean)
    best = gains[paper_best]
    evidence = [f"T={t}: {fmt_ci(g, 2)} dB" for t, g in sorted(gains.items())]
    evidence.append(f"our peak: T={peak} ({gains[peak].mean:+.2f} dB); paper: T={paper_best}")
    smaller = [t for t in gains if t < paper_best]
    unseparated = [t for t in smaller if not best.ci_low > gains[t].ci_high]
    if unseparated:
        evidence.append(f"T={paper_best} is not separated (CIs overlap or reversed) from T = {unseparated}")
    if not smaller:
        evidence.append(f"no T below {paper_best} was run: the rise up to T={paper_best} is untested")
    verdict = REPRODUCED if peak == paper_best and smaller and not unseparated else NOT_REPRODUCED
    return Claim("best_t", statement, verdict, evidence, anchor)


def claim_overhead(costs: Costs | None, published: Published, anchor: str = "cost") -> Claim:
    """BlurDM adds < flops_share_max of the backbone's MACs (both counting methods) and about the
    paper's GMACs (thop-style count of the module, within APPROX_TOLERANCE); paper-scale models only."""
    claim = published.overhead
    statement = (f"BlurDM adds < {claim['flops_share_max']:.0%} of each backbone's MACs and ~{claim['gflops']:g} GMACs "
                 f"at 256x256 (the paper's 'GFLOPs' are thop MACs)")
    if costs is None:
        return Claim("overhead", statement, NOT_RUN, ["Costs were not profiled (metrics/costs.json absent)."], anchor)
    thop_share = max((b["overhead"]["thop_macs_ratio"] for b in costs.backbones.values()
                      if b["overhead"]["thop_macs_ratio"] is not None), default=None)
    full_share = max((b["overhead"]["macs_ratio"] for b in costs.backbones.values()
                      if b["overhead"]["macs_ratio"] is not None), default=None)
    module_thop = costs.module["thop_macs"] / 1e9
    evidence = [
        (f"BlurDM module: {fmt_amount(module_thop)} GMACs thop-style, {fmt_amount(costs.module['macs'] / 1e9)} GMACs "
         f"complete (paper: {claim['gflops']:g})"),
        (f"largest overhead over the backbones: {fmt_pct(thop_share)} of MACs thop-style, {fmt_pct(full_share)} "
         f"complete (paper: < {claim['flops_share_max']:.0%})"),
    ]
    if costs.scale != "paper":
        evidence.insert(0, f"models profiled at scale '{costs.scale}': not comparable with the paper's models "
                           f"(run `blurdm-bench profile --scale paper`)")
        return Claim("overhead", statement, NOT_RUN, evidence, anchor)
    if thop_share is None or full_share is None:
        return Claim("overhead", statement, NOT_RUN, evidence + ["no backbone overhead ratio was measured"], anchor)
    share_ok = max(thop_share, full_share) < claim["flops_share_max"]
    size_ok = abs(module_thop - claim["gflops"]) <= APPROX_TOLERANCE * claim["gflops"]
    evidence.append(f"'~' read as within {APPROX_TOLERANCE:.0%} of the paper's figure")
    return Claim("overhead", statement, REPRODUCED if share_ok and size_ok else NOT_REPRODUCED, evidence, anchor)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
class Assets:
    """Files next to index.html (figures, crops), named relative to the page."""

    def __init__(self, site_dir: Path):
        self.site_dir = site_dir

    def target(self, name: str) -> tuple[Path, str]:
        rel = f"assets/{name}"
        path = self.site_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel

    def copy(self, src: Path, name: str) -> str:
        path, rel = self.target(name)
        path.write_bytes(src.read_bytes())
        return rel


@dataclass
class Context:
    """Everything the section builders share."""
    root: Path
    metrics_dir: Path
    published: Published
    assets: Assets
    mlflow_ui: str
    configured_backbones: list[str]
    configured_datasets: list[str]
    params_profile: str | None
    run_groups: list[RunGroup] = field(default_factory=list)
    run_experiments: dict[str, str] = field(default_factory=dict)  # MLflow run id -> experiment id

    def href(self, run_ids: list[str]) -> str | None:
        """The MLflow UI page of these runs (one run; several training seeds: the compare page)."""
        from pipelines.tracking import run_href

        return run_href(self.mlflow_ui, run_ids, self.run_experiments)

    def shown(self, name: str) -> str:
        return display_path(self.metrics_dir / name, self.root)

    def add_runs(self, study: str, item: str, entries: list[tuple[str, str, list[str]]], *key) -> str:
        anchor = slug("runs", *key)
        self.run_groups.append(RunGroup(anchor, study, item, entries))
        return "#" + anchor


def _runs_title(entries: list[tuple[str, str, list[str]]]) -> str:
    return "; ".join(f"{role}: DVC stage {stage}, MLflow run(s) {', '.join(ids) or 'none recorded'}"
                     for role, stage, ids in entries)


def table1_section(ctx: Context, t1: Table1 | None) -> tuple[Section, Claim]:
    pub = ctx.published
    claim = claim_every_backbone(t1, pub)
    rows = t1.rows if t1 else []
    ours_datasets = list(dict.fromkeys(r.dataset for r in rows))
    datasets = list(dict.fromkeys(ours_datasets + ctx.configured_datasets + list(pub.table1)))
    blocks: list = [claim]
    blocks.append(Paragraph(
        "Our default dataset is the embedded synthetic motion-blur set, not GoPro: beside it the paper's GoPro "
        "numbers are shown as a reference. Absolute PSNR/SSIM are therefore not comparable; compare the gain "
        "(+BlurDM minus baseline on the same images, with its 95% paired-bootstrap CI over images). "
        "Green: CI excludes 0 in BlurDM's favour; red: against it; grey: CI contains 0."))
    for dataset in datasets:
        ref = dataset if dataset in pub.table1 else REFERENCE_DATASET
        ds_rows = {r.backbone: r for r in rows if r.dataset == dataset}
        # a dataset we did not run: only the metrics the paper publishes
        metrics = METRICS if dataset in ours_datasets else tuple(m for m in METRICS if m in PAPER_METRIC)
        backbones = list(dict.fromkeys(
            list(ds_rows) + (ctx.configured_backbones if dataset in ours_datasets or dataset in ctx.configured_datasets
                             else []) + list(pub.table1.get(ref, {}))))
        head = [
            [Cell("Backbone", header=True, rowspan=2), Cell("Metric", header=True, rowspan=2),
             Cell(f"Ours: {dataset_label(dataset)}", header=True, colspan=3),
             Cell(f"Paper: {dataset_label(ref)}", header=True, colspan=3), Cell("Runs", header=True, rowspan=2)],
            head_row([("ours_baseline", "baseline"), ("ours_blurdm", "+BlurDM"), ("ours_gain", "gain [95% CI]"),
                      ("paper_baseline", "baseline"), ("paper_blurdm", "+BlurDM"), ("paper_gain", "gain")]),
        ]
        body = []
        missing: dict[str, None] = {}  # why LPIPS is n/a (each reason once)
        for backbone in backbones:
            row = ds_rows.get(backbone)
            runs_href, runs_title = None, None
            if row is not None:
                entries = [(side, row.dvc_stages[side], row.runs[side]) for side in ("baseline", "blurdm")]
                runs_href = ctx.add_runs("Table 1", f"{dataset_label(dataset)} / {backbone_label(backbone)}", entries,
                                         "table1", dataset, backbone)
                runs_title = _runs_title(entries)
            for k, metric in enumerate(metrics):
                cells = []
                if k == 0:
                    cells.append(Cell(backbone_label(backbone), col="backbone", header=True, rowspan=len(metrics)))
                cells.append(Cell(METRIC_REGISTRY[metric].label, col="metric", css="metric"))
                if row is None:
                    cells.append(not_run("ours", colspan=3))
                elif metric == "lpips" and row.lpips_reason and row.gain[metric] is None:
                    # said once, in the table's note (the reason names no path of the producing machine)
                    cells.append(Cell("n/a (see the note below the table)", col="ours", css="na", colspan=3))
                    missing[public_text(row.lpips_reason)] = None
                else:
                    na = "n/a"
                    cells += [linked(value_cell("ours_baseline", row.baseline[metric], METRIC_REGISTRY[metric].value_digits, na,
                                                runs_title), ctx.href(row.runs["baseline"])),
                              linked(value_cell("ours_blurdm", row.blurdm[metric], METRIC_REGISTRY[metric].value_digits, na,
                                                runs_title), ctx.href(row.runs["blurdm"])),
                              linked(gain_cell("ours_gain", row.gain[metric], METRIC_REGISTRY[metric].gain_digits,
                                               METRIC_REGISTRY[metric].higher_is_better, na, runs_title),
                                     ctx.href(row.runs["blurdm"] + row.runs["baseline"]))]
                paper_na = "not published" if pub.t1(ref, backbone, "baseline", "psnr") is not None else "not in the paper"
                cells += [value_cell("paper_baseline", pub.t1(ref, backbone, "baseline", metric), METRIC_REGISTRY[metric].value_digits, paper_na),
                          value_cell("paper_blurdm", pub.t1(ref, backbone, "blurdm", metric), METRIC_REGISTRY[metric].value_digits, paper_na),
                          _signed_cell("paper_gain", pub.t1_gain(ref, backbone, metric), METRIC_REGISTRY[metric].gain_digits, paper_na)]
                if k == 0:
                    cells.append(Cell("runs", col="runs", href=runs_href, rowspan=len(metrics), title=runs_title)
                                 if runs_href else Cell("not run", col="runs", css="notrun", rowspan=len(metrics)))
                body.append(Row(cells, key=f"{backbone}/{metric}", css="first" if k == 0 else ""))
        for k, metric in enumerate(metrics):
            ours = t1.average_gain[dataset][metric] if dataset in ours_datasets else None
            cells = []
            if k == 0:
                cells.append(Cell("Average gain", col="backbone", header=True, rowspan=len(metrics)))
            cells.append(Cell(METRIC_REGISTRY[metric].label, col="metric", css="metric"))
            if dataset in ours_datasets:
                cells += [Cell("mean over backbones", colspan=2, css="muted"),
                          _signed_cell("ours_gain", ours, METRIC_REGISTRY[metric].gain_digits, "n/a")]
            else:
                cells.append(not_run("ours", colspan=3))
            cells += [Cell("mean over backbones", colspan=2, css="muted"),
                      _signed_cell("paper_gain", pub.average(ref, metric), METRIC_REGISTRY[metric].gain_digits, "not published")]
            if k == 0:
                cells.append(Cell("", col="runs", rowspan=len(metrics)))
            body.append(Row(cells, key=f"average/{metric}", css="average" + (" first" if k == 0 else "")))
        caption = f"{dataset_label(dataset)}" + ("" if dataset in ours_datasets else ": not run")
        notes = []
        if ref != dataset:
            notes.append(f"The paper has no {dataset_label(dataset)} results: its {dataset_label(ref)} numbers are "
                         f"shown for reference; compare the gains, not the absolute values.")
        if missing:
            notes.append(f"LPIPS n/a in our runs: {'; '.join(missing)}. Put the two weight files where "
                         f"pipelines/metrics.py (LPIPS_HOWTO) says and re-run the evaluation to score it.")
        if ds_rows:
            notes.append("Each of our numbers links to its MLflow run(s) (several training seeds: the compare page).")
        blocks.append(Table(id=slug("table1", dataset), caption=caption, head=head, rows=body, notes=notes))
        if any(r.over_input for r in ds_rows.values()):
            blocks.append(input_table(dataset, ds_rows, ctx))
    status = "ok" if t1 else NOT_RUN
    return Section("table1", "Table 1: BlurDM gain per backbone", status, [_source_text(ctx, "table1", t1)], blocks), claim


INPUT_METRICS = ("psnr", "ssim3d", "ssim")


def input_table(dataset: str, ds_rows: dict[str, Table1Row], ctx: Context | None = None) -> Table:
    """Do the models deblur at all? The blurred input's own scores and each model's gain over it."""
    head = [[Cell("Backbone", header=True, rowspan=2), Cell("Metric", header=True, rowspan=2),
             Cell("Blurred input (doing nothing)", header=True, rowspan=2),
             Cell("Gain over the blurred input [95% CI]", header=True, colspan=2)],
            head_row([("input_baseline", "baseline"), ("input_blurdm", "+BlurDM")])]
    body = []
    for backbone, row in ds_rows.items():
        if not row.over_input:
            continue
        for k, metric in enumerate(INPUT_METRICS):
            cells = []
            if k == 0:
                cells.append(Cell(backbone_label(backbone), col="backbone", header=True, rowspan=len(INPUT_METRICS)))
            cells += [Cell(METRIC_REGISTRY[metric].label, col="metric", css="metric"),
                      value_cell("input", row.input.get(metric), METRIC_REGISTRY[metric].value_digits),
                      linked(gain_cell("input_baseline", row.over_input["baseline"][metric], METRIC_REGISTRY[metric].gain_digits),
                             ctx.href(row.runs["baseline"]) if ctx else None),
                      linked(gain_cell("input_blurdm", row.over_input["blurdm"][metric], METRIC_REGISTRY[metric].gain_digits),
                             ctx.href(row.runs["blurdm"]) if ctx else None)]
            body.append(Row(cells, key=f"{backbone}/{metric}/input", css="first" if k == 0 else ""))
    return Table(id=slug("table1-input", dataset), caption=f"{dataset_label(dataset)}: gain over the blurred input",
                 head=head, rows=body, notes=["A model that deblurs has a gain above 0 here. Green: CI above 0; "
                                              "red: the model makes the blurred images worse."])


def _signed_cell(col: str, value: float | None, digits: int, na_text: str) -> Cell:
    if value is None:
        return Cell(na_text, col=col, css="na")
    return Cell(fmt_signed(value, digits), value=value, col=col, css="num")


def _source_text(ctx: Context, key: str, parsed) -> str:
    name = METRIC_FILES[key]
    return ctx.shown(name) + ("" if parsed is not None else " (absent: not run)")


def ablation_section(ctx: Context, key: str, ablation: Ablation | None) -> tuple[Section, Claim]:
    pub = ctx.published
    prior = key == "ablation_prior"
    block = "prior" if prior else "stages"
    variants = PRIOR_VARIANTS if prior else STAGE_VARIANTS
    values = pub.ablation_prior if prior else pub.ablation_stages
    order = paper_order(values, variants)
    baseline_paper = pub.ablation_prior[PAPER_VARIANT_KEY["none"]]
    chain = " < ".join(variant_label(v) for v in order)
    numbers = " < ".join(f"{values[PAPER_VARIANT_KEY.get(v, v)]:.2f}" for v in order)
    anchor = "prior" if prior else "stages"
    statement = f"{'Prior' if prior else 'Training-stage'} ordering {chain} (paper, GoPro PSNR: {numbers})"
    by_variant = ablation.by_variant() if ablation else {}
    claim = claim_ordering("prior_order" if prior else "stage_order", statement, order,
                           {v: r.gain for v, r in by_variant.items()}, anchor)
    study = "Prior ablation" if prior else "Stage ablation"
    head = [head_row([("variant", "Variant"), ("ours_psnr", "Ours PSNR"), ("ours_gain", "Ours gain vs none [95% CI]"),
                      ("ours_input_gain", "Ours gain vs blurred input [95% CI]"), ("ours_ssim3d", "Ours SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("paper_psnr", "Paper PSNR (GoPro)"),
                      ("paper_gain", f"Paper gain vs none ({baseline_paper:.2f})"), ("runs", "DVC stage / runs")])]
    body = [input_row(ablation, paper_columns=2)] if ablation and ablation.input else []
    for variant in list(dict.fromkeys(list(variants) + list(by_variant))):
        row = by_variant.get(variant)
        href = title = None
        paper_value = pub.ablation(block, variant)
        cells = [Cell(variant_label(variant), col="variant", header=True)]
        if row is None:
            cells += [not_run(c) for c in ("ours_psnr", "ours_gain", "ours_input_gain", "ours_ssim3d", "ours_r2")]
        else:
            entries = [(variant, row.dvc_stage, row.runs)]
            href = ctx.add_runs(study, variant_label(variant), entries, key, variant)
            title = _runs_title(entries)
            cells += ablation_cells(row, title, ctx.href(row.runs))
        cells += [value_cell("paper_psnr", paper_value, 2, "not in the paper"),
                  _signed_cell("paper_gain", None if paper_value is None else paper_value - baseline_paper, 2,
                               "not in the paper")]
        cells.append(Cell(row.dvc_stage, col="runs", href=href, title=title) if row is not None else not_run("runs"))
        body.append(Row(cells, key=variant))
    blocks: list = [claim]
    if ablation:
        blocks.append(Paragraph(
            f"Ours: {dataset_label(ablation.dataset)}, {backbone_label(ablation.backbone)}; the paper: GoPro, "
            f"MIMO-UNet family. Absolute PSNR differs with the data; the ordering and the gains are what compare. "
            f"Gains are paired over the same images (bootstrap {ablation.meta.resamples} resamples)."))
    blocks.append(Table(id=slug("table", key), caption="", head=head, rows=body, notes=[R2_NOTE]))
    for other in (ablation.other_datasets.values() if ablation else []):
        blocks.append(other_dataset_table(key, other, variants, {v: ctx.href(r.runs) for v, r in by_variant.items()}))
    if not prior:
        blocks.append(Paragraph("Gains are over the no-prior baseline (the 'none' model of the prior ablation) on "
                                "the same images; the paper's gains use its prior-ablation baseline.", css="note"))
    title = "Prior ablation: which diffusion prior" if prior else "Stage combinations"
    return Section(anchor, title, "ok" if ablation else NOT_RUN, [_source_text(ctx, key, ablation)], blocks), claim


R2_NOTE = ("Stage-2 R²: how much of the spread of the sharp-encoder latent SE(blur, sharp) the trained prior "
           "recovers from the blurred image alone, on the validation split (1 = exactly, 0 = no better than "
           "predicting the mean latent); mean over training seeds.")


def ablation_cells(row: AblationRow, title: str | None = None, href: str | None = None) -> list[Cell]:
    return [linked(c, href) for c in (
        value_cell("ours_psnr", row.psnr, 2, title=title), gain_cell("ours_gain", row.gain, 2, title=title),
        gain_cell("ours_input_gain", row.over_input, 2, title=title),
        value_cell("ours_ssim3d", row.ssim3d, 3, title=title),
        value_cell("ours_r2", row.stage2_r2, 3, na_text="no stage 2", title=title))]


def input_row(ablation: Ablation, paper_columns: int) -> Row:
    """The reference row: the blurred test input itself (doing nothing)."""
    cells = [Cell("blurred input (doing nothing)", col="variant", header=True),
             value_cell("ours_psnr", ablation.input.get("psnr"), 2), Cell("", col="ours_gain"),
             Cell("", col="ours_input_gain"), value_cell("ours_ssim3d", ablation.input.get("ssim3d"), 3),
             Cell("", col="ours_r2")]
    cells += [Cell("", col="paper") for _ in range(paper_columns)] + [Cell("", col="runs")]
    return Row(cells, key="input", css="average")


def other_dataset_table(key: str, ablation: Ablation, variants, hrefs: dict[str, str | None] | None = None) -> Table:
    """The same ablation scored on another test set (no paper columns: the paper has no such set)."""
    head = [head_row([("variant", "Variant"), ("ours_psnr", "PSNR"), ("ours_gain", "gain vs none [95% CI]"),
                      ("ours_input_gain", "gain vs blurred input [95% CI]"), ("ours_ssim3d", "SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("runs", "DVC stage")])]
    by_variant = ablation.by_variant()
    body = [input_row(ablation, paper_columns=0)] if ablation.input else []
    for variant in list(dict.fromkeys(list(variants) + list(by_variant))):
        row = by_variant.get(variant)
        if row is None:
            continue
        body.append(Row([Cell(variant_label(variant), col="variant", header=True),
                         *ablation_cells(row, href=(hrefs or {}).get(variant)),
                         Cell(row.dvc_stage, col="runs")], key=f"{ablation.dataset}/{variant}"))
    return Table(id=slug("table", key, ablation.dataset), caption=f"{dataset_label(ablation.dataset)}",
                 head=head, rows=body, notes=[R2_NOTE])


def t_sweep_section(ctx: Context, sweep: Ablation | None) -> tuple[Section, Claim]:
    pub = ctx.published
    claim = claim_best_t(sweep, pub.best_t)
    blocks: list = [claim]
    if sweep is None or not sweep.rows:
        blocks.append(Paragraph(f"Not run. The paper reports T={pub.best_t} as best (no per-T table is published)."))
        return Section("t-sweep", "T sweep: number of diffusion steps", NOT_RUN,
                       [_source_text(ctx, "t_sweep", sweep)], blocks), claim
    rows = sorted(sweep.rows, key=lambda r: r.T)
    from reports.plots import t_sweep_plot

    path, rel = ctx.assets.target("t_sweep.png")
    t_sweep_plot(path, [r.T for r in rows], [r.gain.mean for r in rows], [r.gain.ci_low for r in rows],
                 [r.gain.ci_high for r in rows], pub.best_t, sweep.meta.confidence)
    peak = max(rows, key=lambda r: (r.gain.mean, -r.T))
    blocks.append(Paragraph(
        f"Ours ({dataset_label(sweep.dataset)}, {backbone_label(sweep.backbone)}) peaks at T={peak.T} "
        f"({fmt_ci(peak.gain, 2)} dB over no prior); the paper's best is T={pub.best_t}."))
    blocks.append(Figure(rel, "PSNR gain against T with confidence band",
                         f"PSNR gain over the no-prior baseline against T; band: {sweep.meta.confidence:.0%} CI."))
    head = [head_row([("T", "T"), ("ours_psnr", "Ours PSNR"), ("ours_gain", "Ours gain vs none [95% CI]"),
                      ("ours_input_gain", "Ours gain vs blurred input [95% CI]"), ("ours_ssim3d", "Ours SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("runs", "DVC stage / runs")])]
    body = []
    for row in rows:
        entries = [(row.variant, row.dvc_stage, row.runs)]
        href = ctx.add_runs("T sweep", row.variant, entries, "t_sweep", row.T)
        title = _runs_title(entries)
        body.append(Row([Cell(str(row.T), value=row.T, col="T", header=True),
                         *ablation_cells(row, title, ctx.href(row.runs)),
                         Cell(row.dvc_stage, col="runs", href=href, title=title)], key=f"T={row.T}"))
    blocks.append(Table(id="table-t-sweep", caption="", head=head, rows=body, sortable=True, notes=[R2_NOTE]))
    for other in sweep.other_datasets.values():
        blocks.append(other_dataset_table("t_sweep", other, [f"T={r.T}" for r in rows],
                                          {r.variant: ctx.href(r.runs) for r in rows}))
    return Section("t-sweep", "T sweep: number of diffusion steps", "ok", [_source_text(ctx, "t_sweep", sweep)],
                   blocks), claim


def size_label(size: tuple[int, int]) -> str:
    h, w = size
    return f"{h}x{w}" + (" (720p)" if (h, w) == (720, 1280) else "")


def _latency_cell(col: str, row: LatencyRow | None) -> Cell:
    if row is None:
        return not_run(col)
    return Cell(f"{row.median_ms:.1f} (IQR {row.iqr_ms:.1f})", value=row.median_ms, col=col, css="num")


def cost_section(ctx: Context, costs: Costs | None) -> tuple[Section, Claim]:
    pub = ctx.published
    claim = claim_overhead(costs, pub)
    paper = pub.overhead
    blocks: list = [claim]
    blocks.append(Paragraph(
        "Units: a multiply-accumulate (MAC) is two FLOPs. The paper's 'GFLOPs' are thop MACs (convolution and "
        "linear layers only). We report thop-style MACs, complete MACs (attention matmuls and FFTs included) "
        "and complete FLOPs separately, all at 1x3x256x256."))
    if costs is None:
        blocks.append(Paragraph(f"Not run. The paper: ~{paper['gflops']:g} GMACs (its 'GFLOPs'), "
                                f"{paper['params_m']:g} M parameters, ~{paper['latency_ms']:g} ms, "
                                f"< {paper['flops_share_max']:.0%} overhead."))
        return Section("cost", "Cost", NOT_RUN, [_source_text(ctx, "costs", None)], blocks), claim
    env = costs.environment
    lat = costs.latency
    blocks.append(Paragraph(
        f"Model scale: {costs.scale}; T={costs.T}. Counted on the meta device (torch {env['torch_version']}). "
        + (f"Latency: {lat['timer']} on {lat['device']} ({lat['device_name']}), {lat['threads']} threads, "
           f"median and IQR of {lat['repeats']} runs after {lat['warmup']} warm-up runs."
           if lat else "Latency: not measured (profile without --latency).")))
    sizes = costs.sizes()
    cols = [("backbone", "Backbone"), ("variant", "Variant"), ("params_m", "Params (M)"),
            ("thop_gmacs", "thop MACs (G)"), ("gmacs", "MACs (G)"), ("gflops", "FLOPs (G)")]
    cols += [(slug("latency", *s), f"Latency {size_label(s)} (ms)") for s in sizes]
    cols += [("paper_params_m", "Paper params (M)"), ("paper_gmacs", "Paper GMACs ('GFLOPs')")]
    body = []
    for name, entry in costs.backbones.items():
        published = pub.backbones.get(entry["published_key"])
        for variant in ("baseline", "blurdm"):
            v = entry[variant]
            cells = [Cell(backbone_label(name), col="backbone", header=True),
                     Cell("baseline" if variant == "baseline" else "+BlurDM", col="variant"),
                     value_cell("params_m", v["params"] / 1e6, 3), value_cell("thop_gmacs", v["thop_macs"] / 1e9, 2),
                     value_cell("gmacs", v["macs"] / 1e9, 2), value_cell("gflops", v["flops"] / 1e9, 2)]
            cells += [_latency_cell(slug("latency", *s), costs.latency_of(name, variant, s)) for s in sizes]
            if variant == "baseline" and published:
                cells += [value_cell("paper_params_m", published["params_m"], 2),
                          value_cell("paper_gmacs", published["gmacs"], 1)]
            else:
                text = "not published" if variant == "baseline" else "—"
                cells += [Cell(text, col="paper_params_m", css="na"), Cell(text, col="paper_gmacs", css="na")]
            body.append(Row(cells, key=f"{name}/{variant}"))
    notes = []
    if costs.scale != "paper":
        notes.append(f"Scale '{costs.scale}': our models are smaller than the paper's, so their counts are not "
                     f"comparable with the published ones.")
    blocks.append(Table(id="table-cost", caption="Size, compute and latency per backbone",
                        head=[head_row(cols)], rows=body, sortable=True, notes=notes))
    ocols = [("backbone", "Backbone"), ("params_ratio", "+Params"), ("thop_macs_ratio", "+MACs (thop)"),
             ("macs_ratio", "+MACs (complete)"), ("flops_ratio", "+FLOPs"), ("added_gmacs", "Added MACs (G)")]
    for s in sizes:
        ocols += [(slug("added_ms", *s), f"Added latency {size_label(s)} (ms)"),
                  (slug("latency_ratio", *s), f"+Latency {size_label(s)}")]
    obody = []
    for name, entry in costs.backbones.items():
        o = entry["overhead"]
        cells = [Cell(backbone_label(name), col="backbone", header=True),
                 _pct_cell("params_ratio", o["params_ratio"]), _pct_cell("thop_macs_ratio", o["thop_macs_ratio"]),
                 _pct_cell("macs_ratio", o["macs_ratio"]), _pct_cell("flops_ratio", o["flops_ratio"]),
                 value_cell("added_gmacs", o["macs"] / 1e9, 2)]
        for s in sizes:
            base, with_prior = costs.latency_of(name, "baseline", s), costs.latency_of(name, "blurdm", s)
            if base is None or with_prior is None:
                cells += [not_run(slug("added_ms", *s)), not_run(slug("latency_ratio", *s))]
            else:
                cells += [value_cell(slug("added_ms", *s), with_prior.median_ms - base.median_ms, 1),
                          _pct_cell(slug("latency_ratio", *s), (with_prior.median_ms - base.median_ms) / base.median_ms)]
        obody.append(Row(cells, key=name))
    blocks.append(Table(id="table-overhead", caption=f"Overhead BlurDM adds (paper: < {paper['flops_share_max']:.0%})",
                        head=[head_row(ocols)], rows=obody, sortable=True))
    m = costs.module
    module_lat = [costs.latency_of("blurdm_module", None, s) for s in sizes]
    mrows = [
        Row([Cell("Parameters (M)", header=True), value_cell("ours", m["params"] / 1e6, 2),
             value_cell("paper", paper["params_m"], 2)], key="params_m"),
        Row([Cell("MACs, thop-style (G)", header=True), value_cell("ours", m["thop_macs"] / 1e9, 2),
             value_cell("paper", paper["gflops"], 2, title="the paper calls these GFLOPs")], key="thop_gmacs"),
        Row([Cell("MACs, complete (G)", header=True), value_cell("ours", m["macs"] / 1e9, 2),
             Cell("not published", col="paper", css="na")], key="gmacs"),
        Row([Cell("FLOPs, complete (G)", header=True), value_cell("ours", m["flops"] / 1e9, 2),
             Cell("not published", col="paper", css="na")], key="gflops"),
    ]
    for s, row in zip(sizes, module_lat):
        mrows.append(Row([Cell(f"Latency {size_label(s)} (ms)", header=True), _latency_cell("ours", row),
                          value_cell("paper", paper["latency_ms"], 1, title="device not stated")
                          if s == (256, 256) else Cell("not published", col="paper", css="na")],
                         key=f"latency/{s[0]}x{s[1]}"))
    blocks.append(Table(id="table-module", caption="The BlurDM module alone (Blur Encoder + both estimators, whole "
                        "reverse chain)", head=[head_row([("quantity", "Quantity"), ("ours", "Ours"), ("paper", "Paper")])],
                        rows=mrows, notes=[f"The paper's {paper['params_m']:g} M parameters is its summary figure."]))
    sources = [_source_text(ctx, "costs", costs) + " (DVC stage: profile)"]
    return Section("cost", "Cost", "ok", sources, blocks), claim


def _pct_cell(col: str, ratio: float | None) -> Cell:
    if ratio is None:
        return Cell("n/a", col=col, css="na")
    return Cell(fmt_pct(ratio), value=ratio, col=col, css="num")


def _read_per_image(ctx: Context, paths: list[str]):
    """PSNR per image name, averaged over evaluation seeds and over the files (training seeds)."""
    import pandas as pd

    from pipelines.scores import per_image, read_scores

    series = [per_image(read_scores(ctx.root / p), "psnr") for p in paths]
    names = set(series[0].index)
    for p, s in zip(paths[1:], series[1:]):
        if set(s.index) != names:
            raise ValueError(f"{ctx.root / p}: scores different images than {ctx.root / paths[0]}")
    return pd.concat(series, axis=1).mean(axis=1)


def visual_section(ctx: Context, t1: Table1 | None) -> Section:
    blocks: list = []
    if t1 is None or not t1.rows:
        blocks.append(Paragraph("Not run: Table 1 has no results (metrics/table1.json absent)."))
        return Section("visual", "Visual comparison", NOT_RUN, [_source_text(ctx, "table1", t1)], blocks)
    sources = [_source_text(ctx, "table1", t1)]
    for row in t1.rows:
        if not row.crops:
            continue
        count = min(len(row.crops[kind]) for kind in CROP_KINDS)
        gallery_rows = []
        for i in range(min(count, MAX_CROP_IMAGES)):
            figures = []
            for kind in CROP_KINDS:
                src = ctx.root / row.crops[kind][i]
                if not src.is_file():
                    blocks.append(Paragraph(f"crop missing: {row.crops[kind][i]}", css="note"))
                    figures.append(None)
                    continue
                rel = ctx.assets.copy(src, f"crops/{slug(row.dataset, row.backbone, i, kind)}{src.suffix.lower()}")
                figures.append(Figure(rel, f"{CROP_LABELS[kind]} crop {i + 1}, {row.dataset} {row.backbone}",
                                      CROP_LABELS[kind], css="crop"))
            gallery_rows.append((Path(row.crops["sharp"][i]).stem.removesuffix("_sharp"), figures))
        blocks.append(Gallery(slug("crops", row.dataset, row.backbone),
                              f"{dataset_label(row.dataset)} / {backbone_label(row.backbone)}",
                              [CROP_LABELS[k] for k in CROP_KINDS], gallery_rows))
    if not any(isinstance(b, Gallery) for b in blocks):
        blocks.append(Paragraph("No crops were saved by the evaluation (table1.json lists none).", css="note"))
    import pandas as pd

    for dataset in dict.fromkeys(r.dataset for r in t1.rows):
        frames, stats = [], []
        for row in (r for r in t1.rows if r.dataset == dataset):
            paths = row.per_image["baseline"] + row.per_image["blurdm"]
            missing = [p for p in paths if not (ctx.root / p).is_file()]
            if missing:
                blocks.append(Paragraph(f"{dataset_label(dataset)} / {backbone_label(row.backbone)}: per-image scores "
                                        f"missing ({', '.join(missing)}); not plotted.", css="note"))
                continue
            sources += list(paths)
            base = _read_per_image(ctx, row.per_image["baseline"])
            method = _read_per_image(ctx, row.per_image["blurdm"])
            if set(base.index) != set(method.index):
                raise ValueError(f"{ctx.root / row.per_image['blurdm'][0]} and {ctx.root / row.per_image['baseline'][0]} "
                                 f"score different images; cannot pair them")
            gain = (method - base.loc[method.index]).sort_index()
            frames.append(pd.DataFrame({"backbone": backbone_label(row.backbone), "name": gain.index, "gain": gain.values}))
            stats.append(Row([Cell(backbone_label(row.backbone), col="backbone", header=True),
                              Cell(str(gain.size), value=gain.size, col="images", css="num"),
                              value_cell("mean", float(gain.mean()), 3), value_cell("median", float(gain.median()), 3),
                              _pct_cell("improved", float((gain > 0).mean())),
                              value_cell("min", float(gain.min()), 3), value_cell("max", float(gain.max()), 3)],
                             key=row.backbone))
        if not frames:
            continue
        from reports.plots import gain_distribution_plot

        path, rel = ctx.assets.target(f"gain_distribution_{slug(dataset)}.png")
        gain_distribution_plot(path, pd.concat(frames, ignore_index=True),
                               f"{dataset_label(dataset)}: per-image PSNR gain")
        blocks.append(Figure(rel, f"per-image PSNR gain distribution, {dataset}",
                             f"{dataset_label(dataset)}: per-image PSNR gain of +BlurDM over the baseline "
                             f"(per image: mean over evaluation and training seeds)."))
        head = [head_row([("backbone", "Backbone"), ("images", "Images"), ("mean", "Mean gain (dB)"),
                          ("median", "Median gain (dB)"), ("improved", "Images improved"), ("min", "Min (dB)"),
                          ("max", "Max (dB)")])]
        blocks.append(Table(id=slug("table-per-image", dataset), caption=f"{dataset_label(dataset)}: per-image gains",
                            head=head, rows=stats, sortable=True))
    return Section("visual", "Visual comparison", "ok", list(dict.fromkeys(sources)), blocks)


def runs_section(ctx: Context) -> Section:
    head = [head_row([("study", "Study"), ("item", "Item"), ("role", "Role"), ("stage", "DVC stage"),
                      ("run", "MLflow run")])]
    body = []
    for group in ctx.run_groups:
        first = True
        for role, stage, ids in group.entries:
            for run_id in ids or [None]:
                run_cell = (Cell(run_id, col="run", href=f"{ctx.mlflow_ui}/#/runs/{run_id}", css="mono")
                            if run_id else Cell("none recorded", col="run", css="na"))
                body.append(Row([Cell(group.study, col="study"), Cell(group.item, col="item"), Cell(role, col="role"),
                                 Cell(stage, col="stage", css="mono"), run_cell],
                                key=f"{group.anchor}/{role}/{run_id}", anchor=group.anchor if first else None))
                first = False
    blocks: list = [Paragraph(f"Every result above links here. Run ids open in the MLflow UI ({ctx.mlflow_ui}, "
                              f"start it with `mlflow ui --backend-store-uri sqlite:///mlflow.db`); DVC stages "
                              f"re-run with `dvc repro <stage>`.")]
    if body:
        blocks.append(Table(id="table-runs", caption="", head=head, rows=body))
    else:
        blocks.append(Paragraph("No runs: no metric file was found."))
    return Section("runs", "Runs", "ok" if body else NOT_RUN, ["the metric files above"], blocks)


def summary_section(ctx: Context, parsed: dict, claims: list[Claim]) -> Section:
    blocks: list = []
    crows = []
    for claim in claims:
        crows.append(Row([Cell(claim.statement, col="claim", header=True),
                          Cell(claim.verdict, col="verdict", css=f"badge {claim.css}"),
                          Cell("", col="evidence", css="evidence", lines=claim.evidence),
                          Cell("details", col="section", href=f"#{claim.anchor}")], key=claim.key))
    blocks.append(Paragraph("Verdicts: 'reproduced' only when our confidence intervals support the claim; "
                            "'not reproduced' when they do not (including when BlurDM does not beat the baseline "
                            "in our runs: a finding, reported with its numbers); 'not run' when the experiment "
                            "is missing or not comparable."))
    blocks.append(Table(id="table-claims", caption="The paper's claims",
                        head=[head_row([("claim", "Claim"), ("verdict", "Verdict"), ("evidence", "Our numbers"),
                                        ("section", "Section")])], rows=crows))
    metas = [(key, p.meta) for key, p in parsed.items() if p is not None and hasattr(p, "meta")]
    t1 = parsed.get("table1")
    if metas:
        key, meta = metas[0]
        datasets = list(dict.fromkeys(r.dataset for r in t1.rows)) if t1 else []
        backbones = list(dict.fromkeys(r.backbone for r in t1.rows)) if t1 else []
        info = [
            ("Profile", meta.profile), ("Model scale", meta.scale),
            ("Datasets", ", ".join(dataset_label(d) for d in datasets) or "none (Table 1 not run)"),
            ("Backbones", ", ".join(backbone_label(b) for b in backbones) or "none (Table 1 not run)"),
            ("Training seeds", ", ".join(str(s) for s in meta.train_seeds)),
            ("Evaluation seeds", ", ".join(str(s) for s in meta.eval_seeds)),
            ("Bootstrap", (f"{meta.resamples} resamples, seed {meta.bootstrap_seed}, {meta.confidence:.0%} CI, "
                           f"paired over images")),
            ("Git commit", meta.git_commit), ("Date", meta.date),
            ("Machine", ", ".join(f"{k}: {v}" for k, v in meta.machine.items())),
        ]
        rows = [Row([Cell(k, header=True), Cell(v, col="value")], key=k) for k, v in info]
        blocks.append(Table(id="table-run-info", caption=f"What was run (from {ctx.shown(METRIC_FILES[key])})",
                            head=[], rows=rows))
        if ctx.params_profile and ctx.params_profile != meta.profile:
            blocks.append(Paragraph(f"Note: params.yaml now selects profile '{ctx.params_profile}'; these results "
                                    f"were produced with profile '{meta.profile}'.", css="note"))
    else:
        blocks.append(Paragraph("No evaluation results were found: nothing has been run yet"
                                + (f" (params.yaml profile: {ctx.params_profile})." if ctx.params_profile else ".")))
    inputs = []
    for key, name in METRIC_FILES.items():
        p = parsed.get(key)
        meta = getattr(p, "meta", None)
        if p is None:
            cells = [Cell("not run", col="status", css="notrun"), Cell("—", col="profile"), Cell("—", col="scale"),
                     Cell("—", col="commit"), Cell("—", col="date")]
        elif meta is None:  # costs.json carries no meta
            cells = [Cell("present", col="status"), Cell(p.params_profile or "n/a", col="profile"),
                     Cell(p.scale, col="scale"), Cell("n/a", col="commit", css="na"), Cell("n/a", col="date", css="na")]
        else:
            cells = [Cell("present", col="status"), Cell(meta.profile, col="profile"), Cell(meta.scale, col="scale"),
                     Cell(meta.git_commit, col="commit", css="mono"), Cell(meta.date, col="date")]
        inputs.append(Row([Cell(ctx.shown(name), col="file", header=True, css="mono")] + cells, key=key))
    blocks.append(Table(id="table-inputs", caption="Input files",
                        head=[head_row([("file", "File"), ("status", "Status"), ("profile", "Profile"),
                                        ("scale", "Scale"), ("commit", "Git commit"), ("date", "Date")])],
                        rows=inputs))
    return Section("summary", "Summary", "ok", [ctx.shown(n) for n in METRIC_FILES.values()], blocks)


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
def load_inputs(metrics_dir: Path, root: Path) -> dict:
    """Parse every metric file that exists (absent -> None); malformed files raise ValueError.

    The run-specific values (date, MLflow run ids, latency) come from each file's untracked sidecar
    ``run_info/<name>`` (:mod:`pipelines.run_info`). Every path Table 1 names must lie under ``root``."""
    from pipelines.run_info import merge_run_info, read_run_info

    parsed: dict = {}
    for key, name in METRIC_FILES.items():
        src = Source.load_json(metrics_dir / name, display_path(metrics_dir / name, root))
        if src is not None:
            src.data = merge_run_info(src.data, *read_run_info(src.path), costs=key == "costs")
        if src is None:
            parsed[key] = None
        elif key == "table1":
            parsed[key] = parse_table1(src)
            check_input_paths(parsed[key], root)
        elif key == "costs":
            parsed[key] = parse_costs(src)
        else:
            parsed[key] = parse_ablation(src, with_t=key == "t_sweep")
    return parsed


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_input_paths(t1: Table1, root: Path) -> None:
    """Every path ``table1.json`` names must resolve (symlinks followed) under ``root``, and a crop that
    exists must be an image: the report copies crops into the site and reads the per-image CSVs, so
    a crafted file naming ``/etc/passwd`` or ``../../secret`` is refused, naming the file and key."""
    from pipelines.imageio import IMAGE_EXTENSIONS, ImageReadError, read_image_size

    real_root = Path(root).resolve()
    for i, row in enumerate(t1.rows):
        named = [(f"rows[{i}].per_image.{side}[{j}]", p, False) for side in ("baseline", "blurdm")
                 for j, p in enumerate(row.per_image[side])]
        named += [(f"rows[{i}].crops.{kind}[{j}]", p, True) for kind, paths in row.crops.items()
                  for j, p in enumerate(paths)]
        for where, rel, image in named:
            real = (Path(root) / rel).resolve()
            if not _inside(real, real_root):
                t1.source.fail(where, f"{rel!r} resolves to {real}, outside --root {real_root}: refused")
            if image and real.exists():
                if real.suffix.lower() not in IMAGE_EXTENSIONS:
                    t1.source.fail(where, f"{rel!r} is not an image file (extension {real.suffix!r}): refused")
                try:
                    read_image_size(real)
                except ImageReadError as err:
                    t1.source.fail(where, f"{rel!r} is not a readable image ({err}): refused")


def load_run_experiments(metrics_dir: Path) -> dict[str, str]:
    """MLflow run id -> experiment id, from the tables' sidecars (``run_info/<name>``: ``experiments``)."""
    from pipelines.run_info import read_run_info

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


def template_environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                              autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_page(sections: list[Section], title: str, published: Published) -> str:
    return template_environment().get_template("index.html.j2").render(
        title=title, sections=sections, published_source=display_path(published.source.path, PACKAGE_DIR.parent))


def build_report(metrics_dir: Path, out_dir: Path, root: Path | None = None, params=None,
                 published_path: Path = PUBLISHED_YAML, mlflow_ui: str = MLFLOW_UI) -> Path:
    """Render ``out_dir/index.html`` (+ ``assets/``) atomically; returns the index path."""
    from pipelines.config import repo_root
    from pipelines.io import atomic_dir

    root = Path(root) if root is not None else repo_root()
    metrics_dir = Path(metrics_dir)
    published = load_published(published_path)
    parsed = load_inputs(metrics_dir, root)
    # an existing out_dir is replaced only when empty or a site we rendered (its index.html says so)
    with atomic_dir(out_dir, marker="index.html", signature=SITE_SIGNATURE) as tmp:
        ctx = Context(root=root, metrics_dir=metrics_dir, published=published, assets=Assets(tmp),
                      mlflow_ui=mlflow_ui.rstrip("/"), run_experiments=load_run_experiments(metrics_dir),
                      configured_backbones=list(params.models.backbones) if params else [],
                      configured_datasets=list(params.data.test) if params else [],
                      params_profile=params.profile if params else None)
        t1_section, c1 = table1_section(ctx, parsed["table1"])
        prior_section, c2 = ablation_section(ctx, "ablation_prior", parsed["ablation_prior"])
        stages_section, c3 = ablation_section(ctx, "ablation_stages", parsed["ablation_stages"])
        t_section, c4 = t_sweep_section(ctx, parsed["t_sweep"])
        cost, c5 = cost_section(ctx, parsed["costs"])
        visual = visual_section(ctx, parsed["table1"])
        sections = [summary_section(ctx, parsed, [c1, c2, c3, c4, c5]), t1_section, prior_section, stages_section,
                    t_section, cost, visual, runs_section(ctx)]
        html = render_page(sections, "BlurDM reproduction report", published)
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return Path(out_dir) / "index.html"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-dir", type=Path, default=None,
                        help="folder holding table1.json, ablation_*.json, t_sweep.json, costs.json "
                             "(default: <repo>/metrics)")
    parser.add_argument("--out", type=Path, default=None,
                        help="site folder, replaced whole (default: <repo>/reports/site)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repo's)")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder the paths inside the metric files are relative to (default: the repo root)")
    parser.add_argument("--mlflow-ui", default=None,
                        help="MLflow UI address for run links (default: the tracking server when "
                             f"MLFLOW_TRACKING_URI / params mlflow_tracking_uri is http(s), else {MLFLOW_UI})")


def run(args) -> int:
    from pipelines.config import load_params, repo_root
    from pipelines.tracking import ui_url

    root = repo_root()
    params = load_params(args.params)
    index = build_report(args.metrics_dir or root / "metrics", args.out or root / "reports" / "site",
                         root=args.root or root, params=params,
                         mlflow_ui=args.mlflow_ui or ui_url(params.mlflow_tracking_uri, MLFLOW_UI))
    print(f"wrote {index}")
    return 0
