"""``blurdm-bench evaluate``: score a trained model on a folder of blurred / sharp pairs.

Protocol (the authors'): full-resolution inference at batch 1 (:func:`models.inference.restore_full`:
reflect-padding to the backbone's multiple, LoFormer's 384/32 tiles with one prior per tile), the
output clamped and rounded to 8-bit RGB, and every metric computed from those 8-bit images
(:func:`pipelines.metrics.score_pair`; RealBlur: :func:`pipelines.alignment.score_realblur` in the
named mode ``authors`` or ``official``). ``--oracle`` runs a stage-1 model with ``SE(blur, sharp)``.

Stochastic priors (``prior_mode == "diffusion"``) are run once per evaluation seed
(``params.evaluate.eval_seeds``). The noise of image ``name`` under seed ``s`` comes from a CPU
generator seeded with :func:`image_seed` ``(s, name)``: it does not depend on which other images are
evaluated, their order, or the device.

Outputs (in ``--out``, a folder replaced whole and atomically: a run killed mid-way leaves the previous
results, or nothing, never a partial file):

* ``scores.csv``: one row per image, and for a stochastic prior one row per (image, eval seed), with
  the columns :data:`CSV_COLUMNS`. ``seed`` is ``NA`` for deterministic models, ``lpips`` is ``NA``
  when LPIPS is unavailable (and ``ssim3d`` in RealBlur's official mode, which defines none);
  ``seconds`` is the restoration time of that image (model only, not scoring).
* ``summary.json``: means (for stochastic priors the mean and std over eval seeds of the per-seed
  means), LPIPS availability and reason, dataset, RealBlur mode, model spec, checkpoint, device,
  torch version.
* optional ``images/<name>.png`` (restored, first eval seed) and ``crops/`` (fixed centre crops of the
  first ``crop_images`` images: blurred, restored, sharp) for the report.

:func:`compare_runs` compares two evaluations (method vs baseline) with a paired bootstrap over images.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from models.names import METRIC_NAMES
from models.names import METRICS as METRIC_REGISTRY

CSV_COLUMNS = ("name", "seed", *METRIC_NAMES, "seconds")
METRICS = METRIC_NAMES
NA = "NA"
SCORES_FILE = "scores.csv"
INPUT_SCORES_FILE = "input_scores.csv"  # the blurred input itself scored against the sharp image (doing nothing)
SUMMARY_FILE = "summary.json"
METRIC_NOTES = {name: metric.note for name, metric in METRIC_REGISTRY.items()}


# ---------------------------------------------------------------------------------------------
# one image
# ---------------------------------------------------------------------------------------------
def image_seed(eval_seed: int, name: str) -> int:
    """The noise seed of image ``name`` under evaluation seed ``eval_seed`` (63-bit, stable)."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    state = np.random.SeedSequence([int(eval_seed), digest]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def is_stochastic(model) -> bool:
    """Whether the model's output depends on a random draw (a diffusion prior feeds the backbone; the
    ``encoder`` control draws nothing)."""
    if getattr(model, "prior_mode", "none") != "diffusion":
        return False
    return bool(getattr(getattr(model, "prior", None), "process", None) is None
                or model.prior.process.estimator_names)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PriorFedBackbone:
    """Adapter for :func:`models.inference.restore_full`, which pads / tiles one input tensor and calls
    ``model(window, prior_fn(window))``: here the input holds the blurred image (3 channels), or the
    blurred and sharp images stacked (6 channels) for a model whose prior is ``SE(blur, sharp)``, so
    both are padded and tiled identically and every window gets its own prior."""

    def __init__(self, model, generator: torch.Generator | None):
        self.model = model
        self.generator = generator
        self.tile = getattr(model, "tile", None)
        # the latent encoders pixel-unshuffle by 4: padded sizes must be multiples of 4 as well
        self.pad_multiple = math.lcm(int(getattr(model, "pad_multiple", 1)), 4)

    def __call__(self, window: torch.Tensor, prior: torch.Tensor | None) -> list[torch.Tensor]:
        return self.model.backbone(window[:, :3], prior)

    def prior(self, window: torch.Tensor) -> torch.Tensor | None:
        sharp = window[:, 3:] if window.shape[1] == 6 else None
        return self.model.prior_vector(window[:, :3], sharp, generator=self.generator)


def restore_tensor(model, blur: torch.Tensor, sharp: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, fast: bool = False) -> torch.Tensor:
    """Full-resolution output of a :class:`models.deblur_model.DeblurModel` for a (B, 3, H, W) tensor in
    its value range (padding / LoFormer tiles by :func:`models.inference.restore_full`, one prior per
    window). ``sharp`` only for a model whose prior is ``SE(blur, sharp)`` (stage 1 / oracle). ``fast``: on
    CUDA, each window is one CUDA-graph replay of prior + backbone (:mod:`models.fast_inference`)."""
    from models.inference import restore_full

    if getattr(model, "prior_mode", "none") == "sharp_encoder":
        if sharp is None:
            raise ValueError("this model's prior is SE(blur, sharp) (stage 1 / oracle): the sharp image is needed")
        if sharp.shape != blur.shape:
            raise ValueError(f"blur and sharp differ in shape: {tuple(blur.shape)} vs {tuple(sharp.shape)}")
        blur = torch.cat([blur, sharp], dim=1)
    adapter = _PriorFedBackbone(model, generator)
    prior_fn = adapter.prior if getattr(model, "prior_mode", "none") != "none" else None
    from models.fast_inference import fast_adapter, fast_available

    if fast and fast_available(blur.device):
        adapter, prior_fn = fast_adapter(model, generator), None
    with torch.no_grad():
        return restore_full(adapter, blur, prior_fn=prior_fn)


@torch.no_grad()
def restore_image(model, blur: np.ndarray, sharp: np.ndarray | None = None, generator: torch.Generator | None = None,
                  device: str | torch.device = "cpu", fast: bool = False) -> tuple[np.ndarray, float]:
    """Restore one ``(H, W, 3)`` uint8 image at full resolution; return ``(uint8 output, seconds)``.

    ``sharp`` is used only by a model whose prior is ``SE(blur, sharp)`` (stage 1 / oracle). The
    output is clamped to the model's value range and rounded to 8 bit (what is scored and saved).
    """
    from pipelines.data import from_uint8_image, to_uint8_image

    device = torch.device(device)
    x = from_uint8_image(blur, model.value_range)[None].to(device)
    s = from_uint8_image(sharp, model.value_range)[None].to(device) if sharp is not None else None
    _sync(device)
    start = time.perf_counter()
    out = restore_tensor(model, x, s, generator, fast=fast)
    check_finite_output(out)
    restored = to_uint8_image(out[0], model.value_range)  # copies to the CPU
    _sync(device)
    return restored, time.perf_counter() - start


class NonFiniteOutputError(ValueError):
    """The model's output holds NaN or Inf: an error, never a black image or a bogus score."""


def check_finite_output(out: torch.Tensor) -> None:
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise NonFiniteOutputError(f"the model output holds {bad} non-finite value(s) (NaN or Inf) of {out.numel()}; "
                                   "nothing was written for it")


def score_image(restored: np.ndarray, sharp: np.ndarray, lpips=None, realblur_mode: str | None = None) -> dict:
    """``{"psnr", "ssim", "ssim3d", "lpips"}`` of one 8-bit pair (None where not defined/available)."""
    from pipelines.metrics import score_pair

    scores = score_pair(restored, sharp, lpips)
    if realblur_mode is not None:
        from pipelines.alignment import score_realblur

        aligned = score_realblur(restored, sharp, realblur_mode)
        scores.update(psnr=aligned["psnr"], ssim=aligned["ssim"], ssim3d=aligned["ssim3d"])
    return scores


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the centred ``size x size`` window (clipped to the image)."""
    h, w = min(size, height), min(size, width)
    return (height - h) // 2, (width - w) // 2, h, w


# ---------------------------------------------------------------------------------------------
# a folder
# ---------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _rows_to_csv(rows: list[dict]) -> str:
    lines = [",".join(CSV_COLUMNS)]
    for row in rows:
        cells = []
        for col in CSV_COLUMNS:
            cell = _fmt(row.get(col))
            if col == "name" and any(ch in cell for ch in ',"\n'):
                cell = '"' + cell.replace('"', '""') + '"'
            cells.append(cell)
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _mean_or_na(values: Sequence) -> float | str:
    vals = [v for v in values if v is not None]
    if not vals or len(vals) != len(values):
        return NA
    return float(np.mean(vals))


def summarise(rows: list[dict], seeds: list[int | None]) -> dict:
    """Per-metric summary: ``mean`` (over images; for several seeds the mean of the per-seed means),
    and with several seeds ``std`` over seeds (:func:`pipelines.stats.seed_spread`) and ``per_seed``."""
    from pipelines.stats import seed_spread

    out: dict = {}
    for metric in METRICS + ("seconds",):
        per_seed = {}
        for seed in seeds:
            per_seed[seed] = _mean_or_na([r[metric] for r in rows if r["seed"] == seed])
        if any(v == NA for v in per_seed.values()):
            out[metric] = {"mean": NA}
            continue
        if seeds == [None]:
            out[metric] = {"mean": per_seed[None]}
            continue
        values = [per_seed[s] for s in seeds]
        entry: dict = {"mean": float(np.mean(values)), "per_seed": {str(s): v for s, v in per_seed.items()}}
        if all(math.isfinite(v) for v in values):
            spread = seed_spread(values)
            entry["std"] = spread["std"]
            entry["n_seeds"] = spread["n"]
        out[metric] = entry
    return out


def _remove_stale(out_dir: Path) -> None:
    """Temporary folders left next to ``out_dir`` by an evaluation that was killed mid-way."""
    for tmp in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir}: --out must be a folder, this is a file")
        if any(out_dir.iterdir()) and not (out_dir / SUMMARY_FILE).is_file():
            raise ValueError(f"{out_dir}: folder is not empty and holds no {SUMMARY_FILE}: refusing to replace it "
                             "(the output folder is replaced whole); choose a new --out")


def _image_file(name: str) -> str:
    return str(Path(name).with_suffix("")) + ".png"


def _crop_stem(name: str) -> str:
    return str(Path(name).with_suffix("")).replace("/", "__")


def check_output_names(pairs, save_images: bool, crop_images: int) -> None:
    """Refuse, before any work, two inputs whose outputs would get the same file name (``dup.png`` and
    ``dup.jpg`` both give ``images/dup.png``; ``a/b.png`` and ``a__b.png`` the same crop names): one
    would silently overwrite the other."""
    owners: dict[str, object] = {}
    clashes = []
    for index, pair in enumerate(pairs):
        names = [f"images/{_image_file(pair.name)}"] if save_images else []
        if index < crop_images:
            names.append(f"crops/{_crop_stem(pair.name)}_*.png")
        for name in names:
            first = owners.setdefault(name, pair)
            if first is not pair:
                clashes.append(f"{first.blur} and {pair.blur} would both be written as {name}")
    if clashes:
        shown = "; ".join(clashes[:5]) + (f"; ... ({len(clashes) - 5} more)" if len(clashes) > 5 else "")
        raise ValueError(f"output name collision ({len(clashes)}): {shown}. Outputs are named after the input "
                         "without its extension: rename one of each, or evaluate without --save-images / crops")


def evaluate_model(model, pairs, out_dir: str | os.PathLike, *, dataset: str, data_root: str | os.PathLike,
                   spec: dict | None = None, checkpoint: str | os.PathLike | None = None,
                   eval_seeds: Sequence[int] = (2023,), oracle: bool = False, lpips=None,
                   lpips_reason: str | None = None, realblur_mode: str | None = None, save_images: bool = False,
                   crop_images: int = 0, crop_size: int = 96, device: str | torch.device = "cpu",
                   progress: bool = True, fast: bool = False) -> dict:
    """Run ``model`` over ``pairs`` (from :func:`pipelines.data.find_pairs`) and write ``out_dir``.

    Returns the summary dict (also written as ``summary.json``).
    """
    from pipelines.imageio import read_rgb_uint8, write_png
    from pipelines.io import atomic_dir, write_json, write_text

    out_dir = Path(out_dir)
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{data_root}: no image pairs to evaluate")
    if realblur_mode is not None and realblur_mode not in ("authors", "official"):
        raise ValueError(f"unknown RealBlur mode {realblur_mode!r}; allowed: authors, official")
    _check_replaceable(out_dir)
    from pipelines.data import check_pairs
    from pipelines.metrics import WINDOW_SIZE

    check_output_names(pairs, save_images, crop_images)
    # unreadable, size-mismatched, too large or too small files: refused now, not after hours of inference
    check_pairs(pairs, min_side=(WINDOW_SIZE, f"SSIM needs a {WINDOW_SIZE}x{WINDOW_SIZE} window"))
    _remove_stale(out_dir)
    device = torch.device(device)
    model = model.to(device).eval()
    stochastic = is_stochastic(model)
    seeds: list[int | None] = list(dict.fromkeys(int(s) for s in eval_seeds)) if stochastic else [None]
    if stochastic and not seeds:
        raise ValueError("a model with a diffusion prior needs at least one evaluation seed (evaluate.eval_seeds)")
    uses_sharp = getattr(model, "prior_mode", None) == "sharp_encoder"
    lpips_available = lpips is not None and getattr(lpips, "available", False)
    if lpips is not None and not lpips_available:
        lpips_reason = lpips_reason or getattr(lpips, "reason", None)
    rows: list[dict] = []
    input_rows: list[dict] = []
    sizes = set()
    with atomic_dir(out_dir, marker=SUMMARY_FILE) as tmp:
        bar = tqdm(total=len(pairs) * len(seeds), desc=f"evaluate {dataset}", unit="img", disable=not progress)
        for index, pair in enumerate(pairs):
            blur, sharp = read_rgb_uint8(pair.blur), read_rgb_uint8(pair.sharp)
            if blur.shape != sharp.shape:
                raise ValueError(f"size mismatch: {pair.blur} is {blur.shape[1]}x{blur.shape[0]} but {pair.sharp} "
                                 f"is {sharp.shape[1]}x{sharp.shape[0]} (width x height)")
            sizes.add(f"{blur.shape[1]}x{blur.shape[0]}")
            input_scores = score_image(blur, sharp, lpips if lpips_available else None, realblur_mode)
            input_rows.append({"name": pair.name, "seed": None, **{m: input_scores.get(m) for m in METRICS},
                               "seconds": 0.0})
            for k, seed in enumerate(seeds):
                generator = torch.Generator().manual_seed(image_seed(seed, pair.name)) if seed is not None else None
                try:
                    restored, seconds = restore_image(model, blur, sharp if uses_sharp else None, generator, device,
                                                      fast=fast)
                except NonFiniteOutputError as err:
                    raise NonFiniteOutputError(f"{pair.blur}: {err} (model {checkpoint or 'in memory'})") from None
                scores = score_image(restored, sharp, lpips if lpips_available else None, realblur_mode)
                rows.append({"name": pair.name, "seed": seed, **{m: scores.get(m) for m in METRICS},
                             "seconds": seconds})
                if k == 0:
                    if save_images:
                        write_png(tmp / "images" / _image_file(pair.name), restored)
                    if index < crop_images:
                        top, left, h, w = centre_crop_box(*blur.shape[:2], crop_size)
                        stem = _crop_stem(pair.name)
                        for kind, img in (("blur", blur), ("restored", restored), ("sharp", sharp)):
                            write_png(tmp / "crops" / f"{stem}_{kind}.png", img[top:top + h, left:left + w])
                bar.update(1)
                bar.set_postfix(psnr=f"{scores['psnr']:.2f}")
        bar.close()
        write_text(tmp / SCORES_FILE, _rows_to_csv(rows))
        write_text(tmp / INPUT_SCORES_FILE, _rows_to_csv(input_rows))
        summary = {
            "dataset": dataset,
            "data_root": str(data_root),
            "n_images": len(pairs),
            "image_sizes": sorted(sizes),
            "realblur_mode": realblur_mode,
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "model": dict(spec or {}),
            "oracle": bool(oracle),
            "prior_mode": getattr(model, "prior_mode", None),
            "stochastic": stochastic,
            "eval_seeds": [s for s in seeds if s is not None],
            "seed_rule": "noise of an image = torch CPU generator seeded with image_seed(eval_seed, name)"
                         if stochastic else None,
            "metrics": summarise(rows, seeds),
            "input_metrics": summarise(input_rows, [None]),
            "lpips_available": bool(lpips_available),
            "lpips_reason": None if lpips_available else (lpips_reason or "LPIPS switched off (evaluate.lpips)"),
            "metric_notes": METRIC_NOTES,
            "protocol": "full-resolution inference at batch 1 (models.inference.restore_full), outputs clamped "
                        "and rounded to 8-bit RGB, scored from the 8-bit images",
            "files": {"scores": SCORES_FILE, "input_scores": INPUT_SCORES_FILE,
                      "images": "images/" if save_images else None,
                      "crops": "crops/" if crop_images else None},
            "crops": {"images": min(crop_images, len(pairs)), "size": crop_size, "position": "centre"}
            if crop_images else None,
            "device": str(device),
            "inference": "cuda_graphs" if fast and device.type == "cuda" else "eager",
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else (platform.processor() or platform.machine()),
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
        }
        write_json(tmp / SUMMARY_FILE, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# comparing two evaluations
# ---------------------------------------------------------------------------------------------
def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """A ``scores.csv`` (or the folder holding it) as a DataFrame; ``NA`` cells become NaN."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scores file not found")
    frame = pd.read_csv(path, na_values=[NA], keep_default_na=False, dtype={"name": str})
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a scores file, missing columns {missing}")
    frame.attrs["path"] = str(path)
    return frame


def per_image(frame: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per image name, averaged over evaluation seeds (a stochastic prior's rows)."""
    where = frame.attrs.get("path", "scores")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    values = frame[["name", metric]]
    if values[metric].isna().any():
        bad = values.loc[values[metric].isna(), "name"].tolist()
        raise ValueError(f"{where}: {metric} is NA for {len(bad)} row(s) (e.g. {bad[:3]}); cannot compare")
    return values.groupby("name", sort=True)[metric].mean()


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def compare_runs(method_csv, baseline_csv, metric: str = "psnr", resamples: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of a method with its baseline on the same images.

    ``method_csv`` / ``baseline_csv``: one ``scores.csv`` each (or a folder holding it), or a list of
    them, one per training seed. Per file the metric is averaged per image over evaluation seeds; over
    several training-seed files it is averaged per image. The gain ``method - baseline`` is then
    bootstrapped over images (:func:`pipelines.stats.paired_bootstrap`); pairing is by image name and
    any mismatch is an error. With several files per side, ``training_seeds`` gives the spread of the
    per-file means (:func:`pipelines.stats.seed_spread`).
    """
    from pipelines.stats import paired_bootstrap, seed_spread

    method_files, baseline_files = _as_list(method_csv), _as_list(baseline_csv)
    if not method_files or not baseline_files:
        raise ValueError("compare_runs: need at least one scores file per side")
    method_runs = [per_image(read_scores(p), metric) for p in method_files]
    baseline_runs = [per_image(read_scores(p), metric) for p in baseline_files]
    reference = method_runs[0]
    reference_path = str(method_files[0])
    for path, run in zip(method_files + baseline_files, method_runs + baseline_runs):
        if set(run.index) != set(reference.index):
            only_ref = sorted(set(reference.index) - set(run.index))
            only_run = sorted(set(run.index) - set(reference.index))
            raise ValueError(f"image names differ between {reference_path} and {path}: "
                             f"{len(only_ref)} only in the first (e.g. {only_ref[:3]}), "
                             f"{len(only_run)} only in the second (e.g. {only_run[:3]})")
    names = sorted(reference.index)
    method = np.mean([run.loc[names].to_numpy() for run in method_runs], axis=0)
    baseline = np.mean([run.loc[names].to_numpy() for run in baseline_runs], axis=0)
    result = {
        "metric": metric,
        "higher_is_better": METRIC_REGISTRY[metric].higher_is_better,
        "method_mean": float(method.mean()),
        "baseline_mean": float(baseline.mean()),
        "method_files": [str(p) for p in method_files],
        "baseline_files": [str(p) for p in baseline_files],
        **paired_bootstrap(method, baseline, resamples=resamples, seed=seed),
    }
    result["training_seeds"] = {
        "method": seed_spread([run.mean() for run in method_runs]),
        "baseline": seed_spread([run.mean() for run in baseline_runs]),
    }
    if len(method_runs) == len(baseline_runs) and len(method_runs) > 1:
        from pipelines.stats import gain_over_seeds

        result["training_seeds"]["gain"] = gain_over_seeds([run.mean() for run in method_runs],
                                                           [run.mean() for run in baseline_runs])
    return result


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


def model_file(path: str | os.PathLike) -> Path:
    """A run folder (holding ``model.pt``) or the model file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model.pt of a training run (or its folder)")
    parser.add_argument("--data", default=None, help="test folder (any layout find_pairs reads)")
    parser.add_argument("--dataset", default=None,
                        help="dataset name: a key of params.data.test (its folder is used unless --data is given); "
                             "also the name written to the outputs (default: the folder name)")
    parser.add_argument("--out", required=True, help="output folder (scores.csv, summary.json, images/, crops/)")
    parser.add_argument("--oracle", action="store_true",
                        help="run a stage-1 model with the sharp-encoder prior SE(blur, sharp) (upper bound)")
    parser.add_argument("--realblur-mode", choices=("authors", "official"), default=None,
                        help="RealBlur scoring: authors (no alignment) or official (ECC alignment, masked metrics); "
                             "default: authors for a dataset named realblur*, none otherwise")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=None,
                        help="noise seeds for a diffusion prior (default: params.evaluate.eval_seeds)")
    parser.add_argument("--max-images", type=int, default=None, help="first N pairs only (default: params)")
    parser.add_argument("--save-images", action=argparse.BooleanOptionalAction, default=None,
                        help="write the restored PNGs (default: params.evaluate.save_images)")
    parser.add_argument("--lpips", action=argparse.BooleanOptionalAction, default=None,
                        help="score LPIPS (default: params.evaluate.lpips; NA with the reason when weights are missing)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                        help="on CUDA, replay prior + backbone from CUDA graphs (--no-fast: eager; "
                             "default: params.evaluate.fast); the CPU always runs eager")
    parser.add_argument("--profile", default=None, help="params profile (smoke, cpu, paper)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repo's)")


def evaluate_checkpoint(params, checkpoint, root, out, *, dataset: str, oracle: bool = False,
                        realblur_mode: str | None = None, eval_seeds: list[int] | None = None,
                        max_images: int | None = None, lpips: bool | None = None, save_images: bool | None = None,
                        device: str | torch.device = "cpu", fast: bool | None = None) -> dict:
    """Evaluate the model of ``checkpoint`` (a run folder or ``model.pt``) on the pairs under ``root``.

    The one path from a checkpoint to :func:`evaluate_model` (``blurdm-bench evaluate`` and the study's
    evaluation stages): options left ``None`` come from ``params.evaluate``; RealBlur datasets default
    to the ``authors`` mode; a stage-1 model is only evaluated as the oracle."""
    from models.deblur_model import load_deblur_model
    from pipelines.cli import UserError
    from pipelines.data import find_pairs

    cfg = params.evaluate
    if realblur_mode is None and dataset.lower().startswith("realblur"):
        realblur_mode = "authors"
    max_images = max_images if max_images is not None else cfg.max_images
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {max_images}")
    pairs = find_pairs(root)
    if max_images is not None:
        pairs = pairs[:max_images]
    checkpoint = model_file(checkpoint)
    model, spec = load_deblur_model(checkpoint, prior_mode="sharp_encoder" if oracle else None)
    if spec["prior_mode"] == "sharp_encoder" and not oracle:
        raise UserError(f"{checkpoint}: a stage-1 model takes its prior from the sharp image, SE(blur, sharp); "
                        "pass --oracle to evaluate it as the oracle upper bound")
    device = torch.device(device)
    scorer, reason = None, None
    if lpips if lpips is not None else cfg.lpips:
        from pipelines.metrics import LPIPSScorer

        scorer = LPIPSScorer(device=str(device))
    else:
        reason = "LPIPS switched off (--no-lpips / evaluate.lpips: false)"
    return evaluate_model(
        model, pairs, out, dataset=dataset, data_root=root, spec=spec, checkpoint=checkpoint,
        eval_seeds=eval_seeds if eval_seeds is not None else cfg.eval_seeds, oracle=oracle,
        lpips=scorer, lpips_reason=reason, realblur_mode=realblur_mode,
        save_images=save_images if save_images is not None else cfg.save_images,
        crop_images=cfg.crop_images, crop_size=cfg.crop_size, device=device,
        fast=cfg.fast if fast is None else fast,
    )


def run(args) -> int:
    from pipelines.cli import UserError
    from pipelines.config import load_params

    params = load_params(args.params, profile=args.profile)
    from pipelines.threads import apply_threads

    apply_threads(params.train.threads)  # cores this process may use, shared with parallel jobs (train.threads wins)
    if args.data is not None:
        root = Path(args.data)
    elif args.dataset is not None:
        if args.dataset not in params.data.test:
            raise UserError(f"--dataset {args.dataset!r} is not in params.data.test ({', '.join(params.data.test)}); "
                            "pass --data FOLDER")
        root = params.resolve_path(params.data.test[args.dataset])
    else:
        raise UserError("give the test folder with --data FOLDER or --dataset NAME")
    dataset = args.dataset or root.resolve().name
    summary = evaluate_checkpoint(
        params, args.checkpoint, root, args.out, dataset=dataset, oracle=args.oracle,
        realblur_mode=args.realblur_mode, eval_seeds=args.eval_seeds, max_images=args.max_images,
        lpips=args.lpips, save_images=args.save_images, device=pick_device(args.device), fast=args.fast)
    means = ", ".join(f"{m} {v['mean']:.4f}" if v["mean"] != NA else f"{m} NA"
                      for m, v in summary["metrics"].items() if m in METRICS)
    print(f"{dataset}: {summary['n_images']} images: {means} -> {args.out}")
    return 0
