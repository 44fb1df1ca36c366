"""blurdm-bench evaluate (pipelines.evaluation.evaluator): outputs, 8-bit scoring, seeds, oracle, atomicity."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from models.deblur_model import build_deblur_model, model_payload
from models.inference import from_uint8_image, restore_image
from pipelines.evaluation import evaluator as ev
from pipelines.evaluation import score_files as sc
from pipelines.core.checkpoint_files import save_checkpoint
from pipelines.cli import main
from pipelines.data.pairs import find_pairs
from pipelines.data.image_files import read_rgb_uint8, write_png
from pipelines.evaluation.image_metrics import score_pair

SPECS = {
    "baseline": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"},
    "blurdm": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 2},
    "stage1": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "sharp_encoder", "sharp_encoder": True},
}
# odd sizes: not multiples of MIMO-UNet's 8, so padding and cropping back are exercised
SIZES = [(36, 44), (40, 40), (29, 51)]


def _sharp_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([np.sin(xx / rng.uniform(2, 6) + c) * np.cos(yy / rng.uniform(2, 6)) for c in range(3)], axis=2)
    img[h // 4: h // 2, w // 3: w // 2] += 1.0
    return np.clip((img + 1.5) / 3.5 * 255, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A flat input/target folder of three synthetic (blurred, sharp) pairs."""
    root = tmp_path_factory.mktemp("testset")
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate(SIZES):
        sharp = _sharp_image(rng, h, w)
        blur = cv2.blur(sharp, (7, 1))
        write_png(root / "input" / f"img{i}.png", blur)
        write_png(root / "target" / f"img{i}.png", sharp)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, spec in SPECS.items():
        torch.manual_seed(11)
        model = build_deblur_model(spec)
        paths[name] = save_checkpoint(folder / name / "model.pt", model_payload(model))
    return paths


def _evaluate(args) -> int:
    return main(["evaluate", "--no-lpips", *map(str, args)])


def test_baseline_outputs_and_8bit_scoring(dataset, checkpoints, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(["--checkpoint", checkpoints["baseline"].parent, "--data", dataset, "--dataset", "synth",
                      "--out", out, "--save-images"]) == 0
    scores = sc.read_scores(out)
    assert tuple(scores.columns) == sc.CSV_COLUMNS
    assert list(scores["name"]) == ["img0.png", "img1.png", "img2.png"]
    assert scores["seed"].isna().all() and scores["lpips"].isna().all()  # deterministic model, LPIPS off
    assert (scores["seconds"] > 0).all()
    summary = json.loads((out / sc.SUMMARY_FILE).read_text())
    for key in ("dataset", "n_images", "realblur_mode", "model", "device", "torch_version", "lpips_reason",
                "metrics", "checkpoint", "stochastic"):
        assert key in summary
    assert summary["dataset"] == "synth" and summary["n_images"] == 3 and summary["stochastic"] is False
    assert summary["model"]["prior_mode"] == "none" and summary["realblur_mode"] is None
    assert summary["metrics"]["lpips"]["mean"] == sc.NA and "switched off" in summary["lpips_reason"]
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(scores["psnr"].mean())
    # the CSV scores are those of the saved 8-bit PNGs, which are the clamped + rounded outputs
    for pair, row in zip(find_pairs(dataset), scores.itertuples()):
        restored = read_rgb_uint8(out / "images" / pair.name)
        sharp = read_rgb_uint8(pair.sharp)
        assert restored.shape == sharp.shape
        expected = score_pair(restored, sharp)
        assert row.psnr == pytest.approx(expected["psnr"], abs=1e-9)
        assert row.ssim3d == pytest.approx(expected["ssim3d"], abs=1e-9)
    # fixed centre crops for the report: blurred / restored / sharp of the first images
    crops = sorted(p.name for p in (out / "crops").iterdir())
    assert "img0_restored.png" in crops and len(crops) == 3 * min(3, summary["crops"]["images"])


def test_restore_image_rounds_and_clamps(checkpoints, dataset):
    """The restored image equals the float output clamped to the value range and rounded to 8 bit."""
    from pipelines.core.checkpoint_files import load_deblur_model
    from models.inference import restore_full

    model, _ = load_deblur_model(checkpoints["baseline"])
    blur = read_rgb_uint8(find_pairs(dataset)[0].blur)
    restored, seconds = restore_image(model, blur)
    with torch.no_grad():
        raw = restore_full(model.backbone, from_uint8_image(blur, "half")[None])[0]  # baseline: no prior
    expected = ((raw + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert restored.dtype == np.uint8 and np.array_equal(restored, expected) and seconds > 0


def test_diffusion_prior_reports_spread_over_eval_seeds(dataset, checkpoints, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(["--checkpoint", checkpoints["blurdm"], "--data", dataset, "--out", out,
                      "--eval-seeds", "2023", "5", "--max-images", "2"]) == 0
    scores = sc.read_scores(out)
    assert len(scores) == 4 and sorted(scores["seed"].astype(int).unique()) == [5, 2023]
    summary = json.loads((out / sc.SUMMARY_FILE).read_text())
    assert summary["stochastic"] is True and summary["eval_seeds"] == [2023, 5]
    psnr_summary = summary["metrics"]["psnr"]
    per_seed = [scores.loc[scores["seed"] == s, "psnr"].mean() for s in (2023, 5)]
    assert psnr_summary["per_seed"]["2023"] == pytest.approx(per_seed[0])
    assert psnr_summary["mean"] == pytest.approx(np.mean(per_seed))
    assert psnr_summary["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert psnr_summary["std"] > 0  # different noise -> different prior -> different outputs
    # the same seed reproduces the same numbers (noise drawn from a generator seeded per image)
    again = tmp_path / "again"
    assert _evaluate(["--checkpoint", checkpoints["blurdm"], "--data", dataset, "--out", again,
                      "--eval-seeds", "5", "--max-images", "2"]) == 0
    first = scores[scores["seed"] == 5].reset_index(drop=True)
    pd.testing.assert_series_equal(sc.read_scores(again)["psnr"], first["psnr"])


def test_oracle_mode_uses_the_sharp_image(dataset, checkpoints, tmp_path):
    # a stage-1 model without --oracle would silently peek at the ground truth: refused
    assert _evaluate(["--checkpoint", checkpoints["stage1"], "--data", dataset, "--out", tmp_path / "x"]) == 2
    out = tmp_path / "oracle"
    assert _evaluate(["--checkpoint", checkpoints["stage1"], "--data", dataset, "--out", out, "--oracle"]) == 0
    summary = json.loads((out / sc.SUMMARY_FILE).read_text())
    assert summary["oracle"] is True and summary["prior_mode"] == "sharp_encoder" and summary["stochastic"] is False
    # the prior is SE(blur, sharp) of the (padded) pair being restored
    from pipelines.core.checkpoint_files import load_deblur_model

    model, _ = load_deblur_model(checkpoints["stage1"], prior_mode="sharp_encoder")
    seen = []
    model.sharp_encoder.register_forward_hook(lambda module, args, output: seen.append(args))
    pair = find_pairs(dataset)[0]
    blur, sharp = read_rgb_uint8(pair.blur), read_rgb_uint8(pair.sharp)
    restore_image(model, blur, sharp)
    (enc_blur, enc_sharp), = seen
    h, w = sharp.shape[:2]
    assert torch.equal(enc_sharp[0, :, :h, :w], from_uint8_image(sharp, model.value_range))
    assert torch.equal(enc_blur[0, :, :h, :w], from_uint8_image(blur, model.value_range))


def test_lpips_unavailable_is_na_with_reason(dataset, checkpoints, tmp_path):
    from pipelines.core.checkpoint_files import load_deblur_model
    from pipelines.evaluation.image_metrics import LPIPSScorer

    scorer = LPIPSScorer(hub_dir=tmp_path / "empty_hub")
    assert not scorer.available
    model, spec = load_deblur_model(checkpoints["baseline"])
    summary = ev.evaluate_model(model, find_pairs(dataset)[:1], tmp_path / "out", dataset="synth", data_root=dataset,
                                spec=spec, lpips=scorer, progress=False)
    assert summary["metrics"]["lpips"] == {"mean": sc.NA}
    assert summary["lpips_available"] is False and "weights" in summary["lpips_reason"]
    assert sc.read_scores(tmp_path / "out")["lpips"].isna().all()


@pytest.mark.parametrize("mode", ["authors", "official"])
def test_realblur_mode_is_named(dataset, checkpoints, tmp_path, mode):
    from pipelines.core.checkpoint_files import load_deblur_model

    model, spec = load_deblur_model(checkpoints["baseline"])
    pairs = find_pairs(dataset)[1:2]
    summary = ev.evaluate_model(model, pairs, tmp_path / mode, dataset="realblur_j", data_root=dataset, spec=spec,
                                realblur_mode=mode, progress=False)
    assert summary["realblur_mode"] == mode
    row = sc.read_scores(tmp_path / mode).iloc[0]
    if mode == "authors":
        assert np.isfinite(row["ssim3d"])
    else:  # the official protocol defines no 3-D SSIM
        assert np.isnan(row["ssim3d"]) and summary["metrics"]["ssim3d"]["mean"] == sc.NA


def test_killed_run_leaves_previous_results(dataset, checkpoints, tmp_path, monkeypatch):
    from pipelines.core.checkpoint_files import load_deblur_model

    model, spec = load_deblur_model(checkpoints["baseline"])
    pairs = find_pairs(dataset)
    out = tmp_path / "eval"
    ev.evaluate_model(model, pairs[:1], out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    before = (out / sc.SCORES_FILE).read_text()
    real_score, calls = ev.score_image, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed half-way
        return real_score(*args, **kwargs)

    monkeypatch.setattr(ev, "score_image", dying)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate_model(model, pairs, out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    assert (out / sc.SCORES_FILE).read_text() == before  # old, complete results; nothing partial
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(ev, "score_image", real_score)
    # a temporary folder left by a SIGKILLed run of this machine (its pid no longer runs: over pid_max);
    # one of a live run is never touched (tests/test_reliability_round2_a.py, issue 26 item 3)
    from pipelines.core.files import _host

    (tmp_path / f".eval.{_host()}.4194305-stale.tmp").mkdir()
    ev.evaluate_model(model, pairs, out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    assert len(sc.read_scores(out)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_an_unrelated_folder(dataset, checkpoints, tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"x")
    assert _evaluate(["--checkpoint", checkpoints["baseline"], "--data", dataset, "--out", precious]) == 2
    assert (precious / "holiday.jpg").read_bytes() == b"x"
