"""The defects the rehearsal of the paper profile (``make rehearse``, issue 24) found, one test each: every
test here fails on the code before its fix. The rehearsal itself runs in CI (.ci/run)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deblur_model import build_deblur_model
from pipelines.data.image_files import write_png
from pipelines.data.pairs import find_pairs
from pipelines.evaluation import alignment
from pipelines.evaluation import evaluator as ev
from pipelines.evaluation import score_files as sc


# ---------------------------------------------------------------------------------------------------------
# 1. One RealBlur image whose ECC registration does not converge ended the whole evaluation stage
#    (evaluate_table1@realblur_j-fftformer: "Iterations do not converge ... The correlation is going to be
#    minimized"), after every other image and scoring of that stage had been computed.
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def flat_pair(tmp_path):
    """A RealBlur-like pair on which ECC cannot converge: flat images (no gradient to register)."""
    root = tmp_path / "realblur"
    write_png(root / "input" / "scene1__1.png", np.full((40, 48, 3), 90, np.uint8))
    write_png(root / "target" / "scene1__1.png", np.full((40, 48, 3), 128, np.uint8))
    return root


def test_score_realblur_scores_unregistered_where_ecc_fails_unless_strict():
    restored, sharp = np.full((40, 48, 3), 90, np.uint8), np.full((40, 48, 3), 128, np.uint8)
    with pytest.raises(alignment.AlignmentError):
        alignment.score_realblur(restored, sharp, "official")  # strict: the official script's behaviour
    scores = alignment.score_realblur(restored, sharp, "official", strict=False)
    # scored unregistered: the intensity-matched image is 128 everywhere, as the sharp one
    assert scores["ecc"] == "failed" and scores["psnr"] > 40 and np.isfinite(scores["ssim"])
    textured = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert alignment.score_realblur(textured, textured, "official")["ecc"] == "converged"


def test_an_ecc_failure_no_longer_ends_the_evaluation(flat_pair, tmp_path, capsys):
    torch.manual_seed(0)
    model = build_deblur_model({"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"})
    summary = ev.evaluate_model(model, find_pairs(flat_pair), tmp_path / "out", dataset="realblur_j",
                                data_root=flat_pair, realblur_mode="official", progress=False)
    assert summary["n_images"] == 1 and summary["realblur_mode"] == "official"
    failures = summary["ecc_failures"]
    assert sorted((f["name"], f["image"]) for f in failures) == [("scene1__1.png", "input"), ("scene1__1.png", "restored")]
    assert np.isfinite(sc.read_scores(tmp_path / "out")["psnr"]).all()
    assert "ECC registration" in capsys.readouterr().err
    authors = ev.evaluate_model(model, find_pairs(flat_pair), tmp_path / "authors", dataset="realblur_j",
                                data_root=flat_pair, realblur_mode="authors", progress=False)
    assert "ecc_failures" not in authors  # only the official scoring registers
