"""The `editbatch simulate` command: its options, and serving until SIGINT or SIGTERM.

The base URL is the first line on stdout, so a script can read it and point a client at it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from pipeline.simulator.config import GATEWAYS, SimConfig, parse_faults
from pipeline.simulator.models import SIM_DEFAULT_MODEL


def _faults(text: str) -> dict[str, float]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_deployments(text: str) -> dict[str, str]:
    """`"photos=gpt-image-2,fast=gpt-image-1-mini"` -> {"photos": "gpt-image-2", ...}."""
    deployments: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, model = (piece.strip() for piece in entry.partition("="))
        if not sep or not name or not model:
            raise argparse.ArgumentTypeError(
                f"{entry!r} is not NAME=MODEL; write e.g. photos=gpt-image-2"
            )
        deployments[name] = model
    return deployments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (8000)")
    parser.add_argument(
        "--rpm", type=float, default=0, help="requests per minute before 429s; 0 = no limit (0)"
    )
    parser.add_argument(
        "--latency", type=float, default=0, help="mean seconds per generated answer (0)"
    )
    parser.add_argument(
        "--jitter", type=float, default=0, help="latency varies uniformly by +- this (0)"
    )
    parser.add_argument(
        "--latency-by-quality",
        action="store_true",
        help="scale latency by quality: low x0.5, medium x1, high x2",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default={},
        metavar="NAME=RATE,...",
        help="fault probabilities, e.g. 500=0.05,429=0.1,reset=0.02 (none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of fault and latency draws (0)")
    parser.add_argument(
        "--api-key", default=None, help="accept only this bearer key (default: any key)"
    )
    parser.add_argument(
        "--gateway",
        choices=GATEWAYS,
        default=None,
        help="answer as this proxy in front of the API would: errors and headers rewritten (none)",
    )
    parser.add_argument(
        "--outside-drift",
        type=float,
        default=0.0,
        metavar="X",
        help="edits also change the pixels the mask keeps, by a mean |RGB| difference of X "
        "(0 to 1; 1 repaints everything) (0)",
    )
    parser.add_argument(
        "--default-model",
        default=SIM_DEFAULT_MODEL,
        help=f"the model of a request that names none ({SIM_DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--azure-deployments",
        type=parse_deployments,
        default={},
        metavar="NAME=MODEL,...",
        help="Azure deployments and their models; others are DeploymentNotFound (default: any "
        "name, served as itself when it is a model, else as gpt-image-1.5)",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=2.0,
        help="seconds a batch takes from validating to completed (2)",
    )
    parser.add_argument(
        "--batch-expire-after",
        type=int,
        default=None,
        metavar="LINES",
        help="batches expire after answering this many lines (never)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a clean shutdown, 2 on bad options or port."""
    try:
        config = SimConfig(
            rpm=args.rpm,
            latency_s=args.latency,
            jitter_s=args.jitter,
            latency_by_quality=args.latency_by_quality,
            faults=args.faults,
            seed=args.seed,
            api_key=args.api_key,
            gateway=args.gateway,
            outside_drift=args.outside_drift,
            default_model=args.default_model,
            azure_deployments=args.azure_deployments,
            batch_seconds=args.batch_seconds,
            batch_expire_after=args.batch_expire_after,
        )
    except ValueError as exc:
        print(f"editbatch simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(config, args.host, args.port))


async def _serve(config: SimConfig, host: str, port: int) -> int:
    from pipeline.simulator.server import running  # not at import: `editbatch run` needs none

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(config, host, port) as url:
            print(url, flush=True)
            print(
                f"editbatch simulator: POST {url}/images/edits (and /images/generations, "
                f"/files, /batches, Azure's /openai/...), stats at "
                f"{url.removesuffix('/v1')}/_sim/stats; stop with Ctrl+C",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    except OSError as exc:
        print(
            f"editbatch simulate: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port or stop what uses it",
            file=sys.stderr,
        )
        return 2
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
