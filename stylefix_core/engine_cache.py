"""A bounded set of resident engines, one per bundle, least recently used evicted.

A job with dozens of styles cannot hold every style's networks in GPU or host
memory at once. The cache keeps at most ``capacity`` engines; asking for
another bundle first drops the one used longest ago, then loads the new one,
so no more than ``capacity`` are ever resident. Engines are keyed by bundle
URL, so two style names served by one bundle share one engine.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import torch

from stylefix_core.engine import Engine

log = logging.getLogger(__name__)


class EngineCache:
    """``get(bundle_url)`` returns that bundle's engine, loading it on a miss.

    Thread-safe: a worker process shares one cache across its threads, so
    lookups, evictions and loads happen under one lock (a thread that needs a
    bundle being loaded waits for it instead of loading it twice). A thread
    still using an evicted engine keeps it alive until its call returns.
    """

    def __init__(self, load: Callable[[str], Engine], capacity: int):
        if capacity < 1:
            raise ValueError(f"an engine cache holds at least one engine, got {capacity}")
        self._load = load
        self.capacity = capacity
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def get(self, bundle_url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(bundle_url)
            if engine is not None:
                self._engines.move_to_end(bundle_url)
                return engine
            while len(self._engines) >= self.capacity:
                self._evict_oldest()
            engine = self._load(bundle_url)
            self._engines[bundle_url] = engine
            self.loads += 1
            return engine

    def resident(self) -> list[str]:
        """Bundle URLs held now, least recently used first."""
        with self._lock:
            return list(self._engines)

    def _evict_oldest(self) -> None:
        _, engine = self._engines.popitem(last=False)
        self.evictions += 1
        version, device = engine.bundle.manifest.version, engine.device
        log.info(
            "evicted bundle %s from %s to stay within %d resident model(s)",
            version,
            device,
            self.capacity,
        )
        del engine
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the freed blocks back for the next bundle
