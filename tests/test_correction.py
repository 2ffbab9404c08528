"""Classical corrections undo the fault they are named for, on real photographs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylefix_core import inject
from stylefix_core.colour import colour_stats, colourfulness, luma
from stylefix_core.correction import (
    ANSWERS,
    BRINGS_OUT,
    CANDIDATES,
    MAY_EXPLAIN,
    NAMED,
    NO_FURTHER,
    WITNESSES,
    Eligibility,
    answered_faults_gone,
    brings_out,
    changed_visibly,
    choose_corrections,
    eligibility,
    moved_further,
    nothing_else_worse,
    preference,
    witness_dropped,
    worth_keeping,
)
from stylefix_core.device import to_batch, to_pixels
from stylefix_core.evaluation.metrics import psnr
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.fixes import (
    DEBLUR_SIGMA,
    RESATURATE_MAX_GAIN,
    STRONG_DENOISE_SIGMA,
    deblur,
    denoise,
    dequantise,
    devignette,
    remove_checkerboard,
    resaturate,
)
from stylefix_core.inject import gaussian_blur
from stylefix_core.scoring.scorer import DETECTORS, ScoreBatch
from stylefix_core.training.data import to_tensor


@pytest.fixture(scope="module")
def photo_patches() -> list[np.ndarray]:
    """Eight 64 px patches of a real photograph (scikit-image's coffee)."""
    patches = grid_patches({"coffee": load_photos()["coffee"]}, 64)
    return [pixels for _, pixels in patches[8:16]]


def _gain(fix, kind: str, patches: list[np.ndarray], severity: float = 0.7) -> float:
    """Mean PSNR gain in dB of ``fix`` on patches damaged by ``kind``."""
    gains = []
    for i, clean in enumerate(patches):
        damaged = inject.inject(to_tensor(clean)[None], kind, severity, seed=i)
        fixed = fix(damaged)
        before, after = to_pixels(damaged)[0], to_pixels(fixed)[0]
        gains.append(psnr(after, clean) - psnr(before, clean))
    return float(np.mean(gains))


def test_denoise_restores_noisy_photographs(photo_patches):
    assert _gain(denoise, "noise", photo_patches) > 5.0


def test_the_strong_denoiser_is_for_heavy_noise_and_the_light_one_for_mild(photo_patches):
    """Why the job tries both and keeps the gentler where both fix the image."""

    def strong_minus_light(severity: float) -> float:
        strong = _gain(lambda x: denoise(x, STRONG_DENOISE_SIGMA), "noise", photo_patches, severity)
        return strong - _gain(denoise, "noise", photo_patches, severity)

    assert strong_minus_light(1.0) > 0.5
    assert strong_minus_light(0.2) < -0.5
    assert ANSWERS["denoise_strong"] == ANSWERS["denoise"]


def test_deblur_restores_blurred_photographs(photo_patches):
    assert _gain(deblur, "blur", photo_patches) > 2.0  # 3.3 measured


def test_deblur_leaves_a_flat_image_and_undoes_its_own_blur_on_an_edge():
    flat = torch.full((1, 3, 32, 32), 0.4)
    torch.testing.assert_close(deblur(flat), flat)
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 0.8
    blurred = gaussian_blur(edge, DEBLUR_SIGMA)
    assert float((deblur(blurred) - edge).abs().mean()) < 0.6 * float((blurred - edge).abs().mean())


def test_checkerboard_filter_restores_up_sampling_artifacts(photo_patches):
    assert _gain(remove_checkerboard, "checkerboard", photo_patches) > 6.0


@pytest.mark.parametrize("period", [2, 4])
def test_checkerboard_filter_removes_a_periodic_pattern(period):
    """Gone but for a trace at the borders, which the notch leaves to the
    smooth component (``_smooth_component``)."""
    flat = torch.full((1, 3, 40, 40), 0.5)
    phase = (torch.arange(40)[:, None] + torch.arange(40)[None, :]) % period
    patterned = flat + 0.1 * torch.cos(2 * math.pi * phase / period)
    left = (remove_checkerboard(patterned) - flat).abs()
    assert float(left.mean()) < 0.05 * float((patterned - flat).abs().mean())
    assert float(left[..., 4:-4, 4:-4].max()) < 0.01


def test_checkerboard_filter_leaves_a_photographs_texture_be(photo_patches):
    """No pattern, no change anyone could see: a blur that removed the pattern
    would take the fine texture too."""
    for clean in photo_patches:
        out = to_pixels(remove_checkerboard(to_tensor(clean)[None]))[0]
        assert psnr(out, clean) > 38.0


@pytest.mark.parametrize("size", [(2, 2), (5, 3), (2, 777), (1, 300)])
def test_checkerboard_filter_takes_any_batch_and_keeps_its_mean(size):
    """A batch as the engine builds it (permuted from NHWC, not contiguous):
    torch's FFT crashed the process on such strides at some sizes. And a
    small image's notch must not reach its mean colour."""
    rng = np.random.default_rng(0)
    batch = to_batch([rng.integers(0, 256, (*size, 3), dtype=np.uint8)], torch.device("cpu"))
    assert not batch.is_contiguous()
    out = remove_checkerboard(batch)
    torch.testing.assert_close(out, remove_checkerboard(batch.contiguous()))
    torch.testing.assert_close(out.mean(dim=(2, 3)), batch.mean(dim=(2, 3)), atol=0.02, rtol=0)


def test_devignette_brings_dark_corners_back(photo_patches):
    assert _gain(devignette, "vignette_dark", photo_patches) > 4.0


def test_devignette_divides_out_a_fall_off_and_leaves_lighting_and_a_bright_rim():
    """A flat grey under a radial gain comes back flat; a ramp of light, and a
    rim brighter than the centre, are not fall-offs and are left as they are."""
    flat = torch.full((1, 3, 48, 48), 0.6)
    fallen = inject.inject(flat, "vignette_dark", 0.5, seed=0)
    assert float((devignette(fallen) - flat).abs().mean()) < 0.25 * float(
        (fallen - flat).abs().mean()
    )
    ramp = torch.linspace(0.2, 0.8, 48).view(1, 1, 1, 48).expand(1, 3, 48, 48)
    torch.testing.assert_close(devignette(ramp), ramp, atol=2e-3, rtol=0)
    rows = torch.linspace(-1, 1, 48).view(-1, 1)
    rim = (0.3 + 0.3 * (rows**2 + rows.T**2) / 2).expand(1, 3, 48, 48)
    torch.testing.assert_close(devignette(rim), rim)


def _own_colours(patches: list[np.ndarray]) -> torch.Tensor:
    """(N, 1, 6) each clean patch's own colour statistics, as the aims of ``resaturate``."""
    return colour_stats(torch.stack([to_tensor(p) for p in patches]))[:, None]


def test_resaturate_brings_a_greyed_photograph_back(photo_patches):
    aims = _own_colours(photo_patches)
    gains = [
        _gain(lambda x, i=i: resaturate(x, aims[i : i + 1]), "desaturate", [clean])
        for i, clean in enumerate(photo_patches)
    ]
    assert min(gains) > 10.0  # severity 0.7: the chroma multiplied back by 1 / 0.3


def test_colourfulness_shrinks_by_the_factor_a_desaturation_pulls_towards_grey(photo_patches):
    clean = torch.stack([to_tensor(p) for p in photo_patches])
    grey = inject.inject(clean, "desaturate", 0.6, seed=0)
    ratio = colourfulness(colour_stats(grey)) / colourfulness(colour_stats(clean))
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.4), atol=0.01, rtol=0)
    flat_grey = torch.full((1, 3, 8, 8), 0.5)
    assert float(colourfulness(colour_stats(flat_grey))) == pytest.approx(0.0, abs=1e-6)


def test_resaturate_aims_at_the_least_colourful_aim_and_never_takes_colour_away(photo_patches):
    """An image as colourful as the greyest of its aims is left as it is,
    however colourful the others; a grey image stays grey; luma is kept."""
    clean = torch.stack([to_tensor(p) for p in photo_patches[:2]])
    own = colour_stats(clean)[:, None]
    vivid = colour_stats(inject.inject(clean, "colour_cast", 1.0, seed=0))[:, None]
    torch.testing.assert_close(resaturate(clean, torch.cat([vivid, own], dim=1)), clean)
    greyer = colour_stats(inject.inject(clean, "desaturate", 0.5, seed=0))[:, None]
    torch.testing.assert_close(resaturate(clean, greyer), clean)
    flat_grey = torch.full((1, 3, 8, 8), 0.5)
    torch.testing.assert_close(resaturate(flat_grey, vivid[:1]), flat_grey)
    grey = inject.inject(clean, "desaturate", 0.8, seed=0)
    out = resaturate(grey, own)
    torch.testing.assert_close(luma(out), luma(grey), atol=0.01, rtol=0)  # up to clipping


def test_resaturate_multiplies_the_colour_at_most_ten_times(photo_patches):
    """A picture left with a twentieth of its colour is not blown up twenty
    times: what is left of it there is mostly rounding."""
    clean = torch.stack([to_tensor(p) for p in photo_patches[:4]])
    grey = inject.inject(clean, "desaturate", 0.95, seed=0)
    out = resaturate(grey, colour_stats(clean)[:, None])
    ratio = colourfulness(colour_stats(out)) / colourfulness(colour_stats(grey))
    assert float(ratio.max()) <= RESATURATE_MAX_GAIN + 1e-3
    assert float(ratio.min()) > 0.9 * RESATURATE_MAX_GAIN  # a little lost to clipping at most


@pytest.mark.parametrize("size", [(1, 1), (4, 64), (8, 8), (3, 700)])
def test_resaturate_takes_any_size(size):
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    aims = colour_stats(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    out = resaturate(image * 0.1 + 0.45, aims[:, None].expand(-1, 3, -1))
    assert out.shape == image.shape and bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("size", [(1, 1), (4, 64), (8, 8), (3, 700)])
def test_devignette_takes_any_size(size):
    x = torch.rand(2, 3, *size)
    out = devignette(x)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert bool((out >= x - 1e-6).all())  # it only ever brightens


def test_dequantise_fills_posterised_bands_in_and_leaves_a_photograph_be(photo_patches):
    assert _gain(dequantise, "posterize", photo_patches) > 0.0
    clean = torch.stack([to_tensor(p) for p in photo_patches])
    assert not bool(changed_visibly(clean, dequantise(clean)).any())


def test_dequantise_keeps_every_pixel_within_half_a_level_step():
    """Three levels left (0, 0.5, 1): the true value lay within a quarter of
    the range of each, and so must the output."""
    posterised = (
        torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2
    ).round() / 2
    out = dequantise(posterised)
    assert float((out - posterised).abs().max()) <= 0.25 + 1e-6
    assert float((out - posterised).abs().max()) > 0.1  # and it does smooth


def test_dequantise_gains_on_every_posterised_patch(photo_patches):
    """At severity 0.7 a posterised photograph keeps 11 levels, and its
    texture spans several of them; a blur clamped to half a step took that
    texture away (three of these eight patches lost 0.04-0.34 dB). Only
    plateaus and single steps are smoothed now, and every patch gains."""
    for i, clean in enumerate(photo_patches):
        damaged = inject.inject(to_tensor(clean)[None], "posterize", 0.7, seed=i)
        before, after = to_pixels(damaged)[0], to_pixels(dequantise(damaged))[0]
        assert psnr(after, clean) > psnr(before, clean) + 0.2, i


def test_dequantise_smooths_a_false_contour_and_leaves_structure_of_two_steps():
    """Levels 0, 0.5 and 1: a ramp that steps once from 0 to 0.5 is a band
    edge to soften; a texture swinging between 0 and 1 spans two steps, and
    the levels kept it."""
    image = torch.zeros(1, 3, 16, 32)
    image[..., :, 8:16] = 0.5  # one step: a false contour at column 8
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    image[..., :, 16:] = checker.float()  # 0 and 1 side by side
    out = dequantise(image)
    assert float((out - image)[..., 2:-2, 6:10].abs().max()) > 0.05
    torch.testing.assert_close(out[..., :, 18:], image[..., :, 18:])


def test_denoise_removes_impulses_a_blur_would_only_spread():
    image = torch.full((1, 3, 16, 16), 0.4)
    image[..., 8, 8] = 1.0  # one hot pixel
    assert float(denoise(image)[..., 8, 8].max()) == pytest.approx(0.4, abs=1e-6)


def test_every_gated_candidate_names_a_real_detector():
    for table in (ANSWERS, MAY_EXPLAIN):
        assert set(table) <= set(CANDIDATES)
        assert {d for needed in table.values() for d in needed} <= set(DETECTORS)


def test_a_fix_is_tried_only_for_the_faults_it_answers():
    assert eligibility("denoise", ["noise", "blur"]) is Eligibility.YES
    assert eligibility("denoise", ["blur"]) is Eligibility.NO
    assert eligibility("colour", ["colour_distortion"]) is Eligibility.YES
    assert eligibility("colour", ["unlike_reference"]) is Eligibility.IF_IT_CLEARS
    assert eligibility("colour", ["noise"]) is Eligibility.NO
    assert eligibility("residual", ["blur"]) is Eligibility.IF_IT_CLEARS
    # desaturation has no statistic: the damage classifiers' look is the only reason
    assert eligibility("resaturate", ["looks_damaged"]) is Eligibility.IF_IT_CLEARS
    assert eligibility("resaturate", ["pixels_look_damaged"]) is Eligibility.IF_IT_CLEARS
    assert eligibility("resaturate", ["blur", "noise"]) is Eligibility.NO


def test_a_fix_is_tried_for_the_kind_the_pixel_classifier_names():
    """Blur the pixel classifier sees is blur the deblurring filter answers,
    noise the denoiser's, a checkerboard the checkerboard filter's,
    posterising the dequantiser's and greying resaturation's; other damage
    it sees is not theirs."""
    assert set(NAMED) <= set(CANDIDATES)
    assert {k for kinds in NAMED.values() for k in kinds} <= set(inject.CORRECTOR_TRAINING_KINDS)
    seen = ["pixels_look_damaged", "pixels_look_like_blur"]
    assert eligibility("deblur", seen) is Eligibility.YES
    assert eligibility("deblur", ["pixels_look_damaged"]) is Eligibility.NO
    named_noise = ["pixels_look_damaged", "pixels_look_like_noise"]
    assert eligibility("deblur", named_noise) is Eligibility.NO
    assert eligibility("denoise", named_noise) is Eligibility.YES
    assert eligibility("denoise", seen) is not Eligibility.YES
    named = (
        ("checkerboard", "checkerboard"),
        ("dequantise", "posterize"),
        ("resaturate", "desaturate"),
    )
    for fix, kind in named:
        assert (
            eligibility(fix, ["pixels_look_damaged", f"pixels_look_like_{kind}"]) is Eligibility.YES
        )
        assert eligibility(fix, named_noise) is not Eligibility.YES
    assert eligibility("dequantise", ["pixels_look_like_banding"]) is Eligibility.NO


def test_a_sharpening_fix_is_not_tried_on_an_image_that_shows_what_it_amplifies():
    assert eligibility("deblur", ["blur"]) is Eligibility.YES
    assert eligibility("deblur", ["blur", "noise"]) is Eligibility.NO
    assert eligibility("deblur", ["blocking", "pixels_look_like_blur"]) is Eligibility.NO
    assert eligibility("denoise", ["noise", "blocking"]) is Eligibility.YES


def test_blur_is_not_gone_while_the_pixel_classifier_still_names_it():
    z = {"blur": torch.tensor([1.0, 1.0]), "pixel_damage": torch.tensor([5.0, 5.0])}
    after = ScoreBatch(
        raw=z,
        z=z,
        score=torch.tensor([5.0, 5.0]),
        threshold=3.3,
        kinds=("blur", "noise"),
        kind_probabilities=torch.tensor([[0.8, 0.2], [0.1, 0.9]]),
    )
    assert not answered_faults_gone("deblur", after, 0)  # still named blur
    assert answered_faults_gone("deblur", after, 1)  # named noise: not the filter's fault


@pytest.mark.parametrize(
    "score, terms, answered_gone, kept",
    [
        (2.0, Eligibility.YES, False, True),  # clears the flag
        (2.0, Eligibility.IF_IT_CLEARS, False, True),
        (4.5, Eligibility.YES, False, True),  # still flagged, but well down
        (4.5, Eligibility.IF_IT_CLEARS, False, False),  # still flagged
        (5.7, Eligibility.YES, False, False),  # still flagged, a token drop
        (5.95, Eligibility.YES, True, False),  # under MIN_IMPROVEMENT below the start
    ],
)
def test_a_correction_is_kept_only_if_it_clears_the_flag_or_moves_the_score(
    score, terms, answered_gone, kept
):
    assert worth_keeping(score, 6.0, 3.2, terms, answered_gone) is kept


def test_of_several_fixes_the_gentlest_that_clears_the_flag_is_kept():
    """Smoothing lowers most detectors at once, so the lowest score would
    pick the harshest fix; the least change among those that clear wins."""
    gentle, harsh, uncleared = (
        preference(2.9, 3.2, 1e-4),
        preference(1.0, 3.2, 4e-3),
        preference(3.5, 3.2, 1e-6),
    )
    assert min([harsh, gentle, uncleared]) == gentle
    assert min([harsh, uncleared]) == harsh


def test_a_fix_that_removed_its_faults_is_kept_just_over_the_threshold():
    """Denoising a mildly noisy sky (4.5) can leave it at 4.0 for its narrow
    colour spread: kept. A fix that leaves another fault far over the
    threshold (blocking at 5.7) is not, however well it did its own job."""
    yes = Eligibility.YES
    assert worth_keeping(4.0, 4.5, 3.2, yes, answered_gone=True)
    assert not worth_keeping(4.0, 4.5, 3.2, yes, answered_gone=False)
    assert not worth_keeping(5.7, 6.0, 3.2, yes, answered_gone=True)


def test_only_a_classical_fix_counts_as_having_removed_its_faults():
    z = {"colour": torch.tensor([1.0]), "embedding": torch.tensor([4.0])}
    after = ScoreBatch(raw=z, z=z, score=torch.tensor([4.0]), threshold=3.3)
    assert answered_faults_gone("colour", after, 0)
    assert not answered_faults_gone("colour+residual", after, 0)  # the residual must clear
    assert not answered_faults_gone("denoise", after, 0)  # none of its detectors is scored


def test_a_fix_made_nothing_else_worse_when_no_reading_rose_over_the_threshold_or_above_itself():
    def scores(noise: float, pixel_damage: float, blur: float) -> ScoreBatch:
        z = {
            "noise": torch.tensor([noise]),
            "pixel_damage": torch.tensor([pixel_damage]),
            "blur": torch.tensor([blur]),
        }
        return ScoreBatch(
            raw=z, z=z, score=torch.tensor([max(noise, pixel_damage, blur)]), threshold=3.3
        )

    before = scores(4.5, 4.4, 0.5)
    assert nothing_else_worse(before, 0, scores(1.0, 4.0, 2.9), 0)  # lowered, and blur under 3.3
    assert not nothing_else_worse(before, 0, scores(1.0, 4.6, 0.5), 0)  # a flagged reading rose
    assert not nothing_else_worse(before, 0, scores(1.0, 4.0, 3.5), 0)  # a new fault


def test_a_last_resort_fix_never_displaces_another_fix():
    """It ranks after every fix ``worth_keeping`` keeps, however gentle; of
    two last resorts the gentler wins."""
    assert preference(4.0, 3.3, 1e-3) < preference(4.0, 3.3, 1e-6, last_resort=True)
    assert preference(4.0, 3.3, 1e-6, True) < preference(4.0, 3.3, 1e-3, True)


class _TableScorer:
    """Gives ``noisy`` the readings a real scorer gives a noisy patch, and any
    other image (the denoised patch) those of ``denoised``."""

    def __init__(self, noisy: torch.Tensor, readings: dict[str, float], denoised: dict[str, float]):
        self.noisy, self.readings, self.denoised = noisy, readings, denoised

    def __call__(self, x: torch.Tensor, aims: torch.Tensor | None = None) -> ScoreBatch:
        rows = [self.readings if torch.equal(i, self.noisy[0]) else self.denoised for i in x]
        z = {d: torch.tensor([row[d] for row in rows]) for d in self.readings}
        score = torch.stack(list(z.values()), 1).amax(1)
        aims = torch.zeros(len(x), 1, 6) if aims is None else aims
        return ScoreBatch(raw=z, z=z, score=score, threshold=2.5, aims=aims)


@pytest.mark.parametrize("pixel_damage_after, kept", [(4.0, True), (4.6, False)])
def test_a_fix_that_removed_its_fault_is_kept_as_a_last_resort_only_if_nothing_else_rose(
    pixel_damage_after, kept
):
    """Denoising clears the noise (4.5 -> 1.0) but the pixel classifier, which
    reads smoothing as damage too, only falls from 4.4 to 4.0: under the whole
    unit ``worth_keeping`` asks, and far over the threshold. Kept, unless the
    classifier rose."""
    generator = torch.Generator().manual_seed(0)
    noisy = (0.5 + 0.2 * torch.randn(1, 3, 32, 32, generator=generator)).clamp(0, 1)
    scorer = _TableScorer(
        noisy,
        {"noise": 4.5, "pixel_damage": 4.4},
        {"noise": 1.0, "pixel_damage": pixel_damage_after},
    )
    before = scorer(noisy)
    images, names, after = choose_corrections(
        noisy, before, scorer, torch.nn.Identity(), candidates=("denoise",)
    )
    assert names == (["denoise"] if kept else [""])
    assert float(after[0]) == (pixel_damage_after if kept else 4.5)
    assert torch.equal(images, noisy) is not kept


def test_a_fix_with_a_witness_must_move_it():
    """Recolouring a collapsed image clears the embedding's flag without making
    its colour moments typical: cleared, but not explained, so not kept."""
    assert worth_keeping(2.0, 6.0, 3.2, Eligibility.IF_IT_CLEARS, witness_dropped=True)
    assert not worth_keeping(2.0, 6.0, 3.2, Eligibility.IF_IT_CLEARS, witness_dropped=False)
    assert set(WITNESSES.values()) <= set(DETECTORS)
    # and where it answers the flag itself: a sky recoloured towards the
    # references' average clears "colour" without its colours growing typical
    assert not worth_keeping(2.0, 6.0, 3.2, Eligibility.YES, witness_dropped=False)

    def scores(reference_colour: list[float]) -> ScoreBatch:
        z = {
            "embedding": torch.tensor([4.7, 6.2]),
            "reference_colour": torch.tensor(reference_colour),
        }
        return ScoreBatch(raw=z, z=z, score=z["embedding"], threshold=3.3)

    before, after = scores([3.9, 3.8]), scores([3.2, -0.6])  # a collapse, then a cast
    assert not witness_dropped("colour", before, 0, after, 0)
    assert witness_dropped("colour", before, 1, after, 1)
    assert witness_dropped("residual", before, 0, after, 0)  # no witness: nothing to show


def test_a_fix_may_not_take_a_picture_further_from_the_references_than_it_was():
    """Colouring a collapsed patch clears the damage classifier's flag but takes
    it further from every reference (refused); colouring a greyed one brings it
    nearer (allowed). A candidate with no such detector is never refused so."""
    assert set(NO_FURTHER) <= set(CANDIDATES)
    assert set(NO_FURTHER.values()) <= set(DETECTORS)

    def scores(embedding: list[float]) -> ScoreBatch:
        z = {"embedding": torch.tensor(embedding)}
        return ScoreBatch(raw=z, z=z, score=z["embedding"], threshold=3.3)

    before, after = scores([0.7, 0.3]), scores([2.2, -0.2])  # a collapse, then a greyed patch
    assert moved_further("resaturate", before, 0, after, 0)
    assert not moved_further("resaturate", before, 1, after, 1)
    assert not moved_further("denoise", before, 0, after, 0)


def test_a_fix_has_answered_its_faults_when_their_detectors_are_under_the_threshold():
    z = {
        "noise": torch.tensor([1.0, 4.0]),
        "colour_noise": torch.tensor([2.0, 1.0]),
        "reference_colour": torch.tensor([3.4, 0.0]),  # flagged, but not the denoiser's fault
    }
    after = ScoreBatch(raw=z, z=z, score=torch.tensor([3.4, 4.0]), threshold=3.3)
    assert answered_faults_gone("denoise", after, 0)
    assert not answered_faults_gone("denoise", after, 1)


def test_a_sharpening_fix_may_not_bring_out_noise_or_grid_steps():
    """A dark, unblurred patch that reads as blurred: deblurring it clears the
    blur reason but raises blocking from 0.0 to 3.3 (refused); on a blurred
    patch blocking rises a little and stays low (allowed)."""
    assert set(BRINGS_OUT) <= set(CANDIDATES)
    assert all(set(v) <= set(DETECTORS) for v in BRINGS_OUT.values())

    def scores(blur: list[float], blocking: list[float]) -> ScoreBatch:
        z = {"blur": torch.tensor(blur), "blocking": torch.tensor(blocking)}
        return ScoreBatch(raw=z, z=z, score=torch.tensor(blur), threshold=3.3)

    before = scores([3.6, 4.5, 3.6], [0.0, 0.2, 3.0])
    after = scores([-0.5, 0.8, 0.5], [3.3, 1.0, 3.5])
    assert brings_out("deblur", before, 0, after, 0)
    assert not brings_out("deblur", before, 1, after, 1)
    assert not brings_out("deblur", before, 2, after, 2)  # already there: not brought out
    assert not brings_out("denoise", before, 0, after, 0)  # smoothing brings out no steps


def test_only_a_visible_change_counts_as_a_correction(photo_patches):
    """A level or two of change (about 48 dB) is no repair, however it moves
    the score; denoising a noisy patch (under 30 dB) is."""
    clean = torch.stack([to_tensor(p) for p in photo_patches[:2]])
    one_level = (clean + 1.0 / 255.0).clamp(0.0, 1.0)
    noisy = inject.inject(clean, "noise", 0.7, seed=0)
    assert not changed_visibly(clean, one_level).any()
    assert not changed_visibly(clean, clean).any()
    assert changed_visibly(noisy, denoise(noisy)).all()
    # each image is judged on its own: one visible change among invisible ones
    mixed = torch.stack([one_level[0], denoise(noisy)[1]])
    assert changed_visibly(torch.stack([clean[0], noisy[1]]), mixed).tolist() == [False, True]
