"""Draw the small product pictures and masks that demo.yaml edits (run: python make_demo_images.py).

The generated files are committed, so a fresh clone runs the demo without this script; it is
here to show how they were made and to make them again. Flat colours keep each file a few KB.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent / "demo"
BACKDROP = (196, 190, 182)
SHADOW = (150, 144, 136)


def mug(size: int) -> tuple[Image.Image, Image.Image]:
    """A mug on a table: the picture, and its silhouette (white = the product)."""
    shape = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(shape)
    s = size / 512
    draw.rounded_rectangle((150 * s, 140 * s, 330 * s, 380 * s), radius=24 * s, fill=255)
    draw.ellipse((300 * s, 190 * s, 400 * s, 320 * s), outline=255, width=round(26 * s))
    picture = _staged(size, shape, (38, 92, 160))
    ImageDraw.Draw(picture).rectangle((150 * s, 170 * s, 330 * s, 190 * s), fill=(240, 240, 236))
    return picture, shape


def sneaker(size: int) -> tuple[Image.Image, Image.Image]:
    shape = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(shape)
    s = size / 512
    draw.polygon(
        [
            (90 * s, 330 * s),
            (110 * s, 220 * s),
            (230 * s, 200 * s),
            (300 * s, 260 * s),
            (420 * s, 290 * s),
            (430 * s, 340 * s),
            (90 * s, 350 * s),
        ],
        fill=255,
    )
    picture = _staged(size, shape, (210, 60, 50))
    ImageDraw.Draw(picture).rectangle((90 * s, 335 * s, 430 * s, 350 * s), fill=(245, 245, 245))
    return picture, shape


def lamp(size: int) -> tuple[Image.Image, Image.Image]:
    shape = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(shape)
    s = size / 512
    draw.polygon(
        [(180 * s, 120 * s), (330 * s, 120 * s), (370 * s, 230 * s), (140 * s, 230 * s)], fill=255
    )
    draw.rectangle((245 * s, 230 * s, 265 * s, 370 * s), fill=255)
    draw.ellipse((190 * s, 360 * s, 320 * s, 395 * s), fill=255)
    return _staged(size, shape, (230, 190, 70)), shape


def cup(size: int) -> tuple[Image.Image, Image.Image]:
    shape = Image.new("L", (size, size), 0)
    s = size / 256
    ImageDraw.Draw(shape).polygon(
        [(80 * s, 90 * s), (176 * s, 90 * s), (160 * s, 190 * s), (96 * s, 190 * s)], fill=255
    )
    return _staged(size, shape, (90, 150, 90)), shape


def vase(size: int) -> tuple[Image.Image, Image.Image]:
    shape = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(shape)
    s = size / 256
    draw.ellipse((78 * s, 100 * s, 178 * s, 200 * s), fill=255)
    draw.rectangle((112 * s, 60 * s, 144 * s, 120 * s), fill=255)
    return _staged(size, shape, (120, 80, 150)), shape


def _staged(size: int, shape: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """The product in `colour` over a flat backdrop, with a soft floor shadow."""
    picture = Image.new("RGB", (size, size), BACKDROP)
    s = size / 512
    ImageDraw.Draw(picture).ellipse((70 * s, 360 * s, 450 * s, 420 * s), fill=SHADOW)
    picture.paste(colour, (0, 0), shape)
    return picture


def main() -> None:
    for folder in ("images", "masks", "shelf"):
        (HERE / folder).mkdir(parents=True, exist_ok=True)

    picture, shape = mug(512)
    picture.save(HERE / "images" / "mug.png", optimize=True)
    # A mask with an alpha channel: transparent where the backdrop is (edit), opaque on the mug.
    alpha_mask = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    alpha_mask.putalpha(shape)
    alpha_mask.save(HERE / "masks" / "mug.png", optimize=True)

    picture, shape = sneaker(512)
    picture.save(HERE / "images" / "sneaker.jpg", quality=80)
    # A black-and-white mask without alpha: white = edit here (the backdrop), black = keep.
    Image.eval(shape, lambda v: 255 - v).convert("1").save(HERE / "masks" / "sneaker.png")

    picture, _ = lamp(512)
    picture.save(HERE / "images" / "lamp.webp", quality=80)

    for name, draw in (("cup", cup), ("vase", vase)):
        picture, _ = draw(256)
        picture.save(HERE / "shelf" / f"{name}.jpg", quality=80)


if __name__ == "__main__":
    main()
