"""The format of every metric file, one pydantic schema each (no torch import).

``metrics/table1.json``, ``ablation_prior.json``, ``ablation_stages.json``, ``t_sweep.json``
(:mod:`pipelines.tables`) and ``costs.json`` (:mod:`pipelines.profile`): the writers pass what they
write through :func:`validated_json`, the report (:mod:`reports.inputs`) reads it back through the
same model (:data:`SCHEMAS`), so the format has one definition.

A model describes the whole record: the tracked file plus its run-specific fields (``meta.date``,
``rows[].runs``, the costs' ``latency``), which live in the untracked sidecar
(:mod:`pipelines.results.run_info`) and are optional here. Fields that older tables lack are optional too.

Types are strict (``"27.2"`` is not a number, ``true`` not an integer), numbers finite, and a key the
schema does not know is an error. :func:`validated_json` returns only the keys that were given, as
given (an integer stays an integer), so the bytes written are those of the plain dicts before.
Blocks keyed by metric have one field per metric of :data:`models.names.METRICS`, in its order.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from models.names import METRIC_NAMES, SCORINGS, column_key, scorings

CROP_KINDS = ("blurred", "baseline", "blurdm", "sharp")  # the crops of a Table-1 row, in the report's column order


class Schema(BaseModel):
    """Strict, finite numbers only, no unknown key."""
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def invalid_at(loc: tuple, problem: str) -> ValidationError:
    """A validation error at ``loc`` inside the model being validated (for checks across fields):
    ``problem`` ``"missing"`` is a missing key, anything else the text of the problem."""
    kind = "missing" if problem == "missing" else PydanticCustomError("invalid", problem)
    return ValidationError.from_exception_data("metric file", [InitErrorDetails(type=kind, loc=loc, input=None)])


# --- value types that keep what they are given ---------------------------------------------
def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PydanticCustomError("number_type", "expected a finite number")
    return value


def _path_or_paths(value):
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    raise PydanticCustomError("paths_type", "expected a path or a list of paths")


def _scalar(value):
    if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise PydanticCustomError("scalar_type", "expected a string, a number, true/false or null")


def _height_width(size: list[int]) -> list[int]:
    if len(size) != 2:
        raise PydanticCustomError("size", "expected [height, width]")
    return size


Number = Annotated[int | float, PlainValidator(_number)]  # an integer or a float, written back as it came
PathOrPaths = Annotated[str | list[str], PlainValidator(_path_or_paths)]  # one file, or one per training seed
Scalar = Annotated[str | int | float | bool | None, PlainValidator(_scalar)]
Size = Annotated[list[int], AfterValidator(_height_width)]


# --- shared blocks --------------------------------------------------------------------------
class Gain(Schema):
    """A paired gain (method minus reference) with its bootstrap CI over images."""
    mean: float
    ci_low: float
    ci_high: float
    seed_std: float | None  # spread of the gain over training seeds
    n_images: int
    n_seeds: int

    def excludes_zero(self) -> int:
        """+1 when the CI lies above 0, -1 when below, 0 when it contains 0."""
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0


class Keyed(Schema):
    """A block whose fields are also read as ``block[name]`` (a metric, a side: a name in a variable)."""

    def __getitem__(self, name: str):
        return getattr(self, name)


def _per_metric(name: str, value_type, doc: str, base: type[Schema] = Keyed) -> type:
    """A block with one field per metric of :data:`models.names.METRICS`, in its order."""
    fields = {metric: (value_type, ...) for metric in METRIC_NAMES}
    return create_model(name, __base__=base, __doc__=doc, __module__=__name__, **fields)


MetricValues = _per_metric("MetricValues", float | None, "A mean per metric (null: the metric is unavailable, "
                                                         "e.g. LPIPS without its weights).")
MetricGains = _per_metric("MetricGains", Gain | None, "A gain per metric (null: the metric is unavailable).")


class Bootstrap(Schema):
    resamples: int
    seed: int
    confidence: float


class Meta(Schema):
    """How a table was made."""
    profile: str
    scale: str
    train_seeds: list[int]
    train_seeds_by_backbone: dict[str, list[int]] | None = None  # absent in older tables
    eval_seeds: list[int]
    bootstrap: Bootstrap
    git_commit: str | None  # null: made outside a git checkout
    date: str | None = None  # run-specific (the sidecar)
    machine: dict[str, Scalar]


# --- table1.json ----------------------------------------------------------------------------
class OverInput(Keyed):
    """The gain of each model over the blurred input itself, per metric."""
    baseline: MetricGains
    blurdm: MetricGains


class SidePaths(Keyed):
    baseline: PathOrPaths
    blurdm: PathOrPaths

    def files(self, side: str) -> list[str]:
        value = getattr(self, side)
        return [value] if isinstance(value, str) else list(value)


class SideRuns(Keyed):
    """MLflow run ids of each model's training seeds (run-specific: the sidecar)."""
    baseline: list[str] = []
    blurdm: list[str] = []


class DvcStages(Keyed):
    baseline: str
    blurdm: str
    evaluation: str | None = None  # absent in older tables


class Table1Row(Schema):
    """One column x backbone: both models' means, the gains, where they came from. A column is a test set
    under one scoring (a RealBlur set has two: ``scoring``), filled by the models of one training set."""
    dataset: str
    scoring: Literal[tuple(SCORINGS)] | None = None  # RealBlur: how it was scored; null: plain (absent in older tables)
    train_set: str | None = None  # the training set of both models (absent in older tables)
    backbone: str
    baseline: MetricValues
    blurdm: MetricValues
    gain: MetricGains
    input: MetricValues | None = None  # the blurred input's own scores (absent in older tables)
    over_input: OverInput | None = None  # absent in older tables
    lpips_reason: str | None
    per_image: SidePaths  # the scores.csv of each model
    crops: dict[Literal[CROP_KINDS], list[str]]  # every kind or none
    runs: SideRuns = Field(default_factory=SideRuns)
    dvc_stages: DvcStages

    @model_validator(mode="after")
    def _complete(self) -> Table1Row:
        if self.gain["psnr"] is None:
            raise invalid_at(("gain", "psnr"), "the PSNR gain must be given")
        if self.crops and set(self.crops) != set(CROP_KINDS):
            raise invalid_at(("crops",), f"expected every kind of crop ({', '.join(CROP_KINDS)}) or none")
        if self.scoring not in scorings(self.dataset):
            allowed = ", ".join(str(s) for s in scorings(self.dataset))
            raise invalid_at(("scoring",), f"{self.dataset} is scored as {allowed}, not {self.scoring}")
        return self

    @property
    def column(self) -> str:
        """The Table-1 column of this row (:func:`models.names.column_key`)."""
        return column_key(self.dataset, self.scoring)


class Table1File(Schema):
    meta: Meta
    rows: list[Table1Row]
    average_gain: dict[str, MetricValues]  # column -> mean gain over its backbones

    @model_validator(mode="after")
    def _every_column_averaged_once(self) -> Table1File:
        seen, trained_on = set(), {}
        for i, row in enumerate(self.rows):
            if row.column not in self.average_gain:
                raise invalid_at(("average_gain", row.column), "missing")
            if (row.column, row.backbone) in seen:
                raise invalid_at(("rows", i), f"a second row for {row.column} / {row.backbone}")
            seen.add((row.column, row.backbone))
            first = trained_on.setdefault(row.dataset, row.train_set)
            if first != row.train_set:  # one column, one training set: e.g. no RealBlur-J model scored on GoPro
                raise invalid_at(("rows", i, "train_set"), f"{row.dataset} is scored by the models of {first}, "
                                                           f"not {row.train_set}")
        return self

    def columns(self) -> list[str]:
        """The columns that have rows, in row order."""
        return list(dict.fromkeys(row.column for row in self.rows))


# --- ablation_prior.json, ablation_stages.json, t_sweep.json ----------------------------------
class Stage2R2(Schema):
    """Validation R^2 of the stage-2 prior against SE(blur, sharp)."""
    mean: float
    per_seed: dict[str, float]


class AblationRowFields(Keyed):
    """An ablation row without its per-metric means (added from the metric registry below)."""
    variant: str
    gain: Gain  # PSNR gain over the no-prior baseline, paired on the same images
    over_input: Gain | None = None  # PSNR gain over the blurred input (absent in older tables)
    stage2_r2: Stage2R2 | None = None  # null: the variant has no trained stage-2 prior
    runs: list[str] = []  # run-specific (the sidecar); the first test set's rows only
    dvc_stage: str

    @model_validator(mode="after")
    def _psnr_given(self) -> AblationRowFields:
        if self["psnr"] is None:
            raise invalid_at(("psnr",), "the PSNR must be given")
        return self


AblationRow = _per_metric("AblationRow", float | None, "One variant: its mean per metric and its gains.",
                          base=AblationRowFields)


class TSweepRow(AblationRow):
    T: int  # diffusion steps


class AblationRows(Schema):
    """The variants scored on one test set, and the blurred input's own scores."""
    input: MetricValues | None = None  # absent in older tables
    rows: list[AblationRow]

    def by_variant(self) -> dict[str, AblationRow]:
        return {row.variant: row for row in self.rows}


class AblationFile(AblationRows):
    """An ablation on the first test set (``rows``) and on every other one (``other_datasets``)."""
    meta: Meta
    dataset: str  # the first column of the ablations' training set
    backbone: str
    train_set: str | None = None  # the training set of every ablation model (absent in older tables)
    other_datasets: dict[str, AblationRows] = {}


class TSweepRows(AblationRows):
    rows: list[TSweepRow]


class TSweepFile(AblationFile):
    rows: list[TSweepRow]
    other_datasets: dict[str, TSweepRows] = {}


# --- costs.json -------------------------------------------------------------------------------
class CostCounts(Schema):
    """Counts at 1x3x256x256 (profile writes integers, ``macs`` = flops / 2 as a float; any finite
    number is kept as it is)."""
    params: Number
    flops: Number
    macs: Number
    fft_flops: Number
    thop_macs: Number  # conv/linear layers only: how the published "GFLOPs" were counted


class ComponentCost(Schema):
    params: int
    macs: float


class ModuleComponents(Schema):
    blur_encoder: ComponentCost
    estimators: ComponentCost


class ModuleCosts(CostCounts):
    """The BlurDM module alone (Blur Encoder + both estimators, the whole reverse chain)."""
    components: ModuleComponents


class Overhead(Schema):
    """What BlurDM adds to a backbone (ratios: null when the baseline counts 0)."""
    params: int
    macs: float
    params_ratio: float | None
    macs_ratio: float | None
    flops_ratio: float | None
    thop_macs_ratio: float | None
    module_macs_share: float | None


class PublishedCosts(Schema):
    """The published size and cost of a backbone beside ours."""
    key: str  # its name in backbones_published
    params_m: Number | None
    gmacs: Number | None
    ours_params_m: float
    ours_thop_gmacs: float
    ours_complete_gmacs: float
    params_rel_diff: float | None
    gmacs_rel_diff: float | None
    comparable: bool


class BackboneCosts(Keyed):
    baseline: CostCounts
    blurdm: CostCounts
    overhead: Overhead
    published: PublishedCosts | None  # null: not in the published list


class OursBeside(Schema):
    blurdm_module_gmacs: float
    blurdm_module_thop_gmacs: float
    blurdm_module_params_m: float
    max_macs_ratio: float | None
    blurdm_module_latency_ms: dict[str, float] | None = None  # run-specific (the sidecar): size -> ms


class PaperClaims(Schema):
    overhead: dict[str, Number] | None  # the paper YAML's overhead block (null: YAML not found)
    source: str | None
    ours: OursBeside
    comparable: bool


class Share(Schema):
    params: float
    macs: float


class PriorShare(Schema):
    """The prior's share of the whole +BlurDM model at both scales."""
    paper: Share
    tiny: Share
    tiny_over_paper: Share


class Environment(Schema):
    counting_device: str | None = None  # absent in older files
    device: str
    device_name: str
    threads: int
    torch_version: str
    python_version: str


class LatencyResult(Schema):
    model: str  # a backbone, or blurdm_module
    variant: str | None  # null for blurdm_module
    size: Size
    mode: str | None = None  # "fast": the CUDA-graph path
    median_ms: float
    iqr_ms: float
    q25_ms: float
    q75_ms: float
    times_ms: list[float]


class LatencyOverhead(Schema):
    model: str
    size: Size
    baseline_ms: float
    blurdm_ms: float
    added_ms: float
    latency_ratio: float | None


class Speedup(Schema):
    model: str
    variant: str | None
    size: Size
    eager_ms: float | None
    fast_ms: float
    speedup: float | None


class FastLatency(Schema):
    results: list[LatencyResult]
    overhead: list[LatencyOverhead]
    speedup: list[Speedup]
    warmup: int
    repeats: int
    what: str


class Latency(Schema):
    """Timings of this machine (run-specific: the sidecar)."""
    results: list[LatencyResult]
    overhead: list[LatencyOverhead]
    warmup: int
    repeats: int
    timer: str
    what: str
    device: str
    device_name: str
    threads: int
    torch_version: str
    python_version: str
    fast: FastLatency | None = None  # on a GPU


class CostsFile(Schema):
    scale: str
    T: int
    input_shape: list[int]
    counting: dict[str, str]  # how each quantity is counted
    blurdm_module: ModuleCosts
    backbones: dict[str, BackboneCosts]
    paper_claims: PaperClaims
    published_backbones_source: str | None
    prior_share: dict[str, PriorShare] | None = None  # absent in older files
    environment: Environment
    params_profile: str | None = None
    latency: Latency | None = None  # run-specific (the sidecar); absent without --latency

    def latency_of(self, model: str, variant: str | None, size: tuple[int, int]) -> LatencyResult | None:
        """The eager timing of ``model`` (``variant``) at ``size``, if measured."""
        results = self.latency.results if self.latency else []
        return next((r for r in results if r.model == model and r.variant == variant and tuple(r.size) == size), None)

    def latency_sizes(self) -> list[tuple[int, int]]:
        """The image sizes timed, in the order measured."""
        return list(dict.fromkeys(tuple(r.size) for r in self.latency.results)) if self.latency else []


# --- controls.json -------------------------------------------------------------------------
class ControlGain(Schema):
    mean: float
    ci_low: float
    ci_high: float
    seed_std: float | None
    n_images: int
    n_seeds: int


class Control(Schema):
    """One positive control (pipelines/results/controls.py): a model's gain over the blurred input
    (``deblurring``) or the oracle's gain over the no-prior baseline (``sensitivity``), on one column."""
    control: Literal["deblurring", "sensitivity"]
    column: str
    backbone: str
    model: str  # a Table-1 side (baseline, blurdm) or an ablation variant
    study: Literal["table1", "ablations"]
    train_set: str | None
    gain: ControlGain | None  # null: not evaluated
    threshold_db: float
    passed: bool


class ControlSummary(Schema):
    passed: int
    total: int
    by_column: dict[str, bool]


class ControlsFile(Schema):
    """Can this study answer? Every positive control, and whether the profile is a pipeline check (smoke)."""
    meta: Meta
    pipeline_check: bool
    thresholds: dict[str, float]
    deblurring: list[Control]
    sensitivity: list[Control]
    summary: dict[Literal["deblurring", "sensitivity"], ControlSummary]

    def failed(self, kind: str, column: str | None = None, models: tuple[str, ...] | None = None) -> list[Control]:
        """The controls of ``kind`` that failed (on ``column``; of ``models`` only)."""
        return [c for c in getattr(self, kind) if not c.passed and (column is None or c.column == column)
                and (models is None or c.model in models)]

    def of(self, kind: str, column: str) -> list[Control]:
        return [c for c in getattr(self, kind) if c.column == column]


SCHEMAS: dict[str, type[Schema]] = {  # metrics/<name>.json
    "table1": Table1File,
    "ablation_prior": AblationFile,
    "ablation_stages": AblationFile,
    "t_sweep": TSweepFile,
    "costs": CostsFile,
    "controls": ControlsFile,
}


def validated_json(schema: type[Schema], data: dict) -> dict:
    """``data`` checked against ``schema``, as the JSON-ready dict to write: the keys it was given,
    their values as given. Raises :class:`pydantic.ValidationError`."""
    return schema.model_validate(data).model_dump(mode="json", exclude_unset=True)


# --- problems, as the report prints them ------------------------------------------------------
_EXPECTED = {
    "float_type": "expected a finite number", "finite_number": "expected a finite number",
    "int_type": "expected an integer", "int_from_float": "expected an integer", "string_type": "expected a string",
    "bool_type": "expected true or false", "literal_error": "not an allowed key",
}
_EXPECTED_CONTAINER = {"list_type": "expected a list", "dict_type": "expected a mapping",
                       "model_type": "expected a mapping", "model_attributes_type": "expected a mapping"}


def key_path(loc: tuple) -> str:
    """``("rows", 0, "gain", "psnr")`` -> ``rows[0].gain.psnr``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":  # pydantic's marker of a bad mapping key
            out += f".{part}" if out else str(part)
    return out


def _brief_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(err: ValidationError) -> str:
    """The first problem of ``err``: ``missing key '<key path>'`` or ``<key path>: <problem>``
    (``(and N more)`` when there are others)."""
    first = err.errors(include_url=False)[0]
    kind, where = first["type"], key_path(first["loc"]) or "top level"
    if kind == "missing":
        text = f"missing key '{where}'"
    elif kind == "extra_forbidden":
        text = f"{where}: unexpected key (not in the format)"
    elif kind == "invalid":  # a check across fields (invalid_at): its text says it all
        text = f"{where}: {first['msg']}"
    elif kind in _EXPECTED_CONTAINER:
        text = f"{where}: {_EXPECTED_CONTAINER[kind]}, got {type(first['input']).__name__}"
    else:
        text = f"{where}: {_EXPECTED.get(kind, first['msg'])}, got {_brief_repr(first['input'])}"
    more = err.error_count() - 1
    return text + (f" (and {more} more)" if more else "")
