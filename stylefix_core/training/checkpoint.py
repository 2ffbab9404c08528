"""Resumable training: model, optimiser and random-number state every few steps.

Checkpoints hold only tensors, numbers and dicts, and are read back with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
A resumed run continues the same random streams, so it ends where an
uninterrupted run with the same seed would.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import torch

from stylefix_core.io import storage

log = logging.getLogger(__name__)


class CheckpointMismatch(ValueError):
    """A checkpoint saved by another training run (other data, settings or stage)."""


@dataclass
class Checkpoint:
    """Saves to ``url`` every ``every`` steps; an empty url disables it.

    ``identity`` names what is trained (stage, settings and a fingerprint of
    the data): a checkpoint with another identity is refused, not resumed,
    since its networks were fitted to something else and a run resumed from
    one at its last step would train nothing at all.
    """

    url: str = ""
    every: int = 100
    identity: str = ""

    def restore(self, stateful: dict, generators: dict[str, torch.Generator]) -> int:
        """Load state into ``stateful`` (modules, optimisers) and generators; returns the next step."""
        if not self.url or not storage.exists(self.url):
            return 0
        data = io.BytesIO(storage.read_bytes(self.url))
        state = torch.load(data, weights_only=True, map_location="cpu")
        if "identity" not in state:
            raise CheckpointMismatch(
                f"{storage.redact(self.url)} was written before checkpoints named what they "
                "were trained on, so it cannot be told apart from another run's; delete it"
            )
        if state["identity"] != self.identity:
            raise CheckpointMismatch(
                f"{storage.redact(self.url)} was saved by another training run (other data, "
                "settings or stage); give another --checkpoint-dir or delete it"
            )
        for name, obj in stateful.items():
            obj.load_state_dict(state["state"][name])
        for name, generator in generators.items():
            generator.set_state(state["rng"][name])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda_rng"])
        log.info("resumed from %s at step %d", self.url, state["step"])
        return int(state["step"])

    def maybe_save(
        self, step: int, total: int, stateful: dict, generators: dict[str, torch.Generator]
    ) -> None:
        done = step + 1
        if not self.url or (done % self.every and done != total):
            return
        state = {
            "identity": self.identity,
            "step": done,
            "state": {name: obj.state_dict() for name, obj in stateful.items()},
            "rng": {name: g.get_state() for name, g in generators.items()},
            "torch_rng": torch.get_rng_state(),
            # losses draw on the CUDA generator too (sliced Wasserstein
            # directions): the current device's, where training has used CUDA
            "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        storage.write_bytes_atomic(self.url, buffer.getvalue())
