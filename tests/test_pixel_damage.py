"""The pixel damage classifier: a small network on the pixels, and its training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from stylefix_core import inject
from stylefix_core.evaluation.metrics import auroc
from stylefix_core.models import PixelDamageClassifier
from stylefix_core.training.pixel_damage import (
    PixelDamageTrainConfig,
    _damage_sources,
    _damaged_crops,
    train_pixel_damage_classifier,
)

CPU = torch.device("cpu")
QUICK = PixelDamageTrainConfig(steps=200, batch_size=16)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 1, 1), (1, 3, 3, 900), (1, 3, 37, 53)])
def test_one_finite_logit_per_image_of_any_size(shape):
    model = PixelDamageClassifier().eval()
    with torch.inference_mode():
        logits = model(torch.rand(shape, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (shape[0],)
    assert bool(torch.isfinite(logits).all())


def test_a_naming_head_gives_the_damage_logit_and_the_odds_of_each_kind():
    """The damage logit is how much likelier any kind is than clean; the
    kinds' probabilities, given damage, sum to one."""
    model = PixelDamageClassifier(kinds=("blur", "noise", "banding")).eval()
    x = torch.rand((4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = model.logits(x)
        damage, kinds = model.read(x)
        torch.testing.assert_close(model(x), damage)
    assert logits.shape == (4, 4) and kinds.shape == (4, 3)
    expected = torch.log(logits[:, 1:].exp().sum(1)) - logits[:, 0]
    torch.testing.assert_close(damage, expected)
    torch.testing.assert_close(kinds.sum(1), torch.ones(4))
    assert model.hyper_parameters["kinds"] == ["blur", "noise", "banding"]


def test_a_head_without_kinds_gives_the_damage_logit_alone():
    """Bundles made before the classifier named kinds load as they were."""
    model = PixelDamageClassifier().eval()
    x = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        damage, kinds = model.read(x)
        torch.testing.assert_close(damage, model.logits(x)[:, 0])
    assert kinds.shape == (2, 0)


def test_an_image_scores_the_same_alone_as_in_a_batch(photo_patches):
    """Batch norm in eval mode: no image's logit depends on its neighbours."""
    model = train_pixel_damage_classifier(photo_patches[:8], [], replace(QUICK, steps=5), CPU)
    batch = torch.stack(photo_patches[:6])
    with torch.inference_mode():
        one_by_one = torch.cat([model(p[None]) for p in photo_patches[:6]])
        torch.testing.assert_close(model(batch), one_by_one, rtol=1e-4, atol=1e-4)


def test_it_learns_to_tell_damaged_photographs_from_unseen_clean_ones(photo_patches):
    """A short run already separates the plainest kinds; the shipped length
    (1,500 steps of 64 crops) is measured by the quality benchmark."""
    train, test = photo_patches[:120], torch.stack(photo_patches[120:200])
    model = train_pixel_damage_classifier(train, [], QUICK, CPU)
    labels = np.r_[np.zeros(len(test)), np.ones(len(test))]
    with torch.inference_mode():
        clean = model(test).numpy()
        found = {
            kind: auroc(np.r_[clean, model(inject.inject(test, kind, 0.7, seed=1)).numpy()], labels)
            for kind in ("noise", "checkerboard", "posterize", "blur")
        }
    assert found["noise"] > 0.95 and found["checkerboard"] > 0.95, found
    assert found["posterize"] > 0.75 and found["blur"] > 0.75, found
    assert model.kinds == inject.CORRECTOR_TRAINING_KINDS
    with torch.inference_mode():
        for kind in ("noise", "checkerboard"):  # the plainest kinds, named after a short run
            _, odds = model.read(inject.inject(test, kind, 0.7, seed=1))
            named = [model.kinds[i] for i in odds.argmax(1).tolist()]
            assert named.count(kind) > 0.7 * len(named), (kind, named)


def test_it_is_deterministic_for_a_seed_and_differs_between_seeds(photo_patches):
    cfg = replace(QUICK, steps=5, batch_size=4, copies=1)
    a, b = (
        train_pixel_damage_classifier(photo_patches[:16], [], cfg, CPU, seed=3) for _ in range(2)
    )
    other = train_pixel_damage_classifier(photo_patches[:16], [], cfg, CPU, seed=4)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    assert not torch.equal(a.head[0].weight, other.head[0].weight)


def test_images_smaller_than_the_crop_and_jpeg_copies_train(photo_patches):
    """A catalog's references come in every size; small ones are scaled up to the crop."""
    small = [p[:, :20, :48] for p in photo_patches[:6]]
    cfg = replace(QUICK, steps=3, batch_size=4, copies=1)
    model = train_pixel_damage_classifier(small, photo_patches[6:8], cfg, CPU)
    with torch.inference_mode():
        assert bool(torch.isfinite(model(torch.stack(small))).all())


def test_damaged_crops_are_capped_in_number_and_kept_as_bytes(photo_patches):
    """A large reference set must not hold copies times its size in memory."""
    cfg = replace(QUICK, copies=8, max_damaged=20)
    crops, kinds = _damaged_crops(photo_patches[:10], cfg, torch.Generator().manual_seed(0))
    assert len(crops) == len(kinds) == 20
    assert set(kinds) <= set(inject.CORRECTOR_TRAINING_KINDS)
    assert {c.dtype for c in crops} == {torch.uint8}
    assert {tuple(c.shape) for c in crops} == {(3, cfg.crop, cfg.crop)}


def test_capped_damaged_crops_come_from_every_part_of_the_reference_set():
    cfg = replace(QUICK, copies=8, max_damaged=50)
    sources = _damage_sources(100, cfg, torch.Generator().manual_seed(0))
    assert len(sources) == 50 and max(sources) >= 50  # not just the first 50 references
    assert _damage_sources(3, cfg, torch.Generator()) == [0, 1, 2] * 8  # under the cap: all
