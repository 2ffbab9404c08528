"""The one storage bridge: every read, write and listing of data goes through here.

It is a thin layer over fsspec, so plain local paths, ``file://``,
``memory://``, ``gs://`` (gcsfs) and ``s3://`` (s3fs) behave alike. What it
adds is what a batch job on flaky networks needs and fsspec leaves to callers:

* URLs in, URLs out. Listings return full URLs that keep the caller's
  protocol (``gs://b/x.tar``); plain local paths stay plain absolute paths.
* Retries with exponential back-off and jitter for transient errors only
  (:func:`retry`); a missing file fails at once.
* Atomic writes (:func:`write_bytes_atomic`): a crashed writer never leaves a
  half-written file under the final name.
* Fresh listings: fsspec's listing caches are dropped before a listing or an
  existence check, so files written by other workers are seen.

Errors: reads raise the filesystem's own errors (``FileNotFoundError`` and
other ``OSError``) after retries, plus :class:`InputLimitError` for size
limits; listing raises :class:`ShardReadError` when a pattern matches nothing;
writes raise :class:`OutputWriteError`.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from stylefix_core.errors import InputLimitError, OutputWriteError, ShardReadError

logger = logging.getLogger(__name__)

T = TypeVar("T")

GLOB_CHARS = "*?["
TEMP_PREFIX = ".tmp-"  # names of not-yet-moved writes; see write_bytes_atomic
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# OSErrors that say something about the path, not the network: retrying is futile.
_PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    io.UnsupportedOperation,
)
# OSErrors by number that no retry can fix (a name too long, a read-only disk).
_PERMANENT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EINVAL, errno.EROFS, errno.ELOOP, errno.ENOTDIR, errno.EISDIR}
)
_BOTOCORE_TRANSIENT = (
    "ConnectionError",
    "HTTPClientError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ResponseStreamingError",
)
_AIOHTTP_TRANSIENT = ("ClientConnectionError", "ClientPayloadError", "ServerTimeoutError")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# A parameter whose name holds one of these words, where a parameter can start
# (after ?, &, ;, a space or a quote; not inside a path segment such as
# "/product_key=7.png"), up to & or # (a tar member's name stays).
_SECRET_PARAM = re.compile(
    r"(?i)((?:^|(?<=[?&;\s\"',]))[\w.-]*?"
    r"(?:signature|token|credential|secret|key|sig|password|pwd|auth)[\w.-]*=)[^&#\s\"']+"
)
_jitter = random.Random()


# --------------------------------------------------------------------------- URLs


def url_to_fs(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem serving ``url`` and the path within it (fsspec's own rules)."""
    return fsspec.core.url_to_fs(url)


def join(base: str, *parts: str) -> str:
    """Join URL or path segments with ``/`` (never ``os.path``, which breaks URLs).

    Empty and ``.`` segments are dropped; a ``..`` segment raises ``ValueError``
    so that a key taken from untrusted input cannot climb out of ``base``.
    """
    segments: list[str] = []
    for part in parts:
        for segment in part.split("/"):
            if segment == "..":
                raise ValueError(f"refusing '..' in path segment {part!r}")
            if segment and segment != ".":
                segments.append(segment)
    if not segments:
        return base
    head = base if base.endswith("/") else base + "/"
    return head + "/".join(segments)


def input_root(pattern: str) -> str:
    """The folder that a pattern's files are named relative to.

    For a glob it is the directory part before the first glob character
    (``gs://b/in/**/*.png`` -> ``gs://b/in``); for a directory, the directory;
    for a single file, its parent. Returned in the same URL form as
    :func:`expand_pattern` returns files, so keys can be cut from them.
    """
    fs, path = url_to_fs(pattern)
    cut = _first_glob_char(path)
    if cut >= 0:
        root = _parent(path[:cut] + "x")
    elif _info_type(fs, path) == "directory":
        root = path.rstrip("/") or path
    else:
        root = _parent(path)
    return _to_url(pattern, fs, root)


def relative_to(url: str, root: str) -> str:
    """``url`` without the ``root`` prefix (``root`` as from :func:`input_root`)."""
    prefix = root if root.endswith("/") else root + "/"
    if not url.startswith(prefix):
        raise ValueError(f"{redact(url)} is not below {redact(root)}")
    return url[len(prefix) :]


# ----------------------------------------------------------------------- listing


def expand_pattern(pattern: str) -> list[str]:
    """Sorted URLs of the files a glob, directory or single file names.

    ``*`` and ``?`` match within one path segment, ``**`` across segments; a
    directory stands for every file below it, recursively. Raises
    :class:`ShardReadError` when nothing matches, since an empty input is
    nearly always a typo and a silently empty job is worse than a failed one.
    """
    fs, path = url_to_fs(pattern)
    fs.invalidate_cache()
    if _first_glob_char(path) >= 0:
        matches = retry(fs.glob, path, detail=True)
        paths = [name for name, info in matches.items() if info.get("type") == "file"]
    else:
        kind = _info_type(fs, path)
        if kind == "directory":
            paths = retry(fs.find, path)
        else:
            paths = [path] if kind == "file" else []
    if not paths:
        raise ShardReadError(f"no input files match {redact(pattern)!r}")
    return sorted(_to_url(pattern, fs, name) for name in paths)


def list_files(prefix: str) -> list[str]:
    """Sorted URLs of every file below ``prefix`` (recursively); ``[]`` if none."""
    fs, path = url_to_fs(prefix)
    fs.invalidate_cache()
    try:
        found = retry(fs.find, path)
    except FileNotFoundError:
        return []
    return sorted(_to_url(prefix, fs, name) for name in found)


def exists(url: str) -> bool:
    """Whether a file or directory exists at ``url``.

    Unlike ``fs.exists``, a network failure is retried and then raised rather
    than reported as "does not exist".
    """
    fs, path = url_to_fs(url)
    return _info_type(fs, path) is not None


# ------------------------------------------------------------------------- reads


def read_bytes(url: str, max_bytes: int | None = None) -> bytes:
    """The whole content of ``url``.

    With ``max_bytes``, the size is checked before reading, raising
    :class:`InputLimitError` rather than pulling an oversized object into memory;
    where the store does not say (an HTTP server without Content-Length), the
    object is streamed and reading stops one byte past the limit.
    """
    fs, path = url_to_fs(url)
    if max_bytes is None:
        return retry(fs.cat_file, path)
    fs.invalidate_cache(path)
    size = retry(fs.size, path)
    if size is not None and size > max_bytes:
        raise InputLimitError(f"{redact(url)} is {size} bytes, above the limit of {max_bytes}")
    if size is None:
        return retry(_read_at_most, fs, path, url, max_bytes)
    data = retry(fs.cat_file, path)
    if len(data) > max_bytes:  # the object grew after the size check
        raise InputLimitError(f"{redact(url)} is over the limit of {max_bytes} bytes")
    return data


def _read_at_most(fs: AbstractFileSystem, path: str, url: str, max_bytes: int) -> bytes:
    with fs.open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputLimitError(f"{redact(url)} is over the limit of {max_bytes} bytes")
    return data


def size_of(url: str) -> int | None:
    """Size in bytes of the file at ``url`` (``None`` if the store does not say)."""
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)
    return retry(fs.size, path)


@contextmanager
def open_read(url: str) -> Iterator[IO[bytes]]:
    """A binary file object for streaming ``url``; opening is retried, reading is not."""
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)
    handle = retry(fs.open, path, "rb")
    with handle:
        yield handle


# ------------------------------------------------------------------------ writes


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` so that readers see the old file or the new one.

    The bytes go to a temporary sibling (``.tmp-<name>-<uuid>``) first. Locally
    it is then renamed into place (``os.replace``, atomic on POSIX). On object
    stores it is copied server-side onto the final key and deleted: one
    object's write is atomic there anyway, and the temporary name still keeps a
    writer that dies mid-upload from leaving a partial final object (gcsfs's
    ``mv`` is avoided: the GCS emulator answers it 501 and gcsfs retries ~33 s).
    Parent directories are created for local paths. Raises
    :class:`OutputWriteError` after retries.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    fs, path = url_to_fs(url)
    writer = _write_local_atomic if isinstance(fs, LocalFileSystem) else _write_remote_atomic
    try:
        retry(writer, fs, path, bytes(data))
    except Exception as exc:  # any failure to write is an output error for the caller
        raise OutputWriteError(
            f"could not write {redact(url)}: {type(exc).__name__}: {redact(str(exc))}"
        ) from exc


def remove(url: str, *, recursive: bool = False) -> None:
    """Delete ``url`` (a directory only with ``recursive``); a missing path is fine."""
    fs, path = url_to_fs(url)
    try:
        # rm_file for one object: fs.rm reads *, ? and [ in the name as a glob
        retry(fs.rm, path, recursive=True) if recursive else retry(fs.rm_file, path)
    except FileNotFoundError:
        logger.debug("nothing to remove at %s", redact(url))
    fs.invalidate_cache(path)


def _write_local_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, _temp_name(name))
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _write_remote_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    parent, _, name = path.rpartition("/")
    temp = f"{parent}/{_temp_name(name)}" if parent else _temp_name(name)
    try:
        fs.pipe_file(temp, data)
        # cp_file, not copy: copy reads *, ? and [ in a key as a glob, and
        # "a*b.png" ended inside a folder of that name, "img[1].png" nowhere
        fs.cp_file(temp, path)
    finally:
        _remove_quietly(fs, temp)
        fs.invalidate_cache(path)


def _remove_quietly(fs: AbstractFileSystem, path: str) -> None:
    """Best-effort clean-up of a temporary object; a leftover is logged, not raised."""
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except Exception as exc:  # clean-up must not hide the write's own outcome
        logger.warning("could not remove temporary object %s: %s", redact(path), exc)


def _temp_name(name: str) -> str:
    return f"{TEMP_PREFIX}{name[:96]}-{uuid.uuid4().hex}"


def is_temporary(url: str) -> bool:
    """Whether ``url`` names the temporary of a write that never finished."""
    return url.rstrip("/").rsplit("/", 1)[-1].startswith(TEMP_PREFIX)


# ------------------------------------------------------------------------- retry


def retry(
    fn: Callable[..., T], *args: Any, attempts: int = 4, base_delay: float = 0.2, **kwargs: Any
) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient errors with back-off.

    The n-th retry waits ``base_delay * 2**(n-1)`` seconds times a random factor
    in [0.5, 1.5) so that many workers hitting the same outage do not retry in
    lock-step. Non-transient errors (see :func:`is_transient`) and the last
    attempt's error propagate unchanged. Each retry is logged at WARNING with
    credentials in URLs redacted.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = base_delay * 2 ** (attempt - 1) * _jitter.uniform(0.5, 1.5)
            logger.warning(
                "transient %s in %s (attempt %d of %d), retrying in %.2f s: %s",
                type(exc).__name__,
                getattr(fn, "__qualname__", repr(fn)),
                attempt,
                attempts,
                delay,
                redact(str(exc)),
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: network trouble, time-outs, 5xx and 429.

    aiohttp, botocore and gcsfs errors are recognised when those libraries are
    loaded, without making them dependencies: an exception of a module that
    was never imported cannot be raised.
    """
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False
    if isinstance(exc, (OSError, asyncio.TimeoutError)):  # OSError covers ConnectionError
        return True
    if _http_status(exc) in TRANSIENT_HTTP_STATUS:
        return True
    return _is_library_transient(exc)


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from talking to storage (OS, HTTP or client library).

    Readers turn these into failure rows after retries; anything else is a bug
    and propagates.
    """
    return isinstance(exc, OSError) or _http_status(exc) is not None or is_transient(exc)


def _http_status(exc: BaseException) -> int | None:
    for attribute in ("status", "code", "status_code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def _is_library_transient(exc: BaseException) -> bool:
    for module_name, names in (
        ("aiohttp", _AIOHTTP_TRANSIENT),
        ("botocore.exceptions", _BOTOCORE_TRANSIENT),
    ):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        classes = tuple(getattr(module, name) for name in names if hasattr(module, name))
        if classes and isinstance(exc, classes):
            return True
    return False


# ----------------------------------------------------------------------- helpers


def _to_url(like: str, fs: AbstractFileSystem, path: str) -> str:
    """Turn a filesystem path back into a URL of the same form as ``like``."""
    if "::" in like:
        return like.rsplit("::", 1)[0] + "::" + fs.unstrip_protocol(path)
    if "://" not in like and isinstance(fs, LocalFileSystem):
        return path
    return fs.unstrip_protocol(path)


def _info_type(fs: AbstractFileSystem, path: str) -> str | None:
    """``"file"``, ``"directory"`` or ``None`` when nothing is at ``path``."""
    fs.invalidate_cache(path)
    try:
        info = retry(fs.info, path)
    except FileNotFoundError:
        return None
    return info.get("type")


def _first_glob_char(path: str) -> int:
    hits = [path.find(char) for char in GLOB_CHARS if char in path]
    return min(hits) if hits else -1


def _parent(path: str) -> str:
    head, sep, _ = path.rstrip("/").rpartition("/")
    if head:
        return head
    return sep  # "/" for a top-level local path, "" for a bucket


def redact(text: str) -> str:
    """Hide ``user:password@`` in URLs and signature/token query parameters (for logs)."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("***@", text))
