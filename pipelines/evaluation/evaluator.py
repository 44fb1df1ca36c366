"""Evaluating a trained model on a folder of blurred / sharp pairs: the work behind ``blurdm-bench
evaluate`` (:mod:`pipelines.evaluate`, the command) and the study's evaluation stages
(``blurdm-bench study evaluate``, :mod:`pipelines.study`).

Protocol (the authors'): full-resolution inference at batch 1 (:func:`models.inference.restore_image`:
reflect-padding to the backbone's multiple, LoFormer's 384/32 tiles with one prior per tile), the
output clamped and rounded to 8-bit RGB, and every metric computed from those 8-bit images
(:func:`pipelines.evaluation.image_metrics.score_pair`; RealBlur: :func:`pipelines.evaluation.alignment.score_realblur` in the
named mode ``authors`` or ``official``). An oracle evaluation runs a stage-1 model with ``SE(blur, sharp)``.

Stochastic priors (``prior_mode == "diffusion"``) are run once per evaluation seed
(``params.evaluate.eval_seeds``). The noise of image ``name`` under seed ``s`` comes from a CPU
generator seeded with :func:`models.inference.image_seed` ``(s, name)``: it does not depend on which
other images are evaluated, their order, or the device.

Outputs (in the output folder, replaced whole and atomically: a run killed mid-way leaves the previous
results, or nothing, never a partial file; one evaluation at a time per output folder, a second one fails
at once naming it: the lock file ``.<out>.lock`` beside it):

* ``scores.csv`` and ``input_scores.csv`` (:mod:`pipelines.evaluation.score_files`: one row per image and eval seed).
* ``summary.json``: means (:func:`pipelines.evaluation.score_files.summarise`), LPIPS availability and reason, dataset,
  RealBlur mode, model spec, checkpoint, device, torch version.
* optional ``images/<name>.png`` (restored, first eval seed) and ``crops/`` (fixed centre crops of the
  first ``crop_images`` images: blurred, restored, sharp) for the report.
"""
from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.inference import (
    NonFiniteOutputError,
    image_seed,
    is_stochastic,
    restore_image,
)
from models.names import METRIC_NAMES, SCORINGS, scorings
from pipelines.core.checkpoint_files import load_deblur_model, model_file
from pipelines.core.errors import InvalidInputError, UserError
from pipelines.core.files import NAME_MAX, atomic_dir, beside_lock, name_bytes, write_json, write_text
from pipelines.data.image_files import read_rgb_uint8, write_png
from pipelines.data.pairs import check_pairs, find_pairs
from pipelines.evaluation.alignment import score_realblur
from pipelines.evaluation.image_metrics import WINDOW_SIZE, LPIPSScorer, score_pair
from pipelines.evaluation.score_files import (
    INPUT_SCORES_FILE,
    METRIC_NOTES,
    SCORES_FILE,
    SUMMARY_FILE,
    rows_to_csv,
    summarise,
)


# ---------------------------------------------------------------------------------------------
# one image
# ---------------------------------------------------------------------------------------------
def score_image(restored: np.ndarray, sharp: np.ndarray, lpips=None, realblur_mode: str | None = None) -> dict:
    """``{"psnr", "ssim", "ssim3d", "lpips"}`` of one 8-bit pair (None where not defined/available); a RealBlur
    pair in the official mode also ``"ecc"``: ``"failed"`` where ECC did not converge (scored unregistered)."""
    scores = score_pair(restored, sharp, lpips)
    if realblur_mode is not None:
        aligned = score_realblur(restored, sharp, realblur_mode, strict=False)
        scores.update(psnr=aligned["psnr"], ssim=aligned["ssim"], ssim3d=aligned["ssim3d"])
        if "ecc" in aligned:
            scores["ecc"] = aligned["ecc"]
    return scores


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the centred ``size x size`` window (clipped to the image)."""
    h, w = min(size, height), min(size, width)
    return (height - h) // 2, (width - w) // 2, h, w


# ---------------------------------------------------------------------------------------------
# the output folder
# ---------------------------------------------------------------------------------------------
def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InvalidInputError(f"{out_dir}: --out must be a folder, this is a file")
        if any(out_dir.iterdir()) and not (out_dir / SUMMARY_FILE).is_file():
            raise InvalidInputError(f"{out_dir}: folder is not empty and holds no {SUMMARY_FILE}: refusing to replace it "
                             "(the output folder is replaced whole); choose a new --out")


CROP_KINDS = ("blur", "restored", "sharp")  # crops/<stem>_<kind>.png


def _image_file(name: str) -> str:
    return str(Path(name).with_suffix("")) + ".png"


def _crop_stem(name: str) -> str:
    return str(Path(name).with_suffix("")).replace("/", "__")


def check_output_names(pairs, save_images: bool, crop_images: int) -> None:
    """Refuse, before any work, two inputs whose outputs would get the same file name (``dup.png`` and
    ``dup.jpg`` both give ``images/dup.png``; ``a/b.png`` and ``a__b.png`` the same crop names): one
    would silently overwrite the other; and an input whose output name would be longer than a file name
    may be (:data:`pipelines.core.files.NAME_MAX` bytes: a crop adds ``_restored.png``)."""
    owners: dict[str, object] = {}
    clashes, too_long = [], []
    for index, pair in enumerate(pairs):
        names = [f"images/{_image_file(pair.name)}"] if save_images else []
        if index < crop_images:
            names.append(f"crops/{_crop_stem(pair.name)}_*.png")
            longest = f"{_crop_stem(pair.name)}_{max(CROP_KINDS, key=len)}.png"
            if name_bytes(longest) > NAME_MAX:
                too_long.append(f"{pair.blur} (its crop {longest[:40]}... would be {name_bytes(longest)} bytes)")
        if save_images and any(name_bytes(part) > NAME_MAX for part in Path(_image_file(pair.name)).parts):
            too_long.append(f"{pair.blur} (its restored image would be named {_image_file(pair.name)[:40]}...)")
        for name in names:
            first = owners.setdefault(name, pair)
            if first is not pair:
                clashes.append(f"{first.blur} and {pair.blur} would both be written as {name}")
    if too_long:
        raise InvalidInputError(f"output file name too long ({len(too_long)}; a file name has at most {NAME_MAX} "
                                f"bytes): {'; '.join(too_long[:5])}. Rename the input, or evaluate without crops "
                                "(evaluate.crop_images: 0) / --save-images")
    if clashes:
        shown = "; ".join(clashes[:5]) + (f"; ... ({len(clashes) - 5} more)" if len(clashes) > 5 else "")
        raise InvalidInputError(f"output name collision ({len(clashes)}): {shown}. Outputs are named after the input "
                         "without its extension: rename one of each, or evaluate without --save-images / crops")


def _check_inputs(pairs: list, out_dir: Path, data_root, realblur_mode: str | None, save_images: bool,
                  crop_images: int) -> None:
    """Everything that can be refused before any inference: no pairs, an unknown RealBlur mode, an output
    folder that is not ours, clashing output names, unreadable / mismatched / too small images."""

    if not pairs:
        raise InvalidInputError(f"{data_root}: no image pairs to evaluate")
    if realblur_mode is not None and realblur_mode not in SCORINGS:
        raise InvalidInputError(f"unknown RealBlur mode {realblur_mode!r}; allowed: {', '.join(SCORINGS)}")
    _check_replaceable(out_dir)
    check_output_names(pairs, save_images, crop_images)
    # unreadable, size-mismatched, too large or too small files: refused now, not after hours of inference
    check_pairs(pairs, min_side=(WINDOW_SIZE, f"SSIM needs a {WINDOW_SIZE}x{WINDOW_SIZE} window"))


# ---------------------------------------------------------------------------------------------
# a folder
# ---------------------------------------------------------------------------------------------
@dataclass
class _Setup:
    """One evaluation's settings, resolved once and shared by every image (see :func:`evaluate_model`)."""

    model: torch.nn.Module
    device: torch.device
    seeds: list[int | None]  # [None] for a deterministic model
    stochastic: bool
    uses_sharp: bool  # the prior is SE(blur, sharp): stage 1 / the oracle
    lpips: object  # the scorer when LPIPS is available, else None
    lpips_reason: str | None
    realblur_mode: str | None
    save_images: bool
    crop_images: int
    crop_size: int
    fast: bool
    checkpoint: str | os.PathLike | None
    # official RealBlur scoring: where ECC did not converge ({"name", "image": "input" | "restored", "seed"})
    ecc_failures: list = field(default_factory=list)


def _setup(model, eval_seeds: Sequence[int], lpips, lpips_reason: str | None, device, **options) -> _Setup:
    """Put the model on its device in eval mode; resolve the eval seeds and LPIPS availability."""
    device = torch.device(device)
    model = model.to(device).eval()
    stochastic = is_stochastic(model)
    seeds: list[int | None] = list(dict.fromkeys(int(s) for s in eval_seeds)) if stochastic else [None]
    if stochastic and not seeds:
        raise InvalidInputError("a model with a diffusion prior needs at least one evaluation seed (evaluate.eval_seeds)")
    lpips_available = lpips is not None and getattr(lpips, "available", False)
    if lpips is not None and not lpips_available:
        lpips_reason = lpips_reason or getattr(lpips, "reason", None)
    return _Setup(model=model, device=device, seeds=seeds, stochastic=stochastic,
                  uses_sharp=getattr(model, "prior_mode", None) == "sharp_encoder",
                  lpips=lpips if lpips_available else None, lpips_reason=lpips_reason, **options)


def _row(name: str, seed: int | None, scores: dict, seconds: float) -> dict:
    return {"name": name, "seed": seed, **{m: scores.get(m) for m in METRIC_NAMES}, "seconds": seconds}


def _read_pair(pair) -> tuple[np.ndarray, np.ndarray]:
    blur, sharp = read_rgb_uint8(pair.blur), read_rgb_uint8(pair.sharp)
    if blur.shape != sharp.shape:
        raise InvalidInputError(f"size mismatch: {pair.blur} is {blur.shape[1]}x{blur.shape[0]} but {pair.sharp} "
                         f"is {sharp.shape[1]}x{sharp.shape[0]} (width x height)")
    return blur, sharp


def _restore(setup: _Setup, pair, blur: np.ndarray, sharp: np.ndarray, seed: int | None) -> tuple[np.ndarray, float]:
    """The 8-bit restoration of one pair under one eval seed (its noise from ``image_seed(seed, name)``)."""
    generator = torch.Generator().manual_seed(image_seed(seed, pair.name)) if seed is not None else None
    try:
        return restore_image(setup.model, blur, sharp if setup.uses_sharp else None, generator, setup.device,
                             fast=setup.fast)
    except NonFiniteOutputError as err:  # a diverged model: the user's checkpoint, named with the image
        raise InvalidInputError(f"{pair.blur}: {err} (model {setup.checkpoint or 'in memory'})") from None


def _write_examples(setup: _Setup, tmp: Path, index: int, pair, blur, restored, sharp) -> None:
    """The restored PNG (``--save-images``) and, for the first ``crop_images`` pairs, the centre crops."""
    if setup.save_images:
        write_png(tmp / "images" / _image_file(pair.name), restored)
    if index < setup.crop_images:
        top, left, h, w = centre_crop_box(*blur.shape[:2], setup.crop_size)
        stem = _crop_stem(pair.name)
        for kind, img in zip(CROP_KINDS, (blur, restored, sharp)):
            write_png(tmp / "crops" / f"{stem}_{kind}.png", img[top:top + h, left:left + w])


def _scored(setup: _Setup, pair, image: np.ndarray, sharp: np.ndarray, seed: int | None, kind: str) -> dict:
    """:func:`score_image` of ``image`` (``kind``: the blurred ``input`` or the ``restored`` image under ``seed``);
    an image whose ECC registration failed (official RealBlur scoring) is recorded and named on stderr."""
    scores = score_image(image, sharp, setup.lpips, setup.realblur_mode)
    if scores.get("ecc") == "failed":
        setup.ecc_failures.append({"name": pair.name, "image": kind, "seed": seed})
        what = "the blurred input" if kind == "input" else f"the restoration (eval seed {seed})"
        print(f"warning: {pair.blur}: ECC registration of {what} did not converge; scored unregistered "
              f"(summary.json ecc_failures)", file=sys.stderr, flush=True)
    return scores


def _evaluate_pair(setup: _Setup, tmp: Path, index: int, pair, bar) -> tuple[dict, list[dict], str]:
    """Score the blurred input and the restoration under every eval seed of one pair; returns
    ``(input row, rows, "WxH")``."""
    blur, sharp = _read_pair(pair)
    input_row = _row(pair.name, None, _scored(setup, pair, blur, sharp, None, "input"), 0.0)
    rows = []
    for k, seed in enumerate(setup.seeds):
        restored, seconds = _restore(setup, pair, blur, sharp, seed)
        scores = _scored(setup, pair, restored, sharp, seed, "restored")
        rows.append(_row(pair.name, seed, scores, seconds))
        if k == 0:
            _write_examples(setup, tmp, index, pair, blur, restored, sharp)
        bar.update(1)
        bar.set_postfix(psnr=f"{scores['psnr']:.2f}")
    return input_row, rows, f"{blur.shape[1]}x{blur.shape[0]}"


def _summary(setup: _Setup, rows: list[dict], input_rows: list[dict], sizes: set[str], *, dataset: str,
             data_root, n_images: int, spec: dict | None, oracle: bool) -> dict:
    """The ``summary.json`` dict."""
    device, seeds, crop_images = setup.device, setup.seeds, setup.crop_images
    return {
        "dataset": dataset,
        "data_root": str(data_root),
        "n_images": n_images,
        "image_sizes": sorted(sizes),
        "realblur_mode": setup.realblur_mode,
        # official RealBlur scoring: the images whose ECC registration did not converge, scored unregistered
        **({"ecc_failures": setup.ecc_failures} if setup.realblur_mode == "official" else {}),
        "checkpoint": str(setup.checkpoint) if setup.checkpoint is not None else None,
        "model": dict(spec or {}),
        "oracle": bool(oracle),
        "prior_mode": getattr(setup.model, "prior_mode", None),
        "stochastic": setup.stochastic,
        "eval_seeds": [s for s in seeds if s is not None],
        "seed_rule": "noise of an image = torch CPU generator seeded with image_seed(eval_seed, name)"
                     if setup.stochastic else None,
        "metrics": summarise(rows, seeds),
        "input_metrics": summarise(input_rows, [None]),
        "lpips_available": setup.lpips is not None,
        "lpips_reason": None if setup.lpips is not None
        else (setup.lpips_reason or "LPIPS switched off (evaluate.lpips)"),
        "metric_notes": METRIC_NOTES,
        "protocol": "full-resolution inference at batch 1 (models.inference.restore_full), outputs clamped "
                    "and rounded to 8-bit RGB, scored from the 8-bit images",
        "files": {"scores": SCORES_FILE, "input_scores": INPUT_SCORES_FILE,
                  "images": "images/" if setup.save_images else None,
                  "crops": "crops/" if crop_images else None},
        "crops": {"images": min(crop_images, n_images), "size": setup.crop_size, "position": "centre"}
        if crop_images else None,
        "device": str(device),
        "inference": "cuda_graphs" if setup.fast and device.type == "cuda" else "eager",
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def evaluate_model(model, pairs, out_dir: str | os.PathLike, *, dataset: str, data_root: str | os.PathLike,
                   spec: dict | None = None, checkpoint: str | os.PathLike | None = None,
                   eval_seeds: Sequence[int] = (2023,), oracle: bool = False, lpips=None,
                   lpips_reason: str | None = None, realblur_mode: str | None = None, save_images: bool = False,
                   crop_images: int = 0, crop_size: int = 96, device: str | torch.device = "cpu",
                   progress: bool = True, fast: bool = False) -> dict:
    """Run ``model`` over ``pairs`` (from :func:`pipelines.data.pairs.find_pairs`) and write ``out_dir``.

    Returns the summary dict (also written as ``summary.json``).
    """
    out_dir = Path(out_dir)
    pairs = list(pairs)
    _check_inputs(pairs, out_dir, data_root, realblur_mode, save_images, crop_images)
    setup = _setup(model, eval_seeds, lpips, lpips_reason, device, realblur_mode=realblur_mode,
                   save_images=save_images, crop_images=crop_images, crop_size=crop_size, fast=fast,
                   checkpoint=checkpoint)
    rows: list[dict] = []
    input_rows: list[dict] = []
    sizes = set()
    # one writer per --out: a second evaluation fails at once (it never touches the first one's temporary
    # folder; atomic_dir removes only those of processes that no longer run)
    with beside_lock(out_dir, "evaluation"), atomic_dir(out_dir, marker=SUMMARY_FILE) as tmp:
        bar = tqdm(total=len(pairs) * len(setup.seeds), desc=f"evaluate {dataset}", unit="img",
                   disable=not progress)
        for index, pair in enumerate(pairs):
            input_row, pair_rows, size = _evaluate_pair(setup, tmp, index, pair, bar)
            input_rows.append(input_row)
            rows.extend(pair_rows)
            sizes.add(size)
        bar.close()
        write_text(tmp / SCORES_FILE, rows_to_csv(rows))
        write_text(tmp / INPUT_SCORES_FILE, rows_to_csv(input_rows))
        summary = _summary(setup, rows, input_rows, sizes, dataset=dataset, data_root=data_root,
                           n_images=len(pairs), spec=spec, oracle=oracle)
        write_json(tmp / SUMMARY_FILE, summary, allow_nan=False)  # strict JSON: every value finite (PSNR capped)
    return summary


# ---------------------------------------------------------------------------------------------
# a checkpoint
# ---------------------------------------------------------------------------------------------
def evaluate_checkpoint(params, checkpoint, root, out, *, dataset: str, oracle: bool = False,
                        realblur_mode: str | None = None, eval_seeds: list[int] | None = None,
                        max_images: int | None = None, lpips: bool | None = None, save_images: bool | None = None,
                        device: str | torch.device = "cpu", fast: bool | None = None) -> dict:
    """Evaluate the model of ``checkpoint`` (a run folder or ``model.pt``) on the pairs under ``root``.

    The one path from a checkpoint to :func:`evaluate_model` (``blurdm-bench evaluate`` and the study's
    evaluation stages): options left ``None`` come from ``params.evaluate``; RealBlur datasets default
    to the ``authors`` mode; a stage-1 model is only evaluated as the oracle."""

    cfg = params.evaluate
    if realblur_mode is None:
        realblur_mode = scorings(dataset)[0]  # a RealBlur set: the authors' scoring; any other: plain
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
