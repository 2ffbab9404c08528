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


def test_eval_set_injects_every_kind_into_the_same_patches():
    eval_set = build_eval_set(EvalConfig(per_kind=3, kinds=("noise", "blur")))
    kinds = [t.kind for t in eval_set.test]
    assert kinds.count("noise") == kinds.count("blur") == 3
    clean_keys = {t.key.split("/", 1)[1] for t in eval_set.test if t.kind == "clean"}
    assert {t.key.split("/", 1)[1] for t in eval_set.test if t.kind == "noise"} <= clean_keys
    assert not any(np.array_equal(t.image, t.clean) for t in eval_set.test if t.kind != "clean")
    assert len(eval_set.reference) > len(clean_keys)
