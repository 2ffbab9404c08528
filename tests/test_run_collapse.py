"""Collapse across a run: outputs of many different inputs that are one picture."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.main import run
from stylefix_core.bundle import load_bundle, save_bundle
from stylefix_core.sample_catalog import build_sample_catalog
from stylefix_core.scoring.run_collapse import REASON, average_hash, mark_collapse
from stylefix_core.synthetic import make_assets


def test_average_hash_is_stable_under_small_changes_and_differs_across_images():
    a, b = make_assets(seed=3, n=2, sizes=[(96, 96)])
    noisy = np.clip(
        a.astype(int) + np.random.default_rng(0).integers(-2, 3, a.shape), 0, 255
    ).astype(np.uint8)
    assert average_hash(a) == average_hash(noisy)
    assert average_hash(a) != average_hash(b)
    assert len(average_hash(a)) == 16


def _row(key: str, source: str) -> dict:
    return {
        "key": key,
        "input_hash": source,
        "reasons": [],
        "is_anomaly": False,
        "run_collapse": False,
    }


def test_a_group_is_flagged_only_with_enough_different_sources():
    duplicates = [_row(f"k{i}", "same-input") for i in range(6)]
    assert not any(r["run_collapse"] for r in mark_collapse(duplicates, "input_hash"))
    collapsed = mark_collapse([_row(f"k{i}", f"in{i}") for i in range(4)], "input_hash")
    assert all(
        r["run_collapse"] and r["is_anomaly"] and r["reasons"] == [REASON] for r in collapsed
    )


@pytest.fixture(scope="module")
def collapsed_bundle(tmp_path_factory):
    """The default bundle with a generator that paints every image black."""
    bundle = load_bundle("")
    with torch.no_grad():
        bundle.generator.decoder[-1].weight.zero_()
        bundle.generator.decoder[-1].bias.fill_(-100.0)
    url = str(tmp_path_factory.mktemp("bundle"))
    save_bundle(url, bundle.manifest, bundle.networks())
    return url


@pytest.mark.slow
def test_a_collapsed_generator_is_flagged_across_the_run(tmp_path, collapsed_bundle):
    catalog = tmp_path / "catalog"
    truth = build_sample_catalog(catalog)
    out = tmp_path / "out"
    run(
        [
            f"--input={catalog}",
            f"--output={out}",
            f"--bundle={collapsed_bundle}",
            "--runner=FnApiRunner",
        ]
    )
    report = pa.concat_tables(
        [pq.read_table(p) for p in (out / "report").glob("*.parquet")]
    ).to_pylist()
    assert len(report) == len(truth.entries) - 1
    assert all(r["run_collapse"] and REASON in r["reasons"] and r["is_anomaly"] for r in report)


@pytest.mark.slow
def test_a_healthy_run_has_no_collapse(tmp_path):
    catalog = tmp_path / "catalog"
    build_sample_catalog(catalog)
    out = tmp_path / "out"
    run([f"--input={catalog}", f"--output={out}", "--runner=FnApiRunner"])
    report = pa.concat_tables(
        [pq.read_table(p) for p in (out / "report").glob("*.parquet")]
    ).to_pylist()
    assert not any(r["run_collapse"] for r in report)
    assert len({r["styled_hash"] for r in report}) > len(report) // 2
