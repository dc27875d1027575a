"""Readers for the recipes in jobs/, shared by the tests that check them: the `editbatch`
commands a recipe runs, systemd unit sections, Containerfile steps, Kubernetes pod specs and
what a Job's podFailurePolicy does with an exit code."""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml

from pipeline.cli.main import build_parser
from pipeline.ledger.shards import Shard

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "jobs"
K8S = JOBS / "kubernetes"
INSTANCE = "nightly"  # the systemd instance the tests fill in for %i
# Kinds of file a recipe may hold; a new kind must teach `commands_in` to read it first.
KNOWN = {".md", ".sh", ".cron", ".service", ".timer", ".yaml", ".example", "Containerfile"}
# Options whose value may be the user or image called "editbatch" (sudo -u, install -o, -t).
VALUE_OPTIONS = {"-u", "--user", "-g", "--group", "-o", "--owner", "-t", "--tag"}
SHELL_VAR = re.compile(r"\$\{(\w+)(?::?[-=?+][^}]*)?\}|\$([A-Za-z_]\w*)")
K8S_VAR = re.compile(r"\$\((\w+)\)")


def exact_parser() -> argparse.ArgumentParser:
    """The real parser, without argparse's prefix matching: a recipe that says `--progress`
    must break when the option is renamed `--progress-style`, not match it as an abbreviation."""
    parser = build_parser()
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.allow_abbrev = False
    return parser


SUBCOMMANDS = set(
    next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
)


def _is_editbatch(token: str) -> bool:
    return token.rsplit("/", 1)[-1].split(":", 1)[0] == "editbatch"


def _is_operator(token: str) -> bool:
    return bool(token) and all(ch in "();<>|&" for ch in token)


def find_commands(shell_text: str) -> list[list[str]]:
    """The arguments of every `editbatch ...` in shell-like text: continuation lines joined,
    variables filled with their own names ($status_dir -> status_dir), "$@" dropped."""
    commands = []
    for line in re.sub(r"\\\n", " ", shell_text).splitlines():
        line = line.replace('"$@"', "").replace("$@", "")
        line = SHELL_VAR.sub(lambda m: m.group(1) or m.group(2), line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens[:-1]):
            follower = tokens[i + 1]
            if not _is_editbatch(token) or (i and tokens[i - 1] in VALUE_OPTIONS):
                continue
            if follower in SUBCOMMANDS or follower in ("--version", "--help", "-h"):
                argv = []
                for arg in tokens[i + 1 :]:
                    if _is_operator(arg):
                        break
                    argv.append(arg)
                commands.append(argv)
    return commands


def fenced_code(markdown: str) -> str:
    return "\n".join(re.findall(r"^```[\w-]*\n(.*?)^```", markdown, re.M | re.S))


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def containers(doc) -> list[dict]:
    """Every container of every pod template in a Kubernetes document, wherever it nests."""
    found = []
    if isinstance(doc, dict):
        found.extend(doc.get("containers", []))
        for key, value in doc.items():
            if key != "containers":
                found.extend(containers(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(containers(value))
    return found


def container_argv(container: dict, index: int = 0) -> list[str] | None:
    """command + args, $(VAR) filled in; no command means the image's entrypoint, editbatch."""
    argv = list(container.get("command") or ["editbatch"]) + list(container.get("args", []))
    if not _is_editbatch(argv[0]):
        return None
    values = {"JOB_COMPLETION_INDEX": str(index)}
    return [K8S_VAR.sub(lambda m: values.get(m.group(1), m.group(0)), str(arg)) for arg in argv[1:]]


def instructions(containerfile: str) -> list[tuple[str, str]]:
    steps = []
    for raw in re.sub(r"\\\n", " ", containerfile).splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


def commands_in(path: Path) -> list[list[str]]:
    text = path.read_text()
    if path.suffix == ".md":
        return find_commands(fenced_code(text))
    if path.suffix in (".sh", ".cron"):
        return find_commands(text)
    if path.suffix == ".service":
        service = unit_sections(text)["Service"]
        lines = [v.lstrip("@-:+!") for k, vs in service.items() if k.startswith("Exec") for v in vs]
        return find_commands("\n".join(lines).replace("%i", INSTANCE))
    if path.suffix == ".yaml":
        argvs = [container_argv(c) for doc in yaml.safe_load_all(text) for c in containers(doc)]
        return [argv for argv in argvs if argv is not None]
    if path.name == "Containerfile":
        steps = dict(instructions(text))
        return [json.loads(steps["ENTRYPOINT"])[1:] + json.loads(steps.get("CMD", "[]"))]
    return []


def parse_problem(argv: list[str]) -> str | None:
    """None when the real parser accepts argv (help and version count), else its complaint."""
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            args = exact_parser().parse_args(argv)
        except SystemExit as exc:
            return None if exc.code == 0 else err.getvalue().strip()
    if getattr(args, "shard", None):
        try:
            Shard.parse(args.shard)
        except ValueError as exc:
            return str(exc)
    return None


def recipe_files() -> list[Path]:
    return sorted(p for p in JOBS.rglob("*") if p.is_file())


def span_seconds(span: str) -> float:
    """A systemd time span ("90", "6h", "1min 30s") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    return sum(float(number) * units[unit] for number, unit in parts)


def k8s(name: str) -> dict:
    (doc,) = yaml.safe_load_all((K8S / name).read_text())
    return doc


def job_spec(doc: dict) -> dict:
    return doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]


def the_container(doc: dict) -> tuple[dict, dict, argparse.Namespace]:
    pod = job_spec(doc)["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container, exact_parser().parse_args(container_argv(container))


def policy_action(rules: list[dict], exit_code: int, *, disrupted: bool) -> str:
    """What the Job controller does with a failed pod: the first matching rule's action, else
    Count (retried until the backoff limit)."""
    for rule in rules:
        codes = rule.get("onExitCodes")
        if codes and (exit_code in codes["values"]) == (codes["operator"] == "In"):
            return rule["action"]
        for condition in rule.get("onPodConditions", []):
            wanted = condition.get("status", "True") == "True"
            if condition["type"] == "DisruptionTarget" and disrupted == wanted:
                return rule["action"]
    return "Count"
