"""The cross-run cache: answers kept across runs and jobs, keyed by what was asked, so the same
request is never paid for twice. Imports `core` and `outputs`.
"""
