"""pipelines.data.motion_blur (blurdm-bench synth): the embedded motion-blur dataset (determinism, layout, physics, atomicity)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from pipelines.data import motion_blur as synth
from pipelines.core.config import ParamsError, SynthConfig, load_params
from pipelines.data.pairs import find_pairs
from pipelines.data.image_files import read_rgb_uint8


def tiny_cfg(**overrides) -> SynthConfig:
    base = {"train_sources": ["astronaut", "coffee"], "test_sources": ["chelsea"], "n_train": 3, "n_test": 2,
            "crop_size": 32, "subframes": 5, "blur_length": [3.0, 8.0], "max_rotation_deg": 1.0,
            "kernel_fraction": 0.34, "noise": {"shot": 5e-4, "read": 5e-4}, "save_exposures": True, "seed": 7}
    base.update(overrides)
    return SynthConfig(**base)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_runs_are_byte_identical(tmp_path):
    cfg = tiny_cfg()
    m1 = synth.generate(cfg, tmp_path / "a", progress=False)
    m2 = synth.generate(cfg, tmp_path / "b", progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) > 10 and "manifest.json" in a  # the manifest too: the folder is a DVC dep
    assert m1 == m2
    m3 = synth.generate(tiny_cfg(seed=8), tmp_path / "c", progress=False)
    assert [s["sha256"] for s in m3["samples"]] != [s["sha256"] for s in m1["samples"]]


def test_samples_do_not_depend_on_generation_order(tmp_path):
    small = synth.generate(tiny_cfg(n_train=1, save_exposures=False), tmp_path / "a", progress=False)
    large = synth.generate(tiny_cfg(n_train=4, save_exposures=False), tmp_path / "b", progress=False)
    test_a = [s["sha256"] for s in small["samples"] if s["split"] == "test"]
    test_b = [s["sha256"] for s in large["samples"] if s["split"] == "test"]
    assert test_a == test_b


def test_layout_manifest_and_hashes(tmp_path):
    cfg = tiny_cfg()
    out = tmp_path / "ds"
    manifest = synth.generate(cfg, out, progress=False)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = set()
    for sample in manifest["samples"]:
        for rel, digest in sample["sha256"].items():
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
            listed.add(rel)
        split, scene = sample["split"], sample["scene"]
        assert sample["blur"] == f"{split}/{scene}/blur/{sample['index']:06d}.png"
        assert sample["sharp"] == f"{split}/{scene}/sharp/{sample['index']:06d}.png"
        assert scene in (cfg.train_sources if split == "train" else cfg.test_sources)
        x0, y0, x1, y1 = sample["crop_box_xyxy"]
        assert x1 - x0 == y1 - y0 == cfg.crop_size
        sharp = read_rgb_uint8(out / sample["sharp"])
        source = synth.load_source(scene).rgb
        np.testing.assert_array_equal(sharp, source[y0:y1, x0:x1])  # ground truth = the unwarped crop
        if sample["family"] == "trajectory":
            assert len(sample["exposures"]) == cfg.subframes and len(sample["subframes"]) == cfg.subframes
        else:
            assert sample["kernel_id"] in {f"k{i}" for i in range(1, 9)} and sample["exposures"] == []
    assert on_disk == listed | {"manifest.json"}
    assert json.loads((out / "manifest.json").read_text())["params"] == cfg.model_dump(mode="json")
    counts = manifest["summary"]["counts"]
    assert counts["train"] == {"pairs": 3, "kernel": 1} and counts["test"] == {"pairs": 2, "kernel": 1}
    assert manifest["summary"]["psnr_blur_vs_sharp"]["test"]["n"] == 2
    train_pairs, test_pairs = find_pairs(out / "train"), find_pairs(out / "test")
    assert len(train_pairs) == 3 and len(test_pairs) == 2
    assert not {p.name.split("/")[0] for p in train_pairs} & {p.name.split("/")[0] for p in test_pairs}


def test_zero_length_trajectory_without_noise_is_the_sharp_image():
    cfg = tiny_cfg(blur_length=[0.0, 0.0], max_rotation_deg=0.0, kernel_fraction=0.0,
                   noise={"shot": 0.0, "read": 0.0})
    for index in range(3):
        sample = synth.render_sample(cfg, "train", index, use_kernel=False)
        assert synth.psnr_uint8(sample.blur, sample.sharp) == math.inf


def _edge_scene():
    source = synth.load_source("astronaut")
    return source, (200, 150)


def test_longer_trajectory_gives_lower_psnr():
    source, crop_xy = _edge_scene()
    sharp = source.rgb[crop_xy[1]:crop_xy[1] + 48, crop_xy[0]:crop_xy[0] + 48]
    psnrs = []
    for length in (1.0, 4.0, 12.0):
        traj = synth.sample_trajectory(np.random.default_rng(3), (length, length), 0.0, 9)
        frames = synth.render_subframes(source.linear, crop_xy, 48, traj)
        blur = synth.linear_to_srgb_uint8(synth.accumulate_exposure(frames))
        psnrs.append(synth.psnr_uint8(blur, sharp))
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert psnrs[2] < 30.0


def test_trajectory_is_a_smooth_path_of_the_requested_length():
    traj = synth.sample_trajectory(np.random.default_rng(0), (10.0, 10.0), 2.0, 101)
    assert traj.path_length_px == 10.0
    steps = np.linalg.norm(np.diff(traj.offsets, axis=0), axis=1)
    assert abs(steps.sum() - 10.0) < 0.1  # arc length of the sampled path
    assert steps.max() < 0.5  # continuous: no jumps between neighbouring instants
    assert np.allclose(traj.offsets[traj.middle], 0) and traj.angles_deg[traj.middle] == 0
    assert np.abs(traj.angles_deg).max() <= 2.0 + 1e-9


def test_linear_light_average_differs_from_gamma_space_average():
    source, crop_xy = _edge_scene()
    traj = synth.sample_trajectory(np.random.default_rng(1), (10.0, 10.0), 0.0, 9)
    frames = synth.render_subframes(source.linear, crop_xy, 48, traj)
    linear = synth.linear_to_srgb_uint8(synth.accumulate_exposure(frames)).astype(int)
    encoded = np.stack([synth.linear_to_srgb_uint8(f) for f in frames]).astype(np.float64)
    gamma = np.rint(encoded.mean(axis=0)).astype(int)
    assert np.abs(linear - gamma).max() >= 4
    assert (linear >= gamma - 1).all()  # x ** (1 / 2.2) is concave: the linear mean is never darker


def test_final_cumulative_exposure_is_the_noise_free_blur():
    cfg = tiny_cfg(noise={"shot": 0.0, "read": 0.0})
    sample = synth.render_sample(cfg, "train", 0, use_kernel=False, with_exposures=True)
    assert len(sample.exposures) == cfg.subframes
    assert np.abs(sample.exposures[-1].astype(int) - sample.blur.astype(int)).max() <= 1
    noisy = synth.render_sample(tiny_cfg(), "train", 0, use_kernel=False)
    assert not np.array_equal(noisy.blur, sample.blur)
    np.testing.assert_array_equal(noisy.sharp, sample.sharp)


def test_sensor_noise_is_poisson_gaussian_in_linear_light():
    x = np.full((200, 200, 3), 0.25, np.float32)
    noisy = synth.add_sensor_noise(x, np.random.default_rng(0), shot=1e-3, read=2e-3)
    assert abs(noisy.mean() - 0.25) < 1e-3
    assert noisy.var() == pytest.approx(1e-3 * 0.25 + 2e-3**2, rel=0.05)
    np.testing.assert_array_equal(synth.add_sensor_noise(x, np.random.default_rng(0), 0.0, 0.0), x)


def test_kernel_convolution_places_the_kernel_at_its_centre_of_mass():
    kernels = synth.load_kernels()
    assert len(kernels) == 8 and all(abs(k.sum() - 1) < 1e-9 and k.min() >= 0 for k in kernels)
    kernel = synth.transform_kernel(kernels[3], 5)
    source = np.zeros((120, 120, 3), np.float32)
    source[60, 61] = 1.0  # a point light in linear light
    out = synth.convolve_kernel(source, (30, 30), 64, kernel)
    cx, cy = synth.kernel_centroid(kernel)
    ax, ay = round(cx), round(cy)
    kh, kw = kernel.shape
    y0, x0 = 60 - 30 - ay, 61 - 30 - ax
    np.testing.assert_allclose(out[y0:y0 + kh, x0:x0 + kw, 0], kernel, atol=1e-6)
    assert out.sum() == pytest.approx(3.0, rel=1e-4)  # energy preserved (3 channels)


def test_kernel_sample_is_blurred_and_recorded():
    cfg = tiny_cfg(noise={"shot": 0.0, "read": 0.0})
    sample = synth.render_sample(cfg, "test", 0, use_kernel=True)
    assert sample.family == "kernel" and sample.meta["kernel_id"].startswith("k")
    def gradient_energy(image):
        image = image.astype(np.float64)
        return (np.diff(image, axis=0) ** 2).mean() + (np.diff(image, axis=1) ** 2).mean()

    assert gradient_energy(sample.blur) < 0.7 * gradient_energy(sample.sharp)  # blur removes fine detail
    assert sample.meta["blur_extent_px"] > 5


def test_failure_midway_leaves_no_output_and_keeps_the_old_one(tmp_path, monkeypatch):
    cfg = tiny_cfg(save_exposures=False)
    real = synth.render_sample
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed mid-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_sample", flaky)
    with pytest.raises(RuntimeError):
        synth.generate(cfg, tmp_path / "ds", progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synth, "render_sample", real)
    before = synth.generate(cfg, tmp_path / "ds", progress=False)
    calls["n"] = 0
    monkeypatch.setattr(synth, "render_sample", flaky)
    with pytest.raises(RuntimeError):
        synth.generate(tiny_cfg(save_exposures=False, seed=99), tmp_path / "ds", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    kept = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert kept["samples"] == before["samples"]


def test_bad_sources_are_rejected_before_work(tmp_path, repo_root):
    with pytest.raises(ParamsError, match="train_sources"):
        load_params(repo_root / "params.yaml", overrides={"synth": {"train_sources": ["lily"]}})
    with pytest.raises(ParamsError, match="disjoint"):
        load_params(repo_root / "params.yaml", overrides={"synth": {"test_sources": ["astronaut"]}})
    with pytest.raises(ValueError, match="lily"):
        synth.load_source("lily")
    with pytest.raises(ValueError, match="too small"):
        synth.generate(tiny_cfg(crop_size=400, save_exposures=False), tmp_path / "big", progress=False)
    assert not (tmp_path / "big").exists()


def test_cli_smoke_profile(tmp_path, repo_root, capsys):
    from pipelines.cli import main

    assert main(["synth", "--params", str(repo_root / "params.yaml"), "--profile", "smoke",
                 "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    smoke = load_params(repo_root / "params.yaml", profile="smoke").synth
    assert len(manifest["samples"]) == smoke.n_train + smoke.n_test
    assert "median" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# sources: bundled photographs, dead-leaves scenes

@pytest.mark.parametrize("name", sorted(synth.PHOTO_SOURCES))
def test_every_bundled_photograph_loads_offline_as_colour(name):
    source = synth.load_source(name)
    h, w, c = source.rgb.shape
    assert c == 3 and min(h, w) >= 256, (name, source.rgb.shape)
    assert source.rgb.std(axis=2).mean() > 2  # a colour photograph, not grey replicated to 3 channels


def test_repo_split_is_by_photograph_and_test_holds_only_photographs(repo_root):
    cfg = load_params(repo_root / "params.yaml", profile="cpu").synth
    assert not set(cfg.train_sources) & set(cfg.test_sources)
    assert set(cfg.test_sources) <= set(synth.PHOTO_SOURCES)
    assert not synth.dead_leaves_mask(cfg, "test").any()


def test_dead_leaves_scene_is_deterministic_covered_and_natural():
    a = synth.dead_leaves_source(7, 3, 128, 3000, (2.0, 32.0), ("coffee",))
    b = synth.dead_leaves_source.__wrapped__(7, 3, 128, 3000, (2.0, 32.0), ("coffee",))  # uncached
    c = synth.dead_leaves_source(7, 4, 128, 3000, (2.0, 32.0), ("coffee",))
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.rgb, c.rgb)
    # occluding flat shapes: many distinct colours, most neighbouring pixels equal (flat interiors)
    flat = (np.abs(np.diff(a.rgb.astype(int), axis=1)).sum(axis=2) == 0).mean()
    assert 0.3 < flat < 0.98
    assert len(np.unique(a.rgb.reshape(-1, 3), axis=0)) > 100


def test_dead_leaves_fraction_is_exact_and_only_in_training(tmp_path):
    cfg = tiny_cfg(n_train=10, save_exposures=False,
                   dead_leaves={"fraction": 0.4, "scenes": 2, "size": 96, "shapes": 500, "radius": [2.0, 16.0]})
    manifest = synth.generate(cfg, tmp_path / "ds", progress=False)
    train = [s for s in manifest["samples"] if s["split"] == "train"]
    leaves = [s for s in train if s["scene"].startswith(synth.DEAD_LEAVES_PREFIX)]
    assert len(leaves) == 4
    assert all(s["source_image"].startswith("dead_leaves(seed=7") for s in leaves)
    assert not [s for s in manifest["samples"] if s["split"] == "test" and s["scene"].startswith("dead")]


def test_committed_real_crops_follow_the_documented_rule(tmp_path, repo_root):
    """The real GoPro test crops in the repo are exactly what the rule cuts from shared/realdata."""
    from pipelines.data.gopro_crops import DEFAULT_OUT, make_crops

    src = repo_root.parent / "shared" / "realdata" / "gopro" / "dev"
    committed = find_pairs(DEFAULT_OUT)
    assert len(committed) == 22
    if not (src / "target").is_dir():
        pytest.skip("shared/realdata is not beside this checkout")
    assert make_crops(src, tmp_path / "crops") == 22
    assert _files(tmp_path / "crops") == _files(DEFAULT_OUT)


def test_real_crop_windows_are_the_sharpest_and_do_not_overlap():
    from pipelines.data.gopro_crops import choose_windows, window_scores

    rng = np.random.default_rng(0)
    sharp = np.zeros((256, 384, 3), np.uint8)
    sharp[64:192, 256:384] = rng.integers(0, 255, size=(128, 128, 3))  # the only textured area
    windows = choose_windows(sharp, 128, 64, 2)
    assert windows[0] == (64, 256)
    assert abs(windows[1][0] - 64) >= 128 or abs(windows[1][1] - 256) >= 128
    assert max(window_scores(sharp, 128, 64))[1:] == (64, 256)


def test_blur_length_sampling_log_uniform_per_split(tmp_path):
    """``blur_length_sampling``: log-uniform lengths put as many draws in [0.5, 1] px as in [12, 24] px
    (uniform: ~2 % vs 50 %); each split has its own, and a split's sampling never changes the other's
    samples; log-uniform needs a positive minimum."""
    rng_u, rng_l = np.random.default_rng(0), np.random.default_rng(0)
    uni = np.array([synth.sample_trajectory(rng_u, (0.5, 24.0), 0.0, 5).path_length_px for _ in range(4000)])
    log = np.array([synth.sample_trajectory(rng_l, (0.5, 24.0), 0.0, 5, "log_uniform").path_length_px
                    for _ in range(4000)])
    assert log.min() >= 0.5 and log.max() <= 24.0
    low, high = np.mean((log >= 0.5) & (log < 1.0)), np.mean(log >= 12.0)
    assert abs(low - high) < 0.03 and abs(low - math.log(2) / math.log(48)) < 0.03
    assert np.mean(uni < 1.0) < 0.03 and np.mean(uni >= 12.0) > 0.45
    with pytest.raises(ValueError, match="unknown blur length sampling"):
        synth.sample_trajectory(np.random.default_rng(0), (1.0, 2.0), 0.0, 5, "gaussian")

    cfg_u = tiny_cfg(kernel_fraction=0.0, save_exposures=False)
    cfg_l = tiny_cfg(kernel_fraction=0.0, save_exposures=False, blur_length_sampling={"train": "log_uniform"})
    assert cfg_l.blur_length_sampling.model_dump() == {"train": "log_uniform", "test": "uniform"}
    m_u = synth.generate(cfg_u, tmp_path / "u", progress=False)
    m_l = synth.generate(cfg_l, tmp_path / "l", progress=False)
    by_split = lambda m, split: [(s["sha256"], s["path_length_px"]) for s in m["samples"] if s["split"] == split]  # noqa: E731
    assert by_split(m_u, "test") == by_split(m_l, "test")
    assert [p for _, p in by_split(m_u, "train")] != [p for _, p in by_split(m_l, "train")]
    with pytest.raises(ValueError, match="log_uniform .*needs synth.blur_length min > 0"):
        tiny_cfg(blur_length=[0.0, 8.0], blur_length_sampling={"test": "log_uniform"})
    with pytest.raises(ValueError, match="validation"):  # a split name that does not exist is refused
        tiny_cfg(blur_length_sampling={"validation": "uniform"})
