"""What a run's report and error tables add up to: counts, reasons, the worst images.

Pure functions of the two Arrow tables (``report/`` and ``errors/`` as the job
writes them), so the page a run writes and the page ``stylefix report``
rebuilds later say the same thing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

READ_STAGE = "read"


@dataclass(frozen=True)
class Counts:
    """How many inputs went where.

    ``inputs`` is every report row plus every error row (each input ends as
    exactly one of them); ``read`` leaves out what failed at the read stage;
    ``styled`` counts images the generator styled (style mode only).
    """

    inputs: int
    read: int
    scored: int
    styled: int
    flagged: int
    corrected: int
    errors: int
    errors_by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def flagged_share(self) -> float:
        """Flagged images over scored images (0 where nothing was scored)."""
        return self.flagged / self.scored if self.scored else 0.0

    @property
    def error_share(self) -> float:
        """Error rows over all inputs (0 where there were none)."""
        return self.errors / self.inputs if self.inputs else 0.0


def count_outcomes(report: pa.Table, errors: pa.Table) -> Counts:
    """Counts of one run from its tables."""
    stages = Counter(errors.column("stage").to_pylist()) if errors.num_rows else Counter()
    inputs = report.num_rows + errors.num_rows
    return Counts(
        inputs=inputs,
        read=inputs - stages.get(READ_STAGE, 0),
        scored=report.num_rows,
        styled=_count_true(pc.equal(report.column("mode"), "style")),
        flagged=_count_true(report.column("is_anomaly")),
        corrected=_count_true(report.column("corrected")),
        errors=errors.num_rows,
        errors_by_stage=dict(sorted(stages.items())),
    )


def reason_counts(report: pa.Table) -> dict[str, int]:
    """Images per reason, most frequent first (an image with two reasons counts twice)."""
    reasons = Counter(
        reason for listed in report.column("reasons").to_pylist() for reason in listed or ()
    )
    return dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))


def anomaly_scores(report: pa.Table) -> np.ndarray:
    """The finite anomaly scores of a run, as float64."""
    scores = report.column("anomaly_score").to_numpy(zero_copy_only=False).astype(np.float64)
    return scores[np.isfinite(scores)]


def run_threshold(report: pa.Table) -> float | None:
    """The flagging threshold the rows were scored with (the most common, if several)."""
    values = [v for v in report.column("threshold").to_pylist() if v is not None]
    return Counter(values).most_common(1)[0][0] if values else None


def worst_rows(report: pa.Table, top: int) -> list[dict[str, Any]]:
    """The ``top`` rows with the highest anomaly score; ties broken by shard and key."""
    if top <= 0 or report.num_rows == 0:
        return []
    order = pc.sort_indices(
        report,
        sort_keys=[("anomaly_score", "descending"), ("shard", "ascending"), ("key", "ascending")],
    )
    return report.take(order.slice(0, top)).to_pylist()


def _count_true(values: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.cast(pc.fill_null(values, False), pa.int64())).as_py() or 0)
