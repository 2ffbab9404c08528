"""Credentials in URLs get the job its data and go nowhere else: logs, manifest, outputs.

The shard and the model bundle are served over HTTP to one user name and
password only, and the job is given URLs carrying them, so a run that
succeeds has used them; then every log record and every byte the job wrote
is searched for the password.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import uuid

import bad_inputs
import pyarrow.parquet as pq
import pytest
from auth_file_server import AuthFileServer

from pipelines.main import run
from stylefix_core.bundle import load_bundle, save_bundle

pytestmark = pytest.mark.slow


def _shard() -> bytes:
    cut = bad_inputs.rgb(3, 32, 32)
    members = [("a.png", bad_inputs.rgb(1)), ("b.jpg", bad_inputs.rgb(2, fmt="JPEG"))]
    members += [("cut.png", cut[: len(cut) // 2])]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_credentials_in_urls_never_reach_logs_manifest_or_outputs(tmp_path, caplog):
    served = tmp_path / "served"
    (served / "catalog").mkdir(parents=True)
    (served / "catalog" / "shard.tar").write_bytes(_shard())
    bundle = load_bundle("")
    save_bundle(str(served / "bundle"), bundle.manifest, bundle.networks())
    password = f"pw-{uuid.uuid4().hex}"
    output = tmp_path / "out"
    caplog.set_level(logging.INFO)  # what the command line configures
    for name in ("stylefix", "stylefix_core", "pipelines"):
        caplog.set_level(logging.DEBUG, logger=name)
    with AuthFileServer(served, "reader", password) as server:
        base = f"http://reader:{password}@127.0.0.1:{server.port}"
        summary = run(
            [
                f"--input={base}/catalog/shard.tar",
                f"--bundle={base}/bundle",
                f"--output={output}",
                "--runner=FnApiRunner",
            ]
        )
    assert (summary.report_rows, summary.error_rows) == (2, 1)
    assert server.tally.authorised > 0 and server.tally.refused == 0  # the password was used

    assert caplog.records, "no logs captured: the check below would be empty"
    assert password not in caplog.text
    written = [p for p in output.rglob("*") if p.is_file()]
    assert len(written) >= 6  # two images, two parts, a marker, the manifest
    for path in written:
        assert password.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":  # compressed pages could hide it from a byte search
            assert password not in str(pq.read_table(path).to_pylist()), path
    options = json.loads((output / "run_manifest.json").read_text())["options"]
    assert options["input"] == f"http://***@127.0.0.1:{server.port}/catalog/shard.tar"
    assert options["bundle"] == f"http://***@127.0.0.1:{server.port}/bundle"
