"""RunInference model handler: the engine behind Beam's batching and model sharing."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from stylefix_core.bundle import load_bundle
from stylefix_core.config import JobConfig
from stylefix_core.device import resolve_device
from stylefix_core.engine import Engine
from stylefix_core.records import DecodedImage

log = logging.getLogger(__name__)


class StyleFixModelHandler(ModelHandler[DecodedImage, PredictionResult, Engine]):
    """Loads the bundle once per worker process (RunInference shares it across
    threads) and hands each batch to the engine, which returns one outcome per
    image, so a failing image never fails its batch in Beam's eyes.
    """

    def __init__(self, config: JobConfig):
        super().__init__(min_batch_size=1, max_batch_size=config.batch.max_batch_size)
        self._config = config

    def load_model(self) -> Engine:
        if self._config.torch_threads > 0:
            torch.set_num_threads(self._config.torch_threads)
        device = resolve_device(self._config.device)
        bundle = load_bundle(self._config.bundle)
        log.info("loaded bundle %s on %s", bundle.manifest.version, device)
        return Engine(bundle, self._config.mode, device, self._config.batch)

    def run_inference(
        self,
        batch: Sequence[DecodedImage],
        model: Engine,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        outcomes = model.process([image.pixels for image in batch])
        version = model.bundle.manifest.version
        return [
            PredictionResult(image, outcome, version)
            for image, outcome in zip(batch, outcomes, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[DecodedImage]) -> int:
        return sum(image.pixels.nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        return "stylefix"
