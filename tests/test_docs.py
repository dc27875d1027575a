"""The README stays honest: every command and option of the CLI appears in it, and the two
commands it opens with are the ones CI and users run."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_is_in_the_readme():
    missing = []
    for name, sub in _subparsers(build_parser()).items():
        if f"editbatch {name}" not in README:
            missing.append(f"editbatch {name}")
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and f"`{flag}" not in README:
                    missing.append(f"{name} {flag}")
    assert not missing, "document these in README.md: " + ", ".join(missing)


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert f"```sh\n{command}\n```" in README


def test_the_readme_main_command_runs_the_demo_on_the_simulator():
    assert "editbatch run examples/manifests/demo.yaml --simulate" in README
    assert (ROOT / "examples" / "manifests" / "demo.yaml").exists()


def test_every_exit_code_of_the_contract_is_documented():
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 / 143 |"):
        assert code in README
