"""The `editbatch` command: a thin layer over the library. It parses options, prints, and maps
outcomes to exit codes (CONTRACT section 2); all the work is in `pipeline.*`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from pipeline import __version__
from pipeline.core.errors import LedgerUnwritable, ManifestError, UsageError

EXIT_USAGE = 2
EXIT_ABORTED = 4  # a condition no retry fixes (as a full output disk)
EXIT_INTERNAL = 70  # a bug in editbatch (EX_SOFTWARE); never an API outcome


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be 0 to 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: a scheduled command line must keep working only while its options exist.
    parser = argparse.ArgumentParser(
        prog="editbatch",
        allow_abbrev=False,
        description="Batch image edits through an OpenAI-compatible API, with budgets, "
        "retries, a JSONL ledger and resume.",
    )
    parser.add_argument("--version", action="version", version=f"editbatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", allow_abbrev=False, help="run the job; a second call resumes it")
    run.add_argument("manifest", type=Path, metavar="MANIFEST")
    run.add_argument("--concurrency", type=_positive_int, help="requests in flight at most")
    run.add_argument(
        "--rpm", type=_non_negative, help="requests per minute, spaced evenly (0 = adapt)"
    )
    run.add_argument("--max-usd", type=_non_negative, help="budget of this run in USD")
    run.add_argument("--base-url", help="the API's base URL, e.g. https://api.openai.com/v1")
    run.add_argument("--only", nargs="+", metavar="ID", default=(), help="run only these items")
    run.add_argument(
        "--retry-failed", action="store_true", help="try items that failed earlier again"
    )
    run.add_argument("--dry-run", action="store_true", help="plan and estimate; send nothing")
    run.add_argument(
        "--batch",
        action="store_true",
        help="through the Batch API at its price (as mode: batch); exit 5 while in flight",
    )
    run.add_argument(
        "--wait", action="store_true", help="batch mode: poll until every batch is collected"
    )
    run.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="rich: a live bar; plain: a log line every 30 s; none: warnings only; "
        "auto (default): rich on a terminal, plain otherwise",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print a machine-readable summary on stdout (the human one goes to stderr)",
    )
    run.add_argument(
        "--simulate", action="store_true", help="use the built-in simulator (no key, no network)"
    )
    run.add_argument(
        "--grace",
        type=_non_negative,
        default=30.0,
        metavar="SECONDS",
        help="after SIGINT/SIGTERM, how long requests in flight may finish (default 30)",
    )
    run.add_argument("--shard", metavar="K/N", help="run shard K (0..N-1) of N of this job")
    run.add_argument(
        "--summary-file", type=Path, metavar="PATH", help="write the JSON summary here too"
    )
    run.add_argument(
        "--metrics-file", type=Path, metavar="PATH", help="write Prometheus textfile metrics here"
    )
    run.add_argument(
        "--sim-latency",
        type=_non_negative,
        default=None,
        metavar="SECONDS",
        help="with --simulate: mean latency per request (default 0.4)",
    )
    run.add_argument(
        "--sim-faults", metavar="SPEC", help="with --simulate: e.g. 500=0.05,429=0.1,reset=0.02"
    )
    run.add_argument(
        "--sim-rpm",
        type=_non_negative,
        default=0.0,
        metavar="N",
        help="with --simulate: the simulator's rate limit (requests per minute)",
    )
    run.add_argument(
        "--sim-outside-drift",
        type=_fraction,
        default=0.0,
        metavar="X",
        help="with --simulate: how much the model also changes kept pixels, 0-1 (default 0)",
    )
    run.add_argument(
        "--seed", type=int, default=None, help="seed for backoff jitter and the simulator"
    )
    caching = run.add_mutually_exclusive_group()
    caching.add_argument(
        "--cache", type=Path, metavar="DIR", help="the cross-run cache's folder (over cache:)"
    )
    caching.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the cross-run cache"
    )

    validate = sub.add_parser(
        "validate", allow_abbrev=False, help="check the manifest and every input; send nothing"
    )
    validate.add_argument("manifest", type=Path, metavar="MANIFEST")
    validate.add_argument(
        "--json", action="store_true", help="print one JSON object: valid, problems or ids"
    )
    validate.add_argument(
        "--offline-inputs",
        action="store_true",
        help="do not ask the stores whether remote inputs (URLs) exist",
    )

    estimate = sub.add_parser(
        "estimate", allow_abbrev=False, help="tokens and USD of the pending items"
    )
    estimate.add_argument("manifest", type=Path, metavar="MANIFEST")
    estimate.add_argument(
        "--json", action="store_true", help="print one JSON object: totals, per model, per item"
    )
    estimate.add_argument(
        "--retry-failed", action="store_true", help="count failed items as pending"
    )

    report = sub.add_parser("report", allow_abbrev=False, help="what the ledger says")
    report.add_argument("sources", nargs="+", type=Path, metavar="MANIFEST_OR_LEDGER")
    report.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: counts, cost, errors, every failed id (failed_ids)",
    )
    report.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write one self-contained review page (instead of the text report)",
    )

    batch = sub.add_parser(
        "batch", allow_abbrev=False, help="batch mode: the job's open batches at the provider"
    )
    batch.add_argument(
        "action",
        choices=("status", "cancel"),
        help="status: what the provider says of them; cancel: stop them (a run collects them)",
    )
    batch.add_argument("manifest", type=Path, metavar="MANIFEST")
    batch.add_argument("--base-url", help="the API's base URL (default: the manifest's)")
    batch.add_argument("--json", action="store_true", help="one JSON object on stdout")

    simulate = sub.add_parser(
        "simulate", allow_abbrev=False, help="serve the built-in API simulator on loopback"
    )
    from pipeline.simulator import cli as sim_cli

    sim_cli.add_arguments(simulate)

    sub.add_parser("schema", allow_abbrev=False, help="print the manifest's JSON Schema")

    cache = sub.add_parser(
        "cache", allow_abbrev=False, help="the cross-run cache: what it holds, pruning"
    )
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    stats = cache_sub.add_parser("stats", allow_abbrev=False, help="entries, images, bytes")
    stats.add_argument("where", type=Path, metavar="DIR_OR_MANIFEST")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    prune = cache_sub.add_parser(
        "prune", allow_abbrev=False, help="remove entries not used for a while"
    )
    prune.add_argument("where", type=Path, metavar="DIR_OR_MANIFEST")
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="unused (stored or hit) for longer than this: 30d, 12h, 2w, 90m",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # An item id from a file name that is not UTF-8 prints with a replacement mark
        # instead of stopping the command.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ManifestError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except LedgerUnwritable as exc:  # disk full: the environment's doing, not a bug
        _error(str(exc))
        return EXIT_ABORTED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `editbatch report | head`: the reader left; not an error of ours
        _quiet_broken_pipe()
        return 0
    except Exception as exc:  # a bug: say so in one line; the traceback only when asked
        if os.environ.get("EDITBATCH_DEBUG"):
            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in editbatch; "
            "rerun with EDITBATCH_DEBUG=1 for the traceback and report it. "
            "The ledger is consistent: a rerun resumes."
        )
        return EXIT_INTERNAL


def _quiet_broken_pipe() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _error(text: str) -> None:
    print(f"editbatch: {text}", file=sys.stderr, flush=True)


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, sort_keys=False), flush=True)


def cmd_schema(args: argparse.Namespace) -> int:
    from pipeline.manifest.load import json_schema

    _print_json(json_schema())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.cli.validate import validate_command

    return validate_command(args)


def cmd_estimate(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.cli.run import print_dry_run
    from pipeline.engine.runner import RunOptions, run
    from pipeline.manifest.load import load_plan

    # The same answer as `run --dry-run`: the pending items, their cost, the budget's outlook.
    plan = load_plan(args.manifest)
    summary = asyncio.run(run(plan, RunOptions(dry_run=True, retry_failed=args.retry_failed)))
    return print_dry_run(summary, args.json, title="estimate")


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report.aggregate import load_sources, summarize
    from pipeline.report.html import write_html
    from pipeline.report.text import render_text

    warnings: list[str] = []
    plan, records = load_sources(args.sources, warnings)
    report = summarize(records, plan, warnings)
    for warning in warnings:
        _error(f"warning: {warning}")
    if args.html:
        # Without a manifest, outputs are looked for beside the (first) ledger, where the
        # default layout puts them.
        out_dir = plan.output.dir if plan is not None else args.sources[0].parent
        write_html(report, records, plan, args.html, out_dir=out_dir)
        _error(f"wrote {args.html}")
    if args.json:
        _print_json(report.to_json())
    elif not args.html:
        print(render_text(report), flush=True)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.batch.operator import batch_views
    from pipeline.core.errors import AttemptError, FatalError
    from pipeline.manifest.load import load_plan

    plan = load_plan(args.manifest, check_files=False)
    try:
        views, collected = asyncio.run(
            batch_views(plan, base_url=args.base_url, cancel=args.action == "cancel")
        )
    except AttemptError as exc:
        _error(exc.message)
        return 4 if isinstance(exc, FatalError) else 75
    if args.json:
        _print_json({"open": [v.to_json() for v in views], "collected": collected})
        return 0
    if not views:
        print(f"{plan.name}: no open batch ({collected} collected)", flush=True)
        return 0
    for view in views:
        counts = view.counts
        print(
            f"{view.id}  {view.status:<11} {view.items} item(s); provider: "
            f"{counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed "
            f"of {counts.get('total', 0)}",
            flush=True,
        )
    print(
        f"{len(views)} open, {collected} collected; `editbatch run {args.manifest} --batch` "
        "collects the ended ones",
        flush=True,
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.simulator import cli as sim_cli

    return sim_cli.run(args)


def cmd_cache(args: argparse.Namespace) -> int:
    from pipeline.cache.store import AnswerCache, parse_age

    where = args.where
    if where.suffix.lower() in (".yaml", ".yml"):
        from pipeline.manifest.load import load_plan

        plan = load_plan(where, check_files=False)
        if plan.cache is None:
            raise UsageError(f"{where} has no `cache:`; give the cache's folder instead")
        where = plan.cache
    elif not where.is_dir():
        raise UsageError(f"{where}: no such folder; give the cache's folder or a manifest")
    cache = AnswerCache(where)
    if args.cache_command == "stats":
        stats = cache.stats()
        if args.json:
            _print_json({"cache": str(where), **stats.to_json()})
        else:
            facts = stats.to_json()
            print(
                f"{where}: {stats.entries} answer(s), {stats.images} image(s), "
                f"{stats.bytes / 2**20:.1f} MB; last used from {facts['oldest_use'] or '-'} "
                f"to {facts['newest_use'] or '-'}",
                flush=True,
            )
        return 0
    try:
        age = parse_age(args.older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    removed, freed = cache.prune(age)
    print(f"{where}: removed {removed} answer(s), {freed / 2**20:.1f} MB", flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.cli.run import run_command

    return run_command(args)


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "estimate": cmd_estimate,
    "report": cmd_report,
    "batch": cmd_batch,
    "simulate": cmd_simulate,
    "schema": cmd_schema,
    "cache": cmd_cache,
}
