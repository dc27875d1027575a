"""`editbatch validate`: every check `run` makes before it sends anything, at once: the
manifest and its input files, the prices a budget needs, the output folder; and whether the
key variable is set (a warning: validate runs in CI and on laptops without the key)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from pipeline.core.envvars import references
from pipeline.core.errors import ManifestError, Problem
from pipeline.core.plan import Location, Remote
from pipeline.manifest.load import load_plan
from pipeline.outputs.files import output_problems, unwritable_reason
from pipeline.outputs.store import ObjectStore

EXIT_USAGE = 2


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2), flush=True)


def _error(text: str) -> None:
    print(f"editbatch: {text}", file=sys.stderr, flush=True)


def output_problem(out_dir: Location) -> str | None:
    """Why outputs cannot go to out_dir: a local folder is probed with a file; a bucket's
    folder is listed (which also tries the credentials)."""
    if not isinstance(out_dir, Remote):
        return unwritable_reason(out_dir)
    try:
        ObjectStore(out_dir).prepare()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def validate_command(args: argparse.Namespace) -> int:
    # Every check `run` makes before sending: the manifest and its files, the prices a budget
    # needs (in load_plan), the output folder; the key variable is a warning (validate runs in
    # CI and on laptops without the key; `run` refuses to start without it).
    try:
        offline = getattr(args, "offline_inputs", False)
        plan = load_plan(args.manifest, check_remote=not offline)
        reason = None if offline else output_problem(plan.output.dir)
        if reason:
            fix = "fix the path or its permissions, or choose another output.dir"
            where, message = "output.dir", f"cannot write outputs to {plan.output.dir}: {reason}"
            raise ManifestError([Problem(where, message, fix)])
        if not isinstance(plan.output.dir, Remote):  # each item's folder, as run checks it
            problems = output_problems(list(plan.items), plan.output.dir, plan.output.name)
            if problems:
                raise ManifestError(problems)
    except ManifestError as exc:
        if args.json:
            _print_json(
                {
                    "valid": False,
                    "problems": [
                        {"where": p.where, "message": p.message, "fix": p.fix} for p in exc.problems
                    ],
                }
            )
            return EXIT_USAGE
        raise
    key_env = plan.endpoint.api_key_env
    endpoints = Counter(item.endpoint for item in plan.items)
    needs_key = plan.endpoint.auth != "none"  # auth: none: a gateway signs, no key is read
    key_set = bool(os.environ.get(key_env))
    notes = [{"where": where, "message": message} for where, message in plan.notes]
    warnings = []
    for name, template in plan.endpoint.headers.items():
        for variable in references(template):
            if not os.environ.get(variable):
                warnings.append(
                    f"endpoint.headers.{name} reads ${{{variable}}}, which is not set: "
                    f"`editbatch run` would refuse to start; export {variable}"
                )
    if needs_key and not key_set:
        warnings.append(
            f"{key_env} is not set: `editbatch run` would refuse to start; export the key in "
            "it (endpoint.api_key_env names the variable), or try the job with --simulate"
        )
    if args.json:
        _print_json(
            {
                "valid": True,
                "items": len(plan.items),
                "ids": [i.id for i in plan.items],
                "key_env": key_env,
                "key_set": key_set,
                "warnings": warnings,
                "endpoints": dict(sorted(endpoints.items())),
                "provider": plan.endpoint.provider,
                "notes": notes,
            }
        )
    else:
        for warning in warnings:
            _error(f"warning: {warning}")
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(endpoints.items()))
        print(
            f"{args.manifest}: valid, {len(plan.items)} item(s) ({kinds}) "
            f"for {plan.endpoint.provider}",
            flush=True,
        )
        for note in notes:  # inputs sent turned upright, masks that mark everything
            print(f"  note: {note['where']}: {note['message']}", flush=True)
    return 0
