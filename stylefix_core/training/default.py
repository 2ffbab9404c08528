"""The default bundle: riso style, trained on generated catalog assets.

``make train-default`` runs :func:`train_default`; the result is committed in
``stylefix_core/default_bundle`` so that ``make run`` works on a fresh clone.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from stylefix_core.bundle import Manifest
from stylefix_core.synthetic import make_assets
from stylefix_core.training.bundle_training import BundleTrainConfig, train_bundle
from stylefix_core.training.data import to_tensor
from stylefix_core.training.style_images import make_style_images

CONTENT_SIZES = [(128, 128), (96, 128), (128, 96), (160, 128)]


def default_config(scale: float = 1.0) -> BundleTrainConfig:
    """The settings of the shipped bundle; ``scale`` shrinks step counts for quick checks."""
    cfg = BundleTrainConfig()
    return replace(
        cfg,
        style=replace(cfg.style, steps=max(2, int(cfg.style.steps * scale))),
        detector=cfg.detector.scaled(scale),
        corrector=replace(cfg.corrector, steps=max(2, int(cfg.corrector.steps * scale))),
    )


def default_images(n_content: int = 240) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The generated content images and the riso style images it is trained on."""
    content = [to_tensor(a) for a in make_assets(seed=1234, n=n_content, sizes=CONTENT_SIZES)]
    return content, [to_tensor(s) for s in make_style_images("riso")]


def train_default(
    out_url: str,
    scale: float = 1.0,
    n_content: int = 240,
    device: str = "cpu",
    checkpoint_dir: str = "",
) -> Manifest:
    content, style = default_images(n_content)
    return train_bundle(
        content, style, out_url, default_config(scale), torch.device(device), checkpoint_dir
    )
