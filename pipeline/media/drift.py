"""Drift: how much the model changed what the mask told it to keep.

The mean absolute difference between the input and the answer (scaled to the input's size),
0..1 over the R, G and B channels, over the pixels the mask keeps, measured before any
compositing. 0 means the kept region came back untouched; 0.05 is a visible change of a
product's texture or lettering; a repainted photo is typically 0.15 and above.
"""

from __future__ import annotations

from PIL import Image, ImageChops, ImageStat

from pipeline.media.composite import in_mode


def drift(source: Image.Image, answer: Image.Image, keep: Image.Image) -> float | None:
    """Mean |source - answer| over the kept pixels (keep: L, nonzero = kept), 0..1; None when
    the mask keeps no pixel. `answer` must have the source's size."""
    if source.size != answer.size or keep.size != source.size:
        raise ValueError(
            f"drift needs images of one size: source {source.size}, answer {answer.size}, "
            f"mask {keep.size}"
        )
    kept = keep.size[0] * keep.size[1] - keep.histogram()[0]
    if kept == 0:
        return None
    diff = ImageChops.difference(in_mode(source, "RGB"), in_mode(answer, "RGB"))
    total = sum(ImageStat.Stat(diff, mask=keep).sum)
    return total / (3 * 255 * kept)
