"""The ``stylefix`` command: run the job, train bundles, build the sample catalog.

This is the command line's own output, so it prints; everything else logs.
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser(prog="stylefix train")
    sub = parser.add_subparsers(dest="what", required=True)
    default = sub.add_parser(
        "default", help="train the default bundle (riso style, generated content)"
    )
    default.add_argument("out", help="bundle folder URL to write")
    default.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the default step counts"
    )
    default.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    from stylefix_core.training.default import train_default

    manifest = train_default(args.out, scale=args.scale, device=args.device)
    print(
        f"wrote bundle {manifest.version} to {args.out} (threshold {manifest.calibration.threshold:.3f})"
    )
    return 0


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
