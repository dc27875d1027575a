"""Secrets never leave the client: core.secrets by tables, and the key, a base URL's query
values and echoed credentials kept out of the ledger and every report format."""

from __future__ import annotations

import json
import urllib.parse

import hostile
import pytest
from helpers import make_image, write_manifest

from pipeline.cli.main import main
from pipeline.core.errors import ManifestError, UsageError
from pipeline.core.secrets import Redactor, has_userinfo, scrub_url
from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan

KEY = "sk-live-TOPSECRET-0123456789abcdef"
QUERY_SECRET = "qs-HUSH-42424242"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://u:pw@proxy.example/v1", "https://proxy.example/v1"),
        (
            "https://proxy.example/v1?api-key=SECRET&x=1",
            "https://proxy.example/v1?api-key=***&x=***",
        ),
        ("https://h/v1?flag", "https://h/v1?flag"),
        ("https://h/v1#frag", "https://h/v1"),
        ("http://[::1/v1", "***"),
    ],
)
def test_scrub_url_drops_credentials_and_query_values(url, shown):
    assert scrub_url(url) == shown


@pytest.mark.parametrize(
    ("url", "has"),
    [("https://u:p@h/v1", True), ("https://u@h/v1", True), ("https://h/v1?a=b@c", False)],
)
def test_userinfo_is_found_only_in_the_authority(url, has):
    assert has_userinfo(url) is has


def test_redactor_blanks_every_form_of_every_secret_and_leaves_short_values():
    redact = Redactor.for_endpoint("https://u:pass-word-1@h/v1?api-key=abc/def+ghi&v=1", KEY)
    text = f"{KEY} pass-word-1 abc/def+ghi {urllib.parse.quote('abc/def+ghi', safe='')} v=1"
    assert redact(text) == "*** *** *** *** v=1"
    assert redact.body(json.dumps({"m": "abc/def+ghi"}).encode()) == b'{"m": "***"}'
    assert Redactor([None, ""])("anything") == "anything"


async def test_secrets_echoed_in_every_error_field_reach_no_ledger_line_or_report(tmp_path, capsys):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    manifest = write_manifest(
        tmp_path,
        [
            {"id": "a", "image": "a.png", "prompt": "p [hostile:echo500,ok]"},
            {"id": "b", "image": "b.png", "prompt": "p [hostile:echo]"},
        ],
    )
    plan = load_plan(manifest)
    async with hostile.serving(secret=KEY) as (base_url, _):
        summary = await run(
            plan,
            RunOptions(
                base_url=f"{base_url}?api-key={QUERY_SECRET}",
                api_key=KEY,
                backoff_base_s=0.001,
                concurrency=1,
            ),
        )
    assert summary.exit_code == 4
    ledger = plan.ledger.read_text()
    lines = [json.loads(line) for line in ledger.splitlines()]
    echoed = [r for r in lines if r["event"] in ("attempt_failed", "failed")]
    assert {r["event"] for r in echoed} == {"attempt_failed", "failed"}, ledger
    for record in echoed:  # the fields that echoed the secrets are there, blanked
        error = record.get("error") or record
        assert "***" in error["message"] and "***" in error["code"]
    started = next(r for r in lines if r["event"] == "run_started")
    assert started["options"]["base_url"].endswith("/v1?api-key=***")

    html = tmp_path / "report.html"
    assert main(["report", str(manifest), "--html", str(html)]) == 0
    capsys.readouterr()
    main(["report", str(manifest), "--json"])
    main(["report", str(manifest)])
    printed = capsys.readouterr()
    outputs = [ledger, html.read_text(), printed.out, printed.err]
    outputs += [json.dumps(summary.to_json()), *summary.messages]
    for text in outputs:
        assert KEY not in text and QUERY_SECRET not in text
        assert KEY[:12] not in text  # not even the prefix of one cut at a message's end


def test_userinfo_in_the_base_url_is_refused_where_it_is(tmp_path):
    make_image(tmp_path / "a.png")
    manifest = write_manifest(
        tmp_path,
        [{"id": "a", "image": "a.png", "prompt": "p"}],
        endpoint={"base_url": "https://user:hunter22@proxy.example/v1"},
    )
    with pytest.raises(ManifestError) as caught:
        load_plan(manifest)
    problem = caught.value.problems[0]
    assert problem.where.endswith("job.yaml:7:13")
    assert "user name or password" in problem.message and "hunter22" not in str(caught.value)


async def test_userinfo_in_base_url_option_is_refused_before_sending(tmp_path):
    make_image(tmp_path / "a.png")
    plan = load_plan(write_manifest(tmp_path, [{"id": "a", "image": "a.png", "prompt": "p"}]))
    with pytest.raises(UsageError, match="user name or password") as caught:
        await run(plan, RunOptions(base_url="http://me:hunter22@127.0.0.1:9/v1", api_key=KEY))
    assert "hunter22" not in str(caught.value)
