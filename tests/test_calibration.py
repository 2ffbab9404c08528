"""Calibration reads reference images the detectors never saw, the fitted ones included."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stylefix_core import inject
from stylefix_core.bundle import load_bundle
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.scoring.scorer import STATISTIC_DETECTORS, Scorer
from stylefix_core.training.data import to_tensor
from stylefix_core.training.detector import (
    UNFITTED,
    Detectors,
    DetectorTrainConfig,
    calibrate,
    cross_fit,
)
from stylefix_core.training.pixel_damage import PixelDamageTrainConfig

CPU = torch.device("cpu")
QUICK = replace(
    DetectorTrainConfig(),
    steps=2,
    damage_steps=5,
    damage_copies=1,
    pixel=PixelDamageTrainConfig(steps=3, batch_size=4, copies=1),
)


@pytest.fixture(scope="module")
def patches() -> list[torch.Tensor]:
    return [to_tensor(p) for _, p in grid_patches(load_photos(), 64)[::5][:90]]


def test_cross_fitted_detectors_score_only_images_they_were_not_fitted_to(patches):
    """Detectors fitted to an image hold it among their references, where its
    nearest neighbour is itself: calibrating on such scores would set the
    threshold where no new image lies."""
    fit, held = patches[:20], patches[20:30]
    folds = cross_fit(fit, fit, held, held, QUICK, CPU)
    assert sorted(i for _, scored in folds for i in scored) == list(range(len(fit)))

    def nearest(embedding, images: list[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            query = (embedding.describe(torch.stack(images)) - embedding.mean) / embedding.std
            return torch.cdist(query, embedding.reference).amin(1)

    for fitted, scored in folds:
        unseen = [fit[i] for i in scored]
        seen = [fit[i] for i in range(len(fit)) if i not in scored] + held
        assert float(nearest(fitted.embedding, seen).max()) < 1e-3
        assert float(nearest(fitted.embedding, unseen).min()) > 0.1
        assert fitted.embedding.hyper_parameters["n_reference"] == len(seen)


def test_fitted_images_scored_out_of_sample_count_in_the_threshold(patches):
    """The threshold rests on every reference image: three noisy ones among
    the fitted images, scored by detectors that never saw them, are 3 % of
    the calibration images, and a 1 % target must let at most one of them
    through; without them all three are flagged. The statistics' spread is
    read off the fitted images as well, except the colour distance's, which
    measures how far an image is from the fitted images' colours."""
    bundle = load_bundle("")
    shipped = Detectors(bundle.autoencoder, bundle.embedding, bundle.damage, bundle.pixel_damage)
    fit, held = patches[:60], patches[60:]
    noise = inject.get_injector("noise")
    noisy = [noise(fit[i], 1.0, torch.Generator().manual_seed(i)) for i in range(3)]

    def calibration(extra: list[torch.Tensor]):
        return calibrate(
            shipped,
            bundle.discriminator,
            fit,
            [(r, None) for r in held],
            [0.0] * 6,
            0.01,
            CPU,
            STATISTIC_DETECTORS,
            cross_fitted=[(shipped, [(r, None) for r in extra])],
        )

    def flagged(calibration) -> int:
        scorer = Scorer(None, None, None, calibration)
        batch = torch.stack(noisy)
        scores = scorer(batch).score
        return int((scores > calibration.threshold).sum())

    clean, with_noisy = calibration(fit[3:]), calibration(noisy + fit[3:])
    assert flagged(clean) == 3
    assert flagged(with_noisy) <= 1
    assert with_noisy.detectors["colour_noise"] != clean.detectors["colour_noise"]
    for d in set(STATISTIC_DETECTORS) - UNFITTED:  # scaled on the held-out images alone
        assert with_noisy.detectors[d] == clean.detectors[d], d
