"""Progress of a running job, on every runner.

Runners differ in when the launcher hears anything, so progress comes from two
places:

* **In the workers.** :class:`ProgressTap` sits on each stream of finished
  rows, right where they are made (report rows and inference errors after the
  write stage, read and decode errors after those stages), so it runs fused
  with the work itself; it adds to a tally kept once per worker process. At most every
  ``every_s`` seconds the process logs ``processed, flagged, errors,
  images/s``. This works on every runner, synchronous or not; on Dataflow and
  Flink the lines land in the worker logs.
* **In the launcher.** :func:`run_and_watch` starts the job and, where the
  runner is asynchronous (Dataflow, Flink, the portable runner), polls the
  job's metrics every ``every_s`` seconds and logs totals over all workers.
  The DirectRunner's ``run()`` returns only when the job is done, so there it
  logs the final totals.

On the DirectRunner the workers run inside the launcher's process, so when
stderr is a terminal the tally is also redrawn in place as a live status line
there. Counts are approximate while a job runs (a retried bundle counts
twice); the report tables are the exact record.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult, PipelineState

log = logging.getLogger("stylefix.progress")

REPORTED_COUNTER = "images_reported"
FLAGGED_COUNTER = "images_flagged"
FAILED_COUNTER = "images_failed"
DRAW_EVERY_S = 0.25  # how often the live terminal line is redrawn
POLL_S = 2.0  # how often the launcher asks an asynchronous runner for the job state
MIN_POLL_S = 0.1


@dataclass
class Tally:
    """Images that finished: with a report row (``reported``) or an error row."""

    reported: int = 0
    flagged: int = 0
    errors: int = 0

    @property
    def processed(self) -> int:
        return self.reported + self.errors


def describe(tally: Tally, seconds: float) -> str:
    """``120 images processed (117 reported, 3 errors), 14 flagged, 4.2 images/s``."""
    rate = tally.processed / seconds if seconds > 0 else 0.0
    return (
        f"{tally.processed} images processed ({tally.reported} reported, "
        f"{tally.errors} errors), {tally.flagged} flagged, {rate:.1f} images/s"
    )


class Board:
    """One process's tally: logs it every ``every_s`` seconds, draws it on a terminal.

    Thread-safe, since a runner may run several bundles of one process at once.
    ``clock`` is injectable so tests can step time instead of waiting.
    """

    def __init__(
        self,
        every_s: float,
        terminal: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tally = Tally()
        self._every_s = every_s
        self._terminal = terminal
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._last_log = self._start
        self._last_draw = float("-inf")
        self._drawn = False

    def add(self, reported: int = 0, flagged: int = 0, errors: int = 0) -> None:
        """Count finished images; log and redraw when they are due."""
        with self._lock:
            now = self._clock()
            self.tally.reported += reported
            self.tally.flagged += flagged
            self.tally.errors += errors
            log_due = now - self._last_log >= self._every_s
            if log_due:
                self._last_log = now
                self._clear()
                log.info("progress (this process): %s", self.line(now))
            if self._terminal is not None and (log_due or now - self._last_draw >= DRAW_EVERY_S):
                self._last_draw = now
                self._draw(now)

    def line(self, now: float) -> str:
        return describe(self.tally, now - self._start)

    def close(self) -> None:
        """Leave the live line on screen with its final numbers and end it."""
        with self._lock:
            if self._terminal is not None and self._drawn:
                self._draw(self._clock())
                self._terminal.write("\n")
                self._terminal.flush()

    def _draw(self, now: float) -> None:
        assert self._terminal is not None
        self._terminal.write("\r\x1b[K" + _spinner(now) + " " + self.line(now))
        self._terminal.flush()
        self._drawn = True

    def _clear(self) -> None:
        """Wipe the live line so that a log line printed now starts on a clean line."""
        if self._terminal is not None and self._drawn:
            self._terminal.write("\r\x1b[K")
            self._terminal.flush()


_board_lock = threading.Lock()
_board: Board | None = None


def process_board(every_s: float) -> Board:
    """This process's board: the launcher's where it runs the workers, else a new one."""
    global _board
    with _board_lock:
        if _board is None:
            _board = Board(every_s)
        return _board


@contextmanager
def live_board(every_s: float, terminal: TextIO | None = None) -> Iterator[Board]:
    """A fresh board for one job in this process; drawn on ``terminal`` if given."""
    global _board
    board = Board(every_s, terminal)
    with _board_lock:
        _board = board
    try:
        yield board
    finally:
        board.close()
        with _board_lock:
            if _board is board:
                _board = None


class ProgressTap(beam.DoFn):
    """Passes ``(shard, (tag, row))`` through unchanged, counting finished images."""

    def __init__(self, every_s: float, namespace: str, report_tag: str, error_tag: str):
        self._every_s = every_s
        self._report_tag = report_tag
        self._error_tag = error_tag
        self._reported = Metrics.counter(namespace, REPORTED_COUNTER)
        self._board: Board | None = None

    def setup(self) -> None:
        self._board = process_board(self._every_s)

    def process(
        self, element: tuple[str, tuple[str, Any]]
    ) -> Iterator[tuple[str, tuple[str, Any]]]:
        tag, row = element[1]
        board = self._board or process_board(self._every_s)
        if tag == self._report_tag:
            self._reported.inc()
            board.add(reported=1, flagged=int(bool(row["is_anomaly"])))
        elif tag == self._error_tag:
            board.add(errors=1)
        yield element


def run_and_watch(pipeline: beam.Pipeline, every_s: float, namespace: str) -> Tally | None:
    """Run the job to the end, logging progress on the way; returns the final totals.

    Raises what ``wait_until_finish`` raises when the job fails.
    """
    terminal = sys.stderr if sys.stderr.isatty() else None
    started = time.monotonic()
    with live_board(every_s, terminal):
        result = pipeline.run()
        last = time.monotonic()
        while not PipelineState.is_terminal(result.state):
            time.sleep(max(MIN_POLL_S, min(every_s, POLL_S)))
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                _log_totals(result, namespace, last - started, "progress (all workers)")
        result.wait_until_finish()
    return _log_totals(result, namespace, time.monotonic() - started, "finished (all workers)")


def metrics_tally(result: PipelineResult, namespace: str) -> Tally | None:
    """Totals over every step and worker from the job's counters; None if unavailable."""
    if hasattr(result, "_metrics"):
        # Beam's portable PipelineResult keeps the first metrics() answer for
        # good; asked mid-run, that would freeze the counts. Ask afresh.
        result._metrics = None
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    except Exception as exc:  # noqa: BLE001 - a runner that cannot report yet is no failure
        log.debug("no metrics from the runner yet: %s", exc)
        return None
    totals: dict[str, int] = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return Tally(
        reported=totals.get(REPORTED_COUNTER, 0),
        flagged=totals.get(FLAGGED_COUNTER, 0),
        errors=totals.get(FAILED_COUNTER, 0),
    )


def _log_totals(result: PipelineResult, namespace: str, seconds: float, what: str) -> Tally | None:
    tally = metrics_tally(result, namespace)
    if tally is not None and tally.processed:
        log.info("%s: %s", what, describe(tally, seconds))
    return tally


def _spinner(now: float) -> str:
    return "|/-\\"[int(now / DRAW_EVERY_S) % 4]
