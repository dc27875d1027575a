"""The JSONL ledger and what it says: the writer and its lock, the scan, resume verdicts, the
state of a job across its shard ledgers. Imports `core`, `outputs`, `cost`.
"""
