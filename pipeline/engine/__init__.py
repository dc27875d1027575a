"""One run: options, the worker pool, each item's attempts, pacing, retries, budgets, recording,
the summary. Imports every stage below it (and the simulator, for `--simulate`).
"""
