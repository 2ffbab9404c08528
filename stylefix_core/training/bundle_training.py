"""Train every network of a bundle, calibrate, and write it complete."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from stylefix_core import __version__, colour
from stylefix_core.bundle import (
    DETECTOR_NAMES,
    STATISTICS_REVISION,
    Bundle,
    Manifest,
    ModelEntry,
    save_bundle,
)
from stylefix_core.io import storage
from stylefix_core.training import RECIPE_REVISION
from stylefix_core.training.checkpoint import Checkpoint
from stylefix_core.training.corrector import CorrectorTrainConfig, train_corrector
from stylefix_core.training.data import fingerprint
from stylefix_core.training.detector import (
    THRESHOLD_METHOD,
    DetectorTrainConfig,
    calibrate,
    cross_fit,
    reencoded,
    train_detectors,
)
from stylefix_core.training.style import StyleTrainConfig, train_style

log = logging.getLogger(__name__)


def _recipe() -> str:
    """Part of every bundle version: the same data and settings calibrated for
    a different set of detectors, other definitions of them, another way of
    setting the threshold or trained by another recipe is a different bundle."""
    calibrated = repr(DETECTOR_NAMES) + f"r{STATISTICS_REVISION}" + THRESHOLD_METHOD
    return calibrated + f"/recipe{RECIPE_REVISION}"


# Share of the reference images a detector is calibrated on rather than fitted to.
DETECTOR_HELD_OUT = 0.33


@dataclass(frozen=True)
class BundleTrainConfig:
    name: str = "stylefix-default"
    style_name: str = "riso"
    seed: int = 0
    held_out_fraction: float = 0.33
    style: StyleTrainConfig = field(default_factory=StyleTrainConfig)
    detector: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)
    corrector: CorrectorTrainConfig = field(default_factory=CorrectorTrainConfig)


def _apply(
    network: torch.nn.Module, images: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [network(img[None].to(device))[0].cpu().clone() for img in images]


def _checkpoint(folder: str, stage: str, data: list[torch.Tensor], settings: object) -> Checkpoint:
    """The stage's checkpoint in ``folder``, for exactly this data and these settings."""
    if not folder:
        return Checkpoint()
    identity = fingerprint(data, extra=f"{stage}:{settings!r}:recipe{RECIPE_REVISION}")
    return Checkpoint(storage.join(folder, f"{stage}.pt"), identity=identity)


def train_bundle(
    content: list[torch.Tensor],
    style: list[torch.Tensor],
    out_url: str,
    cfg: BundleTrainConfig,
    device: torch.device,
    checkpoint_dir: str = "",
) -> Manifest:
    """Style first, then the detector and corrector on the generator's own outputs.

    The reference set of "good" images is the trained generator applied to
    clean content, which is exactly what a healthy style-mode run produces;
    the held-out content's outputs, and the fitted ones scored by cross-fitted
    detectors (``cross_fit``), are the calibration images for both modes.
    """
    started = time.monotonic()
    split = max(1, int(len(content) * (1 - cfg.held_out_fraction)))
    fit_content, held_content = content[:split], content[split:]
    styled = train_style(
        fit_content,
        style,
        cfg.style,
        device,
        _checkpoint(checkpoint_dir, "style", fit_content + style, cfg.style),
    )
    reference = _apply(styled.generator, fit_content, device)
    held_reference = _apply(styled.generator, held_content, device)
    with torch.inference_mode():
        shift = torch.cat(
            [
                colour.colour_stats(r[None]) - colour.colour_stats(c[None])
                for r, c in zip(reference, fit_content, strict=True)
            ]
        )
    jpeg_fit = _apply(styled.generator, reencoded(fit_content, cfg.detector), device)
    jpeg_held = _apply(styled.generator, reencoded(held_content, cfg.detector), device)
    detectors = train_detectors(
        reference,
        jpeg_fit,
        cfg.detector,
        device,
        # named by what the styled references come from: on a GPU the
        # generator's low bits may differ between a run and its resumption
        _checkpoint(
            checkpoint_dir,
            "autoencoder",
            fit_content + style,
            (cfg.style, cfg.detector.autoencoder_settings()),
        ),
    )
    corrector = train_corrector(
        reference,
        cfg.corrector,
        device,
        _checkpoint(checkpoint_dir, "corrector", fit_content + style, (cfg.style, cfg.corrector)),
    )

    def both_modes(images: list[torch.Tensor], contents: list[torch.Tensor]) -> list:
        return [*zip(images, contents, strict=True), *((r, None) for r in images)]

    folds = cross_fit(reference, jpeg_fit, held_reference, jpeg_held, cfg.detector, device)
    calibration = calibrate(
        detectors,
        styled.discriminator,
        reference,
        both_modes(held_reference, held_content),
        shift.mean(0).tolist(),
        cfg.detector.target_false_positive_rate,
        device,
        cross_fitted=[
            (fitted, both_modes([reference[i] for i in idx], [fit_content[i] for i in idx]))
            for fitted, idx in folds
        ],
    )
    data_fingerprint = training_fingerprint(content, style, cfg)
    networks = {
        "generator": styled.generator,
        "discriminator": styled.discriminator,
        "autoencoder": detectors.autoencoder,
        "embedding": detectors.embedding,
        "corrector": corrector,
        "damage": detectors.damage,
        "pixel_damage": detectors.pixel_damage,
    }
    manifest = Manifest(
        name=cfg.name,
        style=cfg.style_name,
        version=version_name(cfg.style_name, data_fingerprint),
        training_data_fingerprint=data_fingerprint,
        models={role: _entry_for(role, net) for role, net in networks.items()},
        calibration=calibration,
        created_by=f"stylefix {__version__}",
        training={
            "config": asdict(cfg),
            "content_images": len(content),
            "style_images": len(style),
            "final_losses": styled.history[-1] if styled.history else {},
            "seconds": round(time.monotonic() - started, 1),
            "device": str(device),
        },
    )
    return save_bundle(out_url, manifest, networks)


def training_fingerprint(
    content: list[torch.Tensor], style: list[torch.Tensor], cfg: BundleTrainConfig
) -> str:
    """What a new bundle's version names: the exact training images, every
    setting, and how it is trained and calibrated (``_recipe``)."""
    return fingerprint(content + style, extra=repr(asdict(cfg)) + _recipe())


def version_name(style: str, data_fingerprint: str) -> str:
    return f"{style}-{data_fingerprint[7:19]}"


def split_reference(images: list[torch.Tensor], seed: int = 0) -> tuple[list, list]:
    """The reference images a detector is fitted to, and those it is calibrated on."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, int(len(images) * (1 - DETECTOR_HELD_OUT)))
    return [images[i] for i in order[:cut]], [images[i] for i in order[cut:]]


def _save_updated(
    bundle: Bundle, out_url: str, networks: dict, calibration, data: list[torch.Tensor], note: dict
) -> Manifest:
    old = bundle.manifest
    data_fingerprint = fingerprint(
        data, extra=old.training_data_fingerprint + repr(note) + _recipe()
    )
    manifest = Manifest(
        **{
            **old.__dict__,
            "version": version_name(old.style, data_fingerprint),
            "training_data_fingerprint": data_fingerprint,
            "calibration": calibration,
            "models": {
                **old.models,
                **{role: _entry_for(role, net) for role, net in networks.items()},
            },
            "training": {**old.training, **note},
        }
    )
    return save_bundle(out_url, manifest, {**bundle.networks(), **networks})


def _entry_for(role: str, network: torch.nn.Module) -> ModelEntry:
    return ModelEntry(
        type(network).__name__, dict(network.hyper_parameters), f"{role}.safetensors", ""
    )


def retrain_detector(
    bundle: Bundle,
    reference: list[torch.Tensor],
    out_url: str,
    cfg: DetectorTrainConfig,
    device: torch.device,
    checkpoint_dir: str = "",
) -> Manifest:
    """Autoencoder, reference embedding and calibration from a catalog owner's
    reference set of good images (qa mode); the generator, discriminator and
    corrector are kept. ``checkpoint_dir`` resumes the shipped autoencoder,
    as ``train_bundle`` does; the cross-fitted ones are trained again."""
    fit, held = split_reference(reference, cfg.seed)
    fit_clean, held_clean = reencoded(fit, cfg), reencoded(held, cfg)
    detectors = train_detectors(
        fit,
        fit_clean,
        cfg,
        device,
        _checkpoint(checkpoint_dir, "autoencoder", fit, cfg.autoencoder_settings()),
    )
    folds = cross_fit(fit, fit_clean, held, held_clean, cfg, device)
    calibration = calibrate(
        detectors,
        bundle.discriminator.to(device),
        fit,
        [(r, None) for r in held],
        list(bundle.manifest.calibration.style_shift),
        cfg.target_false_positive_rate,
        device,
        cross_fitted=[(fitted, [(fit[i], None) for i in idx]) for fitted, idx in folds],
    )
    note = {"detector": {"config": asdict(cfg), "reference_images": len(reference)}}
    networks = {
        "autoencoder": detectors.autoencoder,
        "embedding": detectors.embedding,
        "damage": detectors.damage,
        "pixel_damage": detectors.pixel_damage,
    }
    return _save_updated(bundle, out_url, networks, calibration, reference, note)


def retrain_corrector(
    bundle: Bundle,
    reference: list[torch.Tensor],
    out_url: str,
    cfg: CorrectorTrainConfig,
    device: torch.device,
    checkpoint_dir: str = "",
) -> Manifest:
    """The residual corrector from anomalies injected into reference images."""
    checkpoint = _checkpoint(checkpoint_dir, "corrector", reference, cfg)
    corrector = train_corrector(reference, cfg, device, checkpoint)
    note = {"corrector": {"config": asdict(cfg), "reference_images": len(reference)}}
    return _save_updated(
        bundle, out_url, {"corrector": corrector}, bundle.manifest.calibration, reference, note
    )
