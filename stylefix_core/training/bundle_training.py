"""Train all four networks, calibrate, and write a complete bundle."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from stylefix_core import __version__
from stylefix_core.bundle import Manifest, ModelEntry, save_bundle
from stylefix_core.scoring import features
from stylefix_core.training.corrector import CorrectorTrainConfig, train_corrector
from stylefix_core.training.data import fingerprint
from stylefix_core.training.detector import DetectorTrainConfig, calibrate, train_autoencoder
from stylefix_core.training.style import StyleTrainConfig, train_style

log = logging.getLogger(__name__)


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


def train_bundle(
    content: list[torch.Tensor],
    style: list[torch.Tensor],
    out_url: str,
    cfg: BundleTrainConfig,
    device: torch.device,
) -> Manifest:
    """Style first, then the detector and corrector on the generator's own outputs.

    The reference set of "good" images is the trained generator applied to
    clean content, which is exactly what a healthy style-mode run produces;
    held-out content gives the calibration images for both modes.
    """
    started = time.monotonic()
    split = max(1, int(len(content) * (1 - cfg.held_out_fraction)))
    fit_content, held_content = content[:split], content[split:]
    styled = train_style(fit_content, style, cfg.style, device)
    reference = _apply(styled.generator, fit_content, device)
    held_reference = _apply(styled.generator, held_content, device)
    with torch.inference_mode():
        shift = torch.cat(
            [
                features.colour_stats(r[None]) - features.colour_stats(c[None])
                for r, c in zip(reference, fit_content, strict=True)
            ]
        )
    autoencoder = train_autoencoder(reference, cfg.detector, device)
    corrector = train_corrector(reference, cfg.corrector, device)
    held_out = [(r, c) for r, c in zip(held_reference, held_content, strict=True)] + [
        (r, None) for r in held_reference
    ]
    calibration = calibrate(
        autoencoder,
        styled.discriminator,
        reference,
        held_out,
        shift.mean(0).tolist(),
        cfg.detector.target_false_positive_rate,
        device,
    )
    data_fingerprint = fingerprint(content + style, extra=repr(asdict(cfg)))
    manifest = Manifest(
        name=cfg.name,
        style=cfg.style_name,
        version=f"{cfg.style_name}-{data_fingerprint[7:19]}",
        training_data_fingerprint=data_fingerprint,
        models=_model_entries(cfg),
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
    networks = {
        "generator": styled.generator,
        "discriminator": styled.discriminator,
        "autoencoder": autoencoder,
        "corrector": corrector,
    }
    return save_bundle(out_url, manifest, networks)


def _model_entries(cfg: BundleTrainConfig) -> dict[str, ModelEntry]:
    return {
        "generator": ModelEntry(
            "StyleGenerator",
            {"base_channels": cfg.style.base_channels, "n_residual": cfg.style.n_residual},
            "generator.safetensors",
            "",
        ),
        "discriminator": ModelEntry(
            "PatchDiscriminator",
            {"base_channels": cfg.style.base_channels},
            "discriminator.safetensors",
            "",
        ),
        "autoencoder": ModelEntry(
            "ConvAutoencoder",
            {
                "base_channels": cfg.detector.base_channels,
                "latent_channels": cfg.detector.latent_channels,
            },
            "autoencoder.safetensors",
            "",
        ),
        "corrector": ModelEntry(
            "ResidualCorrector", {"channels": cfg.corrector.channels}, "corrector.safetensors", ""
        ),
    }
