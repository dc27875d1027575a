"""`editbatch simulate` as a process: prints its base URL first, serves, and exits 0 on SIGINT
or SIGTERM; bad options exit 2 saying what is wrong."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
import pytest
from simfixtures import edit_form, post_edit

# The lead wires these functions as `editbatch simulate`; this runs them the same way.
ENTRY = (
    "import argparse, sys\n"
    "from pipeline.simulator.cli import add_arguments, run\n"
    "parser = argparse.ArgumentParser(prog='editbatch simulate')\n"
    "add_arguments(parser)\n"
    "sys.exit(run(parser.parse_args(sys.argv[1:])))\n"
)


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_simulate_prints_its_url_serves_and_exits_0_on_a_signal(signum):
    process = await start("--port", "0", "--faults", "503=1", "--seed", "4", "--api-key", "sk-k")
    try:
        first_line = await asyncio.wait_for(process.stdout.readline(), 20)
        url = first_line.decode().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        async with aiohttp.ClientSession() as session:
            status, _, _ = await post_edit(
                session, url, edit_form(), headers={"Authorization": "Bearer sk-k"}
            )
        assert status == 503
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--faults", "500=2"], "is not a probability"),
        (["--faults", "kaboom=0.1"], "unknown fault 'kaboom'"),
        (["--rpm", "-5"], "SimConfig.rpm"),
    ],
)
async def test_bad_options_exit_2_saying_what_is_wrong(args, complaint):
    process = await start("--port", "0", *args)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert complaint in stderr.decode()


async def test_a_port_in_use_exits_2_and_says_to_choose_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = await start("--port", str(taken.getsockname()[1]))
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "choose another --port" in stderr.decode()
