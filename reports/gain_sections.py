"""The sections of the gain tables: Table 1 (every backbone, beside the paper), the prior and stage
ablations, and the T sweep; each with its claim."""
from __future__ import annotations

from models.names import (
    METRIC_NAMES,
    METRICS,
    PRIORS,
    SCORINGS,
    SIDES,
    STAGE_COMBOS,
    split_column,
)
from pipelines.results.metric_schemas import (
    AblationFile,
    AblationRow,
    AblationRows,
    Table1File,
    Table1Row,
    TSweepFile,
)
from pipelines.tracking.store import public_text  # no path of the producing machine on the page
from reports.claims import (
    Claim,
    ablation_controls,
    claim_best_t,
    claim_every_backbone,
    claim_ordering,
    gate,
    gate_every_backbone,
    paper_order,
)
from reports.inputs import (
    PAPER_METRIC,
    PAPER_SCORING,
    PAPER_VARIANT_KEY,
    REFERENCE_DATASET,
)
from reports.page import (
    NOT_RUN,
    Cell,
    Context,
    Figure,
    Paragraph,
    Row,
    Section,
    Table,
    backbone_label,
    column_label,
    dataset_label,
    fmt_ci,
    gain_cell,
    head_row,
    linked,
    not_run,
    runs_title,
    signed_cell,
    slug,
    trained_on,
    value_cell,
    variant_label,
)

PRIOR_VARIANTS = tuple(PRIORS)
STAGE_VARIANTS = (*STAGE_COMBOS, "oracle")
INPUT_METRICS = ("psnr", "ssim3d", "ssim")
R2_NOTE = ("Stage-2 R²: how much of the spread of the sharp-encoder latent SE(blur, sharp) the trained prior "
           "recovers from the blurred image alone, on the validation split (1 = exactly, 0 = no better than "
           "predicting the mean latent); mean over training seeds.")


# --- Table 1 ---------------------------------------------------------------------------------
def table1_columns(ctx: Context, t1: Table1File | None) -> list[str]:
    """Every column the page shows: ours (with rows), the configured ones, and the paper's test sets that no
    configured column covers (those say "not run", beside the paper's numbers)."""
    ours = t1.columns() if t1 else []
    configured = list(ctx.configured_columns)
    covered = {split_column(c)[0] for c in ours + configured}
    return list(dict.fromkeys(ours + configured + [d for d in ctx.published.table1.datasets if d not in covered]))


def table1_section(ctx: Context, t1: Table1File | None) -> tuple[Section, Claim]:
    pub = ctx.published
    claim = gate_every_backbone(claim_every_backbone(t1, pub), t1, ctx.controls)
    rows = t1.rows if t1 else []
    ours = t1.columns() if t1 else []
    blocks: list = [claim]
    blocks.append(Paragraph(
        "Our default dataset is the embedded synthetic motion-blur set, not GoPro: beside it the paper's GoPro "
        "numbers are shown as a reference. Absolute PSNR/SSIM are therefore not comparable; compare the gain "
        "(+BlurDM minus baseline on the same images, with its 95% paired-bootstrap CI over images). "
        "Green: CI excludes 0 in BlurDM's favour; red: against it; grey: CI contains 0. Each column comes from "
        "the models of one training set (params train_sets), named in its caption; a RealBlur test set is scored "
        "both ways: the authors' (no alignment, as the paper reports it) and the official ECC-aligned protocol."))
    for column in table1_columns(ctx, t1):
        col_rows = {r.backbone: r for r in rows if r.column == column}
        blocks.append(table1_dataset_table(ctx, t1 if column in ours else None, column, col_rows))
        if any(r.over_input for r in col_rows.values()):
            blocks.append(input_table(column, col_rows, ctx))
    status = "ok" if t1 else NOT_RUN
    sources = [ctx.source_text("table1", t1)]
    return Section("table1", "Table 1: BlurDM gain per backbone", status, sources, blocks), claim


def _column_caption(ctx: Context, column: str, col_rows: dict[str, Table1Row], run: bool) -> str:
    """The column's test set (and scoring), the training set its models come from, or why it was not run."""
    train_sets = list(dict.fromkeys(r.train_set for r in col_rows.values()))
    configured = ctx.configured_columns.get(column)
    if run:
        return f"{column_label(column)} ({trained_on(train_sets[0] if train_sets else None)})"
    if configured:
        return f"{column_label(column)}: not run ({trained_on(configured)}, params train_sets)"
    return f"{column_label(column)}: not run (no training set lists it in params train_sets)"


def table1_dataset_table(ctx: Context, t1: Table1File | None, column: str, ds_rows: dict[str, Table1Row]) -> Table:
    """Table 1 on one column, ours beside the paper's (``t1``: None when no training set produced it)."""
    pub = ctx.published
    dataset, scoring = split_column(column)
    ref = dataset if dataset in pub.table1.datasets else REFERENCE_DATASET
    # a column we did not run: only the metrics the paper publishes
    metrics = METRIC_NAMES if t1 else tuple(m for m in METRIC_NAMES if m in PAPER_METRIC)
    configured = ctx.configured_backbones if t1 or column in ctx.configured_columns else []
    backbones = list(dict.fromkeys(list(ds_rows) + configured + list(pub.table1.datasets.get(ref, {}))))
    head = [
        [Cell("Backbone", header=True, rowspan=2), Cell("Metric", header=True, rowspan=2),
         Cell(f"Ours: {column_label(column)}", header=True, colspan=3),
         Cell(f"Paper: {dataset_label(ref)}", header=True, colspan=3), Cell("Runs", header=True, rowspan=2)],
        head_row([("ours_baseline", "baseline"), ("ours_blurdm", "+BlurDM"), ("ours_gain", "gain [95% CI]"),
                  ("paper_baseline", "baseline"), ("paper_blurdm", "+BlurDM"), ("paper_gain", "gain")]),
    ]
    body: list[Row] = []
    missing: dict[str, None] = {}  # why LPIPS is n/a (each reason once)
    for backbone in backbones:
        body += _table1_backbone_rows(ctx, column, ref, backbone, ds_rows.get(backbone), metrics, missing)
    body += _table1_average_rows(ctx, t1, column, ref, metrics)
    notes = []
    if ref != dataset:
        notes.append(f"The paper has no {dataset_label(dataset)} results: its {dataset_label(ref)} numbers are "
                     f"shown for reference; compare the gains, not the absolute values.")
    if scoring is not None and scoring != PAPER_SCORING:
        notes.append(f"The paper's {dataset_label(ref)} numbers use the {SCORINGS[PAPER_SCORING]}; ours here use the "
                     f"{SCORINGS[scoring]} (pipelines/evaluation/alignment.py).")
    if missing:
        notes.append(f"LPIPS n/a in our runs: {'; '.join(missing)}. Put the two weight files where "
                     f"pipelines/evaluation/image_metrics.py (LPIPS_HOWTO) says and re-run the evaluation to score it.")
    if ds_rows:
        notes.append("Each of our numbers links to its MLflow run(s) (several training seeds: the compare page).")
    return Table(id=slug("table1", column), caption=_column_caption(ctx, column, ds_rows, t1 is not None),
                 head=head, rows=body, notes=notes)


def _table1_backbone_rows(ctx: Context, column: str, ref: str, backbone: str, row: Table1Row | None,
                          metrics: tuple[str, ...], missing: dict[str, None]) -> list[Row]:
    """One row per metric of one backbone: ours (or "not run"), the paper's, the runs link."""
    runs_href, title = None, None
    if row is not None:
        entries = [(side, row.dvc_stages[side], row.runs[side]) for side in SIDES]
        item = f"{column_label(column)} / {backbone_label(backbone)} ({trained_on(row.train_set)})"
        runs_href = ctx.add_runs("Table 1", item, entries, "table1", column, backbone)
        title = runs_title(entries)
    body = []
    for k, metric in enumerate(metrics):
        cells = []
        if k == 0:
            cells.append(Cell(backbone_label(backbone), col="backbone", header=True, rowspan=len(metrics)))
        cells.append(Cell(METRICS[metric].label, col="metric", css="metric"))
        cells += _table1_ours_cells(ctx, row, metric, title, missing)
        cells += _table1_paper_cells(ctx, ref, backbone, metric)
        if k == 0:
            cells.append(Cell("runs", col="runs", href=runs_href, rowspan=len(metrics), title=title)
                         if runs_href else Cell("not run", col="runs", css="notrun", rowspan=len(metrics)))
        body.append(Row(cells, key=f"{backbone}/{metric}", css="first" if k == 0 else ""))
    return body


def _table1_ours_cells(ctx: Context, row: Table1Row | None, metric: str, title: str | None,
                       missing: dict[str, None]) -> list[Cell]:
    if row is None:
        return [not_run("ours", colspan=3)]
    if metric == "lpips" and row.lpips_reason and row.gain[metric] is None:
        # said once, in the table's note (the reason names no path of the producing machine)
        missing[public_text(row.lpips_reason)] = None
        return [Cell("n/a (see the note below the table)", col="ours", css="na", colspan=3)]
    spec = METRICS[metric]
    return [linked(value_cell("ours_baseline", row.baseline[metric], spec.value_digits, "n/a", title),
                   ctx.href(row.runs["baseline"])),
            linked(value_cell("ours_blurdm", row.blurdm[metric], spec.value_digits, "n/a", title),
                   ctx.href(row.runs["blurdm"])),
            linked(gain_cell("ours_gain", row.gain[metric], spec.gain_digits, spec.higher_is_better, "n/a", title),
                   ctx.href(row.runs["blurdm"] + row.runs["baseline"]))]


def _table1_paper_cells(ctx: Context, ref: str, backbone: str, metric: str) -> list[Cell]:
    pub, digits = ctx.published, METRICS[metric]
    paper_na = "not published" if pub.t1(ref, backbone, "baseline", "psnr") is not None else "not in the paper"
    return [value_cell("paper_baseline", pub.t1(ref, backbone, "baseline", metric), digits.value_digits, paper_na),
            value_cell("paper_blurdm", pub.t1(ref, backbone, "blurdm", metric), digits.value_digits, paper_na),
            signed_cell("paper_gain", pub.t1_gain(ref, backbone, metric), digits.gain_digits, paper_na)]


def _table1_average_rows(ctx: Context, t1: Table1File | None, column: str, ref: str,
                         metrics: tuple[str, ...]) -> list[Row]:
    body = []
    for k, metric in enumerate(metrics):
        digits = METRICS[metric].gain_digits
        cells = []
        if k == 0:
            cells.append(Cell("Average gain", col="backbone", header=True, rowspan=len(metrics)))
        cells.append(Cell(METRICS[metric].label, col="metric", css="metric"))
        if t1:
            cells += [Cell("mean over backbones", colspan=2, css="muted"),
                      signed_cell("ours_gain", t1.average_gain[column][metric], digits, "n/a")]
        else:
            cells.append(not_run("ours", colspan=3))
        cells += [Cell("mean over backbones", colspan=2, css="muted"),
                  signed_cell("paper_gain", ctx.published.average(ref, metric), digits, "not published")]
        if k == 0:
            cells.append(Cell("", col="runs", rowspan=len(metrics)))
        body.append(Row(cells, key=f"average/{metric}", css="average" + (" first" if k == 0 else "")))
    return body


def input_table(column: str, ds_rows: dict[str, Table1Row], ctx: Context | None = None) -> Table:
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
            spec = METRICS[metric]
            cells = []
            if k == 0:
                cells.append(Cell(backbone_label(backbone), col="backbone", header=True, rowspan=len(INPUT_METRICS)))
            cells += [Cell(spec.label, col="metric", css="metric"),
                      value_cell("input", row.input[metric] if row.input else None, spec.value_digits),
                      linked(gain_cell("input_baseline", row.over_input["baseline"][metric], spec.gain_digits),
                             ctx.href(row.runs["baseline"]) if ctx else None),
                      linked(gain_cell("input_blurdm", row.over_input["blurdm"][metric], spec.gain_digits),
                             ctx.href(row.runs["blurdm"]) if ctx else None)]
            body.append(Row(cells, key=f"{backbone}/{metric}/input", css="first" if k == 0 else ""))
    return Table(id=slug("table1-input", column), caption=f"{column_label(column)}: gain over the blurred input",
                 head=head, rows=body, notes=["A model that deblurs has a gain above 0 here. Green: CI above 0; "
                                              "red: the model makes the blurred images worse."])


# --- the ablations ----------------------------------------------------------------------------
def ablation_section(ctx: Context, key: str, ablation: AblationFile | None) -> tuple[Section, Claim]:
    pub = ctx.published
    prior = key == "ablation_prior"
    variants = PRIOR_VARIANTS if prior else STAGE_VARIANTS
    values = pub.ablation_prior if prior else pub.ablation_stages
    order = paper_order(values, variants)
    chain = " < ".join(variant_label(v) for v in order)
    numbers = " < ".join(f"{values[PAPER_VARIANT_KEY.get(v, v)]:.2f}" for v in order)
    anchor = "prior" if prior else "stages"
    statement = f"{'Prior' if prior else 'Training-stage'} ordering {chain} (paper, GoPro PSNR: {numbers})"
    by_variant = ablation.by_variant() if ablation else {}
    claim = claim_ordering("prior_order" if prior else "stage_order", statement, order,
                           {v: r.gain for v, r in by_variant.items()}, anchor)
    if ablation:
        claim = gate(claim, ctx.controls, ablation_controls(ctx.controls, ablation.dataset, order))
    blocks: list = [claim]
    if ablation:
        blocks.append(Paragraph(
            f"Ours: {column_label(ablation.dataset)}, {backbone_label(ablation.backbone)} "
            f"({trained_on(ablation.train_set)}); the paper: GoPro, "
            f"MIMO-UNet family. Absolute PSNR differs with the data; the ordering and the gains are what compare. "
            f"Gains are paired over the same images (bootstrap {ablation.meta.bootstrap.resamples} resamples)."))
    blocks.append(ablation_variants_table(ctx, key, ablation, variants))
    for name, other in (ablation.other_datasets.items() if ablation else []):
        hrefs = {v: ctx.href(r.runs) for v, r in by_variant.items()}
        blocks.append(other_dataset_table(key, name, other, variants, hrefs))
    if not prior:
        blocks.append(Paragraph("Gains are over the no-prior baseline (the 'none' model of the prior ablation) on "
                                "the same images; the paper's gains use its prior-ablation baseline.", css="note"))
    title = "Prior ablation: which diffusion prior" if prior else "Stage combinations"
    return Section(anchor, title, "ok" if ablation else NOT_RUN, [ctx.source_text(key, ablation)], blocks), claim


def ablation_variants_table(ctx: Context, key: str, ablation: AblationFile | None, variants: tuple[str, ...]) -> Table:
    """Every variant of the ablation ``key``: ours on the first test set beside the paper's."""
    pub = ctx.published
    block = "prior" if key == "ablation_prior" else "stages"
    study = "Prior ablation" if key == "ablation_prior" else "Stage ablation"
    baseline_paper = pub.ablation_prior[PAPER_VARIANT_KEY["none"]]
    head = [head_row([("variant", "Variant"), ("ours_psnr", "Ours PSNR"), ("ours_gain", "Ours gain vs none [95% CI]"),
                      ("ours_input_gain", "Ours gain vs blurred input [95% CI]"), ("ours_ssim3d", "Ours SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("paper_psnr", "Paper PSNR (GoPro)"),
                      ("paper_gain", f"Paper gain vs none ({baseline_paper:.2f})"), ("runs", "DVC stage / runs")])]
    body = [input_row(ablation, paper_columns=2)] if ablation and ablation.input is not None else []
    by_variant = ablation.by_variant() if ablation else {}
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
            title = runs_title(entries)
            cells += ablation_cells(row, title, ctx.href(row.runs))
        cells += [value_cell("paper_psnr", paper_value, 2, "not in the paper"),
                  signed_cell("paper_gain", None if paper_value is None else paper_value - baseline_paper, 2,
                              "not in the paper")]
        cells.append(Cell(row.dvc_stage, col="runs", href=href, title=title) if row is not None else not_run("runs"))
        body.append(Row(cells, key=variant))
    return Table(id=slug("table", key), caption="", head=head, rows=body, notes=[R2_NOTE])


def ablation_cells(row: AblationRow, title: str | None = None, href: str | None = None) -> list[Cell]:
    r2 = row.stage2_r2.mean if row.stage2_r2 is not None else None
    return [linked(c, href) for c in (
        value_cell("ours_psnr", row.psnr, 2, title=title), gain_cell("ours_gain", row.gain, 2, title=title),
        gain_cell("ours_input_gain", row.over_input, 2, title=title),
        value_cell("ours_ssim3d", row.ssim3d, 3, title=title),
        value_cell("ours_r2", r2, 3, na_text="no stage 2", title=title))]


def input_row(ablation: AblationRows, paper_columns: int) -> Row:
    """The reference row: the blurred test input itself (doing nothing)."""
    cells = [Cell("blurred input (doing nothing)", col="variant", header=True),
             value_cell("ours_psnr", ablation.input["psnr"], 2), Cell("", col="ours_gain"),
             Cell("", col="ours_input_gain"), value_cell("ours_ssim3d", ablation.input["ssim3d"], 3),
             Cell("", col="ours_r2")]
    cells += [Cell("", col="paper") for _ in range(paper_columns)] + [Cell("", col="runs")]
    return Row(cells, key="input", css="average")


def other_dataset_table(key: str, dataset: str, ablation: AblationRows, variants,
                        hrefs: dict[str, str | None] | None = None) -> Table:
    """The same ablation scored on another test set (no paper columns: the paper has no such set)."""
    head = [head_row([("variant", "Variant"), ("ours_psnr", "PSNR"), ("ours_gain", "gain vs none [95% CI]"),
                      ("ours_input_gain", "gain vs blurred input [95% CI]"), ("ours_ssim3d", "SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("runs", "DVC stage")])]
    by_variant = ablation.by_variant()
    body = [input_row(ablation, paper_columns=0)] if ablation.input is not None else []
    for variant in list(dict.fromkeys(list(variants) + list(by_variant))):
        row = by_variant.get(variant)
        if row is None:
            continue
        body.append(Row([Cell(variant_label(variant), col="variant", header=True),
                         *ablation_cells(row, href=(hrefs or {}).get(variant)),
                         Cell(row.dvc_stage, col="runs")], key=f"{dataset}/{variant}"))
    return Table(id=slug("table", key, dataset), caption=f"{column_label(dataset)}",
                 head=head, rows=body, notes=[R2_NOTE])


# --- the T sweep ------------------------------------------------------------------------------
def t_sweep_section(ctx: Context, sweep: TSweepFile | None) -> tuple[Section, Claim]:
    pub = ctx.published
    best_t = pub.t_sweep.best_T
    claim = claim_best_t(sweep, best_t)
    if sweep is not None and sweep.rows:
        claim = gate(claim, ctx.controls, ablation_controls(ctx.controls, sweep.dataset, [r.variant for r in sweep.rows]))
    blocks: list = [claim]
    if sweep is None or not sweep.rows:
        blocks.append(Paragraph(f"Not run. The paper reports T={best_t} as best (no per-T table is published)."))
        return Section("t-sweep", "T sweep: number of diffusion steps", NOT_RUN,
                       [ctx.source_text("t_sweep", sweep)], blocks), claim
    rows = sorted(sweep.rows, key=lambda r: r.T)
    peak = max(rows, key=lambda r: (r.gain.mean, -r.T))
    blocks.append(Paragraph(
        f"Ours ({column_label(sweep.dataset)}, {backbone_label(sweep.backbone)}) peaks at T={peak.T} "
        f"({fmt_ci(peak.gain, 2)} dB over no prior); the paper's best is T={best_t}."))
    blocks.append(t_sweep_figure(ctx, sweep, rows))
    head = [head_row([("T", "T"), ("ours_psnr", "Ours PSNR"), ("ours_gain", "Ours gain vs none [95% CI]"),
                      ("ours_input_gain", "Ours gain vs blurred input [95% CI]"), ("ours_ssim3d", "Ours SSIM (3-D)"),
                      ("ours_r2", "Stage-2 R²"), ("runs", "DVC stage / runs")])]
    body = []
    for row in rows:
        entries = [(row.variant, row.dvc_stage, row.runs)]
        href = ctx.add_runs("T sweep", row.variant, entries, "t_sweep", row.T)
        title = runs_title(entries)
        body.append(Row([Cell(str(row.T), value=row.T, col="T", header=True),
                         *ablation_cells(row, title, ctx.href(row.runs)),
                         Cell(row.dvc_stage, col="runs", href=href, title=title)], key=f"T={row.T}"))
    blocks.append(Table(id="table-t-sweep", caption="", head=head, rows=body, sortable=True, notes=[R2_NOTE]))
    for name, other in sweep.other_datasets.items():
        blocks.append(other_dataset_table("t_sweep", name, other, [f"T={r.T}" for r in rows],
                                          {r.variant: ctx.href(r.runs) for r in rows}))
    return Section("t-sweep", "T sweep: number of diffusion steps", "ok", [ctx.source_text("t_sweep", sweep)],
                   blocks), claim


def t_sweep_figure(ctx: Context, sweep: TSweepFile, rows: list) -> Figure:
    """The PSNR gain against T with its confidence band, drawn into the site's assets."""
    from reports.plots import (
        t_sweep_plot,  # lazy: matplotlib + seaborn take ~1.8 s, only for a figure
    )

    confidence = sweep.meta.bootstrap.confidence
    path, rel = ctx.assets.target("t_sweep.png")
    t_sweep_plot(path, [r.T for r in rows], [r.gain.mean for r in rows], [r.gain.ci_low for r in rows],
                 [r.gain.ci_high for r in rows], ctx.published.t_sweep.best_T, confidence)
    return Figure(rel, "PSNR gain against T with confidence band",
                  f"PSNR gain over the no-prior baseline against T; band: {confidence:.0%} CI.")
