"""pipelines.evaluation.score_files: score files read back, and compare_runs (paired bootstrap over images, training seeds)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.evaluation import score_files as sc


# ---------------------------------------------------------------------------------------------
# compare_runs
# ---------------------------------------------------------------------------------------------
def _write_scores(path, names, psnrs, seeds=None, lpips=None):
    rows = []
    for i, (name, value) in enumerate(zip(names, psnrs)):
        rows.append({"name": name, "seed": sc.NA if seeds is None else seeds[i], "psnr": value, "ssim": 0.9,
                     "ssim3d": 0.9, "lpips": sc.NA if lpips is None else lpips[i], "seconds": 0.1})
    pd.DataFrame(rows, columns=sc.CSV_COLUMNS).to_csv(path, index=False)
    return path


def test_compare_constant_gain_pairs_by_name(tmp_path):
    names = [f"scene/{i:03d}.png" for i in range(20)]
    base = np.random.default_rng(0).normal(30, 2, size=20)
    baseline = _write_scores(tmp_path / "b.csv", names, base)
    # the method file lists the images in another order: pairing must be by name, not position
    order = np.random.default_rng(1).permutation(20)
    method = _write_scores(tmp_path / "m.csv", [names[i] for i in order], base[order] + 0.3)
    res = sc.compare_runs(method, baseline, "psnr", resamples=500, seed=0)
    assert res["mean_gain"] == pytest.approx(0.3) and res["n"] == 20
    assert res["ci_low"] == pytest.approx(0.3) and res["ci_high"] == pytest.approx(0.3)
    assert res["method_mean"] - res["baseline_mean"] == pytest.approx(0.3)
    assert res["higher_is_better"] is True


def test_compare_averages_eval_seeds_per_image(tmp_path):
    names = ["a.png", "b.png"]
    baseline = _write_scores(tmp_path / "b.csv", names, [30.0, 20.0])
    method = _write_scores(tmp_path / "m.csv", ["a.png", "a.png", "b.png", "b.png"], [31.0, 33.0, 19.0, 20.0],
                           seeds=[1, 2, 1, 2])
    res = sc.compare_runs(method, baseline, "psnr", resamples=200, seed=0)
    assert res["n"] == 2 and res["mean_gain"] == pytest.approx((2.0 + -0.5) / 2)
    assert res["ci_low"] <= res["mean_gain"] <= res["ci_high"]


def test_compare_over_training_seeds(tmp_path):
    names = ["a.png", "b.png", "c.png"]
    base = [_write_scores(tmp_path / f"b{s}.csv", names, [30.0, 25.0, 20.0]) for s in range(2)]
    meth = [_write_scores(tmp_path / f"m{s}.csv", names, [30.0 + g, 25.0 + g, 20.0 + g])
            for s, g in enumerate([0.2, 0.6])]
    res = sc.compare_runs(meth, base, "psnr", resamples=200, seed=0)
    assert res["mean_gain"] == pytest.approx(0.4)  # per-image mean over the two training seeds
    spread = res["training_seeds"]["method"]
    assert spread["n"] == 2 and spread["std"] == pytest.approx(np.std([25.2, 25.6], ddof=1))
    assert res["training_seeds"]["gain"]["gains"] == pytest.approx([0.2, 0.6])


def test_compare_rejects_mismatched_images_and_na(tmp_path):
    baseline = _write_scores(tmp_path / "b.csv", ["a.png", "b.png"], [30.0, 20.0])
    method = _write_scores(tmp_path / "m.csv", ["a.png", "c.png"], [30.0, 20.0])
    with pytest.raises(ValueError, match="image names differ.*c.png"):
        sc.compare_runs(method, baseline, "psnr", resamples=100, seed=0)
    with pytest.raises(ValueError, match="lpips is NA"):
        sc.compare_runs(baseline, baseline, "lpips", resamples=100, seed=0)
    lp = _write_scores(tmp_path / "l.csv", ["a.png", "b.png"], [30.0, 20.0], lpips=[0.1, 0.3])
    lp2 = _write_scores(tmp_path / "l2.csv", ["a.png", "b.png"], [30.0, 20.0], lpips=[0.2, 0.2])
    res = sc.compare_runs(lp, lp2, "lpips", resamples=100, seed=0)
    assert res["higher_is_better"] is False and res["mean_gain"] == pytest.approx(0.0)
