"""Faults during a run: out of memory in the models, storage that fails, a killed job.

Each fault is real where it can be: CUDA's own out-of-memory exception raised
from a model call on a batch too big for a (pretend) small GPU; a storage
server behind a proxy that answers 503 or holds writes, reached by the real
s3fs client; and a job process killed with SIGKILL and started again.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import bad_inputs
import object_stores
import pyarrow.parquet as pq
import pytest
import s3fs
import torch
from apache_beam.options.pipeline_options import PipelineOptions
from flaky_proxy import Faults, FlakyProxy

from pipelines.main import run
from pipelines.model_handler import StyleFixModelHandler
from pipelines.options import to_job_config
from stylefix_core.engine import Engine
from stylefix_core.io import storage

pytestmark = pytest.mark.slow
RUNNER = ["--runner=FnApiRunner"]
REPO = Path(__file__).parent.parent


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def rows_of(output: Path, folder: str) -> list[dict]:
    return [
        row
        for part in sorted((output / folder).glob("*.parquet"))
        for row in pq.read_table(part).to_pylist()
    ]


# ------------------------------------------------------------ out of memory

POISON = (13, 17)  # (height, width) of images that do not fit even alone


class SmallDeviceEngine(Engine):
    """The real engine on a device that holds at most two images per call.

    Calls on more images, or on a poisoned image, raise CUDA's out-of-memory
    error before any work, as a real allocation would. Every call is logged
    to a file, since the engine lives in a Beam worker.
    """

    capacity = 2

    def __init__(self, engine: Engine, calls_log: str):
        super().__init__(engine.bundle, engine.mode, engine.device, engine.batch)
        self.images_per_call = engine.batch.max_batch_size  # batched as on a GPU
        self.calls_log = calls_log

    def _process_same_size(self, images):
        too_big = len(images) > self.capacity or images[0].shape[:2] == POISON
        with open(self.calls_log, "a") as log:
            log.write(f"{len(images)} {'oom' if too_big else 'ok'}\n")
        if too_big:
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 3.00 GiB (GPU 0; 2.00 GiB total capacity)"
            )
        return super()._process_same_size(images)


class SmallDeviceHandler(StyleFixModelHandler):
    """The production handler, loading the engine above, with Beam batches of eight."""

    def __init__(self, config, calls_log: str):
        super().__init__(config)
        self._calls_log = calls_log

    def load_engine(self, bundle_url: str) -> Engine:
        return SmallDeviceEngine(super().load_engine(bundle_url), self._calls_log)

    def batch_elements_kwargs(self):
        return {"min_batch_size": 8, "max_batch_size": 8}


def test_out_of_memory_retries_smaller_then_alone_then_writes_error_rows(tmp_path):
    members = [(f"good{i}.png", bad_inputs.rgb(i, 24, 20)) for i in range(10)]
    members[3:3] = [("poison-a.png", bad_inputs.rgb(90, POISON[1], POISON[0]))]
    members += [("poison-b.png", bad_inputs.rgb(91, POISON[1], POISON[0]))]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "batch.tar").write_bytes(tar_bytes(members))
    argv = [f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}", *RUNNER]
    calls_log = tmp_path / "calls.log"
    handler = SmallDeviceHandler(to_job_config(PipelineOptions(argv)), str(calls_log))
    summary = run(argv, model_handler=handler)

    reports, errors = rows_of(tmp_path / "out", "report"), rows_of(tmp_path / "out", "errors")
    assert sorted(r["key"] for r in reports) == sorted(f"good{i}" for i in range(10))
    assert sorted(r["key"] for r in errors) == ["poison-a", "poison-b"]
    for row in errors:
        assert (row["stage"], row["error_type"]) == ("inference", "OutOfMemoryError")
        assert "even alone" in row["message"] and "CUDA out of memory" in row["message"]
    assert (summary.report_rows, summary.error_rows) == (10, 2)

    calls = [line.split() for line in calls_log.read_text().splitlines()]
    assert any(int(n) > 2 and result == "oom" for n, result in calls), "no batch was too big"
    assert all(int(n) <= 2 for n, result in calls if result == "ok")
    assert sum(int(n) for n, result in calls if result == "ok") == 10  # each good image once
    assert [n for n, result in calls if result == "oom"].count("1") == 2  # each poison alone


# ------------------------------------------------------------ flaky storage


@pytest.fixture
def s3_direct(s3_server: str) -> s3fs.S3FileSystem:
    """A client that talks to the S3 server itself, never through a proxy."""
    return s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=s3_server, skip_instance_cache=True
    )


@pytest.fixture
def route_s3(monkeypatch):
    """Send plain ``s3://`` URLs of this process (and its children) to an endpoint."""

    def route(endpoint: str) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        object_stores.clear_client_caches()

    yield route
    monkeypatch.undo()
    object_stores.clear_client_caches()


def put_shards(bucket: str, shards: int, per_shard: int) -> None:
    for shard in range(shards):
        members = [(f"k{i}.png", bad_inputs.rgb(shard * 10 + i)) for i in range(per_shard)]
        storage.write_bytes_atomic(f"{bucket}/in/s{shard}.tar", tar_bytes(members))


def test_transient_storage_failures_are_retried_and_nothing_is_lost(
    s3_bucket, s3_server, route_s3, s3_direct
):
    put_shards(s3_bucket, shards=2, per_shard=3)
    with FlakyProxy(s3_server, Faults(fail_every=4, max_failures=3)) as proxy:
        route_s3(proxy.endpoint)
        summary = run([f"--input={s3_bucket}/in/*.tar", f"--output={s3_bucket}/out", *RUNNER])
    assert (summary.report_rows, summary.error_rows) == (6, 0)
    failed = [f.split(" ")[0] for f in proxy.tally.failed]
    for method in ("PUT", "GET", "HEAD", "DELETE"):  # writes, reads, stats and clean-ups
        assert failed.count(method) == 3, (method, proxy.tally.by_method, proxy.tally.failed)
    bucket = s3_bucket.removeprefix("s3://")
    assert not [p for p in s3_direct.find(f"{bucket}/out") if storage.is_temporary(p)]
    assert len(s3_direct.find(f"{bucket}/out/images")) == 6
    assert len(s3_direct.find(f"{bucket}/out/_markers")) == 2


# ---------------------------------------------------------- killed and resumed


def snapshot(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, str]:
    """SHA-256 of every object under ``prefix``, the run manifest (timings) aside."""
    fs.invalidate_cache()
    return {
        path.removeprefix(prefix): hashlib.sha256(fs.cat_file(path)).hexdigest()
        for path in fs.find(prefix)
        if not path.endswith("/run_manifest.json")
    }


def markers(fs: s3fs.S3FileSystem, prefix: str) -> list[str]:
    fs.invalidate_cache()
    return [p for p in fs.find(f"{prefix}/_markers") if not storage.is_temporary(p)]


def kill_after_first_marker(argv: list[str], fs, prefix: str, log: Path) -> None:
    """Run the job in its own process and SIGKILL it once one shard is complete."""
    with open(log, "wb") as sink:
        job = subprocess.Popen(
            [sys.executable, "-m", "pipelines.main", *argv],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        seen = False
        try:
            deadline = time.monotonic() + 240
            while job.poll() is None and time.monotonic() < deadline:
                if markers(fs, prefix):
                    seen = True
                    break
                time.sleep(0.1)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    assert seen, "no shard completed in time: " + log.read_text()[-3000:]
    assert job.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def test_a_killed_job_resumes_to_the_same_bytes(
    s3_bucket, s3_server, route_s3, s3_direct, tmp_path
):
    shards = 4
    put_shards(s3_bucket, shards=shards, per_shard=2)
    bucket = s3_bucket.removeprefix("s3://")
    prefix = f"{bucket}/out"
    argv = [f"--input={s3_bucket}/in/*.tar", f"--output=s3://{prefix}", *RUNNER]
    run(argv)
    uninterrupted = snapshot(s3_direct, prefix)
    s3_direct.rm(prefix, recursive=True)

    # A slow network: each completion marker takes 1.5 s to land, so the job
    # can be caught with some shards complete and others not.
    def slow_marker(method: str, path: str) -> bool:
        return method == "PUT" and "/_markers/" in path and "/.tmp-" not in path

    # The kill races the job; in the rare run where a marker was seen but the
    # kill leaves no shard (or every shard) complete, the scene is set again
    # rather than the test failing on its own setup. A job that completes no
    # shard in time fails at once.
    for attempt in range(3):
        with FlakyProxy(s3_server, Faults(delay_if=slow_marker, delay_s=1.5)) as proxy:
            route_s3(proxy.endpoint)
            kill_after_first_marker(argv, s3_direct, prefix, tmp_path / f"killed-{attempt}.log")
            proxy.wait_idle()
        complete = markers(s3_direct, prefix)
        if 1 <= len(complete) < shards:
            break
        s3_direct.rm(prefix, recursive=True)
    assert 1 <= len(complete) < shards, complete
    assert proxy.tally.delayed >= len(complete)

    route_s3(s3_server)
    summary = run([*argv, "--resume"])
    assert (summary.shards, summary.shards_skipped) == (shards, len(complete))
    assert snapshot(s3_direct, prefix) == uninterrupted


def test_resume_clears_only_the_temporaries_of_unfinished_writes(tmp_path):
    from stylefix_core.io import outputs

    kept = [tmp_path / "images" / "s" / "a.png", tmp_path / "report" / "part-s.parquet"]
    stale = [tmp_path / "images" / "s" / ".tmp-b.png-0123", tmp_path / "_markers" / ".tmp-s.json-9"]
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert outputs.remove_temporaries(str(tmp_path)) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
