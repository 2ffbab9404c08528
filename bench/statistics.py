"""``python -m bench.statistics``: how well each detector alone tells each kind from clean.

The quality benchmark judges the combined score; before a detector changes,
what matters is how its raw value ranks damaged patches of each kind against
clean ones, and what share of them lies above the clean patches' 99th
percentile (roughly what a calibrated maximum at a 1 % false-positive target
can flag). Same photographs, injections and first split as ``make eval``; raw values
need no calibration. The reference embedding and the damage classifiers are fitted to the part
of the benchmark's reference patches that ``make eval`` fits them to (the pixel
classifier about two minutes, the rest seconds); the autoencoder and
discriminator are the default bundle's as shipped. Takes about three minutes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from stylefix_core.bundle import load_bundle
from stylefix_core.device import to_batch
from stylefix_core.evaluation.dataset import EvalConfig, TestImage, build_eval_set
from stylefix_core.evaluation.metrics import auroc
from stylefix_core.scoring.scorer import Scorer
from stylefix_core.training.bundle_training import split_reference
from stylefix_core.training.data import to_tensor
from stylefix_core.training.detector import (
    DetectorTrainConfig,
    fit_embedding,
    reencoded,
    train_damage_classifier,
)
from stylefix_core.training.pixel_damage import train_pixel_damage_classifier

CPU = torch.device("cpu")


def raw_values(scorer: Scorer, items: list[TestImage]) -> dict[str, np.ndarray]:
    """Each detector's raw value per image (qa mode colour target)."""
    with torch.inference_mode():
        x = to_batch([t.image for t in items], CPU)
        raw = scorer.raw(x)
    return {d: v.cpu().numpy() for d, v in raw.items()}


def separation(clean: np.ndarray, damaged: np.ndarray) -> tuple[float, float]:
    """AUROC, and the share of ``damaged`` above the 99th percentile of ``clean``."""
    labels = np.r_[np.zeros(len(clean)), np.ones(len(damaged))]
    share = float((damaged > np.quantile(clean, 0.99)).mean())
    return auroc(np.r_[clean, damaged], labels), share


def table(per_kind: int, cfg: DetectorTrainConfig | None = None) -> str:
    """``cfg`` trains the damage classifiers (default: as ``make eval`` does)."""
    cfg = cfg or DetectorTrainConfig()
    eval_set = build_eval_set(EvalConfig(per_kind=per_kind))
    bundle = load_bundle("")
    fit, _ = split_reference([to_tensor(r) for r in eval_set.reference])
    embedding = fit_embedding(fit, CPU)
    jpeg = reencoded(fit, cfg)
    scorer = Scorer(
        bundle.autoencoder,
        bundle.discriminator,
        embedding,
        bundle.manifest.calibration,
        train_damage_classifier(fit, cfg, CPU, jpeg),
        train_pixel_damage_classifier(fit, jpeg, cfg.pixel, CPU, cfg.seed),
    )
    clean = raw_values(scorer, [t for t in eval_set.test if t.kind == "clean"])
    kinds = sorted({t.kind for t in eval_set.test} - {"clean"})
    lines = [
        "AUROC / share above the clean 99th percentile, per detector alone",
        "",
        "| kind | " + " | ".join(scorer.detectors) + " |",
        "| --- |" + " --- |" * len(scorer.detectors),
    ]
    for kind in kinds:
        damaged = raw_values(scorer, [t for t in eval_set.test if t.kind == kind])
        cells = [separation(clean[d], damaged[d]) for d in scorer.detectors]
        lines.append(f"| {kind} | " + " | ".join(f"{a:.2f} / {s:.2f}" for a, s in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statistics", description=__doc__)
    parser.add_argument("--per-kind", type=int, default=80, help="damaged test images per kind")
    args = parser.parse_args(argv)
    print(table(args.per_kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
