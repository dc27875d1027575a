"""Remote inputs over http(s): fetched once into the content cache, trusted again by their
ETag, refused when missing or too large, retried when slow; validate's HEAD check; a job whose
images are URLs runs, resumes without downloading, and redoes a changed photo. A real aiohttp
file server on loopback, never a mocked client."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import read_ledger_lines, write_manifest
from simfixtures import image_bytes

from pipeline.core.errors import ManifestError
from pipeline.core.plan import Remote
from pipeline.engine.runner import RunOptions, run
from pipeline.inputs.exist import unreachable
from pipeline.inputs.fetch import Fetcher
from pipeline.inputs.validators import FetchError, Validators, unchanged
from pipeline.manifest.load import load_plan


async def no_sleep(_seconds: float) -> None:
    return None


class FileServer:
    """Serves `files` with ETags; /slow/* answers after a second; /huge declares 60 MB;
    /endless streams without a length. Counts requests by (method, path)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: Counter = Counter()
        self.etags = True
        app = web.Application()
        app.router.add_route("*", "/{name:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    def url(self, name: str) -> str:
        return str(self.server.make_url(f"/{name}"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[(request.method, name)] += 1
        if name.startswith("slow/"):
            await asyncio.sleep(1)
        if name == "huge":
            return web.Response(body=b"x" * 10, headers={"Content-Length": str(60 * 2**20)})
        if name == "endless":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"x" * 1024)
            return response
        data = self.files.get(name.removeprefix("slow/"))
        if data is None:
            return web.Response(status=404)
        headers = {"ETag": f'"{hashlib.md5(data).hexdigest()}"'} if self.etags else {}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers, content_type="image/png")


@pytest.fixture
async def files():
    server = FileServer()
    await server.server.start_server()
    yield server
    await server.server.close()


@pytest.mark.parametrize(
    ("before", "now", "same"),
    [
        (Validators(10, '"a"'), Validators(10, '"a"'), True),
        (Validators(10, '"a"'), Validators(10, 'W/"a"'), True),
        (Validators(10, '"a"'), Validators(10, '"b"'), False),
        (Validators(10, '"a"'), Validators(11, '"a"'), False),
        (Validators(10, None, "Mon"), Validators(10, None, "Mon"), True),
        (Validators(10, None, "Mon"), Validators(10, None, "Tue"), False),
        (Validators(10), Validators(10), False),  # nothing to compare: fetch again
        (Validators(None, None, None), Validators(), False),
    ],
)
def test_an_object_is_unchanged_only_when_its_validators_say_so(before, now, same):
    assert unchanged(before, now) is same


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://cdn.example.com/p/a.jpg", "https://cdn.example.com/p/a.jpg"),
        ("https://u:secret@cdn.example.com/a.jpg", "https://cdn.example.com/a.jpg"),
        (
            "https://b.s3.amazonaws.com/a.jpg?X-Amz-Signature=abc&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/a.jpg?X-Amz-Signature=...&X-Amz-Expires=...",
        ),
        ("s3://bucket/raw/a.jpg", "s3://bucket/raw/a.jpg"),
    ],
)
def test_urls_are_shown_without_credentials(url, shown):
    assert str(Remote(url)) == shown
    assert Remote(url).stem == "a"


async def test_an_input_is_fetched_once_and_trusted_again_by_its_etag(files, tmp_path):
    files.files["a.png"] = image_bytes(colour=(1, 2, 3))
    ref = Remote(files.url("a.png"))
    async with Fetcher(tmp_path / "cache") as fetcher:
        first = await fetcher.local(ref)
        again = await fetcher.local(ref)
    assert first.sha256 == hashlib.sha256(files.files["a.png"]).hexdigest()
    assert first.path.read_bytes() == files.files["a.png"] and first.path.suffix == ".png"
    assert again == first and files.hits[("GET", "a.png")] == 1
    async with Fetcher(tmp_path / "cache") as later:  # a later run: one HEAD, no download
        assert (await later.local(ref)).sha256 == first.sha256
    assert files.hits[("GET", "a.png")] == 1 and files.hits[("HEAD", "a.png")] >= 1
    files.files["a.png"] = image_bytes(colour=(9, 9, 9))  # a new photo at the same URL
    async with Fetcher(tmp_path / "cache") as later:
        changed = await later.local(ref)
    assert changed.sha256 != first.sha256 and files.hits[("GET", "a.png")] == 2


async def test_a_missing_input_says_its_url_and_is_not_retried(files, tmp_path):
    ref = Remote(files.url("gone.png"))
    async with Fetcher(tmp_path, sleep=no_sleep) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.local(ref)
    assert caught.value.missing and f"{ref}: not found (HTTP 404)" == str(caught.value)
    assert files.hits[("GET", "gone.png")] == 1


async def test_a_slow_server_times_out_and_is_retried_up_to_the_attempts(files, tmp_path):
    files.files["a.png"] = image_bytes()
    async with Fetcher(tmp_path, timeout_s=0.1, attempts=3, sleep=no_sleep) as fetcher:
        with pytest.raises(FetchError, match="timed out") as caught:
            await fetcher.local(Remote(files.url("slow/a.png")))
    assert caught.value.retryable and files.hits[("GET", "slow/a.png")] == 3


@pytest.mark.parametrize("name", ["huge", "endless"])
async def test_an_input_over_the_size_cap_is_refused(files, tmp_path, name):
    async with Fetcher(tmp_path, max_bytes=16 * 1024, sleep=no_sleep) as fetcher:
        with pytest.raises(
            FetchError, match=r"more than the 0\.015625 MB an input may have"
        ) as caught:
            await fetcher.local(Remote(files.url(name)))
    assert not caught.value.retryable and not list(tmp_path.rglob("*.png"))


async def test_the_existence_check_heads_each_url_once_and_downloads_nothing(files):
    files.files["a.png"] = image_bytes()
    refs = [Remote(files.url("a.png")), Remote(files.url("a.png")), Remote(files.url("b.png"))]
    missing = await unreachable(refs)
    assert missing == {files.url("b.png"): f"{Remote(files.url('b.png'))}: not found (HTTP 404)"}
    assert files.hits[("HEAD", "a.png")] == 1 and files.hits[("GET", "a.png")] == 0


def url_job(folder: Path, files: FileServer, count: int = 3) -> Path:
    items = []
    for n in range(count):
        files.files[f"p{n}.png"] = image_bytes(colour=(n * 40, 90, 200))
        items.append({"id": f"p{n}", "image": files.url(f"p{n}.png"), "prompt": "white"})
    return write_manifest(folder, items)


async def test_validate_reports_missing_url_inputs_at_their_items(files, tmp_path):
    manifest = url_job(tmp_path, files, 2)
    del files.files["p1.png"]
    with pytest.raises(ManifestError) as caught:
        await asyncio.to_thread(load_plan, manifest, check_remote=True)
    (problem,) = caught.value.problems
    assert (
        problem.where == "items[1] (p1).image" and "p1.png: not found (HTTP 404)" in problem.message
    )
    assert load_plan(manifest).items[1].id == "p1"  # offline: no HEAD, no problem


async def test_a_job_of_url_inputs_runs_resumes_without_downloads_and_redoes_a_change(
    files, tmp_path, sim_factory
):
    manifest = url_job(tmp_path, files)
    async with sim_factory() as sim:
        opts = RunOptions(base_url=sim.base_url, api_key="sk-test")
        first = await run(load_plan(manifest, check_files=False), opts)
        gets = sum(n for (method, _), n in files.hits.items() if method == "GET")
        second = await run(load_plan(manifest, check_files=False), opts)
        files.files["p1.png"] = image_bytes(colour=(0, 0, 0))
        third = await run(load_plan(manifest, check_files=False), opts)
        stats = await sim.stats()
    assert (first.exit_code, first.stats.succeeded) == (0, 3)
    assert (second.stats.done_before, second.stats.succeeded) == (3, 0)
    assert (third.stats.done_before, third.stats.succeeded) == (2, 1)
    assert stats["requests"] == 4
    # the second run asked for validators only; the third downloaded the changed photo only
    assert gets == 3
    assert sum(n for (method, _), n in files.hits.items() if method == "GET") == 4
    lines = read_ledger_lines(tmp_path / "job-out" / "ledger.jsonl")
    entry = next(r for r in lines if r["event"] == "succeeded" and r["item"] == "p0")["inputs"][0]
    assert entry["url"] == files.url("p0.png") and entry["etag"] and entry["role"] == "image"
    assert list((tmp_path / "job-out" / "input-cache" / "blobs").iterdir())
