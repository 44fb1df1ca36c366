"""What the templates render (plain data, no logic), how numbers are written, and what every section
builder shares (:class:`Context`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from models.names import BACKBONES, DATASETS, SCORINGS, label, split_column
from pipelines.results.metric_schemas import Gain
from pipelines.tracking.store import run_href
from reports.inputs import METRIC_FILES, Published

NOT_RUN = "not run"  # a section's status, a cell, a verdict


# --- names ------------------------------------------------------------------------------------
def dataset_label(name: str) -> str:
    return DATASETS.get(name, name)


def column_label(column: str) -> str:
    """A Table-1 column: its test set, and for a RealBlur set the scoring (``RealBlur-J, official ...``)."""
    dataset, scoring = split_column(column)
    return dataset_label(dataset) + (f", {SCORINGS[scoring]}" if scoring else "")


def trained_on(train_set: str | None) -> str:
    """Which training set's models a column comes from (unknown in tables older than the training sets)."""
    return f"models trained on {dataset_label(train_set)}" if train_set else "training set not recorded"


def backbone_label(name: str) -> str:
    return BACKBONES[name].label if name in BACKBONES else name


def variant_label(name: str) -> str:
    return label("none" if name == "baseline" else name)


def slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts)).strip("-")


def display_path(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --- the blocks of a page ---------------------------------------------------------------------
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


# --- numbers as text --------------------------------------------------------------------------
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


# --- cells ------------------------------------------------------------------------------------
def not_run(col: str = "", colspan: int = 1) -> Cell:
    return Cell(NOT_RUN, col=col, css="notrun", colspan=colspan)


def value_cell(col: str, value: float | None, digits: int, na_text: str = "n/a", title: str | None = None) -> Cell:
    if value is None:
        return Cell(na_text, col=col, css="na", title=title)
    return Cell(fmt(value, digits), value=value, col=col, css="num", title=title)


def signed_cell(col: str, value: float | None, digits: int, na_text: str) -> Cell:
    if value is None:
        return Cell(na_text, col=col, css="na")
    return Cell(fmt_signed(value, digits), value=value, col=col, css="num")


def pct_cell(col: str, ratio: float | None) -> Cell:
    if ratio is None:
        return Cell("n/a", col=col, css="na")
    return Cell(fmt_pct(ratio), value=ratio, col=col, css="num")


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


def head_row(labels: list[tuple[str, str]]) -> list[Cell]:
    return [Cell(text, col=col, header=True) for col, text in labels]


def runs_title(entries: list[tuple[str, str, list[str]]]) -> str:
    return "; ".join(f"{role}: DVC stage {stage}, MLflow run(s) {', '.join(ids) or 'none recorded'}"
                     for role, stage, ids in entries)


# --- what the section builders share ----------------------------------------------------------
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
    configured_columns: dict[str, str]  # every Table-1 column of the params -> the training set that fills it
    params_profile: str | None
    run_groups: list[RunGroup] = field(default_factory=list)
    run_experiments: dict[str, str] = field(default_factory=dict)  # MLflow run id -> experiment id
    controls: object | None = None  # the study's positive controls (ControlsFile; None: not computed)

    def href(self, run_ids: list[str]) -> str | None:
        """The MLflow UI page of these runs (one run; several training seeds: the compare page)."""
        return run_href(self.mlflow_ui, run_ids, self.run_experiments)

    def shown(self, name: str) -> str:
        return display_path(self.metrics_dir / name, self.root)

    def source_text(self, key: str, parsed) -> str:
        """The metric file of ``key`` as a section names it (``parsed``: None when it is absent)."""
        return self.shown(METRIC_FILES[key]) + ("" if parsed is not None else " (absent: not run)")

    def add_runs(self, study: str, item: str, entries: list[tuple[str, str, list[str]]], *key) -> str:
        anchor = slug("runs", *key)
        self.run_groups.append(RunGroup(anchor, study, item, entries))
        return "#" + anchor
