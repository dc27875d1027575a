"""The recipes in jobs/ run exactly the CLI that exists: every `editbatch` command in them
parses with the real argument parser; the Containerfile installs the way the README does; the
cron entry runs its wrapper under flock, and the wrapper runs a real job against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import simple_job
from recipes import (
    JOBS,
    KNOWN,
    ROOT,
    commands_in,
    find_commands,
    instructions,
    parse_problem,
    recipe_files,
)

from pipeline.simulator import SimConfig

WRAPPER = JOBS / "cron" / "editbatch-nightly.sh"
VENV_BIN = Path(sys.executable).parent


def test_the_command_finder_reads_through_sudo_paths_images_and_continuations():
    text = (
        "sudo -u editbatch /opt/editbatch/bin/editbatch validate jobs/a.yaml\n"
        'editbatch run "$manifest" \\\n    --summary-file "$dir/${job}.json" "$@" || rc=$?\n'
        "podman build -t editbatch:0.1.0 . && podman run --rm editbatch:0.1.0 --version\n"
        "useradd --system --home-dir /srv/editbatch editbatch  # editbatch run in a comment\n"
        "30 2 * * * editbatch flock -n /srv/editbatch/x.lock /usr/local/bin/editbatch-nightly\n"
    )
    assert find_commands(text) == [
        ["validate", "jobs/a.yaml"],
        ["run", "manifest", "--summary-file", "dir/job.json"],
        ["--version"],
    ]


def test_a_renamed_option_is_caught_by_the_parser():
    assert parse_problem(["run", "job.yaml", "--shard", "0/3"]) is None
    assert "--shards" in parse_problem(["run", "job.yaml", "--shards", "0/3"])
    assert "--progres" in parse_problem(["run", "job.yaml", "--progres", "plain"])
    assert "--shard" in parse_problem(["run", "job.yaml", "--shard", "3/3"])


def test_every_file_in_jobs_is_of_a_kind_the_checks_read():
    unknown = [p for p in recipe_files() if p.suffix not in KNOWN and p.name not in KNOWN]
    assert not unknown, f"teach tests/test_jobs.py to read these: {unknown}"


@pytest.mark.parametrize("path", recipe_files(), ids=lambda p: str(p.relative_to(JOBS)))
def test_every_editbatch_command_in_the_recipes_parses(path):
    problems = [(argv, parse_problem(argv)) for argv in commands_in(path)]
    assert [p for p in problems if p[1]] == []


@pytest.mark.parametrize(
    "name",
    [
        "cron/editbatch-nightly.sh",
        "cron/README.md",
        "systemd/editbatch@.service",
        "systemd/README.md",
        "kubernetes/cronjob.yaml",
        "kubernetes/indexed-job.yaml",
        "kubernetes/README.md",
        "container/Containerfile",
        "container/README.md",
    ],
)
def test_each_recipe_runs_editbatch(name):
    assert commands_in(JOBS / name), f"no editbatch command found in jobs/{name}"


# --- the container image -------------------------------------------------------------------------


def test_containerfile_runs_editbatch_as_a_non_root_user_on_slim_python():
    steps = instructions((JOBS / "container" / "Containerfile").read_text())
    (base,) = [rest for keyword, rest in steps if keyword == "FROM"]
    assert base.startswith("python:3.11") and base.endswith("-slim")
    user = [rest for keyword, rest in steps if keyword == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    (entrypoint,) = [json.loads(rest) for keyword, rest in steps if keyword == "ENTRYPOINT"]
    assert entrypoint == ["editbatch"]


def test_containerfile_installs_the_project_from_its_source_with_pip_as_the_readme_does():
    """ "The same install step": both run `pip install` on the project's source folder, `.` of a
    checkout in the README (editable there, for development), the copied source in the image;
    so the image has exactly what a checkout installs. The COPY lines must bring every file
    that pyproject.toml's build needs."""
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"pip install (-e )?\.(?=[\s`]|$)", readme), "README lost its install step"
    workdir, copied, targets = Path("/"), set(), []
    for keyword, rest in instructions((JOBS / "container" / "Containerfile").read_text()):
        if keyword == "WORKDIR":
            workdir = workdir / rest
        elif keyword == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                into = workdir / dest
                copied.add(into / source if dest.endswith("/") or len(sources) > 1 else into)
        elif keyword == "RUN" and "pip install" in rest:
            words = rest.split("pip install", 1)[1].split("&&")[0].split()
            targets.extend(workdir / w for w in words if not w.startswith("-"))
    (source,) = targets
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", project["project"]["readme"]} | {p.rstrip("*") for p in packages}
    assert {source / name for name in needed} <= copied


# --- cron ----------------------------------------------------------------------------------------


def test_crontab_line_runs_the_installed_wrapper_under_flock_and_appends_to_a_log():
    lines = [
        line
        for line in (JOBS / "cron" / "editbatch.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"\w+=", line)
    ]
    (entry,) = lines
    *_schedule, _user, command = entry.split(None, 6)
    words = shlex.split(command)
    assert words[:2] == ["flock", "-n"]  # an overlapping start exits at once
    assert ">>" in command and command.endswith("2>&1")
    (wrapper,) = [word for word in words if word.endswith("/editbatch-nightly")]
    readme = (JOBS / "cron" / "README.md").read_text()
    assert f"jobs/cron/editbatch-nightly.sh {wrapper}" in readme  # installed where cron looks
    assert "chmod 600" in (JOBS / "cron" / "env.example").read_text()


async def run_wrapper(tmp_path, manifest, key_line: str, *options, mode=0o600):
    """The cron wrapper as cron starts it, with its env file and status folder in tmp_path and
    a `logger` on PATH that writes to a file instead of this machine's syslog."""
    env_file = tmp_path / "env"
    env_file.write_text(f"# the key\n{key_line}\n")
    env_file.chmod(mode)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "logger").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "syslog"}\n')
    (bin_dir / "logger").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(
        EDITBATCH_ENV_FILE=str(env_file),
        EDITBATCH_STATUS_DIR=str(tmp_path / "status"),
        PATH=f"{bin_dir}:{VENV_BIN}:{env['PATH']}",
    )
    proc = await asyncio.create_subprocess_exec(
        "sh",
        str(WRAPPER),
        str(manifest),
        *options,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    log, _ = await proc.communicate()
    syslog = tmp_path / "syslog"
    return proc.returncode, log.decode(), syslog.read_text() if syslog.exists() else ""


async def test_cron_wrapper_hands_the_env_files_key_to_editbatch_and_logs_success(
    tmp_path, sim_factory
):
    manifest = simple_job(tmp_path / "job", 2)
    async with sim_factory(SimConfig(api_key="sk-from-the-env-file")) as sim:
        rc, log, syslog = await run_wrapper(
            tmp_path, manifest, "OPENAI_API_KEY=sk-from-the-env-file", "--base-url", sim.base_url
        )
    assert rc == 0, log
    assert "exit 0: done" in log and syslog == ""
    summary = json.loads((tmp_path / "status" / "job.json").read_text())
    assert summary["exit_code"] == 0
    assert "editbatch_" in (tmp_path / "status" / "job.prom").read_text()


async def test_cron_wrapper_reports_an_abort_to_syslog_but_not_a_budget_stop(tmp_path, sim_factory):
    manifest = simple_job(tmp_path / "job", 2)
    async with sim_factory(SimConfig(api_key="sk-the-right-key")) as sim:
        rc, log, syslog = await run_wrapper(
            tmp_path, manifest, "OPENAI_API_KEY=sk-a-revoked-key", "--base-url", sim.base_url
        )
        assert rc == 4, log
        assert "ABORTED" in log and "job: exit 4" in syslog
        (tmp_path / "syslog").unlink()
        rc, log, syslog = await run_wrapper(
            tmp_path,
            manifest,
            "OPENAI_API_KEY=sk-the-right-key",
            *("--base-url", sim.base_url, "--max-usd", "0.0001"),
        )
    assert rc == 3, log
    assert "budget stop, as planned" in log and syslog == ""


async def test_cron_wrapper_refuses_a_key_file_others_can_read(tmp_path):
    manifest = simple_job(tmp_path / "job", 1)
    rc, log, _ = await run_wrapper(tmp_path, manifest, "OPENAI_API_KEY=sk-x", mode=0o644)
    assert rc == 2
    assert "chmod 600" in log
    assert not (tmp_path / "job" / "job-out").exists()  # nothing ran
