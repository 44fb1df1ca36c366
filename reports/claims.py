"""The paper's claims and their verdicts on our numbers: pure functions of the parsed inputs.

A verdict is "reproduced" only when our confidence intervals support the claim, "not reproduced" when
they do not (BlurDM not beating the baseline included: a finding, reported with its numbers), "not
run" when the experiment is missing or not comparable, and "inconclusive" when a positive control the
claim depends on failed (``metrics/controls.json``, :mod:`pipelines.results.controls`): the models it
compares do not beat the blurred input, or even the oracle prior shows no gain on that test set, so the
study could not have detected the effect the claim is about. The evidence then names the control and its
numbers. Every claim of a pipeline check (the smoke profile) is inconclusive: its numbers are not findings.
:func:`gate` applies the controls to a claim computed from the gains alone.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from models.names import column_key
from pipelines.results.metric_schemas import Control, ControlsFile, CostsFile, Gain, Table1File, TSweepFile
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

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
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


# --- the positive controls ------------------------------------------------------------------
def control_text(c: Control) -> str:
    """One control and its numbers, for a claim's evidence."""
    what = ("the oracle prior over the no-prior baseline" if c.control == "sensitivity"
            else f"{variant_label(c.model) if c.study == 'ablations' else c.model} over the blurred input")
    who = backbone_label(c.backbone)
    numbers = "not evaluated" if c.gain is None else (
        f"{c.gain.mean:+.2f} dB [{c.gain.ci_low:+.2f}, {c.gain.ci_high:+.2f}]")
    verdict = "passes" if c.passed else "fails"
    return (f"{c.control} control on {column_label(c.column)}, {who}: {what} {numbers}, {verdict} "
            f"(CI low end must exceed {c.threshold_db:+.2f} dB)")


def gate(claim: Claim, controls: ControlsFile | None, needed: list[Control], not_measured: list[str] = ()) -> Claim:
    """``claim`` with its verdict gated by the controls it depends on (``needed``): a pipeline check, a missing
    controls file or a failed control makes a reproduced / not reproduced verdict inconclusive, with the
    reason in the evidence. "not run" stays; ``not_measured`` names controls the study has no numbers for."""
    if claim.verdict == NOT_RUN:
        return claim
    evidence = list(claim.evidence)
    if controls is None:
        evidence.append("no positive controls were computed (metrics/controls.json absent): the study cannot show "
                        "it could have detected the effect")
        return Claim(claim.key, claim.statement, INCONCLUSIVE, evidence, claim.anchor, claim.kind)
    if controls.pipeline_check:
        evidence.insert(0, "a pipeline check (smoke profile: models trained for a few steps): not a finding")
        return Claim(claim.key, claim.statement, INCONCLUSIVE, evidence, claim.anchor, claim.kind)
    failed = [c for c in needed if not c.passed]
    evidence += [f"not measured: {what}" for what in not_measured]
    if failed:
        evidence = [control_text(c) for c in failed] + evidence
        return Claim(claim.key, claim.statement, INCONCLUSIVE, evidence, claim.anchor, claim.kind)
    if needed:
        evidence.append(f"its {len(needed)} positive control(s) pass")
    return Claim(claim.key, claim.statement, claim.verdict, evidence, claim.anchor, claim.kind)


def gate_every_backbone(claim: Claim, table1: Table1File | None, controls: ControlsFile | None) -> Claim:
    """Table 1: a row (column x backbone) counts only when both its models pass the deblurring control and its
    column passes the sensitivity control (where the oracle was measured). The verdict is then taken over the
    valid rows: a valid row that does not support the claim makes it "not reproduced"; otherwise any invalid row
    makes it inconclusive."""
    if claim.verdict == NOT_RUN or table1 is None or controls is None or controls.pipeline_check:
        return gate(claim, controls, [])
    invalid: dict[tuple[str, str], list[Control]] = {}
    unmeasured = set()
    for row in table1.rows:
        column = column_key(row.dataset, row.scoring)
        needed = [c for c in controls.deblurring
                  if c.study == "table1" and c.column == column and c.backbone == row.backbone]
        sensitivity = controls.of("sensitivity", column)
        if not sensitivity:
            unmeasured.add(column_label(column))
        failed = [c for c in needed + sensitivity if not c.passed]
        if failed:
            invalid[(column, row.backbone)] = failed
    valid_rows = [r for r in table1.rows if (column_key(r.dataset, r.scoring), r.backbone) not in invalid]
    evidence = list(claim.evidence)
    evidence += [f"the oracle was not measured on {c} (the ablations' test sets only): no sensitivity control there"
                 for c in sorted(unmeasured)]
    failed_text = [control_text(c) for cs in invalid.values() for c in cs]
    if any(r.gain["psnr"].ci_low <= 0 for r in valid_rows):
        verdict = NOT_REPRODUCED
    elif invalid:
        verdict = INCONCLUSIVE
    else:
        verdict = claim.verdict
    if invalid:
        evidence = failed_text + [f"{len(valid_rows)} of {len(table1.rows)} rows pass their controls"] + evidence
    else:
        evidence.append("every row passes its positive controls")
    return Claim(claim.key, claim.statement, verdict, evidence, claim.anchor, claim.kind)


def ablation_controls(controls: ControlsFile | None, column: str, variants: list[str]) -> list[Control]:
    """What an ablation claim on ``column`` depends on: the sensitivity control there and the deblurring control
    of the no-prior baseline and of every variant it compares."""
    if controls is None:
        return []
    models = {"none", *variants}
    return controls.of("sensitivity", column) + [c for c in controls.of("deblurring", column)
                                                 if c.study == "ablations" and c.model in models]
