"""Every DVC stage declares what it really reads (issue 12).

Each stage of dvc.yaml (the first item of every ``foreach``) runs once, in DAG order, on a reduced smoke
profile in a fresh root, with ``$BLURDM_RECORD_READS`` set: its params view records every key the stage
reads, and at exit the process lists the project files (code, data, templates) it imported or opened
(:mod:`pipelines.core.params_view`). The stage definitions come from DVC's own parser, so ``${item}`` and
``vars`` are resolved as ``dvc repro`` resolves them. The check fails when dvc.yaml declares less than
was read; a second test removes a declared dep on purpose and shows that the check then fails.
"""
from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _smoke_root import REPO, reduced_smoke_root

pytestmark = pytest.mark.timeout(900)

# Read but deliberately not declared: where MLflow records go changes no result.
NOT_RESULTS = {"mlflow_tracking_uri": "where MLflow writes its records, not what any stage computes"}
SMOKE = {"synth": {"n_train": 8, "n_test": 3}, "data": {"test": {"gopro_real": None}},  # one test set is enough
         "train_sets": {"synthetic": {"test": ["synthetic"]}},  # (the training set's list: the one left)
         "train": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}},
         **{"backbone_train": {b: {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}}
                               for b in ("mimo_unet", "stripformer", "fftformer", "loformer")}}}


def dvc_stages(repo: Path = REPO) -> dict[str, dict]:
    """Stage name -> {"cmd", "params" (dotted keys), "deps" (paths)}, as DVC resolves dvc.yaml."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out = {}
    with Repo(str(repo)) as dvc:
        for stage in dvc.index.stages:
            params, deps = [], []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    params += list(dep.params or [""])
                else:
                    deps.append(Path(dep.def_path).as_posix())
            out[stage.addressing] = {"cmd": stage.cmd, "params": params, "deps": deps}
    return out


def as_resolved_for(stages: dict[str, dict], profile: str, repo: Path = REPO) -> dict[str, dict]:
    """``stages`` as dvc.yaml declares them under ``profile``: the params keys a stage declares do not depend on
    the profile (params.yaml is composed for one profile, pipelines/conf), so they are ``stages`` themselves."""
    return stages


def only_a_docstring(file: str, repo: Path = REPO) -> bool:
    """Whether ``file`` (relative to ``repo``) is a package ``__init__.py`` holding nothing but its docstring."""
    path = repo / file
    if path.name != "__init__.py" or not path.is_file():
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for node in body)


def declared(file: str, deps: list[str]) -> bool:
    """Whether ``deps`` (dvc.yaml paths: files or folders) declare ``file``."""
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def undeclared(stage: dict, record: dict, repo: Path = REPO) -> list[str]:
    """What ``record`` (a stage's reads) has that ``stage`` (its dvc.yaml entry) does not declare."""
    from pipelines.core.params_view import covers

    missing = [f"params: {key}" for key in record["params"]
               if key not in NOT_RESULTS and not any(covers(d, key) for d in stage["params"])]
    missing += [f"deps: {file}" for file in record["files"]
                if not declared(file, stage["deps"]) and not only_a_docstring(file, repo)]
    return missing


def one_per_family(stages: dict[str, dict]) -> list[str]:
    """The first stage of each ``foreach`` family (and every plain stage), in dvc.yaml order."""
    seen, out = set(), []
    for name in stages:
        family = name.split("@")[0]
        if family not in seen:
            seen.add(family)
            out.append(name)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Stage name -> what it read, each stage run once on the reduced smoke profile."""
    stages = as_resolved_for(dvc_stages(), "smoke")
    run = one_per_family(stages)
    # the DAG of the reduced root has exactly the stages that run: one backbone, one of each ablation
    first = {family: name.split("@")[1] for name in run if "@" in name for family in [name.split("@")[0]]}
    train_set, backbone = first["train_stage1"].split("-", 1)  # the matrix's first (training set, backbone)
    assert train_set == "synthetic"  # the one training set of the smoke profile
    dag = {"models": {"backbones": [backbone]},
           "ablations": {"priors": [first["ablation_prior"]], "stages": [first["ablation_stages"]],
                         "t_sweep": [int(first["t_sweep"])]}}
    root = reduced_smoke_root(tmp_path_factory.mktemp("deps") / "root", SMOKE, active=True, base_overrides=dag)
    env = {**os.environ, "BLURDM_ROOT": str(root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop("DVC_EXP_NAME", None)
    out = {}
    for name in run:
        argv = shlex.split(stages[name]["cmd"])
        assert argv[0] == "blurdm-bench", stages[name]["cmd"]
        record = root / f"reads-{name.replace('@', '_')}.json"
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv[1:]], cwd=root,
                              env={**env, "BLURDM_RECORD_READS": str(record), "DVC_STAGE": name},
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
        out[name] = json.loads(record.read_text())
    return stages, out


def test_every_stage_declares_what_it_reads(recorded):
    stages, records = recorded
    problems = {name: undeclared(stages[name], record) for name, record in records.items()}
    problems = {name: missing for name, missing in problems.items() if missing}
    assert not problems, "dvc.yaml declares less than the stages read:\n" + "\n".join(
        f"  {name}: {', '.join(missing)}" for name, missing in problems.items())
    # the recording saw real work: training stages import the trainer and read the schedule
    train = records[next(n for n in records if n.startswith("train_stage1"))]
    assert "pipelines/training/trainer.py" in train["files"] and any(k.startswith("train.") or k == "train"
                                                                     for k in train["params"])


def test_every_declared_params_key_is_in_params_yaml():
    """DVC refuses to run a stage whose params dependency names a key params.yaml does not hold (a schema
    default is not enough)."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def holds(key: str) -> bool:
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = sorted({f"{name.split('@')[0]}: {key}" for name, stage in dvc_stages().items()
                      for key in stage["params"] if not holds(key)})
    assert not missing, missing


def test_the_check_fails_when_a_declared_dep_is_removed(recorded):
    stages, records = recorded
    name = next(n for n in records if n.startswith("train_stage1"))
    stage = stages[name]
    for removed_dep in ("pipelines/training", "pipelines/study.py", "models"):  # folders and files
        cut = {**stage, "deps": [d for d in stage["deps"] if d != removed_dep]}
        assert any(m.startswith(f"deps: {removed_dep}") for m in undeclared(cut, records[name])), removed_dep
    t_sweep = next(n for n in records if n.startswith("t_sweep"))
    cut = {**stages[t_sweep], "params": [p for p in stages[t_sweep]["params"] if p != "prior"]}
    assert any(m.startswith("params: prior.") for m in undeclared(cut, records[t_sweep]))


def test_a_folder_covers_its_files_and_only_a_docstring_init_needs_no_declaration(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text('"""A package."""\n')
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text('"""Runs code."""\nimport os\n')
    (tmp_path / "pkg" / "sub" / "a.py").write_text("")
    record = {"params": [], "files": ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/a.py"]}
    assert undeclared({"params": [], "deps": ["pkg/sub"]}, record, tmp_path) == []
    assert undeclared({"params": [], "deps": ["pkg/sub/a.py"]}, record, tmp_path) == ["deps: pkg/sub/__init__.py"]
    assert undeclared({"params": [], "deps": ["pkg/su"]}, record, tmp_path) == [  # a prefix is not a folder
        "deps: pkg/sub/__init__.py", "deps: pkg/sub/a.py"]


def test_the_ablation_base_stage_declares_what_it_reads(tmp_path, monkeypatch):
    """The stage that exists only when the ablation backbone is not a Table-1 backbone (the paper profile), as DVC
    resolves it for such params, run once on a reduced smoke root: what it reads is declared."""
    from dvc.repo import Repo

    dag = {"models": {"backbones": ["stripformer"]}, "ablations": {"extra_base": ["mimo_unet"]}}
    root = reduced_smoke_root(tmp_path / "root", SMOKE, active=True, base_overrides=dag)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    Repo.init(str(root), no_scm=True).close()
    assert not any(n.startswith("ablation_base@") for n in dvc_stages())  # the repo's cpu params: no such stage
    monkeypatch.chdir(root)  # DVC names the stages relative to the working directory
    stages = dvc_stages(root)
    name = "ablation_base@mimo_unet"
    assert name in stages
    env = {**os.environ, "BLURDM_ROOT": str(root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop("DVC_EXP_NAME", None)
    subprocess.run([sys.executable, "-m", "pipelines.cli", "synth"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=600)
    record = root / "reads.json"
    argv = shlex.split(stages[name]["cmd"])
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv[1:]], cwd=root,
                          env={**env, "BLURDM_RECORD_READS": str(record), "DVC_STAGE": name},
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    reads = json.loads(record.read_text())
    assert undeclared(stages[name], reads, REPO) == []
    for stage in ("stage1", "baseline", "stage2", "stage3"):  # in the Table-1 layout, where the ablations look
        assert (root / "runs" / "table1" / "synthetic" / "mimo_unet" / stage / "seed0" / "model.pt").is_file()
