"""The README's provider examples: each manifest under examples/manifests/providers/ is shown in
the README whole, and runs with --simulate (edits and generations, on its provider's route)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import read_ledger_lines

from pipeline.engine.runner import RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "manifests"
PROVIDERS = sorted((EXAMPLES / "providers").glob("*.yaml"))
README = (ROOT / "README.md").read_text()


def test_there_is_an_example_per_provider_shape():
    assert [p.stem for p in PROVIDERS] == ["azure-classic", "azure-v1", "openai", "proxy"]


@pytest.mark.parametrize("path", PROVIDERS, ids=lambda p: p.stem)
def test_the_readme_shows_the_example_whole(path):
    body = "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("# yaml-language")
    )
    assert f"```yaml\n{body}\n```" in README


@pytest.mark.parametrize("path", PROVIDERS, ids=lambda p: p.stem)
async def test_the_example_runs_with_simulate(tmp_path, path, monkeypatch):
    monkeypatch.delenv("GATEWAY_KEY", raising=False)
    shutil.copytree(EXAMPLES / "demo", tmp_path / "demo")
    (tmp_path / "providers").mkdir()
    manifest = shutil.copy(path, tmp_path / "providers" / path.name)
    plan = load_plan(manifest)
    summary = await run(plan, RunOptions(simulate=True, sim_config=SimConfig()))
    assert summary.exit_code == 0, summary.messages
    done = [line for line in read_ledger_lines(plan.ledger) if line["event"] == "succeeded"]
    assert len(done) == len(plan.items)
    assert {line["provider"] for line in done} == {plan.endpoint.provider}
    assert {line["endpoint"] for line in done} == {item.endpoint for item in plan.items}
