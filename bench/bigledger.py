"""The files of the 100,000-item scenario, made once under bench/work/big-<count>: tiny inputs,
an explicit manifest, a glob manifest, and a job whose ledger already holds every item as
succeeded (keys, input digests and outputs computed with the runner's own functions, and real
output files on disk) plus one new item. The resume code itself checks the ledger when it is
made: every old item done without re-reading an input, the new one pending.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench.workload import work_dir
from pipeline.core.fingerprint import KEY_VERSION, DigestCache, FileDigest, item_key
from pipeline.cost.pricing import cost_of_usage, price_table
from pipeline.engine.prepare import Preparer
from pipeline.ledger.reader import VERSION
from pipeline.ledger.resume import classify
from pipeline.ledger.status import read_job_state
from pipeline.ledger.writer import timestamp
from pipeline.manifest.load import load_plan
from pipeline.outputs.files import output_relpaths

HEAD = "version: 1\ndefaults:\n  model: gpt-image-1\n  quality: low\n  size: 1024x1024\n"
USAGE = {
    "input_tokens": 80,
    "input_tokens_details": {"text_tokens": 15, "image_tokens": 65},
    "output_tokens": 272,
    "total_tokens": 352,
}


@dataclass(frozen=True)
class BigJob:
    folder: Path
    count: int

    @property
    def explicit(self) -> Path:
        return self.folder / "explicit.yaml"

    @property
    def globbed(self) -> Path:
        return self.folder / "globbed.yaml"

    @property
    def resume(self) -> Path:
        return self.folder / "resume.yaml"

    @property
    def base_ledger(self) -> Path:
        return self.folder / "ledger.base.jsonl"


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, "PNG")
    return out.getvalue()


def _item_lines(count: int) -> list[str]:
    return [
        f"  - id: sku-{n:06d}\n    image: images/sku-{n:06d}.png\n"
        f"    prompt: Replace the background of product {n} with white\n"
        for n in range(count)
    ]


def ensure(count: int) -> BigJob:
    """The job's files, made unless a complete set is already there."""
    job = BigJob(work_dir() / f"big-{count}", count)
    ready = job.folder / "READY"
    # Made again when the meaning of a key or of a ledger line changes.
    stamp = f"key version {KEY_VERSION}, ledger version {VERSION}\n"
    if ready.exists() and ready.read_text() == stamp:
        return job
    shutil.rmtree(job.folder, ignore_errors=True)
    images = job.folder / "images"
    images.mkdir(parents=True)
    data = _png((200, 120, 40))
    for n in range(count):
        (images / f"sku-{n:06d}.png").write_bytes(data)
    (job.folder / "new").mkdir()
    (job.folder / "new" / "sku-new.png").write_bytes(_png((20, 60, 220)))
    lines = _item_lines(count)
    job.explicit.write_text(HEAD + "items:\n" + "".join(lines))
    job.globbed.write_text(
        HEAD + "items:\n  - glob: images/*.png\n    prompt: Put the {stem} on white marble\n"
    )
    new = "  - id: sku-new\n    image: new/sku-new.png\n    prompt: A new product on white\n"
    job.resume.write_text(HEAD + "output:\n  dir: out\nitems:\n" + "".join(lines) + new)
    _write_ledger(job, data)
    ready.write_text(stamp)
    return job


def _write_ledger(job: BigJob, image_data: bytes) -> None:
    plan = load_plan(job.resume)
    base = plan.manifest_path.parent
    out_dir = plan.output.dir
    out_dir.mkdir(parents=True)
    image_sha = _sha256(image_data)
    output = _png((250, 250, 250))
    output_sha = _sha256(output)
    usd = round(cost_of_usage(USAGE, price_table()["gpt-image-1"]), 8)
    run = "20260101T000000Z-bench0"
    lines = [_line(run, "run_started", manifest=plan.name, synthetic=True)]
    first: tuple[str, dict] | None = None
    for item in plan.items[:-1]:
        st = os.stat(item.images[0])
        digest = FileDigest(item.images[0], st.st_size, st.st_mtime_ns, image_sha)
        inputs = [{**digest.record("image"), "path": item.images[0].relative_to(base).as_posix()}]
        key = item_key(item, [image_sha], None)
        relpath = output_relpaths(item, plan.output.name)[0]
        path = out_dir / relpath
        path.write_bytes(output)
        written = os.stat(path)
        outputs = [
            {
                "path": relpath,
                "sha256": output_sha,
                "bytes": written.st_size,
                "mtime_ns": written.st_mtime_ns,
            }
        ]
        lines.append(
            _line(
                run,
                "succeeded",
                item=item.id,
                key=key,
                attempt=1,
                model=item.model,
                params=dict(item.params),
                latency_s=1.0,
                request_id=f"req_{item.id}",
                usage=USAGE,
                cost_usd=usd,
                outputs=outputs,
                inputs=inputs,
            )
        )
        first = first or (key, inputs[0])
    lines.append(_line(run, "run_finished", reason="completed", exit_code=0))
    job.base_ledger.write_text("".join(lines))
    shutil.copyfile(job.base_ledger, plan.ledger)
    _check(job, plan, first)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _line(run: str, event: str, **fields: object) -> str:
    record = {"v": VERSION, "ts": timestamp(), "run": run, "event": event, **fields}
    return json.dumps(record, separators=(",", ":")) + "\n"


def _check(job: BigJob, plan, first: tuple[str, dict] | None) -> None:
    """The runner's own resume decision on the synthetic ledger must be: all done but one,
    and no input hashed again; and its preparer must compute the same key and digest."""
    state, _ = read_job_state(plan)
    cache = DigestCache(state.recorded_inputs(plan.manifest_path.parent))
    classified = classify(plan.items, state, cache, plan.output.dir)
    if len(classified.done) != job.count or len(classified.pending) != 1 or cache.hashed:
        raise RuntimeError(
            f"{job.base_ledger}: the runner sees {len(classified.done)} done, "
            f"{len(classified.pending)} pending and re-hashed {cache.hashed} inputs; the "
            "synthetic ledger no longer matches the runner's keys: update bench/bigledger.py"
        )
    prepared = asyncio.run(Preparer(plan, price_table()).prepare(plan.items[0]))
    if first is None or (prepared.key, prepared.inputs[0]) != first:
        raise RuntimeError(
            "the preparer's key or input digest differs from bench/bigledger.py's: "
            f"{(prepared.key, prepared.inputs[0])} != {first}; update bench/bigledger.py"
        )


def reset_resume(job: BigJob) -> Path:
    """Put the resume job back as made: the base ledger, and no output for the new item."""
    out = job.folder / "out"
    shutil.copyfile(job.base_ledger, out / "ledger.jsonl")
    (out / "sku-new.png").unlink(missing_ok=True)
    return job.resume


def single(job: BigJob) -> Path:
    """A fresh 1-item job (no ledger): the fixed cost of starting a run, for reference."""
    folder = job.folder / "single"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    manifest = folder / "job.yaml"
    manifest.write_text(
        HEAD + "items:\n  - id: one\n    image: ../new/sku-new.png\n    prompt: One on white\n"
    )
    return manifest


def fresh(job: BigJob, count: int) -> Path:
    """A fresh job of the first `count` inputs (no ledger, no outputs): what a new job pays
    before its first request."""
    folder = job.folder / f"fresh-{count}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    manifest = folder / "job.yaml"
    lines = [line.replace("image: images/", "image: ../images/") for line in _item_lines(count)]
    manifest.write_text(HEAD + "items:\n" + "".join(lines))
    return manifest
