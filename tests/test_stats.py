"""pipelines.evaluation.paired_stats: known answers for the paired bootstrap and the seed statistics."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation import paired_stats as stats


def test_constant_gain_gives_point_ci():
    baseline = np.random.default_rng(1).normal(30, 2, size=50)
    res = stats.paired_bootstrap(baseline + 0.25, baseline, resamples=2000, seed=3)
    assert res["mean_gain"] == pytest.approx(0.25, abs=1e-12)
    assert res["ci_low"] == pytest.approx(0.25, abs=1e-12)
    assert res["ci_high"] == pytest.approx(0.25, abs=1e-12)
    assert res["std"] == pytest.approx(0.0, abs=1e-12)
    assert res["n"] == 50 and res["resamples"] == 2000 and res["seed"] == 3


def test_symmetric_gains_centre_on_zero():
    gains = np.array([1.0, -1.0] * 100)
    res = stats.paired_bootstrap(gains, np.zeros_like(gains), resamples=4000, seed=0)
    assert res["mean_gain"] == 0.0
    assert res["ci_low"] < 0.0 < res["ci_high"]
    # the bootstrap mean of n +-1 gains has sd 1/sqrt(n): the 95% CI half-width is ~1.96/sqrt(200)
    half_width = (res["ci_high"] - res["ci_low"]) / 2
    assert half_width == pytest.approx(1.96 / np.sqrt(200), rel=0.1)
    assert res["std"] == pytest.approx(np.std(gains, ddof=1))


def test_larger_n_shrinks_ci():
    rng = np.random.default_rng(7)
    widths = []
    for n in (20, 80, 320):
        gains = rng.normal(0.3, 1.0, size=n)
        res = stats.paired_bootstrap(gains, np.zeros(n), resamples=3000, seed=0)
        widths.append(res["ci_high"] - res["ci_low"])
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.3)  # width ~ 1/sqrt(n)


def test_higher_confidence_widens_ci():
    gains = np.random.default_rng(2).normal(0, 1, size=60)
    narrow = stats.paired_bootstrap(gains, np.zeros(60), resamples=3000, confidence=0.8)
    wide = stats.paired_bootstrap(gains, np.zeros(60), resamples=3000, confidence=0.99)
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    m, b = rng.normal(31, 1, 40), rng.normal(30.5, 1, 40)
    first = stats.paired_bootstrap(m, b, resamples=1500, seed=11)
    assert stats.paired_bootstrap(m, b, resamples=1500, seed=11) == first
    other = stats.paired_bootstrap(m, b, resamples=1500, seed=12)
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])


def test_bootstrap_chunking_does_not_change_the_distribution(monkeypatch):
    """Resampling in chunks (to bound memory) must still resample every row: compare with one chunk."""
    gains = np.random.default_rng(9).normal(0, 1, size=30)
    whole = stats.paired_bootstrap(gains, np.zeros(30), resamples=5000, seed=0)
    monkeypatch.setattr(stats, "_BOOTSTRAP_CHUNK_VALUES", 30 * 7)  # 7 resamples per chunk
    chunked = stats.paired_bootstrap(gains, np.zeros(30), resamples=5000, seed=0)
    assert chunked["ci_low"] == pytest.approx(whole["ci_low"], abs=0.05)
    assert chunked["ci_high"] == pytest.approx(whole["ci_high"], abs=0.05)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="same images: 3 vs 2"):
        stats.paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        stats.paired_bootstrap([1.0, np.inf], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        stats.paired_bootstrap([], [])
    with pytest.raises(ValueError, match="confidence"):
        stats.paired_bootstrap([1.0], [0.0], confidence=95)
    with pytest.raises(ValueError, match="1-D"):
        stats.paired_bootstrap(np.zeros((2, 2)), np.zeros((2, 2)))


def test_seed_spread():
    res = stats.seed_spread([1.0, 2.0, 3.0, 4.0])
    assert res["mean"] == 2.5 and res["n"] == 4 and res["values"] == [1.0, 2.0, 3.0, 4.0]
    assert res["std"] == pytest.approx(np.sqrt(5 / 3))  # sample std (ddof=1)
    single = stats.seed_spread([31.2])
    assert single["std"] == 0.0 and single["n"] == 1 and single["mean"] == 31.2


def test_gain_over_seeds_t_interval():
    method = {2023: 31.0, 0: 31.4, 1: 31.2}
    baseline = {0: 31.0, 2023: 30.8, 1: 30.9}
    res = stats.gain_over_seeds(method, baseline)
    gains = np.array([0.4, 0.3, 0.2])  # seeds sorted: 0, 1, 2023
    assert res["seeds"] == [0, 1, 2023]
    assert res["gains"] == pytest.approx(gains.tolist())
    assert res["mean_gain"] == pytest.approx(0.3)
    assert res["std"] == pytest.approx(0.1)
    # t_{0.975, 2} = 4.302653; half-width = t * 0.1 / sqrt(3)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)
    assert res["ci_low"] == pytest.approx(0.3 - half, abs=1e-9)
    assert res["ci_high"] == pytest.approx(0.3 + half, abs=1e-9)
    assert "student-t" in res["ci_method"]


def test_gain_over_seeds_sequences_and_single_seed():
    res = stats.gain_over_seeds([1.0, 2.0], [0.5, 1.0])
    assert res["mean_gain"] == pytest.approx(0.75) and res["ci_low"] < 0.75 < res["ci_high"]
    single = stats.gain_over_seeds({2023: 31.0}, {2023: 30.5})
    assert single["mean_gain"] == pytest.approx(0.5) and single["std"] == 0.0
    assert single["ci_low"] is None and single["ci_high"] is None and single["ci_method"] is None


def test_gain_over_seeds_rejects_mismatch():
    with pytest.raises(ValueError, match="seeds differ"):
        stats.gain_over_seeds({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})
    with pytest.raises(ValueError, match="one value per seed"):
        stats.gain_over_seeds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="both be mappings or both sequences"):
        stats.gain_over_seeds({0: 1.0}, [1.0])
