"""blurdm-bench deblur: mixed inputs (RGB, grayscale, RGBA, 16-bit, corrupt), naming, never overwriting."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from models.deblur_model import build_deblur_model, model_payload
from pipelines.evaluation import photo_restoration as db
from pipelines.core.checkpoint_files import save_checkpoint
from pipelines.cli import main
from pipelines.data.image_files import read_rgb_uint8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    spec = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 2}
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model_payload(build_deblur_model(spec)))


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def inputs(tmp_path):
    """A folder of good and bad images; returns (folder, {file name: (height, width)} of the readable ones)."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(21, 30)).save(folder / "rgb.png")
    Image.fromarray(_rgb(17, 19)[..., 0]).save(folder / "gray.png")  # mode L
    Image.fromarray(np.dstack([_rgb(24, 16), np.full((24, 16), 128, np.uint8)])).save(folder / "sub" / "rgba.png")
    rgb16 = np.random.default_rng(1).integers(0, 65536, size=(13, 27, 3), dtype=np.uint16)
    cv2.imwrite(str(folder / "deep16.png"), rgb16)  # 16-bit colour PNG
    Image.fromarray(np.random.default_rng(2).integers(0, 65536, size=(9, 11), dtype=np.uint16)).save(folder / "gray16.png")
    Image.fromarray(_rgb(32, 32)).save(folder / "photo.jpg", quality=90)
    good = (folder / "rgb.png").read_bytes()
    (folder / "corrupt.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    (folder / "notes.txt").write_text("not an image, ignored inside folders")
    sizes = {"rgb.png": (21, 30), "gray.png": (17, 19), "sub/rgba.png": (24, 16), "deep16.png": (13, 27),
             "gray16.png": (9, 11), "photo.jpg": (32, 32)}
    return folder, sizes


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_mixed_inputs_corrupt_reported_and_skipped(inputs, checkpoint, tmp_path, capsys):
    folder, sizes = inputs
    before = _digest(folder)
    out = tmp_path / "out"
    rc = main(["deblur", str(folder), "-o", str(out), "--checkpoint", str(checkpoint), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "corrupt.png" in err and "1 of 7 file(s) failed" in err
    for name, (h, w) in sizes.items():
        restored = read_rgb_uint8(out / name.replace(".jpg", ".png"))
        assert restored.shape == (h, w, 3)  # any size: padded for the network, cropped back
    assert not (out / "corrupt.png").exists() and not (out / "notes.png").exists()
    assert _digest(folder) == before  # inputs untouched
    # conversions are said out loud
    assert "alpha channel dropped" in err and "16-bit rounded to 8-bit" in err and "grayscale replicated" in err


def test_all_good_exit_zero_and_deterministic(inputs, checkpoint, tmp_path):
    folder, _ = inputs
    args = [str(folder / "rgb.png"), str(folder / "photo.jpg"), "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main(["deblur", *args, "-o", str(tmp_path / "a")]) == 0
    assert main(["deblur", *args, "-o", str(tmp_path / "b")]) == 0
    for name in ("rgb.png", "photo.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_output_into_the_input_folder_never_overwrites(inputs, checkpoint):
    folder, _ = inputs
    original = (folder / "rgb.png").read_bytes()
    rc = main(["deblur", str(folder / "rgb.png"), str(folder / "photo.jpg"), "-o", str(folder),
               "--checkpoint", str(checkpoint)])
    assert rc == 0
    assert (folder / "rgb.png").read_bytes() == original
    assert read_rgb_uint8(folder / "rgb_deblurred.png").shape == (21, 30, 3)
    assert (folder / "photo.png").is_file()  # no input of that name: plain naming


def test_plan_outputs_names(tmp_path):
    a_png, a_jpg = tmp_path / "x" / "a.png", tmp_path / "y" / "a.jpg"
    jobs = db.plan_outputs([(a_png, a_png.relative_to(a_png.parent)), (a_jpg, a_jpg.relative_to(a_jpg.parent))],
                           tmp_path / "out")
    assert [j.target.name for j in jobs] == ["a.png.png", "a.jpg.png"]  # colliding stems keep their extension
    jobs = db.plan_outputs([(a_png, a_png.relative_to(a_png.parent))], tmp_path / "x")
    assert jobs[0].target == tmp_path / "x" / "a_deblurred.png"


def test_missing_input_and_stage1_model_are_user_errors(inputs, tmp_path):
    folder, _ = inputs
    spec = {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "sharp_encoder", "sharp_encoder": True}
    stage1 = save_checkpoint(tmp_path / "s1" / "model.pt", model_payload(build_deblur_model(spec)))
    assert main(["deblur", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(stage1)]) == 2
    assert main(["deblur", str(folder / "rgb.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(stage1)]) == 2
    assert not (tmp_path / "o").exists()
