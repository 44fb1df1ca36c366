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


def _fake_command(monkeypatch, run):
    """A subcommand ``fake`` whose ``run`` is ``run`` (no arguments)."""
    import types

    module = types.ModuleType("fake_command")
    module.configure_parser = lambda parser: None
    module.run = run
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", ("fake_command", "a test command"))


def test_an_error_raised_on_purpose_is_one_line_and_any_other_keeps_its_traceback(monkeypatch, capsys):
    """A UserError (bad input) is one line and exit 2 (1 for a disk that cannot be written); anything else,
    a ValueError from deep inside torch included, propagates with its traceback: a bug never looks like a
    user's mistake."""
    import errno

    import pytest
    import torch

    from pipelines.core.errors import InvalidInputError, NotWritableError, UserError

    def bad_input(args):
        raise InvalidInputError("params.yaml: train.lr must be > 0, got -1")

    _fake_command(monkeypatch, bad_input)
    assert cli.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err == "blurdm-bench fake: error: params.yaml: train.lr must be > 0, got -1\n"

    def disk_full(args):
        raise NotWritableError(errno.ENOSPC, "cannot write: No space left on device", "metrics/table1.json")

    _fake_command(monkeypatch, disk_full)
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err.count("\n") == 1

    def torch_bug(args):  # a real error from inside torch: a shape mismatch
        return torch.zeros(2, 3) @ torch.zeros(2, 3)

    _fake_command(monkeypatch, torch_bug)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        cli.main(["fake"])

    def library_value_error(args):
        raise ValueError("an internal contract was broken")

    _fake_command(monkeypatch, library_value_error)
    with pytest.raises(ValueError, match="internal contract") as raised:
        cli.main(["fake"])
    assert not isinstance(raised.value, UserError)


def test_an_unexpected_error_prints_a_traceback_from_the_console_script(tmp_path):
    """End to end: a bad params file is one line; a bug (here: a params view read by code that does not
    declare the key, a KeyError) is a full traceback."""
    exe = os.path.join(os.path.dirname(sys.executable), "blurdm-bench")
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: cpu\ntrain: [not, a, mapping\n")
    result = subprocess.run([exe, "synth", "--params", str(bad), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("blurdm-bench synth: error: ") and result.stderr.count("\n") >= 1
    probe = ("import sys; from pipelines import cli; from pipelines.core.params_view import restrict\n"
             "from pipelines.core.config import load_params\n"
             "import pipelines.synth as s\n"
             "s.PARAMS_KEYS = ('profile',)  # the stage no longer declares synth: reading it is a bug\n"
             "sys.exit(cli.main(['synth', '--out', sys.argv[1]]))")
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out2")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "UndeclaredParamsRead" in result.stderr
