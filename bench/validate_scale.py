"""How long `load_plan` takes on a 100,000-item manifest and on a glob over 100,000 files.

A quick local check, not a test: python bench/validate_scale.py [COUNT]. Files go to
bench/work/ (ignored by git) and are reused by later runs.
"""

from __future__ import annotations

import io
import resource
import sys
import time
from pathlib import Path

from PIL import Image

from pipeline.manifest import load_plan

WORK = Path(__file__).resolve().parent / "work" / "scale"


def small_png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (seed % 256, 80, 160)).save(out, "PNG")
    return out.getvalue()


def make_inputs(count: int) -> None:
    folder = WORK / "images"
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.iterdir())) == count:
        return
    data = small_png(1)
    mask = io.BytesIO()
    Image.new("L", (64, 64), 255).save(mask, "PNG")
    (WORK / "mask.png").write_bytes(mask.getvalue())
    for n in range(count):
        (folder / f"sku-{n:06d}.png").write_bytes(data)


def write_manifests(count: int) -> tuple[Path, Path]:
    head = "version: 1\ndefaults:\n  model: gpt-image-1\n  quality: low\nitems:\n"
    lines = [head]
    for n in range(count):
        lines.append(
            f"  - id: sku-{n:06d}\n    image: images/sku-{n:06d}.png\n    mask: mask.png\n"
            f"    prompt: Replace the background of product {n} with white\n"
            + ("    quality: high\n" if n % 3 == 0 else "")
        )
    explicit = WORK / "explicit.yaml"
    explicit.write_text("".join(lines))
    globbed = WORK / "globbed.yaml"
    globbed.write_text(head + "  - glob: images/*.png\n    prompt: Put the {stem} on white\n")
    return explicit, globbed


def timed(path: Path) -> None:
    start = time.perf_counter()
    plan = load_plan(path)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{path.name}: {len(plan.items):,} items in {took:.2f} s (peak RSS so far {peak:.0f} MB)")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    make_inputs(count)
    explicit, globbed = write_manifests(count)
    timed(explicit)
    timed(globbed)


if __name__ == "__main__":
    main()
