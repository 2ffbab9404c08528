"""The same job on every runner this machine can start, against Beam's batch runner.

The DirectRunner's batch engine in multi-processing mode pickles every DoFn,
the model handler and the configuration into worker processes; PortableRunner with an embedded job
service and LOOPBACK workers speaks the portable protocol that Flink's runner
speaks. Each must write byte-identical outputs to the FnApiRunner run (the run
manifest aside, which records the runner and timings). About 40 s on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.main import only_writes_a_template, run, workers_run_here
from stylefix_core.errors import DeviceUnavailableError
from stylefix_core.sample_catalog import build_sample_catalog

pytestmark = pytest.mark.slow

# Float sums depend on the number of torch threads, so byte-identical outputs
# are promised for the same settings: every run here names one thread (with
# several local workers the default would otherwise differ, see options.py).
THREADS = "--torch_threads=1"
REFERENCE = ("--runner=FnApiRunner", THREADS)
# DirectRunner hands a pipeline to the Prism runner whenever it can download
# it, and then ignores the multi-processing flags; naming the engine it
# otherwise uses keeps this case about worker processes on every machine.
RUNNERS = {
    "multi_processing": (
        "--runner=FnApiRunner",
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
        THREADS,
    ),
    "portable_loopback": (
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=LOOPBACK",
        THREADS,
    ),
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    return root, build_sample_catalog(root)


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """One output path for every run: the run id and output URIs derive from it."""
    return tmp_path_factory.mktemp("runs") / "out"


def _run_fresh(catalog_root: Path, output: Path, runner: tuple[str, ...]):
    shutil.rmtree(output, ignore_errors=True)
    return run([f"--input={catalog_root}", f"--output={output}", *runner])


def _snapshot(output: Path) -> dict[str, str]:
    return {
        str(p.relative_to(output)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.rglob("*"))
        # report.html shows the manifest (runner, shards skipped), so it differs with them
        if p.is_file() and p.name not in ("run_manifest.json", "report.html")
    }


def _rows(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])


@pytest.fixture(scope="module")
def reference(catalog, output) -> dict[str, str]:
    root, truth = catalog
    summary = _run_fresh(root, output, REFERENCE)
    assert (summary.report_rows, summary.error_rows) == (len(truth.entries) - 1, 1)
    return _snapshot(output)


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_runner_writes_exactly_what_the_batch_runner_writes(catalog, output, reference, runner):
    root, truth = catalog
    summary = _run_fresh(root, output, RUNNERS[runner])
    assert (summary.shards, summary.images) == (4, len(truth.entries))
    assert (summary.report_rows, summary.error_rows) == (len(truth.entries) - 1, 1)
    report, errors = _rows(output / "report"), _rows(output / "errors")
    keys = report["key"].to_pylist() + errors["key"].to_pylist()
    shards = report["shard"].to_pylist() + errors["shard"].to_pylist()
    assert len(set(zip(shards, keys, strict=True))) == len(keys) == len(truth.entries)
    assert {truth.entry_for(k).key for k in keys} == {e.key for e in truth.entries}
    assert _snapshot(output) == reference
    manifest = json.loads((output / "run_manifest.json").read_text())
    assert manifest["runner"] == RUNNERS[runner][0].split("=", 1)[1]
    assert manifest["counts"]["report_rows"] == summary.report_rows
    assert manifest["counts"]["devices"] == ["cpu"]


def test_a_fully_resumed_run_still_writes_its_manifest(catalog, output, reference):
    root, _ = catalog
    _run_fresh(root, output, REFERENCE)
    (output / "run_manifest.json").unlink()
    summary = run(
        [f"--input={root}", f"--output={output}", *RUNNERS["portable_loopback"], "--resume"]
    )
    assert summary.shards_skipped == summary.shards == 4
    manifest = json.loads((output / "run_manifest.json").read_text())
    assert manifest["counts"]["shards_skipped"] == 4 and manifest["counts"]["report_rows"] > 0
    assert _snapshot(output) == reference


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_fails_before_a_local_job_starts(catalog, tmp_path):
    root, _ = catalog
    with pytest.raises(DeviceUnavailableError):
        run([f"--input={root}", f"--output={tmp_path / 'out'}", *REFERENCE, "--device=cuda"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "here"),
    [
        ([], True),
        (["--runner=DirectRunner"], True),
        (["--runner=direct"], True),
        (["--runner=FnApiRunner"], True),
        (["--runner=PrismRunner"], True),
        (["--runner=PortableRunner", "--job_endpoint=embed"], True),
        (["--runner=PortableRunner", "--job_endpoint=flink-jobserver:8099"], False),
        (["--runner=FlinkRunner"], False),
        (["--runner=DataflowRunner"], False),
        (["--runner=apache_beam.runners.dataflow.dataflow_runner.DataflowRunner"], False),
    ],
)
def test_the_launcher_checks_devices_only_where_workers_run_on_it(args, here):
    assert workers_run_here(PipelineOptions(args)) is here


def test_a_template_launch_is_recognised():
    assert only_writes_a_template(PipelineOptions(["--template_location=gs://b/t.json"]))
    assert not only_writes_a_template(PipelineOptions(["--runner=DataflowRunner"]))
