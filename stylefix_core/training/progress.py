"""Training progress: one log line every few steps with losses, speed and time left."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("stylefix.training")


@dataclass
class Progress:
    """Logs ``name step/total losses img/s eta`` at most every ``every_s`` seconds."""

    name: str
    total_steps: int
    images_per_step: int
    every_s: float = 5.0
    _start: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def update(self, step: int, losses: dict[str, float]) -> None:
        now = time.monotonic()
        done = step + 1
        if now - self._last < self.every_s and done != self.total_steps and step != 0:
            return
        self._last = now
        elapsed = now - self._start
        rate = done * self.images_per_step / max(elapsed, 1e-9)
        eta = elapsed / done * (self.total_steps - done)
        shown = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
        log.info(
            "%s step %d/%d %s %.1f img/s eta %.0fs",
            self.name,
            done,
            self.total_steps,
            shown,
            rate,
            eta,
        )
