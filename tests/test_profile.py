"""blurdm-bench profile: the JSON's structure and the cost arithmetic (no timing assertions)."""
from __future__ import annotations

import json

import pytest
import yaml

from pipelines.evaluation import model_costs as prof

PAPER_CLAIMS = {"gflops": 4.16, "params_m": 3.33, "latency_ms": 9, "flops_share_max": 0.08}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    paper = tmp_path_factory.mktemp("paper") / "paper.yaml"
    paper.write_text(yaml.safe_dump({"overhead": PAPER_CLAIMS}))
    return prof.profile_models("tiny", backbones=["mimo_unet", "fftformer"], T=5, paper_yaml=paper, progress=False)


def test_every_backbone_has_both_variants_and_overhead(tiny_report):
    assert set(tiny_report["backbones"]) == {"mimo_unet", "fftformer"}
    for entry in tiny_report["backbones"].values():
        base, with_prior = entry["baseline"], entry["blurdm"]
        for e in (base, with_prior):
            assert set(e) == {"params", "flops", "macs", "fft_flops", "thop_macs"}
            assert e["macs"] == pytest.approx(e["flops"] / 2)
            # thop-style counting sees a subset of what the complete count sees
            assert 0 < e["thop_macs"] <= e["macs"] * (1 + 1e-9)
        over = entry["overhead"]
        assert over["params"] == with_prior["params"] - base["params"] > 0
        assert over["macs_ratio"] == pytest.approx((with_prior["macs"] - base["macs"]) / base["macs"])
        # the prior adds the BlurDM module plus the fusion layers: at least the module's MACs
        assert over["macs"] >= tiny_report["blurdm_module"]["macs"]
        assert entry["published"]["comparable"] is False  # tiny scale is not the published model


def test_ffts_are_counted_where_they_exist(tiny_report):
    assert tiny_report["backbones"]["mimo_unet"]["baseline"]["fft_flops"] == 0
    fft = tiny_report["backbones"]["fftformer"]["baseline"]
    assert fft["fft_flops"] > 0 and fft["thop_macs"] < fft["macs"]
    assert "log2" in tiny_report["counting"]["fft"]


def test_blurdm_module_components_add_up(tiny_report):
    module = tiny_report["blurdm_module"]
    parts = module["components"]
    assert parts["blur_encoder"]["params"] + parts["estimators"]["params"] == module["params"]
    assert 0 < parts["estimators"]["macs"] < parts["blur_encoder"]["macs"] < module["macs"]


def test_paper_claims_come_from_the_yaml(tiny_report, tmp_path):
    assert tiny_report["paper_claims"]["overhead"] == PAPER_CLAIMS
    assert tiny_report["paper_claims"]["comparable"] is False
    ours = tiny_report["paper_claims"]["ours"]
    assert ours["blurdm_module_gmacs"] == pytest.approx(tiny_report["blurdm_module"]["macs"] / 1e9)
    missing = prof.load_published_costs(paper_yaml=tmp_path / "absent.yaml")
    assert missing["overhead"] is None and "not found" in missing["sources"]["overhead"]
    assert missing["backbones"]["mimo_unet"]["gmacs"] > 0  # the packaged copy is always there


def test_paper_scale_blurdm_module_matches_the_spec():
    """Counted on the meta device: BE + two estimators ~2.07 M parameters and ~4.16 GMACs at 256x256."""
    costs = prof.count_all(["mimo_unet"], "paper", T=5, progress=False)
    module = costs["blurdm_module"]
    assert module["params"] / 1e6 == pytest.approx(2.07, rel=0.01)
    assert module["macs"] / 1e9 == pytest.approx(4.16, rel=0.01)
    prof.compare_published(costs, prof.load_published_costs()["backbones"], "paper")
    pub = costs["backbones"]["mimo_unet"]["published"]
    assert pub["comparable"] is True and pub["key"] == "mimo_unet"
    assert abs(pub["gmacs_rel_diff"]) < 0.01 and abs(pub["params_rel_diff"]) < 0.01


def test_latency_structure_with_one_repeat():
    lat = prof.profile_models("tiny", backbones=["mimo_unet"], latency=True, sizes=[(32, 48)], warmup=0,
                              repeats=1, device="cpu", progress=False)["latency"]
    assert {(r["model"], r["variant"]) for r in lat["results"]} == {
        ("blurdm_module", None), ("mimo_unet", "baseline"), ("mimo_unet", "blurdm")}
    for row in lat["results"]:
        assert row["size"] == [32, 48] and len(row["times_ms"]) == 1
        assert row["median_ms"] > 0 and row["iqr_ms"] == 0
    assert lat["timer"] == "time.perf_counter" and lat["threads"] >= 1 and lat["torch_version"]
    (over,) = lat["overhead"]
    assert over["added_ms"] == pytest.approx(over["blurdm_ms"] - over["baseline_ms"])


def test_summarise_times_median_and_iqr():
    s = prof.summarise_times([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s["median_ms"] == 3.0 and s["q25_ms"] == 2.0 and s["q75_ms"] == 4.0 and s["iqr_ms"] == 2.0


def test_cli_writes_json(tmp_path):
    from pipelines.cli import main

    out = tmp_path / "costs" / "profile.json"
    assert main(["profile", "--scale", "tiny", "--backbones", "mimo_unet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scale"] == "tiny" and report["input_shape"] == [1, 3, 256, 256]
    assert "latency" not in report and list(report["backbones"]) == ["mimo_unet"]
    assert not list(out.parent.glob(".*tmp"))


def test_profile_output_feeds_the_report(tmp_path):
    """The costs file written by `profile` is accepted by the report's parser (no format drift)."""
    from pipelines.core.files import write_json
    from pipelines.evaluation.model_costs import profile_models
    from pipelines.results.metric_schemas import CostsFile

    costs = profile_models(scale="tiny", backbones=["mimo_unet"], progress=False)
    write_json(tmp_path / "costs.json", costs)
    parsed = CostsFile.model_validate_json((tmp_path / "costs.json").read_text())
    assert parsed.environment.device and parsed.environment.threads
