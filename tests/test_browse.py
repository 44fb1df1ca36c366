"""MLflow and DVC after a smoke run, browsed the way a researcher does (issue 13, items 1-3): the MLflow
store through ``MlflowClient``, and ``dvc plots show`` / ``dvc metrics show`` on the run's outputs.

By default a reduced smoke chain (synth, the four training stages of one backbone, its evaluation,
tables) runs in a fresh root with its own store. ``BLURDM_SMOKE_ROOT=<repo>`` checks the store and the
runs of a real smoke run instead (``dvc exp run -S profile=smoke`` there first).

Checked: the test metrics (per test set: PSNR, SSIM, SSIM-3D, LPIPS or why not, the spread over
sampling seeds) on every training run whose model was evaluated (every run id the metric tables name),
and that the runs sort by test PSNR; MLflow's source tags; one parent run per study x backbone x seed
holding its stages; the training and test sets as ``mlflow.data`` inputs (digest = the manifest's
sha256); the model as an artifact that downloads and loads again, bit-identical to the run folder's.
DVC: ``dvc plots show`` writes its HTML with the training curves, the T sweep with its CI band and the
ablation bars (the plot files of dvc.yaml that the run wrote); the headline gains are metric columns.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)

SMOKE = ["--profile", "smoke"]
TABLE1 = ["--study", "table1", "--train-set", "synthetic", "--backbone", "mimo_unet"]
CHAIN = [["synth", *SMOKE, "--no-progress"],
         *[["study", "train", *TABLE1, "--stage", stage, *SMOKE, "--no-progress"]
           for stage in ("stage1", "stage2", "stage3", "baseline")],
         ["study", "evaluate", *TABLE1, *SMOKE, "--no-progress"],
         ["tables", *SMOKE]]
CHAIN_SMOKE = {"synth": {"n_train": 8, "n_test": 3}, "train": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}},
               "backbone_train": {"mimo_unet": {"steps": {"stage1": 2, "stage2": 1, "stage3": 1}}}}
DRIVER = ("import json, sys\nfrom pipelines.cli import main\nfor c in json.loads(sys.argv[1]):\n"
          "    code = main(c)\n    if code:\n        sys.exit(code)\n")
TABLES = ("table1", "ablation_prior", "ablation_stages", "t_sweep")


def _reduced_root(folder: Path) -> Path:
    from _smoke_root import reduced_smoke_root

    return reduced_smoke_root(folder, CHAIN_SMOKE)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    given = os.environ.get("BLURDM_SMOKE_ROOT")
    if given:
        root = Path(given).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    else:
        root = _reduced_root(tmp_path_factory.mktemp("store") / "root")
        uri = f"sqlite:///{root / 'mlflow.db'}"
        env = {**os.environ, "BLURDM_ROOT": str(root), "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1",
               "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
        env.pop("DVC_EXP_NAME", None)
        done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(CHAIN)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=280, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    from pipelines.core.config import load_params

    params = load_params(root / "params.yaml", profile="smoke")
    return {"root": root, "uri": uri, "client": MlflowClient(uri), "params": params}


def _evaluated_runs(root: Path) -> dict[str, set[str]]:
    """Run id -> the tables naming it (the training runs of every evaluated model), from run_info sidecars."""
    out: dict[str, set[str]] = {}
    for name in TABLES:
        sidecar = root / "metrics" / "run_info" / f"{name}.json"
        if not sidecar.is_file():
            continue
        for value in json.loads(sidecar.read_text())["runs"].values():
            ids = value if isinstance(value, list) else [i for side in value.values() for i in side]
            for run_id in ids:
                out.setdefault(run_id, set()).add(name)
    return out


def _run_folders(root: Path) -> dict[str, Path]:
    """MLflow run id -> its run folder (metrics.json of every training run under runs/)."""
    return {json.loads(f.read_text())["mlflow_run_id"]: f.parent for f in (root / "runs").rglob("metrics.json")
            if json.loads(f.read_text()).get("mlflow_run_id")}


def test_every_evaluated_run_holds_its_test_metrics(store):
    client, params = store["client"], store["params"]
    evaluated = _evaluated_runs(store["root"])
    assert evaluated, "the metric tables name no MLflow run"
    datasets = list(params.data.test)
    for run_id in evaluated:
        run = client.get_run(run_id)
        metrics, tags = run.data.metrics, run.data.tags
        oracle = any(k.startswith("oracle_test/") for k in metrics)
        prefix = "oracle_test" if oracle else "test"
        for dataset in datasets:
            for metric in ("psnr", "ssim", "ssim3d"):
                assert f"{prefix}/{dataset}/{metric}" in metrics, (run.info.run_name, dataset, metric)
            # LPIPS: a number, or a tag saying why not (with no machine path)
            lpips_tag = tags.get(f"{prefix}/{dataset}/lpips")
            assert f"{prefix}/{dataset}/lpips" in metrics or (lpips_tag and lpips_tag.startswith("unavailable")), \
                run.info.run_name
            if lpips_tag:
                assert not re.search(r"(?:^|\s)/\w+/", lpips_tag), lpips_tag
            assert metrics[f"{prefix}/{dataset}/n_images"] >= 1
            # a stochastic prior (BlurDM, DDPM, RDDM; not the encoder control): the spread over the sampling seeds
            if tags.get("stage") == "stage3" and tags.get("prior") != "encoder":
                assert metrics[f"{prefix}/{dataset}/n_sampling_seeds"] == len(params.evaluate.eval_seeds)
                assert f"{prefix}/{dataset}/psnr_seed_std" in metrics
            elif tags.get("stage") in ("baseline", "stage1"):
                assert metrics[f"{prefix}/{dataset}/n_sampling_seeds"] == 1
    # the UI's sort by a test metric, through the API
    first = datasets[0]
    exp = client.get_experiment_by_name("table1")
    ranked = client.search_runs([exp.experiment_id], f"metrics.`test/{first}/psnr` > -1000",
                                order_by=[f"metrics.`test/{first}/psnr` DESC"])
    psnrs = [r.data.metrics[f"test/{first}/psnr"] for r in ranked]
    assert len(psnrs) >= 2 and psnrs == sorted(psnrs, reverse=True)


def test_source_tags_are_mlflows_own(store):
    client = store["client"]
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            tags = run.data.tags
            if "stage" not in tags:
                continue  # parent runs are checked below
            commit = tags["mlflow.source.git.commit"]
            assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
            known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                                   capture_output=True, check=False)
            assert known.returncode == 0, f"{commit} is not a commit of this repository"
            assert tags["mlflow.source.name"] == "pipelines/train.py" and tags["mlflow.source.type"] == "LOCAL"
            assert tags["mlflow.source.git.dirty"] in ("true", "false")
            assert "git_commit" not in tags  # the custom stand-in is gone


def test_one_parent_run_per_study_backbone_seed_holds_its_stages(store):
    client = store["client"]
    exp = client.get_experiment_by_name("table1")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "stage" in r.data.tags]
    parents = {r.info.run_id: r for r in runs if "blurdm.group" in r.data.tags}
    assert children and parents
    by_parent: dict[str, list] = {}
    for run in children:
        parent_id = run.data.tags["mlflow.parentRunId"]
        assert parent_id in parents, run.info.run_name
        assert parents[parent_id].data.tags["blurdm.group"] == run.data.tags["group"]
        by_parent.setdefault(parent_id, []).append(run.data.tags["stage"])
    groups = {}
    for parent_id, stages in by_parent.items():
        parent = parents[parent_id]
        assert parent.info.run_name == parent.data.tags["blurdm.group"] and parent.info.status == "FINISHED"
        groups.setdefault(parent.data.tags["blurdm.group"], []).append(sorted(stages))
    bb = store["params"].models.ablation_backbone
    for seed in store["params"].train.seeds:
        # one parent (this store: one smoke run) holds all four stages of the backbone and seed
        assert sorted(["baseline", "stage1", "stage2", "stage3"]) in groups[f"table1/synthetic/{bb}/seed{seed}"]


def test_training_and_test_sets_are_dataset_inputs(store):
    from pipelines.core.files import sha256_file

    client, root, params = store["client"], store["root"], store["params"]
    manifest = (root / params.train_sets["synthetic"].train).parent / "manifest.json"
    sha = sha256_file(manifest)
    for run_id in _run_folders(root):
        run = client.get_run(run_id)
        inputs = [(i.dataset, {t.key: t.value for t in i.tags}) for i in run.inputs.dataset_inputs]
        training = [(d, t) for d, t in inputs if t["mlflow.data.context"] == "training"]
        assert len(training) >= 1, run.info.run_name
        dataset, tags = training[-1]
        assert dataset.name == "synthetic/train" and dataset.source_type == "local"
        assert tags["manifest_sha256"] == sha and dataset.digest == sha[:36]  # MLflow's digest limit: 36
        assert json.loads(dataset.source)["uri"].startswith("file://")
    evaluated = _evaluated_runs(root)
    for run_id in evaluated:
        contexts = {(i.dataset.name, {t.key: t.value for t in i.tags}["mlflow.data.context"])
                    for i in client.get_run(run_id).inputs.dataset_inputs}
        assert ("synthetic/test", "testing") in contexts and ("gopro_real", "testing") in contexts


def test_the_model_downloads_and_loads_again(store, tmp_path):
    from pipelines.core.checkpoint_files import load_checkpoint
    from pipelines.tracking.evaluation_records import load_logged_model

    client = store["client"]
    folders = _run_folders(store["root"])
    run_id, folder = next((r, f) for r, f in folders.items() if f.parts[-2] == "stage3")
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.pt", "model/spec.json"}
    model, spec = load_logged_model(run_id, store["uri"], tmp_path / "download")
    assert spec["backbone"] == "mimo_unet" and spec["prior_mode"] == "diffusion"
    local = load_checkpoint(folder / "model.pt")["model"]
    loaded = model.state_dict()
    assert set(local) == set(loaded) and all(torch.equal(local[k], loaded[k]) for k in local)
    card = json.loads((tmp_path / "download" / "model" / "spec.json").read_text())
    assert card["sha256"] == json.loads((folder / "metrics.json").read_text())["model_sha256"]


# ------------------------------------------------------------------------------------------------- DVC

def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(bin_dir / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240, check=False)


@pytest.fixture(scope="module")
def dvc_root(store):
    """The smoke run's root as a DVC project with this repo's dvc.yaml and plot templates (a real smoke
    run's root already is one)."""
    import shutil

    root = store["root"]
    if not (root / ".dvc").is_dir():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        done = _dvc(root, "init", "-q")
        assert done.returncode == 0, done.stderr
        shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
        shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    return root


def test_dvc_plots_show_renders_the_curves_the_t_sweep_and_the_ablations(dvc_root, store, tmp_path):
    out = tmp_path / "dvc_plots"
    rendered = _dvc(dvc_root, "plots", "show", "-o", str(out))  # what a researcher runs: writes index.html
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert (out / "index.html").is_file() and (out / "index.html").stat().st_size > 1000
    done = _dvc(dvc_root, "plots", "show", "--json")  # the same plots as vega-lite specs, to look into
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout)
    plots = shown["data"]
    # what the run wrote renders; plots of stages not run (other backbones, the ablations) have no file
    written = {name for name, entries in plots.items() if entries}
    assert not [e for e in shown.get("errors", []) if e["name"] in written]
    bb = store["params"].models.ablation_backbone
    for stage in ("stage1", "stage2", "stage3", "baseline"):
        assert f"plots/training/table1/synthetic/{bb}/{stage}/seed0.csv" in written
    spec = plots[f"plots/training/table1/synthetic/{bb}/stage1/seed0.csv"][0]["content"]
    assert spec["data"]["values"] and {"step", "loss", "val_psnr"} <= set(spec["data"]["values"][0])
    for name, mark in (("metrics/plots/t_sweep.csv", "errorband"), ("metrics/plots/ablation_prior.csv", "bar"),
                       ("metrics/plots/ablation_stages.csv", "bar")):
        (plot,) = plots[name]
        text = json.dumps(plot["content"])
        assert "<DVC_METRIC" not in text and f'"{mark}"' in text, name  # the custom template, filled in
        assert plot["content"]["data"]["values"], name
    html = (out / "index.html").read_text()
    assert "T sweep: PSNR gain over no prior" in html and "Prior ablation" in html


def test_dvc_metrics_show_the_headline_gains_as_columns(dvc_root, store):
    done = _dvc(dvc_root, "metrics", "show", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout)
    workspace = shown.get("workspace") or shown[""]  # (DVC names the workspace "" outside a git commit)
    headline = workspace["data"]["metrics/headline.json"]["data"]
    bb = store["params"].models.ablation_backbone
    assert isinstance(headline["table1_psnr_gain"]["synthetic"][bb], float)
    assert isinstance(headline["ablation_prior_psnr_gain"]["blurdm"], float)
    # flat numbers: one column each in `dvc exp show` / `dvc metrics show`
    flat = _dvc(dvc_root, "metrics", "show", "--md")
    assert f"table1_psnr_gain.synthetic.{bb}" in flat.stdout


def test_dataset_digest_is_the_manifest_sha256_else_the_file_listing(tmp_path, monkeypatch):
    from pipelines.tracking import lineage as tracking
    from pipelines.core.files import sha256_file

    (tmp_path / "ds" / "train").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "a.png").write_bytes(b"x" * 10)
    (tmp_path / "ds" / "manifest.json").write_text('{"dataset": "d"}')
    _, info = tracking.dataset_for(tmp_path / "ds" / "train")
    assert info["name"] == "ds/train" and info["sha256"] == sha256_file(tmp_path / "ds" / "manifest.json")
    assert info["digest"] == info["sha256"][:36] and info["digest_of"] == "ds/manifest.json"
    (tmp_path / "ds" / "manifest.json").unlink()
    _, by_content = tracking.dataset_for(tmp_path / "ds" / "train", name="crops")
    assert by_content["name"] == "crops/train" and "sha256 of every file" in by_content["digest_of"]
    monkeypatch.setattr(tracking, "LISTING_HASH_LIMIT", 5)  # a large folder: names and sizes, not every byte
    _, by_size = tracking.dataset_for(tmp_path / "ds" / "train", name="crops")
    assert "size of every file" in by_size["digest_of"] and by_size["sha256"] != by_content["sha256"]
