"""An answer's images made into the item's outputs: drift measured against the input, then
strict compositing or the input's size when the manifest asks for them (CONTRACT section 9).

`finish` is blocking (decodes, resamples, encodes): run it in a thread. It holds the input,
its mask and one answer image decoded at a time, so n > 1 costs time, not memory.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from pipeline.core.plan import Finish
from pipeline.media.composite import (
    cover,
    encode,
    in_mode,
    keep_region,
    stretch_to,
    strict,
    work_mode,
)
from pipeline.media.drift import drift as measure_drift
from pipeline.media.images import sniff_format


@dataclass(frozen=True, slots=True)
class Finished:
    images: list[bytes]  # the files to write, one per answer image, in order
    drift: float | None  # the largest drift of the answer's images; None without a mask
    answers: list[bytes] | None = None  # strict: the model's images as they came, for review


class TooMuchDrift(ValueError):
    """The answer changed the kept region more than output.max_drift allows."""

    def __init__(self, drift: float, limit: float):
        super().__init__(
            f"the answer changed {drift:.3f} of the pixels the mask keeps (drift), more than "
            f"output.max_drift {limit:g}"
        )
        self.drift = drift
        self.limit = limit


def needs_pixels(finish: Finish, has_mask: bool) -> bool:
    """Whether finishing decodes anything: drift is measured for every masked item."""
    return has_mask or finish.size == "input"


def finish(
    settings: Finish,
    source: bytes,
    mask: bytes | None,
    answers: list[bytes],
    compression: int | None = None,
) -> Finished:
    """The outputs of one answer. Raises TooMuchDrift when an image's drift is above
    settings.max_drift (before any work on the outputs is done)."""
    if not needs_pixels(settings, mask is not None):
        return Finished(list(answers), None)
    with Image.open(io.BytesIO(source)) as opened:
        base = in_mode(opened, "RGBA" if opened.has_transparency_data else "RGB")
    keep = None if mask is None else _KEEPS.get(mask, base.size)
    strict_mode = settings.mask_mode == "strict" and keep is not None
    outputs: list[bytes] = []
    worst: float | None = None
    for data in answers:
        fmt = sniff_format(data[:16]) or "png"
        with Image.open(io.BytesIO(data)) as opened:
            answer = in_mode(opened, work_mode(base, opened, fmt))
        if keep is not None:
            scaled = stretch_to(answer, base.size)
            value = measure_drift(base, scaled, keep)
            if value is not None:
                worst = value if worst is None else max(worst, value)
                if settings.max_drift is not None and value > settings.max_drift:
                    raise TooMuchDrift(value, settings.max_drift)
            if strict_mode:
                outputs.append(
                    encode(
                        strict(base.convert(scaled.mode), scaled, keep, settings.feather_px),
                        fmt,
                        compression,
                    )
                )
                continue
        if settings.size == "input":
            outputs.append(encode(cover(answer, base.size), fmt, compression))
        else:
            outputs.append(data)
    drift = None if worst is None else round(worst, 6)
    return Finished(outputs, drift, list(answers) if strict_mode else None)


class _KeepRegions:
    """The few masks seen last, decoded into their keep regions at the inputs' sizes: a mask
    shared by a whole catalog is decoded once, not once per photo (a 1024x1024 mask costs
    about as much as the drift itself). Thread-safe: finishes run in threads."""

    def __init__(self, size: int):
        self._size = size
        # keyed by the mask's bytes themselves: their hash is computed once per bytes object
        self._regions: OrderedDict[tuple[bytes, tuple[int, int]], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, mask: bytes, size: tuple[int, int]) -> Image.Image:
        key = (mask, size)
        with self._lock:
            if key in self._regions:
                self._regions.move_to_end(key)
                return self._regions[key]
        with Image.open(io.BytesIO(mask)) as opened:
            keep = stretch_to(keep_region(opened), size)
        with self._lock:
            self._regions[key] = keep
            while len(self._regions) > self._size:
                self._regions.popitem(last=False)
        return keep


# Four regions: at 4000x3000 each is 12 MB; the usual catalog shares one mask or none.
_KEEPS = _KeepRegions(4)
