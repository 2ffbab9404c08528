"""Plan input shards and stream their members, whatever the shard kind.

Three kinds of input, one output type: :func:`read_shard` yields a
:class:`ShardMember` for every image it can read and a :class:`ReadFailure`
for every one it cannot, so each input image ends as exactly one report or
error row downstream. Readers stream (a tar or Parquet shard is never loaded
whole) and treat member names, sizes and contents as untrusted.

Keys, the names images are reported and written under:

* tar (WebDataset convention, as img2dataset writes them): the member path up
  to the first ``.`` of its last component; ``a/b/x.seg.png`` has key ``a/b/x``
  and field ``seg.png``. The image of a key is its member whose field is an
  image extension (``x.png``); failing that, one whose last suffix is
  (``x.seg.png``). ``x.json`` is the key's metadata; other fields are ignored.
* Parquet: the value of the key column of each row.
* plain files: the path below the input root without its extension; a
  ``.json`` file beside an image with the same stem is that image's metadata.

Every :class:`ReadFailure` from here has ``stage="read"``. Failures of a whole
shard (unreadable, corrupt, truncated, too big) carry the key ``"<shard>"``.
No two items of one shard share a key: a repeat is reported as
``KEY (duplicate 2)``, so each (shard, key) names exactly one row downstream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from stylefix_core.config import Limits
from stylefix_core.errors import InputLimitError, ShardReadError
from stylefix_core.imaging import IMAGE_EXTENSIONS, sniff_extension
from stylefix_core.io import storage
from stylefix_core.records import ReadFailure, ShardMember, ShardSpec

logger = logging.getLogger(__name__)

SHARD_KEY = "<shard>"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
METADATA_COLUMNS = ("metadata", "style")
PARQUET_BATCH_ROWS = 64

_IMAGE_FIELDS = frozenset(ext[1:] for ext in IMAGE_EXTENSIONS)
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")
# What a damaged or truncated shard raises while it is parsed.
_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
_PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError)
_EXAMPLES_LOGGED = 5

Item = ShardMember | ReadFailure


# ---------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ShardPlan:
    """The work an input pattern names.

    ``shards`` are the units of work, in a deterministic order (tar and Parquet
    shards by URL, then the plain-file groups). ``ignored`` lists the URLs of
    files that are neither a shard, an image nor an image's metadata (they are
    logged, not read). ``root`` is the input root keys are relative to.
    """

    shards: tuple[ShardSpec, ...]
    ignored: tuple[str, ...] = ()
    root: str = ""


def plan_shards(pattern: str, files_per_shard: int) -> ShardPlan:
    """Expand ``pattern`` and turn what it matches into shards.

    ``.tar``/``.tar.gz``/``.tgz`` files become one ``tar`` shard each and
    ``.parquet`` files one ``parquet`` shard each, named after their path
    below the root with ``/`` replaced by ``__`` (``sub__x.parquet``). Plain
    images are grouped, sorted by key, into ``files`` shards of at most
    ``files_per_shard`` images named ``files-00000``, ``files-00001``...; files
    sharing one key (``x.png`` and ``x.jpg``) stay in one group, which may then
    hold a few more. Raises :class:`ShardReadError` if nothing matches.
    """
    if files_per_shard < 1:
        raise ValueError("files_per_shard must be at least 1")
    root = storage.input_root(pattern)
    urls = storage.expand_pattern(pattern)
    shards: list[ShardSpec] = []
    images: list[str] = []
    others: list[str] = []
    names: set[str] = set()
    for url in urls:
        kind = _shard_kind(url)
        if kind:
            name = _unique_name(_shard_name(url, root), url, names)
            shards.append(ShardSpec(name=name, kind=kind, urls=(url,), root=root))
        elif _suffix(url) in IMAGE_EXTENSIONS:
            images.append(url)
        else:
            others.append(url)
    ignored = _ignored_files(others, images)
    shards.extend(_file_groups(images, root, files_per_shard))
    return ShardPlan(shards=tuple(shards), ignored=tuple(ignored), root=root)


def _shard_kind(url: str) -> str:
    lower = url.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return ""


def _shard_name(url: str, root: str) -> str:
    """A deterministic, filesystem-safe name: the path below root, ``/`` -> ``__``."""
    try:
        relative = storage.relative_to(url, root)
    except ValueError:
        relative = url.rsplit("/", 1)[-1]
    return _UNSAFE_NAME_CHARS.sub("_", relative.replace("/", "__"))


def _unique_name(name: str, url: str, taken: set[str]) -> str:
    """Disambiguate the rare clash (``a/b.tar`` vs ``a__b.tar``) with a URL hash."""
    if name in taken:
        name = f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
    taken.add(name)
    return name


def _ignored_files(others: list[str], images: list[str]) -> list[str]:
    """Everything but image sidecars; logged as one summary, each at DEBUG."""
    stems = {_strip_suffix(url) for url in images}
    ignored = [
        url for url in others if not (_suffix(url) == ".json" and _strip_suffix(url) in stems)
    ]
    for url in ignored:
        logger.debug("ignoring input file that is not a shard or an image: %s", storage.redact(url))
    if ignored:
        logger.warning(
            "ignoring %d input file(s) that are not shards or images, e.g. %s",
            len(ignored),
            storage.redact(", ".join(ignored[:_EXAMPLES_LOGGED])),
        )
    return ignored


def _file_groups(images: list[str], root: str, per_group: int) -> list[ShardSpec]:
    keyed = sorted((_file_key(url, root), url) for url in images)
    groups: list[list[str]] = []
    previous_key = None
    for key, url in keyed:
        if not groups or (len(groups[-1]) >= per_group and key != previous_key):
            groups.append([])
        groups[-1].append(url)
        previous_key = key
    return [
        ShardSpec(name=f"files-{index:05d}", kind="files", urls=tuple(group), root=root)
        for index, group in enumerate(groups)
    ]


# ----------------------------------------------------------------------- reading


def read_shard(
    spec: ShardSpec,
    *,
    limits: Limits,
    key_column: str = "key",
    image_column: str = "image",
) -> Iterator[Item]:
    """Stream the members of one shard as ``ShardMember`` or ``ReadFailure``.

    ``key_column`` and ``image_column`` name the Parquet columns; an optional
    ``metadata`` column (JSON text, struct or map) and ``style`` column go into
    each member's metadata. Raises ``ValueError`` for an unknown shard kind;
    everything that goes wrong with the data itself is yielded as a failure.
    Every item of one shard has its own key (see :func:`_with_unique_keys`).
    """
    if spec.kind == "tar":
        items = _read_tar(spec, limits)
    elif spec.kind == "parquet":
        items = _read_parquet(spec, limits, key_column, image_column)
    elif spec.kind == "files":
        items = _read_files(spec, limits)
    else:
        raise ValueError(f"unknown shard kind {spec.kind!r} (expected tar, parquet or files)")
    return _with_unique_keys(items)


def _with_unique_keys(items: Iterator[Item]) -> Iterator[Item]:
    """Give each item a key no earlier item of the shard has.

    (shard, key) names exactly one report or error row, so a second item
    under a taken key (a duplicate, or two unsafe members of the same name)
    becomes ``KEY (duplicate 2)``, ``KEY (duplicate 3)``... A member whose
    key a failure row already took is itself reported as a duplicate.
    """
    taken: set[str] = set()
    for item in items:
        if item.key in taken:
            free = _free_key(item.key, taken)
            if isinstance(item, ShardMember):
                message = f"key {item.key!r} was already used earlier in the shard"
                item = _failure_for(item.shard, free, item.source_uri, "DuplicateKey", message)
            else:
                item = dataclasses.replace(item, key=free)
        taken.add(item.key)
        yield item


def _free_key(key: str, taken: set[str]) -> str:
    number = 2
    while f"{key} (duplicate {number})" in taken:
        number += 1
    return f"{key} (duplicate {number})"


def _failure_for(shard: str, key: str, uri: str, error_type: str, message: str) -> ReadFailure:
    return ReadFailure(
        shard=shard, key=key, source_uri=uri, stage="read", error_type=error_type, message=message
    )


def _failure(spec: ShardSpec, key: str, uri: str, error_type: str, message: str) -> ReadFailure:
    return _failure_for(spec.name, key, uri, error_type, message)


def _open_shard(
    spec: ShardSpec, limits: Limits, read: Callable[[IO[bytes]], Iterator[Item]]
) -> Iterator[Item]:
    """Size-check and open a single-file shard; failures to do so are one row."""
    url = spec.urls[0]
    try:
        size = storage.size_of(url)
        if size is not None and size > limits.max_shard_bytes:
            raise InputLimitError(
                f"shard is {size} bytes, above the limit of {limits.max_shard_bytes} "
                "(max_shard_bytes); none of its members were read"
            )
        with storage.open_read(url) as raw:
            yield from read(raw)
    except InputLimitError as exc:
        yield _failure(spec, SHARD_KEY, url, "InputLimitError", str(exc))
    except Exception as exc:
        if not storage.is_storage_error(exc):
            raise
        message = f"cannot open shard: {type(exc).__name__}: {storage.redact(str(exc))}"
        yield _failure(spec, SHARD_KEY, url, "ShardReadError", message)


# ---------------------------------------------------------------------------- tar


def _read_tar(spec: ShardSpec, limits: Limits) -> Iterator[Item]:
    return _open_shard(spec, limits, lambda raw: _TarReader(spec, limits).read(raw))


class _TrackedTarInfo(tarfile.TarInfo):
    """Remembers why header parsing stopped.

    In stream mode ``tarfile`` ends iteration quietly on a truncated or
    garbled header after the first member; only an all-zero block is a real
    end of archive, so the reader checks which one it was.
    """

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as exc:
            tar.stylefix_stop = exc  # type: ignore[attr-defined]
            raise


class _Problem(NamedTuple):
    """Why a key failed; becomes a ReadFailure once the key's URI is known."""

    error_type: str
    message: str


@dataclass
class _KeyGroup:
    """The consecutive tar members of one key, as they are read."""

    key: str
    image: bytes | None = None
    image_name: str = ""
    image_rank: int = 99
    metadata: dict[str, Any] = field(default_factory=dict)
    failure: _Problem | None = None
    fields: set[str] = field(default_factory=set)
    repeats: list[str] = field(default_factory=list)  # members repeating a field

    def fail(self, error_type: str, message: str) -> None:
        """Record the first problem; later members of the key are then skipped."""
        if self.failure is None:
            self.failure = _Problem(error_type, message)


class _TarReader:
    """Walks one tar stream member by member, grouping members by key."""

    def __init__(self, spec: ShardSpec, limits: Limits) -> None:
        self.spec = spec
        self.url = spec.urls[0]
        self.limits = limits
        self.seen: set[str] = set()
        self.group: _KeyGroup | None = None
        self.count = 0
        self.last_name = ""

    def read(self, raw: IO[bytes]) -> Iterator[Item]:
        try:
            with tarfile.open(fileobj=raw, mode="r|*", tarinfo=_TrackedTarInfo) as tar:
                while (info := tar.next()) is not None:
                    tar.members.clear()  # stream mode keeps every header otherwise
                    yield from self._member(tar, info)
                stop = getattr(tar, "stylefix_stop", None)
                if not isinstance(stop, tarfile.EOFHeaderError):
                    raise tarfile.ReadError(
                        f"archive ends without an end-of-archive block ({stop})"
                    )
        except Exception as exc:
            if not (isinstance(exc, _TAR_ERRORS) or storage.is_storage_error(exc)):
                raise
            yield from self._broken(exc)
            return
        yield from self._finish_group()

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[Item]:
        self.count += 1
        self.last_name = info.name
        if info.isdir():
            return
        name = _safe_member_name(info.name)
        if name is None:
            message = f"unsafe member name {_printable(info.name)!r}; not extracted"
            yield self._fail(_printable(info.name) or "<empty name>", "UnsafeMemberError", message)
            return
        split = _split_member(name)
        if split is None:
            yield from self._keyless(name)
            return
        key, member_field = split
        if self.group is None or self.group.key != key:
            yield from self._finish_group()
            self._start_group(key)
        self._add(tar, info, member_field)

    def _keyless(self, name: str) -> Iterator[Item]:
        """A member named like an image but without a key is an error row, not lost."""
        if _suffix(name) not in IMAGE_EXTENSIONS:
            logger.debug("ignoring tar member without a key.field name: %s", name)
            return
        message = (
            f"member {name!r} looks like an image but has no key "
            "(a name before the first '.', as in KEY.png); not processed"
        )
        yield self._fail(name, "MissingKey", message)

    def _start_group(self, key: str) -> None:
        self.group = _KeyGroup(key)
        if key in self.seen:
            message = f"key {key!r} appears again later in the shard; only its first member is used"
            self.group.fail("DuplicateKey", message)
        self.seen.add(key)

    def _add(self, tar: tarfile.TarFile, info: tarfile.TarInfo, member_field: str) -> None:
        group = self.group
        assert group is not None
        if member_field in group.fields:
            group.repeats.append(info.name)
            return
        group.fields.add(member_field)
        if not info.isreg():
            group.fail(
                "UnsafeMemberError",
                f"member {info.name!r} is a {_member_type(info)}, not a regular file; "
                "not extracted",
            )
            return
        rank = _image_rank(member_field)
        wanted = rank < group.image_rank or member_field.lower() == "json"
        if group.failure is not None or not wanted:
            return
        if info.size > self.limits.max_file_bytes:
            group.fail(
                "InputLimitError",
                f"member {info.name!r} is {info.size} bytes, "
                f"above the limit of {self.limits.max_file_bytes} (max_file_bytes)",
            )
            return
        data = _read_member(tar, info)
        if rank < group.image_rank:
            group.image, group.image_name, group.image_rank = data, info.name, rank
        else:
            group.metadata = _parse_metadata(data, f"{self.url}#{info.name}")

    def _finish_group(self) -> Iterator[Item]:
        group, self.group = self.group, None
        if group is None:
            return
        uri = f"{self.url}#{group.image_name or group.key}"
        if group.failure is not None:
            yield _failure(self.spec, group.key, uri, *group.failure)
        elif group.image is None:
            message = f"key {group.key!r} has no image member ({', '.join(IMAGE_EXTENSIONS)})"
            yield _failure(self.spec, group.key, uri, "MissingImageMember", message)
        else:
            yield ShardMember(
                shard=self.spec.name,
                key=group.key,
                source_uri=uri,
                data=group.image,
                ext="." + group.image_name.rsplit(".", 1)[-1].lower(),
                metadata=group.metadata,
            )
        for name in group.repeats:
            message = f"member {name!r} repeats a member name of key {group.key!r}; not used"
            yield _failure(self.spec, group.key, f"{self.url}#{name}", "DuplicateKey", message)

    def _broken(self, exc: BaseException) -> Iterator[Item]:
        """Yield what was read whole, then one failure saying where the tar broke."""
        if self.group is not None and (self.group.image is None and self.group.failure is None):
            self.group = None  # its image was being read when the stream broke
        yield from self._finish_group()
        message = (
            f"truncated or corrupt tar after {self.count} member header(s), "
            f"last member {self.last_name!r}: {type(exc).__name__}: {exc}"
        )
        yield _failure(self.spec, SHARD_KEY, self.url, "ShardReadError", message)

    def _fail(self, key: str, error_type: str, message: str) -> ReadFailure:
        return _failure(self.spec, key, f"{self.url}#{key}", error_type, message)


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:  # pragma: no cover - regular files always have a handle
        raise tarfile.ReadError(f"member {info.name!r} has no data")
    with handle:
        return handle.read()


def _safe_member_name(name: str) -> str | None:
    """The name without ``./`` and empty segments, or None when it is unsafe.

    Unsafe: empty, absolute, any ``..`` segment, a backslash (a separator on
    Windows) or NUL, or bytes that are not UTF-8 (keys become file names).
    """
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _split_member(name: str) -> tuple[str, str] | None:
    """``a/b/x.seg.png`` -> (``a/b/x``, ``seg.png``); None without a key or a field."""
    directory, _, base = name.rpartition("/")
    stem, dot, member_field = base.partition(".")
    if not stem or not dot or not member_field:
        return None
    return (f"{directory}/{stem}" if directory else stem), member_field


def _image_rank(member_field: str) -> int:
    """0 for ``png``-like fields, 1 for ``seg.png``-like, 99 for non-images."""
    lower = member_field.lower()
    if lower in _IMAGE_FIELDS:
        return 0
    if "." + lower.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS:
        return 1
    return 99


def _member_type(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.isdev():
        return "device or FIFO"
    return f"member of type {info.type!r}"


def _printable(name: str) -> str:
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
    """JSON object to dict; bad metadata is logged and dropped, never fatal."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        logger.warning("ignoring unreadable metadata %s: %s", storage.redact(where), exc)
        return {}
    if not isinstance(value, dict):
        logger.warning(
            "ignoring metadata %s: a JSON %s, not an object",
            storage.redact(where),
            type(value).__name__,
        )
        return {}
    return value


# ------------------------------------------------------------------------ parquet


def _read_parquet(
    spec: ShardSpec, limits: Limits, key_column: str, image_column: str
) -> Iterator[Item]:
    def read(raw: IO[bytes]) -> Iterator[Item]:
        return _ParquetReader(spec, limits, key_column, image_column).read(raw)

    return _open_shard(spec, limits, read)


class _ParquetReader:
    """Reads a Parquet shard a few rows at a time, only the columns it needs."""

    def __init__(self, spec: ShardSpec, limits: Limits, key_column: str, image_column: str):
        self.spec = spec
        self.url = spec.urls[0]
        self.limits = limits
        self.key_column = key_column
        self.image_column = image_column
        self.seen: set[str] = set()

    def read(self, raw: IO[bytes]) -> Iterator[Item]:
        row = 0
        try:
            parquet = pq.ParquetFile(raw)
            columns = self._columns(parquet.schema_arrow)
            self._check_row_groups(parquet.metadata, columns)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                values = {name: batch.column(name).to_pylist() for name in columns}
                for offset in range(batch.num_rows):
                    yield self._row(row + offset, {n: v[offset] for n, v in values.items()})
                row += batch.num_rows
        except ShardReadError as exc:
            message = f"unusable parquet shard: {exc}"
            yield _failure(self.spec, SHARD_KEY, self.url, "ShardReadError", message)
        except Exception as exc:
            if not (isinstance(exc, _PARQUET_ERRORS) or storage.is_storage_error(exc)):
                raise
            message = f"unreadable parquet shard after {row} row(s): {type(exc).__name__}: {exc}"
            yield _failure(self.spec, SHARD_KEY, self.url, "ShardReadError", message)

    def _check_row_groups(self, metadata: pq.FileMetaData, columns: list[str]) -> None:
        """Refuse row groups that would decompress to more than a whole shard may hold.

        A row group's columns are decoded whole, so a small file of highly
        compressed cells (a compression bomb) is refused by its declared
        sizes before any page is decompressed.
        """
        wanted = set(columns)
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            size = sum(
                group.column(i).total_uncompressed_size
                for i in range(group.num_columns)
                if group.column(i).path_in_schema.split(".")[0] in wanted
            )
            if size > self.limits.max_shard_bytes:
                raise InputLimitError(
                    f"parquet row group {index} would decompress to {size} bytes, above the "
                    f"limit of {self.limits.max_shard_bytes} (max_shard_bytes); shard not read"
                )

    def _columns(self, schema: pa.Schema) -> list[str]:
        key_type = _field_type(schema, self.key_column)
        image_type = _field_type(schema, self.image_column)
        key_ok = key_type is not None and (_is_text(key_type) or pa.types.is_integer(key_type))
        image_ok = image_type is not None and _is_bytes(image_type)
        if not (key_ok and image_ok):
            found = ", ".join(f"{f.name} ({f.type})" for f in schema) or "none"
            raise ShardReadError(
                f"needs a string column {self.key_column!r} and a binary column "
                f"{self.image_column!r}; columns found: {found}"
            )
        optional = [name for name in METADATA_COLUMNS if name in schema.names]
        return [self.key_column, self.image_column, *optional]

    def _row(self, index: int, values: dict[str, Any]) -> Item:
        raw_key, image = values[self.key_column], values[self.image_column]
        key = f"<row {index}>" if raw_key is None else str(raw_key)
        uri = f"{self.url}#{key}"
        if raw_key is None or key == "":
            message = f"row {index} has no key (null or empty in column {self.key_column!r})"
            return _failure(self.spec, key, uri, "MissingKey", message)
        if _safe_member_name(key) != key:
            message = f"unsafe key {key!r} in row {index}: it could name a file outside the output"
            return _failure(self.spec, key, uri, "UnsafeMemberError", message)
        if key in self.seen:
            message = f"key {key!r} appears again in row {index}; only its first row is used"
            return _failure(self.spec, key, uri, "DuplicateKey", message)
        self.seen.add(key)
        if image is None:
            message = f"row {index} has no image (null in column {self.image_column!r})"
            return _failure(self.spec, key, uri, "MissingImageMember", message)
        if len(image) > self.limits.max_file_bytes:
            message = (
                f"image is {len(image)} bytes, above the limit of "
                f"{self.limits.max_file_bytes} (max_file_bytes)"
            )
            return _failure(self.spec, key, uri, "InputLimitError", message)
        return ShardMember(
            shard=self.spec.name,
            key=key,
            source_uri=uri,
            data=bytes(image),
            ext=sniff_extension(image),
            metadata=_row_metadata(values, uri),
        )


def _field_type(schema: pa.Schema, name: str) -> pa.DataType | None:
    index = schema.get_field_index(name)
    return schema.field(index).type if index >= 0 else None


def _is_text(dtype: pa.DataType) -> bool:
    checks = ("is_string", "is_large_string", "is_string_view")  # views: pyarrow >= 16
    return any(getattr(pa.types, check, _never)(dtype) for check in checks)


def _is_bytes(dtype: pa.DataType) -> bool:
    checks = ("is_binary", "is_large_binary", "is_fixed_size_binary", "is_binary_view")
    return any(getattr(pa.types, check, _never)(dtype) for check in checks)


def _never(_: pa.DataType) -> bool:
    return False


def _row_metadata(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Merge a ``metadata`` column (JSON text, struct or map) and a ``style`` column."""
    metadata: dict[str, Any] = {}
    raw = values.get("metadata")
    if isinstance(raw, (str, bytes)):
        metadata.update(_parse_metadata(raw.encode() if isinstance(raw, str) else raw, where))
    elif isinstance(raw, dict):
        metadata.update(raw)
    elif isinstance(raw, list):  # a map column arrives as (key, value) pairs
        if all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in raw):
            metadata.update(dict(raw))
        else:
            logger.warning("ignoring metadata %s: a list, not a map", storage.redact(where))
    if values.get("style") is not None:
        metadata["style"] = values["style"]
    return metadata


# -------------------------------------------------------------------------- files


def _read_files(spec: ShardSpec, limits: Limits) -> Iterator[Item]:
    seen: set[str] = set()
    for url in spec.urls:
        key = _file_key(url, spec.root)
        if _printable(key) != key:  # a local name of bytes that are not UTF-8
            message = f"file name {_printable(key)!r} is not UTF-8; not read"
            yield _failure(spec, _printable(key), _printable(url), "UnsafeMemberError", message)
            continue
        if key in seen:
            message = f"another file has the key {key!r}; only the first in name order is used"
            yield _failure(spec, key, url, "DuplicateKey", message)
            continue
        seen.add(key)
        yield _read_file(spec, url, key, limits)


def _read_file(spec: ShardSpec, url: str, key: str, limits: Limits) -> Item:
    try:
        data = storage.read_bytes(url, max_bytes=limits.max_file_bytes)
    except InputLimitError as exc:
        return _failure(spec, key, url, "InputLimitError", f"{exc} (max_file_bytes)")
    except Exception as exc:
        if not storage.is_storage_error(exc):
            raise
        return _failure(spec, key, url, type(exc).__name__, storage.redact(str(exc)))
    return ShardMember(
        shard=spec.name,
        key=key,
        source_uri=url,
        data=data,
        ext=_suffix(url),
        metadata=_sidecar_metadata(url, limits),
    )


def _sidecar_metadata(url: str, limits: Limits) -> dict[str, Any]:
    """``x.json`` beside ``x.png``; one extra request per image, a 404 when absent."""
    sidecar = _strip_suffix(url) + ".json"
    try:
        raw = storage.read_bytes(sidecar, max_bytes=limits.max_file_bytes)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        if not (isinstance(exc, InputLimitError) or storage.is_storage_error(exc)):
            raise
        logger.warning(
            "ignoring unreadable metadata %s: %s", storage.redact(sidecar), storage.redact(str(exc))
        )
        return {}
    return _parse_metadata(raw, sidecar)


def _file_key(url: str, root: str) -> str:
    try:
        relative = storage.relative_to(url, root) if root else url.rsplit("/", 1)[-1]
    except ValueError:
        relative = url.rsplit("/", 1)[-1]
    return _strip_suffix(relative)


def _suffix(url: str) -> str:
    """Lower-case last suffix of the last path component, with its dot."""
    base = url.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _strip_suffix(url: str) -> str:
    base_start = url.rfind("/") + 1
    dot = url.rfind(".")
    return url[:dot] if dot > base_start else url
