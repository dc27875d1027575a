"""Sharding one job over N processes (`run --shard K/N`): which items a shard owns, where its
ledger is, and its share of the job's rate and budgets.

Items are split by a stable hash of their id, so a shard's share does not depend on the order
of the manifest. K counts from 0 (Kubernetes' JOB_COMPLETION_INDEX) to N-1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.plan import Item


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r}: write it as K/N, e.g. 0/3 (K from 0 to N-1)")
        shard = cls(int(index), int(count))
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard {text!r}: in K/N, K goes from 0 to N-1 and N is 1 or more")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, item_id: str) -> bool:
        digest = hashlib.sha256(item_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def ledger_path(self, job_ledger: Path) -> Path:
        """Each shard writes (and locks) its own ledger beside the job's."""
        return job_ledger.with_name(
            f"{job_ledger.stem}.shard-{self.index}-of-{self.count}{job_ledger.suffix}"
        )

    def share(
        self,
        rpm: float,
        run_usd: float | None,
        total_usd: float | None,
        *,
        explicit_rpm: bool,
        explicit_run_usd: bool,
    ) -> tuple[float, float | None, float | None]:
        """The shard's part of the job's rate and run budget: divided by N unless given on this
        shard's command line, so N shards together keep the organisation's rate and the job's
        budget. The total budget is shared by `total_share` once the job's spend is known."""

        def part(value: float | None) -> float | None:
            return None if value is None else value / self.count

        return (
            rpm if explicit_rpm else rpm / self.count,
            run_usd if explicit_run_usd else part(run_usd),
            total_usd,
        )

    def total_share(self, total_usd: float | None, spent_usd: float) -> float | None:
        """This shard's bound on all recorded spend: what the job has spent (in every ledger)
        plus its N-th of what is left under total_usd."""
        if total_usd is None:
            return None
        return spent_usd + max(0.0, total_usd - spent_usd) / self.count


def select_shard(items: list[Item], shard: Shard) -> list[Item]:
    return [item for item in items if shard.owns(item.id)]


def job_ledgers(job_ledger: Path) -> list[Path]:
    """The job's ledger and every shard ledger beside it, whatever N they were run with."""
    found = [job_ledger] if job_ledger.exists() else []
    pattern = f"{job_ledger.stem}.shard-*-of-*{job_ledger.suffix}"
    found.extend(sorted(job_ledger.parent.glob(pattern)))
    return found
