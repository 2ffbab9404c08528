"""The storage bridge (stylefix_core.io.storage), locally and against real GCS/S3 servers."""

from __future__ import annotations

import io
import logging
import os
import random
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stylefix_core.config import Limits
from stylefix_core.errors import InputLimitError, OutputWriteError, ShardReadError
from stylefix_core.io import storage
from stylefix_core.io.shards import plan_shards, read_shard
from stylefix_core.records import ShardMember

# ---------------------------------------------------------------------------- URLs


def test_join_is_url_aware():
    assert storage.join("gs://b/out", "images", "s", "k.png") == "gs://b/out/images/s/k.png"
    assert storage.join("gs://b/out/", "/a/", "./b") == "gs://b/out/a/b"
    assert storage.join("memory://", "x") == "memory://x"
    assert storage.join("/tmp/o", "a/b.png") == "/tmp/o/a/b.png"
    assert storage.join("s3://b") == "s3://b"
    with pytest.raises(ValueError, match=r"\.\."):
        storage.join("gs://b/out", "a/../../etc")


def test_redact_hides_credentials():
    text = "s3://AKIA:secret@bucket/x?X-Amz-Signature=abc123&ok=1 access_token=zz"
    redacted = storage.redact(text)
    assert "secret" not in redacted and "abc123" not in redacted and "zz" not in redacted
    assert "ok=1" in redacted


@pytest.mark.parametrize(
    "text, hidden, kept",
    [
        ("https://h/x.tar?X-Amz-Signature=abc#a.png", "abc", "#a.png"),
        ("https://acct.blob/c/x.tar?sv=1&sig=SECRET&se=2", "SECRET", "se=2"),
        ("https://h/x.tar?user=me&password=hunter2", "hunter2", "user=me"),
    ],
)
def test_redact_reads_query_parameters_up_to_a_member_name(text, hidden, kept):
    redacted = storage.redact(text)
    assert hidden not in redacted and kept in redacted


@pytest.mark.parametrize(
    "path", ["/data/product_key=7.png", "gs://b/catalog/api_token=42/x.png#k.png"]
)
def test_redact_leaves_path_segments_that_only_look_like_parameters(path):
    assert storage.redact(path) == path


# -------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_parents_overwrites_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "er" / "x.bin"
    storage.write_bytes_atomic(str(target), b"first")
    storage.write_bytes_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["x.bin"]


def test_atomic_write_file_url(tmp_path):
    url = "file://" + str(tmp_path / "y.bin")
    storage.write_bytes_atomic(url, b"data")
    assert storage.read_bytes(url) == b"data"
    assert storage.list_files("file://" + str(tmp_path)) == [url]


def test_failed_write_is_an_output_error_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputWriteError, match="could not write"):
        storage.write_bytes_atomic(str(tmp_path / "file" / "child.bin"), b"x")
    assert os.listdir(tmp_path) == ["file"]


def test_failed_rename_removes_the_temporary(tmp_path):
    (tmp_path / "x.bin").mkdir()  # the final name is taken by a directory
    with pytest.raises(OutputWriteError):
        storage.write_bytes_atomic(str(tmp_path / "x.bin"), b"x")
    assert os.listdir(tmp_path) == ["x.bin"]


def test_write_rejects_non_bytes(tmp_path):
    with pytest.raises(TypeError):
        storage.write_bytes_atomic(str(tmp_path / "x"), "text")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- retry


class Flaky:
    """Fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, value: str = "") -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done" + value


def test_retry_retries_transient_errors_then_succeeds(caplog):
    flaky = Flaky(ConnectionResetError("reset by peer"), TimeoutError("slow"))
    with caplog.at_level(logging.WARNING, logger="stylefix_core.io.storage"):
        assert storage.retry(flaky, "!", base_delay=0.001) == "done!"
    assert flaky.calls == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "attempt 1 of 4" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError("gone"), PermissionError("no"), IsADirectoryError("dir"), KeyError("k")],
)
def test_retry_does_not_retry_permanent_errors(error):
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        storage.retry(flaky, base_delay=0.001)
    assert flaky.calls == 1


def test_retry_gives_up_after_its_attempts(caplog):
    flaky = Flaky(*[ConnectionError("http://user:pw@host/ down")] * 5)
    with pytest.raises(ConnectionError):
        storage.retry(flaky, attempts=3, base_delay=0.001)
    assert flaky.calls == 3
    assert "pw" not in caplog.text


class StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def test_transient_classification():
    import aiohttp
    import botocore.exceptions

    assert storage.is_transient(OSError("connection dropped"))
    assert storage.is_transient(StatusError(503)) and storage.is_transient(StatusError(429))
    assert not storage.is_transient(StatusError(404))
    assert storage.is_transient(aiohttp.ServerDisconnectedError())
    assert storage.is_transient(botocore.exceptions.EndpointConnectionError(endpoint_url="x"))
    assert not storage.is_transient(ValueError("bad"))
    assert not storage.is_transient(NotADirectoryError("x"))


# ------------------------------------------------------------ listing and reading


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a.tar", "b.tar", "c.png", "sub/d.tar", "sub/deep/e.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


def test_expand_pattern_globs_dirs_and_files(tree):
    root = str(tree)
    assert storage.expand_pattern(f"{root}/*.tar") == [f"{root}/a.tar", f"{root}/b.tar"]
    assert storage.expand_pattern(f"{root}/**/*.tar") == [
        f"{root}/a.tar",
        f"{root}/b.tar",
        f"{root}/sub/d.tar",
    ]
    everything = [f"{root}/{n}" for n in ("a.tar", "b.tar", "c.png", "sub/d.tar", "sub/deep/e.png")]
    assert storage.expand_pattern(root) == everything
    assert storage.expand_pattern(root + "/") == everything
    assert storage.expand_pattern(f"{root}/**") == everything
    assert storage.expand_pattern(f"{root}/c.png") == [f"{root}/c.png"]
    assert storage.expand_pattern(f"file://{root}/*.png") == [f"file://{root}/c.png"]


def test_expand_pattern_relative_path_becomes_absolute(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert storage.expand_pattern("sub/*.tar") == [f"{tree}/sub/d.tar"]


@pytest.mark.parametrize("pattern", ["missing.tar", "*.zip", "nothere/"])
def test_expand_pattern_with_no_match_raises(tree, pattern):
    with pytest.raises(ShardReadError, match="no input files match"):
        storage.expand_pattern(f"{tree}/{pattern}")


def test_input_root(tree):
    root = str(tree)
    assert storage.input_root(f"{root}/**/*.tar") == root
    assert storage.input_root(f"{root}/su*/d.tar") == root
    assert storage.input_root(f"{root}/sub") == f"{root}/sub"
    assert storage.input_root(f"{root}/sub/d.tar") == f"{root}/sub"
    assert storage.input_root("memory://in/x/*.png") == "memory:///in/x"


def test_read_bytes_with_limit_and_streaming(tree):
    url = str(tree / "sub" / "d.tar")
    assert storage.read_bytes(url, max_bytes=9) == b"sub/d.tar"
    with pytest.raises(InputLimitError, match="above the limit of 8"):
        storage.read_bytes(url, max_bytes=8)
    with storage.open_read(url) as handle:
        assert handle.read(4) == b"sub/"
        assert handle.read() == b"d.tar"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tree / "nope"))


def test_exists_list_and_remove(tree):
    root = str(tree)
    assert storage.exists(f"{root}/a.tar") and storage.exists(f"{root}/sub")
    assert not storage.exists(f"{root}/nope")
    assert storage.list_files(f"{root}/sub") == [f"{root}/sub/d.tar", f"{root}/sub/deep/e.png"]
    assert storage.list_files(f"{root}/nope") == []
    storage.remove(f"{root}/a.tar")
    storage.remove(f"{root}/a.tar")  # a second remove is fine
    storage.remove(f"{root}/sub", recursive=True)
    assert storage.list_files(root) == [f"{root}/b.tar", f"{root}/c.png"]


def test_memory_round_trip():
    base = f"memory://storage-test-{uuid.uuid4().hex[:8]}"
    try:
        storage.write_bytes_atomic(f"{base}/o/x.bin", b"one")
        storage.write_bytes_atomic(f"{base}/o/x.bin", b"two")
        assert storage.read_bytes(f"{base}/o/x.bin") == b"two"
        assert storage.list_files(base) == [f"memory:///{base[9:]}/o/x.bin"]
    finally:
        storage.remove(base, recursive=True)


# --------------------------------------------------- real GCS and S3 protocol servers


@pytest.fixture(params=["gcs", "s3"])
def bucket(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh ``gs://`` or ``s3://`` bucket URL on a real protocol server."""
    yield request.getfixturevalue(f"{request.param}_bucket")


def test_object_store_round_trip(bucket):
    protocol = bucket.split("://")[0]
    url = storage.join(bucket, "out", "images", "k.png")
    assert not storage.exists(url)
    storage.write_bytes_atomic(url, b"first")
    storage.write_bytes_atomic(url, b"second")
    storage.write_bytes_atomic(storage.join(bucket, "out", "report", "part-a.parquet"), b"r")
    assert storage.exists(url)
    assert storage.read_bytes(url, max_bytes=6) == b"second"
    with pytest.raises(InputLimitError):
        storage.read_bytes(url, max_bytes=5)
    with storage.open_read(url) as handle:
        assert handle.read() == b"second"
    listed = storage.list_files(bucket)
    assert listed == [f"{bucket}/out/images/k.png", f"{bucket}/out/report/part-a.parquet"]
    assert all(u.startswith(protocol + "://") for u in listed)  # no ".tmp-" leftovers either
    assert storage.expand_pattern(f"{bucket}/**/*.png") == [url]
    assert storage.expand_pattern(f"{bucket}/out") == listed
    with pytest.raises(ShardReadError):
        storage.expand_pattern(f"{bucket}/nothing/*.tar")
    storage.remove(url)
    assert not storage.exists(url)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(url)


@pytest.mark.parametrize("name", ["a*b.png", "q?.png", "img[1].png"])
def test_a_name_with_glob_characters_is_written_where_it_says(bucket, name):
    """Keys come from member names; an object store must not read them as patterns."""
    url = storage.join(bucket, "out", "images", "s", name)
    storage.write_bytes_atomic(url, b"pixels")
    assert storage.read_bytes(url) == b"pixels"
    assert storage.list_files(storage.join(bucket, "out")) == [url]
    storage.remove(url)
    assert not storage.exists(url)


def test_object_store_tar_shard(bucket):
    big = random.Random(7).randbytes(6 * 1024 * 1024)  # spans several read blocks
    members = [("a.png", b"\x89PNG-a"), ("a.json", b'{"c": 1}'), ("b.jpg", big), ("c.gif", b"g")]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    storage.write_bytes_atomic(f"{bucket}/in/assets-00000.tar", buffer.getvalue())
    plan = plan_shards(f"{bucket}/in/*.tar", files_per_shard=8)
    assert [(s.name, s.urls) for s in plan.shards] == [
        ("assets-00000.tar", (f"{bucket}/in/assets-00000.tar",))
    ]
    items = list(read_shard(plan.shards[0], limits=Limits()))
    assert all(isinstance(item, ShardMember) for item in items)
    assert [(i.key, i.ext, i.data, i.metadata) for i in items] == [
        ("a", ".png", b"\x89PNG-a", {"c": 1}),
        ("b", ".jpg", big, {}),
        ("c", ".gif", b"g", {}),
    ]
    assert items[0].source_uri == f"{bucket}/in/assets-00000.tar#a.png"


def test_a_limit_holds_where_the_store_does_not_say_the_size(monkeypatch):
    """An HTTP server without Content-Length: reading stops one byte past the limit."""
    from fsspec.implementations.memory import MemoryFileSystem

    url = f"memory://sizeless-{uuid.uuid4().hex[:8]}/big.bin"
    storage.write_bytes_atomic(url, b"x" * 20_000)
    monkeypatch.setattr(MemoryFileSystem, "size", lambda self, path: None)
    asked: list[int] = []
    real_open = MemoryFileSystem.open

    def counting_open(self, path, mode="rb", **kwargs):
        handle = real_open(self, path, mode, **kwargs)
        read = handle.read
        handle.read = lambda n=-1: asked.append(n) or read(n)
        return handle

    monkeypatch.setattr(MemoryFileSystem, "open", counting_open)
    with pytest.raises(InputLimitError, match="over the limit of 1000"):
        storage.read_bytes(url, max_bytes=1000)
    assert asked == [1001]
    assert storage.read_bytes(url, max_bytes=20_000) == b"x" * 20_000
