"""The write stage: threaded writes keep arrival order, bound what waits, and fail per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.transforms import ERROR, REPORT, WriteImage
from stylefix_core.config import JobConfig
from stylefix_core.engine import ImageResult
from stylefix_core.records import DecodedImage, RoutedImage, ShardMember
from stylefix_core.scoring.scorer import DETECTORS


def _prediction(index: int) -> PredictionResult:
    pixels = np.full((8, 8, 3), index % 256, dtype=np.uint8)
    member = ShardMember("shard", f"key-{index:03d}", "src", b"", ".png")
    result = ImageResult(
        output=pixels,
        scores=dict.fromkeys(DETECTORS, 0.0),
        anomaly_score=0.0,
        threshold=1.0,
        is_anomaly=False,
        reasons=(),
        corrected=False,
        correction="",
        score_after_correction=0.0,
        device="cpu",
    )
    routed = RoutedImage(DecodedImage(member, pixels, "0" * 64), "riso", "")
    return PredictionResult(routed, result, "v1")


def _run(output: str, count: int) -> list[tuple]:
    """Drive the DoFn as a runner does; returns (shard, (tag, row)) in emitted order."""
    stage = WriteImage(JobConfig(input="in", output=output))
    stage.setup()
    stage.start_bundle()
    emitted = []
    for i in range(count):
        element = WindowedValue(_prediction(i), MIN_TIMESTAMP, (GlobalWindow(),))
        emitted += list(stage.process(element.value, windowed=element))
        assert len(stage._pending) <= WriteImage.MAX_PENDING
    emitted += list(stage.finish_bundle())
    stage.teardown()
    assert all(isinstance(v, WindowedValue) for v in emitted)
    return [v.value for v in emitted]


def test_rows_leave_in_arrival_order_and_every_image_is_written(tmp_path: Path):
    count = WriteImage.MAX_PENDING * 2 + 3
    rows = _run(str(tmp_path), count)
    assert [row["key"] for _, (tag, row) in rows] == [f"key-{i:03d}" for i in range(count)]
    assert {tag for _, (tag, _) in rows} == {REPORT}
    assert all(Path(row["output_uri"]).is_file() for _, (_, row) in rows)


def test_a_failed_write_is_an_error_row_for_that_image(tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    rows = _run(str(blocker), 3)
    assert [(tag, row["stage"], row["key"]) for _, (tag, row) in rows] == [
        (ERROR, "write", f"key-{i:03d}") for i in range(3)
    ]
