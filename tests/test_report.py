"""``blurdm-bench report``: the page built from a small fixture set of pipeline outputs
(tests/fixtures/report) shows exactly the fixture's and the paper's numbers, degrades to "not run"
for absent files, fails loudly on malformed ones, and is written atomically."""
from __future__ import annotations

import copy
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report"
REPO = Path(__file__).resolve().parents[1]
PAPER_YAML = REPO / "reports" / "published" / "blurdm-neurips2025.yaml"
DIGITS = {"psnr": 2, "ssim": 3, "ssim3d": 3, "lpips": 4}
GAIN_DIGITS = {"psnr": 2, "ssim": 4, "ssim3d": 4, "lpips": 4}
PAPER_COLUMN = {"psnr": 0, "ssim3d": 1, "lpips": 2}  # the paper's SSIM is the 3-D one


class PageParser(HTMLParser):
    """Tables (by id) as rows keyed by data-row, cells keyed by data-col; every tag's attributes."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, dict]]] = {}
        self.row_anchors: dict[str, set[str]] = {}
        self.tags: list[tuple[str, dict]] = []
        self.section_text: dict[str, list[str]] = {}
        self._table = self._row = self._cell = None
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self._section = attrs["id"]
            self.section_text[self._section] = []
        elif tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = {}
            self.row_anchors[self._table] = set()
        elif tag == "tr" and self._table:
            self._row = attrs.get("data-row")
            if self._row is not None:
                self.tables[self._table][self._row] = {}
            if attrs.get("id"):
                self.row_anchors[self._table].add(attrs["id"])
        elif tag in ("td", "th") and self._row is not None and attrs.get("data-col"):
            self._cell = {"text": "", "value": attrs.get("data-value"), "class": attrs.get("class", ""),
                          "title": attrs.get("title"), "href": None, "colspan": int(attrs.get("colspan", 1))}
            self.tables[self._table][self._row][attrs["data-col"]] = self._cell
        elif tag == "a" and self._cell is not None:
            self._cell["href"] = attrs.get("href")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._section is not None:
            self.section_text[self._section].append(data)

    def text(self, table: str, row: str, col: str) -> str:
        return " ".join(self.tables[table][row][col]["text"].split())

    def value(self, table: str, row: str, col: str) -> float:
        return float(self.tables[table][row][col]["value"])


def parse(index: Path) -> PageParser:
    parser = PageParser()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def build(metrics_dir: Path, out: Path, root: Path = FIXTURE):
    from pipelines.core.config import load_params
    from reports.build import build_report

    return build_report(metrics_dir, out, root=root, params=load_params(REPO / "params.yaml"))


def fixture_json(name: str) -> dict:
    return json.loads((FIXTURE / "metrics" / name).read_text())


def fixture_run_info(name: str) -> dict:
    """The untracked sidecar of a metric file (date, MLflow run ids, latency: pipelines/results/run_info.py)."""
    return json.loads((FIXTURE / "metrics" / "run_info" / name).read_text())


def ci_text(g: dict, digits: int) -> str:
    return f"{g['mean']:+.{digits}f} [{g['ci_low']:+.{digits}f}, {g['ci_high']:+.{digits}f}]"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "site"
    index = build(FIXTURE / "metrics", out)
    return parse(index), index


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER_YAML.read_text())


@pytest.fixture
def fixture_copy(tmp_path):
    """A writable copy of the fixture outputs."""
    root = tmp_path / "outputs"
    shutil.copytree(FIXTURE, root)
    return root


# --- the values on the page are the fixture's ------------------------------------------------
def test_published_copy_matches_the_shared_paper_file(shared_dir):
    shared = shared_dir / "paper" / "blurdm-neurips2025.yaml"
    assert yaml.safe_load(PAPER_YAML.read_text()) == yaml.safe_load(shared.read_text())


def test_table1_ours_beside_paper(page, paper):
    html, _ = page
    t1 = fixture_json("table1.json")
    table = html.tables["table1-synthetic"]
    for row in t1["rows"]:
        bb = row["backbone"]
        paper_row = paper["table1"]["gopro"][bb]  # synthetic rows are shown beside the paper's GoPro
        for metric in ("psnr", "ssim", "ssim3d"):
            for side in ("baseline", "blurdm"):
                assert html.text("table1-synthetic", f"{bb}/{metric}", f"ours_{side}") == \
                    f"{row[side][metric]:.{DIGITS[metric]}f}"
                assert html.value("table1-synthetic", f"{bb}/{metric}", f"ours_{side}") == row[side][metric]
            assert html.text("table1-synthetic", f"{bb}/{metric}", "ours_gain") == \
                ci_text(row["gain"][metric], GAIN_DIGITS[metric])
            assert html.value("table1-synthetic", f"{bb}/{metric}", "ours_gain") == row["gain"][metric]["mean"]
        for metric, column in PAPER_COLUMN.items():
            for side in ("baseline", "blurdm"):
                assert html.value("table1-synthetic", f"{bb}/{metric}", f"paper_{side}") == paper_row[side][column]
            assert html.value("table1-synthetic", f"{bb}/{metric}", "paper_gain") == pytest.approx(
                paper_row["blurdm"][column] - paper_row["baseline"][column])
        # LPIPS was not computed: n/a, not a blank; the reason once, in the table's note (issue 13)
        assert html.text("table1-synthetic", f"{bb}/lpips", "ours") == "n/a (see the note below the table)"
        assert html.text("table1-synthetic", f"{bb}/ssim", "paper_baseline") == "not published"
    # the gain's colour follows its CI: mimo_unet's PSNR CI is above 0, stripformer's contains 0
    assert "better" in table["mimo_unet/psnr"]["ours_gain"]["class"]
    assert "unclear" in table["stripformer/psnr"]["ours_gain"]["class"]
    avg = t1["average_gain"]["synthetic"]
    assert html.text("table1-synthetic", "average/psnr", "ours_gain") == f"{avg['psnr']:+.2f}"
    assert html.value("table1-synthetic", "average/psnr", "paper_gain") == paper["table1"]["average_gain"]["gopro"][0]
    assert html.text("table1-synthetic", "average/lpips", "ours_gain") == "n/a"
    assert page[1].read_text().count("LPIPS n/a in our runs: weights not available offline.") == 1


def test_table1_rows_not_run_say_so(page, paper):
    html, _ = page
    # backbones configured in params.yaml but absent from table1.json
    for bb in ("fftformer", "loformer"):
        assert html.text("table1-synthetic", f"{bb}/psnr", "ours") == "not run"
        assert html.text("table1-synthetic", f"{bb}/psnr", "runs") == "not run"
    # the paper's datasets we did not run: every row "not run", the paper's numbers beside
    for dataset in ("gopro", "hide", "realblur_j", "realblur_r"):
        table = html.tables[f"table1-{dataset}"]
        for bb, values in paper["table1"][dataset].items():
            assert html.text(f"table1-{dataset}", f"{bb}/psnr", "ours") == "not run"
            assert html.value(f"table1-{dataset}", f"{bb}/psnr", "paper_blurdm") == values["blurdm"][0]
        assert html.text(f"table1-{dataset}", "average/psnr", "ours") == "not run"
        assert html.value(f"table1-{dataset}", "average/psnr", "paper_gain") == \
            paper["table1"]["average_gain"][dataset][0]
        assert all(cell["text"].strip() for row in table.values() for cell in row.values()
                   if cell.get("value") is None and "runs" not in row), "blank cell"


@pytest.mark.parametrize("name,table,paper_block", [
    ("ablation_prior.json", "table-ablation_prior", "ablation_prior"),
    ("ablation_stages.json", "table-ablation_stages", "ablation_stages"),
])
def test_ablation_tables(page, paper, name, table, paper_block):
    html, _ = page
    data = fixture_json(name)
    baseline = paper["ablation_prior"]["baseline"]
    for row in data["rows"]:
        v = row["variant"]
        assert html.text(table, v, "ours_psnr") == f"{row['psnr']:.2f}"
        assert html.text(table, v, "ours_gain") == ci_text(row["gain"], 2)
        assert html.text(table, v, "runs") == row["dvc_stage"]
        published = paper[paper_block]["baseline" if v == "none" else v]
        assert html.value(table, v, "paper_psnr") == published
        assert html.value(table, v, "paper_gain") == pytest.approx(published - baseline)


def test_t_sweep_table_and_plot(page, paper):
    html, index = page
    data = fixture_json("t_sweep.json")
    for row in data["rows"]:
        assert html.text("table-t-sweep", f"T={row['T']}", "ours_gain") == ci_text(row["gain"], 2)
        assert html.value("table-t-sweep", f"T={row['T']}", "ours_psnr") == row["psnr"]
    peak = max(data["rows"], key=lambda r: r["gain"]["mean"])
    text = " ".join(" ".join(html.section_text["t-sweep"]).split())
    assert f"peaks at T={peak['T']}" in text and f"the paper's best is T={paper['t_sweep']['best_T']}" in text
    assert (index.parent / "assets" / "t_sweep.png").stat().st_size > 1000


def test_claim_verdicts(page):
    html, _ = page
    verdicts = {key: " ".join(row["verdict"]["text"].split()) for key, row in html.tables["table-claims"].items()}
    # fixture: stripformer's gain CI contains 0; the prior ordering is CI-separated; stages 1+2 vs 1+3
    # are out of order; the sweep peaks at T=3; costs were profiled at the tiny scale
    assert verdicts == {"every_backbone": "not reproduced", "prior_order": "reproduced",
                        "stage_order": "not reproduced", "best_t": "not reproduced", "overhead": "not run"}
    evidence = html.tables["table-claims"]["every_backbone"]["evidence"]["text"]
    stripformer = fixture_json("table1.json")["rows"][1]["gain"]["psnr"]
    assert ci_text(stripformer, 2) in evidence


def test_cost_tables(page, paper):
    html, _ = page
    costs = fixture_json("costs.json")
    latency = fixture_run_info("costs.json")["latency"]  # timings live in the untracked sidecar
    assert "latency" not in costs
    for name, entry in costs["backbones"].items():
        for variant in ("baseline", "blurdm"):
            key = f"{name}/{variant}"
            assert html.value("table-cost", key, "params_m") == pytest.approx(entry[variant]["params"] / 1e6)
            assert html.value("table-cost", key, "gmacs") == pytest.approx(entry[variant]["macs"] / 1e9)
            assert html.value("table-cost", key, "thop_gmacs") == pytest.approx(entry[variant]["thop_macs"] / 1e9)
            assert html.value("table-cost", key, "gflops") == pytest.approx(entry[variant]["flops"] / 1e9)
            for size in ((256, 256), (720, 1280)):
                lat = next(r for r in latency["results"]
                           if r["model"] == name and r["variant"] == variant and r["size"] == list(size))
                assert html.value("table-cost", key, f"latency-{size[0]}-{size[1]}") == lat["median_ms"]
        assert html.value("table-cost", f"{name}/baseline", "paper_gmacs") == paper["backbones_published"][name]["gmacs"]
        assert html.value("table-overhead", name, "macs_ratio") == pytest.approx(entry["overhead"]["macs_ratio"])
        assert html.text("table-overhead", name, "macs_ratio") == f"{100 * entry['overhead']['macs_ratio']:.1f}%"
    module = costs["blurdm_module"]
    assert html.value("table-module", "thop_gmacs", "ours") == pytest.approx(module["thop_macs"] / 1e9)
    assert html.value("table-module", "thop_gmacs", "paper") == paper["overhead"]["gflops"]
    assert html.value("table-module", "latency/256x256", "paper") == paper["overhead"]["latency_ms"]
    text = " ".join(html.section_text["cost"])
    assert "MACs" in text and "FLOPs" in text and latency["timer"] in text


def test_visual_section_has_crops_and_distributions(page):
    html, index = page
    crops = [a["src"] for tag, a in html.tags if tag == "img" and "crops/" in a.get("src", "")]
    assert len(crops) == 8  # mimo_unet: 2 images x (blurred, baseline, +BlurDM, sharp); stripformer saved none
    for src in crops:
        assert (index.parent / src).is_file()
    # per-image statistics recomputed from the fixture CSVs
    import pandas as pd

    def per_image(path):
        return pd.read_csv(FIXTURE / path, na_values=["NA"]).groupby("name")["psnr"].mean()

    for row in fixture_json("table1.json")["rows"]:
        gain = per_image(row["per_image"]["blurdm"]) - per_image(row["per_image"]["baseline"])
        assert html.value("table-per-image-synthetic", row["backbone"], "mean") == pytest.approx(gain.mean())
        assert html.value("table-per-image-synthetic", row["backbone"], "improved") == pytest.approx((gain > 0).mean())
    assert (index.parent / "assets" / "gain_distribution_synthetic.png").is_file()


def test_every_run_is_linked(page):
    html, _ = page
    runs = html.tables["table-runs"]
    listed = {cell["run"]["text"]: cell for cell in runs.values()}
    expected = set()  # the run ids live in the untracked sidecars, not in the tracked tables
    for runs in fixture_run_info("table1.json")["runs"].values():
        expected |= set(runs["baseline"]) | set(runs["blurdm"])
    for name in ("ablation_prior.json", "ablation_stages.json", "t_sweep.json"):
        expected |= {r for runs in fixture_run_info(name)["runs"].values() for r in runs}
        assert all("runs" not in row for row in fixture_json(name)["rows"])
    assert set(listed) == expected
    for run_id, cells in listed.items():
        assert cells["run"]["href"] == f"http://127.0.0.1:5000/#/runs/{run_id}"
        assert cells["stage"]["text"]
    # every "runs" link of a result row points at an anchor of the runs table
    anchors = html.row_anchors["table-runs"]
    links = [cell["href"] for table in html.tables.values() for row in table.values() for col, cell in row.items()
             if col == "runs" and cell["href"]]
    assert len(links) == 2 + 5 + 5 + 4
    assert all(link.lstrip("#") in anchors for link in links)


def test_page_is_self_contained(page):
    html, index = page
    for tag, attrs in html.tags:
        if tag == "script":
            assert "src" not in attrs
        if tag == "link":
            assert attrs.get("href", "").startswith("data:")
        if tag == "img":
            assert not re.match(r"^[a-z]+:", attrs["src"]) and (index.parent / attrs["src"]).is_file()


def test_no_published_number_is_typed_into_code_or_templates(paper):
    numbers = set()

    def collect(node):
        if isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)
        elif isinstance(node, float):
            numbers.add(repr(node))

    collect(paper)
    numbers = {n for n in numbers if len(n.lstrip("-")) >= 4}  # e.g. 31.78, 0.957, 4.16
    sources = [*sorted((REPO / "reports").glob("*.py")), *sorted((REPO / "reports" / "templates").iterdir())]
    for path in sources:
        text = path.read_text()
        found = sorted(n for n in numbers if re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", text))
        assert not found, f"{path.name} contains published numbers {found}"


# --- missing and malformed inputs ---------------------------------------------------------------
def test_absent_files_degrade_to_not_run(fixture_copy, tmp_path):
    for name in ("ablation_stages.json", "costs.json", "t_sweep.json"):
        (fixture_copy / "metrics" / name).unlink()
    html = parse(build(fixture_copy / "metrics", tmp_path / "site", root=fixture_copy))
    for section in ("stages", "cost", "t-sweep"):
        assert "not run" in " ".join(html.section_text[section])
    for variant in ("s3_only", "s1_s2", "s1_s3", "s1_s2_s3", "oracle"):
        assert html.text("table-ablation_stages", variant, "ours_psnr") == "not run"
    verdicts = {k: " ".join(r["verdict"]["text"].split()) for k, r in html.tables["table-claims"].items()}
    assert verdicts["stage_order"] == verdicts["overhead"] == verdicts["best_t"] == "not run"
    assert verdicts["prior_order"] == "reproduced"  # the files still present are still used
    assert html.text("table-inputs", "costs", "status") == "not run"


def test_empty_metrics_folder_builds_a_not_run_page(tmp_path):
    (tmp_path / "metrics").mkdir()
    html = parse(build(tmp_path / "metrics", tmp_path / "site", root=tmp_path))
    verdicts = {k: " ".join(r["verdict"]["text"].split()) for k, r in html.tables["table-claims"].items()}
    assert set(verdicts.values()) == {"not run"}
    assert html.text("table1-synthetic", "mimo_unet/psnr", "ours") == "not run"
    assert "table-runs" not in html.tables


@pytest.mark.parametrize("name,edit,message", [
    ("table1.json", lambda d: d["rows"][0]["gain"]["psnr"].pop("ci_low"), "missing key 'rows[0].gain.psnr.ci_low'"),
    ("table1.json", lambda d: d["meta"].pop("git_commit"), "missing key 'meta.git_commit'"),
    ("table1.json", lambda d: d["average_gain"].pop("synthetic"), "missing key 'average_gain.synthetic'"),
    ("ablation_prior.json", lambda d: d["rows"][2].pop("dvc_stage"), "missing key 'rows[2].dvc_stage'"),
    ("t_sweep.json", lambda d: d["rows"][1].pop("T"), "missing key 'rows[1].T'"),
    ("t_sweep.json", lambda d: d["rows"][0].update(psnr="27.2"), "rows[0].psnr: expected a finite number"),
    ("costs.json", lambda d: d["backbones"]["mimo_unet"]["blurdm"].pop("macs"),
     "missing key 'backbones.mimo_unet.blurdm.macs'"),
])
def test_malformed_file_fails_naming_file_and_key(fixture_copy, tmp_path, name, edit, message):
    path = fixture_copy / "metrics" / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as err:
        build(fixture_copy / "metrics", tmp_path / "site", root=fixture_copy)
    assert str(path) in str(err.value) and message in str(err.value)
    assert not (tmp_path / "site").exists()


def test_cli_reports_a_malformed_file_and_exits_2(fixture_copy, tmp_path, capsys):
    from pipelines.cli import main

    (fixture_copy / "metrics" / "table1.json").write_text("{not json")
    code = main(["report", "--metrics-dir", str(fixture_copy / "metrics"), "--out", str(tmp_path / "site"),
                 "--root", str(fixture_copy), "--params", str(REPO / "params.yaml")])
    assert code == 2
    assert "table1.json: not a readable JSON file" in capsys.readouterr().err


def test_cli_writes_the_page(tmp_path, capsys):
    from pipelines.cli import main

    code = main(["report", "--metrics-dir", str(FIXTURE / "metrics"), "--out", str(tmp_path / "site"),
                 "--root", str(FIXTURE), "--params", str(REPO / "params.yaml")])
    assert code == 0
    assert (tmp_path / "site" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().out


def test_a_failed_build_leaves_the_previous_page(tmp_path, monkeypatch):
    import reports.build as report_build

    out = tmp_path / "site"
    index = build(FIXTURE / "metrics", out)
    before = index.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-render")

    monkeypatch.setattr(report_build, "render_page", killed)
    with pytest.raises(KeyboardInterrupt):
        build(FIXTURE / "metrics", out)
    assert index.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folder left behind


def test_templates_fail_loudly_on_a_missing_value():
    import jinja2

    from reports.build import template_environment

    env = template_environment()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ section.title }}").render()
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("index.html.j2").render(title="t", sections=[])  # published_source missing


# --- claim logic on small inputs -----------------------------------------------------------------
def _gain(mean, low, high):
    from pipelines.results.metric_schemas import Gain

    return Gain(mean=mean, ci_low=low, ci_high=high, seed_std=0.0, n_images=10, n_seeds=3)


def test_ordering_claim_needs_separated_cis_and_every_variant():
    from reports.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, claim_ordering

    order = ["none", "ddpm", "blurdm"]
    separated = {"none": _gain(0, 0, 0), "ddpm": _gain(0.2, 0.1, 0.3), "blurdm": _gain(0.5, 0.4, 0.6)}
    assert claim_ordering("k", "s", order, separated, "a").verdict == REPRODUCED
    overlapping = dict(separated, blurdm=_gain(0.35, 0.25, 0.45))
    assert claim_ordering("k", "s", order, overlapping, "a").verdict == NOT_REPRODUCED
    partial = {k: v for k, v in separated.items() if k != "blurdm"}
    assert claim_ordering("k", "s", order, partial, "a").verdict == NOT_RUN
    reversed_partial = {"none": _gain(0, 0, 0), "ddpm": _gain(-0.3, -0.4, -0.2)}
    claim = claim_ordering("k", "s", order, reversed_partial, "a")
    assert claim.verdict == NOT_REPRODUCED and any("reversed" in e for e in claim.evidence)
    assert claim_ordering("k", "s", order, {"none": _gain(0, 0, 0)}, "a").verdict == NOT_RUN


def test_every_backbone_claim(page):
    from pipelines.results.metric_schemas import Table1File
    from reports.claims import NOT_REPRODUCED, REPRODUCED, claim_every_backbone
    from reports.inputs import load_published

    data = fixture_json("table1.json")
    good = copy.deepcopy(data)
    good["rows"][1]["gain"]["psnr"].update(mean=0.2, ci_low=0.05, ci_high=0.35)
    worse = copy.deepcopy(data)
    worse["rows"][1]["gain"]["psnr"].update(mean=-0.4, ci_low=-0.6, ci_high=-0.2)
    published = load_published()
    assert claim_every_backbone(Table1File.model_validate(good), published).verdict == REPRODUCED
    claim = claim_every_backbone(Table1File.model_validate(worse), published)
    assert claim.verdict == NOT_REPRODUCED
    assert any("-0.40 [-0.60, -0.20] dB, CI below 0: BlurDM worse" in e for e in claim.evidence)


def test_best_t_claim():
    from pipelines.results.metric_schemas import TSweepFile, TSweepRow
    from reports.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, claim_best_t

    def sweep(gains):
        rows = [TSweepRow(variant=f"T={t}", psnr=27.0, ssim=None, ssim3d=None, lpips=None, gain=_gain(*g),
                          dvc_stage="s", T=t) for t, g in gains.items()]
        return TSweepFile.model_construct(dataset="synthetic", backbone="mimo_unet", rows=rows)

    rising = {1: (0.1, 0.0, 0.2), 3: (0.3, 0.25, 0.35), 5: (0.5, 0.4, 0.6), 8: (0.45, 0.35, 0.55)}
    assert claim_best_t(sweep(rising), 5).verdict == REPRODUCED
    close = {**rising, 3: (0.45, 0.38, 0.52)}
    assert claim_best_t(sweep(close), 5).verdict == NOT_REPRODUCED  # T=5 not separated from T=3
    assert claim_best_t(sweep({1: (0.1, 0.0, 0.2), 3: (0.2, 0.1, 0.3)}), 5).verdict == NOT_RUN
    assert claim_best_t(None, 5).verdict == NOT_RUN


def test_overhead_claim_only_for_paper_scale_counts():
    from pipelines.results.metric_schemas import CostsFile
    from reports.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED, claim_overhead
    from reports.inputs import load_published

    published = load_published()
    data = fixture_json("costs.json")
    assert claim_overhead(CostsFile.model_validate(data), published).verdict == NOT_RUN  # tiny scale
    paper = copy.deepcopy(data)
    paper["scale"] = "paper"
    paper["blurdm_module"]["thop_macs"] = 4.157e9
    for entry in paper["backbones"].values():
        entry["overhead"].update(thop_macs_ratio=0.065, macs_ratio=0.06)
    assert claim_overhead(CostsFile.model_validate(paper), published).verdict == REPRODUCED
    paper["backbones"]["mimo_unet"]["overhead"]["macs_ratio"] = 0.09  # complete count above 8 %
    assert claim_overhead(CostsFile.model_validate(paper), published).verdict == NOT_REPRODUCED
    assert claim_overhead(None, published).verdict == NOT_RUN


def test_same_inputs_give_the_same_bytes(page, tmp_path):
    _, index = page
    again = build(FIXTURE / "metrics", tmp_path / "site").parent
    first = sorted(p.relative_to(index.parent) for p in index.parent.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in first:
        assert (index.parent / rel).read_bytes() == (again / rel).read_bytes(), rel


# --- the positive controls gate the verdicts (issue 27) -----------------------------------------------------
def _edit_controls(fixture_copy, edit) -> Path:
    path = fixture_copy / "metrics" / "controls.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return fixture_copy / "metrics"


def _fail(entry, mean=-0.05, low=-0.2, high=0.1):
    entry["gain"].update(mean=mean, ci_low=low, ci_high=high)
    entry["passed"] = False


def _verdicts(html) -> dict:
    return {k: " ".join(r["verdict"]["text"].split()) for k, r in html.tables["table-claims"].items()}


def test_the_summary_opens_with_the_controls_table(page):
    html, _ = page
    rows = html.tables["table-controls"]
    assert set(rows) == {"deblurring-synthetic", "sensitivity-synthetic"}
    assert " ".join(rows["sensitivity-synthetic"]["result"]["text"].split()) == "passed"
    assert " ".join(rows["deblurring-synthetic"]["passed"]["text"].split()) == "17 of 17"
    summary = " ".join(html.section_text["summary"])
    assert summary.index("Can this study answer?") < summary.index("The paper's claims")
    assert "A pipeline check" not in summary and "positive control(s) failed" not in summary


def test_a_failed_sensitivity_control_makes_the_ablation_claims_inconclusive(fixture_copy, tmp_path):
    def edit(data):
        _fail(data["sensitivity"][0], -0.01, -0.04, 0.02)

    html = parse(build(_edit_controls(fixture_copy, edit), tmp_path / "site", root=fixture_copy))
    verdicts = _verdicts(html)
    # the prior ordering was reproduced and the stage ordering / T sweep not: all rest on the oracle's control
    assert verdicts["prior_order"] == verdicts["stage_order"] == verdicts["best_t"] == "inconclusive"
    assert verdicts["overhead"] == "not run"  # counts, not a comparison: no control applies (tiny-scale fixture)
    evidence = " ".join(html.tables["table-claims"]["prior_order"]["evidence"]["text"].split())
    assert "sensitivity control on synthetic (embedded)" in evidence and "-0.01 dB [-0.04, +0.02], fails" in evidence
    summary = " ".join(html.section_text["summary"])
    assert "1 positive control(s) failed" in summary
    assert " ".join(html.tables["table-controls"]["sensitivity-synthetic"]["result"]["text"].split()) == "failed"


def test_a_failed_deblurring_control_excludes_its_table1_row(fixture_copy, tmp_path):
    """Table 1: stripformer's gain CI contains 0 in the fixture ("not reproduced"). When stripformer's models do not
    beat the blurred input, that row cannot speak: the remaining valid rows support the claim, so it becomes
    inconclusive (not reproduced, not reproduced-by-default); a valid row against the claim keeps "not reproduced"."""
    def edit(data):
        for entry in data["deblurring"]:
            if entry["study"] == "table1" and entry["backbone"] == "stripformer" and entry["model"] == "baseline":
                _fail(entry)

    html = parse(build(_edit_controls(fixture_copy, edit), tmp_path / "site", root=fixture_copy))
    assert _verdicts(html)["every_backbone"] == "inconclusive"
    evidence = " ".join(html.tables["table-claims"]["every_backbone"]["evidence"]["text"].split())
    assert "deblurring control on synthetic (embedded), Stripformer: baseline over the blurred input -0.05 dB" in evidence
    assert "1 of 2 rows pass their controls" in evidence

    def edit_mimo(data):
        for entry in data["deblurring"]:
            if entry["study"] == "table1":
                if entry["backbone"] == "mimo_unet":
                    _fail(entry)
                else:
                    entry["passed"] = True  # undo the edit above: stripformer's models deblur again

    html = parse(build(_edit_controls(fixture_copy, edit_mimo), tmp_path / "site2", root=fixture_copy))
    assert _verdicts(html)["every_backbone"] == "not reproduced"  # stripformer's valid row: CI contains 0


def test_a_pipeline_check_says_so_and_gives_no_statistical_verdict(fixture_copy, tmp_path):
    def edit(data):
        data["pipeline_check"] = True
        data["meta"]["profile"] = "smoke"

    html = parse(build(_edit_controls(fixture_copy, edit), tmp_path / "site", root=fixture_copy))
    summary = " ".join(" ".join(html.section_text["summary"]).split())
    assert summary.startswith("Summary A pipeline check, not findings") or "A pipeline check, not findings" in \
        summary[:200]
    verdicts = _verdicts(html)
    assert "not reproduced" not in verdicts.values()
    assert verdicts["every_backbone"] == verdicts["prior_order"] == verdicts["best_t"] == "inconclusive"


def test_without_a_controls_file_every_comparison_is_inconclusive(fixture_copy, tmp_path):
    (fixture_copy / "metrics" / "controls.json").unlink()
    html = parse(build(fixture_copy / "metrics", tmp_path / "site", root=fixture_copy))
    verdicts = _verdicts(html)
    assert verdicts["prior_order"] == verdicts["every_backbone"] == "inconclusive"
    assert "No positive controls were computed" in " ".join(html.section_text["summary"])


def test_gate_lets_the_claims_own_ci_decide_when_the_controls_pass():
    from pipelines.results.metric_schemas import ControlsFile
    from reports.claims import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED, Claim, gate

    controls = ControlsFile.model_validate(fixture_json("controls.json"))
    needed = controls.of("sensitivity", "synthetic")
    for verdict in (REPRODUCED, NOT_REPRODUCED, NOT_RUN):
        assert gate(Claim("k", "s", verdict, [], "a"), controls, needed).verdict == verdict
    failed = controls.model_copy(deep=True)
    failed.sensitivity[0].passed = False
    assert gate(Claim("k", "s", REPRODUCED, [], "a"), failed, failed.of("sensitivity", "synthetic")).verdict == \
        INCONCLUSIVE
    assert gate(Claim("k", "s", NOT_RUN, [], "a"), failed, failed.sensitivity).verdict == NOT_RUN


# --- what was run --------------------------------------------------------------------------------------------------
def test_run_info_gives_each_backbones_training_seeds(page, fixture_copy, tmp_path):
    html, _ = page
    # a table without per-backbone seeds (older files): train.seeds
    assert html.text("table-run-info", "Training seeds", "value") == "0, 1"
    path = fixture_copy / "metrics" / "table1.json"
    data = json.loads(path.read_text())
    backbones = list(dict.fromkeys(row["backbone"] for row in data["rows"]))
    assert len(backbones) >= 2
    # the cpu profile's shape: the ablation backbone with three seeds, the others with train.seeds
    data["meta"]["train_seeds"] = [0]
    # (written in another order than Table 1's: the page follows Table 1's)
    data["meta"]["train_seeds_by_backbone"] = {b: ([0, 1, 2] if i == 0 else [0])
                                               for i, b in reversed(list(enumerate(backbones)))}
    path.write_text(json.dumps(data))
    text = parse(build(fixture_copy / "metrics", tmp_path / "site", root=fixture_copy)).text(
        "table-run-info", "Training seeds", "value")
    from reports.page import backbone_label
    assert text == "; ".join(f"{backbone_label(b)}: {'0, 1, 2' if i == 0 else '0'}" for i, b in enumerate(backbones))
    # every backbone with the same seeds: one list
    data["meta"]["train_seeds_by_backbone"] = {b: [0] for b in backbones}
    path.write_text(json.dumps(data))
    assert parse(build(fixture_copy / "metrics", tmp_path / "site2", root=fixture_copy)).text(
        "table-run-info", "Training seeds", "value") == "0"
