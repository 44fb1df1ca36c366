"""The page's first and last sections: the summary (every claim's verdict, what was run, the input
files) and the runs (every MLflow run and DVC stage a result links to)."""
from __future__ import annotations

from pipelines.results.run_info import NOT_RECORDED
from pipelines.results.metric_schemas import Meta
from reports.claims import Claim, control_text
from reports.inputs import METRIC_FILES
from reports.page import (
    NOT_RUN,
    Cell,
    Context,
    Paragraph,
    Row,
    Section,
    Table,
    backbone_label,
    column_label,
    head_row,
    trained_on,
)


def commit_text(meta: Meta) -> str:
    return meta.git_commit or "unknown"  # null: the tables were made outside a git checkout


def date_text(meta: Meta) -> str:
    return meta.date if meta.date is not None else NOT_RECORDED  # the sidecar (run_info/) holds the date


def summary_section(ctx: Context, parsed: dict, claims: list[Claim]) -> Section:
    controls = parsed.get("controls")
    blocks: list = [*controls_banner(controls), controls_table(controls),
                    Paragraph("Verdicts: 'reproduced' only when our confidence intervals support the claim; "
                              "'not reproduced' when they do not (including when BlurDM does not beat the baseline "
                              "in our runs: a finding, reported with its numbers); 'inconclusive' when a positive "
                              "control the claim depends on failed (the table above: the study could not have "
                              "detected the effect); 'not run' when the experiment is missing or not comparable."),
                    claims_table(claims)]
    metas = [(key, p.meta) for key, p in parsed.items() if p is not None and hasattr(p, "meta")]
    if metas:
        blocks.append(run_info_table(ctx, parsed.get("table1"), *metas[0]))
        meta = metas[0][1]
        if ctx.params_profile and ctx.params_profile != meta.profile:
            blocks.append(Paragraph(f"Note: params.yaml now selects profile '{ctx.params_profile}'; these results "
                                    f"were produced with profile '{meta.profile}'.", css="note"))
    else:
        blocks.append(Paragraph("No evaluation results were found: nothing has been run yet"
                                + (f" (params.yaml profile: {ctx.params_profile})." if ctx.params_profile else ".")))
    blocks.append(inputs_table(ctx, parsed))
    return Section("summary", "Summary", "ok", [ctx.shown(n) for n in METRIC_FILES.values()], blocks)


def claims_table(claims: list[Claim]) -> Table:
    rows = [Row([Cell(claim.statement, col="claim", header=True),
                 Cell(claim.verdict, col="verdict", css=f"badge {claim.css}"),
                 Cell("", col="evidence", css="evidence", lines=claim.evidence),
                 Cell("details", col="section", href=f"#{claim.anchor}")], key=claim.key) for claim in claims]
    return Table(id="table-claims", caption="The paper's claims",
                 head=[head_row([("claim", "Claim"), ("verdict", "Verdict"), ("evidence", "Our numbers"),
                                 ("section", "Section")])], rows=rows)


def seed_list(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def training_seeds_text(meta: Meta, backbones: list[str]) -> str:
    """The training seeds, per backbone where a profile gives backbones their own (the cpu profile: MIMO-UNet 3
    seeds, the others 1); ``train.seeds`` alone for older tables, which do not record them per backbone."""
    recorded = meta.train_seeds_by_backbone or {}
    by_backbone = {b: recorded[b] for b in (backbones or recorded) if b in recorded}  # Table 1's order
    if not by_backbone or all(list(s) == list(meta.train_seeds) for s in by_backbone.values()):
        return seed_list(meta.train_seeds)
    return "; ".join(f"{backbone_label(b)}: {seed_list(s)}" for b, s in by_backbone.items())


def run_info_table(ctx: Context, t1, key: str, meta: Meta) -> Table:
    """What was run, from the first metric file present (``key``)."""
    columns = {r.column: r.train_set for r in t1.rows} if t1 else {}
    backbones = list(dict.fromkeys(r.backbone for r in t1.rows)) if t1 else []
    boot = meta.bootstrap
    info = [
        ("Profile", meta.profile), ("Model scale", meta.scale),
        ("Datasets", ", ".join(f"{column_label(c)} ({trained_on(t)})" if t else column_label(c)
                               for c, t in columns.items()) or "none (Table 1 not run)"),
        ("Backbones", ", ".join(backbone_label(b) for b in backbones) or "none (Table 1 not run)"),
        ("Training seeds", training_seeds_text(meta, backbones)),
        ("Evaluation seeds", seed_list(meta.eval_seeds)),
        ("Bootstrap", f"{boot.resamples} resamples, seed {boot.seed}, {boot.confidence:.0%} CI, paired over images"),
        ("Git commit", commit_text(meta)), ("Date", date_text(meta)),
        ("Machine", ", ".join(f"{k}: {v}" for k, v in meta.machine.items())),
    ]
    rows = [Row([Cell(k, header=True), Cell(v, col="value")], key=k) for k, v in info]
    return Table(id="table-run-info", caption=f"What was run (from {ctx.shown(METRIC_FILES[key])})", head=[], rows=rows)


def inputs_table(ctx: Context, parsed: dict) -> Table:
    """Every metric file: present or not, and the profile, scale, commit and date it records."""
    rows = []
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
                     Cell(commit_text(meta), col="commit", css="mono"), Cell(date_text(meta), col="date")]
        rows.append(Row([Cell(ctx.shown(name), col="file", header=True, css="mono")] + cells, key=key))
    return Table(id="table-inputs", caption="Input files",
                 head=[head_row([("file", "File"), ("status", "Status"), ("profile", "Profile"),
                                 ("scale", "Scale"), ("commit", "Git commit"), ("date", "Date")])], rows=rows)


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


# --- can this study answer? ------------------------------------------------------------------
def controls_banner(controls) -> list[Paragraph]:
    """What the page says at the top when its numbers are not findings."""
    if controls is None:
        return [Paragraph("No positive controls were computed (metrics/controls.json is absent): nothing below "
                          "shows that this study could have detected the effects it reports on, so every claim "
                          "is inconclusive.", css="banner")]
    if controls.pipeline_check:
        return [Paragraph(f"A pipeline check, not findings: these numbers come from the '{controls.meta.profile}' "
                          "profile, whose models train for a few steps on a tiny dataset. They show that every stage "
                          "of the pipeline runs; no number below says anything about BlurDM.", css="banner")]
    failed = [c for kind in ("deblurring", "sensitivity") for c in getattr(controls, kind) if not c.passed]
    if failed:
        return [Paragraph(f"{len(failed)} positive control(s) failed (below): the claims that depend on them are "
                          "inconclusive, and the numbers those claims rest on are a check of the pipeline, not "
                          "findings.", css="banner")]
    return []


def controls_table(controls) -> Table:
    """"Can this study answer?": each control on each test set, passed or not, with the worst case's numbers."""
    head = [head_row([("control", "Control"), ("column", "Test set"), ("result", "Result"),
                      ("passed", "Passed"), ("worst", "Weakest case (PSNR, 95% CI)")])]
    rows: list[Row] = []
    what = {"deblurring": "every model beats the blurred input",
            "sensitivity": "the oracle prior beats the no-prior baseline"}
    for kind in ("deblurring", "sensitivity"):
        entries = getattr(controls, kind) if controls else []
        for column in dict.fromkeys(c.column for c in entries):
            of_column = [c for c in entries if c.column == column]
            measured = [c for c in of_column if c.gain is not None]
            worst = min(measured, key=lambda c: c.gain.ci_low - c.threshold_db, default=None)
            passed = all(c.passed for c in of_column)
            rows.append(Row([Cell(f"{kind}: {what[kind]}", col="control", header=True),
                             Cell(column_label(column), col="column"),
                             Cell("passed" if passed else "failed", col="result",
                                  css="badge control-" + ("passed" if passed else "failed")),
                             Cell(f"{sum(c.passed for c in of_column)} of {len(of_column)}", col="passed"),
                             Cell(control_text(worst) if worst else "not evaluated", col="worst")],
                            key=f"{kind}-{column}"))
    notes = []
    if controls:
        t = controls.thresholds
        notes.append(f"Thresholds (params controls): a model's gain over the blurred input must have its CI low end "
                     f"above {t['deblurring_min_gain_db']:+.2f} dB; the oracle's gain over no prior above "
                     f"{t['sensitivity_min_gain_db']:+.2f} dB (paired bootstrap over images, "
                     f"{t['confidence']:.0%} CI).")
    else:
        notes.append("metrics/controls.json is absent: run the tables stage.")
    return Table(id="table-controls", caption="Can this study answer? The positive controls", head=head, rows=rows,
                 notes=notes)
