"""The torchvision work-around, offline environment and the CLI dispatcher."""
from __future__ import annotations

import os
import subprocess
import sys

from pipelines import cli
from pipelines.core.environment import import_torchvision, set_offline_env


def test_torchvision_imports_and_works():
    tv = import_torchvision()
    import torch

    # a real torchvision op that does not depend on the C extension
    img = torch.rand(3, 8, 8)
    flipped = tv.transforms.functional.hflip(img)
    assert torch.equal(flipped, img.flip(-1))


def test_offline_env_is_set_without_overriding_user_choice(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    set_offline_env()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_cli_help_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_cli_unknown_command_fails(capsys):
    assert cli.main(["frobnicate"]) != 0


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "blurdm-bench")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "synth" in result.stdout
