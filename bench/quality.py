"""``make eval``: how well StyleFix finds and fixes anomalies in real photographs.

Trains the detector and corrector on reference patches, runs the real Beam
job in qa mode over test shards with injected anomalies, and prints detection
and restoration figures for StyleFix and, from the same data, for a classical
baseline that uses image statistics only. It does so for several random
splits of the photographs into reference and test patches, and sums them up:
with a few hundred patches one split moves a kind's AUROC by several
hundredths and the false-positive rate by several points.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipelines.main import run
from stylefix_core import inject
from stylefix_core.bundle import Calibration, load_bundle
from stylefix_core.config import Limits
from stylefix_core.correction import CANDIDATES, choose_corrections
from stylefix_core.correction import LEARNED as WITH_RESIDUAL
from stylefix_core.device import to_batch, to_pixels
from stylefix_core.evaluation.dataset import (
    EvalConfig,
    EvalSet,
    TestImage,
    build_eval_set,
    write_test_shards,
)
from stylefix_core.evaluation.metrics import auroc, psnr, ssim
from stylefix_core.imaging import decode_image
from stylefix_core.scoring.scorer import STATISTIC_DETECTORS, Scorer
from stylefix_core.training.bundle_training import (
    retrain_corrector,
    retrain_detector,
    split_reference,
)
from stylefix_core.training.corrector import CorrectorTrainConfig
from stylefix_core.training.data import to_tensor
from stylefix_core.training.detector import Detectors, DetectorTrainConfig, calibrate

STATISTICS = STATISTIC_DETECTORS
CORRECTABLE = ("colour_cast", "noise", "jpeg_blocking", "checkerboard", "blur")
CPU = torch.device("cpu")
LEARNED = "StyleFix (learned detector + corrector, real Beam job, qa mode)"
BASELINE = "Classical baseline (image statistics, classical corrections)"


@dataclass
class Split:
    """One split's figures, for StyleFix and for the classical baseline."""

    seed: int
    eval_set: EvalSet
    learned: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]]


@dataclass
class Outcome:
    """One method's verdict on one test image."""

    score: float
    flagged: bool
    output: np.ndarray


def train_eval_bundle(eval_set: EvalSet, folder: Path, steps_scale: float) -> str:
    reference = [to_tensor(r) for r in eval_set.reference]
    base = load_bundle("")
    det_cfg = DetectorTrainConfig().scaled(steps_scale)
    retrain_detector(base, reference, str(folder / "detector"), det_cfg, CPU)
    cor_cfg = CorrectorTrainConfig()
    cor_cfg = replace(cor_cfg, steps=max(2, int(cor_cfg.steps * steps_scale)))
    retrain_corrector(
        load_bundle(str(folder / "detector")), reference, str(folder / "bundle"), cor_cfg, CPU
    )
    return str(folder / "bundle")


def run_stylefix(eval_set: EvalSet, bundle_url: str, folder: Path) -> dict[str, Outcome]:
    """The real job, qa mode, FnApiRunner, once per kind; outcomes read back from its outputs.

    One job per kind because the kinds damage mostly the same test patches: a
    single job over all of them would see each patch under fourteen keys, and the
    run-collapse check would (rightly) flag those near-duplicates, which says
    nothing about the detector. Within a kind every patch is different content.
    """
    write_test_shards(eval_set, folder / "shards")
    outcomes = {}
    for shard in sorted((folder / "shards").glob("*.tar")):
        output = folder / "out" / shard.stem
        run(
            [
                f"--input={shard}",
                f"--output={output}",
                f"--bundle={bundle_url}",
                "--mode=qa",
                "--runner=FnApiRunner",
            ]
        )
        outcomes |= _read_outcomes(output)
    return outcomes


def _read_outcomes(output: Path) -> dict[str, Outcome]:
    outcomes = {}
    for part in sorted((output / "report").glob("*.parquet")):
        for row in pq.read_table(part).to_pylist():
            pixels = decode_image(Path(row["output_uri"]).read_bytes(), Limits())
            outcomes[row["key"]] = Outcome(row["anomaly_score"], row["is_anomaly"], pixels)
    return outcomes


def baseline_calibration(eval_set: EvalSet, bundle_url: str) -> Calibration:
    """Statistics only, calibrated exactly like the learned detector.

    No statistic is fitted to any reference image, so the fitted part scores
    out of sample as it is: every reference image counts in the threshold,
    as with the learned detector's cross-fitting.
    """
    bundle = load_bundle(bundle_url)
    fit, held = split_reference([to_tensor(r) for r in eval_set.reference])
    detectors = Detectors(bundle.autoencoder, bundle.embedding, bundle.damage, bundle.pixel_damage)
    return calibrate(
        detectors,
        bundle.discriminator,
        fit,
        [(r, None) for r in held],
        [0.0] * 6,
        0.01,
        CPU,
        STATISTICS,
        cross_fitted=[(detectors, [(r, None) for r in fit])],
    )


# Every correction candidate without the learned residual in it.
CLASSICAL = tuple(name for name in CANDIDATES if name not in WITH_RESIDUAL)


def run_baseline(eval_set: EvalSet, calibration: Calibration) -> dict[str, Outcome]:
    """Classical detection, and the classical corrections under the job's own rules
    (the same candidates, eligibility and keep-only-if-lower rule as the engine)."""
    unused = torch.nn.Identity()  # the statistics need no network
    scorer = Scorer(unused, unused, unused, calibration)
    outcomes = {}
    with torch.inference_mode():
        for item in eval_set.test:
            x = to_batch([item.image], CPU)
            before = scorer(x)
            fixed, names, _ = choose_corrections(x, before, scorer, unused, CLASSICAL)
            flagged = bool(before.score[0] > calibration.threshold)
            best = to_pixels(fixed)[0] if names[0] else item.image
            outcomes[item.key] = Outcome(float(before.score[0]), flagged, best)
    return outcomes


def figures(eval_set: EvalSet, outcomes: dict[str, Outcome]) -> dict[str, dict[str, float]]:
    """Per kind: AUROC against clean test images, share flagged, PSNR/SSIM of
    the anomalous and the final image against the clean original (flagged only)."""
    clean = [t for t in eval_set.test if t.kind == "clean"]
    clean_scores = np.array([outcomes[t.key].score for t in clean])
    rows = {}
    kinds = sorted({t.kind for t in eval_set.test} - {"clean"})
    for kind in [*kinds, "all"]:
        items = [
            t for t in eval_set.test if t.kind != "clean" and (kind == "all" or t.kind == kind)
        ]
        scores = np.array([outcomes[t.key].score for t in items])
        labels = np.r_[np.ones(len(scores)), np.zeros(len(clean_scores))]
        flagged = [t for t in items if outcomes[t.key].flagged]
        rows[kind] = {
            "auroc": auroc(np.r_[scores, clean_scores], labels),
            "flagged": len(flagged) / max(1, len(items)),
            **_restoration(flagged, outcomes),
        }
    rows["clean"] = {"fpr": float(np.mean([outcomes[t.key].flagged for t in clean]))}
    return rows


def _restoration(flagged: list[TestImage], outcomes: dict[str, Outcome]) -> dict[str, float]:
    if not flagged:
        return {
            "psnr_before": float("nan"),
            "psnr_after": float("nan"),
            "ssim_before": float("nan"),
            "ssim_after": float("nan"),
        }
    return {
        "psnr_before": float(np.mean([psnr(t.image, t.clean) for t in flagged])),
        "psnr_after": float(np.mean([psnr(outcomes[t.key].output, t.clean) for t in flagged])),
        "ssim_before": float(np.mean([ssim(t.image, t.clean) for t in flagged])),
        "ssim_after": float(np.mean([ssim(outcomes[t.key].output, t.clean) for t in flagged])),
    }


def format_table(name: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [
        f"### {name}",
        "",
        f"False-positive rate on clean test images at the threshold: {rows['clean']['fpr']:.3f}",
        "",
        "| kind | held out | AUROC | flagged | PSNR anomalous | PSNR final | gain dB | SSIM anomalous | SSIM final |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, r in rows.items():
        if kind == "clean":
            continue
        held = "yes" if kind in inject.HELD_OUT_KINDS else ""
        gain = r["psnr_after"] - r["psnr_before"]
        lines.append(
            f"| {kind} | {held} | {r['auroc']:.3f} | {r['flagged']:.2f} | {r['psnr_before']:.2f} | {r['psnr_after']:.2f} "
            f"| {gain:+.2f} | {r['ssim_before']:.3f} | {r['ssim_after']:.3f} |"
        )
    lines += ["", _target_lines(rows)]
    return "\n".join(lines)


def _target_lines(rows: dict[str, dict[str, float]]) -> str:
    """The restoration targets in one line: mean gain over the correctable kinds, kinds made worse."""
    gains = {
        k: r["psnr_after"] - r["psnr_before"] for k, r in rows.items() if k not in ("clean", "all")
    }
    correctable = [gains[k] for k in CORRECTABLE if k in gains and np.isfinite(gains[k])]
    worse = [k for k, g in gains.items() if np.isfinite(g) and g < 0]
    mean = float(np.mean(correctable)) if correctable else float("nan")
    return (
        f"Mean PSNR gain over the correctable kinds ({', '.join(CORRECTABLE)}): {mean:+.2f} dB; "
        f"kinds made worse on average: {', '.join(worse) or 'none'}"
    )


def evaluate_split(seed: int, per_kind: int, steps_scale: float, folder: Path) -> Split:
    """Train on one split's reference patches, run the job on its test shards, score both methods."""
    eval_set = build_eval_set(EvalConfig(per_kind=per_kind, seed=seed))
    bundle_url = train_eval_bundle(eval_set, folder, steps_scale)
    learned = figures(eval_set, run_stylefix(eval_set, bundle_url, folder))
    baseline = figures(eval_set, run_baseline(eval_set, baseline_calibration(eval_set, bundle_url)))
    return Split(seed, eval_set, learned, baseline)


def split_header(split: Split) -> str:
    test = split.eval_set.test
    counts = {kind: sum(t.kind == kind for t in test) for kind in split.eval_set.invisible}
    passed = ", ".join(f"{k} {n}" for k, n in split.eval_set.invisible.items() if n) or "none"
    return (
        f"## Split {split.seed}\n\nreference patches: {len(split.eval_set.reference)}, "
        f"clean test: {sum(t.kind == 'clean' for t in test)}, "
        f"anomalous per kind: {min(counts.values())}-{max(counts.values())}\n"
        f"injections passed over as invisible (PSNR >= 40 dB): {passed}"
    )


def summary_table(name: str, splits: dict[int, dict[str, dict[str, float]]]) -> str:
    """Mean [min, max] over the splits (by seed) of each kind's AUROC, share
    flagged and PSNR gain; "(n of N)" where only n splits have a value."""

    def spread(values: list[float], fmt: str) -> str:
        finite = [v for v in values if np.isfinite(v)]
        if not finite:
            return "n/a"
        cell = f"{np.mean(finite):{fmt}} [{min(finite):{fmt}}, {max(finite):{fmt}}]"
        return cell if len(finite) == len(splits) else f"{cell} ({len(finite)} of {len(splits)})"

    kinds = list(dict.fromkeys(k for rows in splits.values() for k in rows if k != "clean"))
    nan = {"auroc": float("nan"), "flagged": float("nan"), "psnr_after": float("nan")}
    lines = [
        f"### {name}: {len(splits)} splits, mean [min, max]",
        "",
        "| kind | held out | AUROC | flagged | gain dB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind in kinds:
        rows = [{"psnr_before": 0.0, **nan, **s.get(kind, {})} for s in splits.values()]
        lines.append(
            f"| {kind} | {'yes' if kind in inject.HELD_OUT_KINDS else ''} "
            f"| {spread([r['auroc'] for r in rows], '.3f')} "
            f"| {spread([r['flagged'] for r in rows], '.2f')} "
            f"| {spread([r['psnr_after'] - r['psnr_before'] for r in rows], '+.2f')} |"
        )
    fpr = [s["clean"]["fpr"] for s in splits.values()]
    lines += [
        "",
        f"False-positive rate at the threshold: {spread(fpr, '.3f')}",
        *[f"split {seed}: {_target_lines(s)}" for seed, s in splits.items()],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--per-kind", type=int, default=80, help="anomalous test images per kind")
    parser.add_argument(
        "--seeds", default="0,1,2", help="comma-separated seeds, one split of the photos each"
    )
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="fraction of the default training steps"
    )
    parser.add_argument("--keep", help="folder to keep shards, bundles and outputs in")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    splits = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            torch.manual_seed(0)
            folder = Path(args.keep or tmp) / f"split-{seed}"
            split = evaluate_split(seed, args.per_kind, args.steps_scale, folder)
            splits.append(split)
            print(split_header(split))
            print()
            print(format_table(LEARNED, split.learned))
            print()
            print(format_table(BASELINE, split.baseline))
            print(flush=True)
    print("## All splits\n")
    print(summary_table(LEARNED, {s.seed: s.learned for s in splits}))
    print()
    print(summary_table(BASELINE, {s.seed: s.baseline for s in splits}))
    print(f"\ntotal {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
