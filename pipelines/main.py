"""The entry point Dataflow, Flink and the CLI launch: ``python -m pipelines.main``.

``run(argv, test_pipeline)`` is the same function in production and in tests,
which is how the tests exercise exactly what a scheduled job runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from pipelines.options import refuse_misspelt_options, to_job_config
from pipelines.progress import run_and_watch
from pipelines.run_manifest import RunPlan, RunSummary, WriteRunManifest, summarise
from pipelines.transforms import NAMESPACE, StyleFix
from stylefix_core.bundle import Manifest, load_bundle, require_current_statistics
from stylefix_core.config import JobConfig
from stylefix_core.device import resolve_device
from stylefix_core.io import outputs
from stylefix_core.io.shards import plan_shards
from stylefix_core.qa_report.build import build_report
from stylefix_core.records import ShardSpec
from stylefix_core.styles import StyleTable, build_style_table

log = logging.getLogger("stylefix")

# Runners whose workers are this process or its children.
LOCAL_RUNNERS = frozenset(
    {
        "directrunner",
        "fnapirunner",
        "bundlebaseddirectrunner",
        "switchingdirectrunner",
        "prismrunner",
    }
)


def runner_name(options: PipelineOptions) -> str:
    """The runner's name as given (``DirectRunner`` when none is)."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    return runner if isinstance(runner, str) else type(runner).__name__


def workers_run_here(options: PipelineOptions) -> bool:
    """Whether the job's workers run on this machine, so share its devices.

    A Dataflow or Flink launcher has no GPU of its own; checking CUDA there
    would refuse a GPU job that its workers could run.
    """
    name = runner_name(options).rsplit(".", 1)[-1].lower()
    name = name if name.endswith("runner") else name + "runner"
    if name == "portablerunner":
        return options.view_as(PortableOptions).job_endpoint == "embed"
    return name in LOCAL_RUNNERS


def only_writes_a_template(options: PipelineOptions) -> bool:
    """Dataflow with ``--template_location`` writes the job description and runs nothing."""
    return bool(options.view_as(GoogleCloudOptions).template_location)


def _pending_shards(
    config: JobConfig, specs: list[ShardSpec], summary: RunSummary
) -> list[ShardSpec]:
    """With --resume, shards whose marker records this job over the same
    input files count as done and are not re-run; every other shard runs."""
    if not config.resume:
        return specs
    pending = []
    for spec in specs:
        counts = outputs.read_marker(config.output, spec.name)
        if counts is not None and counts.completes(config.resolved_run_id(), spec.urls):
            summary.shards_skipped += 1
            continue
        if counts is not None:
            log.info(
                "shard %s: its marker is from run %s or other input files; running it again",
                spec.name,
                counts.run_id or "(unrecorded)",
            )
        pending.append(spec)
    return pending


def _style_table(config: JobConfig, default: Manifest) -> tuple[StyleTable, dict[str, Manifest]]:
    """The job's styles, and the manifest of each style's bundle.

    Every bundle is loaded once here, on the launcher, so a missing, tampered
    or stale (calibrated for other statistics) bundle of any style stops the
    job before a worker starts.
    """
    styles = build_style_table(default.style, config.bundle, config.bundles, config.style_rules)
    loaded = {config.bundle: default}
    for url in styles.bundles.values():
        if url not in loaded:
            loaded[url] = load_bundle(url).manifest
    for manifest in loaded.values():
        require_current_statistics(manifest.calibration)
    return styles, {name: loaded[url] for name, url in styles.bundles.items()}


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    *,
    model_handler: ModelHandler | None = None,
) -> RunSummary:
    """Plan shards and run the job, whose last step writes the run manifest; then
    build the QA report; returns the totals.

    ``model_handler`` replaces the default StyleFixModelHandler, for a
    different serving backend or for tests that inject faults into inference.
    Where the runner only writes a job description (a Dataflow template, which
    is how a Flex Template launcher submits), nothing has run when this
    returns: the totals are empty and the job writes its manifest itself.
    """
    refuse_misspelt_options(argv)
    options = PipelineOptions(argv)
    config = to_job_config(options)
    started, started_at = (
        time.monotonic(),
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    if config.device == "cuda" and workers_run_here(options):
        resolve_device("cuda")  # fail before any worker starts, where they start here
    bundle = load_bundle(config.bundle)  # validates manifest and weights before launch
    styles, manifests = _style_table(config, bundle.manifest)
    plan = plan_shards(config.input, config.files_per_shard)
    summary = RunSummary(
        run_id=config.resolved_run_id(), output=config.output, ignored_files=len(plan.ignored)
    )
    pending = _pending_shards(config, plan.shards, summary)
    if config.resume:
        removed = outputs.remove_temporaries(config.output)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run", removed)
    log.info("%d shard(s) planned, %d to run", len(plan.shards), len(pending))
    run_plan = RunPlan(
        config=config,
        bundle=bundle.manifest,
        shard_names=tuple(spec.name for spec in plan.shards),
        shards_skipped=summary.shards_skipped,
        ignored_files=summary.ignored_files,
        started_at=started_at,
        started=time.time(),
        runner=runner_name(options),
        styles=manifests,
    )
    pipeline = test_pipeline or beam.Pipeline(options=options)
    _ = (
        pipeline
        | "Shards" >> beam.Create(pending)
        | "StyleFix" >> StyleFix(config, styles, model_handler=model_handler)
        | "RunManifest" >> WriteRunManifest(run_plan)
    )
    if only_writes_a_template(options):
        pipeline.run()
        log.info("job description written; the job writes its outputs and manifest when it runs")
        return summary
    run_and_watch(pipeline, config.progress_interval_s, NAMESPACE)
    summary = summarise(config, run_plan.shard_names, summary.shards_skipped, len(plan.ignored))
    summary.seconds = round(time.monotonic() - started, 2)
    build_report(config.output)  # reads back only what the run wrote
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(argv)


if __name__ == "__main__":
    main()
