"""The images a batch refers to by file id: each distinct image or mask is uploaded once per
job (a `file_uploaded` line records its sha256 and file id, so a later run reuses it), however
many items share it and however many of them ask for it at once.
"""

from __future__ import annotations

import asyncio
import hashlib

from pipeline.batch.context import BatchContext
from pipeline.ledger.batches import BatchState

IMAGE_PURPOSE = "vision"  # images referred to by file_id (API-FACTS "Batch API")


class ImageUploads:
    def __init__(self, ctx: BatchContext, state: BatchState):
        self.ctx = ctx
        self.state = state
        self._pending: dict[str, asyncio.Future[str]] = {}

    async def file_id(self, data: bytes, filename: str, content_type: str) -> str:
        """The file id of these bytes: recorded by an earlier upload, or uploaded now (once,
        however many items share them)."""
        sha = hashlib.sha256(data).hexdigest()
        known = self.state.uploads.get(sha)
        if known is not None:
            return known
        if sha not in self._pending:
            self._pending[sha] = asyncio.ensure_future(
                self._upload(sha, data, filename, content_type)
            )
        return await self._pending[sha]

    async def _upload(self, sha: str, data: bytes, filename: str, content_type: str) -> str:
        uploaded = await self.ctx.api.upload(data, filename, IMAGE_PURPOSE, content_type)
        file_id = str(uploaded["id"])
        await self.ctx.writer.awrite(
            "file_uploaded",
            sha256=sha,
            file_id=file_id,
            bytes=len(data),
            purpose=IMAGE_PURPOSE,
            filename=filename,
        )
        self.state.uploads[sha] = file_id
        return file_id
