"""Text written into images: the demo world's "class name in the picture", and the real-photo
benchmark of the recognised-text step (``laionet.method.recognised_text``).

Web images often show their own class as text (a product label, a caption burnt into the photo, a
watermark), which lets a classifier read instead of look; the TMLR version of the paper drops such
LAIONet rows (paper_spec A7). ``draw_text`` writes one word or phrase onto an image at a given size,
angle, colour and place; ``sample_style`` draws those from a seeded generator. The font is Pillow's
embedded scalable font (``ImageFont.load_default(size)``), so rendering needs no system fonts and is
the same on every machine.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Text colours (RGB) and the outline colour that goes with each (None: no outline).
PALETTE = ((255, 255, 255), (0, 0, 0), (230, 30, 30), (255, 220, 0), (20, 60, 220),
           (20, 170, 60), (255, 140, 0), (160, 40, 200))
CASES = ("lower", "title", "upper")
_CASED = dict(zip(CASES, (str.lower, str.title, str.upper)))


@dataclass(frozen=True)
class TextStyle:
    """How a text is written: font size in pixels, angle in degrees (counter-clockwise), fill and
    outline colours (outline None: none), the centre as fractions of the image (x, y), the case."""

    font_px: int
    angle: float = 0.0
    fill: tuple[int, int, int] = (255, 255, 255)
    outline: tuple[int, int, int] | None = (0, 0, 0)
    centre: tuple[float, float] = (0.5, 0.5)
    case: str = "lower"

    def as_dict(self) -> dict:
        return asdict(self)


def _layer(text: str, style: TextStyle) -> Image.Image:
    """The text alone on a transparent RGBA layer, rotated (expanded to hold it)."""
    font = ImageFont.load_default(size=max(4, int(style.font_px)))
    words = _CASED[style.case](text)  # KeyError: not one of CASES
    stroke = max(1, style.font_px // 12) if style.outline is not None else 0
    left, top, right, bottom = font.getbbox(words, stroke_width=stroke)
    pad = 2 + stroke
    layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((pad - left, pad - top), words, font=font,
                               fill=(*style.fill, 255), stroke_width=stroke,
                               stroke_fill=(*(style.outline or style.fill), 255))
    if style.angle:
        layer = layer.rotate(style.angle, expand=True, resample=Image.BICUBIC)
    return layer


def draw_text(image: Image.Image, text: str, style: TextStyle) -> Image.Image:
    """A copy of ``image`` (RGB) with ``text`` written in ``style``. The text is drawn on its own
    transparent layer, rotated about its centre and pasted so that it stays inside the image
    (its centre moves inwards when needed; text larger than the image is clipped)."""
    out, layer = image.convert("RGB"), _layer(text, style)  # convert() makes a copy
    (w, h), (lw, lh) = out.size, layer.size
    cx = min(max(style.centre[0] * w, lw / 2), w - lw / 2) if lw < w else w / 2
    cy = min(max(style.centre[1] * h, lh / 2), h - lh / 2) if lh < h else h / 2
    out.paste(layer, (round(cx - lw / 2), round(cy - lh / 2)), layer)
    return out


def sample_style(rng: np.random.Generator, image_size: tuple[int, int], *,
                 font_frac: tuple[float, float] = (0.07, 0.16),
                 angles: tuple[float, ...] = (0.0, 0.0, 0.0, 10.0, -10.0, 25.0, -25.0, 90.0),
                 outline_p: float = 0.5) -> TextStyle:
    """A random style for an image of ``image_size`` (w, h): font size a fraction ``font_frac``
    of the smaller side, one of ``angles``, a palette colour (with a contrasting outline with
    probability ``outline_p``), a centre in the middle 70 % of the image, a random case."""
    font_px = round(rng.uniform(*font_frac) * min(image_size))
    fill = PALETTE[int(rng.integers(len(PALETTE)))]
    contrast = (0, 0, 0) if sum(fill) > 380 else (255, 255, 255)
    outline = contrast if rng.uniform() < outline_p else None
    angle = float(angles[int(rng.integers(len(angles)))])
    centre = (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85)))
    return TextStyle(max(6, font_px), angle, fill, outline, centre,
                     CASES[int(rng.integers(len(CASES)))])


def text_pairs(photos: Sequence[Image.Image], words: Sequence[str], seed: int = 0,
               short_side: int = 256, **style_kw
               ) -> list[tuple[Image.Image, Image.Image, str, TextStyle]]:
    """(clean, with text, word, style) for each photo: the photo resized so its smaller side is
    ``short_side`` (stage 03's download resize), and the same photo with ``words[i % len(words)]``
    drawn in a style from ``sample_style`` (seeded by ``seed``): the benchmark of the
    recognised-text step on real photos."""
    rng = np.random.default_rng(seed)
    out = []
    for i, photo in enumerate(photos):
        im = photo.convert("RGB")
        f = short_side / min(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC)
        word, style = words[i % len(words)], sample_style(rng, im.size, **style_kw)
        out.append((im, draw_text(im, word, style), word, style))
    return out


def fitting_style(rng: np.random.Generator, text: str, size: int, *, max_frac: float = 0.34,
                  min_px: int = 8) -> TextStyle:
    """A legible style for ``text`` on a small square image of side ``size``: a palette colour
    with a contrasting outline, a small angle, a random case, the centre in the middle band, and
    the largest font up to ``max_frac`` of the side whose rotated line fits inside the image
    (never below ``min_px``: a long name on a small image may still be cut)."""
    fill = PALETTE[int(rng.integers(len(PALETTE)))]
    outline = (0, 0, 0) if sum(fill) > 380 else (255, 255, 255)
    angle = float((0.0, 0.0, 8.0, -8.0)[int(rng.integers(4))])
    centre = (0.5, float(rng.uniform(0.3, 0.7)))
    style = TextStyle(font_px=int(max_frac * size), angle=angle, fill=fill, outline=outline,
                      centre=centre, case=CASES[int(rng.integers(len(CASES)))])
    while style.font_px > min_px and _layer(text, style).width > size:
        style = replace(style, font_px=style.font_px - 1)
    return style


def write_texts(pixels: np.ndarray, texts: Sequence[str | None], rng: np.random.Generator
                ) -> np.ndarray:
    """``pixels`` [n, H, W, 3] uint8 with ``texts[i]`` written into image i (None: left as it
    is), each in a ``fitting_style``."""
    out = pixels.copy()
    for i, t in enumerate(texts):
        if t:
            style = fitting_style(rng, t, min(pixels.shape[1:3]))
            out[i] = np.asarray(draw_text(Image.fromarray(pixels[i]), t, style))
    return out
