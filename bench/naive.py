"""The job as a first-time Beam user writes it: the baseline of figure (2).

One DoFn does everything for one image at a time: it loads the models inside
``process`` (once per bundle, on the first element), decodes, runs the models
on that image, encodes, writes and returns the row. Reading shards and
writing the per-shard parts reuse the job's own transforms, and the DoFn calls
the same engine, so both jobs do the same work and write the same files;
what differs is only how the work is wired into Beam.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import to_job_config
from pipelines.transforms import ERROR, REPORT, SEED, ReadShard, WriteShardParts
from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, JobConfig
from stylefix_core.engine import Engine, ImageResult
from stylefix_core.imaging import decode_image, encode_image, sha256_hex
from stylefix_core.io import outputs, storage
from stylefix_core.io.shards import plan_shards
from stylefix_core.records import DecodedImage, ShardMember
from stylefix_core.report import report_row


class NaiveStyleFix(beam.DoFn):
    """ShardMember -> (shard, report row), with every step inline."""

    def __init__(self, config: JobConfig):
        self._config = config
        self._engine: Engine | None = None

    def start_bundle(self) -> None:
        self._engine = None

    def process(self, member: ShardMember) -> Iterator[tuple]:
        cfg = self._config
        if self._engine is None:
            bundle = load_bundle(cfg.bundle)
            self._engine = Engine(bundle, cfg.mode, torch.device("cpu"), BatchConfig())
        image = DecodedImage(member, decode_image(member.data, cfg.limits), sha256_hex(member.data))
        (outcome,) = self._engine.process([image.pixels])
        if not isinstance(outcome, ImageResult) or outcome.output is None:
            raise RuntimeError(f"{member.key}: expected a styled image, got {outcome!r}")
        manifest = self._engine.bundle.manifest
        uri = outputs.image_uri(cfg.output, member.shard, member.key, ".png")
        text = self._text(member, outcome, manifest.style, manifest.version)
        # PIL's default zlib level, what a plain ``Image.save(..., "PNG")`` gives.
        storage.write_bytes_atomic(uri, encode_image(outcome.output, "png", text, png_level=6))
        row = report_row(
            cfg.resolved_run_id(),
            cfg.mode.value,
            manifest.style,
            manifest.version,
            image,
            outcome,
            uri,
        )
        yield member.shard, (REPORT, row)

    def _text(
        self, member: ShardMember, outcome: ImageResult, style: str, version: str
    ) -> dict[str, str]:
        return {
            "Software": "StyleFix",
            "stylefix:action": "styled+corrected" if outcome.corrected else "styled",
            "stylefix:style": style,
            "stylefix:model_version": version,
            "stylefix:run_id": self._config.resolved_run_id(),
            "stylefix:source_shard": member.shard,
            "stylefix:source_key": member.key,
        }


def run_naive(argv: Sequence[str]) -> None:
    """Style mode, PNG output, CPU: the settings the benchmark compares at."""
    options = PipelineOptions(list(argv))
    config = to_job_config(options)
    specs = plan_shards(config.input, config.files_per_shard).shards
    with beam.Pipeline(options=options) as pipeline:
        read = (
            pipeline
            | "Shards" >> beam.Create(specs)
            | "Reshuffle" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadShard(config)).with_outputs(ERROR, SEED, main="members")
        )
        _ = (
            read.members
            | "StyleFix" >> beam.ParDo(NaiveStyleFix(config))
            | "ByShard" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(WriteShardParts(config))
        )
