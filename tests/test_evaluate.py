"""blurdm-bench evaluate: outputs, 8-bit scoring, seeds, oracle, atomicity, and compare_runs."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from models.deblur_model import build_deblur_model, model_payload
from pipelines import evaluate as ev
from pipelines.checkpoint import save_checkpoint
from pipelines.cli import main
from pipelines.data import find_pairs
from pipelines.imageio import read_rgb_uint8, write_png
from pipelines.metrics import score_pair

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
    scores = ev.read_scores(out)
    assert tuple(scores.columns) == ev.CSV_COLUMNS
    assert list(scores["name"]) == ["img0.png", "img1.png", "img2.png"]
    assert scores["seed"].isna().all() and scores["lpips"].isna().all()  # deterministic model, LPIPS off
    assert (scores["seconds"] > 0).all()
    summary = json.loads((out / ev.SUMMARY_FILE).read_text())
    for key in ("dataset", "n_images", "realblur_mode", "model", "device", "torch_version", "lpips_reason",
                "metrics", "checkpoint", "stochastic"):
        assert key in summary
    assert summary["dataset"] == "synth" and summary["n_images"] == 3 and summary["stochastic"] is False
    assert summary["model"]["prior_mode"] == "none" and summary["realblur_mode"] is None
    assert summary["metrics"]["lpips"]["mean"] == ev.NA and "switched off" in summary["lpips_reason"]
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
    from models.deblur_model import load_deblur_model
    from models.inference import restore_full
    from pipelines.data import from_uint8_image

    model, _ = load_deblur_model(checkpoints["baseline"])
    blur = read_rgb_uint8(find_pairs(dataset)[0].blur)
    restored, seconds = ev.restore_image(model, blur)
    with torch.no_grad():
        raw = restore_full(model.backbone, from_uint8_image(blur, "half")[None])[0]  # baseline: no prior
    expected = ((raw + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert restored.dtype == np.uint8 and np.array_equal(restored, expected) and seconds > 0


def test_diffusion_prior_reports_spread_over_eval_seeds(dataset, checkpoints, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(["--checkpoint", checkpoints["blurdm"], "--data", dataset, "--out", out,
                      "--eval-seeds", "2023", "5", "--max-images", "2"]) == 0
    scores = ev.read_scores(out)
    assert len(scores) == 4 and sorted(scores["seed"].astype(int).unique()) == [5, 2023]
    summary = json.loads((out / ev.SUMMARY_FILE).read_text())
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
    pd.testing.assert_series_equal(ev.read_scores(again)["psnr"], first["psnr"])


def test_oracle_mode_uses_the_sharp_image(dataset, checkpoints, tmp_path):
    # a stage-1 model without --oracle would silently peek at the ground truth: refused
    assert _evaluate(["--checkpoint", checkpoints["stage1"], "--data", dataset, "--out", tmp_path / "x"]) == 2
    out = tmp_path / "oracle"
    assert _evaluate(["--checkpoint", checkpoints["stage1"], "--data", dataset, "--out", out, "--oracle"]) == 0
    summary = json.loads((out / ev.SUMMARY_FILE).read_text())
    assert summary["oracle"] is True and summary["prior_mode"] == "sharp_encoder" and summary["stochastic"] is False
    # the prior is SE(blur, sharp) of the (padded) pair being restored
    from models.deblur_model import load_deblur_model
    from pipelines.data import from_uint8_image

    model, _ = load_deblur_model(checkpoints["stage1"], prior_mode="sharp_encoder")
    seen = []
    model.sharp_encoder.register_forward_hook(lambda module, args, output: seen.append(args))
    pair = find_pairs(dataset)[0]
    blur, sharp = read_rgb_uint8(pair.blur), read_rgb_uint8(pair.sharp)
    ev.restore_image(model, blur, sharp)
    (enc_blur, enc_sharp), = seen
    h, w = sharp.shape[:2]
    assert torch.equal(enc_sharp[0, :, :h, :w], from_uint8_image(sharp, model.value_range))
    assert torch.equal(enc_blur[0, :, :h, :w], from_uint8_image(blur, model.value_range))


def test_lpips_unavailable_is_na_with_reason(dataset, checkpoints, tmp_path):
    from models.deblur_model import load_deblur_model
    from pipelines.metrics import LPIPSScorer

    scorer = LPIPSScorer(hub_dir=tmp_path / "empty_hub")
    assert not scorer.available
    model, spec = load_deblur_model(checkpoints["baseline"])
    summary = ev.evaluate_model(model, find_pairs(dataset)[:1], tmp_path / "out", dataset="synth", data_root=dataset,
                                spec=spec, lpips=scorer, progress=False)
    assert summary["metrics"]["lpips"] == {"mean": ev.NA}
    assert summary["lpips_available"] is False and "weights" in summary["lpips_reason"]
    assert ev.read_scores(tmp_path / "out")["lpips"].isna().all()


@pytest.mark.parametrize("mode", ["authors", "official"])
def test_realblur_mode_is_named(dataset, checkpoints, tmp_path, mode):
    from models.deblur_model import load_deblur_model

    model, spec = load_deblur_model(checkpoints["baseline"])
    pairs = find_pairs(dataset)[1:2]
    summary = ev.evaluate_model(model, pairs, tmp_path / mode, dataset="realblur_j", data_root=dataset, spec=spec,
                                realblur_mode=mode, progress=False)
    assert summary["realblur_mode"] == mode
    row = ev.read_scores(tmp_path / mode).iloc[0]
    if mode == "authors":
        assert np.isfinite(row["ssim3d"])
    else:  # the official protocol defines no 3-D SSIM
        assert np.isnan(row["ssim3d"]) and summary["metrics"]["ssim3d"]["mean"] == ev.NA


def test_killed_run_leaves_previous_results(dataset, checkpoints, tmp_path, monkeypatch):
    from models.deblur_model import load_deblur_model

    model, spec = load_deblur_model(checkpoints["baseline"])
    pairs = find_pairs(dataset)
    out = tmp_path / "eval"
    ev.evaluate_model(model, pairs[:1], out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    before = (out / ev.SCORES_FILE).read_text()
    real_score, calls = ev.score_image, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed half-way
        return real_score(*args, **kwargs)

    monkeypatch.setattr(ev, "score_image", dying)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate_model(model, pairs, out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    assert (out / ev.SCORES_FILE).read_text() == before  # old, complete results; nothing partial
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(ev, "score_image", real_score)
    (tmp_path / ".eval.stale.tmp").mkdir()  # a temporary folder left by a SIGKILLed run
    ev.evaluate_model(model, pairs, out, dataset="synth", data_root=dataset, spec=spec, progress=False)
    assert len(ev.read_scores(out)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_an_unrelated_folder(dataset, checkpoints, tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"x")
    assert _evaluate(["--checkpoint", checkpoints["baseline"], "--data", dataset, "--out", precious]) == 2
    assert (precious / "holiday.jpg").read_bytes() == b"x"


# ---------------------------------------------------------------------------------------------
# compare_runs
# ---------------------------------------------------------------------------------------------
def _write_scores(path, names, psnrs, seeds=None, lpips=None):
    rows = []
    for i, (name, value) in enumerate(zip(names, psnrs)):
        rows.append({"name": name, "seed": ev.NA if seeds is None else seeds[i], "psnr": value, "ssim": 0.9,
                     "ssim3d": 0.9, "lpips": ev.NA if lpips is None else lpips[i], "seconds": 0.1})
    pd.DataFrame(rows, columns=ev.CSV_COLUMNS).to_csv(path, index=False)
    return path


def test_compare_constant_gain_pairs_by_name(tmp_path):
    names = [f"scene/{i:03d}.png" for i in range(20)]
    base = np.random.default_rng(0).normal(30, 2, size=20)
    baseline = _write_scores(tmp_path / "b.csv", names, base)
    # the method file lists the images in another order: pairing must be by name, not position
    order = np.random.default_rng(1).permutation(20)
    method = _write_scores(tmp_path / "m.csv", [names[i] for i in order], base[order] + 0.3)
    res = ev.compare_runs(method, baseline, "psnr", resamples=500, seed=0)
    assert res["mean_gain"] == pytest.approx(0.3) and res["n"] == 20
    assert res["ci_low"] == pytest.approx(0.3) and res["ci_high"] == pytest.approx(0.3)
    assert res["method_mean"] - res["baseline_mean"] == pytest.approx(0.3)
    assert res["higher_is_better"] is True


def test_compare_averages_eval_seeds_per_image(tmp_path):
    names = ["a.png", "b.png"]
    baseline = _write_scores(tmp_path / "b.csv", names, [30.0, 20.0])
    method = _write_scores(tmp_path / "m.csv", ["a.png", "a.png", "b.png", "b.png"], [31.0, 33.0, 19.0, 20.0],
                           seeds=[1, 2, 1, 2])
    res = ev.compare_runs(method, baseline, "psnr", resamples=200, seed=0)
    assert res["n"] == 2 and res["mean_gain"] == pytest.approx((2.0 + -0.5) / 2)
    assert res["ci_low"] <= res["mean_gain"] <= res["ci_high"]


def test_compare_over_training_seeds(tmp_path):
    names = ["a.png", "b.png", "c.png"]
    base = [_write_scores(tmp_path / f"b{s}.csv", names, [30.0, 25.0, 20.0]) for s in range(2)]
    meth = [_write_scores(tmp_path / f"m{s}.csv", names, [30.0 + g, 25.0 + g, 20.0 + g]) for s, g in enumerate([0.2, 0.6])]
    res = ev.compare_runs(meth, base, "psnr", resamples=200, seed=0)
    assert res["mean_gain"] == pytest.approx(0.4)  # per-image mean over the two training seeds
    spread = res["training_seeds"]["method"]
    assert spread["n"] == 2 and spread["std"] == pytest.approx(np.std([25.2, 25.6], ddof=1))
    assert res["training_seeds"]["gain"]["gains"] == pytest.approx([0.2, 0.6])


def test_compare_rejects_mismatched_images_and_na(tmp_path):
    baseline = _write_scores(tmp_path / "b.csv", ["a.png", "b.png"], [30.0, 20.0])
    method = _write_scores(tmp_path / "m.csv", ["a.png", "c.png"], [30.0, 20.0])
    with pytest.raises(ValueError, match="image names differ.*c.png"):
        ev.compare_runs(method, baseline, "psnr", resamples=100, seed=0)
    with pytest.raises(ValueError, match="lpips is NA"):
        ev.compare_runs(baseline, baseline, "lpips", resamples=100, seed=0)
    lp = _write_scores(tmp_path / "l.csv", ["a.png", "b.png"], [30.0, 20.0], lpips=[0.1, 0.3])
    lp2 = _write_scores(tmp_path / "l2.csv", ["a.png", "b.png"], [30.0, 20.0], lpips=[0.2, 0.2])
    res = ev.compare_runs(lp, lp2, "lpips", resamples=100, seed=0)
    assert res["higher_is_better"] is False and res["mean_gain"] == pytest.approx(0.0)


def test_image_seed_is_stable_and_distinct():
    assert ev.image_seed(2023, "a.png") == ev.image_seed(2023, "a.png")
    assert len({ev.image_seed(s, n) for s in (0, 1) for n in ("a.png", "b.png")}) == 4
    assert 0 <= ev.image_seed(2023, "a.png") < 2**63



def test_tiled_backbone_gets_one_prior_per_window_from_the_matching_sharp_window():
    """LoFormer restores on tiles: the oracle's SE sees the blurred AND sharp window of each tile."""
    torch.manual_seed(0)
    model = build_deblur_model({"backbone": "loformer", "scale": "tiny", "prior_mode": "sharp_encoder",
                                "sharp_encoder": True}).eval()
    size, _ = model.tile
    h, w = size + 6, size + 26  # two windows along each axis
    blur, sharp = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
    seen = []
    model.sharp_encoder.register_forward_hook(lambda module, args, output: seen.append(args))
    out = ev.restore_tensor(model, blur, sharp)
    assert out.shape == (1, 3, h, w) and len(seen) == 4
    starts = [(top, left) for top in (0, h - size) for left in (0, w - size)]
    for (enc_blur, enc_sharp), (top, left) in zip(seen, starts):
        assert torch.equal(enc_blur, blur[..., top:top + size, left:left + size])
        assert torch.equal(enc_sharp, sharp[..., top:top + size, left:left + size])
