"""The Beam job end to end on the sample catalog, on Beam's own batch runner."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.main import run
from stylefix_core.errors import BundleError
from stylefix_core.report import ERROR_SCHEMA, REPORT_SCHEMA
from stylefix_core.sample_catalog import build_sample_catalog

pytestmark = pytest.mark.slow
RUNNER = ["--runner=FnApiRunner"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    truth = build_sample_catalog(root)
    return root, truth


def _job(catalog_root: Path, output: Path, *extra: str):
    return run([f"--input={catalog_root}", f"--output={output}", *RUNNER, *extra])


def _table(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])


def _snapshot(output: Path) -> dict[str, str]:
    return {
        str(p.relative_to(output)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.rglob("*"))
        if p.is_file() and p.name != "run_manifest.json"
    }


@pytest.fixture(scope="module")
def style_run(catalog, tmp_path_factory):
    root, _ = catalog
    output = tmp_path_factory.mktemp("style")
    summary = _job(root, output)
    return output, summary


def test_every_input_ends_as_exactly_one_row(catalog, style_run):
    _, truth = catalog
    output, summary = style_run
    report, errors = _table(output / "report"), _table(output / "errors")
    assert (summary.report_rows, summary.error_rows) == (len(truth.entries) - 1, 1)
    assert (report.num_rows, errors.num_rows) == (summary.report_rows, summary.error_rows)
    keys = [
        (s, k) for s, k in zip(report["shard"].to_pylist(), report["key"].to_pylist(), strict=True)
    ]
    keys += [
        (s, k) for s, k in zip(errors["shard"].to_pylist(), errors["key"].to_pylist(), strict=True)
    ]
    assert len(set(keys)) == len(keys) == len(truth.entries)
    assert {truth.entry_for(k).key for _, k in keys} == {e.key for e in truth.entries}


def test_the_corrupt_image_is_one_decode_error_naming_it(catalog, style_run):
    _, truth = catalog
    output, _ = style_run
    errors = _table(output / "errors").to_pylist()
    (corrupt,) = truth.corrupt
    assert len(errors) == 1
    row = errors[0]
    assert truth.entry_for(row["key"]).key == corrupt.key
    assert row["stage"] == "decode" and row["shard"] == "assets-00000.tar"
    assert row["message"] and row["error_type"]


def test_parts_have_the_explicit_schemas(style_run):
    output, _ = style_run
    for part in (output / "report").glob("*.parquet"):
        assert pq.read_schema(part).remove_metadata().equals(REPORT_SCHEMA)
    for part in (output / "errors").glob("*.parquet"):
        assert pq.read_schema(part).remove_metadata().equals(ERROR_SCHEMA)
    assert {"run_id", "anomaly_score", "reasons", "score_after_correction", "input_sha256"} <= set(
        REPORT_SCHEMA.names
    )


def test_each_row_points_at_a_written_image_that_says_where_it_came_from(style_run):
    output, summary = style_run
    rows = _table(output / "report").to_pylist()
    for row in rows:
        path = Path(row["output_uri"])
        assert path.is_file() and path.is_relative_to(output / "images")
        with Image.open(path) as image:
            assert image.size == (row["width"], row["height"])
            assert image.text["stylefix:source_key"] == row["key"]
            assert image.text["stylefix:model_version"] == row["model_version"]
    assert all(row["run_id"] == summary.run_id for row in rows)
    assert all(row["reasons"] for row in rows if row["is_anomaly"])
    assert not any(row["reasons"] for row in rows if not row["is_anomaly"])


def test_run_manifest_and_markers_agree(style_run):
    import json

    output, summary = style_run
    manifest = json.loads((output / "run_manifest.json").read_text())
    assert manifest["counts"]["report_rows"] == summary.report_rows
    assert manifest["counts"]["devices"] == ["cpu"]
    assert manifest["bundle"]["version"]
    assert len(list((output / "_markers").glob("*.json"))) == summary.shards == 4


def test_a_rerun_overwrites_with_identical_files(catalog, tmp_path):
    root, _ = catalog
    _job(root, tmp_path)
    first = _snapshot(tmp_path)
    _job(root, tmp_path)
    assert _snapshot(tmp_path) == first


def test_resume_skips_complete_shards_and_ends_the_same(catalog, tmp_path):
    root, _ = catalog
    _job(root, tmp_path)
    complete = _snapshot(tmp_path)
    (tmp_path / "_markers" / "assets-00001.tar.json").unlink()
    (tmp_path / "report" / "part-assets-00001.tar.parquet").unlink()
    summary = _job(root, tmp_path, "--resume")
    assert summary.shards_skipped == 3 and summary.shards == 4
    assert _snapshot(tmp_path) == complete


def test_resume_runs_again_what_another_job_completed(catalog, tmp_path):
    """A marker is trusted for the same settings only: here qa mode after style mode."""
    root, _ = catalog
    _job(root, tmp_path)
    summary = _job(root, tmp_path, "--resume", "--mode=qa")
    assert summary.shards_skipped == 0 and summary.shards == 4
    modes = set(_table(tmp_path / "report").column("mode").to_pylist())
    assert modes == {"qa"}


def test_resume_runs_again_the_file_groups_a_new_file_moved(tmp_path):
    """Loose files are grouped by position: a new first file moves every group."""
    from stylefix_core.imaging import encode_image

    folder = tmp_path / "loose"
    folder.mkdir()
    rng = np.random.default_rng(3)

    def add(name: str) -> None:
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        (folder / f"{name}.png").write_bytes(encode_image(pixels, "png"))

    for name in ("b", "c", "d"):
        add(name)
    out = tmp_path / "out"
    _job(folder, out, "--files_per_shard=2")
    add("a")
    summary = _job(folder, out, "--files_per_shard=2", "--resume")
    assert summary.shards == 2 and summary.shards_skipped == 0
    keys = sorted(_table(out / "report").column("key").to_pylist())
    assert keys == ["a", "b", "c", "d"]
    again = _job(folder, out, "--files_per_shard=2", "--resume")
    assert again.shards_skipped == 2


def test_qa_mode_writes_unflagged_images_back_bit_identical(catalog, tmp_path):
    root, truth = catalog
    summary = _job(root, tmp_path, "--mode=qa")
    rows = _table(tmp_path / "report").to_pylist()
    assert summary.report_rows == len(truth.entries) - 1
    unchanged = [r for r in rows if not r["corrected"]]
    assert unchanged, "some images must pass qa untouched"
    for row in unchanged:
        data = Path(row["output_uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["input_sha256"]
    for row in rows:
        if row["corrected"]:
            assert row["score_after_correction"] < row["anomaly_score"]
    flagged = {truth.entry_for(r["key"]).key for r in rows if r["is_anomaly"]}
    injected = {e.key for e in truth.anomalous}
    assert len(flagged & injected) >= len(injected) // 2, (flagged, injected)


def test_a_tampered_bundle_stops_the_job_before_it_starts(catalog, tmp_path):
    root, _ = catalog
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        _job(root, tmp_path / "out", f"--bundle={bundle}")
    assert not (tmp_path / "out").exists()


def test_missing_required_options_are_named():
    with pytest.raises(ValueError, match="--output"):
        run(["--input=x", *RUNNER])


@pytest.mark.parametrize(
    ("flag", "meant"),
    [("--max-pixels=5", "--max_pixels"), ("--devic=cuda", "--device"), ("--resum", "--resume")],
)
def test_a_misspelt_option_stops_the_job_before_it_starts(flag, meant, tmp_path):
    """Beam would drop it with a warning and run on the default."""
    with pytest.raises(
        ValueError, match=f"unknown option {flag.split('=')[0]}; did you mean {meant}"
    ):
        run(["--input=x", f"--output={tmp_path / 'out'}", flag, *RUNNER])
    assert not (tmp_path / "out").exists()


def test_flags_of_option_classes_not_imported_here_still_pass():
    """A runner may read flags this process has no option class for."""
    from pipelines.options import refuse_misspelt_options

    refuse_misspelt_options(["--input=x", "--output=y", "--sdk_worker_parallelism=2", "--xyz"])
