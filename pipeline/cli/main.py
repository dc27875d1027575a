"""The `editbatch` command: a thin layer over the library. It parses options, prints, and maps
outcomes to exit codes (CONTRACT section 2); all the work is in `pipeline.*`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from pipeline.cli.parser import build_parser
from pipeline.core.errors import LedgerUnwritable, ManifestError, UsageError

EXIT_USAGE = 2
EXIT_ABORTED = 4  # a condition no retry fixes (as a full output disk)
EXIT_INTERNAL = 70  # a bug in editbatch (EX_SOFTWARE); never an API outcome


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
