"""``blurdm-bench report``: render ``reports/site/index.html`` from the pipeline's outputs.

Inputs, all under ``--metrics-dir`` (default ``<repo>/metrics``) and each optional:
``table1.json``, ``ablation_prior.json``, ``ablation_stages.json``, ``t_sweep.json`` (format:
pipelines/results/metric_schemas.py, written by pipelines/tables.py) and ``costs.json`` (pipelines/profile.py),
with their untracked sidecars ``run_info/<name>`` (date, MLflow run ids, latency: pipelines/results/run_info.py);
the per-image CSVs and crops that ``table1.json`` names (relative to ``--root``; a path resolving
outside it, or a crop that is not an image, is refused); the paper's numbers in ``reports/published/``.

A section whose file is absent says "not run"; a file that is present but malformed (missing key,
wrong type) stops the build with the file and the key named. Every number on the page comes from
those files (the templates hold none). The page is rendered with Jinja2 (``StrictUndefined``) into a
temporary folder that then replaces ``--out`` whole, so a killed run never leaves a partial page; an
existing ``--out`` is replaced only when it is empty or a site rendered by this command.
The page is self-contained: inline CSS and JS, figures as local PNGs under ``assets/``.

The jobs live beside this entry point: reading and checking the inputs (:mod:`reports.inputs`), the
claims' verdicts (:mod:`reports.claims`), the page's blocks and formatting (:mod:`reports.page`), the
sections (:mod:`reports.gain_sections`, :mod:`reports.cost_section`, :mod:`reports.visual_section`,
:mod:`reports.overview_sections`) and the figures (:mod:`reports.plots`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jinja2

from models.names import column_key, scorings
from pipelines.core.config import load_params, repo_root
from pipelines.core.files import atomic_dir
from pipelines.core.params_view import restrict
from pipelines.tracking.store import checked_ui_url, ui_url
from reports.cost_section import cost_section
from reports.gain_sections import ablation_section, t_sweep_section, table1_section
from reports.inputs import (
    PUBLISHED_YAML,
    load_inputs,
    load_published,
    load_run_experiments,
)
from reports.overview_sections import runs_section, summary_section
from reports.page import Assets, Context, Section, display_path
from reports.visual_section import visual_section

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
MLFLOW_UI = "http://127.0.0.1:5000"
SITE_SIGNATURE = b"Rendered by <code>blurdm-bench report</code>"  # in index.html (templates/index.html.j2)


def template_environment():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                              autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_page(sections: list[Section], title: str, published_path: Path) -> str:
    return template_environment().get_template("index.html.j2").render(
        title=title, sections=sections, published_source=display_path(published_path, PACKAGE_DIR.parent))


def page_sections(ctx: Context, parsed: dict) -> list[Section]:
    """Every section of the page, in order (the summary, built last, shows every claim)."""
    t1_section, c1 = table1_section(ctx, parsed["table1"])
    prior_section, c2 = ablation_section(ctx, "ablation_prior", parsed["ablation_prior"])
    stages_section, c3 = ablation_section(ctx, "ablation_stages", parsed["ablation_stages"])
    t_section, c4 = t_sweep_section(ctx, parsed["t_sweep"])
    cost, c5 = cost_section(ctx, parsed["costs"])
    visual = visual_section(ctx, parsed["table1"])
    return [summary_section(ctx, parsed, [c1, c2, c3, c4, c5]), t1_section, prior_section, stages_section,
            t_section, cost, visual, runs_section(ctx)]


def build_report(metrics_dir: Path, out_dir: Path, root: Path | None = None, params=None,
                 published_path: Path = PUBLISHED_YAML, mlflow_ui: str = MLFLOW_UI) -> Path:
    """Render ``out_dir/index.html`` (+ ``assets/``) atomically; returns the index path."""

    mlflow_ui = checked_ui_url(mlflow_ui)  # every run link starts with it: http(s) only, never javascript:
    root = Path(root) if root is not None else repo_root()
    metrics_dir = Path(metrics_dir)
    published = load_published(published_path)
    parsed = load_inputs(metrics_dir, root)
    # an existing out_dir is replaced only when empty or a site we rendered (its index.html says so)
    with atomic_dir(out_dir, marker="index.html", signature=SITE_SIGNATURE) as tmp:
        ctx = Context(root=root, metrics_dir=metrics_dir, published=published, assets=Assets(tmp),
                      mlflow_ui=mlflow_ui.rstrip("/"), run_experiments=load_run_experiments(metrics_dir),
                      configured_backbones=list(params.models.backbones) if params else [],
                      configured_columns=configured_columns(params) if params else {},
                      params_profile=params.profile if params else None, controls=parsed.get("controls"))
        html = render_page(page_sections(ctx, parsed), "BlurDM reproduction report", published_path)
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
                        help="MLflow UI address (http or https) for run links (default: the tracking server when "
                             f"MLFLOW_TRACKING_URI / params mlflow_tracking_uri is http(s), else {MLFLOW_UI})")


# what this stage reads (dvc.yaml declares them but mlflow_tracking_uri: where the links point)
PARAMS_KEYS = ("profile", "train_sets", "data.max_pixels", "models.backbones", "mlflow_tracking_uri")


def configured_columns(params) -> dict[str, str]:
    """Every Table-1 column the params configure -> the training set whose models fill it."""
    return {column_key(dataset, scoring): name for name, train_set in params.train_sets.items()
            for dataset in train_set.test for scoring in scorings(dataset)}


def run(args) -> int:

    root = repo_root()
    params = restrict(load_params(args.params), PARAMS_KEYS, "the report stage")
    index = build_report(args.metrics_dir or root / "metrics", args.out or root / "reports" / "site",
                         root=args.root or root, params=params,
                         mlflow_ui=args.mlflow_ui or ui_url(params.mlflow_tracking_uri, MLFLOW_UI))
    print(f"wrote {index}")
    return 0
