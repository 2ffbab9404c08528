"""``stylefix train ...``: style, detector, corrector and the default bundle.

This is a command line, so it prints its result; training itself logs progress.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

import torch

from stylefix_core.bundle import Manifest, load_bundle
from stylefix_core.device import resolve_device
from stylefix_core.training.bundle_training import (
    BundleTrainConfig,
    retrain_corrector,
    retrain_detector,
    train_bundle,
)
from stylefix_core.training.checkpoint import CheckpointMismatch
from stylefix_core.training.corrector import CorrectorTrainConfig
from stylefix_core.training.data import load_images
from stylefix_core.training.detector import DetectorTrainConfig


def _rate(text: str) -> float:
    """A false-positive target strictly between 0 and 1, as a bundle must hold."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive)")
    return value


def _where(parser: argparse.ArgumentParser) -> None:
    """Where to write and run, and where to keep state for resuming: every command."""
    parser.add_argument("--out", required=True, help="bundle folder URL to write")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--checkpoint-dir", default="", help="save training state here; a rerun resumes from it"
    )


def _knobs(parser: argparse.ArgumentParser) -> None:
    """Seed, length and data size: not for ``default``, whose recipe is fixed."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="steps of the style networks (style), the autoencoder (detector) or the "
        "corrector (corrector); 0: each one's default",
    )
    parser.add_argument("--max-images", type=int, default=0, help="0: every image of the URL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylefix train")
    sub = parser.add_subparsers(dest="what", required=True)
    style = sub.add_parser(
        "style", help="a new bundle: style generator and discriminator, then detector and corrector"
    )
    style.add_argument("--content", required=True, help="content images: shard URL, glob or folder")
    style.add_argument(
        "--style", required=True, help="style example images (one or several): URL, glob or folder"
    )
    style.add_argument("--name", default="custom", help="the style's name in the bundle")
    detector = sub.add_parser(
        "detector", help="autoencoder, reference set and calibration from good images"
    )
    corrector = sub.add_parser(
        "corrector", help="residual corrector from anomalies injected into good images"
    )
    for p in (detector, corrector):
        p.add_argument(
            "--bundle", default="", help="bundle to start from (default: the shipped one)"
        )
        p.add_argument("--reference", required=True, help="good images: shard URL, glob or folder")
    detector.add_argument(
        "--fpr",
        type=_rate,
        default=0.01,
        help="target false-positive rate on reference images the detectors never saw",
    )
    default = sub.add_parser("default", help="retrain the shipped default bundle")
    default.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the default step counts"
    )
    default.set_defaults(seed=0)
    for p in (style, detector, corrector, default):
        _where(p)
    for p in (style, detector, corrector):
        _knobs(p)
    for p in (style, detector):
        p.add_argument(
            "--pixel-steps",
            type=int,
            default=0,
            help="steps of the pixel damage classifier, fitted three times for the "
            "calibration (0: its default, about 2 min 20 s a fit on 2 CPU cores)",
        )
    return parser


def _train_style(args: argparse.Namespace, device: torch.device) -> Manifest:
    content = load_images(args.content, args.max_images)
    style = load_images(args.style)
    cfg = BundleTrainConfig(name=f"stylefix-{args.name}", style_name=args.name, seed=args.seed)
    if args.steps:
        cfg = replace(cfg, style=replace(cfg.style, steps=args.steps))
    cfg = replace(cfg, style=replace(cfg.style, seed=args.seed))
    cfg = replace(cfg, detector=_with_pixel_steps(cfg.detector, args.pixel_steps))
    return train_bundle(content, style, args.out, cfg, device, checkpoint_dir=args.checkpoint_dir)


def _train_detector(args: argparse.Namespace, device: torch.device) -> Manifest:
    cfg = DetectorTrainConfig(seed=args.seed, target_false_positive_rate=args.fpr)
    cfg = _with_pixel_steps(replace(cfg, steps=args.steps or cfg.steps), args.pixel_steps)
    return retrain_detector(
        load_bundle(args.bundle),
        load_images(args.reference, args.max_images),
        args.out,
        cfg,
        device,
        checkpoint_dir=args.checkpoint_dir,
    )


def _with_pixel_steps(cfg: DetectorTrainConfig, steps: int) -> DetectorTrainConfig:
    return replace(cfg, pixel=replace(cfg.pixel, steps=steps)) if steps else cfg


def _train_corrector(args: argparse.Namespace, device: torch.device) -> Manifest:
    cfg = CorrectorTrainConfig(seed=args.seed)
    cfg = replace(cfg, steps=args.steps or cfg.steps)
    return retrain_corrector(
        load_bundle(args.bundle),
        load_images(args.reference, args.max_images),
        args.out,
        cfg,
        device,
        checkpoint_dir=args.checkpoint_dir,
    )


def _train_default(args: argparse.Namespace, device: torch.device) -> Manifest:
    from stylefix_core.training.default import train_default

    return train_default(
        args.out, scale=args.scale, device=str(device), checkpoint_dir=args.checkpoint_dir
    )


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    run = {
        "style": _train_style,
        "detector": _train_detector,
        "corrector": _train_corrector,
        "default": _train_default,
    }
    try:
        manifest = run[args.what](args, device)
    except CheckpointMismatch as exc:
        print(f"stylefix train: {exc}", file=sys.stderr)
        return 2
    cal = manifest.calibration
    print(
        f"wrote bundle {manifest.version} ({manifest.style}) to {args.out}: threshold {cal.threshold:.3f} "
        f"for a {cal.target_false_positive_rate:.1%} false-positive target "
        f"(reference images scored out of sample: {cal.measured_false_positive_rate:.1%})"
    )
    return 0
