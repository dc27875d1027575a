"""The Batch API of the simulator: the routes and each batch's time-scaled life.

    POST /v1/batches              {"input_file_id", "endpoint", "completion_window": "24h",
                                  "metadata"} -> the batch object, status validating
    GET  /v1/batches/{id}         the batch object
    GET  /v1/batches?limit=&after=  newest first: {data, first_id, last_id, has_more}
    POST /v1/batches/{id}/cancel  cancelling, then cancelled with what finished (a batch
                                  already finalizing completes; an ended one: 409)

Life (`SimConfig.batch_seconds` = T): validating T/4 (the input file is read as batchinput.py
says; problems end it `failed` with `errors`), in_progress T/2 (lines answered in file order,
evenly spread), finalizing T/4, completed. Each line is answered as the interactive endpoint
answers it (service.py: the same checks, script tokens in the prompt, fault rates, usage),
without the rate limit or generation time, and billed at the batch price (half). A line
whose outcome exists only on a connection (reset, truncated, stall, a proxy's 502) answers
500. Results go to an output file (200s) and an error file (the rest), in an order that is
not the input's; request_counts count 200s as completed and other answers as failed.

Expiry (`SimConfig.batch_expire_after` = k, or the batch's metadata `sim_expire_after`):
after k lines the batch ends `expired`. Cancel: the batch stops answering, stays
`cancelling` T/4, then ends `cancelled`. In both, the answered lines are in the files, and
each line never answered is in the error file as `{"response": null, "error": {"code":
"batch_expired" | "batch_cancelled", ...}}`, as the Batch API writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid

from aiohttp import web

from pipeline.simulator import replies
from pipeline.simulator.answer import Answer, InvalidRequest, json_answer
from pipeline.simulator.batchbook import ENDED, ENDPOINTS, Batch, check_create, page, page_limit
from pipeline.simulator.batchinput import BatchLine, read_input
from pipeline.simulator.config import SimConfig
from pipeline.simulator.files import OUTPUT_PURPOSE, FileStore
from pipeline.simulator.form import read_body
from pipeline.simulator.jsonbody import form_of, parse_json
from pipeline.simulator.service import Call, ImageService, script_of
from pipeline.simulator.validation import check_form

UNANSWERED = {
    "expired": ("batch_expired", "This request could not be executed before the completion "
                "window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was "
                  "cancelled."),
}  # fmt: skip


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class BatchRoutes:
    """The batches of one simulator, the HTTP handlers (behind the key) and their runners."""

    def __init__(self, config: SimConfig, files: FileStore, service: ImageService):
        self.config, self.files, self.service = config, files, service
        self.batches: dict[str, Batch] = {}
        self.tasks: set[asyncio.Task] = set()

    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for batch in self.batches.values():
            counts[batch.status] = counts.get(batch.status, 0) + 1
        return counts

    async def create(self, request: web.Request) -> Answer:
        body = parse_json(await read_body(request, 2**20))
        file_id, endpoint, window, metadata, expire_after = check_create(body)
        stored = self.files.get(file_id)
        if stored is None or stored.purpose != "batch":
            raise InvalidRequest(
                f"Invalid 'input_file_id': {file_id!r} is not a file uploaded with purpose "
                "'batch'.",
                param="input_file_id",
            )
        if expire_after is None:
            expire_after = self.config.batch_expire_after
        origin = str(request.url.origin())
        batch = Batch(endpoint, file_id, window, metadata, origin, expire_after)
        self.batches[batch.id] = batch
        task = asyncio.create_task(self._run(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return json_answer(batch.object())

    async def retrieve(self, request: web.Request) -> Answer:
        batch = self.batches.get(request.match_info["batch_id"])
        return _no_such_batch(request) if batch is None else json_answer(batch.object())

    async def listing(self, request: web.Request) -> Answer:
        limit = page_limit(request.query.get("limit"))
        newest_first = list(reversed(self.batches.values()))
        return json_answer(page(newest_first, limit, request.query.get("after")))

    async def cancel(self, request: web.Request) -> Answer:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _no_such_batch(request)
        if batch.status == "finalizing":
            return json_answer(batch.object())  # too late: every line is answered
        if batch.status in ENDED:
            return replies.api_error(
                409,
                f"Cannot cancel a batch with status '{batch.status}'.",
                type="invalid_request_error",
            )
        if batch.status != "cancelling":
            batch.move("cancelling")
            batch.cancel.set()
        return json_answer(batch.object())

    async def close(self, app: web.Application) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _pause(self, batch: Batch, seconds: float) -> None:
        """Wait `seconds`, or less when the batch is cancelled meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.cancel.wait(), seconds)

    async def _run(self, batch: Batch) -> None:
        quarter = self.config.batch_seconds / 4
        await self._pause(batch, quarter)
        lines: list[BatchLine] = []
        if not batch.cancel.is_set():
            data = self.files.data(batch.input_file_id) or b""
            lines, errors = read_input(data, batch.endpoint, self.config.default_model)
            if errors:
                batch.errors = errors
                batch.move("failed")
                return
            batch.counts["total"] = len(lines)
            batch.model = lines[0].body.get("model") or self.config.default_model
            batch.move("in_progress")
        results: list[dict] = []
        spacing = 2 * quarter / max(1, len(lines))
        for line in lines:
            if batch.cancel.is_set() or len(results) == batch.expire_after:
                break
            results.append(await self._answer(batch, line))
            await self._pause(batch, spacing)
        end = "completed"
        if batch.cancel.is_set():
            end = "cancelled"
        elif len(results) < len(lines):
            end = "expired"
        if end != "expired":
            if end == "completed":
                batch.move("finalizing")
            await asyncio.sleep(quarter)
        self._write(batch, lines, results, end)
        batch.move(end)

    async def _answer(self, batch: Batch, line: BatchLine) -> dict:
        """The output line of one request, decided as the interactive endpoint decides."""
        request_id = new_request_id()
        endpoint = ENDPOINTS[batch.endpoint]
        try:
            form = await asyncio.to_thread(form_of, line.body, endpoint, self.files.data)
            checked = await asyncio.to_thread(
                check_form, form, endpoint, default_model=self.config.default_model
            )
            call = Call(
                checked, request_id, batch.origin, script_of(None, checked.prompt), batch=True
            )
            answer, _ = await self.service.answer(call)
        except InvalidRequest as exc:
            answer = replies.invalid(exc)
        self.service.stats.batch_line(answer.status)
        batch.counts["completed" if answer.status == 200 else "failed"] += 1
        return {
            "id": f"batch_req_{uuid.uuid4().hex}",
            "custom_id": line.custom_id,
            "response": {
                "status_code": answer.status,
                "request_id": request_id,
                "body": answer.body,
            },
            "error": None,
        }

    def _write(self, batch: Batch, lines: list[BatchLine], results: list[dict], end: str) -> None:
        """The output and error files: answered lines in a scrambled order, then (expired or
        cancelled) a line for each request never answered."""
        order = sorted(results, key=lambda r: hashlib.sha256(r["custom_id"].encode()).digest())
        done = [r for r in order if r["response"]["status_code"] == 200]
        failed = [r for r in order if r["response"]["status_code"] != 200]
        if end in UNANSWERED:
            code, message = UNANSWERED[end]
            for line in lines[len(results) :]:
                failed.append(
                    {
                        "id": f"batch_req_{uuid.uuid4().hex}",
                        "custom_id": line.custom_id,
                        "response": None,
                        "error": {"code": code, "message": message},
                    }
                )
        for records, attribute, suffix in (
            (done, "output_file_id", "output"),
            (failed, "error_file_id", "error"),
        ):
            if records:
                data = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
                stored = self.files.add(data, f"{batch.id}_{suffix}.jsonl", OUTPUT_PURPOSE)
                setattr(batch, attribute, stored.id)


def _no_such_batch(request: web.Request) -> Answer:
    return replies.api_error(
        404,
        f"No batch found with id '{request.match_info['batch_id']}'.",
        type="invalid_request_error",
        param="batch_id",
    )
