"""models/names.py is the one registry of names: config, builders, trainer, tables and report read it."""
import subprocess
import sys

import pytest

from models import names


def test_registry_imports_without_torch():
    code = "import sys, models.names; assert 'torch' not in sys.modules, 'models.names imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", list(names.BACKBONES))
def test_every_registered_backbone_builds_and_is_accepted_by_params(name):
    from models.backbones import build_backbone
    from pipelines.core.config import BACKBONE_NAMES

    assert name in BACKBONE_NAMES
    model = build_backbone(name, scale="tiny", prior_dim=None)
    assert type(model) is names.load(names.BACKBONES[name].impl)


def test_params_literals_come_from_the_registry():
    from pipelines.core import config

    assert config.BACKBONE_NAMES == tuple(names.BACKBONES)
    assert config.PRIOR_NAMES == tuple(names.PRIORS)
    assert config.STAGE_COMBO_NAMES == tuple(names.STAGE_COMBOS)
    assert config.DIFFUSION_PRIORS == names.DIFFUSION_PRIORS


def test_trainer_scores_tables_and_tracking_read_the_registry():
    import argparse

    import numpy as np

    from pipelines.evaluation import image_metrics, score_files
    from pipelines.results import gain_tables
    from pipelines.tracking.evaluation_records import evaluation_metrics
    from pipelines.training.job import add_job_arguments

    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    choices = {action.dest: action.choices for action in parser._actions}
    assert tuple(choices["variant"]) == tuple(names.STAGE_COMBOS) and tuple(choices["study"]) == names.STUDIES
    assert tuple(choices["backbone"]) == tuple(names.BACKBONES) and tuple(choices["prior"]) == names.DIFFUSION_PRIORS
    assert score_files.CSV_COLUMNS[2:-1] == names.METRIC_NAMES
    assert gain_tables.ABLATION_ORDER["ablation_prior"] == list(names.PRIORS)
    image = np.zeros((16, 16, 3), np.uint8)
    assert tuple(image_metrics.score_pair(image, image)) == names.METRIC_NAMES  # every metric is computed
    summary = {"metrics": {m: {"mean": 1.0} for m in names.METRIC_NAMES}, "n_images": 2}
    logged = evaluation_metrics(summary, "synthetic")
    assert {f"test/synthetic/{m}" for m in names.METRIC_NAMES} <= set(logged)  # every metric reaches MLflow


@pytest.mark.parametrize("name", list(names.BACKBONES))
def test_every_backbone_declares_what_activation_checkpointing_wraps(name):
    from models.activation_checkpointing import checkpoint_block_types, enable_activation_checkpointing
    from models.backbones import build_backbone

    backbone = build_backbone(name, scale="tiny", prior_dim=None)
    assert checkpoint_block_types(backbone) == type(backbone).checkpoint_blocks
    assert enable_activation_checkpointing(backbone) > 0


def test_a_backbone_without_blocks_is_refused():
    from torch import nn

    from models.activation_checkpointing import enable_activation_checkpointing

    with pytest.raises(ValueError, match="Linear declares no checkpoint_blocks"):
        enable_activation_checkpointing(nn.Linear(2, 2))


def test_labels():
    assert names.label("mimo_unet") == "MIMO-UNet"
    assert names.label("blurdm") == "BlurDM"
    assert names.label("s1_s3") == "stages 1+3"
    assert names.label("ssim3d") == "SSIM (3-D, as the paper)"
    assert names.label("realblur_j") == "RealBlur-J"
    assert names.label("unregistered") == "unregistered"


def test_a_metric_is_added_in_two_files(tmp_path):
    """A new metric needs its registry entry (models/names.py) and its function (image_metrics.PAIR_METRICS):
    the score files, their summary, the MLflow records and the table schema follow from the registry.
    Run in a fresh interpreter, with both edits made before anything reads the registry."""
    script = r'''
import sys
from pathlib import Path

import numpy as np
import torch

import models.names as names
names.METRICS["mae"] = names.Metric("MAE", False, "mean absolute error of the 8-bit values", 2, 2)
names.METRIC_NAMES = tuple(names.METRICS)
from pipelines.evaluation import image_metrics
image_metrics.PAIR_METRICS["mae"] = lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())

from models.deblur_model import build_deblur_model
from pipelines.data.image_files import write_png
from pipelines.data.pairs import find_pairs
from pipelines.evaluation.evaluator import evaluate_model
from pipelines.evaluation.score_files import read_scores
from pipelines.results.metric_schemas import MetricGains
from pipelines.tracking.evaluation_records import evaluation_metrics

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(2):
    sharp = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    write_png(root / "data" / "input" / f"{i}.png", sharp // 2)
    write_png(root / "data" / "target" / f"{i}.png", sharp)
torch.manual_seed(0)
model = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"}).eval()
summary = evaluate_model(model, find_pairs(root / "data"), root / "out", dataset="d", data_root=root / "data",
                         lpips=None)
assert "mae" in read_scores(root / "out").columns, "scores.csv"
assert summary["metrics"]["mae"]["mean"] > 0, "summary.json"
assert "test/d/mae" in evaluation_metrics(summary, "d"), "MLflow records"
assert "mae" in MetricGains.model_fields, "metric file schema"
print("ok")
'''
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
