"""RunInference model handler: the engines behind Beam's batching and model sharing."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from stylefix_core.bundle import load_bundle
from stylefix_core.config import JobConfig
from stylefix_core.device import resolve_device
from stylefix_core.engine import Engine
from stylefix_core.engine_cache import EngineCache
from stylefix_core.records import RoutedImage

log = logging.getLogger(__name__)


class StyleFixModelHandler(ModelHandler[RoutedImage, PredictionResult, EngineCache]):
    """Serves every style of the job from one bounded cache of engines per worker process.

    RunInference shares the cache across a process's threads. A batch may mix
    styles: it is split by bundle, each part goes to its bundle's engine
    (loaded on first use, least recently used evicted beyond
    ``max_models_per_worker``), and each image gets its own outcome, so a
    failing image never fails its batch in Beam's eyes. Each prediction's
    ``model_id`` is the version of the bundle that processed it.

    Beam's KeyedModelHandler also routes by key, but it ignores the per-model
    batch limits and serves each model from a separate process through a
    proxy; one cache in the worker keeps batching and images in-process.
    """

    def __init__(self, config: JobConfig):
        super().__init__(min_batch_size=1, max_batch_size=config.batch.max_batch_size)
        self._config = config

    def load_model(self) -> EngineCache:
        if self._config.torch_threads > 0:
            torch.set_num_threads(self._config.torch_threads)
        resolve_device(self._config.device)  # a missing device fails here, not per style
        return EngineCache(self.load_engine, self._config.max_models_per_worker)

    def load_engine(self, bundle_url: str) -> Engine:
        """One bundle's engine; subclasses wrap it (tests inject device faults here)."""
        device = resolve_device(self._config.device)
        bundle = load_bundle(bundle_url)
        log.info(
            "loaded bundle %s (%s) on %s", bundle.manifest.version, bundle.manifest.style, device
        )
        return Engine(bundle, self._config.mode, device, self._config.batch)

    def run_inference(
        self,
        batch: Sequence[RoutedImage],
        model: EngineCache,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        by_bundle: dict[str, list[int]] = defaultdict(list)
        for index, routed in enumerate(batch):
            by_bundle[routed.bundle].append(index)
        results: list[PredictionResult | None] = [None] * len(batch)
        for bundle_url, indices in by_bundle.items():
            engine = model.get(bundle_url)
            outcomes = engine.process([batch[i].image.pixels for i in indices])
            version = engine.bundle.manifest.version
            for index, outcome in zip(indices, outcomes, strict=True):
                results[index] = PredictionResult(batch[index], outcome, version)
        return results  # type: ignore[return-value]  # every index was filled above

    def get_num_bytes(self, batch: Sequence[RoutedImage]) -> int:
        return sum(routed.image.pixels.nbytes for routed in batch)

    def get_metrics_namespace(self) -> str:
        return "stylefix"
