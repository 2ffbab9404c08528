"""The benchmark's code runs end to end on a couple of images (no timings are checked)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench import figures, jobs
from bench.data import write_shards
from bench.run import main

pytestmark = pytest.mark.slow


def _images(output: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Pixels (hashed) and text of each written image; the run id names the output."""
    found = {}
    for path in sorted((output / "images").rglob("*.png")):
        with Image.open(path) as image:
            text = {k: v for k, v in image.text.items() if k != "stylefix:run_id"}
            found[str(path.relative_to(output))] = (
                hashlib.sha256(image.tobytes()).hexdigest(),
                text,
            )
    return found


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("bench-in"), images=2, size=32, per_shard=1)


def test_the_naive_baseline_writes_the_same_images_as_the_job(source, tmp_path):
    jobs.beam_job(source.folder, tmp_path / "job", source.images)
    jobs.naive_job(source.folder, tmp_path / "naive", source.images)
    job, naive = _images(tmp_path / "job"), _images(tmp_path / "naive")
    assert len(job) == source.images and job == naive


def test_throughput_and_flops_figures_run_on_two_images(source, tmp_path):
    against_ceiling, against_naive = figures.throughput(source, repeats=1, workdir=tmp_path)
    for comparison in (against_ceiling, against_naive):
        assert comparison.ratio > 0 and len(comparison.subject.values) == 1
    flops = figures.flops(source, repeats=1, images_per_second=against_ceiling.baseline.median)
    assert flops.gflop_per_image > 0 and "StyleGenerator" in flops.by_network
    assert flops.matmul_gflops > 0 and flops.conv_gflops > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip where CUDA is absent")
def test_gpu_mode_skips_cleanly_without_cuda(capsys):
    assert main(["--device", "cuda"]) == 0
    assert "GPU benchmark skipped" in capsys.readouterr().out


def test_the_detector_table_has_every_kind_and_detector():
    from bench.statistics import table
    from stylefix_core.inject import INJECTORS
    from stylefix_core.scoring.scorer import DETECTORS
    from stylefix_core.training.detector import DetectorTrainConfig

    lines = table(per_kind=2, cfg=DetectorTrainConfig().scaled(0.01)).splitlines()
    assert lines[2] == "| kind | " + " | ".join(DETECTORS) + " |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[4:]}
    assert set(rows) == set(INJECTORS)
    assert all(row.count(" / ") == len(DETECTORS) for row in rows.values())


def test_the_quality_summary_names_splits_by_seed_and_counts_missing_values():
    from bench.quality import summary_table

    def rows(auroc: float) -> dict[str, float]:
        return {"auroc": auroc, "flagged": 0.5, "psnr_before": 20.0, "psnr_after": 21.0}

    splits = {
        3: {"noise": rows(0.9), "blur": rows(0.7), "clean": {"fpr": 0.01}},
        5: {"noise": rows(1.0), "clean": {"fpr": 0.03}},
    }
    table = summary_table("method", splits)
    assert "| noise |  | 0.950 [0.900, 1.000] | 0.50 [0.50, 0.50] | +1.00 [+1.00, +1.00] |" in table
    assert "| blur |  | 0.700 [0.700, 0.700] (1 of 2) |" in table
    assert "False-positive rate at the threshold: 0.020 [0.010, 0.030]" in table
    assert "\nsplit 3: " in table and "\nsplit 5: " in table
