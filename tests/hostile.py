"""A hostile-answer fake of the image edits API, for tests: an aiohttp app on 127.0.0.1 that
answers what a buggy or hostile proxy would. Each request takes the next token of the script
named in its prompt (`[hostile:corrupt,chatusage,ok]`); past the script's end it answers `ok`.

It keeps the bill: every 200 it answers is billed at the real usage (`BILLED_USAGE`) at
gpt-image-1's prices, whatever usage it shows the client, so a test can compare the ledger's
spend with what the provider charged.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from PIL import Image

from pipeline.cost.pricing import builtin_table, cost_of_usage

BILLED_USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 90},
    "output_tokens": 272,
    "total_tokens": 372,
}
BILLED_USD = cost_of_usage(BILLED_USAGE, builtin_table()["gpt-image-1"])
_SCRIPT = re.compile(r"\[hostile:([^\]]*)\]")
MB = 2**20


def png(size=(16, 16), color=(10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


PNG = png()
B64 = base64.b64encode(PNG).decode()

# The usage each token shows the client (the bill is BILLED_USAGE whatever it shows).
SHOWN_USAGE: dict[str, object] = {
    "ok": BILLED_USAGE,
    "corrupt": BILLED_USAGE,
    "chatusage": {"prompt_tokens": 100, "completion_tokens": 272, "total_tokens": 372},
    "emptyusage": {},
    "nodetails": {"input_tokens": 100, "output_tokens": 272, "total_tokens": 372},
    "negative": {**BILLED_USAGE, "input_tokens": -7_700_000, "output_tokens": -5},
    "strings": {**BILLED_USAGE, "output_tokens": "272"},
    "nan": {**BILLED_USAGE, "output_tokens": float("nan")},
    "baddetails": {**BILLED_USAGE, "input_tokens_details": "text=10,image=90"},
    "huge": {**BILLED_USAGE, "output_tokens": 10**30},
    "nousage": None,
    "fewer": BILLED_USAGE,
}


class Hostile:
    """The fake's state: the scripts' positions, the requests seen and the bill."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret  # echoed into every field of `echo` errors
        self.taken: dict[str, int] = {}
        self.requests = 0
        self.billed_usd = 0.0
        self.tokens: list[str] = []
        self.streamed: list[int] = []  # bytes each streamed answer sent before it ended

    def next_token(self, prompt: str) -> str:
        match = _SCRIPT.search(prompt)
        script = [t.strip() for t in match.group(1).split(",")] if match else []
        position = self.taken.get(prompt, 0)
        self.taken[prompt] = position + 1
        return script[position] if position < len(script) else "ok"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        for value in form.values():
            if isinstance(value, web.FileField):
                value.file.close()  # the image parts: not needed, closed now rather than by GC
        self.requests += 1
        token = self.next_token(str(form.get("prompt", "")))
        self.tokens.append(token)
        n = int(str(form.get("n", "1")))
        if token in ("echo", "echo500"):
            return self._echo(request, 401 if token == "echo" else 500)
        if token == "bigerror":
            return await self._stream(request, 500, 150 * MB, b"<html>" + b"x" * 65536)
        if token == "endless":
            return await self._stream(request, 200, None, b'{"data":[{"b64_json":"' + b"A" * 65536)
        if token == "bigbody":
            return await self._stream(request, 200, 200 * MB, b"A" * 65536)
        if token == "biglength":  # says its 200 MB up front
            return await self._stream(request, 200, 200 * MB, b"A" * 65536, declared=True)
        self.billed_usd += BILLED_USD  # every other answer is a billed 200
        if token == "truncated":
            return await self._truncated(request)
        images = 1 if token == "fewer" else n
        entry = {"b64_json": "iVBOR!!not-base64" if token == "corrupt" else B64}
        body: dict = {"created": 1, "data": [entry] * images}
        usage = SHOWN_USAGE.get(token, BILLED_USAGE)
        if usage is not None:
            body["usage"] = usage
        return web.Response(
            body=json.dumps(body).encode(),  # NaN as the bare token a Python proxy sends
            content_type="application/json",
        )

    def _echo(self, request: web.Request, status: int) -> web.Response:
        """An error that echoes every credential the request carried, in every field."""
        s = " ".join([self.secret, request.headers.get("Authorization", ""), request.query_string])
        error = {
            "message": f"Incorrect API key provided: {s}. " + "x" * 390 + s,
            "type": f"invalid_request_error {s}",
            "code": f"invalid_api_key:{s}",
            "param": f"key={s}",
        }
        return web.json_response(
            {"error": error}, status=status, headers={"x-request-id": f"req-{s}"}
        )

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        body = json.dumps({"data": [{"b64_json": B64}], "usage": BILLED_USAGE}).encode()
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 3])
        request.transport.close()  # cut mid-body, as a reset would
        return resp

    async def _stream(
        self,
        request: web.Request,
        status: int,
        total: int | None,
        chunk: bytes,
        declared: bool = False,
    ) -> web.StreamResponse:
        """`total` bytes of `chunk` repeated (chunked, endless when None), written without
        ever holding more than one chunk; stops when the client goes away. What was sent is
        appended to `streamed`."""
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        if declared and total is not None:
            resp.content_length = total
        await resp.prepare(request)
        sent = 0
        try:
            while total is None or sent < total:
                await resp.write(chunk)  # raises once the client has closed the connection
                sent += len(chunk)
        finally:
            self.streamed.append(sent)
        return resp


@asynccontextmanager
async def serving(secret: str = "") -> AsyncIterator[tuple[str, Hostile]]:
    """(base_url ending in /v1, the fake's state) while the block runs."""
    fake = Hostile(secret)
    app = web.Application(client_max_size=64 * MB)
    app.router.add_post("/v1/images/edits", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1", fake
    finally:
        await runner.cleanup()
