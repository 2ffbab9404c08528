"""Collapse across a run: outputs of many different inputs that are one picture."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.main import run
from stylefix_core.bundle import load_bundle, save_bundle
from stylefix_core.evaluation.dataset import write_tar
from stylefix_core.sample_catalog import build_sample_catalog
from stylefix_core.scoring.run_collapse import REASON, average_hash, is_collapse, mark
from stylefix_core.synthetic import make_assets


def test_average_hash_is_stable_under_small_changes_and_differs_across_images():
    a, b = make_assets(seed=3, n=2, sizes=[(96, 96)])
    noisy = np.clip(
        a.astype(int) + np.random.default_rng(0).integers(-2, 3, a.shape), 0, 255
    ).astype(np.uint8)
    assert average_hash(a) == average_hash(noisy)
    assert average_hash(a) != average_hash(b)
    assert len(average_hash(a)) == 18


def test_colour_variants_of_one_shape_hash_apart():
    """A catalog's red, green and blue versions of one product are not a collapse."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 20**2
    variants = []
    for colour in ((200, 30, 30), (30, 160, 40), (30, 40, 200), (20, 20, 20)):
        image = np.full((64, 64, 3), 255, np.uint8)
        image[disc] = colour
        variants.append(average_hash(image))
    assert len({v[:16] for v in variants}) == 1  # one silhouette
    assert len(set(variants)) == 4


def test_in_style_mode_colour_variants_of_one_input_are_one_source():
    """A monochrome style gives a product's colour variants one picture: no collapse."""
    from pipelines.transforms import _hash_and_source

    def element(input_hash: str) -> tuple:
        return "shard", (
            "report",
            {"styled_hash": "s", "input_hash": input_hash, "key": input_hash},
        )

    red, blue = "ffffc3c3c3c3ffff30", "ffffc3c3c3c3ffff03"
    assert _hash_and_source(element(red), "input_hash") == _hash_and_source(
        element(blue), "input_hash"
    )
    assert _hash_and_source(element(red), "key") != _hash_and_source(element(blue), "key")


def _row(key: str, source: str) -> dict:
    return {
        "key": key,
        "input_hash": source,
        "reasons": [],
        "is_anomaly": False,
        "run_collapse": False,
    }


def _report(out) -> list[dict]:
    tables = [pq.read_table(p) for p in (out / "report").glob("*.parquet")]
    return pa.concat_tables(tables).to_pylist()


def test_a_hash_is_a_collapse_only_with_enough_different_sources():
    assert not is_collapse(1) and not is_collapse(3) and is_collapse(4)
    marked = mark(_row("k0", "in0"))
    assert marked["run_collapse"] and marked["is_anomaly"] and marked["reasons"] == [REASON]
    assert mark(marked)["reasons"] == [REASON]  # marking twice adds the reason once


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
    report = _report(out)
    assert len(report) == len(truth.entries) - 1
    assert all(r["run_collapse"] and REASON in r["reasons"] and r["is_anomaly"] for r in report)


@pytest.mark.slow
def test_a_healthy_run_has_no_collapse(tmp_path):
    catalog = tmp_path / "catalog"
    build_sample_catalog(catalog)
    out = tmp_path / "out"
    run([f"--input={catalog}", f"--output={out}", "--runner=FnApiRunner"])
    report = _report(out)
    assert not any(r["run_collapse"] for r in report)
    assert len({r["styled_hash"] for r in report}) > len(report) // 2


@pytest.mark.slow
def test_one_input_repeated_under_many_keys_is_not_a_collapse(tmp_path, collapsed_bundle):
    """Style mode counts sources by input hash: the same picture styled alike is expected."""
    (image,) = make_assets(seed=5, n=1, sizes=[(64, 64)])
    (tmp_path / "shards").mkdir()
    write_tar(tmp_path / "shards" / "same.tar", [(f"copy-{i}", image) for i in range(6)])
    out = tmp_path / "out"
    run(
        [
            f"--input={tmp_path / 'shards'}",
            f"--output={out}",
            f"--bundle={collapsed_bundle}",
            "--runner=FnApiRunner",
        ]
    )
    report = _report(out)
    assert len(report) == 6 and len({r["styled_hash"] for r in report}) == 1
    assert not any(r["run_collapse"] for r in report)
