"""The run manifest: what ran, with which model, on what, and what came of it."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from stylefix_core import __version__
from stylefix_core.bundle import Manifest
from stylefix_core.config import JobConfig
from stylefix_core.io import storage
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
) -> str:
    """Written after the job; the one output that legitimately differs between re-runs (timings).

    ``bundle`` is the default style's bundle; ``styles`` gives every style the
    job could serve and the bundle version behind it.
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
        "python": platform.python_version(),
    }
    storage.write_bytes_atomic(
        uri, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    )
    return uri
