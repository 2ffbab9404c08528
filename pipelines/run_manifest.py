"""The run manifest: what ran, with which model, on what, and what came of it.

The job writes it as its own last step (:class:`WriteRunManifest`), not the
process that launched it: a Flex Template launcher or a detached Flink
submission returns before the job ends, and the manifest must still appear.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam

from stylefix_core import __version__
from stylefix_core.bundle import Manifest
from stylefix_core.config import JobConfig
from stylefix_core.io import outputs, storage
from stylefix_core.io.outputs import ShardCounts


@dataclass
class RunSummary:
    """Totals over every shard's completion marker, skipped (resumed) ones included."""

    run_id: str
    output: str
    shards: int = 0
    shards_skipped: int = 0
    images: int = 0
    report_rows: int = 0
    error_rows: int = 0
    flagged: int = 0
    corrected: int = 0
    devices: list[str] = field(default_factory=list)
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    ignored_files: int = 0
    seconds: float = 0.0

    def add(self, counts: ShardCounts) -> None:
        self.shards += 1
        self.report_rows += counts.report_rows
        self.error_rows += counts.error_rows
        self.images += counts.report_rows + counts.error_rows
        self.flagged += counts.flagged
        self.corrected += counts.corrected
        self.devices = sorted(set(self.devices) | set(counts.devices))
        for stage, n in counts.errors_by_stage.items():
            self.errors_by_stage[stage] = self.errors_by_stage.get(stage, 0) + n


def redacted(value: Any) -> Any:
    """``value`` with credentials hidden in every string (``user:password@``, tokens).

    Options hold URLs that may carry credentials; the manifest is read by
    people and kept beside the outputs, so it records where, never how.
    """
    if isinstance(value, str):
        return storage.redact(value)
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(item) for item in value]
    return value


def write_run_manifest(
    config: JobConfig,
    bundle: Manifest,
    summary: RunSummary,
    started_at: str,
    runner: str,
    styles: dict[str, Manifest] | None = None,
    shard_names: Sequence[str] = (),
) -> str:
    """Written after the job; the one output that legitimately differs between re-runs (timings).

    ``bundle`` is the default style's bundle; ``styles`` gives every style the
    job could serve and the bundle version behind it. ``shard_names`` are the
    shards the job planned: the QA report reads only their parts, so parts
    an earlier job left under the prefix are not counted again.
    """
    uri = storage.join(config.output, "run_manifest.json")
    document = {
        "stylefix_version": __version__,
        "run_id": summary.run_id,
        "runner": runner,
        "started_at": started_at,
        "options": redacted(config.to_dict()),
        "bundle": {
            "name": bundle.name,
            "style": bundle.style,
            "version": bundle.version,
            "fingerprint": bundle.training_data_fingerprint,
            "threshold": bundle.calibration.threshold,
            "target_false_positive_rate": bundle.calibration.target_false_positive_rate,
        },
        "styles": {
            name: {"bundle": manifest.name, "version": manifest.version}
            for name, manifest in sorted((styles or {bundle.style: bundle}).items())
        },
        "counts": asdict(summary),
        "shards": sorted(shard_names),
        "python": platform.python_version(),
    }
    storage.write_bytes_atomic(
        uri, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    )
    return uri


def summarise(
    config: JobConfig, shard_names: Sequence[str], shards_skipped: int, ignored_files: int
) -> RunSummary:
    """Totals from the completion markers of every planned shard.

    Raises RuntimeError when a shard has no marker: the job ended without
    finishing it, and totals that quietly left it out would be wrong.
    """
    summary = RunSummary(
        run_id=config.resolved_run_id(), output=config.output, ignored_files=ignored_files
    )
    for name in shard_names:
        counts = outputs.read_marker(config.output, name)
        if counts is None:
            raise RuntimeError(f"shard {name} finished without a completion marker")
        summary.add(counts)
    summary.shards_skipped = min(shards_skipped, summary.shards)
    return summary


@dataclass(frozen=True)
class RunPlan:
    """What the launcher knew when it built the job; shipped to the manifest step."""

    config: JobConfig
    bundle: Manifest
    shard_names: tuple[str, ...]
    shards_skipped: int
    ignored_files: int
    started_at: str  # ISO 8601 to the second, UTC, as the manifest shows it
    started: float  # seconds since the epoch, for the duration
    runner: str
    styles: dict[str, Manifest] | None = None  # every style the job could serve


class WriteRunManifest(beam.PTransform):
    """ShardCounts -> the run manifest, written once after every shard's outputs.

    Collecting the counts into one list is what orders this step after the
    last shard; the totals themselves come from the markers, so shards skipped
    by ``--resume`` are counted too.
    """

    def __init__(self, plan: RunPlan):
        super().__init__()
        self._plan = plan

    def expand(self, counts):
        return (
            counts
            | "AfterEveryShard" >> beam.combiners.ToList()
            | "Write" >> beam.Map(_write_after, self._plan)
        )


def _write_after(_: list[ShardCounts], plan: RunPlan) -> str:
    summary = summarise(plan.config, plan.shard_names, plan.shards_skipped, plan.ignored_files)
    summary.seconds = round(time.time() - plan.started, 2)
    return write_run_manifest(
        plan.config,
        plan.bundle,
        summary,
        plan.started_at,
        plan.runner,
        plan.styles,
        plan.shard_names,
    )
