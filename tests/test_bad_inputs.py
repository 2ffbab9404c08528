"""Every kind of bad input through the real job, in one run: one row each, nothing escapes.

The catalog (tests/bad_inputs.py) pairs each input item with the one report or
error row it must become. The job runs once on Beam's FnApiRunner with small
limits, so the size limits are crossed in the same run; bundles that must be
refused are tried separately, since they stop the job before it starts.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from pathlib import Path

import bad_inputs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.main import run
from stylefix_core.bundle import load_bundle, save_bundle
from stylefix_core.errors import BundleError
from stylefix_core.io import storage

pytestmark = pytest.mark.slow
RUNNER = ["--runner=FnApiRunner"]
OUTPUT_ENTRIES = {"images", "report", "errors", "_markers", "run_manifest.json", "report.html"}


def _tree(base: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``base`` with (size, mtime) for files, so changes show."""
    entries = {}
    for path in base.rglob("*"):
        stat = path.lstat()
        entries[str(path.relative_to(base))] = (stat.st_size, stat.st_mtime_ns)
    return entries


def _rows(folder: Path) -> list[dict]:
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist() if parts else []


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """The catalog, the job's output folder, its summary, and the tree around it."""
    base = tmp_path_factory.mktemp("bad")
    token = uuid.uuid4().hex[:10]
    catalog = bad_inputs.build_catalog(base / "in", token)
    output = base / "out" / "job"
    before = _tree(base)
    summary = run(
        [f"--input={catalog.root}", f"--output={output}", *RUNNER, *bad_inputs.LIMIT_OPTIONS]
    )
    return catalog, output, summary, before, token


def test_every_input_item_is_exactly_one_row_with_its_outcome(bad_run):
    catalog, output, summary, _, _ = bad_run
    reports, errors = _rows(output / "report"), _rows(output / "errors")
    rows = [(r["shard"], r["key"]) for r in reports + errors]
    assert len(rows) == len(set(rows)), "a (shard, key) named two rows"
    expected = catalog.by_row()
    assert set(rows) == set(expected), set(rows) ^ set(expected)
    assert (summary.report_rows, summary.error_rows) == (len(reports), len(errors))
    for row in reports:
        expect = expected[(row["shard"], row["key"])]
        assert expect.is_report, (expect.kind, row)
        if expect.size:
            assert (row["width"], row["height"]) == expect.size, expect.kind
    for row in errors:
        expect = expected[(row["shard"], row["key"])]
        assert not expect.is_report, (expect.kind, row["message"])
        got = (row["stage"], row["error_type"])
        assert got == (expect.stage, expect.error_type), (expect.kind, row["message"])
        assert expect.message in row["message"], (expect.kind, row["message"])


def test_error_messages_read_as_sentences(bad_run):
    _, output, _, _, _ = bad_run
    for row in _rows(output / "errors"):
        message = row["message"]
        assert len(message.split()) >= 4, row  # a sentence, not a bare type name
        assert "Traceback" not in message and "object at 0x" not in message, row


def test_reported_images_are_written_upright_as_rgb(bad_run):
    catalog, output, _, _, _ = bad_run
    reports = _rows(output / "report")
    written = {str(p) for p in (output / "images").rglob("*") if p.is_file()}
    assert written == {row["output_uri"] for row in reports}
    for row in reports:
        with Image.open(row["output_uri"]) as image:
            assert image.mode == "RGB" and image.n_frames == 1, row["key"]
            assert image.size == (row["width"], row["height"])
        assert row["anomaly_score"] == row["anomaly_score"], "NaN score"  # NaN != NaN


def test_nothing_is_written_outside_the_output_prefix(bad_run):
    catalog, output, _, before, token = bad_run
    base = catalog.root.parent
    after = _tree(base)
    outside = {
        path: state
        for path, state in after.items()
        if not Path(base, path).is_relative_to(output) and Path(base, path) != output.parent
    }
    assert outside == {k: v for k, v in before.items() if k in outside}
    assert set(before) - set(after) == set()
    assert {p.name for p in output.iterdir()} == OUTPUT_ENTRIES
    assert not [p for p in output.rglob("*") if storage.is_temporary(str(p))]
    for target in catalog.escape_targets:
        assert not target.exists(), target
    assert not list(base.rglob(f"*{token}*"))
    assert not (Path.cwd().parent.parent / f"escape-{token}.png").exists()


def test_manifest_counts_every_item_and_the_ignored_file(bad_run):
    catalog, output, summary, _, _ = bad_run
    manifest = json.loads((output / "run_manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["images"] == len(catalog.expected) == summary.images
    assert counts["ignored_files"] == 1  # loose/README.txt
    assert counts["shards"] == len({e.shard for e in catalog.expected})
    by_stage: dict[str, int] = {}
    for expect in catalog.expected:
        if expect.stage:
            by_stage[expect.stage] = by_stage.get(expect.stage, 0) + 1
    assert counts["errors_by_stage"] == by_stage
    assert manifest["options"]["limits"] == {
        "max_pixels": bad_inputs.MAX_PIXELS,
        "max_file_bytes": bad_inputs.MAX_FILE_BYTES,
        "max_shard_bytes": bad_inputs.MAX_SHARD_BYTES,
    }


# ------------------------------------------------------------------- bundles


@pytest.fixture(scope="module")
def small_input(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    (root / "a.png").write_bytes(bad_inputs.rgb(1))
    return root


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    bundle = load_bundle("")
    save_bundle(str(tmp_path / "bundle"), bundle.manifest, bundle.networks())
    return tmp_path / "bundle"


def _refused(small_input: Path, bundle: Path, tmp_path: Path, match: str) -> None:
    output = tmp_path / "out"
    with pytest.raises(BundleError, match=match):
        run([f"--input={small_input}", f"--output={output}", f"--bundle={bundle}", *RUNNER])
    assert not output.exists(), "a refused bundle must stop the job before it writes"


def test_a_missing_bundle_stops_the_job_before_it_starts(small_input, tmp_path):
    _refused(small_input, tmp_path / "no-such-bundle", tmp_path, "no bundle at")


def test_weights_that_do_not_match_the_manifest_stop_the_job(small_input, bundle_copy, tmp_path):
    weights = bundle_copy / "generator.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    _refused(small_input, bundle_copy, tmp_path, "does not match the manifest")


class _Planted:
    """Unpickling this would create a file: proof that loading unpickled something."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickle_in_place_of_weights_is_never_unpickled(small_input, bundle_copy, tmp_path):
    planted = tmp_path / "unpickled"
    blob = pickle.dumps({"weight": _Planted(str(planted))})
    (bundle_copy / "generator.safetensors").write_bytes(blob)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["models"]["generator"]["sha256"] = hashlib.sha256(
        blob
    ).hexdigest()  # a consistent forgery
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    _refused(small_input, bundle_copy, tmp_path, "not a readable safetensors file")
    manifest["models"]["generator"]["weights"] = "generator.pt"
    (bundle_copy / "generator.pt").write_bytes(blob)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    _refused(small_input, bundle_copy, tmp_path, "must be a .safetensors file")
    assert not planted.exists()


def test_default_limits_are_finite_and_documented():
    from pipelines.options import StyleFixOptions, to_job_config

    config = to_job_config(StyleFixOptions(["--input=x", "--output=y"]))
    assert config.limits.max_pixels == 4096 * 4096
    assert config.limits.max_file_bytes == 64 * 1024 * 1024
    assert config.limits.max_shard_bytes == 8 * 1024**3
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "16 Mpx (4096²), 64 MiB, 8 GiB" in readme


def test_the_reliability_page_lists_every_input_kind_tried(bad_run):
    catalog = bad_run[0]
    page = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    page = page.replace("`", "")
    missing = sorted({e.kind for e in catalog.expected if e.kind not in page})
    assert not missing, f"docs/reliability.md does not mention: {missing}"


def test_text_that_cannot_be_utf8_is_escaped_before_it_leaves_the_row_builders():
    """Lone surrogates cannot cross a runner's shuffle nor go into Parquet."""
    from stylefix_core.records import ErrorRow
    from stylefix_core.report import ERROR_SCHEMA, error_row, to_table

    lone = "caf\udce9"
    row = error_row(ErrorRow("run", "s.tar", lone, f"/in/{lone}.png", "read", "X", f"bad {lone}"))
    assert (row["key"], row["source_uri"], row["message"]) == (
        "caf\\udce9",
        "/in/caf\\udce9.png",
        "bad caf\\udce9",
    )
    assert to_table([row], ERROR_SCHEMA).column("key").to_pylist() == ["caf\\udce9"]
