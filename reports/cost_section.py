"""The cost section: size, compute and latency of every backbone with and without BlurDM, the
overhead BlurDM adds, and the BlurDM module alone, beside the paper's figures."""
from __future__ import annotations

from models.names import SIDES
from pipelines.results.metric_schemas import CostsFile, LatencyResult
from reports.claims import Claim, claim_overhead
from reports.page import (
    NOT_RUN,
    Cell,
    Context,
    Paragraph,
    Row,
    Section,
    Table,
    backbone_label,
    head_row,
    not_run,
    pct_cell,
    slug,
    value_cell,
)


def size_label(size: tuple[int, int]) -> str:
    h, w = size
    return f"{h}x{w}" + (" (720p)" if (h, w) == (720, 1280) else "")


def _latency_cell(col: str, row: LatencyResult | None) -> Cell:
    if row is None:
        return not_run(col)
    return Cell(f"{row.median_ms:.1f} (IQR {row.iqr_ms:.1f})", value=row.median_ms, col=col, css="num")


def cost_section(ctx: Context, costs: CostsFile | None) -> tuple[Section, Claim]:
    paper = ctx.published.overhead
    claim = claim_overhead(costs, ctx.published)
    blocks: list = [claim]
    blocks.append(Paragraph(
        "Units: a multiply-accumulate (MAC) is two FLOPs. The paper's 'GFLOPs' are thop MACs (convolution and "
        "linear layers only). We report thop-style MACs, complete MACs (attention matmuls and FFTs included) "
        "and complete FLOPs separately, all at 1x3x256x256."))
    if costs is None:
        blocks.append(Paragraph(f"Not run. The paper: ~{paper.gflops:g} GMACs (its 'GFLOPs'), "
                                f"{paper.params_m:g} M parameters, ~{paper.latency_ms:g} ms, "
                                f"< {paper.flops_share_max:.0%} overhead."))
        return Section("cost", "Cost", NOT_RUN, [ctx.source_text("costs", None)], blocks), claim
    env, lat = costs.environment, costs.latency
    blocks.append(Paragraph(
        f"Model scale: {costs.scale}; T={costs.T}. Counted on the meta device (torch {env.torch_version}). "
        + (f"Latency: {lat.timer} on {lat.device} ({lat.device_name}), {lat.threads} threads, "
           f"median and IQR of {lat.repeats} runs after {lat.warmup} warm-up runs."
           if lat else "Latency: not measured (profile without --latency).")))
    blocks += [backbone_cost_table(ctx, costs), overhead_table(ctx, costs), module_table(ctx, costs)]
    sources = [ctx.source_text("costs", costs) + " (DVC stage: profile)"]
    return Section("cost", "Cost", "ok", sources, blocks), claim


def backbone_cost_table(ctx: Context, costs: CostsFile) -> Table:
    """Size, compute and latency of every backbone, baseline and +BlurDM, beside the published size."""
    sizes = costs.latency_sizes()
    cols = [("backbone", "Backbone"), ("variant", "Variant"), ("params_m", "Params (M)"),
            ("thop_gmacs", "thop MACs (G)"), ("gmacs", "MACs (G)"), ("gflops", "FLOPs (G)")]
    cols += [(slug("latency", *s), f"Latency {size_label(s)} (ms)") for s in sizes]
    cols += [("paper_params_m", "Paper params (M)"), ("paper_gmacs", "Paper GMACs ('GFLOPs')")]
    body = []
    for name, entry in costs.backbones.items():
        published = ctx.published.backbones_published.get(entry.published.key if entry.published else name)
        for variant in SIDES:
            v = entry[variant]
            cells = [Cell(backbone_label(name), col="backbone", header=True),
                     Cell("baseline" if variant == "baseline" else "+BlurDM", col="variant"),
                     value_cell("params_m", v.params / 1e6, 3), value_cell("thop_gmacs", v.thop_macs / 1e9, 2),
                     value_cell("gmacs", v.macs / 1e9, 2), value_cell("gflops", v.flops / 1e9, 2)]
            cells += [_latency_cell(slug("latency", *s), costs.latency_of(name, variant, s)) for s in sizes]
            if variant == "baseline" and published:
                cells += [value_cell("paper_params_m", published.params_m, 2),
                          value_cell("paper_gmacs", published.gmacs, 1)]
            else:
                text = "not published" if variant == "baseline" else "—"
                cells += [Cell(text, col="paper_params_m", css="na"), Cell(text, col="paper_gmacs", css="na")]
            body.append(Row(cells, key=f"{name}/{variant}"))
    notes = []
    if costs.scale != "paper":
        notes.append(f"Scale '{costs.scale}': our models are smaller than the paper's, so their counts are not "
                     f"comparable with the published ones.")
    return Table(id="table-cost", caption="Size, compute and latency per backbone",
                 head=[head_row(cols)], rows=body, sortable=True, notes=notes)


def overhead_table(ctx: Context, costs: CostsFile) -> Table:
    """What BlurDM adds to every backbone, in parameters, MACs, FLOPs and latency."""
    sizes = costs.latency_sizes()
    cols = [("backbone", "Backbone"), ("params_ratio", "+Params"), ("thop_macs_ratio", "+MACs (thop)"),
            ("macs_ratio", "+MACs (complete)"), ("flops_ratio", "+FLOPs"), ("added_gmacs", "Added MACs (G)")]
    for s in sizes:
        cols += [(slug("added_ms", *s), f"Added latency {size_label(s)} (ms)"),
                 (slug("latency_ratio", *s), f"+Latency {size_label(s)}")]
    body = []
    for name, entry in costs.backbones.items():
        o = entry.overhead
        cells = [Cell(backbone_label(name), col="backbone", header=True),
                 pct_cell("params_ratio", o.params_ratio), pct_cell("thop_macs_ratio", o.thop_macs_ratio),
                 pct_cell("macs_ratio", o.macs_ratio), pct_cell("flops_ratio", o.flops_ratio),
                 value_cell("added_gmacs", o.macs / 1e9, 2)]
        for s in sizes:
            base, with_prior = costs.latency_of(name, "baseline", s), costs.latency_of(name, "blurdm", s)
            if base is None or with_prior is None:
                cells += [not_run(slug("added_ms", *s)), not_run(slug("latency_ratio", *s))]
            else:
                cells += [value_cell(slug("added_ms", *s), with_prior.median_ms - base.median_ms, 1),
                          pct_cell(slug("latency_ratio", *s), (with_prior.median_ms - base.median_ms) / base.median_ms)]
        body.append(Row(cells, key=name))
    caption = f"Overhead BlurDM adds (paper: < {ctx.published.overhead.flops_share_max:.0%})"
    return Table(id="table-overhead", caption=caption, head=[head_row(cols)], rows=body, sortable=True)


def module_table(ctx: Context, costs: CostsFile) -> Table:
    """The BlurDM module alone: ours beside the paper's summary figures."""
    paper, m = ctx.published.overhead, costs.blurdm_module
    rows = [
        Row([Cell("Parameters (M)", header=True), value_cell("ours", m.params / 1e6, 2),
             value_cell("paper", paper.params_m, 2)], key="params_m"),
        Row([Cell("MACs, thop-style (G)", header=True), value_cell("ours", m.thop_macs / 1e9, 2),
             value_cell("paper", paper.gflops, 2, title="the paper calls these GFLOPs")], key="thop_gmacs"),
        Row([Cell("MACs, complete (G)", header=True), value_cell("ours", m.macs / 1e9, 2),
             Cell("not published", col="paper", css="na")], key="gmacs"),
        Row([Cell("FLOPs, complete (G)", header=True), value_cell("ours", m.flops / 1e9, 2),
             Cell("not published", col="paper", css="na")], key="gflops"),
    ]
    for s in costs.latency_sizes():
        rows.append(Row([Cell(f"Latency {size_label(s)} (ms)", header=True),
                         _latency_cell("ours", costs.latency_of("blurdm_module", None, s)),
                         value_cell("paper", paper.latency_ms, 1, title="device not stated")
                         if s == (256, 256) else Cell("not published", col="paper", css="na")],
                        key=f"latency/{s[0]}x{s[1]}"))
    return Table(id="table-module", caption="The BlurDM module alone (Blur Encoder + both estimators, whole "
                 "reverse chain)", head=[head_row([("quantity", "Quantity"), ("ours", "Ours"), ("paper", "Paper")])],
                 rows=rows, notes=[f"The paper's {paper.params_m:g} M parameters is its summary figure."])
