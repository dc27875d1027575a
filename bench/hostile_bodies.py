"""Issue 11 part 3: peak memory of one request against hostile answers (an endless chunked
body, 200 MB chunked, 200 MB with its Content-Length, a 150 MB error page), editbatch's client
beside a raw aiohttp `resp.read()` of the same answer, each in a fresh process (its VmHWM).

    python -m bench.hostile_bodies            # about 20 s; prints a table

The server streams from one 64 kB chunk, so it holds nothing; it runs in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

MB = 2**20
CHUNK = b"A" * 65536
CASES = {  # token: (status, total bytes or None for endless, declare the length)
    "endless": (200, None, False),
    "chunked-200MB": (200, 200 * MB, False),
    "length-200MB": (200, 200 * MB, True),
    "error-150MB": (500, 150 * MB, False),
}
RAW_LIMIT_S = 5.0  # the raw loop reads an endless body until this timeout (~750 MB by then)


async def _serve(port_file: Path) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        status, total, declared = CASES[request.match_info["case"]]
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        if declared:
            resp.content_length = total
        await resp.prepare(request)
        sent = 0
        try:
            while total is None or sent < total:
                await resp.write(CHUNK)
                sent += len(CHUNK)
        except ConnectionError:  # the client closed it: what editbatch does past a cap
            pass
        return resp

    app = web.Application()
    app.router.add_post("/{case}/v1/images/edits", handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    await asyncio.to_thread(port_file.write_text, str(runner.addresses[0][1]))
    await asyncio.Event().wait()


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _client(mode: str, base_url: str) -> dict:
    import aiohttp

    from pipeline.api.bodies import ImageRequest
    from pipeline.api.client import EditsClient
    from pipeline.core.errors import AttemptError

    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e2212bc30000000049454e44ae426082"
    )
    before = _hwm_mb()
    started = time.monotonic()
    outcome = ""
    async with aiohttp.ClientSession() as session:
        if mode == "editbatch":
            client = EditsClient(session, base_url, "sk-bench", timeout_s=60)
            req = ImageRequest("p", {"model": "gpt-image-1", "n": 1}, [("a.png", png, "image/png")])
            try:
                await client.edit(req)
            except AttemptError as exc:
                outcome = exc.message[:70]
        else:
            form = aiohttp.FormData()
            form.add_field("image", png, filename="a.png", content_type="image/png")
            timeout = aiohttp.ClientTimeout(total=RAW_LIMIT_S)
            url = f"{base_url}/images/edits"
            try:
                async with session.post(url, data=form, timeout=timeout) as resp:
                    outcome = f"read {len(await resp.read()) / MB:.0f} MB"
            except TimeoutError:
                outcome = f"still reading after {RAW_LIMIT_S:g} s"
    return {
        "peak_mb": _hwm_mb(),
        "grew_mb": _hwm_mb() - before,
        "s": time.monotonic() - started,
        "outcome": outcome,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(_serve(Path(sys.argv[2])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        print(json.dumps(asyncio.run(_client(sys.argv[2], sys.argv[3]))))
        return
    port_file = Path(f"/tmp/editbatch-hostile-{time.time_ns()}.port")
    server = subprocess.Popen([sys.executable, "-m", "bench.hostile_bodies", "serve", port_file])
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        port = port_file.read_text()
        rows = []
        for case in CASES:
            for mode in ("editbatch", "raw"):
                url = f"http://127.0.0.1:{port}/{case}/v1"
                cmd = [sys.executable, "-m", "bench.hostile_bodies", "client", mode, url]
                figures = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
                rows.append((case, mode, figures))
    finally:
        server.terminate()
        server.wait()
        port_file.unlink(missing_ok=True)
    print(f"{'answer':<15} {'client':<10} {'peak RSS':>9} {'grew':>8} {'time':>6}  outcome")
    for case, mode, f in rows:
        print(
            f"{case:<15} {mode:<10} {f['peak_mb']:>6.0f} MB {f['grew_mb']:>5.0f} MB "
            f"{f['s']:>5.1f}s  {f['outcome']}"
        )


if __name__ == "__main__":
    main()
