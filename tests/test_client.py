"""EditsClient against tiny aiohttp servers on 127.0.0.1 (port 0) that serve scripted answers:
what the server receives, and how each kind of answer becomes images or an AttemptError."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from pipeline.api.answers import cause_of
from pipeline.api.bodies import ImageRequest as EditRequest
from pipeline.api.bodies import build_form, form_value
from pipeline.api.client import EditsClient
from pipeline.api.payload import verify_images
from pipeline.core.errors import FatalError, PermanentError, RateLimited, RetryableError
from pipeline.media.images import sniff_format

KEY = "sk-test-SECRET-0123456789"
EDITS = "/v1/images/edits"


def image_bytes(fmt: str, size: tuple[int, int] = (8, 8), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    mode = "RGB" if fmt == "JPEG" else "RGBA"
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


PNG, JPEG, WEBP = image_bytes("PNG"), image_bytes("JPEG"), image_bytes("WEBP")


def noisy(fmt: str) -> bytes:
    """A 64x64 noise image: big enough that cutting its tail leaves the header readable."""
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
    "output_tokens": 272,
    "total_tokens": 322,
}


def ok_body(*images: bytes, **extra) -> dict:
    return {"created": 1, "data": [{"b64_json": b64(i)} for i in images], "usage": USAGE, **extra}


def request(n: int = 1, images=None, mask=None, **params) -> EditRequest:
    return EditRequest(
        prompt="Put it on white marble",
        params={"model": "gpt-image-1", "n": n, **params},
        images=images or [("sku-1.png", PNG, "image/png")],
        mask=mask,
    )


@pytest.fixture
async def serve():
    """serve(handler, ...) -> base_url ending in /v1; the servers stop after the test."""
    runners: list[web.AppRunner] = []

    async def start(handler, extra_routes=(), edits_path=EDITS) -> str:
        app = web.Application()
        app.router.add_post(edits_path, handler)
        for path, route_handler in extra_routes:
            app.router.add_get(path, route_handler)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def client(session, base_url: str, key: str | None = KEY, timeout_s: float = 10) -> EditsClient:
    return EditsClient(session, base_url, key, timeout_s=timeout_s, api_key_env="MY_EDITS_KEY")


def json_answer(status: int, body, headers=None):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body, status=status, headers=headers)

    return handler


def api_error(message: str, type_: str, code: str | None, **more) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code, **more}}


async def failure(session, base_url: str, expected: type[Exception], **client_options):
    """The exception one edit raises, checked to be of the expected class."""
    with pytest.raises(expected) as caught:
        await client(session, base_url, **client_options).edit(request())
    return caught.value


async def test_multipart_carries_fields_one_image_mask_and_bearer_key(serve, session):
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        seen["parts"] = []
        async for part in await request.multipart():
            content_type = part.headers.get("Content-Type")
            seen["parts"].append((part.name, part.filename, content_type, bytes(await part.read())))
        return web.json_response(ok_body(PNG))

    base_url = await serve(handler)
    req = request(
        images=[("sku-1.jpg", JPEG, "image/jpeg")],
        mask=("sku-1-mask.png", PNG),
        size="1024x1024",
        quality="high",
        stream=False,
        output_compression=80.0,
    )
    await client(session, base_url + "/").edit(req)  # a trailing slash joins cleanly

    assert seen["auth"] == f"Bearer {KEY}"
    fields = {name: data.decode() for name, filename, _, data in seen["parts"] if not filename}
    assert [p[0] for p in seen["parts"]][:2] == ["model", "prompt"]
    assert fields == {
        "model": "gpt-image-1",
        "prompt": "Put it on white marble",
        "n": "1",
        "size": "1024x1024",
        "quality": "high",
        "stream": "false",
        "output_compression": "80",
    }
    files = [
        (name, filename, ctype, data) for name, filename, ctype, data in seen["parts"] if filename
    ]
    assert files == [
        ("image", "sku-1.jpg", "image/jpeg", JPEG),
        ("mask", "sku-1-mask.png", "image/png", PNG),
    ]


async def test_several_images_go_as_image_array_each_with_its_type_and_no_key_header(
    serve, session
):
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        seen["files"] = [
            (part.name, part.filename, part.headers.get("Content-Type"))
            async for part in await request.multipart()
            if part.filename
        ]
        return web.json_response(ok_body(PNG))

    base_url = await serve(handler)
    images = [
        ("a.png", PNG, "image/png"),
        ("b.jpg", JPEG, "image/jpeg"),
        ("c.webp", WEBP, "image/webp"),
    ]
    await client(session, base_url, key=None).edit(request(images=images))

    assert seen["auth"] is None
    assert seen["files"] == [
        ("image[]", "a.png", "image/png"),
        ("image[]", "b.jpg", "image/jpeg"),
        ("image[]", "c.webp", "image/webp"),
    ]


async def test_a_base_url_with_a_query_keeps_it_azure_style(serve, session):
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen["query"] = dict(request.query)
        return web.json_response(ok_body(PNG))

    path = "/openai/deployments/edit-dep/images/edits"
    base_url = await serve(handler, edits_path=path)
    host = base_url.removesuffix("/v1")
    await client(session, f"{host}/openai/deployments/edit-dep/?api-version=2025-04-01").edit(
        request()
    )

    assert seen["query"] == {"api-version": "2025-04-01"}


async def test_b64_images_come_back_decoded_in_order_with_usage_id_and_rate_headers(serve, session):
    headers = {
        "x-request-id": "req_abc",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "12s",
        "openai-processing-ms": "900",
    }
    other = image_bytes("WEBP", color=(0, 0, 255))
    base_url = await serve(json_answer(200, ok_body(WEBP, other, output_format="webp"), headers))

    got = await client(session, base_url).edit(request(n=2))

    assert got.images == [WEBP, other]
    assert got.output_format == "webp"
    assert got.usage == USAGE
    assert got.request_id == "req_abc"
    assert got.status == 200
    assert got.body_size > len(WEBP)
    assert got.headers == {
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "12s",
    }


async def test_data_url_prefix_and_missing_usage_are_tolerated(serve, session):
    body = {"data": [{"b64_json": "data:image/jpeg;base64," + b64(JPEG)}]}
    base_url = await serve(json_answer(200, body))

    got = await client(session, base_url).edit(request())

    assert got.images == [JPEG]
    assert got.output_format == "jpeg"
    assert got.usage is None


async def test_url_results_are_downloaded_without_sending_the_key(serve, session):
    seen: dict = {}

    async def file(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        seen["query"] = request.query_string
        return web.Response(body=PNG, content_type="image/png")

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        url = f"http://{request.host}/files/out.png?sig=cdn-token"
        return web.json_response({"data": [{"url": url}]})

    base_url = await serve(handler, [("/files/out.png", file)])
    got = await client(session, base_url).edit(request())

    assert got.images == [PNG]
    assert seen == {"auth": None, "query": "sig=cdn-token"}


async def test_failed_download_is_retryable_and_hides_the_signed_query(serve, session):
    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such file")

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        url = f"http://{request.host}/files/gone.png?sig=cdn-token"
        return web.json_response({"data": [{"url": url}]}, headers={"x-request-id": "req_dl"})

    base_url = await serve(handler, [("/files/gone.png", gone)])
    exc = await failure(session, base_url, RetryableError)

    assert "HTTP 404" in str(exc) and "cdn-token" not in str(exc)
    assert (exc.http_status, exc.request_id, cause_of(exc)) == (200, "req_dl", "bad_response")


def b64_body(*images: bytes) -> bytes:
    return json.dumps({"data": [{"b64_json": b64(i)} for i in images]}).encode()


UNUSABLE_BODIES = {
    "truncated json": b'{"data": [{"b64_json": "iVBORw0K',
    "html page": b"<html>maintenance</html>",
    "no data list": b'{"created": 1}',
    "empty data list": b'{"data": []}',
    "corrupt base64": b'{"data": [{"b64_json": "iVBOR!!w0KGgo*"}]}',
    "not an image": b64_body(b"hello, world"),
    # verify() catches the PNG without its end, only a full decode the JPEG without its tail
    "png without its end": b64_body(noisy("PNG")[:-20]),
    "truncated jpeg": b64_body(noisy("JPEG")[:-200]),
    "entry without image": b'{"data": [{"revised_prompt": "x"}]}',
}


@pytest.mark.parametrize("body", UNUSABLE_BODIES.values(), ids=UNUSABLE_BODIES.keys())
async def test_unusable_200_bodies_are_retryable_bad_responses(serve, session, body):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=body, content_type="application/json", headers={"x-request-id": "r1"}
        )

    exc = await failure(session, await serve(handler), RetryableError)

    assert type(exc) is RetryableError
    assert (exc.http_status, exc.transport, exc.request_id) == (200, None, "r1")
    assert cause_of(exc) == "bad_response"
    assert str(exc).startswith("unusable response: ")
    assert exc.billed and exc.usage is None  # billed; no usage could be read


async def test_an_unusable_200_carries_the_usage_it_was_billed_for(serve, session):
    body = {"data": [{"b64_json": "iVBOR!!"}], "usage": USAGE}
    exc = await failure(session, await serve(json_answer(200, body)), RetryableError)
    assert exc.billed and exc.usage == USAGE


async def test_a_200_cut_mid_body_is_billed_with_no_usage(serve, session):
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = 10_000
        await resp.prepare(request)
        await resp.write(b'{"data": [{"b64_json": "iVBOR')
        request.transport.close()
        return resp

    exc = await failure(session, await serve(handler), RetryableError)
    assert exc.billed and exc.usage is None and exc.http_status == 200
    assert exc.transport == "truncated body"


async def test_errors_other_than_2xx_are_not_billed(serve, session):
    exc = await failure(session, await serve(json_answer(503, {})), RetryableError)
    assert not exc.billed and exc.charge is None


async def test_fewer_images_than_n_are_kept_and_more_are_cut_to_n(serve, session):
    few = await client(session, await serve(json_answer(200, ok_body(PNG)))).edit(request(n=3))
    assert len(few.images) == 1
    many = await client(session, await serve(json_answer(200, ok_body(PNG, JPEG, WEBP)))).edit(
        request(n=2)
    )
    assert [sniff_format(i) for i in many.images] == ["png", "jpeg"]


async def test_rate_limit_429_carries_retry_after_and_rate_headers(serve, session):
    error = api_error("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    headers = {
        "retry-after-ms": "1500",
        "retry-after": "2",
        "x-request-id": "req_429",
        "x-ratelimit-remaining-requests": "0",
    }
    base_url = await serve(json_answer(429, error, headers))

    exc = await failure(session, base_url, RateLimited)

    assert exc.retry_after_s == pytest.approx(1.5)
    assert (exc.http_status, exc.code, exc.request_id) == (429, "rate_limit_exceeded", "req_429")
    assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    assert cause_of(exc) == "rate_limit"


async def test_429_insufficient_quota_is_fatal_and_points_at_billing(serve, session):
    error = api_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    base_url = await serve(json_answer(429, error))

    exc = await failure(session, base_url, FatalError)

    assert exc.code == "insufficient_quota"
    assert "billing" in str(exc)


@pytest.mark.parametrize(
    ("status", "code", "needle"),
    [
        (401, "invalid_api_key", "$MY_EDITS_KEY"),
        (403, None, "'gpt-image-1'"),
        (404, "model_not_found", "'gpt-image-1'"),
    ],
)
async def test_auth_access_and_model_errors_are_fatal_and_say_what_to_fix(
    serve, session, status, code, needle
):
    error = api_error("nope", "invalid_request_error", code)
    base_url = await serve(json_answer(status, error, {"x-request-id": "req_f"}))

    exc = await failure(session, base_url, FatalError)

    assert (exc.http_status, exc.code, exc.request_id) == (status, code, "req_f")
    assert needle in str(exc)


async def test_400_moderation_is_permanent_with_its_code(serve, session):
    error = api_error(
        "Your request was rejected by the safety system.",
        "image_generation_user_error",
        "moderation_blocked",
        moderation_details={"moderation_stage": "input", "categories": []},
    )
    base_url = await serve(json_answer(400, error))

    exc = await failure(session, base_url, PermanentError)

    assert (exc.http_status, exc.code) == (400, "moderation_blocked")
    assert exc.type == "image_generation_user_error"
    assert "safety system" in str(exc)


async def test_502_html_page_is_retryable_with_a_short_message(serve, session):
    page = "<html><title>502 Bad Gateway</title><body>" + "filler " * 20_000 + "</body></html>"

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=502, text=page, content_type="text/html")

    exc = await failure(session, await serve(handler), RetryableError)

    assert str(exc) == "HTTP 502 from server (HTML body)"
    assert cause_of(exc) == "server_error"


async def test_stalled_server_times_out_as_a_retryable_transport_error(serve, session):
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(30)  # cancelled when the client gives up (handler_cancellation)
        return web.json_response(ok_body(PNG))

    exc = await failure(session, await serve(stall), RetryableError, timeout_s=0.2)

    assert exc.transport == "timeout"
    assert cause_of(exc) == "timeout"


async def test_connection_closed_mid_body_is_retryable(serve, session):
    async def cut(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": "100000"}
        )
        await resp.prepare(request)
        await resp.write(b'{"data": [{"b64_json": "iVBORw0KGgo')
        request.transport.close()
        return resp

    exc = await failure(session, await serve(cut), RetryableError)

    assert exc.transport in ("truncated body", "connection reset")
    assert cause_of(exc) == "connection"


async def test_refused_connection_is_retryable(session):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    exc = await failure(session, f"http://127.0.0.1:{port}/v1", RetryableError)

    assert exc.transport == "cannot connect"


async def test_redirect_is_not_followed_and_is_fatal(serve, session):
    async def moved(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=308, headers={"Location": "https://api.example/v1/images/edits"})

    exc = await failure(session, await serve(moved), FatalError)

    assert "https://api.example/v1/images/edits" in str(exc)


@pytest.mark.parametrize("echo", [False, True], ids=["silent", "echoing"])
async def test_the_api_key_never_appears_in_a_401_message(serve, session, echo):
    message = f"Incorrect API key provided: {KEY}." if echo else ""
    base_url = await serve(
        json_answer(401, api_error(message, "invalid_request_error", "invalid_api_key"))
    )

    exc = await failure(session, base_url, FatalError)

    assert KEY not in str(exc)
    assert KEY not in repr(exc.describe())


def test_form_values_are_written_as_the_api_reads_them():
    assert [form_value(v) for v in (True, False, 3, 0.5, 80.0, "auto")] == [
        "true",
        "false",
        "3",
        "0.5",
        "80",
        "auto",
    ]


@pytest.mark.parametrize(
    ("data", "kind"), [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp"), (b"GIF89a", None)]
)
def test_sniff_image_knows_the_three_formats_by_their_bytes(data, kind):
    assert sniff_format(data) == kind


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"images": [], "mask": ("m.png", PNG)}, "a mask needs an image"),
        ({"images": [("a.png", PNG, "image/png")], "params": {"prompt": "x"}}, "prompt"),
    ],
)
def test_edit_request_refuses_impossible_requests(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        EditRequest(prompt="p", params=kwargs.pop("params", {}), **kwargs)


def test_form_is_always_multipart():
    form = build_form(request())
    assert form.is_multipart


async def test_the_form_reads_back_as_sent_and_holds_large_files_uncopied(serve, session):
    """What a server's multipart parser reads from the form: every field in order, each file
    with its name and type; a small request is one write, a large file is not copied."""
    big = noisy("PNG") * 40  # ~100 KB+: past the size copied into the bytes around it
    seen: list[tuple] = []

    async def handler(req: web.Request) -> web.Response:
        reader = await req.multipart()
        async for part in reader:
            seen.append(
                (part.name, part.filename, part.headers.get("Content-Type"), await part.read())
            )
        return web.json_response(ok_body(PNG))

    url = await serve(handler)
    req = request(
        images=[('sku "1".png', big, "image/png")],
        mask=("m.png", PNG),
        quality="low",
        size="1024x1024",
    )
    form = build_form(req)
    assert any(chunk is big for chunk in form.chunks)
    assert form.size == len(bytes(form))
    await client(session, url).edit(req)
    assert [(name, filename, kind) for name, filename, kind, _ in seen] == [
        ("model", None, None),
        ("prompt", None, None),
        ("n", None, None),
        ("quality", None, None),
        ("size", None, None),
        ("image", "sku %221%22.png", "image/png"),  # a quote escaped as browsers and httpx do
        ("mask", "m.png", "image/png"),
    ]
    assert [bytes(data) for *_, data in seen] == [
        b"gpt-image-1",
        b"Put it on white marble",
        b"1",
        b"low",
        b"1024x1024",
        big,
        PNG,
    ]
    assert len(build_form(request()).chunks) == 1  # a small request: one write


def _damaged_png(kind: str) -> bytes:
    data = bytearray(noisy("PNG"))
    if kind == "crc":
        idat = data.index(b"IDAT")
        data[idat + 20] ^= 0xFF  # one byte of image data flipped: its chunk's CRC fails
    elif kind == "cut":
        data = data[: len(data) // 2]
    elif kind == "no ihdr":
        data[12:16] = b"IHDX"
    return bytes(data)


@pytest.mark.parametrize(
    ("kind", "said"),
    [("crc", "fails its CRC"), ("cut", "cut short"), ("no ihdr", "not IHDR")],
)
def test_a_png_answer_is_checked_chunk_by_chunk(kind, said):
    with pytest.raises(RetryableError, match=said):
        verify_images([_damaged_png(kind)])
    assert verify_images([noisy("PNG")]) == "png"


def test_a_png_answer_past_the_pixel_limit_is_refused_from_its_header(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with pytest.raises(RetryableError, match=r"too large|decompression bomb"):
        verify_images([noisy("PNG")])
