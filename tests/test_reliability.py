"""Reliability across the suite (issue #8): bad params and data are refused before work, SIGKILL and a full
or read-only disk never leave partial outputs where a later stage reads them, unsafe input is refused,
the MLflow UI stays on 127.0.0.1, and the smoke chain is byte-for-byte reproducible.

Issue 14 (the section at the end): no --out folder we did not write is ever replaced, folder symlink
loops are read once, non-finite weights and outputs are refused, report inputs stay under --root, one
writer per training folder, no two outputs share a name, images over the pixel limit are refused from
their header, strict params, and the tracked metric files are the same bytes in two runs.

Covered elsewhere (not repeated here): params schema -> tests/test_config.py; corrupt / truncated /
size-mismatched / unpaired / grayscale / RGBA / 16-bit files -> tests/test_data.py, tests/test_imageio.py;
synth and fetch failing half-way -> tests/test_synth.py, tests/test_fetch.py; SIGKILL during training
and exact resume -> tests/test_checkpoint.py::test_resume_after_sigkill_gives_identical_weights_and_metrics;
crafted pickles -> tests/test_checkpoint.py::test_crafted_pickle_is_refused; archive path traversal and
links -> tests/test_fetch.py::test_malicious_archive_is_refused; exceptions during evaluate / report ->
tests/test_evaluate.py, tests/test_report.py.
"""
from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from pipelines.cli import main
from pipelines.data.image_files import write_png

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SMOKE = ["--profile", "smoke"]
TABLE1 = ["--study", "table1", "--train-set", "synthetic", "--backbone", "mimo_unet"]
# The reduced smoke chain: the DVC stages of one backbone, then the report.
CHAIN = [
    ["synth", *SMOKE, "--no-progress"],
    *[["study", "train", *TABLE1, "--stage", stage, *SMOKE, "--no-progress"]
      for stage in ("stage1", "stage2", "stage3", "baseline")],
    ["study", "evaluate", *TABLE1, *SMOKE, "--no-progress"],
    ["tables", *SMOKE],
    ["report"],
]
# Runs blurdm-bench commands in a fresh interpreter: argv = [patch, delay, json list of commands]. ``patch``
# ("module:attr" or "") is replaced by a version that sleeps ``delay`` s first: a slow fake that keeps
# the command busy long enough to SIGKILL it at a known point.
DRIVER = r"""
import importlib, json, sys, time
patch, delay, commands = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
if patch:
    module, attr = patch.split(":")
    owner = importlib.import_module(module)
    *parents, name = attr.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    real = getattr(owner, name)
    def slow(*args, **kwargs):
        time.sleep(delay)
        return real(*args, **kwargs)
    setattr(owner, name, slow)
from pipelines.cli import main
for command in commands:
    code = main(command)
    if code:
        sys.exit(code)
"""


def _env(root: Path) -> dict:
    return {**os.environ, "BLURDM_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
            "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}


def _start(root: Path, commands: list[list[str]], patch: str = "", delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", DRIVER, patch, str(delay), json.dumps(commands)], cwd=root,
                            env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# The smoke profile made smaller still for the chain: fewer pairs and steps (the code paths are the same).
CHAIN_SMOKE = {"synth": {"n_train": 8, "n_test": 3}, "train": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}}}


def _new_root(folder: Path, smoke_overrides: dict | None = None) -> Path:
    """A fresh repo root (``$BLURDM_ROOT``) holding a copy of params.yaml, optionally with a smaller smoke."""
    from pipelines.core.config import compose, deep_merge

    folder.mkdir(parents=True)
    raw = deep_merge(compose("smoke"), smoke_overrides or {})
    for name, rel in raw["data"]["test"].items():  # test sets committed in the repo (the real GoPro crops)
        if not rel.startswith("data/"):
            raw["data"]["test"][name] = str(REPO / rel)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def _sigkill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 90) -> None:
    """Poll ``ready()``; SIGKILL the process as soon as it is true (fails if the process ends first)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the process ended before {what} (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def _temporaries(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp")) if folder.is_dir() else []


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_root(source: Path, dest: Path, parts=("params.yaml", "data", "runs", "eval", "metrics")) -> Path:
    dest.mkdir(parents=True)
    for part in parts:
        src = source / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / part)
    return dest


@pytest.fixture
def in_root(tmp_path, monkeypatch):
    """Run ``main`` in-process against a fresh repo root (tmp) with its own MLflow store."""
    root = _new_root(tmp_path / "root")
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.chdir(root)  # relative --out paths land where the tests look
    return root


# ------------------------------------------------------------------------------- the smoke chain, twice

@pytest.fixture(scope="module")
def smoke_chain(tmp_path_factory):
    """The reduced chain run twice at the same time in two fresh roots (subprocesses); returns both roots."""
    roots = [_new_root(tmp_path_factory.mktemp("chain") / "root", CHAIN_SMOKE) for _ in range(2)]
    procs = [_start(root, CHAIN) for root in roots]
    for proc in procs:
        _, err = proc.communicate(timeout=170)
        assert proc.returncode == 0, err[-3000:]
    return roots


def test_smoke_chain_gives_byte_identical_metric_tables(smoke_chain):
    """Issue 14, item 11: the tracked tables are the same BYTES in two runs (no date, no MLflow run id, no
    absolute path in them); what differs between runs sits in the untracked metrics/run_info/ sidecars,
    and the report still links every run from there."""
    first = smoke_chain[0]
    names = sorted(p.name for p in (first / "metrics").glob("*.json"))
    assert names == ["ablation_prior.json", "ablation_stages.json", "controls.json", "headline.json", "t_sweep.json",
                     "table1.json"]
    table1 = json.loads((first / "metrics" / "table1.json").read_text())
    assert [(r["train_set"], r["dataset"], r["backbone"]) for r in table1["rows"]] == [
        ("synthetic", "synthetic", "mimo_unet"), ("synthetic", "gopro_real", "mimo_unet")]
    assert "date" not in table1["meta"] and "runs" not in table1["rows"][0]
    for name in names:
        a, b = ((root / "metrics" / name).read_bytes() for root in smoke_chain)
        assert a == b, name
        assert str(first) not in a.decode() and str(smoke_chain[1]) not in a.decode(), name
    sidecars = [json.loads((root / "metrics" / "run_info" / "table1.json").read_text()) for root in smoke_chain]
    runs = [s["runs"]["synthetic/mimo_unet"] for s in sidecars]
    assert all(len(ids) == 1 for r in runs for ids in r.values())  # tracked in MLflow ...
    assert runs[0] != runs[1] and all(s["date"] for s in sidecars)  # ... with ids of their own run
    page = (first / "reports" / "site" / "index.html").read_text()
    assert all(run_id in page for ids in runs[0].values() for run_id in ids)
    for rel in ("eval/table1/synthetic/mimo_unet/synthetic/blurdm/seed0/scores.csv",
                "runs/table1/synthetic/mimo_unet/stage3/seed0/model.pt"):
        if rel.endswith(".csv"):  # the per-image table without its timing column
            a, b = ([line.rsplit(",", 1)[0] for line in (root / rel).read_text().splitlines()] for root in smoke_chain)
        else:
            a, b = (torch.load(root / rel, weights_only=True)["model"] for root in smoke_chain)
            a, b = ({k: v.numpy().tobytes() for k, v in t.items()} for t in (a, b))
        assert a == b, rel
    # outputs get ordinary permissions (umask), not tempfile's private 0600 / 0700
    mask = os.umask(0)
    os.umask(mask)
    assert (first / "metrics" / "table1.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (first / "reports" / "site").stat().st_mode & 0o777 == 0o777 & ~mask


# ------------------------------------------------------------------------------- SIGKILL part-way

def _comparable_eval(folder: Path, root: Path) -> tuple[list[str], dict]:
    scores = [line.rsplit(",", 1)[0] for line in (folder / "scores.csv").read_text().splitlines()]  # no timing
    summary = json.loads((folder / "summary.json").read_text().replace(str(root), "<root>"))
    summary["metrics"].pop("seconds")
    return scores, summary


def test_sigkill_during_evaluate_leaves_nothing_or_the_previous_results(smoke_chain, tmp_path, monkeypatch):
    reference = smoke_chain[0]
    root = _copy_root(reference, tmp_path / "root", parts=("params.yaml", "data", "runs"))
    baseline = root / "eval" / "table1" / "synthetic" / "mimo_unet" / "synthetic" / "baseline" / "seed0"
    command = [["study", "evaluate", *TABLE1, *SMOKE, "--no-progress"]]

    def killed_mid_evaluation():
        proc = _start(root, command, patch="pipelines.evaluation.evaluator:score_image", delay=1.0)
        # killed once the first image's crops are written, while the second image is scored
        _sigkill_when(proc, lambda: any(t.glob("crops/*_sharp.png") for t in _temporaries(baseline.parent, "seed0")),
                      "the evaluation was half-way")

    killed_mid_evaluation()
    assert not baseline.exists()  # nothing where the tables stage reads
    assert _temporaries(baseline.parent, "seed0")  # the killed run's partial folder, hidden

    monkeypatch.setenv("BLURDM_ROOT", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(command[0]) == 0  # the rerun completes ...
    assert not _temporaries(baseline.parent, "seed0")  # ... removes the leftovers ...
    for method in ("baseline", "blurdm"):  # ... and gives what an uninterrupted run gave
        rel = Path("eval/table1/synthetic/mimo_unet/synthetic") / method / "seed0"
        assert _comparable_eval(root / rel, root) == _comparable_eval(reference / rel, reference), method

    before = _tree(baseline)
    killed_mid_evaluation()
    assert _tree(baseline) == before  # the previous complete results, untouched


def test_sigkill_during_report_leaves_nothing_or_the_previous_page(smoke_chain, tmp_path, monkeypatch):
    reference = smoke_chain[0]
    root = _copy_root(reference, tmp_path / "root")
    site = root / "reports" / "site"

    def killed_mid_render():
        proc = _start(root, [["report"]], patch="reports.build:render_page", delay=30)
        _sigkill_when(proc, lambda: any((t / "assets").is_dir() for t in _temporaries(site.parent, "site")),
                      "the report was half-way")

    killed_mid_render()
    assert not site.exists()
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    assert main(["report"]) == 0
    assert not _temporaries(site.parent, "site")
    page = (site / "index.html").read_text()
    assert page.replace(str(root), "<root>") == \
        (reference / "reports" / "site" / "index.html").read_text().replace(str(reference), "<root>")

    before = _tree(site)
    killed_mid_render()
    assert _tree(site) == before


def test_sigkill_during_synth_never_leaves_a_half_written_dataset(smoke_chain, tmp_path, monkeypatch):
    reference = smoke_chain[0] / "data" / "synthetic"
    root = _new_root(tmp_path / "root", CHAIN_SMOKE)
    out = root / "data" / "synthetic"

    def killed_mid_synthesis():
        proc = _start(root, [["synth", *SMOKE, "--no-progress"]], patch="pipelines.data.motion_blur:render_sample", delay=0.3)
        _sigkill_when(proc, lambda: any(any(t.rglob("*.png")) for t in _temporaries(out.parent, "synthetic")),
                      "the dataset was half-written")

    killed_mid_synthesis()
    assert not out.exists() and _temporaries(out.parent, "synthetic")
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    assert main(["synth", *SMOKE, "--no-progress"]) == 0
    assert not _temporaries(out.parent, "synthetic")  # the partial copy is gone, not piling up
    produced, expected = _tree(out), _tree(reference)
    assert produced == expected  # manifest included

    before = _tree(out)
    killed_mid_synthesis()
    assert _tree(out) == before


# ------------------------------------------------------------------------------- disk full, read-only

@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    from _train_fixtures import make_dataset, small_params

    data = make_dataset(tmp_path_factory.mktemp("synthetic"))
    return small_params(data, {"steps": {"stage1": 4}, "checkpoint_every": 2})


@pytest.mark.parametrize("failure", ["oserror", "torch_runtime_error"])
def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(tiny_training, tmp_path, monkeypatch, failure):
    """``torch.save`` on a full disk: as an OSError, or as the RuntimeError torch really raises (its stream
    writer hides ENOSPC); both reach the user as 'No space left on device' naming the file."""
    import pipelines.core.files
    from pipelines.core.checkpoint_files import load_checkpoint
    from pipelines.training.job import TrainJob
    from pipelines.training.trainer import train

    real_save, calls = torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the checkpoint at step 4
            if hasattr(f, "write"):  # half an archive reached the disk
                f.write(b"PK\x03\x04 partial")
            else:
                Path(f).write_bytes(b"PK\x03\x04 partial")
            if failure == "oserror":
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(pipelines.core.files.shutil, "disk_usage", lambda _p: SimpleNamespace(total=9, used=9, free=0))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    job = {"stage": "stage1", "backbone": "mimo_unet", "out_dir": out, "mlflow": False}
    with pytest.raises(OSError) as err:
        train(TrainJob(**job), tiny_training, progress=False)
    assert err.value.errno == errno.ENOSPC and "No space left on device" in str(err.value)
    assert str(out / "last.pt") in str(err.value)
    assert load_checkpoint(out / "last.pt")["step"] == 2  # the last good checkpoint, intact
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]  # no partial file, no model.pt

    monkeypatch.undo()  # space freed: the same job resumes and finishes
    metrics = train(TrainJob(**job), tiny_training, progress=False)
    assert metrics["resumed_from_step"] == 2 and metrics["steps"] == 4


def test_disk_full_writing_the_tables_is_one_clear_line_and_keeps_the_old_table(smoke_chain, tmp_path, monkeypatch,
                                                                                 capsys):
    root = _copy_root(smoke_chain[0], tmp_path / "root")
    before = _tree(root / "metrics")
    monkeypatch.setenv("BLURDM_ROOT", str(root))

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["tables", *SMOKE]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(root / "metrics" / "table1.json") in err
    assert "Traceback" not in err
    assert _tree(root / "metrics") == before  # every table as it was, no temporary file


@pytest.mark.parametrize("how", ["chmod", "patched"])
def test_read_only_output_folder_is_a_clear_error(tmp_path, monkeypatch, capsys, how):
    parent = tmp_path / "ro"
    parent.mkdir()
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("running as root: permission bits do not stop root from writing (the patched variant runs)")
        parent.chmod(0o555)
    else:
        import tempfile

        def denied(*_args, **_kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(tempfile, "mkdtemp", denied)
    try:
        code = main(["synth", "--params", str(REPO / "params.yaml"), *SMOKE, "--out", str(parent / "ds"),
                     "--no-progress"])
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 1 and "Permission denied" in err and str(parent / "ds") in err and "Traceback" not in err
    assert list(parent.iterdir()) == []


def test_real_full_filesystem_gives_a_clear_error(tmp_path):
    """A real ENOSPC (a 256 KiB tmpfs; needs root and mount rights, else skipped)."""
    from pipelines.core.checkpoint_files import load_checkpoint, save_checkpoint
    from pipelines.core.files import write_json

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root / no mount rights)")
    try:
        save_checkpoint(disk / "last.pt", {"step": 1, "w": torch.zeros(1000)})
        write_json(disk / "m.json", {"v": 1})
        with pytest.raises(OSError, match=r"No space left on device.*last\.pt"):
            save_checkpoint(disk / "last.pt", {"step": 2, "w": torch.zeros(200_000)})
        with pytest.raises(OSError, match=r"No space left on device.*m\.json"):
            write_json(disk / "m.json", {"v": "x" * 400_000})
        assert load_checkpoint(disk / "last.pt")["step"] == 1
        assert json.loads((disk / "m.json").read_text()) == {"v": 1}
        assert sorted(p.name for p in disk.iterdir()) == ["last.pt", "m.json"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------------------- params and data, via the CLI

def _params_file(folder: Path, mutate=None) -> Path:
    """A params file of the smoke profile (as pipelines/conf composes it), optionally mutated."""
    from pipelines.core.config import compose

    raw = compose("smoke")
    if mutate:
        mutate(raw)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


STUDY_STAGE1 = ["study", "train", *TABLE1, "--stage", "stage1", *SMOKE, "--no-progress"]


@pytest.mark.parametrize("mutate,argv,message", [
    (lambda r: r["prior"].update(T=0), STUDY_STAGE1, "prior.T"),
    (lambda r: r["train"]["steps"].update(stage1=-5), STUDY_STAGE1, "train.steps.stage1"),
    (lambda r: r["models"].update(backbones=["mimo_unet", "unet9000"]), STUDY_STAGE1, "'stripformer'"),
    (None, ["study", "train", *TABLE1, "--stage", "stage1", "--profile", "fast"], "allowed: smoke, cpu, paper"),
    (None, ["train", "--stage", "stage1", "--backbone", "mimo_unet", "--out", "x", "--T", "0", *SMOKE],
     "--T must be an integer >= 1"),
    (None, ["train", "--stage", "stage1", "--backbone", "mimo_unet", "--out", "x", "--steps", "-3", *SMOKE],
     "--steps must be >= 0"),
])
def test_bad_params_are_refused_before_any_work(in_root, capsys, mutate, argv, message):
    params = _params_file(in_root, mutate)
    assert main([*argv, "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]  # no runs/, no MLflow store, no x/


@pytest.mark.parametrize("argv", [
    ["study", "train", "--study", "table1", "--backbone", "unet9000", "--stage", "stage1"],
    ["study", "train", "--study", "table1", "--backbone", "mimo_unet", "--stage", "stage4"],
    ["train", "--stage", "stage1", "--backbone", "mimo_unet", "--prior", "ddim", "--out", "x"],
])
def test_unknown_names_on_the_command_line_exit_2_listing_the_allowed_values(in_root, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]


def _pairs(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    for i, (h, w) in enumerate(sizes):
        image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        write_png(folder / "input" / f"{i}.png", image)
        write_png(folder / "target" / f"{i}.png", image)
    return folder


def _data_params(root: Path, data: Path) -> Path:
    return _params_file(root, lambda r: r["train_sets"]["synthetic"].update(train=str(data)))


def test_crop_larger_than_the_images_is_refused_before_training(in_root, tmp_path, capsys):
    # one small image among big ones: found before training, not when the sampler reaches it hours later
    data = _pairs(tmp_path / "mixed", [(64, 64)] * 5 + [(24, 40)])
    params = _data_params(in_root, data)
    assert main([*STUDY_STAGE1, "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "data.crop_size=32" in err and str(data / "input" / "5.png") in err and "allowed" in err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]  # nothing trained, no MLflow run

    # `blurdm-bench train` on images that are all too small: exit 2 naming the file, no checkpoint
    small = _pairs(tmp_path / "small", [(24, 24)] * 4)
    out = tmp_path / "out"
    assert main(["train", "--stage", "stage1", "--backbone", "mimo_unet", "--out", str(out), "--data", str(small),
                 *SMOKE, "--params", str(params), "--no-mlflow", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data.crop_size=32" in err and str(small / "input") in err and "allowed" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case,message", [
    ("size_mismatch", "size mismatch"),
    ("not_an_image", "not an image file"),
    ("unpaired", "no sharp partner"),
    ("empty", "no images"),
])
def test_bad_training_data_is_refused_before_training_naming_the_file(in_root, tmp_path, capsys, case, message):
    data = _pairs(tmp_path / "ds", [(64, 64)] * 3)
    culprit = data / "input" / "1.png"
    if case == "size_mismatch":
        write_png(culprit, np.zeros((64, 48, 3), np.uint8))
    elif case == "not_an_image":
        culprit.write_bytes(b"<html>403 Forbidden</html>")
    elif case == "unpaired":
        culprit = data / "input" / "9.png"
        write_png(culprit, np.zeros((64, 64, 3), np.uint8))
    else:
        for f in data.rglob("*.png"):
            f.unlink()
        culprit = data
    assert main([*STUDY_STAGE1, "--params", str(_data_params(in_root, data))]) == 2
    err = capsys.readouterr().err
    assert message in err and culprit.name in err and "Traceback" not in err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]


@pytest.fixture(scope="module")
def baseline_checkpoint(tmp_path_factory):
    from models.deblur_model import build_deblur_model, model_payload
    from pipelines.core.checkpoint_files import save_checkpoint

    torch.manual_seed(0)
    model = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model_payload(model))


def test_truncated_test_image_stops_evaluate_naming_it_with_no_output(baseline_checkpoint, tmp_path, capsys):
    data = _pairs(tmp_path / "test", [(32, 32)] * 3)
    truncated = data / "target" / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:1500])
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(baseline_checkpoint), "--data", str(data), "--out", str(out),
                 "--no-lpips", "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and str(truncated) in err
    assert list(tmp_path.iterdir()) == [data]  # no output folder, no temporary one


def test_size_mismatch_in_the_test_set_is_refused_before_any_inference(baseline_checkpoint, tmp_path, capsys,
                                                                       monkeypatch):
    import pipelines.evaluation.evaluator as ev

    data = _pairs(tmp_path / "test", [(32, 32)] * 3)
    write_png(data / "target" / "2.png", np.zeros((32, 24, 3), np.uint8))
    monkeypatch.setattr(ev, "restore_image", lambda *a, **k: pytest.fail("inference started"))
    assert main(["evaluate", "--checkpoint", str(baseline_checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "eval"), "--no-lpips", "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "size mismatch" in err and str(data / "target" / "2.png") in err and "24x32" in err
    assert list(tmp_path.iterdir()) == [data]


# ------------------------------------------------------------------------------- security

class _Exploit:
    """Unpickling this creates ``marker``: what a malicious checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("command", ["evaluate", "train_stage2", "deblur"])
def test_every_command_refuses_a_crafted_checkpoint(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"format": "blurdm-bench/model", "spec": {}, "model": {}, "x": _Exploit(marker)}, evil)
    data = _pairs(tmp_path / "data", [(32, 32)])
    argv = {
        "evaluate": ["evaluate", "--checkpoint", str(evil), "--data", str(data), "--out", str(tmp_path / "e")],
        "train_stage2": ["train", "--stage", "stage2", "--backbone", "mimo_unet", "--stage1", str(evil),
                         "--out", str(tmp_path / "s2"), "--data", str(data), "--no-mlflow", *SMOKE],
        "deblur": ["deblur", str(data / "input"), "-o", str(tmp_path / "d"), "--checkpoint", str(evil)],
    }[command]
    assert main([*argv, "--params", str(REPO / "params.yaml")] if command != "deblur" else argv) == 2
    err = capsys.readouterr().err
    assert "refused" in err and str(evil) in err
    assert not marker.exists()  # the payload never ran


def _python_sources() -> list[Path]:
    folders = ("pipelines", "models", "reports", "tests", "bench")
    return [p for folder in folders if (REPO / folder).is_dir() for p in sorted((REPO / folder).rglob("*.py"))]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "getoutput",
               "getstatusoutput", "asyncio.create_subprocess_shell", "create_subprocess_shell", "pty.spawn"}


def test_no_shell_is_ever_started():
    """No ``shell=True`` and no shell-running call anywhere in the source tree (parsed, not grepped, so
    strings and comments do not count)."""
    offences = []
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if _dotted(node.func) in SHELL_CALLS:
                offences.append(f"{where}: {_dotted(node.func)}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    offences.append(f"{where}: shell={ast.unparse(kw.value)}")
    assert len(_python_sources()) > 50
    assert not offences, offences


def test_every_torch_load_is_weights_only():
    offences, seen = [], 0
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _dotted(node.func) == "torch.load":
                seen += 1
                weights_only = [kw.value for kw in node.keywords if kw.arg == "weights_only"]
                if not (weights_only and isinstance(weights_only[0], ast.Constant) and weights_only[0].value is True):
                    offences.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert seen >= 2
    assert not offences, offences


# ------------------------------------------------------------------------------- blurdm-bench ui

def test_ui_binds_to_loopback_as_an_argument_list(monkeypatch, capsys, tmp_path):
    from pipelines import ui

    store = f"sqlite:///{tmp_path}/my store; rm -rf ~.db"  # shell metacharacters stay one argument
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    launched = []
    monkeypatch.setattr(ui.os, "execv", lambda path, argv: launched.append((path, argv)))
    assert main(["ui", "--params", str(REPO / "params.yaml")]) == 0
    [(path, argv)] = launched  # exec'd as an argument list: no shell, no child left behind
    assert isinstance(argv, list) and path == argv[0] and os.access(path, os.X_OK)
    assert Path(argv[0]).name == "mlflow" or argv[1:3] == ["-m", "mlflow"]
    tail = argv[argv.index("ui"):]
    assert tail == ["ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", "5000"]
    assert "WARNING" not in capsys.readouterr().err

    launched.clear()
    assert main(["ui", "--store", "sqlite:///x.db", "--port", "5123", "--dry-run"]) == 0
    assert not launched  # printed, not started
    assert "--host 127.0.0.1 --port 5123" in capsys.readouterr().out


def test_ui_refuses_a_non_loopback_host_unless_exposed(monkeypatch, capsys):
    from pipelines import ui

    monkeypatch.setattr(ui.os, "execv", lambda *a: pytest.fail("must not start"))
    for host in ("0.0.0.0", "192.168.1.7", "example.org", "::"):
        assert main(["ui", "--store", "sqlite:///x.db", "--host", host]) == 2
        assert "--expose" in capsys.readouterr().err
    for host in ("localhost", "127.0.0.1", "::1"):
        assert ui.ui_command("sqlite:///x.db", host)[-3] == host
    assert main(["ui", "--store", "sqlite:///x.db", "--host", "0.0.0.0", "--expose", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "no authentication" in captured.err
    assert "--host 0.0.0.0" in captured.out
    assert main(["ui", "--store=--default-artifact-root=/tmp", "--dry-run"]) == 2  # would be read as an option
    assert main(["ui", "--store", "sqlite:///x.db", "--port", "70000", "--dry-run"]) == 2


# ------------------------------------------------------------------------------- issue 14

EVAL_PARAMS = ["--no-lpips", "--params", str(REPO / "params.yaml")]


def _evaluate(checkpoint: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), *EVAL_PARAMS,
                 *extra])


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` (the pixel data is absent): a decompression bomb."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# item 2 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command,content", [
    ("synth", {"thesis.tex": "years of work", "sub/data.csv": "1,2"}),
    ("synth", {"manifest.json": '{"dataset": "gopro", "layout": "gopro"}', "train/x.png": "not ours"}),  # fetched
    ("report", {"thesis.tex": "years of work", "sub/data.csv": "1,2"}),
    ("report", {"index.html": "<html>my own home page</html>", "photo.jpg": "x"}),
])
def test_an_out_folder_we_did_not_write_is_never_replaced(tmp_path, capsys, command, content):
    out = tmp_path / "home"
    for rel, text in content.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    before = _tree(out)
    (tmp_path / "metrics").mkdir()
    argv = {"synth": ["synth", "--params", str(REPO / "params.yaml"), *SMOKE, "--out", str(out), "--no-progress"],
            "report": ["report", "--metrics-dir", str(tmp_path / "metrics"), "--out", str(out), "--root", str(tmp_path),
                       "--params", str(REPO / "params.yaml")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "refusing to replace it" in err and "Traceback" not in err
    assert _tree(out) == before  # not one file deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "metrics"]  # no temporary folder left


def test_our_own_output_folders_are_still_replaced(tmp_path, capsys):
    from pipelines.core.config import load_params
    from pipelines.data.motion_blur import generate

    (tmp_path / "metrics").mkdir()
    site = tmp_path / "site"
    argv = ["report", "--metrics-dir", str(tmp_path / "metrics"), "--out", str(site), "--root", str(tmp_path),
            "--params", str(REPO / "params.yaml")]
    site.mkdir()  # an empty folder may be used
    assert main(argv) == 0 and main(argv) == 0  # ... and a site we rendered is replaced
    assert (site / "index.html").is_file()
    cfg = load_params(REPO / "params.yaml", profile="smoke").synth.model_copy(update={"n_train": 1, "n_test": 1})
    generate(cfg, tmp_path / "ds", progress=False)
    (tmp_path / "ds" / "stale.txt").write_text("from the previous dataset")
    generate(cfg, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "stale.txt").exists() and (tmp_path / "ds" / "manifest.json").is_file()


# item 3 -------------------------------------------------------------------------------------------

def test_a_folder_symlink_loop_is_read_once(baseline_checkpoint, tmp_path, capsys):
    from pipelines.data.pairs import find_pairs

    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    for side in ("input", "target"):
        (data / side / "again").symlink_to(".", target_is_directory=True)  # again/again/again/... -> itself
    with pytest.warns(UserWarning, match="again.*folder already read"):
        pairs = find_pairs(data)
    assert [p.name for p in pairs] == ["0.png", "1.png"]
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="again"):
        assert _evaluate(baseline_checkpoint, data, out) == 0  # crops on (params: crop_images 4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 2 and len((out / "scores.csv").read_text().splitlines()) == 3
    assert min(p.name for p in (out / "crops").iterdir()) == "0_blur.png"


def test_broken_and_looping_file_symlinks_are_skipped_naming_them(tmp_path):
    from pipelines.data.pairs import find_pairs

    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    for side in ("input", "target"):
        (data / side / "gone.png").symlink_to(data / side / "deleted.png")
        (data / side / "loop.png").symlink_to("loop.png")
    with pytest.warns(UserWarning) as caught:
        pairs = find_pairs(data)
    assert [p.name for p in pairs] == ["0.png", "1.png"]
    messages = " | ".join(str(w.message) for w in caught)
    for side in ("input", "target"):
        assert f"{data / side / 'gone.png'}: skipped: broken symbolic link" in messages
        assert f"{data / side / 'loop.png'}: skipped: symbolic link loop" in messages


# item 4 -------------------------------------------------------------------------------------------

def _altered_checkpoint(checkpoint: Path, dest: Path, alter) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    for key, value in payload["model"].items():
        if value.is_floating_point():
            alter(key, value)
    torch.save(payload, dest)
    return dest


def test_non_finite_weights_are_refused_naming_the_tensor(baseline_checkpoint, tmp_path, capsys):
    def poison(key, value):
        if key == "backbone.head.0.weight":
            value.view(-1)[3] = float("nan")

    bad = _altered_checkpoint(baseline_checkpoint, tmp_path / "nan.pt", poison)
    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    assert _evaluate(bad, data, tmp_path / "eval") == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "model.backbone.head.0.weight" in err and "non-finite" in err
    assert main(["deblur", str(data / "input"), "-o", str(tmp_path / "restored"), "--checkpoint", str(bad)]) == 2
    assert "model.backbone.head.0.weight" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt", "test"]  # no black image, no scores


def test_a_non_finite_model_output_is_an_error_not_a_black_image(baseline_checkpoint, tmp_path, capsys):
    huge = _altered_checkpoint(baseline_checkpoint, tmp_path / "huge.pt", lambda _k, v: v.mul_(1e30))  # finite
    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    assert main(["deblur", str(data / "input"), "-o", str(tmp_path / "restored"), "--checkpoint", str(huge)]) == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and str(data / "input" / "0.png") in err and "2 of 2 file(s) failed" in err
    restored = tmp_path / "restored"
    assert not restored.exists() or not list(restored.rglob("*.png"))  # no black image
    assert _evaluate(huge, data, tmp_path / "eval") == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and str(data / "input" / "0.png") in err and "Traceback" not in err
    assert not (tmp_path / "eval").exists() and not list(tmp_path.glob(".eval.*"))


# item 5 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,path,message", [
    ("crops", "/etc/passwd", "outside --root"),
    ("crops", "../../../../etc/hostname", "outside --root"),
    ("crops", "notes/secret.png", "not a readable image"),
    ("crops", "notes/secret.txt", "not an image file"),
    ("per_image", "../../outside/scores.csv", "outside --root"),
])
def test_report_refuses_paths_outside_root_or_crops_that_are_not_images(tmp_path, capsys, key, path, message):
    root = tmp_path / "outputs"
    shutil.copytree(REPO / "tests" / "fixtures" / "report", root)
    (root / "notes").mkdir()
    for name in ("secret.png", "secret.txt"):
        (root / "notes" / name).write_text("password: hunter2")
    table = root / "metrics" / "table1.json"
    data = json.loads(table.read_text())
    entry = data["rows"][0][key]
    side = "blurred" if key == "crops" else "baseline"
    entry[side] = [path] + (entry[side][1:] if isinstance(entry[side], list) else [])
    table.write_text(json.dumps(data, indent=2))
    site = tmp_path / "site"
    assert main(["report", "--metrics-dir", str(root / "metrics"), "--out", str(site), "--root", str(root),
                 "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    where = "rows[0].crops.blurred[0]" if key == "crops" else "rows[0].per_image.baseline[0]"
    assert str(table) in err and where in err and message in err and "refused" in err
    assert not site.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


# item 6 -------------------------------------------------------------------------------------------

def test_a_second_writer_of_a_training_folder_is_refused(tiny_training, tmp_path):
    import fcntl

    from pipelines.training.job import TrainJob
    from pipelines.training.trainer import train

    out = tmp_path / "run"
    out.mkdir()
    job = {"stage": "stage1", "backbone": "mimo_unet", "out_dir": out, "mlflow": False}
    with open(out / ".train.lock", "w") as held:  # another `train` is writing this folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on node7\n")
        held.flush()
        with pytest.raises(ValueError) as err:
            train(TrainJob(**job), tiny_training, progress=False)
        assert str(out) in str(err.value) and "another training run is writing this folder" in str(err.value)
        assert "pid 4242 on node7" in str(err.value)
        assert sorted(p.name for p in out.iterdir()) == [".train.lock"]  # the second writer wrote nothing
    metrics = train(TrainJob(**job), tiny_training, progress=False)  # once the first is done: fine
    assert metrics["steps"] == 4
    assert ".train.lock" not in {p.name for p in out.iterdir()}  # the lock is gone with its writer


# item 7 -------------------------------------------------------------------------------------------

def test_evaluate_refuses_inputs_whose_outputs_would_share_a_name(baseline_checkpoint, tmp_path, capsys, monkeypatch):
    from PIL import Image

    import pipelines.evaluation.evaluator as ev

    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    image = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for side in ("input", "target"):
        write_png(data / side / "dup.png", image)
        Image.fromarray(image).save(data / side / "dup.jpg", quality=95)
    monkeypatch.setattr(ev, "restore_image", lambda *a, **k: pytest.fail("inference started"))
    assert _evaluate(baseline_checkpoint, data, tmp_path / "eval", "--save-images") == 2
    err = capsys.readouterr().err
    assert "output name collision" in err and "images/dup.png" in err
    assert str(data / "input" / "dup.jpg") in err and str(data / "input" / "dup.png") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test"]


# item 8 -------------------------------------------------------------------------------------------

def test_a_decompression_bomb_is_refused_from_its_header_naming_both_sizes(baseline_checkpoint, tmp_path, capsys):
    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    bomb = _png_header_only(20000, 20000)
    assert len(bomb) < 80
    for side in ("input", "target"):
        (data / side / "bomb.png").write_bytes(bomb)
    assert _evaluate(baseline_checkpoint, data, tmp_path / "eval") == 2
    err = capsys.readouterr().err
    assert str(data / "input" / "bomb.png") in err and "20000x20000" in err and "7680x4320" in err
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["test"]
    assert main(["deblur", str(data / "input"), "-o", str(tmp_path / "restored"), "--checkpoint",
                 str(baseline_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert str(data / "input" / "bomb.png") in err and "20000x20000" in err
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["0.png", "1.png"]


def test_a_valid_image_over_the_pixel_limit_is_not_decoded(tmp_path):
    from PIL import Image

    from pipelines.data.image_files import ImageReadError, read_image, read_image_size

    big = tmp_path / "big.png"
    Image.new("1", (8000, 5000)).save(big)  # 40 Mpixel: over an 8K frame, under Pillow's own warning
    assert big.stat().st_size < 100_000
    for reader in (read_image_size, read_image):
        with pytest.raises(ImageReadError, match=r"8000x5000 = 40000000 pixels, over the limit of 33177600"):
            reader(big)


def test_the_pixel_limit_comes_from_params(baseline_checkpoint, in_root, tmp_path, capsys, monkeypatch):
    import pipelines.core.limits

    monkeypatch.setattr(pipelines.core.limits, "_max_pixels", pipelines.core.limits.DEFAULT_MAX_PIXELS)  # restored after
    params = _params_file(in_root, lambda r: r["data"].update(max_pixels=1000))
    data = _pairs(tmp_path / "test", [(32, 32)] * 2)
    assert main(["evaluate", "--checkpoint", str(baseline_checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "eval"), "--no-lpips", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert str(data / "input" / "0.png") in err and "32x32 = 1024 pixels" in err and "limit of 1000" in err
    assert "data.max_pixels" in err


# item 9 -------------------------------------------------------------------------------------------

def test_deblur_skips_a_looping_file_symlink_and_restores_the_rest(baseline_checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    write_png(photos / "a.png", np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (photos / "loop.png").symlink_to("loop.png")
    (photos / "gone.png").symlink_to(tmp_path / "deleted.png")
    (photos / "again").symlink_to(".", target_is_directory=True)
    out = tmp_path / "restored"
    assert main(["deblur", str(photos), "-o", str(out), "--checkpoint", str(baseline_checkpoint)]) == 0
    err = capsys.readouterr().err
    assert f"{photos / 'loop.png'}: skipped: symbolic link loop" in err
    assert f"{photos / 'gone.png'}: skipped: broken symbolic link" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png"]


# item 10 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["train"]["steps"].update(stage1=True),
     "train.steps.stage1: Value error, expected an integer, got True"),
    (lambda r: r["data"].update(augment=1), "data.augment: Value error, expected true or false, got 1"),
    (lambda r: r["evaluate"].update(eval_seeds=[]), "evaluate.eval_seeds: List should have at least 1"),
    (lambda r: r["train"].update(seeds=[]), "train.seeds: List should have at least 1"),
    (lambda r: r["prior"].update(T=10**9), "prior.T: Input should be less than or equal to 1000"),
    (lambda r: r["ablations"].update(t_sweep=[1, 5000]), "every T must be in 1..1000"),
])
def test_params_are_strict(in_root, capsys, mutate, message):
    params = _params_file(in_root, mutate)
    assert main([*STUDY_STAGE1, "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]  # nothing trained, no MLflow run


def test_a_key_given_twice_in_params_is_refused(in_root, capsys):
    params = _params_file(in_root)
    text = params.read_text()
    params.write_text(text + "seed: 7\n")  # `seed: 0` is already at the top
    assert main([*STUDY_STAGE1, "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert str(params) in err and "duplicate key 'seed'" in err and "Traceback" not in err
    params.write_text(text.replace("  T: 5\n", "  T: 5\n  T: 8\n", 1))  # nested, too
    assert main([*STUDY_STAGE1, "--params", str(params)]) == 2
    assert "duplicate key 'T'" in capsys.readouterr().err
    assert sorted(p.name for p in in_root.iterdir()) == ["params.yaml"]


def test_a_checkpoint_with_an_absurd_T_is_refused_before_any_allocation(tmp_path, capsys):
    from models.deblur_model import normalise_spec

    spec = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 10**9}
    with pytest.raises(ValueError, match=r"'T' must be in 1\.\.1000, got 1000000000"):
        normalise_spec(spec, source="model.pt")
    evil = tmp_path / "model.pt"
    torch.save({"format": "blurdm-bench/model", "version": 1, "spec": spec, "model": {}, "meta": {}}, evil)
    data = _pairs(tmp_path / "test", [(32, 32)])
    assert _evaluate(evil, data, tmp_path / "eval") == 2
    err = capsys.readouterr().err
    assert str(evil) in err and "'T' must be in 1..1000" in err and "Traceback" not in err


def test_an_image_too_small_for_ssim_is_refused_before_inference(baseline_checkpoint, tmp_path, capsys, monkeypatch):
    import pipelines.evaluation.evaluator as ev

    data = _pairs(tmp_path / "test", [(32, 32), (32, 32), (1, 1)])
    monkeypatch.setattr(ev, "restore_image", lambda *a, **k: pytest.fail("inference started"))
    assert _evaluate(baseline_checkpoint, data, tmp_path / "eval") == 2
    err = capsys.readouterr().err
    assert str(data / "input" / "2.png") in err and "1x1" in err and "11x11" in err and "SSIM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test"]


# item 11 ------------------------------------------------------------------------------------------

def test_profile_writes_the_same_bytes_twice_and_keeps_timings_aside(tmp_path):
    outs = [tmp_path / f"run{i}" / "costs.json" for i in range(2)]
    for out in outs:
        assert main(["profile", "--scale", "tiny", "--backbones", "mimo_unet", "--latency", "--device", "cpu",
                     *SMOKE, "--params", str(REPO / "params.yaml"), "--out", str(out)]) == 0
    first, second = (out.read_bytes() for out in outs)
    assert first == second  # the tracked file: counts only
    costs = json.loads(first)
    assert "latency" not in costs and "blurdm_module_latency_ms" not in costs["paper_claims"]["ours"]
    assert costs["published_backbones_source"] == "models/published_costs.yaml"
    assert str(REPO) not in first.decode() and str(tmp_path) not in first.decode()
    for out in outs:  # the timings, beside it in the untracked sidecar, for the report
        sidecar = json.loads((out.parent / "run_info" / "costs.json").read_text())
        assert {r["model"] for r in sidecar["latency"]["results"]} == {"blurdm_module", "mimo_unet"}
        assert sidecar["table_sha256"] == __import__("hashlib").sha256(first).hexdigest()


def test_the_report_reads_run_info_only_when_it_belongs_to_the_table(tmp_path):
    from pipelines.core.config import load_params
    from reports.build import build_report

    root = tmp_path / "outputs"
    shutil.copytree(REPO / "tests" / "fixtures" / "report", root)
    sidecar = json.loads((root / "metrics" / "run_info" / "table1.json").read_text())
    run_id = sidecar["runs"]["synthetic/mimo_unet"]["baseline"][0]
    params = load_params(REPO / "params.yaml")
    page = build_report(root / "metrics", tmp_path / "site", root=root, params=params).read_text()
    assert run_id in page and sidecar["date"] in page
    table = root / "metrics" / "table1.json"  # other tables (say, an older commit checked out) ...
    table.write_text(table.read_text().replace('"cpu_count": 2', '"cpu_count": 4'))
    page = build_report(root / "metrics", tmp_path / "site", root=root, params=params).read_text()
    assert run_id not in page and "belongs to another version of table1.json" in page  # ... are not mislabelled
