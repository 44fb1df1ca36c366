"""Figures of the report, drawn with seaborn / matplotlib on the Agg backend and saved as PNG.

Every function takes numbers read from the pipeline's files and writes one PNG (no timestamp or
software tag in its metadata, so the same inputs give the same bytes).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

DPI = 110
PNG_METADATA = {"Software": None}
JITTER_SEED = 0


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)


def t_sweep_plot(path: Path, t_values: list[int], gains: list[float], ci_lows: list[float],
                 ci_highs: list[float], paper_best_t: int | None, confidence: float) -> None:
    """PSNR gain over the no-prior baseline against T, with its CI band; the paper's best T marked."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.fill_between(t_values, ci_lows, ci_highs, alpha=0.25, color="tab:blue",
                    label=f"{confidence:.0%} CI (paired bootstrap)")
    ax.plot(t_values, gains, marker="o", color="tab:blue", label="ours: mean gain")
    peak = max(range(len(gains)), key=lambda i: (gains[i], -t_values[i]))
    ax.scatter([t_values[peak]], [gains[peak]], s=160, marker="*", color="tab:orange", zorder=5,
               label=f"our peak: T={t_values[peak]}")
    if paper_best_t is not None:
        ax.axvline(paper_best_t, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"paper: best T={paper_best_t}")
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlabel("diffusion steps T")
    ax.set_ylabel("PSNR gain over no prior (dB)")
    ax.set_xticks(sorted(set(t_values) | ({paper_best_t} if paper_best_t is not None else set())))
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def gain_distribution_plot(path: Path, gains: pd.DataFrame, title: str) -> None:
    """Per-image PSNR gain (+BlurDM minus baseline) per backbone: box plot with every image as a dot.

    ``gains`` has the columns ``backbone``, ``name`` and ``gain``.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    order = list(dict.fromkeys(gains["backbone"]))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.7 * len(order)))
    sns.boxplot(data=gains, x="gain", y="backbone", order=order, color="0.85", showfliers=False,
                width=0.5, ax=ax)
    state = np.random.get_state()  # seaborn jitters with numpy's global generator: fix it, then restore it
    np.random.seed(JITTER_SEED)
    try:
        sns.stripplot(data=gains, x="gain", y="backbone", order=order, color="tab:blue", size=4, alpha=0.7,
                      jitter=0.15, ax=ax)
    finally:
        np.random.set_state(state)
    ax.axvline(0.0, color="tab:red", linestyle="--", linewidth=1.0)
    ax.set_xlabel("per-image PSNR gain, +BlurDM minus baseline (dB)")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=10)
    _save(fig, path)
