"""`blurdm-bench check`: exact for counts and structure, tolerant for metrics, fails on regression."""
from __future__ import annotations

import json

import pytest

from pipelines import cli
from pipelines.results.reference_check import check_dirs, compare

REF = {
    "meta": {"date": "2026-11-01", "git_commit": "aaa", "profile": "smoke"},
    "rows": [{"backbone": "mimo_unet", "baseline": {"psnr": 25.00, "ssim": 0.800},
              "gain": {"psnr": {"mean": 0.30, "ci_low": 0.1, "ci_high": 0.5, "n_images": 4}},
              "runs": {"baseline": ["r1"]}}],
    "params": 123456,
}


def _tables(tmp_path, current):
    ref, cur = tmp_path / "ref", tmp_path / "cur"
    ref.mkdir(parents=True), cur.mkdir(parents=True)
    (ref / "table1.json").write_text(json.dumps(REF))
    (cur / "table1.json").write_text(json.dumps(current))
    return ref, cur


def _mutated(fn):
    cur = json.loads(json.dumps(REF))
    fn(cur)
    return cur


def test_identical_and_within_tolerance_pass():
    assert compare(REF, REF) == []
    cur = _mutated(lambda c: c["rows"][0]["baseline"].update(psnr=25.03))
    cur["meta"].update(date="2026-12-01", git_commit="bbb")  # ignored leaves
    cur["rows"][0]["runs"]["baseline"] = ["other-run"]
    assert compare(REF, cur) == []


def test_metric_drop_beyond_tolerance_is_reported_with_direction():
    diffs = compare(REF, _mutated(lambda c: c["rows"][0]["baseline"].update(psnr=24.5)))
    assert len(diffs) == 1
    assert diffs[0]["path"] == "rows[0].baseline.psnr" and "lower by 0.5" in diffs[0]["why"]


def test_counts_and_structure_are_exact():
    assert compare(REF, _mutated(lambda c: c.update(params=123457)))
    assert compare(REF, _mutated(lambda c: c["rows"][0]["gain"]["psnr"].update(n_images=5)))
    assert compare(REF, _mutated(lambda c: c["rows"].append(c["rows"][0])))
    assert compare(REF, _mutated(lambda c: c["rows"][0]["baseline"].pop("ssim")))
    assert compare(REF, _mutated(lambda c: c["meta"].update(profile="cpu")))


def test_cli_exit_codes_and_readable_diff(tmp_path, capsys):
    ref, cur = _tables(tmp_path, REF)
    assert cli.main(["check", "--reference", str(ref), "--metrics", str(cur)]) == 0
    ref, cur = _tables(tmp_path / "b", _mutated(lambda c: c["rows"][0]["baseline"].update(ssim=0.7)))
    assert cli.main(["check", "--reference", str(ref), "--metrics", str(cur)]) == 1
    out = capsys.readouterr().out
    assert "CHANGED   table1.json" in out and "rows[0].baseline.ssim" in out


def test_missing_table_fails_and_update_copies(tmp_path, capsys):
    ref, cur = _tables(tmp_path, REF)
    (cur / "table1.json").unlink()
    assert check_dirs(ref, cur)["table1.json"][0]["current"] == "<missing file>"
    with pytest.raises(FileNotFoundError):
        check_dirs(tmp_path / "empty", cur)
    (cur / "table1.json").write_text(json.dumps(_mutated(lambda c: c.update(params=1))))
    assert cli.main(["check", "--reference", str(ref), "--metrics", str(cur), "--update"]) == 0
    assert json.loads((ref / "table1.json").read_text())["params"] == 1


def test_timings_and_file_locations_are_ignored_wherever_they_nest():
    ref = {"paper_claims": {"ours": {"blurdm_module_latency_ms": {"256x256": 67.9}, "blurdm_module_gmacs": 4.157},
                            "source": "/tmp/a/reports/published/x.yaml"},
           "published_backbones_source": "/work/a/models/published_costs.yaml"}
    cur = {"paper_claims": {"ours": {"blurdm_module_latency_ms": {"256x256": 58.2}, "blurdm_module_gmacs": 4.157},
                            "source": "/tmp/b/reports/published/x.yaml"},
           "published_backbones_source": "/tmp/b/models/published_costs.yaml"}
    assert compare(ref, cur) == []
    cur["paper_claims"]["ours"]["blurdm_module_gmacs"] = 4.2  # a count still has to match
    assert [d["path"] for d in compare(ref, cur)] == ["paper_claims.ours.blurdm_module_gmacs"]
