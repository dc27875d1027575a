"""A dry run (and `estimate`) answers what a person asks before spending: which items would
be sent, what they would cost, whether and where the budget stops them, and whether the run
could start at all (the key variable, the prices a budget needs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.cost.estimate import ItemEstimate
from pipeline.cost.outlook import budget_outlook, items_within
from pipeline.cost.pricing import TokenCounts

DEMO = Path(__file__).resolve().parent.parent / "examples" / "manifests"
NONE = TokenCounts(0, 0, 0, 0)


@pytest.fixture
def demo(tmp_path) -> Path:
    shutil.copytree(DEMO / "demo", tmp_path / "demo")
    shutil.copy(DEMO / "demo.yaml", tmp_path / "demo.yaml")
    return tmp_path / "demo.yaml"


@pytest.mark.parametrize(
    ("costs", "worst", "limit", "sent"),
    [
        ([1, 1, 1], [2, 2, 2], 10, 3),
        ([1, 1, 1], [2, 2, 2], 2, 1),  # after one, 1 left: the next worst (2) does not fit
        ([1, 1, 1], [2, 2, 2], 3, 2),
        ([1, 1, 1], [2, 2, 2], 1.5, 0),
        ([1, 5, 1], [1, 5, 1], 6, 2),
        ([1, 5, 1], [1, 5, 1], 5.9, 1),  # the first that does not fit stops dispatch
        ([], [], 0, 0),
    ],
)
def test_items_within_follows_the_runners_reservation_rule(costs, worst, limit, sent):
    assert items_within(costs, worst, limit) == sent


def estimates(*pairs: tuple[float, float]) -> list[ItemEstimate]:
    return [
        ItemEstimate(f"i{n}", "m", NONE, NONE, expected, worst)
        for n, (expected, worst) in enumerate(pairs)
    ]


@pytest.mark.parametrize(
    ("kwargs", "binding", "expected_items", "worst_items", "phrase"),
    [
        ({}, None, 5, 5, "no budget set"),
        ({"run_usd": 1.0}, "run_usd", 5, 5, "all 5 item(s) fit even at the worst case"),
        ({"run_usd": 0.6}, "run_usd", 5, 3, "all 5 item(s) fit as expected, at least 3"),
        ({"run_usd": 0.3}, "run_usd", 2, 1, "stops after about 2 of 5 item(s)"),
        (
            {"run_usd": 1.0, "total_usd": 1.0, "spent_before_usd": 0.8},
            "total_usd",
            1,
            1,
            "budget.total_usd $1.00 less $0.8000 spent before",
        ),
    ],
)
def test_the_budget_outlook_says_where_the_budget_stops(
    kwargs, binding, expected_items, worst_items, phrase
):
    outlook = budget_outlook(estimates(*[(0.1, 0.2)] * 5), **kwargs)
    assert outlook.binding == binding
    assert (outlook.expected_items, outlook.worst_items) == (expected_items, worst_items)
    assert phrase in outlook.sentence()
    assert outlook.to_json()["stops"] == (expected_items < 5)


def test_the_stop_sentence_names_the_budget_that_sends_everything():
    text = budget_outlook(estimates(*[(0.1, 0.2)] * 5), run_usd=0.25).sentence()
    assert "budget.run_usd (or --max-usd) of $1.00 sends them all" in text


def test_dry_run_lists_the_items_the_budget_line_and_the_key(demo, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["run", str(demo), "--dry-run", "--max-usd", "0.03"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "to send (5): mug, sneaker, lamp, cup, vase" in out
    assert "the budget stops after about 2 of 5 item(s)" in out
    assert "key: OPENAI_API_KEY is not set: `run` would refuse to start" in out
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = main(["run", str(demo), "--dry-run", "--max-usd", "0.03", "--json"])
    data = json.loads(capsys.readouterr()[0])
    assert [item["id"] for item in data["items"]] == ["mug", "sneaker", "lamp", "cup", "vase"]
    assert data["budget"]["stops"] is True and data["budget"]["expected_items"] == 2
    assert data["key_env"] == "OPENAI_API_KEY" and data["key_set"] is True
    assert not (demo.parent / "demo-out" / "ledger.jsonl").exists()


def test_estimate_with_nothing_pending_says_zero_not_no_price(demo, capsys):
    assert main(["run", str(demo), "--simulate", "--progress", "none"]) == 0
    capsys.readouterr()
    assert main(["estimate", str(demo)]) == 0
    out = capsys.readouterr()[0]
    assert "no price" not in out
    assert "│ total │ 0       │ 0       │ 0        │ 0         │ 0.0000       │ 0.0000    │" in out
    assert "budget: nothing to send: $0" in out


def test_dry_run_refuses_what_the_run_would_refuse(demo, capsys):
    text = demo.read_text().replace("model: gpt-image-1", "model: my-proxy-model")
    demo.write_text(text)
    code = main(["run", str(demo), "--dry-run"])
    err = capsys.readouterr()[1]
    assert code == 2 and "no known price" in err and "my-proxy-model" in err


def test_the_readme_shows_what_the_dry_run_really_prints(demo, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["run", str(demo), "--dry-run", "--max-usd", "0.03"]) == 0
    readme = (DEMO.parent.parent / "README.md").read_text("utf-8")
    shown = capsys.readouterr()[0].splitlines()[-3:]  # to send, budget, key
    assert [line.split(":")[0] for line in shown] == ["to send (5)", "budget", "key"]
    for line in shown:
        assert line in readme, line
