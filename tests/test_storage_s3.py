"""A catalog job on S3, end to end: a CSV export whose image column holds s3:// URLs, outputs
written to a bucket, against the simulator and moto's S3 server on loopback (one server for
the module), reached by s3fs through AWS_ENDPOINT_URL with fake credentials, as a user's
MinIO would be. A rerun sends nothing, an interrupted or SIGKILLed run resumes, a changed
photo or a deleted output is redone, a missing object is reported with its URL."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from helpers import read_ledger_lines
from simfixtures import image_bytes

from pipeline.cli.main import main
from pipeline.core.errors import ManifestError
from pipeline.engine.runner import RunControl, RunOptions, run
from pipeline.manifest.load import load_plan
from pipeline.simulator import SimConfig

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

PHOTOS, ASSETS = "shop-photos", "shop-assets"
SKUS = ("sku-1", "sku-2", "sku-3")


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on a free loopback port, and the environment that points the SDKs at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def catalog(s3, tmp_path, request):
    """Fresh buckets for the test, three photos in one, and the job's CSV and manifest."""
    suffix = str(abs(hash(request.node.name)) % 10**8)
    photos, assets = f"{PHOTOS}-{suffix}", f"{ASSETS}-{suffix}"
    for bucket in (photos, assets):
        s3.create_bucket(Bucket=bucket)
    for n, sku in enumerate(SKUS):
        s3.put_object(Bucket=photos, Key=f"raw/{sku}.png", Body=image_bytes(colour=(n * 60, 9, 9)))
    (tmp_path / "exports").mkdir()
    rows = "".join(f"{sku},Mug {sku},red,s3://{photos}/raw/{sku}.png\n" for sku in SKUS)
    (tmp_path / "exports" / "products.csv").write_text("sku,title,colour,image\n" + rows)
    manifest = tmp_path / "catalog.yaml"
    manifest.write_text(
        "version: 1\n"
        "defaults: {model: gpt-image-1, quality: low, size: 1024x1024}\n"
        f"output:\n  dir: s3://{assets}/edited/spring\n"
        "ledger: state/ledger.jsonl\n"
        "items:\n"
        "  - from: exports/products.csv\n"
        '    id: "{sku}"\n'
        "    prompt: Put the {title} in {colour} on white marble\n"
    )
    return manifest, photos, assets


def outputs_in(s3, bucket: str) -> dict[str, int]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="edited/spring/").get("Contents", [])
    return {obj["Key"].removeprefix("edited/spring/"): obj["Size"] for obj in listed}


async def run_job(manifest, sim, **kw):
    plan = await asyncio.to_thread(load_plan, manifest, check_files=False)
    return await run(plan, RunOptions(base_url=sim.base_url, api_key="sk-test", **kw))


async def test_a_csv_of_s3_photos_runs_into_a_bucket_and_a_rerun_sends_nothing(
    s3, catalog, sim_factory, capsys
):
    manifest, _photos, assets = catalog
    estimate = ["estimate", str(manifest), "--json"]
    assert await asyncio.to_thread(main, estimate) == 0  # remote images: priced as 1024x1024
    assert json.loads(capsys.readouterr().out)["pending"] == 3
    async with sim_factory() as sim:
        first = await run_job(manifest, sim)
        second = await run_job(manifest, sim)
        dry = await run_job(manifest, sim, dry_run=True)  # as estimate: from the ledger
        stats = await sim.stats()
    assert (first.exit_code, first.stats.succeeded) == (0, 3)
    assert (second.exit_code, second.stats.done_before, second.stats.succeeded) == (0, 3, 0)
    assert stats["requests"] == 3 and (dry.stats.done_before, dry.stats.pending) == (3, 0)
    assert set(outputs_in(s3, assets)) == {f"{sku}.png" for sku in SKUS}
    page = manifest.parent / "report.html"
    assert await asyncio.to_thread(main, ["report", str(manifest), "--html", str(page)]) == 0
    assert f"s3://{assets}/edited/spring/sku-1.png" in page.read_text()  # named, not previewed
    lines = read_ledger_lines(manifest.parent / "state" / "ledger.jsonl")
    done = [r for r in lines if r["event"] == "succeeded"]
    assert {r["outputs"][0]["path"] for r in done} == {f"{sku}.png" for sku in SKUS}
    assert all(r["outputs"][0]["etag"] and r["inputs"][0]["url"].startswith("s3://") for r in done)


async def test_a_changed_photo_or_a_deleted_output_is_redone_and_nothing_else(
    s3, catalog, sim_factory
):
    manifest, photos, assets = catalog
    async with sim_factory() as sim:
        await run_job(manifest, sim)
        s3.put_object(Bucket=photos, Key="raw/sku-2.png", Body=image_bytes(colour=(1, 200, 1)))
        s3.delete_object(Bucket=assets, Key="edited/spring/sku-3.png")
        again = await run_job(manifest, sim)
        stats = await sim.stats()
    assert (again.exit_code, again.stats.done_before, again.stats.succeeded) == (0, 1, 2)
    assert stats["requests"] == 5
    assert set(outputs_in(s3, assets)) == {f"{sku}.png" for sku in SKUS}


async def test_an_interrupted_run_resumes_with_the_items_left(s3, catalog, sim_factory):
    manifest, _photos, assets = catalog
    control = RunControl()

    class StopAfterFirst:
        def started(self, stats):
            pass

        def update(self, stats):
            if stats.succeeded >= 1:
                control.request_stop("SIGTERM")

        def warning(self, text):
            pass

        def finished(self, summary):
            pass

    async with sim_factory() as sim:
        stopped = await run_job(
            manifest, sim, concurrency=1, control=control, observer=StopAfterFirst()
        )
        resumed = await run_job(manifest, sim)
        stats = await sim.stats()
    assert stopped.exit_code == 143 and stopped.stats.succeeded == 1
    assert (resumed.exit_code, resumed.stats.done_before, resumed.stats.succeeded) == (0, 1, 2)
    assert stats["requests"] == 3
    assert len(outputs_in(s3, assets)) == 3


async def test_a_missing_object_is_reported_with_its_url(s3, catalog, sim_factory):
    manifest, photos, _assets = catalog
    s3.delete_object(Bucket=photos, Key="raw/sku-2.png")
    with pytest.raises(ManifestError) as caught:
        await asyncio.to_thread(load_plan, manifest, check_remote=True)
    (problem,) = caught.value.problems
    assert problem.where == "exports/products.csv:3 (sku-2).image"
    assert problem.message == f"s3://{photos}/raw/sku-2.png: no such object"
    async with sim_factory() as sim:  # a run fails that item only, saying which object
        summary = await run_job(manifest, sim)
    assert (summary.exit_code, summary.stats.succeeded, summary.stats.failed) == (1, 2, 1)
    lines = read_ledger_lines(manifest.parent / "state" / "ledger.jsonl")
    (failed,) = [r for r in lines if r["event"] == "failed"]
    assert f"s3://{photos}/raw/sku-2.png: no such object" in failed["error"]["message"]


async def test_a_killed_run_resumes_and_every_item_lands_once(s3, catalog, sim_factory):
    """`editbatch run` in its own process, SIGKILLed once an output is in the bucket."""
    manifest, _photos, assets = catalog
    ledger = manifest.parent / "state" / "ledger.jsonl"

    async def start(sim, *args):
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pipeline",
            "run",
            str(manifest),
            "--base-url",
            sim.base_url,
            "--progress",
            "none",
            "--concurrency",
            "1",
            *args,
            env=dict(os.environ, OPENAI_API_KEY="sk-test"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async with sim_factory(SimConfig(latency_s=0.3)) as sim:
        proc = await start(sim)
        for _ in range(400):
            if outputs_in(s3, assets):
                break
            await asyncio.sleep(0.05)
        proc.kill()
        await proc.wait()
        before = len(outputs_in(s3, assets))
        proc = await start(sim, "--json")
        out, err = await proc.communicate()
    assert 1 <= before < 3
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["items"]["done"] == 3
    assert set(outputs_in(s3, assets)) == {f"{sku}.png" for sku in SKUS}
    done = [r["item"] for r in read_ledger_lines(ledger) if r["event"] == "succeeded"]
    assert sorted(set(done)) == list(SKUS)


async def test_validate_asks_the_store_unless_offline(s3, catalog):
    manifest, photos, _assets = catalog
    s3.delete_object(Bucket=photos, Key="raw/sku-1.png")
    assert await asyncio.to_thread(main, ["validate", str(manifest)]) == 2
    assert await asyncio.to_thread(main, ["validate", str(manifest), "--offline-inputs"]) == 0


def test_a_ledger_on_object_storage_is_refused_with_the_reason(tmp_path):
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "version: 1\ndefaults: {model: gpt-image-1}\nledger: s3://b/ledger.jsonl\n"
        "items:\n  - {image: s3://b/a.png, prompt: x}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_plan(manifest, check_files=False)
    (problem,) = caught.value.problems
    assert problem.where.endswith("job.yaml:3:9")
    assert "locked (flock)" in problem.message and "mounted volume" in problem.fix
