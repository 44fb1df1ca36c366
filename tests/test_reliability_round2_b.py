"""Reliability, second adversarial pass (issue 26), items 6, 7, 9, 10, 14-24, 27 and 29b: a copied MLflow store,
names used in paths, exact counts in ``check``, the lineage and format of model files, malformed model files,
YAML alias bombs, non-finite and out-of-range numbers, MLflow store failures, a corrupt ``dvc.lock``, truncated
JSON, the report's run links, ``check --update`` and a tracking URI at a path that does not exist.

Each section is one item of the issue; its test failed on the code before the fix (how: in the commit message).
Item 22 (a corrupt dvc.lock) is tested beside migrate-lock's other tests: tests/test_migrate_lock.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.core.config import ParamsError, load_params

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]


def _params(folder: Path, mutate=None, text_edit=None) -> Path:
    """A copy of the repo's params.yaml in ``folder`` (the cpu profile, no overlay, active), ``mutate``d as a
    dict / ``text_edit``ed."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "cpu"
    if mutate:
        mutate(raw)
    text = yaml.safe_dump(raw, sort_keys=False)
    path = folder / "params.yaml"
    path.write_text(text_edit(text) if text_edit else text)
    return path


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


# item 7: names used in paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,key", [
    (lambda r: r["data"]["test"].update({"../../outside": "data/synthetic/test"}), "data.test"),
    (lambda r: r["data"]["test"].update({"a/b": "data/synthetic/test"}), "data.test"),
    (lambda r: r["data"]["test"].update({"x-official": "data/synthetic/test"}), "data.test"),
    (lambda r: r["fetch"]["datasets"].update({"../gopro": r["fetch"]["datasets"]["gopro"]}), "fetch.datasets"),
    (lambda r: r["fetch"]["datasets"]["gopro"].update(archive="../../GOPRO_Large.zip"), "fetch.datasets.gopro.archive"),
    (lambda r: r["fetch"]["datasets"]["realblur_j"]["lists"].update(test="../list.txt"),
     "fetch.datasets.realblur_j.lists.test"),
])
def test_names_used_in_paths_are_safe_identifiers(tmp_path, mutate, key):
    _refused(_params(tmp_path, mutate), key, "not a")


def test_study_evaluate_with_a_test_set_named_like_a_path_writes_nothing(tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")

    def evil(raw):
        raw["data"]["test"]["../../escaped"] = "data/synthetic/test"
        raw["train_sets"]["synthetic"]["test"].append("../../escaped")
    params = _params(root, evil)
    assert main(["study", "evaluate", "--study", "table1", "--train-set", "synthetic", "--backbone", "mimo_unet",
                 "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "data.test" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["params.yaml", "root"]


# item 17: a YAML alias bomb --------------------------------------------------------------------------------

def _alias_bomb(levels: int = 9) -> str:
    """A YAML "billion laughs": ``levels`` nested lists of 9 references each (9**levels leaves)."""
    lines = ["bomb_0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"bomb_{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["seed", "models.scale", "ablations.t_sweep"])
def test_an_alias_bomb_is_refused_quickly_naming_the_key(tmp_path, where):
    bomb = _alias_bomb()
    section, _, key = where.rpartition(".")

    mutate = (lambda r: r.update(seed="BOMB")) if not section else (lambda r: r[section].update({key: "BOMB"}))
    # the anchors first (unknown top-level keys: refused too, but only after the whole file is validated)
    path = _params(tmp_path, mutate, lambda text: bomb + text.replace("BOMB", "*b8", 1))
    started = time.monotonic()
    message = _refused(path, where)
    assert time.monotonic() - started < 5
    assert len(message) < 2000


# item 18: non-finite numbers --------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,key", [
    (lambda r: r["synth"].update(blur_length=[0.5, ".inf"]), "synth.blur_length"),
    (lambda r: r["synth"].update(max_rotation_deg=".inf"), "synth.max_rotation_deg"),
    (lambda r: r["synth"]["noise"].update(shot=".inf"), "synth.noise.shot"),
    (lambda r: r["synth"]["noise"].update(read=".nan"), "synth.noise.read"),
    (lambda r: r["fetch"].update(max_unpacked_gb=".inf"), "fetch.max_unpacked_gb"),
    (lambda r: r["train"].update(lr="inf"), "train.lr"),  # a string pydantic would read as a float
])
def test_every_float_is_finite(tmp_path, mutate, key):
    # `.inf` / `.nan` are YAML's spellings: written as plain scalars into the text
    path = _params(tmp_path, mutate, lambda t: t.replace("'.inf'", ".inf").replace("'.nan'", ".nan"))
    _refused(path, key, "finite")


# item 19: out-of-range numbers --------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,key", [
    (lambda r: r["evaluate"].update(bootstrap={"resamples": 10**12, "seed": 0}), "evaluate.bootstrap.resamples"),
    (lambda r: r["evaluate"].update(bootstrap={"resamples": 1000, "seed": -1}), "evaluate.bootstrap.seed"),
    (lambda r: r["evaluate"].update(eval_seeds=[2023, -5]), "evaluate.eval_seeds.1"),
    (lambda r: r["train"].update(threads=10**12), "train.threads"),
    (lambda r: r["train"].update(seeds=[2**70]), "train.seeds.0"),
    (lambda r: r.update(seed=-1), "seed"),
    (lambda r: r["synth"].update(seed=2**64), "synth.seed"),
    (lambda r: r["fetch"].update(max_unpacked_gb=1e300), "fetch.max_unpacked_gb"),
])
def test_out_of_range_numbers_are_refused_naming_the_key(tmp_path, mutate, key):
    _refused(_params(tmp_path, mutate), key)


@pytest.mark.parametrize("argv", [
    ["deblur", "x.png", "-o", "out", "--checkpoint", "model.pt", "--seed", str(2**70)],
    ["deblur", "x.png", "-o", "out", "--checkpoint", "model.pt", "--seed", "-1"],
    ["evaluate", "--checkpoint", "model.pt", "--data", "d", "--out", "o", "--eval-seeds", "1", "-2"],
    ["train", "--stage", "stage1", "--backbone", "mimo_unet", "--out", "o", "--seed", str(2**70)],
])
def test_out_of_range_seeds_on_the_command_line_are_refused(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # refused by the argument's type
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert "seed" in err and "0 and 4294967295" in err
    assert list(tmp_path.iterdir()) == []


# item 9: counts and booleans in `check` ---------------------------------------------------------------------

@pytest.mark.parametrize("reference,current", [
    ({"psnr": {"n_images": 4}}, {"psnr": {"n_images": 4.04}}),  # inside the PSNR tolerance, but a count
    ({"gain": {"mean": 0.3, "n_seeds": 1}}, {"gain": {"mean": 0.3, "n_seeds": True}}),
    ({"lpips_available": True}, {"lpips_available": 1}),
    ({"lpips_available": False}, {"lpips_available": 0.0}),
    ({"params": 123456}, {"params": 123456.0}),
])
def test_check_compares_counts_and_booleans_exactly_and_by_type(reference, current):
    from pipelines.results.reference_check import compare

    diffs = compare(reference, current)
    assert len(diffs) == 1 and diffs[0]["why"] in ("changed (exact)", "type changed"), diffs


# item 27: check --update ------------------------------------------------------------------------------------

def _check_tables(tmp_path: Path) -> tuple[Path, Path]:
    ref, cur = tmp_path / "ref", tmp_path / "metrics"
    ref.mkdir(), cur.mkdir()
    (ref / "table1.json").write_text(json.dumps({"rows": [1, 2, 3], "psnr": 25.0}))
    (cur / "table1.json").write_text(json.dumps({"rows": [1, 2, 3, 4], "psnr": 26.0}))
    return ref, cur


def test_check_update_replaces_the_reference_atomically(tmp_path, capsys):
    ref, cur = _check_tables(tmp_path)
    old = (ref / "table1.json").read_bytes()
    with open(ref / "table1.json", "rb") as reader:  # a `check` reading the reference while it is updated
        assert main(["check", "--reference", str(ref), "--metrics", str(cur), "--update"]) == 0
        assert reader.read() == old  # the old file, whole (a copy in place truncates what the reader sees)
    assert (ref / "table1.json").read_bytes() == (cur / "table1.json").read_bytes()
    assert sorted(p.name for p in ref.iterdir()) == ["table1.json"]  # no temporary left


def test_check_names_a_truncated_reference_or_table_and_update_refuses_to_copy_one(tmp_path, capsys):
    ref, cur = _check_tables(tmp_path)
    (ref / "table1.json").write_text('{"rows": [1, 2')
    assert main(["check", "--reference", str(ref), "--metrics", str(cur)]) == 2
    err = capsys.readouterr().err
    assert str(ref / "table1.json") in err and "not valid JSON" in err and "Traceback" not in err
    (cur / "table1.json").write_text('{"rows": [1, 2, 3')
    before = (ref / "table1.json").read_bytes()
    assert main(["check", "--reference", str(ref), "--metrics", str(cur), "--update"]) == 2
    assert str(cur / "table1.json") in capsys.readouterr().err
    assert (ref / "table1.json").read_bytes() == before  # a truncated table never becomes the reference


# items 10, 14, 15, 16: model files ----------------------------------------------------------------------------

BASELINE = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"}
STAGE2 = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 5,
          "sharp_encoder": True}
STAGE3 = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 5}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """``model.pt`` payloads of a tiny baseline, stage-2 and stage-3 model (built, not trained)."""
    import torch

    from models.deblur_model import build_deblur_model, model_payload

    torch.manual_seed(0)
    return {stage: model_payload(build_deblur_model(spec), {"stage": stage})
            for stage, spec in (("baseline", BASELINE), ("stage2", STAGE2), ("stage3", STAGE3))}


def _save(path: Path, payload) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def _model_refused(path: Path, *words: str) -> str:
    from pipelines.core.checkpoint_files import CheckpointError, load_deblur_model

    with pytest.raises(CheckpointError) as err:
        load_deblur_model(path)
    message = str(err.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    return message


# item 10: a model of the wrong stage as the source of a training job
@pytest.mark.parametrize("given,kind,job_stage", [("stage3", "stage2", "stage3"), ("stage2", "stage1", "stage2")])
def test_a_model_of_another_stage_is_refused_as_the_source(model_files, tmp_path, given, kind, job_stage):
    from pipelines.core.errors import UserError
    from pipelines.training.job import TrainJob
    from pipelines.training.stages import read_stage_source

    source = _save(tmp_path / given / "model.pt", model_files[given])
    job = TrainJob(stage=job_stage, backbone="mimo_unet", out_dir=tmp_path / "out", prior="blurdm", T=5,
                   **{kind: source.parent})
    with pytest.raises(UserError) as err:
        read_stage_source(kind, source.parent, job, "tiny")
    message = str(err.value)
    assert str(source) in message and f"not a {kind} model" in message and given in message, message


def test_the_right_stage_is_still_accepted(model_files, tmp_path):
    from pipelines.training.job import TrainJob
    from pipelines.training.stages import read_stage_source

    source = _save(tmp_path / "stage2" / "model.pt", model_files["stage2"])
    job = TrainJob(stage="stage3", backbone="mimo_unet", out_dir=tmp_path / "out", prior="blurdm", T=5, stage2=source)
    assert read_stage_source("stage2", source, job, "tiny")[0] == source


# item 14: the model-file format version
@pytest.mark.parametrize("version", [99, 0, None, True, "1"])
def test_a_model_file_of_another_format_version_is_refused(model_files, tmp_path, version):
    payload = dict(model_files["baseline"])
    if version is None:
        del payload["version"]
    else:
        payload["version"] = version
    _model_refused(_save(tmp_path / "model.pt", payload), "version")


# item 15: malformed payloads, refused before anything is built, naming the file
def _malformed(model_files, case: str):
    import torch

    payload = {**model_files["baseline"], "model": dict(model_files["baseline"]["model"])}
    state = payload["model"]
    first = next(iter(state))
    if case == "spec_int":
        payload["spec"] = 5
    elif case == "spec_str":
        payload["spec"] = "mimo_unet"
    elif case == "meta_list":
        payload["meta"] = [1, 2]
    elif case == "int_keys":
        payload["model"] = {i: v for i, v in enumerate(state.values())}
    elif case == "not_a_tensor":
        state[first] = [0.0, 1.0]
    elif case == "sparse":
        state[first] = state[first].reshape(state[first].shape[0], -1).to_sparse()
    elif case == "stride0":
        state[first] = torch.zeros(1).expand(1000, 1000)
    elif case == "stride0_40gb":
        state[first] = torch.zeros(1).expand(100_000, 100_000)
    elif case == "model_list":
        payload["model"] = list(state.values())
    return payload


@pytest.mark.parametrize("case,words", [
    ("spec_int", ("spec", "int")), ("spec_str", ("spec", "str")), ("meta_list", ("meta",)),
    ("int_keys", ("key 0",)), ("not_a_tensor", ("not a tensor",)), ("sparse", ("sparse",)),
    ("stride0", ("1000x1000", "stored")), ("stride0_40gb", ("100000x100000", "stored")),
    ("model_list", ("'model'",)),
])
def test_a_malformed_model_file_is_refused_naming_it(model_files, tmp_path, case, words):
    _model_refused(_save(tmp_path / "model.pt", _malformed(model_files, case)), *words)


def test_a_malformed_stage_source_is_refused_naming_it(model_files, tmp_path):
    from pipelines.core.errors import UserError
    from pipelines.training.job import TrainJob
    from pipelines.training.stages import read_stage_source

    source = _save(tmp_path / "model.pt", _malformed(model_files, "spec_int"))
    job = TrainJob(stage="stage2", backbone="mimo_unet", out_dir=tmp_path / "out", stage1=source)
    with pytest.raises(UserError, match=str(source)):
        read_stage_source("stage1", source, job, "tiny")


# item 16: a model.pt / last.pt that is text, or a link to a system file
@pytest.mark.parametrize("content", ["text", "passwd", "group"])
def test_a_text_file_as_model_or_training_state_is_a_clear_error(tmp_path, capsys, content):
    from pipelines.core.checkpoint_files import CheckpointError, load_checkpoint

    path = tmp_path / "run" / "model.pt"
    path.parent.mkdir()
    if content == "text":
        path.write_text("hello world\nthis is text\n")
    else:
        path.symlink_to(f"/etc/{content}")
    message = _model_refused(path, "not a PyTorch checkpoint")
    assert "Traceback" not in message
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)  # last.pt is read the same way
    import numpy as np

    from pipelines.data.image_files import write_png

    write_png(tmp_path / "photos" / "a.png", np.zeros((16, 16, 3), np.uint8))
    assert main(["deblur", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not a PyTorch checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# item 23: a truncated metrics.json / summary.json -----------------------------------------------------------

@pytest.fixture
def evaluated_root(tmp_path, monkeypatch):
    """A project root whose Table-1 evaluations of one backbone (seed 0, synthetic) exist: score files, a
    summary.json beside each, a metrics.json in each training run."""
    from pipelines.evaluation.score_files import (
        INPUT_SCORES_FILE,
        SCORES_FILE,
        rows_to_csv,
    )

    root = tmp_path / "root"
    root.mkdir()
    def one_backbone_one_seed(raw):
        raw["models"]["backbones"] = ["mimo_unet"]
        raw["backbone_train"]["mimo_unet"]["seeds"] = [0]
    _params(root, one_backbone_one_seed)
    monkeypatch.setenv("BLURDM_ROOT", str(root))
    monkeypatch.delenv("BLURDM_PARAMS", raising=False)
    for method, stage, offset in (("baseline", "baseline", 0.5), ("blurdm", "stage3", 0.8)):
        folder = root / "eval" / "table1" / "synthetic" / "mimo_unet" / "synthetic" / method / "seed0"
        folder.mkdir(parents=True)
        rows = [{"name": f"{i}.png", "seed": None, "psnr": 20.0 + i + offset, "ssim": 0.5, "ssim3d": 0.9,
                 "lpips": None, "seconds": 0.0} for i in range(4)]
        (folder / SCORES_FILE).write_text(rows_to_csv(rows))
        (folder / INPUT_SCORES_FILE).write_text(rows_to_csv([{**r, "psnr": r["psnr"] - offset} for r in rows]))
        (folder / "summary.json").write_text(json.dumps({"lpips_available": False, "lpips_reason": "offline"}))
        run = root / "runs" / "table1" / "synthetic" / "mimo_unet" / stage / "seed0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"mlflow_run_id": f"run-{method}", "steps": 4}))
    return root


@pytest.mark.parametrize("culprit", [
    "eval/table1/synthetic/mimo_unet/synthetic/blurdm/seed0/summary.json",
    "runs/table1/synthetic/mimo_unet/stage3/seed0/metrics.json",
])
def test_tables_names_a_truncated_json_file(evaluated_root, capsys, culprit):
    assert main(["tables"]) == 0  # the tree is complete: the table is built
    capsys.readouterr()
    table = (evaluated_root / "metrics" / "table1.json").read_bytes()
    path = evaluated_root / culprit
    path.write_text(path.read_text()[:15])
    assert main(["tables"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not valid JSON" in err and "Traceback" not in err, err
    assert (evaluated_root / "metrics" / "table1.json").read_bytes() == table  # the old table stays


# item 24: report --mlflow-ui ------------------------------------------------------------------------------

@pytest.mark.parametrize("ui", ["javascript:alert(document.cookie)", "JavaScript:alert(1)", "data:text/html,x",
                                "file:///etc/passwd", "//evil.example", "http://", "127.0.0.1:5000"])
def test_report_takes_only_an_http_mlflow_ui(tmp_path, capsys, ui):
    site = tmp_path / "site"
    assert main(["report", "--metrics-dir", str(tmp_path / "none"), "--out", str(site), "--mlflow-ui", ui,
                 "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--mlflow-ui" in err and "http" in err and "Traceback" not in err
    assert not site.exists()


def test_report_links_and_attributes_are_escaped(tmp_path):
    from reports.build import build_report, render_page
    from reports.page import Cell, Row, Section, Table

    index = build_report(tmp_path / "none", tmp_path / "site", root=tmp_path, mlflow_ui="https://mlflow.example/x/")
    assert index.is_file()  # http(s) addresses are still taken
    evil = '"><script>alert(1)</script>'
    table = Table(id="t", caption="c", head=[[Cell("h", header=True)]],
                  rows=[Row([Cell("v", value=1.0, href=f"https://x/{evil}", title=evil)])])
    html = render_page([Section(id="s", title="s", status="ok", sources=[], blocks=[table])], "t", tmp_path / "p.yaml")
    assert "<script>alert(1)" not in html and "&#34;&gt;&lt;script&gt;" in html


# items 6, 20, 21, 29b: the MLflow store ---------------------------------------------------------------------

def _tree_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def study_store(tmp_path_factory):
    """A study folder whose sqlite store holds one finished training run (with an artifact) of ``table1``,
    and that run's folder with its metrics.json and an evaluation: what `study evaluate` logs onto it.
    Built once (a new MLflow database takes seconds); copy it with :func:`_copied_study`."""
    from pipelines.tracking.runs import Tracker

    folder = tmp_path_factory.mktemp("store") / "study"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri)
    run_id = tracker.start("table1", "mimo_unet-stage3-seed0", {"stage": "stage3"}, {"train": {"lr": 1e-4}})
    (folder / "curves.csv").write_text("step,loss\n1,0.5\n")
    tracker.log_artifact(folder / "curves.csv")
    tracker.end()
    run_dir = folder / "runs" / "stage3"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"mlflow_run_id": run_id, "steps": 3}))
    (folder / "eval").mkdir()
    (folder / "eval" / "summary.json").write_text(json.dumps({"n_images": 4}))
    return folder


def _copied_study(study_store: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(study_store, dest, symlinks=True)  # cp -a
    return dest


def _summary() -> dict:
    return {"metrics": {"psnr": {"mean": 25.0, "std": 0.1}}, "n_images": 4, "eval_seeds": [2023]}


# item 6: a copied study writes into its own store or not at all
def test_a_copied_store_never_writes_into_the_original(study_store, tmp_path, monkeypatch):
    from pipelines.tracking.evaluation_records import log_evaluation
    from pipelines.tracking.runs import Tracker
    from pipelines.tracking.store import TrackingError

    original = study_store  # its experiment and run point into original/mlartifacts, as MLflow recorded them
    copy = _copied_study(original, tmp_path / "copy")
    before = _tree_of(original)
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    run_dir = copy / "runs" / "stage3"
    monkeypatch.chdir(copy)
    with pytest.raises(TrackingError) as err:
        log_evaluation(run_dir, _summary(), "synthetic", None, copy / "eval", uri=uri)
    message = str(err.value)
    assert str(copy / "mlflow.db") in message and str(original / "mlartifacts") in message and "copied" in message
    with pytest.raises(TrackingError, match="copied"):
        Tracker(uri).start("table1", "another-run", {}, {})
    assert _tree_of(original) == before


# item 20: a corrupt, read-only or locked store is an error naming it, never a silent exit 0
def test_a_corrupt_store_is_an_error_naming_it(study_store, tmp_path):
    from pipelines.tracking.evaluation_records import log_evaluation
    from pipelines.tracking.runs import Tracker
    from pipelines.tracking.store import TrackingError

    study = _copied_study(study_store, tmp_path / "study")
    db = study / "mlflow.db"
    db.write_bytes(b"this is not a database\n" * 200)
    uri = f"sqlite:///{db}"
    with pytest.raises(TrackingError, match=rf"MLflow store {uri}: .*not a database"):
        log_evaluation(study / "runs" / "stage3", _summary(), "synthetic", None, study / "eval", uri=uri)
    with pytest.raises(TrackingError, match=str(db)):
        Tracker(uri).start("table1", "run", {}, {})


def test_a_read_only_store_is_an_error_naming_it(study_store, tmp_path):
    from pipelines.tracking.evaluation_records import log_evaluation
    from pipelines.tracking.store import TrackingError

    study = study_store  # opened read-only: not changed
    uri = f"sqlite:///file:{study / 'mlflow.db'}?mode=ro&uri=true"  # what a read-only file or folder gives
    with pytest.raises(TrackingError, match="readonly database"):
        log_evaluation(study / "runs" / "stage3", _summary(), "synthetic", None, None, uri=uri)


def test_a_locked_store_is_an_error_naming_it(study_store, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pipelines.tracking.evaluation_records import log_evaluation
    from pipelines.tracking.store import TrackingError

    def locked(*args, **kwargs):  # what MLflow raises once sqlite's 20 s busy timeout has passed
        raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")

    study = study_store  # nothing is written: the store is "locked"
    monkeypatch.setattr(MlflowClient, "get_run", locked)
    uri = f"sqlite:///{study / 'mlflow.db'}"
    with pytest.raises(TrackingError, match=rf"MLflow store {uri}: .*database is locked"):
        log_evaluation(study / "runs" / "stage3", _summary(), "synthetic", None, None, uri=uri)


def test_a_run_of_another_store_is_still_only_a_warning(study_store, tmp_path):
    from pipelines.tracking.evaluation_records import log_evaluation

    study = _copied_study(study_store, tmp_path / "study")
    (study / "runs" / "stage3" / "metrics.json").write_text(json.dumps({"mlflow_run_id": "f" * 32, "steps": 3}))
    with pytest.warns(UserWarning, match="not found"):
        assert log_evaluation(study / "runs" / "stage3", _summary(), "synthetic", None, None,
                              uri=f"sqlite:///{study / 'mlflow.db'}") is None


def test_train_with_a_corrupt_store_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    import numpy as np

    from pipelines.data.image_files import write_png

    data = tmp_path / "pairs"
    for i in range(4):
        image = np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8)
        write_png(data / "input" / f"{i}.png", image)
        write_png(data / "target" / f"{i}.png", image)
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"garbage" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    out = tmp_path / "run"
    assert main(["train", "--stage", "stage1", "--backbone", "mimo_unet", "--out", str(out), "--data", str(data),
                 "--profile", "smoke", "--steps", "1", "--no-progress", "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"MLflow store sqlite:///{db}" in err and "Traceback" not in err and "--no-mlflow" in err
    assert not (out / "model.pt").exists()


# item 21: an unreachable tracking server fails in seconds, with a clear error
def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HTTP_LIMITS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def test_an_unreachable_tracking_server_fails_fast(study_store, tmp_path, monkeypatch):
    from pipelines.tracking.evaluation_records import log_evaluation
    from pipelines.tracking.store import TrackingError

    for name in HTTP_LIMITS:  # our caps apply when the user set none (and are undone after the test)
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    study = _copied_study(study_store, tmp_path / "study")
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=rf"MLflow store {uri}: "):
        log_evaluation(study / "runs" / "stage3", _summary(), "synthetic", None, None, uri=uri)
    assert time.monotonic() - started < 15


def test_the_http_caps_leave_the_users_own_values(monkeypatch):
    from pipelines.core.environment import set_offline_env

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    for name in HTTP_LIMITS[1:]:
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    set_offline_env()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 30


# item 29b: a tracking URI whose folder does not exist is refused; nothing is created
@pytest.mark.parametrize("form", ["sqlite:///{}/mlflow.db", "file://{}/mlruns", "{}/mlruns"])
def test_a_store_in_a_folder_that_does_not_exist_is_refused(tmp_path, form):
    from pipelines.tracking.runs import Tracker
    from pipelines.tracking.store import TrackingError

    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(TrackingError, match=rf"{missing}.* does not exist"):
        Tracker(form.format(missing)).start("table1", "run", {}, {})
    assert list(tmp_path.iterdir()) == []


# found by the clean-clone test run: the seeds of a stage, side by side, raced to insert one dataset row -------------

def test_a_dataset_row_inserted_by_another_seed_at_the_same_moment_is_not_an_error(tmp_path, monkeypatch):
    """Two seeds' processes log the same dataset at once: the one whose insert loses (sqlite's UNIQUE constraint on
    the datasets table) logs it again and finds the row; any other store failure still stops the job."""
    from pipelines.tracking.runs import DATASET_RACE, Tracker
    from pipelines.tracking.store import TrackingError

    data = tmp_path / "photos" / "train"
    data.mkdir(parents=True)
    (data / "a.png").write_bytes(b"not really a png")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    run_id = tracker.start("table1", "mimo_unet-stage1-seed1", {"stage": "stage1"}, {"train": {"lr": 1e-4}})
    real = tracker.client._client.log_inputs
    calls = []

    def losing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # what sqlite answered the seed that lost the race
            raise TrackingError(uri, f"{DATASET_RACE}experiment_id, datasets.name, datasets.digest")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "log_inputs", losing_once, raising=False)
    info = tracker.log_dataset(data, "train")
    assert len(calls) == 2 and info["name"] == "photos/train"
    run = tracker.client.get_run(run_id)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["photos/train"]

    def locked(*args, **kwargs):
        raise TrackingError(uri, "database is locked")

    monkeypatch.setattr(tracker.client, "log_inputs", locked, raising=False)
    with pytest.raises(TrackingError, match="database is locked"):
        tracker.log_dataset(data, "train")
    tracker.end()
