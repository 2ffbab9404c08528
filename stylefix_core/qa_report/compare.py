"""Tonight's run against last night's: what changed, and whether to raise an alarm.

Images are matched by ``(shard, key)``, which the job derives from the input
layout, so the same catalog gives the same identities night after night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stylefix_core.qa_report.stats import KSResult, ks_2samp
from stylefix_core.qa_report.summary import (
    Counts,
    anomaly_scores,
    count_outcomes,
    reason_counts,
)

Identity = tuple[str, str]


@dataclass(frozen=True)
class KeyChange:
    """One image that became, or stopped being, an anomaly."""

    shard: str
    key: str
    previous_score: float | None  # None: not in the previous run
    current_score: float | None  # None: not in this run
    reasons: tuple[str, ...]  # the flagged side's reasons


@dataclass(frozen=True)
class ReasonChange:
    """Images flagged for one reason in each run."""

    reason: str
    previous: int
    current: int

    @property
    def delta(self) -> int:
        return self.current - self.previous


@dataclass(frozen=True)
class Comparison:
    """Everything the comparison section shows."""

    previous_run_id: str
    previous_counts: Counts
    new_anomalies: list[KeyChange]
    resolved_anomalies: list[KeyChange]
    reasons: list[ReasonChange]
    drift: KSResult | None  # None where either run scored nothing
    previous_scores: np.ndarray  # for the ECDF plot
    current_scores: np.ndarray


@dataclass(frozen=True)
class AlertLimits:
    """Thresholds a scheduler alerts on; None leaves a check off."""

    max_flagged_share: float | None = None
    max_error_share: float | None = None
    max_drift_ks: float | None = None
    min_drift_pvalue: float | None = None


@dataclass(frozen=True)
class Breach:
    """A limit that a run crossed; ``option`` names the command-line option."""

    option: str
    what: str
    value: float
    limit: float

    def describe(self) -> str:
        if math.isnan(self.value):
            return f"{self.what} could not be measured (a run without scores); {self.option} {self.limit:g} is not met"
        relation = "below" if self.option.startswith("--min") else "above"
        return f"{self.what} {self.value:.4g} is {relation} {self.option} {self.limit:g}"


def compare_runs(
    current: pa.Table, current_errors: pa.Table, previous: pa.Table, previous_errors: pa.Table
) -> Comparison:
    """Compare two runs' report tables (and their error tables, for the counts)."""
    now, before = _by_identity(current), _by_identity(previous)
    now_scores, before_scores = anomaly_scores(current), anomaly_scores(previous)
    drift = ks_2samp(now_scores, before_scores) if now_scores.size and before_scores.size else None
    run_ids = previous.column("run_id").unique().to_pylist() if previous.num_rows else []
    return Comparison(
        previous_run_id=", ".join(sorted(str(r) for r in run_ids)) or "-",
        previous_counts=count_outcomes(previous, previous_errors),
        new_anomalies=_newly_flagged(now, before),
        resolved_anomalies=_no_longer_flagged(now, before),
        reasons=_reason_changes(reason_counts(previous), reason_counts(current)),
        drift=drift,
        previous_scores=before_scores,
        current_scores=now_scores,
    )


def check_limits(
    counts: Counts, comparison: Comparison | None, limits: AlertLimits
) -> list[Breach]:
    """Every limit crossed, in a fixed order; drift limits need a comparison."""
    checks: list[tuple[str, str, float | None, float | None, bool]] = [
        (
            "--max-flagged-share",
            "flagged share",
            counts.flagged_share,
            limits.max_flagged_share,
            True,
        ),
        ("--max-error-share", "error share", counts.error_share, limits.max_error_share, True),
    ]
    drift = comparison.drift if comparison is not None else None
    if comparison is not None:
        # a night on which every image failed has no scores to test; a drift
        # limit it was given is not met, rather than silently passed
        statistic, pvalue = (drift.statistic, drift.pvalue) if drift else (math.nan, math.nan)
        checks.append(
            ("--max-drift-ks", "drift KS statistic", statistic, limits.max_drift_ks, True)
        )
        checks.append(("--min-drift-p", "drift p-value", pvalue, limits.min_drift_pvalue, False))
    return [
        Breach(option, what, value, limit)
        for option, what, value, limit, upper in checks
        if value is not None and limit is not None and _crossed(value, limit, upper)
    ]


def _crossed(value: float, limit: float, upper: bool) -> bool:
    return math.isnan(value) or (value > limit if upper else value < limit)


def _by_identity(report: pa.Table) -> dict[Identity, dict[str, Any]]:
    columns = report.select(["shard", "key", "anomaly_score", "is_anomaly", "reasons"]).to_pylist()
    return {(row["shard"], row["key"]): row for row in columns}


def _newly_flagged(
    now: dict[Identity, dict[str, Any]], before: dict[Identity, dict[str, Any]]
) -> list[KeyChange]:
    changes = []
    for identity, row in now.items():
        old = before.get(identity)
        if row["is_anomaly"] and not (old and old["is_anomaly"]):
            changes.append(_change(identity, old, row, row))
    return sorted(changes, key=lambda c: (-(c.current_score or 0.0), c.shard, c.key))


def _no_longer_flagged(
    now: dict[Identity, dict[str, Any]], before: dict[Identity, dict[str, Any]]
) -> list[KeyChange]:
    changes = []
    for identity, old in before.items():
        row = now.get(identity)
        if old["is_anomaly"] and not (row and row["is_anomaly"]):
            changes.append(_change(identity, old, row, old))
    return sorted(changes, key=lambda c: (-(c.previous_score or 0.0), c.shard, c.key))


def _change(
    identity: Identity,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    flagged: dict[str, Any],
) -> KeyChange:
    return KeyChange(
        shard=identity[0],
        key=identity[1],
        previous_score=old["anomaly_score"] if old else None,
        current_score=new["anomaly_score"] if new else None,
        reasons=tuple(flagged["reasons"] or ()),
    )


def _reason_changes(previous: dict[str, int], current: dict[str, int]) -> list[ReasonChange]:
    names = sorted(set(previous) | set(current))
    changes = [ReasonChange(name, previous.get(name, 0), current.get(name, 0)) for name in names]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.reason))
