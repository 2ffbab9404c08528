"""docs/scaling.md kept true: its arithmetic, its tables, and the FLOPs it starts from.

The fleet arithmetic is checked on numbers worked out by hand; the page's
tables must be exactly what ``infra.capacity`` renders from the saved
measurements and the current assumptions; and the 256 px FLOPs are counted
again with the current bundle. About 3 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import capacity
from infra.capacity import Assumptions, Compute, fleet
from stylefix_core.bundle import load_bundle
from stylefix_core.config import Mode

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCALING = DOCS / "scaling.md"
MEASUREMENTS = DOCS / "scaling_measurements.json"
RERUN = "re-run `python -m infra.capacity --save docs/scaling_measurements.json` and update docs/scaling.md"

HAND = Compute(
    side=256,
    generator_gflop=4.0,
    score_gflop=1.0,
    flagged_extra_gflop=10.0,
    decode_seconds=0.001,
    encode_seconds={"png": 0.02, "jpeg": 0.001, "webp": 0.005},
)
SIMPLE = Assumptions(
    gpu_peak_tflops=100.0,
    gpu_utilisation=0.1,
    vcpus=8,
    cpu_efficiency=0.5,
    memory_gb=10.0,
    disk_gb=0.0,
    price_vcpu_hour=0.05,
    price_memory_gb_hour=0.01,
    price_gpu_hour=0.5,
)


def test_a_cpu_bound_worker():
    estimate = fleet(HAND, Mode.STYLE, 0.1, SIMPLE, "png")
    assert estimate.gflop_per_image == pytest.approx(6.0)  # 4 + 1 + 0.1 * 10
    assert estimate.gpu_images_per_second == pytest.approx(10_000 / 6)  # 100 TFLOP/s * 10 %
    assert estimate.cpu_images_per_second == pytest.approx(4 / 0.021)  # 8 vCPU * 50 %
    assert estimate.bottleneck == "CPU"
    assert estimate.gpu_hours_per_million == pytest.approx(5250 / 3600)
    assert estimate.workers_for_a_million_in_an_hour == 2
    assert SIMPLE.worker_price_per_hour() == pytest.approx(8 * 0.05 + 10 * 0.01 + 0.5)
    assert estimate.cost_per_million == pytest.approx(5250 / 3600 * 1.0)
    assert estimate.break_even_utilisation == pytest.approx((4 / 0.021) * 6 / 100_000)


def test_a_gpu_bound_worker_and_qa_mode_encoding_only_flagged_images():
    jpeg = fleet(HAND, Mode.STYLE, 1.0, SIMPLE, "jpeg")
    assert jpeg.bottleneck == "GPU"
    assert jpeg.worker_images_per_second == pytest.approx(10_000 / 15)
    qa = fleet(HAND, Mode.QA, 0.0, SIMPLE, "png")
    assert qa.gflop_per_image == pytest.approx(1.0)
    assert qa.cpu_images_per_second == pytest.approx(4 / 0.001)  # nothing re-encoded
    assert fleet(HAND, Mode.QA, 1.0, SIMPLE, "png").cpu_images_per_second == pytest.approx(
        4 / 0.021
    )


def test_the_page_shows_what_the_saved_measurements_give():
    document = json.loads(MEASUREMENTS.read_text())
    page = SCALING.read_text()
    tables = capacity.report(document, Assumptions())
    for table in tables.split("\n\n"):
        assert table in page, f"docs/scaling.md is out of date: {RERUN}"
    price = f"{Assumptions().worker_price_per_hour():.3f} per worker-hour"
    assert price in page, f"docs/scaling.md is out of date: {RERUN}"


def test_the_saved_flops_are_what_the_current_networks_do():
    document = json.loads(MEASUREMENTS.read_text())
    saved = next(Compute(**c) for c in document["compute"] if c["side"] == 256)
    fresh = capacity.measure_gflops(256, load_bundle(""))
    for field, gflop in fresh.items():
        assert gflop == pytest.approx(getattr(saved, field), rel=1e-6), f"{field} changed: {RERUN}"
