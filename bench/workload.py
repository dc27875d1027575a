"""The benchmark's inputs and jobs: images made once into bench/work/inputs (ignored by git), and
one job description written out for each client: a manifest for editbatch, an item list for
the DIY baseline and the raw loop, so that every client sends exactly the same requests.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

DEFAULT_WORK = Path(__file__).resolve().parent / "work"
KEY = "sk-bench"
# Image kinds: "small" is a 64x64 flat colour (a tiny body: per-request costs dominate);
# "photo" a 1024x1024 gradient with grain (about 1 MB, the order of a real input or output);
# "big" 1536x1024 of 7-bit noise (about 4.4 MB, which the simulator returns unchanged under
# an opaque mask: the 4 MB bodies of the memory scenario).
SIZES = {"small": (64, 64), "photo": (1024, 1024), "big": (1536, 1024)}
_SEVEN_BITS = bytes(value & 0x7F for value in range(256))


@dataclass(frozen=True)
class Job:
    """What a scenario asks every client to do; images[i] is item i's input."""

    name: str
    images: tuple[Path, ...]
    prompt: str = "Replace the background with a white studio backdrop"
    mask: Path | None = None
    params: dict = field(default_factory=lambda: {"model": "gpt-image-1", "quality": "low"})
    concurrency: int = 8
    rpm: float = 0
    timeout_s: float = 300
    max_attempts: int = 5

    @property
    def ids(self) -> list[str]:
        return [f"item-{n:05d}" for n in range(len(self.images))]


def work_dir() -> Path:
    """Where the benchmark keeps what it makes: $EDITBATCH_BENCH_WORK, else bench/work."""
    return Path(os.environ.get("EDITBATCH_BENCH_WORK") or DEFAULT_WORK)


def image_data(kind: str, seed: int) -> bytes:
    """The PNG bytes of image number `seed` of a kind; the same bytes for the same seed."""
    width, height = SIZES[kind]
    rng = random.Random(f"bench/{kind}/{seed}")
    if kind == "small":
        image = Image.new("RGB", (width, height), (seed * 37 % 256, seed * 11 % 256, 160))
    elif kind == "photo":
        ramp = Image.linear_gradient("L").resize((width, height))
        grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
        grain = grain.point(lambda value: value % 24 + seed % 7)
        image = Image.merge("RGB", (ramp, grain, ramp.rotate(90)))
    else:
        noise = rng.randbytes(width * height * 3).translate(_SEVEN_BITS)
        image = Image.frombytes("RGB", (width, height), noise)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def input_images(kind: str, distinct: int, count: int) -> tuple[Path, ...]:
    """`count` item inputs cycling over `distinct` images of a kind, made on first use."""
    folder = work_dir() / "inputs" / kind
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(distinct):
        path = folder / f"{kind}-{seed:04d}.png"
        if not path.exists():
            temp = path.with_suffix(".tmp")
            temp.write_bytes(image_data(kind, seed))
            temp.replace(path)
        paths.append(path)
    return tuple(paths[n % distinct] for n in range(count))


def opaque_mask(kind: str) -> Path:
    """An RGBA mask that keeps every pixel but the top-left one (a mask must mark something to
    edit): the simulated edit returns the input's pixels, so the output is as large as the
    input."""
    path = work_dir() / "inputs" / f"mask1-{kind}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = Image.new("RGBA", SIZES[kind], (0, 0, 0, 255))
        mask.putpixel((0, 0), (0, 0, 0, 0))
        mask.save(path, "PNG")
    return path


def run_dir(name: str) -> Path:
    """An empty folder for one client's run: its manifest, outputs and ledger."""
    folder = work_dir() / "runs" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_manifest(job: Job, folder: Path) -> Path:
    """The job as an editbatch manifest in `folder` (outputs and ledger beside it)."""
    items = []
    for item_id, image in zip(job.ids, job.images, strict=True):
        entry = {"id": item_id, "image": str(image)}
        if job.mask is not None:
            entry["mask"] = str(job.mask)
        items.append(entry)
    manifest = {
        "version": 1,
        "name": job.name,
        "defaults": {**job.params, "prompt": job.prompt},
        "limits": {
            "concurrency": job.concurrency,
            "requests_per_minute": job.rpm,
            "max_attempts": job.max_attempts,
            "timeout_s": job.timeout_s,
        },
        "output": {"dir": "out"},
        "items": items,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def write_item_list(job: Job, folder: Path) -> dict:
    """The job as the plain spec the DIY baseline and the raw loop read."""
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    return {
        "items": [[i, str(p)] for i, p in zip(job.ids, job.images, strict=True)],
        "prompt": job.prompt,
        "mask": None if job.mask is None else str(job.mask),
        "params": dict(job.params),
        "concurrency": job.concurrency,
        "rpm": job.rpm,
        "out_dir": str(out),
    }


def outputs_in(folder: Path) -> int:
    """How many output images a client left in its run folder."""
    out = folder / "out"
    return sum(1 for p in out.iterdir() if p.suffix == ".png") if out.exists() else 0


def largest_output(folder: Path) -> int:
    """The size in bytes of the largest output image a client left in its run folder."""
    out = folder / "out"
    return max((p.stat().st_size for p in out.glob("*.png")), default=0)


def dump(spec: dict, folder: Path) -> Path:
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path
