"""Progress lines: when a process logs them, and the live line on a real terminal."""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Iterator

import pytest

from pipelines.progress import Board, Tally, describe, live_board, process_board
from stylefix_core.config import JobConfig


def _clock(*times: float):
    ticks: Iterator[float] = iter(times)
    return lambda: next(ticks)


def _read_until_newline(leader: int) -> str:
    """What the terminal received; Linux hands pty output over asynchronously, in pieces."""
    received = b""
    while not received.endswith(b"\n"):
        ready, _, _ = select.select([leader], [], [], 10.0)  # a guard, not a measurement
        if not ready:
            break
        received += os.read(leader, 65536)
    return received.decode()


def test_describe_names_every_count_and_the_rate():
    line = describe(Tally(reported=117, flagged=14, errors=3), seconds=30.0)
    assert line == "120 images processed (117 reported, 3 errors), 14 flagged, 4.0 images/s"
    assert describe(Tally(), 0.0).endswith("0.0 images/s")


def test_a_process_logs_at_most_once_per_interval(caplog):
    # created at t=0, then one image at each of these times
    board = Board(every_s=10.0, clock=_clock(0.0, 1.0, 9.9, 10.0, 15.0, 20.5))
    with caplog.at_level(logging.INFO, logger="stylefix.progress"):
        board.add(reported=1)
        board.add(reported=1, flagged=1)
        board.add(errors=1)
        board.add(reported=1)
        board.add(reported=1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "progress (this process): 3 images processed (2 reported, 1 errors), 1 flagged, 0.3 images/s",
        "progress (this process): 5 images processed (4 reported, 1 errors), 1 flagged, 0.2 images/s",
    ]


def test_the_live_line_is_redrawn_in_place_on_a_terminal():
    leader, follower = os.openpty()
    with os.fdopen(follower, "w", encoding="utf-8") as terminal:
        assert terminal.isatty()
        board = Board(every_s=60.0, terminal=terminal, clock=_clock(0.0, 1.0, 1.1, 2.0, 4.0))
        board.add(reported=1)
        board.add(errors=1)  # within 0.25 s of the last draw: not redrawn
        board.add(reported=1, flagged=1)
        board.close()
        shown = _read_until_newline(leader)
    os.close(leader)
    draws = shown.split("\r\x1b[K")[1:]
    assert len(draws) == 3  # two updates and the final one
    assert "1 images processed (1 reported, 0 errors)" in draws[0]
    assert "3 images processed (2 reported, 1 errors), 1 flagged, 0.8 images/s" in draws[-1]
    assert shown.endswith("\n")


def test_no_terminal_means_no_drawing(capsys):
    board = Board(every_s=60.0)
    board.add(reported=1)
    board.close()
    assert capsys.readouterr() == ("", "")


def test_workers_in_the_launchers_process_share_its_board():
    with live_board(every_s=5.0) as board:
        assert process_board(5.0) is board
    assert process_board(5.0) is not board


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="progress_interval_s"):
        JobConfig(input="in", output="out", progress_interval_s=-1.0)
