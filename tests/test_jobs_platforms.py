"""The scheduler recipes in jobs/ are valid where they run: Kubernetes files pass
`kubernetes-validate --strict` and say what each exit code does; systemd units pass
`systemd-analyze verify`; every timeout outlasts the drain after SIGTERM (--grace)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from recipes import (
    INSTANCE,
    JOBS,
    K8S,
    K8S_VAR,
    commands_in,
    container_argv,
    exact_parser,
    job_spec,
    k8s,
    policy_action,
    span_seconds,
    the_container,
    unit_sections,
)

from pipeline.ledger.shards import Shard

SERVICE = JOBS / "systemd" / "editbatch@.service"
VENV_BIN = Path(sys.executable).parent


# The oldest Kubernetes with timeZone, podFailurePolicy and backoffLimitPerIndex all on by
# default, and the newest schemas the validator bundles (its default).
@pytest.mark.parametrize("version", ["1.29.0", None])
def test_kubernetes_files_pass_strict_schema_validation(version):
    files = sorted(str(p) for p in K8S.glob("*.yaml"))
    chosen = ["--kubernetes-version", version] if version else []
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *chosen, *files],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(files)


def test_cronjob_never_overlaps_and_lets_the_drain_finish():
    doc = k8s("cronjob.yaml")
    pod, _, args = the_container(doc)
    assert doc["spec"]["concurrencyPolicy"] == "Forbid"
    assert doc["spec"]["startingDeadlineSeconds"] > 0
    assert doc["spec"]["timeZone"]
    assert pod["terminationGracePeriodSeconds"] > args.grace
    assert args.progress == "plain"


@pytest.mark.parametrize("name", ["cronjob.yaml", "indexed-job.yaml"])
def test_pods_run_locked_down_with_the_key_from_the_secret_and_data_on_the_claim(name):
    pod, container, _ = the_container(k8s(name))
    secret, claim = k8s("secret.example.yaml"), k8s("pvc.yaml")
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    guard = container["securityContext"]
    assert guard["readOnlyRootFilesystem"] is True
    assert guard["allowPrivilegeEscalation"] is False
    assert guard["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    assert mounts["/data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]


def test_the_secret_example_holds_a_placeholder_not_a_key():
    (value,) = k8s("secret.example.yaml")["stringData"].values()
    assert "replace" in value and not value.startswith("sk-")


def test_indexed_job_runs_one_shard_per_completion_index():
    doc = k8s("indexed-job.yaml")
    spec = doc["spec"]
    _, container, args = the_container(doc)
    count = Shard.parse(args.shard).count
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == count
    summaries = set()
    for index in range(count):
        shard_args = exact_parser().parse_args(container_argv(container, index))
        assert Shard.parse(shard_args.shard) == Shard(index, count)
        summaries.add(shard_args.summary_file)
    assert len(summaries) == count  # no two shards write one summary file
    env = {e["name"]: e for e in container["env"]}
    field = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    # Kubernetes expands $(VAR) only from variables the container defines
    used = {m for arg in container["args"] for m in K8S_VAR.findall(str(arg))}
    assert used <= set(env)


@pytest.mark.parametrize(
    ("name", "exit_code", "disrupted", "action"),
    [
        ("indexed-job.yaml", 1, False, "FailIndex"),  # a retry would skip the failed items again
        ("indexed-job.yaml", 2, False, "FailJob"),
        ("indexed-job.yaml", 3, False, "FailIndex"),  # a retry would spend a second budget
        ("indexed-job.yaml", 4, False, "FailJob"),
        ("indexed-job.yaml", 143, True, "Ignore"),  # evicted: run the shard again, resuming
        ("indexed-job.yaml", 143, False, "Count"),
        ("indexed-job.yaml", 70, False, "Count"),
        ("indexed-job.yaml", 137, False, "Count"),
        ("cronjob.yaml", 1, False, "FailJob"),
        ("cronjob.yaml", 2, False, "FailJob"),
        ("cronjob.yaml", 3, False, "FailJob"),
        ("cronjob.yaml", 4, False, "FailJob"),
        ("cronjob.yaml", 143, True, "Ignore"),
        ("cronjob.yaml", 70, False, "Count"),
    ],
)
def test_pod_failure_policy_acts_on_each_exit_code(name, exit_code, disrupted, action):
    spec = job_spec(k8s(name))
    rules = spec["podFailurePolicy"]["rules"]
    assert policy_action(rules, exit_code, disrupted=disrupted) == action
    if action == "FailIndex":
        assert spec["backoffLimitPerIndex"] >= 1  # FailIndex exists only with it


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    service = SERVICE.read_text()
    # verify checks that ExecStart's program exists: point it at this checkout's editbatch
    (binary,) = {line.split()[0] for line in unit_sections(service)["Service"]["ExecStart"]}
    units = {
        f"editbatch@{INSTANCE}.service": service.replace(binary, str(VENV_BIN / "editbatch")),
        f"editbatch@{INSTANCE}.timer": SERVICE.with_suffix(".timer").read_text(),
    }
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [verify, "verify", *(str(tmp_path / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    output = result.stdout + result.stderr
    complaints = [
        line
        for line in output.splitlines()
        if "editbatch@" in line or "Unknown" in line or "ignoring" in line
    ]
    assert result.returncode == 0 and not complaints, output


def test_systemd_service_drains_on_stop_and_counts_a_budget_stop_as_success():
    service = unit_sections(SERVICE.read_text())["Service"]
    (exec_start,) = commands_in(SERVICE)
    args = exact_parser().parse_args(exec_start)
    assert service["Type"] == ["oneshot"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert span_seconds(service["TimeoutStopSec"][0]) > args.grace
    assert span_seconds(service["TimeoutStartSec"][0]) > span_seconds(service["TimeoutStopSec"][0])
    success = {int(code) for value in service["SuccessExitStatus"] for code in value.split()}
    assert 3 in success and not success & {1, 2, 4, 70}
    assert service["EnvironmentFile"] and service["WorkingDirectory"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    writable = [Path(p.lstrip("-+")) for value in service["ReadWritePaths"] for p in value.split()]
    written = [args.manifest.parent, args.summary_file, args.metrics_file]
    assert all(any(path.is_relative_to(w) for w in writable) for path in written)


def test_systemd_timer_catches_up_and_spreads_its_start():
    timer = unit_sections(SERVICE.with_suffix(".timer").read_text())["Timer"]
    assert timer["OnCalendar"] and timer["Persistent"] == ["true"]
    assert span_seconds(timer["RandomizedDelaySec"][0]) > 0
