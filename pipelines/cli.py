"""The ``stylefix`` command: run the job, train bundles, build the sample catalog.

This is the command line's own output, so it prints; everything else logs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


def _summary_lines(summary) -> list[str]:
    errors = (
        ", ".join(f"{stage}: {n}" for stage, n in sorted(summary.errors_by_stage.items())) or "none"
    )
    return [
        f"StyleFix run {summary.run_id} finished in {summary.seconds:.1f}s",
        f"  shards      {summary.shards} ({summary.shards_skipped} already complete, skipped)",
        f"  images      {summary.images} read: {summary.report_rows} reported, {summary.error_rows} errors ({errors})",
        f"  flagged     {summary.flagged}",
        f"  corrected   {summary.corrected}",
        f"  device      {', '.join(summary.devices) or '-'}",
        f"  outputs     {summary.output}/images/  report/  errors/  run_manifest.json",
    ]


def cmd_run(argv: Sequence[str]) -> int:
    from pipelines.main import run

    summary = run(list(argv))
    print("\n".join(_summary_lines(summary)))
    return 0


def cmd_train(argv: Sequence[str]) -> int:
    from stylefix_core.training.cli import main as train_main

    return train_main(argv)


def cmd_sample_catalog(argv: Sequence[str]) -> int:
    from stylefix_core.sample_catalog import main as catalog_main

    return catalog_main(list(argv))


COMMANDS = {"run": cmd_run, "train": cmd_train, "sample-catalog": cmd_sample_catalog}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: stylefix {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
