"""Paired statistics for comparing a method with its baseline (pure functions, numpy only).

- :func:`paired_bootstrap`: mean per-image gain with a percentile bootstrap CI over images.
- :func:`seed_spread`: mean and spread of one quantity over sampling/training seeds.
- :func:`gain_over_seeds`: mean gain over seeds with a Student-t CI (>= 2 seeds).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

_BOOTSTRAP_CHUNK_VALUES = 4_000_000  # resample indices drawn per chunk (bounds memory)


def _as_vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name} has non-finite values at positions {bad[:10].tolist()} "
            f"(e.g. an infinite PSNR from identical images)"
        )
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def paired_bootstrap(
    method,
    baseline,
    resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Percentile bootstrap of the mean per-image gain ``method - baseline``.

    ``method`` and ``baseline`` are per-image metric values on the SAME images in the SAME order.
    Images are resampled with replacement (``resamples`` times, ``numpy.random.default_rng(seed)``)
    and the CI is the (1-confidence)/2 and (1+confidence)/2 percentiles of the resampled means.
    Returns mean_gain, ci_low, ci_high, n, std (of the per-image gains, ddof=1; 0 for one image),
    confidence, resamples, seed, ci_method.
    """
    m = _as_vector(method, "method")
    b = _as_vector(baseline, "baseline")
    if m.shape != b.shape:
        raise ValueError(
            f"method and baseline must score the same images: {m.size} vs {b.size} values"
        )
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    _check_confidence(confidence)
    gains = m - b
    n = gains.size
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // n)
    boot_means = np.empty(int(resamples))
    for start in range(0, int(resamples), rows_per_chunk):
        rows = min(rows_per_chunk, int(resamples) - start)
        idx = rng.integers(0, n, size=(rows, n))
        boot_means[start : start + rows] = gains[idx].mean(axis=1)
    alpha = 1.0 - confidence
    ci_low, ci_high = np.percentile(boot_means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {
        "mean_gain": float(gains.mean()),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "n": int(n),
        "std": float(gains.std(ddof=1)) if n > 1 else 0.0,
        "confidence": float(confidence),
        "resamples": int(resamples),
        "seed": int(seed),
        "ci_method": "percentile bootstrap over images",
    }


def seed_spread(values) -> dict:
    """Mean and spread of one quantity over seeds: mean, std (ddof=1, 0 for one seed), n, values."""
    arr = _as_vector(values, "values")
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
        "values": arr.tolist(),
    }


def _paired_by_seed(method_by_seed, baseline_by_seed) -> tuple[list, np.ndarray, np.ndarray]:
    if isinstance(method_by_seed, Mapping) != isinstance(baseline_by_seed, Mapping):
        raise ValueError("method_by_seed and baseline_by_seed must both be mappings or both sequences")
    if isinstance(method_by_seed, Mapping):
        if set(method_by_seed) != set(baseline_by_seed):
            raise ValueError(
                f"seeds differ: method has {sorted(method_by_seed)}, baseline has {sorted(baseline_by_seed)}"
            )
        seeds = sorted(method_by_seed)
        m = [method_by_seed[s] for s in seeds]
        b = [baseline_by_seed[s] for s in seeds]
    else:
        if not isinstance(method_by_seed, (Sequence, np.ndarray)):
            raise TypeError(f"expected a mapping or sequence, got {type(method_by_seed).__name__}")
        if len(method_by_seed) != len(baseline_by_seed):
            raise ValueError(
                "method and baseline must have one value per seed: "
                f"{len(method_by_seed)} vs {len(baseline_by_seed)}"
            )
        seeds = list(range(len(method_by_seed)))
        m, b = list(method_by_seed), list(baseline_by_seed)
    return seeds, _as_vector(m, "method_by_seed"), _as_vector(b, "baseline_by_seed")


def gain_over_seeds(method_by_seed, baseline_by_seed, confidence: float = 0.95) -> dict:
    """Mean gain over seeds (``method - baseline`` per seed) with a Student-t CI.

    Inputs: two mappings seed -> scalar (paired by seed; the seed sets must match) or two
    equal-length sequences (paired by position). With >= 2 seeds the CI is
    mean +- t_{(1+confidence)/2, n-1} * std / sqrt(n) (``ci_method`` says so); with one seed
    std is 0 and ci_low/ci_high/ci_method are None.
    """
    _check_confidence(confidence)
    seeds, m, b = _paired_by_seed(method_by_seed, baseline_by_seed)
    gains = m - b
    n = gains.size
    mean = float(gains.mean())
    result = {
        "mean_gain": mean,
        "std": 0.0,
        "n": int(n),
        "seeds": seeds,
        "gains": gains.tolist(),
        "confidence": float(confidence),
        "ci_low": None,
        "ci_high": None,
        "ci_method": None,
    }
    if n >= 2:
        from scipy import stats as scipy_stats  # lazy: scipy.stats takes ~0.9 s; only the spread over seeds needs it

        std = float(gains.std(ddof=1))
        half_width = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
        result.update(
            std=std,
            ci_low=mean - half_width,
            ci_high=mean + half_width,
            ci_method=f"student-t over seeds ({n - 1} degrees of freedom)",
        )
    return result
