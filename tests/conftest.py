"""Shared pytest fixtures.

Storage fixtures (from the storage/shard tests): real GCS and S3 protocol
servers on 127.0.0.1, started once per session. ``gcs_server`` / ``s3_server``
yield the endpoint URL and, while the session runs, point the environment at
it so that plain ``gs://`` / ``s3://`` URLs reach it through gcsfs / s3fs.
``gcs_bucket`` / ``s3_bucket`` give each test a fresh bucket URL.
``photo_patches`` are the quality benchmark's real photographs as 64 px patches.
"""

from __future__ import annotations

import os

# gcsfs reads this at import time; without it every bucket operation waits 60 s
# on a gRPC probe that the emulator cannot answer. Must precede any gcsfs import.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from collections.abc import Iterator  # noqa: E402

# tests/ has no __init__.py, so pytest puts it on sys.path for this conftest.
import object_stores  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """Endpoint URL of a GCS emulator; plain ``gs://`` URLs reach it meanwhile."""
    server = object_stores.start_gcs_server()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in object_stores.gcs_environment(server.endpoint).items():
            patch.setenv(name, value)
        object_stores.clear_client_caches()
        try:
            yield server.endpoint
        finally:
            server.stop()
    object_stores.clear_client_caches()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server; plain ``s3://`` URLs reach it meanwhile."""
    server = object_stores.start_s3_server()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in object_stores.s3_environment(server.endpoint).items():
            patch.setenv(name, value)
        object_stores.clear_client_caches()
        try:
            yield server.endpoint
        finally:
            server.stop()
    object_stores.clear_client_caches()


@pytest.fixture
def gcs_bucket(gcs_server: str) -> str:
    """``gs://test-<random>``: a new empty bucket on the session's GCS emulator."""
    return object_stores.create_bucket("gs")


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """``s3://test-<random>``: a new empty bucket on the session's S3 server."""
    return object_stores.create_bucket("s3")


@pytest.fixture(scope="session")
def photo_patches() -> list:
    """Real photo patches as (3, 64, 64) tensors, shuffled with a seed so that
    every photo is on both sides of a split."""
    import numpy as np

    from stylefix_core.evaluation.photos import grid_patches, load_photos
    from stylefix_core.training.data import to_tensor

    found = [to_tensor(p) for _, p in grid_patches(load_photos(), 64)]
    order = np.random.default_rng(0).permutation(len(found))
    return [found[i] for i in order]
