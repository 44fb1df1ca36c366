"""The visual comparison: the crops each Table-1 evaluation saved, side by side, and the distribution
of the per-image PSNR gain (recomputed from the per-image scores)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.core.errors import InvalidInputError
from pipelines.evaluation.score_files import per_image, read_scores
from pipelines.results.metric_schemas import CROP_KINDS, Table1File, Table1Row
from reports.page import (
    NOT_RUN,
    Cell,
    Context,
    Figure,
    Gallery,
    Paragraph,
    Row,
    Section,
    Table,
    backbone_label,
    column_label,
    head_row,
    pct_cell,
    slug,
    value_cell,
)

MAX_CROP_IMAGES = 3
CROP_LABELS = {"blurred": "blurred", "baseline": "baseline", "blurdm": "+BlurDM", "sharp": "sharp"}


def visual_section(ctx: Context, t1: Table1File | None) -> Section:
    blocks: list = []
    if t1 is None or not t1.rows:
        blocks.append(Paragraph("Not run: Table 1 has no results (metrics/table1.json absent)."))
        return Section("visual", "Visual comparison", NOT_RUN, [ctx.source_text("table1", t1)], blocks)
    sources = [ctx.source_text("table1", t1)]
    for row in t1.rows:
        if row.crops:
            blocks.append(crop_gallery(ctx, row, blocks))
    if not any(isinstance(b, Gallery) for b in blocks):
        blocks.append(Paragraph("No crops were saved by the evaluation (table1.json lists none).", css="note"))
    for column in t1.columns():
        blocks += gain_distribution(ctx, [r for r in t1.rows if r.column == column], column, sources)
    return Section("visual", "Visual comparison", "ok", list(dict.fromkeys(sources)), blocks)


def crop_gallery(ctx: Context, row: Table1Row, notes: list) -> Gallery:
    """The first crops of one evaluation, copied into the site; a missing crop adds a note to ``notes``."""
    count = min(len(row.crops[kind]) for kind in CROP_KINDS)
    gallery_rows = []
    for i in range(min(count, MAX_CROP_IMAGES)):
        figures: list[Figure | None] = []
        for kind in CROP_KINDS:
            src = ctx.root / row.crops[kind][i]
            if not src.is_file():
                notes.append(Paragraph(f"crop missing: {row.crops[kind][i]}", css="note"))
                figures.append(None)
                continue
            rel = ctx.assets.copy(src, f"crops/{slug(row.column, row.backbone, i, kind)}{src.suffix.lower()}")
            figures.append(Figure(rel, f"{CROP_LABELS[kind]} crop {i + 1}, {row.column} {row.backbone}",
                                  CROP_LABELS[kind], css="crop"))
        gallery_rows.append((Path(row.crops["sharp"][i]).stem.removesuffix("_sharp"), figures))
    title = f"{column_label(row.column)} / {backbone_label(row.backbone)}"
    return Gallery(slug("crops", row.column, row.backbone), title, [CROP_LABELS[k] for k in CROP_KINDS], gallery_rows)


def _read_per_image(ctx: Context, paths: list[str]):
    """PSNR per image name, averaged over evaluation seeds and over the files (training seeds)."""
    series = [per_image(read_scores(ctx.root / p), "psnr") for p in paths]
    names = set(series[0].index)
    for p, s in zip(paths[1:], series[1:], strict=True):
        if set(s.index) != names:
            raise InvalidInputError(f"{ctx.root / p}: scores different images than {ctx.root / paths[0]}")
    return pd.concat(series, axis=1).mean(axis=1)


def per_image_gain(ctx: Context, row: Table1Row):
    """+BlurDM minus baseline PSNR per image of one Table-1 row, by image name."""
    base = _read_per_image(ctx, row.per_image.files("baseline"))
    method = _read_per_image(ctx, row.per_image.files("blurdm"))
    if set(base.index) != set(method.index):
        raise InvalidInputError(f"{ctx.root / row.per_image.files('blurdm')[0]} and "
                         f"{ctx.root / row.per_image.files('baseline')[0]} score different images; cannot pair them")
    return (method - base.loc[method.index]).sort_index()


def gain_distribution(ctx: Context, rows: list[Table1Row], dataset: str, sources: list[str]) -> list:
    """The per-image PSNR gains of every backbone on ``dataset``: a plot and a table (the CSVs read are
    added to ``sources``); a backbone whose scores are missing gets a note instead."""
    blocks: list = []
    frames, stats = [], []
    for row in rows:
        paths = row.per_image.files("baseline") + row.per_image.files("blurdm")
        missing = [p for p in paths if not (ctx.root / p).is_file()]
        if missing:
            blocks.append(Paragraph(f"{column_label(dataset)} / {backbone_label(row.backbone)}: per-image scores "
                                    f"missing ({', '.join(missing)}); not plotted.", css="note"))
            continue
        sources += list(paths)
        gain = per_image_gain(ctx, row)
        frames.append(pd.DataFrame({"backbone": backbone_label(row.backbone), "name": gain.index, "gain": gain.values}))
        stats.append(Row([Cell(backbone_label(row.backbone), col="backbone", header=True),
                          Cell(str(gain.size), value=gain.size, col="images", css="num"),
                          value_cell("mean", float(gain.mean()), 3), value_cell("median", float(gain.median()), 3),
                          pct_cell("improved", float((gain > 0).mean())),
                          value_cell("min", float(gain.min()), 3), value_cell("max", float(gain.max()), 3)],
                         key=row.backbone))
    if not frames:
        return blocks
    from reports.plots import (
        gain_distribution_plot,  # lazy: matplotlib + seaborn take ~1.8 s, only for a figure
    )

    path, rel = ctx.assets.target(f"gain_distribution_{slug(dataset)}.png")
    gain_distribution_plot(path, pd.concat(frames, ignore_index=True), f"{column_label(dataset)}: per-image PSNR gain")
    blocks.append(Figure(rel, f"per-image PSNR gain distribution, {dataset}",
                         f"{column_label(dataset)}: per-image PSNR gain of +BlurDM over the baseline "
                         f"(per image: mean over evaluation and training seeds)."))
    head = [head_row([("backbone", "Backbone"), ("images", "Images"), ("mean", "Mean gain (dB)"),
                      ("median", "Median gain (dB)"), ("improved", "Images improved"), ("min", "Min (dB)"),
                      ("max", "Max (dB)")])]
    blocks.append(Table(id=slug("table-per-image", dataset), caption=f"{column_label(dataset)}: per-image gains",
                        head=head, rows=stats, sortable=True))
    return blocks
