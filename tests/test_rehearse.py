"""The rehearsal of the paper profile (``make rehearse``, pipelines/rehearse.py): its overrides change sizes,
layout and the download source only; its checks fail on a run that misses what the issue asks; the stage log,
the memory sampler and the copy of the working tree. The rehearsal itself (~30 min) runs in CI (.ci/run)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.core.config import compose, validate
from pipelines.rehearsal.archives import archive_plans, read_info, write_archives
from pipelines.rehearsal.outcome import (
    PAPER_COLUMNS,
    check_ablations,
    check_costs,
    check_full_resolution,
    check_report,
    check_stages,
    check_table1,
    check_training_runs,
    summary_lines,
)
from pipelines.rehearsal.plan import FULL_RES, Sizes, differing_keys, overridden_key, overrides
from pipelines.rehearsal.runner import (
    MARKER,
    StageTime,
    TreeMemory,
    copy_repository,
    parse_stage_lines,
    prepare_folder,
    run_logged,
)

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent
BACKBONES = ["mimo_unet_plus", "stripformer", "fftformer", "loformer"]


def fake_info() -> dict:
    pairs = {"train": 3, "test": 1}
    return {"datasets": {"gopro": {"archive": "GOPRO_Large.zip", "expected_pairs": pairs},
                         "hide": {"archive": "HIDE_dataset.zip", "expected_pairs": {"test": 1}},
                         "realblur_j": {"archive": "RealBlur.tar.gz", "expected_pairs": pairs},
                         "realblur_r": {"archive": "RealBlur.tar.gz", "expected_pairs": pairs}}}


# ------------------------------------------------------------------------------------------ the overrides
def test_the_overrides_change_only_sizes_layout_and_the_download_source():
    paper = compose("paper")
    rehearsal = compose("paper", overrides(Sizes(), "http://127.0.0.1:1234", fake_info(), "/tmp/x/checksums.yaml"))
    params = validate(rehearsal)  # a valid paper profile
    changed = differing_keys(paper, rehearsal)
    assert changed and [k for k in changed if not overridden_key(k)] == []
    # what makes it the paper profile is untouched
    for key in ("models", "train_sets", "ablations", "prior", "controls"):
        assert rehearsal[key] == paper[key], key
    assert params.train.precision == "bf16" and params.models.scale == "paper"
    assert params.models.backbones == ["mimo_unet_plus", "stripformer", "fftformer", "loformer"]
    assert [list(s) for s in params.cost.sizes] == [[256, 256], list(FULL_RES)]
    # the code paths a GPU run takes: micro-batches (FFTformer: 2 of 1), activation checkpointing
    fft = params.for_backbone("fftformer").train
    assert fft.batch_size // fft.micro_batch >= 2 and params.train.activation_checkpointing
    for name, source in params.fetch.datasets.items():
        assert source.urls[0].startswith("http://127.0.0.1:1234/") and not source.manual, name
    assert params.fetch.checksums_file == "/tmp/x/checksums.yaml"


def test_overridden_key_matches_patterns_and_nothing_else():
    assert overridden_key("train.steps.stage1") and overridden_key("backbone_train.loformer.steps.stage3")
    assert overridden_key("fetch.datasets.hide.urls") and overridden_key("backbone_train.mimo_unet.seeds")
    assert not overridden_key("train.precision") and not overridden_key("backbone_train.loformer.seeds")
    assert not overridden_key("models.backbones") and not overridden_key("train")


def test_differing_keys():
    assert differing_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}}) == ["a.c", "a.d"]
    assert differing_keys({"a": [1]}, {"a": [1]}) == []


def test_every_backbone_trains_at_the_rehearsal_crop():
    from models.backbones import build_backbone

    params = validate(compose("paper", overrides(Sizes(), "http://127.0.0.1:1", fake_info(), "/tmp/c.yaml")))
    train_h, train_w = Sizes().splits["gopro"]["train"][1]
    for name in BACKBONES + ["mimo_unet"]:
        with __import__("torch").device("meta"):
            model = build_backbone(name, "paper")
        train = params.for_backbone(name).train
        crop = train.crop_size or params.data.crop_size
        assert crop % model.pad_multiple == 0 and min(train_h, train_w) >= crop, name
    assert params.for_backbone("loformer").train.crop_size == 64 and params.data.crop_size == 32


def test_archive_plans_put_one_full_resolution_pair_in_hide(tmp_path):
    plans = archive_plans(splits=Sizes().splits)
    assert plans["hide"]["test"] == (1, FULL_RES)
    assert all(size != FULL_RES for d, plan in plans.items() for s, (_, size) in plan.items() if (d, s) != ("hide", "test"))
    with pytest.raises(ValueError, match="unknown dataset"):
        archive_plans(splits={"realblur_j": {"test": (1, (64, 64))}})
    write_archives(tmp_path, splits={"gopro": {"train": (3, (40, 48))}, "hide": {"test": (1, (24, 32))}})
    info = read_info(tmp_path)
    assert info["datasets"]["gopro"]["expected_pairs"] == {"train": 3, "test": 2}
    assert info["datasets"]["hide"]["expected_pairs"] == {"test": 1}


# ------------------------------------------------------------------------------------------ the checks
def table1_rows(columns=PAPER_COLUMNS, backbones=BACKBONES) -> list[dict]:
    rows = []
    for dataset, train_set in columns.items():
        for scoring in (("authors", "official") if dataset.startswith("realblur") else (None,)):
            for backbone in backbones:
                rows.append({"dataset": dataset, "scoring": scoring, "backbone": backbone, "train_set": train_set,
                             "baseline": {"psnr": 25.0}, "blurdm": {"psnr": 25.1}})
    return rows


def test_check_table1_passes_the_four_columns():
    assert check_table1({"rows": table1_rows()}, BACKBONES) == []


def test_check_table1_fails_on_a_table_missing_a_column():
    rows = [r for r in table1_rows() if r["dataset"] != "hide"]
    problems = check_table1({"rows": rows}, BACKBONES)
    assert len(problems) == len(BACKBONES) and all("no hide row" in p for p in problems)


def test_check_table1_fails_on_a_column_from_the_wrong_training_set():
    rows = table1_rows({**PAPER_COLUMNS, "realblur_r": "realblur_j"})
    problems = check_table1({"rows": rows}, BACKBONES)
    assert problems and all("realblur_r" in p and "'realblur_j', not 'realblur_r'" in p for p in problems)
    assert len(problems) == 2 * len(BACKBONES)  # both scorings


def test_check_table1_fails_on_a_missing_score_and_an_extra_column():
    rows = table1_rows()
    rows[0]["blurdm"]["psnr"] = float("nan")
    rows.append({**rows[1], "dataset": "gopro_real"})
    problems = check_table1({"rows": rows}, BACKBONES)
    assert any("no finite blurdm PSNR" in p for p in problems) and any("gopro_real" in p for p in problems)


def ablation_file(rows, key="variant", train_set="gopro"):
    return {"train_set": train_set, "dataset": train_set, "backbone": "mimo_unet", "rows": [{key: r} for r in rows]}


def test_check_ablations():
    files = {"ablation_prior": ablation_file(["ddpm", "rddm", "encoder", "blurdm"]),
             "ablation_stages": ablation_file(["s3_only", "s1_s2", "s1_s3"]),
             "t_sweep": ablation_file([3, 5, 8], key="T")}
    args = ("mimo_unet", ["ddpm", "rddm", "encoder"], ["s3_only", "s1_s2", "s1_s3"], [3, 5, 8])
    assert check_ablations(files, *args) == []
    files["t_sweep"] = ablation_file([3, 5, 8], key="T", train_set="realblur_j")
    files["ablation_prior"]["rows"] = files["ablation_prior"]["rows"][1:]
    problems = check_ablations(files, *args)
    assert any("t_sweep.json: train_set is 'realblur_j'" in p for p in problems)
    assert any("ablation_prior.json: no row for variant ['ddpm']" in p for p in problems)
    assert check_ablations({}, *args)[0] == "ablation_prior.json: missing"
    files = {"ablation_prior": ablation_file(["ddpm", "rddm", "encoder", "blurdm"]),
             "ablation_stages": ablation_file(["s3_only", "s1_s2", "s1_s3"]),
             "t_sweep": {**ablation_file([3, 5, 8], key="T"), "other_datasets": {"hide": {"rows": []}}}}
    assert check_ablations(files, *args) == ["t_sweep.json: also scored on ['hide'], the paper's ablations only on "
                                             "'gopro'"]


def test_check_training_runs():
    good = {"a": {"backbone": "fftformer", "precision": "bf16", "activation_checkpointing": True,
                  "batching": {"accumulation_steps": 2}},
            "b": {"backbone": "loformer", "precision": "bf16", "activation_checkpointing": True, "batching": {}}}
    assert check_training_runs(good) == []
    bad = {**good, "c": {"backbone": "fftformer", "precision": "fp32", "batching": {"accumulation_steps": 1}}}
    problems = check_training_runs(bad)
    assert any("not in bf16: c" in p for p in problems) and any("one micro-batch" in p for p in problems)
    assert check_training_runs({}) == ["no training run wrote a metrics.json"]


def test_check_full_resolution_names_the_backbones_without_one():
    summaries = {f"eval/{b}": {"model": {"backbone": b}, "image_sizes": ["96x72", "1280x720"]} for b in BACKBONES[:3]}
    summaries["eval/loformer"] = {"model": {"backbone": "loformer"}, "image_sizes": ["96x72"]}
    assert check_full_resolution(summaries, BACKBONES) == ["no full-resolution (1280x720) evaluation through loformer"]


def test_check_costs():
    costs = {"backbones": {b: {} for b in BACKBONES},
             "latency": {"results": [{"model": "mimo_unet_plus", "size": [720, 1280], "median_ms": 5e4},
                                     {"model": "blurdm_module", "size": [720, 1280], "median_ms": 1e3}]}}
    assert check_costs(costs, BACKBONES) == []
    costs["latency"]["results"] = costs["latency"]["results"][1:]
    assert check_costs(costs, BACKBONES) == ["costs: no backbone timed at 720x1280"]


def test_check_report_and_stages():
    assert check_report("<td>GoPro</td><td>HIDE</td><td>RealBlur-J</td><td>RealBlur-R</td>") == []
    assert check_report("<td>GoPro</td><td>HIDE</td>") == ["the report does not name the column(s) ['RealBlur-J', 'RealBlur-R']"]
    assert check_report(None) == ["reports/site/index.html was not written"]
    assert check_stages(["a", "b"], ["a", "b"], []) == []
    problems = check_stages(["a", "b", "c"], ["a"], ["b"])
    assert "2 of 3 stages did not run: b, c" in problems[0] and "skipped" in problems[1]


def test_summary_fits_one_screen():
    stages = [StageTime(f"train_stage1@gopro-{b}", 10.0 * i, 15.0, 2**30) for i, b in enumerate(BACKBONES)]
    lines = summary_lines(ok=False, problems=["x"], stages=stages, expected=4, seconds=1500.0,
                          phases={"dvc exp run": 1400.0}, peak_rss=9 * 2**30, largest_process=8 * 2**30,
                          report=Path("/r/index.html"), log=Path("/r/log"), columns=["gopro <- gopro"])
    text = "\n".join(lines)
    assert len(lines) <= 24 and "FAILED" in text and "25 min 00 s" in text and "9.0 GiB (9.7 GB)" in text
    assert "stages run:  4 of 4 (train_stage1 4)" in text and "/r/index.html" in text


# ------------------------------------------------------------------------------------------ the runner
def test_parse_stage_lines():
    lines = [(1.0, "Running stage 'fetch@gopro':"), (2.0, "> blurdm-bench fetch gopro"),
             (5.0, "Stage 'synthesize' didn't change, skipping"), (6.0, "Running stage 'report':")]
    stages, skipped = parse_stage_lines(lines, end=10.0)
    assert [(s.name, s.start, s.seconds) for s in stages] == [("fetch@gopro", 1.0, 5.0), ("report", 6.0, 4.0)]
    assert skipped == ["synthesize"]


def test_run_logged_times_stages_and_the_memory_of_the_whole_tree(tmp_path):
    # a child that holds ~150 MB while its parent prints two stage lines
    script = ("import subprocess, sys, time\n"
              "print(\"Running stage 'one':\", flush=True)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(150 * 2**20); "
              "b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1.5)'])\n"
              "child.wait()\n"
              "time.sleep(0.5)\n"
              "print('progress 1/2\\rprogress 2/2', flush=True)\n"
              "print(\"Running stage 'two':\", flush=True)\n")
    echoed = []
    result = run_logged([sys.executable, "-c", script], tmp_path, dict(os.environ), tmp_path / "log",
                        echo=echoed.append, interval=0.1)
    assert result.returncode == 0 and [s.name for s in result.stages] == ["one", "two"]
    assert result.peak_rss > 150 * 2**20 and result.stages[0].peak_rss > 150 * 2**20
    assert result.stages[1].peak_rss < 150 * 2**20  # the child was gone by then
    log = (tmp_path / "log").read_text().splitlines()
    assert any(line.endswith("progress 1/2") for line in log) and any(line.endswith("progress 2/2") for line in log)
    assert len(echoed) == 2 and "one" in echoed[0]


def test_tree_memory_of_a_finished_process_is_zero():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.1)
    assert TreeMemory(proc.pid).sample() == 0


def test_copy_repository_takes_the_working_tree_not_the_ignored_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=src, check=True)
    (src / ".gitignore").write_text("/data/\n")
    (src / "tracked.txt").write_text("committed\n")
    subprocess.run(git + ["add", "-A"], cwd=src, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], cwd=src, check=True)
    (src / "tracked.txt").write_text("edited\n")
    (src / "new.py").write_text("x = 1\n")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(b"0" * 10)
    venv = tmp_path / "venv"
    venv.mkdir()
    source = copy_repository(src, tmp_path / "copy", venv)
    copy = tmp_path / "copy"
    assert (copy / "tracked.txt").read_text() == "edited\n" and (copy / "new.py").is_file()
    assert not (copy / "data").exists() and (copy / ".venv").resolve() == venv.resolve()
    assert source["dirty"] and source["files"] == 3
    status = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True).stdout
    assert status == ""  # one commit holds it all; the linked .venv is excluded


# ------------------------------------------------------------------------ the two params keys it added
def _params_file(tmp_path: Path, profile: str, extra: list[str]) -> Path:
    from pipelines.params import dump

    path = tmp_path / "params.yaml"
    path.write_text(dump(compose(profile, extra)))
    return path


def test_fetch_checksums_file_is_the_table_fetch_verifies_against(tmp_path):
    """fetch.checksums_file (params) replaces pipelines/checksums.yaml, whose entries are null: without the key
    the DVC stage's fetch refuses the miniature archive, with it the archive is verified."""
    from pipelines.rehearsal.server import serve

    archives = tmp_path / "archives"
    write_archives(archives, pairs_per_split=1, size=(24, 32))
    info = read_info(archives)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    with serve(archives) as url:
        source = [o for o in overrides(Sizes(), url, info, str(archives / "checksums.yaml")) if "fetch." in o]
        for with_key in (False, True):
            run = tmp_path / f"run{with_key}"
            run.mkdir()
            params = _params_file(run, "paper", [o for o in source if with_key or "checksums_file" not in o])
            result = subprocess.run([sys.executable, "-m", "pipelines.cli", "fetch", "hide", "--if-active",
                                     "--params", str(params), "--out", str(run / "hide"), "--timeout", "20"],
                                    cwd=run, env=env, capture_output=True, text=True, timeout=100)
            if not with_key:
                assert result.returncode == 2 and "no sha256 is recorded" in result.stderr
                continue
            assert result.returncode == 0, result.stderr[-2000:]
            manifest = json.loads((run / "hide" / "manifest.json").read_text())
            assert manifest["sha256_verified"] and manifest["pairs"] == {"test": 1}


def test_cost_latency_backbones_times_only_those_and_counts_every_backbone(tmp_path):
    from pipelines.cli import main
    from pipelines.results.metric_schemas import CostsFile
    from pipelines.results.run_info import merge_run_info, read_run_info

    params = _params_file(tmp_path, "smoke", ["cost.sizes=[[32,48]]", "++cost.latency_backbones=[mimo_unet]"])
    out = tmp_path / "costs.json"
    assert main(["profile", "--params", str(params), "--scale", "tiny", "--backbones", "mimo_unet", "fftformer",
                 "--latency", "--device", "cpu", "--out", str(out)]) == 0
    costs = CostsFile.model_validate(merge_run_info(json.loads(out.read_text()), read_run_info(out)[0], costs=True))
    assert set(costs.backbones) == {"mimo_unet", "fftformer"}  # counted: every backbone
    assert {r.model for r in costs.latency.results} == {"blurdm_module", "mimo_unet"}  # timed: the ones named
    assert costs.latency_of("fftformer", "baseline", (32, 48)) is None
    assert costs.latency_of("mimo_unet", "blurdm", (32, 48)).median_ms > 0


def test_an_interrupted_rehearsal_ends_the_run_it_started(tmp_path):
    """SIGTERM to the rehearsal ends the DVC run and its stage (a process group of their own), no orphan."""
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "print(\"Running stage 'one':\", flush=True)\n"
              "time.sleep(120)\n")
    runner = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from pipelines.rehearsal.runner import run_logged\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
              f"run_logged([sys.executable, '-c', {script!r}], Path({str(tmp_path)!r}), dict(os.environ), "
              f"Path({str(tmp_path / 'log')!r}), echo=lambda s: None)\n")
    proc = subprocess.Popen([sys.executable, "-c", runner], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    proc.terminate()
    assert proc.wait(60) == 143
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{grandchild}/stat") as fh:  # a zombie waiting for its reaper counts as ended
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.2)
    else:
        os.kill(grandchild, 9)
        pytest.fail("the run's grandchild outlived the rehearsal")


def test_a_rehearsal_refuses_to_start_without_the_disk_it_needs(tmp_path, monkeypatch):
    """A rehearsal writes ~19 GB; on a fuller disk it must stop at once, naming the folder and the numbers, not fail
    half-way when the checkpoints fill the disk (found when a second rehearsal filled this machine's disk)."""
    import shutil as real_shutil

    from pipelines import rehearse
    from pipelines.core.errors import UserError

    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(rehearse.shutil, "disk_usage", lambda path: usage._replace(free=int(5e9)))
    with pytest.raises(UserError, match=r"5\.0 GB free on its disk, a rehearsal needs ~20 GB") as err:
        rehearse.check_free_disk(tmp_path, rehearse.NEEDED_FREE_DISK_GB)
    assert str(tmp_path) in str(err.value) and "--dir" in str(err.value)
    rehearse.check_free_disk(tmp_path, 4.0)  # enough for a smaller need
    rehearse.check_free_disk(tmp_path, 0.0)  # 0 skips it
    # the command checks before it writes anything
    parser = argparse.ArgumentParser()
    rehearse.configure_parser(parser)
    args = parser.parse_args(["--dir", str(tmp_path / "r")])
    assert args.min_free_disk_gb == rehearse.NEEDED_FREE_DISK_GB
    monkeypatch.setattr(rehearse.signal, "signal", lambda *a: None)  # run() installs a SIGTERM handler
    with pytest.raises(UserError, match="GB free on its disk"):
        rehearse.run(args)
    assert not (tmp_path / "r" / "archives").exists() and not (tmp_path / "r" / "repo").exists()
