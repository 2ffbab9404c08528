"""The ``stylefix`` command: run the job, rebuild its report, train bundles, build the sample catalog.

This is the command line's own output, so it prints; everything else logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stylefix_core.qa_report.build import ReportResult


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


# What ``stylefix report`` exits with when a run crossed a limit given as an
# option, so that a scheduler can tell "alert" (3) from "broken" (1) and "misused" (2).
LIMIT_CROSSED = 3


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


# The page inlines two thumbnails per worst image, read again from the sources.
MAX_TOP = 200


def _top(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_TOP:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_TOP}")
    return value


def _report_parser(default_top: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylefix report",
        description="Rebuild OUTPUT/report.html from a run's Parquet tables; with --compare, "
        f"compare with a previous run. Exits {LIMIT_CROSSED} when a given limit is crossed.",
    )
    add = parser.add_argument
    add("output", help="the run's output prefix URL")
    add("--compare", metavar="PREVIOUS_OUTPUT", help="a previous run's output prefix URL")
    add(
        "--compare-optional",
        action="store_true",
        help="a --compare prefix with no run under it (a first night, a night that did not "
        "run) is noted and left out instead of failing the command",
    )
    add(
        "--top",
        type=_top,
        default=default_top,
        help=f"how many of the worst images to show (at most {MAX_TOP}; each is read again)",
    )
    add("--html", help="where to write the page (default: OUTPUT/report.html)")
    add("--max-flagged-share", type=_share, help="alert above this share of flagged images")
    add("--max-error-share", type=_share, help="alert above this share of inputs with errors")
    add("--max-drift-ks", type=_share, help="alert above this KS statistic (needs --compare)")
    add("--min-drift-p", type=_share, help="alert below this KS p-value (needs --compare)")
    return parser


def _report_lines(result: ReportResult) -> list[str]:
    page = result.page
    counts = page.counts
    lines = [
        f"wrote {result.uri}",
        f"  images      {counts.inputs} in: {counts.scored} scored, {counts.flagged} flagged "
        f"({counts.flagged_share:.1%}), {counts.errors} errors ({counts.error_share:.1%})",
    ]
    comparison = page.comparison
    if comparison is not None:
        drift = comparison.drift
        tested = (
            f"drift KS D={drift.statistic:.4f} p={drift.pvalue:.3g}" if drift else "no drift test"
        )
        lines.append(
            f"  compared    with {comparison.previous_run_id}: {len(comparison.new_anomalies)} new, "
            f"{len(comparison.resolved_anomalies)} resolved anomalies; {tested}"
        )
    if page.limits_checked:
        lines.append(f"  limits      {'crossed' if page.breaches else 'all within'}")
    return lines


def cmd_report(argv: Sequence[str]) -> int:
    from stylefix_core.qa_report.build import DEFAULT_TOP, build_report
    from stylefix_core.qa_report.compare import AlertLimits
    from stylefix_core.qa_report.loader import ReportInputError, holds_run

    parser = _report_parser(DEFAULT_TOP)
    args = parser.parse_args(argv)
    if not args.compare and (args.max_drift_ks is not None or args.min_drift_p is not None):
        parser.error("--max-drift-ks and --min-drift-p need --compare")
    if args.compare and args.compare_optional and not holds_run(args.compare):
        print(f"stylefix report: no run under {args.compare}; not compared", file=sys.stderr)
        args.compare = None

    limits = AlertLimits(
        max_flagged_share=args.max_flagged_share,
        max_error_share=args.max_error_share,
        max_drift_ks=args.max_drift_ks,
        min_drift_pvalue=args.min_drift_p,
    )
    try:
        result = build_report(
            args.output, previous=args.compare, limits=limits, top=args.top, html_uri=args.html
        )
    except ReportInputError as exc:
        print(f"stylefix report: {exc}", file=sys.stderr)
        return 2
    print("\n".join(_report_lines(result)))
    for breach in result.breaches:
        print(f"LIMIT CROSSED: {breach.describe()}", file=sys.stderr)
    return LIMIT_CROSSED if result.breaches else 0


COMMANDS = {
    "run": cmd_run,
    "report": cmd_report,
    "train": cmd_train,
    "sample-catalog": cmd_sample_catalog,
}


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
