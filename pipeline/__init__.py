"""editbatch: edit thousands of images through an OpenAI-compatible image edits API, with
bounded concurrency, retries, budgets, a JSONL ledger and resume.

The library entry point is one call::

    from pipeline import load_plan, run, RunOptions
    summary = await run(load_plan("job.yaml"), RunOptions(max_usd=5))
    summary.exit_code  # 0 done, 1 some failed, 3 budget stop, 4 aborted, 130/143 signal

With `mode: batch` in the manifest, or `RunOptions(batch=True)`, the same call goes through
the provider's Batch API at its price (exit 5 while batches are in flight; `wait=True` polls
until every batch is collected).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RunOptions", "RunSummary", "__version__", "load_plan", "run"]


async def run(plan, options=None):
    """Run (or resume) the plan: interactively (pipeline.engine) or, in batch mode, through
    the Batch API (pipeline.batch). Returns a RunSummary; never prints or exits."""
    from pipeline.engine import runner

    options = options or runner.RunOptions()
    if not options.dry_run and (options.batch or plan.mode == "batch"):
        from pipeline.batch.mode import run_batch

        return await run_batch(plan, options)
    return await runner.run(plan, options)


def __getattr__(name: str):
    # Imported lazily so `python -m pipeline schema` and the simulator don't pay for the runner.
    if name in ("RunOptions", "RunControl"):
        from pipeline.engine import runner

        return getattr(runner, name)
    if name == "RunSummary":
        from pipeline.engine.summary import RunSummary

        return RunSummary
    if name == "load_plan":
        from pipeline.manifest.load import load_plan

        return load_plan
    raise AttributeError(name)
