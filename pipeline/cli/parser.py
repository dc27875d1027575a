"""The `editbatch` command line's grammar: every command, option, default and help text (the
README's tables are checked against it by tests/test_docs.py). Parsing only; main.py acts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import __version__


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
