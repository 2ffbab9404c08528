"""Quality-benchmark parts: metrics against known values, real photos, the eval set."""

from __future__ import annotations

import numpy as np
import pytest

from stylefix_core.evaluation.dataset import EvalConfig, build_eval_set
from stylefix_core.evaluation.metrics import auroc, psnr, ssim
from stylefix_core.evaluation.photos import PHOTOS, grid_patches, load_photos


def test_auroc_matches_hand_counts():
    assert auroc(np.array([3, 4, 1, 2]), np.array([1, 1, 0, 0])) == 1.0
    assert auroc(np.array([1, 2, 3, 4]), np.array([1, 1, 0, 0])) == 0.0
    # one tie between a positive and a negative counts half: (3 + 0.5) / 4
    assert auroc(np.array([2, 5, 2, 1]), np.array([1, 1, 0, 0])) == pytest.approx(0.875)


def test_psnr_and_ssim_known_values():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(image, image) == 100.0 and ssim(image, image) == pytest.approx(1.0)
    shifted = np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)
    expected = 10 * np.log10(255**2 / np.mean((shifted.astype(float) - image) ** 2))
    assert psnr(image, shifted) == pytest.approx(expected)
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert 0.0 < ssim(image, noisy) < ssim(image, shifted) < 1.0


def test_real_photos_load_and_tile():
    photos = load_photos()
    assert set(photos) == set(PHOTOS)
    assert all(p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 256 for p in photos.values())
    patches = grid_patches({"astronaut": photos["astronaut"]}, 64)
    assert len(patches) == 64 and patches[0][1].shape == (64, 64, 3)


def test_eval_set_injects_every_kind_visibly_into_the_first_test_patches():
    eval_set = build_eval_set(EvalConfig(per_kind=4, kinds=("noise", "banding")))
    kinds = [t.kind for t in eval_set.test]
    assert kinds.count("noise") == kinds.count("banding") == 4
    clean_keys = [t.key.split("/", 1)[1] for t in eval_set.test if t.kind == "clean"]
    for kind in ("noise", "banding"):
        keys = [t.key.split("/", 1)[1] for t in eval_set.test if t.kind == kind]
        scanned = clean_keys[: 4 + eval_set.invisible[kind]]
        assert set(keys) <= set(scanned) and keys == [k for k in scanned if k in keys]
    damaged = [t for t in eval_set.test if t.kind != "clean"]
    assert all(psnr(t.image, t.clean) < 40.0 for t in damaged)
    assert eval_set.invisible["noise"] == 0
    assert len(eval_set.reference) > len(clean_keys)


def test_injections_that_change_nothing_visible_are_passed_over():
    """Banding leaves a patch without smooth gradients as it was: such a patch
    is no anomaly, and the eval set takes the next one instead."""
    loose = build_eval_set(EvalConfig(per_kind=12, kinds=("banding",), visible_below_db=101.0))
    strict = build_eval_set(EvalConfig(per_kind=12, kinds=("banding",)))
    faint = [t for t in loose.test if t.kind == "banding" and psnr(t.image, t.clean) >= 40.0]
    assert faint and loose.invisible["banding"] == 0
    assert strict.invisible["banding"] >= len(faint)
    assert {t.key for t in faint}.isdisjoint(t.key for t in strict.test)
