"""The new `editbatch simulate` options reach the simulator: gateway, Azure deployments,
default model, drift and batch timing; bad values exit 2 saying what is wrong."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
import pytest
from simfixtures import edit_form

from pipeline.simulator.cli import add_arguments, parse_deployments, run

ENTRY = (
    "import argparse, sys\n"
    "from pipeline.simulator.cli import add_arguments, run\n"
    "parser = argparse.ArgumentParser(prog='editbatch simulate')\n"
    "add_arguments(parser)\n"
    "sys.exit(run(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(args))


async def test_the_options_reach_the_served_simulator():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "--port", "0", "--gateway", "litellm",
        "--azure-deployments", "photos=gpt-image-2", "--default-model", "gpt-image-1.5",
        "--batch-seconds", "0.1", "--outside-drift", "0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        root = url.removesuffix("/v1")
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{root}/openai/deployments/photos/images/edits?api-version=2025-04-01-preview",
                data=edit_form({"size": "640x480", "quality": "low"}),
                headers={"api-key": "k"},
            ) as response:
                served = (response.status, (await response.json())["size"])
                gateway_header = "llm_provider-x-request-id" in response.headers
            async with session.post(
                f"{root}/openai/deployments/other/images/edits?api-version=2025-04-01-preview",
                data=edit_form(),
                headers={"api-key": "k"},
            ) as response:
                missing = (response.status, (await response.json())["error"]["code"])
        assert served == (200, "640x480")  # the deployment serves gpt-image-2's free sizes
        assert gateway_header
        assert missing == (404, "404")  # DeploymentNotFound, as LiteLLM rewrites it
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_options_parse_to_the_config_fields():
    args = parse(
        "--gateway", "litellm", "--outside-drift", "0.25", "--default-model", "gpt-image-2",
        "--azure-deployments", "a=gpt-image-2, b = gpt-image-1-mini", "--batch-seconds", "0.5",
        "--batch-expire-after", "3",
    )  # fmt: skip
    assert (args.gateway, args.outside_drift, args.default_model) == (
        "litellm",
        0.25,
        "gpt-image-2",
    )
    assert args.azure_deployments == {"a": "gpt-image-2", "b": "gpt-image-1-mini"}
    assert (args.batch_seconds, args.batch_expire_after) == (0.5, 3)
    defaults = parse()
    assert (defaults.gateway, defaults.outside_drift, defaults.batch_expire_after) == (
        None,
        0.0,
        None,
    )
    assert (defaults.default_model, defaults.batch_seconds) == ("gpt-image-1", 2.0)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--outside-drift", "1.5"], "outside_drift"),
        (["--batch-seconds", "-1"], "batch_seconds"),
        (["--batch-expire-after", "-2"], "batch_expire_after"),
    ],
)
def test_bad_values_exit_2_naming_the_field(args, complaint, capsys):
    assert run(parse(*args)) == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize("text", ["photos", "=gpt-image-2", "photos="])
def test_a_bad_deployment_pair_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=MODEL"):
        parse_deployments(text)


def test_an_unknown_gateway_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse("--gateway", "kong")
    assert "invalid choice" in capsys.readouterr().err
