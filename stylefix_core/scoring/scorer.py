"""One anomaly score per image from learned and classical detectors.

Each detector gives a raw value (higher is worse); the bundle's calibration
turns it into a robust z-score against reference images the detectors never
saw; the image's anomaly score is the largest z, and ``reasons`` are the
detectors above the threshold. Taking the maximum keeps every detector's
false-positive budget visible in one threshold, and makes "flagged" and "has
a reason" the same. The fault statistics that the signature classifier also
reads share one budget between them (``training.detector.SHARED_BUDGET``),
folded into their calibrations, so the scorer reads every detector alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stylefix_core import colour
from stylefix_core.bundle import DETECTOR_NAMES, Bundle, Calibration, require_current_statistics
from stylefix_core.models.reference_knn import KnnReading
from stylefix_core.scoring import features
from stylefix_core.scoring.signature import signature

DETECTORS = DETECTOR_NAMES
# Detectors with learned parts; the rest are image statistics, which alone
# make the classical baseline of the quality benchmark.
LEARNED_DETECTORS = (
    "embedding",
    "reference_colour",
    "autoencoder",
    "discriminator",
    "damage",
    "pixel_damage",
)
STATISTIC_DETECTORS = tuple(d for d in DETECTORS if d not in LEARNED_DETECTORS)
# The name a person reads in the report's ``reasons`` column, per detector.
REASONS = {
    "embedding": "unlike_reference",
    "reference_colour": "colours_unlike_reference",
    "autoencoder": "poor_reconstruction",
    "discriminator": "off_style",
    "colour": "colour_distortion",
    "texture": "texture_loss",
    "blur": "blur",
    "noise": "noise",
    "colour_noise": "colour_noise",
    "checkerboard": "checkerboard",
    "blocking": "blocking",
    "quantisation": "banding",
    "collapse": "collapse",
    "falloff": "vignetting",
    "damage": "looks_damaged",
    "pixel_damage": "pixels_look_damaged",
}


# Detectors that run a network under the engine's float16 autocast on CUDA; the
# rest are statistics (and the damage classifiers), computed with autocast off:
# their calibration was fitted in float32, and a local variance taken as a
# difference of float16 means is noise in flat areas (the pixel classifier
# reads a high-pass of the image). Its convolutions may still use TF32 on a
# GPU, which moved its logits by under 0.01 in a simulation on the CPU.
NETWORK_DETECTORS = frozenset({"embedding", "reference_colour", "autoencoder", "discriminator"})


# How likely, if the image is damaged, the kind the pixel classifier names
# must be for its flag to name it: twice as likely as all the others
# together. At even odds it named 3 desaturated patches of one split of the
# quality benchmark blurred (at 0.51 to 0.64), and sharpened they lost 1.7 to
# 2.7 dB; of the 71 blurred patches it named, 8 were under two to one
# (docs/quality.md).
NAMING_CONFIDENCE = 2.0 / 3.0


def named_reason(kind: str) -> str:
    """The reason a pixel classifier's flag gives when it names ``kind``."""
    return f"pixels_look_like_{kind}"


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a batch of N images; every tensor has shape (N,) on the CPU,
    but ``kind_probabilities``: (N, K) for the K ``kinds`` the pixel
    classifier names, if it names any, and ``aims``."""

    raw: dict[str, torch.Tensor]
    z: dict[str, torch.Tensor]
    score: torch.Tensor
    threshold: float
    kinds: tuple[str, ...] = ()
    kind_probabilities: torch.Tensor | None = None
    # (N, K, 6) the colour statistics the images were read against (``Scorer.read``):
    # a fix aims there, and is rescored against the same.
    aims: torch.Tensor | None = None

    def reasons(self, index: int) -> list[str]:
        """The flagging detectors' reasons, then the kind of damage the pixel
        classifier names, where it flags the image and names one."""
        flagged = [
            REASONS[d]
            for d in DETECTORS
            if d in self.z and float(self.z[d][index]) > self.threshold
        ]
        kind = self.named_kind(index)
        return flagged + [named_reason(kind)] if kind else flagged

    def named_kind(self, index: int) -> str:
        """The kind of damage the pixel classifier sees in the image, if it
        flags it and names one with ``NAMING_CONFIDENCE``; else ""."""
        if self.kind_probabilities is None or "pixel_damage" not in self.z:
            return ""
        if float(self.z["pixel_damage"][index]) <= self.threshold:
            return ""
        probability, best = self.kind_probabilities[index].max(dim=0)
        return self.kinds[int(best)] if float(probability) >= NAMING_CONFIDENCE else ""


@dataclass(frozen=True)
class Reading:
    """Raw detector values (N,) each, on the device read on; the colour aims
    (N, K, 6) read against; the pixel classifier's (N, K) probabilities of the
    kinds it names, None if it names none or is not used."""

    raw: dict[str, torch.Tensor]
    aims: torch.Tensor
    kind_probabilities: torch.Tensor | None


def normalise(raw: dict[str, torch.Tensor], detectors: dict) -> dict[str, torch.Tensor]:
    """Calibrated z per detector (CPU tensors): higher is worse for every one.

    The discriminator too is read on one side only: an image it accepts
    more readily than the references looks more like the style, which is
    no fault. Read both ways, on the quality benchmark's clean test patches
    (three splits, 576) the accepting side went beyond z 3 four times and
    ranked none of the 13 kinds of damage higher (docs/quality.md).
    """
    return {d: (raw[d].cpu() - detectors[d].center) / detectors[d].scale for d in raw}


class Scorer:
    """Scores images with the bundle's learned detectors plus image statistics."""

    def __init__(
        self,
        autoencoder: nn.Module,
        discriminator: nn.Module,
        embedding: nn.Module,  # a ReferenceKnn: its ``distances`` serve two detectors
        calibration: Calibration,
        damage: nn.Module | None = None,  # a DamageClassifier of signatures
        pixel_damage: nn.Module | None = None,  # a PixelDamageClassifier
    ):
        self.autoencoder = autoencoder
        self.discriminator = discriminator
        self.embedding = embedding
        self.damage = damage
        self.pixel_damage = pixel_damage
        require_current_statistics(calibration)
        self.calibration = calibration
        # The calibration names the detectors in use: a bundle has all of them,
        # the classical baseline of the quality benchmark only the statistics.
        self.detectors = tuple(d for d in DETECTORS if d in calibration.detectors)
        # The kinds of damage the pixel classifier names (none for older bundles).
        self.kinds: tuple[str, ...] = tuple(getattr(pixel_damage, "kinds", ()))

    @classmethod
    def for_bundle(cls, bundle: Bundle) -> Scorer:
        return cls(
            bundle.autoencoder,
            bundle.discriminator,
            bundle.embedding,
            bundle.manifest.calibration,
            bundle.damage,
            bundle.pixel_damage,
        )

    def style_aims(self, content: torch.Tensor) -> torch.Tensor:
        """(N, 1, 6) where the colour statistics of content images styled
        should sit: the content's, moved by the style's typical shift."""
        with torch.autocast(content.device.type, enabled=False):  # a statistic: float32
            stats = colour.colour_stats(content.float())
        return (stats + torch.tensor(self.calibration.style_shift, device=content.device))[:, None]

    def raw(self, x: torch.Tensor, aims: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Raw values of the calibrated detectors, float32, shape (N,) each, on x's device."""
        return self.read(x, aims).raw

    def read(self, x: torch.Tensor, aims: torch.Tensor | None = None) -> Reading:
        """Every detector's raw value, the colours read against and the kinds named.

        ``aims`` (N, K, 6) are the colour statistics each image could have:
        ``style_aims`` in style mode, or the aims of an earlier reading when
        a fix is rescored. Without them (qa mode) they are the colours of the
        image's K nearest references, or the reference set's average where
        the scorer has no reference embedding (the classical baseline of the
        quality benchmark). Not the average alone: a catalog has pictures of
        every colour, and moving a blue sky towards the average of all
        references turns it pink (on the quality benchmark that cost one
        banded sky 11 dB, and aiming at the nearest references 0.5 dB); read
        against the average, a clean picture of a blue sky can look cast.
        """
        x_net, x = x, x.float()
        spread = torch.tensor(self.calibration.reference_spread, device=x.device)
        knn: list[KnnReading] = []  # one pass over the references serves three readings

        def nearest() -> KnnReading:
            if not knn:
                knn.append(self.embedding.read(x))
            return knn[0]

        def colour_aims() -> torch.Tensor:
            if aims is not None:
                return aims
            if "embedding" in self.detectors:
                return nearest().neighbour_colours.float()
            average = torch.tensor(self.calibration.reference_stats, device=x.device)
            return average.expand(x.shape[0], 1, -1)

        kinds: list[torch.Tensor] = []  # the pixel classifier's naming, from the same pass

        def pixel_reading() -> torch.Tensor:
            logit, probabilities = self.pixel_damage.read(x)
            kinds.append(probabilities.float())
            return logit.float()

        compute = {
            "embedding": lambda: torch.log(nearest().distance + 1e-4),
            "reference_colour": lambda: torch.log(nearest().colour_distance + 1e-4),
            "autoencoder": lambda: torch.log(
                ((self.autoencoder(x_net).float() - x) ** 2).mean(dim=(1, 2, 3)) + 1e-6
            ),
            "discriminator": lambda: -self.discriminator(x_net).float().mean(dim=(1, 2, 3)),
            "colour": lambda: features.colour_distance(
                colour.colour_stats(x), colour_aims(), spread
            ),
            "texture": lambda: features.texture_loss(x),
            "blur": lambda: features.blur(x),
            "noise": lambda: features.noise_level(x),
            "colour_noise": lambda: features.colour_noise_level(x),
            "checkerboard": lambda: features.checkerboard(x),
            "blocking": lambda: features.blocking(x),
            "quantisation": lambda: features.quantisation(x),
            "collapse": lambda: features.collapse(x),
            "falloff": lambda: features.falloff(x),
            # after the statistics in DETECTORS, so it reuses their values
            "damage": lambda: self.damage(signature(x, values)).float(),
            "pixel_damage": pixel_reading,
        }
        values: dict[str, torch.Tensor] = {}
        for d in self.detectors:
            if d in NETWORK_DETECTORS:
                values[d] = compute[d]()
                continue
            with torch.autocast(x.device.type, enabled=False):
                values[d] = compute[d]()
        named = kinds[0] if kinds and self.kinds else None
        return Reading(values, colour_aims(), named)

    def normalise(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return normalise(raw, self.calibration.detectors)

    def __call__(self, x: torch.Tensor, aims: torch.Tensor | None = None) -> ScoreBatch:
        """Scores of ``x`` read against colour ``aims`` (see ``read``)."""
        reading = self.read(x, aims)
        raw, kind_probabilities = reading.raw, reading.kind_probabilities
        z = self.normalise(raw)
        score = torch.stack([z[d] for d in self.detectors], dim=1).amax(dim=1)
        return ScoreBatch(
            raw={d: v.cpu() for d, v in raw.items()},
            z=z,
            score=score,
            threshold=self.calibration.threshold,
            kinds=self.kinds,
            kind_probabilities=None if kind_probabilities is None else kind_probabilities.cpu(),
            aims=reading.aims.float().cpu(),
        )
