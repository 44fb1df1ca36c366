"""Reliability, second adversarial pass (issue 26), items 6, 7, 9, 10, 14-24, 27 and 29b: a copied MLflow store,
names used in paths, exact counts in ``check``, the lineage and format of model files, malformed model files,
YAML alias bombs, non-finite and out-of-range numbers, MLflow store failures, a corrupt ``dvc.lock``, truncated
JSON, the report's run links, ``check --update`` and a tracking URI at a path that does not exist.

Each section is one item of the issue; its test failed on the code before the fix (how: in the commit message).
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
    path = _params(tmp_path, mutate, lambda text: bomb + text.replace("BOMB", f"*b{8}", 1))
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
