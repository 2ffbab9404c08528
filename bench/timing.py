"""Interleaved, repeated measurements and the machine's state while they ran.

On a shared machine the load changes from one minute to the next, so two
things measured one after the other are not comparable. Contenders here run
in turns (A, B, A, B, ...) and each is summarised by its median, which a
single disturbed turn cannot move far.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Samples:
    """Repeated measurements of one contender, in the order they were taken."""

    name: str
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def interleaved(contenders: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, Samples]:
    """Call every contender once per round, ``repeats`` rounds, in a fixed order.

    Each callable returns its own measurement (images/s, bytes, ...), so the
    caller decides what is timed: set-up such as writing input stays outside.
    """
    values: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, measure in contenders.items():
            values[name].append(measure())
    return {name: Samples(name, tuple(v)) for name, v in values.items()}


def rate(count: int, work: Callable[[], object]) -> float:
    """``count`` divided by the wall time ``work`` takes, in units per second."""
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)
