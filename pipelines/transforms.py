"""Thin Beam transforms over stylefix_core: read, decode, route to a style, infer, write.

Every element that can fail leaves its DoFn as exactly one of: the next
stage's input, or an error row keyed by shard. Rows meet per shard in
``WriteShardParts``, which writes the report part, the error part and, last,
the completion marker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.model_handler import StyleFixModelHandler
from pipelines.progress import ProgressTap
from stylefix_core.config import JobConfig, Mode
from stylefix_core.engine import ImageFailure, ImageResult
from stylefix_core.errors import StyleFixError
from stylefix_core.imaging import encode_image
from stylefix_core.io import outputs, shards
from stylefix_core.io.outputs import ShardCounts
from stylefix_core.members import decode_member
from stylefix_core.records import (
    DecodedImage,
    ErrorRow,
    ReadFailure,
    RoutedImage,
    ShardMember,
    ShardSpec,
)
from stylefix_core.report import ERROR_SCHEMA, REPORT_SCHEMA, error_row, report_row, to_table
from stylefix_core.scoring import run_collapse
from stylefix_core.styles import StyleTable

NAMESPACE = "stylefix"
REPORT, ERROR = "report", "error"
# A shard's own name goes through the grouping even when it yields no rows, so
# that an empty or unreadable shard still gets its parts and marker.
SEED = "seed"


def _error(
    config: JobConfig, shard: str, key: str, source_uri: str, exc: BaseException, stage: str
) -> tuple:
    row = ErrorRow(
        config.resolved_run_id(),
        shard,
        key,
        source_uri,
        stage,
        type(exc).__name__,
        str(exc) or repr(exc),
    )
    return shard, (ERROR, error_row(row))


class ReadShard(beam.DoFn):
    """ShardSpec -> ShardMember (main) and error rows (tag ``errors``)."""

    def __init__(self, config: JobConfig):
        self._config = config
        self._read = Metrics.counter(NAMESPACE, "images_read")
        self._failed = Metrics.counter(NAMESPACE, "images_failed")

    def process(self, spec: ShardSpec) -> Iterator:
        seed = {"inputs": outputs.inputs_digest(spec.urls)}
        yield beam.pvalue.TaggedOutput(SEED, (spec.name, (SEED, seed)))
        cfg = self._config
        try:
            for item in shards.read_shard(
                spec,
                limits=cfg.limits,
                key_column=cfg.parquet_key_column,
                image_column=cfg.parquet_image_column,
            ):
                if isinstance(item, ReadFailure):
                    self._failed.inc()
                    row = ErrorRow(
                        cfg.resolved_run_id(),
                        item.shard,
                        item.key,
                        item.source_uri,
                        item.stage,
                        item.error_type,
                        item.message,
                    )
                    yield beam.pvalue.TaggedOutput(ERROR, (item.shard, (ERROR, error_row(row))))
                else:
                    self._read.inc()
                    yield item
        except Exception as exc:  # noqa: BLE001 - an unreadable shard is one error row
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERROR, _error(cfg, spec.name, "<shard>", ",".join(spec.urls[:1]), exc, "read")
            )


class Decode(beam.DoFn):
    """ShardMember -> DecodedImage (main) and error rows (tag ``errors``)."""

    def __init__(self, config: JobConfig):
        self._config = config
        self._failed = Metrics.counter(NAMESPACE, "images_failed")

    def process(self, member: ShardMember) -> Iterator:
        try:
            image = decode_member(member, self._config.limits)
        except StyleFixError as exc:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERROR,
                _error(self._config, member.shard, member.key, member.source_uri, exc, exc.stage),
            )
            return
        yield image


class Route(beam.DoFn):
    """DecodedImage -> RoutedImage with its style's bundle (main) and error rows."""

    def __init__(self, config: JobConfig, styles: StyleTable):
        self._config = config
        self._styles = styles
        self._failed = Metrics.counter(NAMESPACE, "images_failed")

    def process(self, image: DecodedImage) -> Iterator:
        try:
            routed = self._styles.route(image)
        except StyleFixError as exc:
            self._failed.inc()
            member = image.member
            yield beam.pvalue.TaggedOutput(
                ERROR,
                _error(self._config, member.shard, member.key, member.source_uri, exc, exc.stage),
            )
            return
        yield routed


class WriteImage(beam.DoFn):
    """Inference outcome -> the image written under its final name, and its row.

    The style and bundle version come with each prediction: a job serves
    several styles, so they are facts about the image, not the job.
    Encoding (mostly PNG deflate) and writing run on a few threads, so they
    overlap the model calls of the next batch instead of following them:
    Pillow's encoders and file I/O release the GIL. Rows leave in the order
    outcomes arrived, so the report is the same as a serial writer's, and at
    most ``MAX_PENDING`` images wait for their write, so memory stays bounded
    however fast the models are. Counters are only touched on the bundle's own
    thread, where Beam's metrics live.
    """

    WRITE_THREADS = 2
    MAX_PENDING = 16

    def __init__(self, config: JobConfig):
        self._config = config
        self._counters = {
            name: Metrics.counter(NAMESPACE, name)
            for name in ("images_styled", "images_flagged", "images_corrected", "images_failed")
        }
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[WindowedValue, Future]] = deque()

    def setup(self) -> None:
        self._pool = ThreadPoolExecutor(self.WRITE_THREADS, thread_name_prefix="stylefix-write")

    def start_bundle(self) -> None:
        self._pending = deque()

    def process(
        self, prediction: PredictionResult, windowed=beam.DoFn.WindowedValueParam
    ) -> Iterator[WindowedValue]:
        if self._pool is None:
            raise RuntimeError("WriteImage.setup() did not run: no write threads")
        self._pending.append((windowed, self._pool.submit(self._store, prediction)))
        yield from self._emit(keep=self.MAX_PENDING)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        yield from self._emit(keep=0)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _emit(self, keep: int) -> Iterator[WindowedValue]:
        """Rows of finished writes in arrival order; waits while more than ``keep`` pend."""
        while self._pending and (len(self._pending) > keep or self._pending[0][1].done()):
            windowed, future = self._pending.popleft()
            yield windowed.with_value(self._row(windowed.value, future.result()))

    def _store(self, prediction: PredictionResult) -> str | Exception | None:
        """On a write thread: the written image's URI, the write's exception, or None
        where the models failed and there is nothing to write."""
        outcome = prediction.inference
        if isinstance(outcome, ImageFailure):
            return None
        routed: RoutedImage = prediction.example
        provenance = self._provenance(routed, str(prediction.model_id), outcome)
        try:
            return self._write(routed.image, outcome, provenance)
        except Exception as exc:  # noqa: BLE001 - a failed write is one error row
            return exc

    def _row(self, prediction: PredictionResult, written: str | Exception | None) -> tuple:
        routed: RoutedImage = prediction.example
        image, version = routed.image, str(prediction.model_id)
        outcome = prediction.inference
        member = image.member
        if isinstance(outcome, ImageFailure):
            self._counters["images_failed"].inc()
            row = ErrorRow(
                self._config.resolved_run_id(), member.shard, member.key, member.source_uri,
                outcome.stage, outcome.error_type, outcome.message,
            )  # fmt: skip
            return member.shard, (ERROR, error_row(row))
        if isinstance(written, Exception):
            self._counters["images_failed"].inc()
            return _error(
                self._config, member.shard, member.key, member.source_uri, written, "write"
            )
        self._count(outcome)
        cfg = self._config
        row = report_row(
            cfg.resolved_run_id(), cfg.mode.value, routed.style, version, image, outcome, written
        )
        return member.shard, (REPORT, row)

    def _write(self, image: DecodedImage, outcome: ImageResult, provenance: dict[str, str]) -> str:
        member = image.member
        # qa mode, unchanged: the original bytes, bit for bit, with no StyleFix
        # metadata added; the report row is the provenance of such an image.
        if outcome.output is None:
            uri = outputs.image_uri(
                self._config.output, member.shard, member.key, member.ext or ".img"
            )
            data = member.data
        else:
            fmt = self._config.output_format
            uri = outputs.image_uri(
                self._config.output, member.shard, member.key, outputs.FORMAT_EXTENSIONS[fmt]
            )
            data = encode_image(
                outcome.output, fmt, text=provenance, png_level=self._config.png_compress_level
            )
        outputs.storage.write_bytes_atomic(uri, data)
        return uri

    def _provenance(
        self, routed: RoutedImage, version: str, outcome: ImageResult
    ) -> dict[str, str]:
        """What a written image says about itself; the report row holds the same facts.

        PNG keeps these as text chunks, JPEG and WEBP as one JSON object in
        EXIF ImageDescription (see imaging.encode_image).
        """
        action = "styled" if self._config.mode is Mode.STYLE else "corrected"
        member = routed.image.member
        return {
            "Software": "StyleFix",
            "stylefix:action": action
            + ("+corrected" if outcome.corrected and action == "styled" else ""),
            "stylefix:style": routed.style,
            "stylefix:model_version": version,
            "stylefix:run_id": self._config.resolved_run_id(),
            "stylefix:source_shard": member.shard,
            "stylefix:source_key": member.key,
        }

    def _count(self, outcome: ImageResult) -> None:
        if self._config.mode is Mode.STYLE:
            self._counters["images_styled"].inc()
        if outcome.is_anomaly:
            self._counters["images_flagged"].inc()
        if outcome.corrected:
            self._counters["images_corrected"].inc()


def _report_or_error(element: tuple[str, tuple[str, dict]], partitions: int) -> int:
    return 0 if element[1][0] == REPORT else 1


def _hash_and_source(element: tuple[str, tuple[str, dict]], source: str) -> tuple[str, str]:
    """The styled hash and the source it came from. In style mode the source is
    the input's grey picture alone: colour variants of one product are one
    source, so a monochrome style that gives them one picture is no collapse."""
    row = element[1][1]
    value = row[source]
    if source == "input_hash":
        value = value[: run_collapse.SHAPE_DIGITS]
    return row["styled_hash"], value


class MarkRunCollapse(beam.DoFn):
    """(shard, (REPORT, row)) -> the same, flagged where its styled hash is a collapse.

    ``collapsed`` is a side input of the styled hashes shared by enough
    different sources; only (hash, source) pairs were grouped to find them,
    so the report rows themselves stream through.
    """

    def __init__(self) -> None:
        self._collapsed = Metrics.counter(NAMESPACE, "images_run_collapse")

    def process(self, element: tuple, collapsed: Mapping[str, int]) -> Iterator[tuple]:
        shard, (tag, row) = element
        if row["styled_hash"] in collapsed:
            self._collapsed.inc()
            row = run_collapse.mark(row)
        yield shard, (tag, row)


class WriteShardParts(beam.DoFn):
    """(shard, rows) -> report part, error part, then the completion marker."""

    def __init__(self, config: JobConfig):
        self._config = config

    def process(
        self, element: tuple[str, Iterable[tuple[str, dict | None]]]
    ) -> Iterator[ShardCounts]:
        shard, tagged = element
        reports = [row for tag, row in tagged if tag == REPORT]
        errors = [row for tag, row in tagged if tag == ERROR]
        stages: dict[str, int] = {}
        for row in errors:
            stages[row["stage"]] = stages.get(row["stage"], 0) + 1
        counts = ShardCounts(
            shard=shard,
            report_rows=len(reports),
            error_rows=len(errors),
            flagged=sum(r["is_anomaly"] for r in reports),
            corrected=sum(r["corrected"] for r in reports),
            devices=sorted({r["device"] for r in reports}),
            errors_by_stage=dict(sorted(stages.items())),
            run_id=self._config.resolved_run_id(),
            inputs=next((row["inputs"] for tag, row in tagged if tag == SEED), ""),
        )
        outputs.write_shard_outputs(
            self._config.output,
            to_table(reports, REPORT_SCHEMA),
            to_table(errors, ERROR_SCHEMA),
            counts,
        )
        yield counts


class StyleFix(beam.PTransform):
    """ShardSpecs -> ShardCounts, with every output written on the way."""

    def __init__(
        self,
        config: JobConfig,
        styles: StyleTable,
        model_handler: ModelHandler | None = None,
    ):
        super().__init__()
        self._config = config
        self._styles = styles
        self._handler = model_handler or StyleFixModelHandler(config)

    def expand(self, specs):
        cfg = self._config
        read = (
            specs
            | "Reshuffle" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadShard(cfg)).with_outputs(ERROR, SEED, main="members")
        )
        decoded = read.members | "Decode" >> beam.ParDo(Decode(cfg)).with_outputs(
            ERROR, main="images"
        )
        routed = decoded.images | "Route" >> beam.ParDo(Route(cfg, self._styles)).with_outputs(
            ERROR, main="images"
        )
        predictions = routed.images | "StyleScoreCorrect" >> RunInference(self._handler)
        written = predictions | "WriteImages" >> beam.ParDo(WriteImage(cfg))
        rows = written | "ReportsAndErrors" >> beam.Partition(_report_or_error, 2)
        # Counted as rows finish, before anything groups them: a grouping
        # holds everything back until the end on a batch runner.
        tap = ProgressTap(cfg.progress_interval_s, NAMESPACE, REPORT, ERROR)
        counted = {
            name: stream | f"Count{name}" >> beam.ParDo(tap)
            for name, stream in (
                ("ReadErrors", read[ERROR]),
                ("DecodeErrors", decoded[ERROR]),
                ("RouteErrors", routed[ERROR]),
                ("WriteErrors", rows[1]),
                ("Reports", rows[0]),
            )
        }
        source = "input_hash" if cfg.mode is Mode.STYLE else "key"
        collapsed = (
            counted["Reports"]
            | "HashAndSource" >> beam.Map(_hash_and_source, source)
            | "DistinctSources" >> beam.Distinct()
            | "SourcesPerHash" >> beam.combiners.Count.PerKey()
            | "CollapsedHashes" >> beam.Filter(lambda pair: run_collapse.is_collapse(pair[1]))
        )
        reports = counted["Reports"] | "MarkRunCollapse" >> beam.ParDo(
            MarkRunCollapse(), collapsed=beam.pvalue.AsDict(collapsed)
        )
        errors = [
            counted[name] for name in ("ReadErrors", "DecodeErrors", "RouteErrors", "WriteErrors")
        ]
        return (
            (read[SEED], *errors, reports)
            | "AllRows" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(WriteShardParts(cfg))
        )
