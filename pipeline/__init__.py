"""editbatch: edit thousands of images through an OpenAI-compatible image edits API, with
bounded concurrency, retries, budgets, a JSONL ledger and resume.

The library entry point is one call::

    from pipeline import load_plan, run, RunOptions
    summary = await run(load_plan("job.yaml"), RunOptions(max_usd=5))
    summary.exit_code  # 0 done, 1 some failed, 3 budget stop, 4 aborted, 130/143 signal
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RunOptions", "RunSummary", "__version__", "load_plan", "run"]


def __getattr__(name: str):
    # Imported lazily so `python -m pipeline schema` and the simulator don't pay for the runner.
    if name in ("run", "RunOptions", "RunControl"):
        from pipeline.engine import runner

        return getattr(runner, name)
    if name == "RunSummary":
        from pipeline.engine.summary import RunSummary

        return RunSummary
    if name == "load_plan":
        from pipeline.manifest.load import load_plan

        return load_plan
    raise AttributeError(name)
