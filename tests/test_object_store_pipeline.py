"""The job end to end with its shards and its outputs on gs:// and s3://.

The stores are real protocol servers on 127.0.0.1 (the ``gcs_bucket`` and
``s3_bucket`` fixtures), reached through the real gcsfs and s3fs clients by
plain ``gs://`` / ``s3://`` URLs, exactly as the job receives them in
production. Worker processes of the multi-process runner inherit the
environment that points the clients at the servers. 35 to 60 s on 2 busy cores.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.main import run
from stylefix_core.io import storage
from stylefix_core.sample_catalog import build_sample_catalog

pytestmark = pytest.mark.slow

RUN_ID = "run-object-store"  # fixed, so images match the local run byte for byte
BATCH_RUNNER = ("--runner=FnApiRunner",)
MULTI_PROCESS = (  # FnApiRunner: DirectRunner would prefer Prism where it can fetch it
    "--runner=FnApiRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    return root, build_sample_catalog(root)


@pytest.fixture(scope="module")
def local_images(catalog, tmp_path_factory) -> dict[str, bytes]:
    """Image bytes of the same job on local disk, by path below ``images/``."""
    root, _ = catalog
    output = tmp_path_factory.mktemp("local")
    run([f"--input={root}", f"--output={output}", f"--run_id={RUN_ID}", *BATCH_RUNNER])
    images = output / "images"
    return {str(p.relative_to(images)): p.read_bytes() for p in images.rglob("*") if p.is_file()}


@pytest.fixture(params=["gcs", "s3"])
def bucket(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_bucket")


def _upload(catalog_root: Path, prefix: str) -> None:
    """The catalog's files, written with the store's own client (not the job's code)."""
    fs, path = fsspec.core.url_to_fs(prefix, skip_instance_cache=True)
    for file in sorted(catalog_root.rglob("*")):
        if file.is_file():
            fs.pipe_file(f"{path}/{file.relative_to(catalog_root).as_posix()}", file.read_bytes())
    fs.invalidate_cache()


def _table(urls: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(io.BytesIO(storage.read_bytes(u))) for u in urls])


def _check_outputs(out: str, truth, summary) -> pa.Table:
    """Counts, one row per input, and a listing that holds exactly the named outputs."""
    listed = storage.list_files(out)
    assert not [u for u in listed if "/.tmp-" in u], "temporary names left behind"
    reports = [u for u in listed if u.startswith(f"{out}/report/part-")]
    errors = [u for u in listed if u.startswith(f"{out}/errors/part-")]
    markers = [u for u in listed if u.startswith(f"{out}/_markers/")]
    assert len(reports) == len(errors) == len(markers) == summary.shards == 4
    report, error = _table(reports), _table(errors)
    assert (report.num_rows, error.num_rows) == (len(truth.entries) - 1, 1)
    assert (summary.report_rows, summary.error_rows) == (report.num_rows, error.num_rows)
    keys = report["key"].to_pylist() + error["key"].to_pylist()
    assert {truth.entry_for(k).key for k in keys} == {e.key for e in truth.entries}
    images = report["output_uri"].to_pylist()
    assert len(set(images)) == len(images)
    assert all(u.startswith(f"{out}/images/") for u in images)
    expected = (
        set(images)
        | set(reports)
        | set(errors)
        | set(markers)
        | {f"{out}/run_manifest.json", f"{out}/report.html"}
    )
    assert set(listed) == expected
    return report


def test_shards_on_an_object_store_end_as_outputs_there(catalog, local_images, bucket):
    root, truth = catalog
    _upload(root, f"{bucket}/catalog")
    out = f"{bucket}/stylefix/run"
    summary = run(
        [f"--input={bucket}/catalog", f"--output={out}", f"--run_id={RUN_ID}", *BATCH_RUNNER]
    )
    report = _check_outputs(out, truth, summary)
    assert all(u.startswith(f"{bucket}/catalog/") for u in report["source_uri"].to_pylist())
    for uri in report["output_uri"].to_pylist():
        assert storage.read_bytes(uri) == local_images[uri.removeprefix(f"{out}/images/")]
    manifest = json.loads(storage.read_bytes(f"{out}/run_manifest.json"))
    assert manifest["counts"]["report_rows"] == summary.report_rows
    assert manifest["options"]["output"] == out

    again = [f"--input={bucket}/catalog", f"--output={out}", f"--run_id={RUN_ID}"]
    resumed = run([*again, "--resume", *BATCH_RUNNER])
    assert resumed.shards_skipped == resumed.shards == 4
    assert resumed.report_rows == summary.report_rows


def test_worker_processes_read_and_write_gcs(catalog, gcs_bucket):
    root, truth = catalog
    _upload(root, f"{gcs_bucket}/catalog/2026-11-23")
    out = f"{gcs_bucket}/qa/2026-11-23"
    summary = run(
        [f"--input={gcs_bucket}/catalog/2026-11-23/**", f"--output={out}", *MULTI_PROCESS]
    )
    _check_outputs(out, truth, summary)
