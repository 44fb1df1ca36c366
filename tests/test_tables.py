"""The gains `tables` writes: their spread over training seeds."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.core.config import load_params
from pipelines.evaluation.score_files import INPUT_SCORES_FILE, SCORES_FILE, rows_to_csv
from pipelines.results.gain_tables import _gain, _over_input

IMAGES = [f"img{i}.png" for i in range(6)]
INPUT_PSNR = [20.0, 22.0, 24.0, 26.0, 28.0, 30.0]


def _write(path: Path, psnr: list[float]) -> None:
    rows = [{"name": name, "seed": None, "psnr": value, "ssim": 0.5, "ssim3d": 0.9, "lpips": None, "seconds": 0.0}
            for name, value in zip(IMAGES, psnr)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rows_to_csv(rows))


def _seed_dirs(root: Path, name: str, offsets: list[float]) -> list[Path]:
    """One evaluation folder per training seed: the input's scores plus ``offset`` dB on every image."""
    dirs = []
    for seed, offset in enumerate(offsets):
        d = root / name / f"seed{seed}"
        _write(d / SCORES_FILE, [p + offset for p in INPUT_PSNR])
        _write(d / INPUT_SCORES_FILE, INPUT_PSNR)
        dirs.append(d)
    return dirs


def test_the_gain_over_the_input_carries_the_spread_of_the_training_seeds(tmp_path):
    params = load_params()
    gain = _over_input(_seed_dirs(tmp_path, "model", [0.1, 0.3, 0.5]), params, metrics=("psnr",))["psnr"]
    assert gain["mean"] == pytest.approx(0.3)
    assert gain["seed_std"] == pytest.approx(0.2)  # sample std of 0.1 / 0.3 / 0.5 (it used to be 0.0)
    assert gain["n_seeds"] == 3


def test_one_training_seed_has_no_spread_rather_than_a_spread_of_zero(tmp_path):
    params = load_params()
    one = _seed_dirs(tmp_path, "one", [0.2])
    assert _over_input(one, params, metrics=("psnr",))["psnr"]["seed_std"] is None
    other = _seed_dirs(tmp_path, "other", [0.5])
    assert _gain(other, one, "psnr", params)["gain"]["seed_std"] is None
    three, base = _seed_dirs(tmp_path, "three", [0.4, 0.5, 0.9]), _seed_dirs(tmp_path, "base", [0.1, 0.2, 0.3])
    assert _gain(three, base, "psnr", params)["gain"]["seed_std"] == pytest.approx(0.1732, abs=1e-4)  # gains 0.3 / 0.3 / 0.6
