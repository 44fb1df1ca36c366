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


def test_trainer_and_tables_read_the_registry():
    from pipelines import scores, tables, train

    assert train.VARIANT_STAGES == {n: c.stages for n, c in names.STAGE_COMBOS.items()}
    assert scores.CSV_COLUMNS[2:-1] == names.METRIC_NAMES == tables.METRICS
    assert tables.ABLATION_ORDER["ablation_prior"] == list(names.PRIORS)


def test_labels():
    assert names.label("mimo_unet") == "MIMO-UNet"
    assert names.label("blurdm") == "BlurDM"
    assert names.label("s1_s3") == "stages 1+3"
    assert names.label("ssim3d") == "SSIM (3-D, as the paper)"
    assert names.label("realblur_j") == "RealBlur-J"
    assert names.label("unregistered") == "unregistered"
