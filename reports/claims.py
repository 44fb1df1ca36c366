"""The paper's claims and their verdicts on our numbers: pure functions of the parsed inputs.

A verdict is "reproduced" only when our confidence intervals support the claim, "not reproduced" when
they do not (BlurDM not beating the baseline included: a finding, reported with its numbers), "not
run" when the experiment is missing or not comparable.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from pipelines.results.metric_schemas import CostsFile, Gain, Table1File, TSweepFile
from reports.inputs import PAPER_VARIANT_KEY, Published
from reports.page import (
    NOT_RUN,
    backbone_label,
    column_label,
    dataset_label,
    fmt_amount,
    fmt_ci,
    fmt_pct,
    fmt_signed,
    trained_on,
    variant_label,
)

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
APPROX_TOLERANCE = 0.25  # "~4 GMACs": within 25 % of the paper's figure


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


def claim_every_backbone(table1: Table1File | None, published: Published, anchor: str = "table1") -> Claim:
    paper = ", ".join(f"{dataset_label(ds)} {fmt_signed(published.average(ds, 'psnr'), 2)} dB"
                      for ds in published.table1.average_gain)
    statement = (f"BlurDM improves every backbone: the PSNR gain of each dataset x backbone has its 95% CI above 0 "
                 f"(paper: average gain {paper})")
    if table1 is None or not table1.rows:
        return Claim("every_backbone", statement, NOT_RUN, ["Table 1 was not run (metrics/table1.json absent)."],
                     anchor)
    evidence = []
    for row in table1.rows:
        g = row.gain["psnr"]
        where = {1: "CI above 0", 0: "CI contains 0",
                 -1: "CI below 0: BlurDM worse than the baseline"}[g.excludes_zero()]
        trained = f" ({trained_on(row.train_set)})" if row.train_set else ""
        evidence.append(f"{column_label(row.column)} / {backbone_label(row.backbone)}{trained}: {fmt_ci(g, 2)} dB, "
                        f"{where}")
    for column in table1.columns():  # in row order (the file sorts its keys)
        evidence.append(f"average gain over backbones on {column_label(column)}: "
                        f"{fmt_signed(table1.average_gain[column]['psnr'], 2)} dB")
    verdict = REPRODUCED if all(r.gain["psnr"].ci_low > 0 for r in table1.rows) else NOT_REPRODUCED
    return Claim("every_backbone", statement, verdict, evidence, anchor)


def paper_order(values: dict[str, float], variants: tuple[str, ...]) -> list[str]:
    """Our variant names sorted by the paper's PSNR (ascending); variants the paper lacks are left out."""
    known = [v for v in variants if values.get(PAPER_VARIANT_KEY.get(v, v)) is not None]
    return sorted(known, key=lambda v: values[PAPER_VARIANT_KEY.get(v, v)])


def _step(low: str, a: Gain, high: str, b: Gain) -> tuple[str, str]:
    """One step of an ordering: ``("holds" | "reversed" | "unsupported", evidence)``."""
    pair = f"{variant_label(low)} {a.mean:+.2f} [{a.ci_low:+.2f}, {a.ci_high:+.2f}] < " \
           f"{variant_label(high)} {b.mean:+.2f} [{b.ci_low:+.2f}, {b.ci_high:+.2f}]"
    if b.ci_low > a.ci_high:
        return "holds", f"{pair}: holds, CIs separate"
    if b.ci_high < a.ci_low:
        return "reversed", f"{pair}: reversed, CIs separate"
    order_word = "means in order" if b.mean > a.mean else "means out of order"
    return "unsupported", f"{pair}: {order_word}, CIs overlap (not supported)"


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
    steps = [_step(low, gains[low], high, gains[high]) for low, high in itertools.pairwise(present)]
    evidence = ["gains in dB over the no-prior baseline on the same images, with 95% CIs"]
    evidence += [text for _, text in steps]
    if missing:
        evidence.append("not run: " + ", ".join(variant_label(v) for v in missing))
    outcomes = {outcome for outcome, _ in steps}
    if "reversed" in outcomes:
        verdict = NOT_REPRODUCED
    elif missing:
        verdict = NOT_RUN
    else:
        verdict = REPRODUCED if outcomes == {"holds"} else NOT_REPRODUCED
    return Claim(key, statement, verdict, evidence, anchor)


def claim_best_t(sweep: TSweepFile | None, paper_best: int, anchor: str = "t-sweep") -> Claim:
    """T = paper_best is best: our mean PSNR gain peaks there, and it beats every smaller T with
    separated CIs (the paper says gains flatten above it, so larger T need only not beat it)."""
    statement = f"T={paper_best} is the best number of diffusion steps (paper; gains flatten above it)"
    if sweep is None or not sweep.rows:
        return Claim("best_t", statement, NOT_RUN, ["The T sweep was not run (metrics/t_sweep.json absent)."], anchor)
    gains = {row.T: row.gain for row in sweep.rows}
    if paper_best not in gains:
        return Claim("best_t", statement, NOT_RUN, [f"T={paper_best} is not in our sweep (T = {sorted(gains)})."],
                     anchor)
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


def _largest(costs: CostsFile, ratio: str) -> float | None:
    """The largest overhead ``ratio`` over the profiled backbones (None: none measured)."""
    return max((getattr(b.overhead, ratio) for b in costs.backbones.values()
                if getattr(b.overhead, ratio) is not None), default=None)


def claim_overhead(costs: CostsFile | None, published: Published, anchor: str = "cost") -> Claim:
    """BlurDM adds < flops_share_max of the backbone's MACs (both counting methods) and about the
    paper's GMACs (thop-style count of the module, within APPROX_TOLERANCE); paper-scale models only."""
    claim = published.overhead
    statement = (f"BlurDM adds < {claim.flops_share_max:.0%} of each backbone's MACs and ~{claim.gflops:g} GMACs "
                 f"at 256x256 (the paper's 'GFLOPs' are thop MACs)")
    if costs is None:
        return Claim("overhead", statement, NOT_RUN, ["Costs were not profiled (metrics/costs.json absent)."], anchor)
    thop_share, full_share = _largest(costs, "thop_macs_ratio"), _largest(costs, "macs_ratio")
    module_thop = costs.blurdm_module.thop_macs / 1e9
    evidence = [
        (f"BlurDM module: {fmt_amount(module_thop)} GMACs thop-style, "
         f"{fmt_amount(costs.blurdm_module.macs / 1e9)} GMACs complete (paper: {claim.gflops:g})"),
        (f"largest overhead over the backbones: {fmt_pct(thop_share)} of MACs thop-style, {fmt_pct(full_share)} "
         f"complete (paper: < {claim.flops_share_max:.0%})"),
    ]
    if costs.scale != "paper":
        evidence.insert(0, f"models profiled at scale '{costs.scale}': not comparable with the paper's models "
                           f"(run `blurdm-bench profile --scale paper`)")
        return Claim("overhead", statement, NOT_RUN, evidence, anchor)
    if thop_share is None or full_share is None:
        return Claim("overhead", statement, NOT_RUN, evidence + ["no backbone overhead ratio was measured"], anchor)
    share_ok = max(thop_share, full_share) < claim.flops_share_max
    size_ok = abs(module_thop - claim.gflops) <= APPROX_TOLERANCE * claim.gflops
    evidence.append(f"'~' read as within {APPROX_TOLERANCE:.0%} of the paper's figure")
    return Claim("overhead", statement, REPRODUCED if share_ok and size_ok else NOT_REPRODUCED, evidence, anchor)
