"""`editbatch batch status|cancel MANIFEST`: what the provider says of the job's open batches,
and cancelling them. Reads the ledger without its lock (a run may hold it) and writes nothing:
the next `run` collects a cancelled batch (keeping what finished) like any other.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import aiohttp

from pipeline.api.batches import BatchAPI
from pipeline.api.providers import Route
from pipeline.core.errors import UsageError
from pipeline.core.plan import Plan
from pipeline.ledger.status import read_job_state


@dataclass(frozen=True, slots=True)
class BatchView:
    id: str
    status: str
    items: int  # in the ledger's batch_submitted line
    counts: dict  # the provider's request_counts
    created_at: int | None

    def to_json(self) -> dict:
        return {
            "batch": self.id,
            "status": self.status,
            "items": self.items,
            "counts": self.counts,
            "created_at": self.created_at,
        }


def _api_key(plan: Plan, api_key: str | None) -> str:
    key = api_key or os.environ.get(plan.endpoint.api_key_env)
    if not key:
        raise UsageError(
            f"{plan.endpoint.api_key_env} is not set: export the API key in that variable "
            "(endpoint.api_key_env names it)"
        )
    return key


async def batch_views(
    plan: Plan, *, base_url: str | None = None, api_key: str | None = None, cancel: bool = False
) -> tuple[list[BatchView], int]:
    """The job's open batches as the provider sees them (cancelled first when `cancel`), and
    how many batches the ledger records as collected."""
    state, _ = await asyncio.to_thread(read_job_state, plan)
    batches = state.batches
    if not batches.open:
        return [], batches.collected
    route = Route.for_run(plan.endpoint, os.environ, base_url=base_url)
    key = _api_key(plan, api_key) if route.needs_key else None
    views = []
    async with aiohttp.ClientSession() as http:
        api = BatchAPI(
            http,
            route.base_url,
            key,
            timeout_s=plan.limits.timeout_s,
            api_key_env=plan.endpoint.api_key_env,
            headers=route.request_headers(key),
            secrets=route.secrets,
        )
        for batch in batches.open.values():
            info = await api.get_batch(batch.id)
            if cancel and info.get("status") in ("validating", "in_progress", "finalizing"):
                info = await api.cancel_batch(batch.id)
            views.append(
                BatchView(
                    id=batch.id,
                    status=str(info.get("status")),
                    items=len(batch.items),
                    counts=dict(info.get("request_counts") or {}),
                    created_at=info.get("created_at"),
                )
            )
    return views, batches.collected
