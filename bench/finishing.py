"""What finishing an answer costs (issue 15): drift alone (every masked item), strict
compositing, `size: input`, turning an EXIF-rotated photo upright, and the validation of a mask's
content, at catalog photo sizes, in Pillow. Each figure is the least of a few repeats, and each
is shown against a baseline measured in the same run: decoding the input and saving it again
as PNG at the same zlib level (what writing a picture of the input's size costs at least).
Peak memory of one finish is measured in a fresh process (VmHWM) against the input's raw RGB
size.

    python -m bench.finishing            # about a minute on 2 cores
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from pipeline.core.plan import Finish
from pipeline.media.composite import PNG_LEVEL
from pipeline.media.finish import finish
from pipeline.media.images import mask_edit_pixels
from pipeline.media.orient import upright

SIZES = {"1024 square": (1024, 1024), "2000 square": (2000, 2000), "4000x3000": (4000, 3000)}
ANSWER = (1024, 1024)
REPEATS = 3


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A gradient with grain: compresses like a photo, unlike pure noise."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    grain = Image.frombytes(
        "RGB", (size[0] // 4, size[1] // 4), rng.randbytes(size[0] * size[1] * 3 // 16)
    )
    return Image.blend(base, grain.resize(size), 0.25)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def mask_for(size: tuple[int, int]) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    w, h = size
    mask.paste((0, 0, 0, 0), (0, 0, w, h // 3))  # the top third: the backdrop to edit
    return encoded(mask)


def least(work) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def peak_rss_mb(size_name: str) -> float:
    """VmHWM of a fresh process that makes the inputs, then finishes one strict answer."""
    code = (
        "import sys; sys.argv=['x']; from bench.finishing import one_strict; "
        f"one_strict({size_name!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["peak_mb"]


def one_strict(size_name: str) -> None:
    size = SIZES[size_name]
    source, mask = encoded(photo(size, 1)), mask_for(size)
    answer = encoded(photo(ANSWER, 2))
    before = _hwm_mb()
    finish(Finish(mask_mode="strict"), source, mask, [answer])
    print(json.dumps({"peak_mb": _hwm_mb(), "before_mb": before}))


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    rows = []
    for name, size in SIZES.items():
        source_image = photo(size, 1)
        source, mask = encoded(source_image), mask_for(size)
        answer = encoded(photo(ANSWER, 2))

        def baseline(source=source) -> None:
            with Image.open(io.BytesIO(source)) as opened:
                encoded(opened.convert("RGB"), compress_level=PNG_LEVEL)

        base = least(baseline)
        drift_only = least(lambda s=source, m=mask, a=answer: finish(Finish(), s, m, [a]))
        strict = least(
            lambda s=source, m=mask, a=answer: finish(Finish(mask_mode="strict"), s, m, [a])
        )
        sized = least(lambda s=source, a=answer: finish(Finish(size="input"), s, None, [a]))
        exif = Image.Exif()
        exif[0x0112] = 6
        jpeg = encoded(source_image, "JPEG", quality=90, exif=exif)
        turn = least(lambda j=jpeg: upright(j, "jpeg"))
        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            f.write(mask)
            f.flush()
            check = least(lambda name=f.name: mask_edit_pixels(name))
        rss = peak_rss_mb(name)
        raw_mb = size[0] * size[1] * 3 / 2**20
        rows.append((name, base, drift_only, strict, sized, turn, check, rss, raw_mb))
    print(f"answer {ANSWER[0]}x{ANSWER[1]} PNG; seconds, least of {REPEATS}; ratio = / baseline")
    print(
        f"{'input':<12} {'baseline':>9} {'drift':>14} {'strict':>14} {'size:input':>14} "
        f"{'EXIF turn':>10} {'mask check':>10} {'peak MB':>8} {'RGB MB':>7}"
    )
    for name, base, drift_s, strict_s, sized_s, turn, check, rss, raw in rows:
        print(
            f"{name:<12} {base:>9.3f} {drift_s:>7.3f} ({drift_s / base:>4.1f}x) "
            f"{strict_s:>7.3f} ({strict_s / base:>4.1f}x) "
            f"{sized_s:>7.3f} ({sized_s / base:>4.1f}x) "
            f"{turn:>10.3f} {check:>10.4f} {rss:>8.0f} {raw:>7.1f}"
        )


if __name__ == "__main__":
    main()
