"""A contact sheet: a PNG grid of rows' thumbnails, each with its caption and why it was kept or
dropped under it (``curate show --open``)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from curate.imaging.thumbnail import THUMBNAIL_SIDE
from curate.stats.show_rows import ShownRow

COLUMNS = 5  # tiles per row of the sheet
PAD = 6
LINE = 14  # pixels per text line (the default font at 11 px)
TEXT_LINES = 3  # caption (two lines), then the verdict
TILE_W = THUMBNAIL_SIDE + 2 * PAD + 32  # a little wider than the picture: captions get ~27 characters a line
TILE_H = PAD + THUMBNAIL_SIDE + PAD + TEXT_LINES * LINE + PAD
BACKGROUND = (255, 255, 255)
NO_IMAGE = (200, 200, 200)  # the tile of a row with no picture (a dropped row the ledger kept none of)
TEXT = (20, 20, 20)
DROPPED = (170, 30, 30)


def contact_sheet(rows: list[ShownRow], thumbnails: dict[str, bytes]) -> bytes:
    """The PNG of ``rows`` in order, ``COLUMNS`` a line; ``thumbnails`` maps a uid to a JPEG (a
    kept row's from its shard, a dropped row's from the ledger); a row without one is a grey tile."""
    columns = max(1, min(COLUMNS, len(rows)))
    lines = max(1, -(-len(rows) // columns))
    sheet = Image.new("RGB", (columns * TILE_W, lines * TILE_H), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for index, row in enumerate(rows):
        x, y = (index % columns) * TILE_W, (index // columns) * TILE_H
        _picture(sheet, draw, font, thumbnails.get(row.uid), x + (TILE_W - THUMBNAIL_SIDE) // 2, y + PAD)
        text_y = y + PAD + THUMBNAIL_SIDE + PAD
        width = TILE_W - 2 * PAD
        caption = _wrap(draw, font, " ".join((row.caption or "(no caption)").split()), width, 2)
        for line_index, line in enumerate(caption):
            draw.text((x + PAD, text_y + line_index * LINE), line, fill=TEXT, font=font)
        verdict = "kept" if row.kept else f"{row.stage}: {row.reason}"
        if draw.textlength(verdict, font=font) > width and not row.kept:
            verdict = row.reason  # the reason says more than the stage's name
        draw.text((x + PAD, text_y + 2 * LINE), _fit(draw, font, verdict, width), fill=TEXT if row.kept else DROPPED,
                  font=font)
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def tile_centre(index: int, count: int) -> tuple[int, int]:
    """The pixel at the centre of the picture area of tile ``index`` of a sheet of ``count`` rows."""
    columns = max(1, min(COLUMNS, count))
    x, y = (index % columns) * TILE_W, (index // columns) * TILE_H
    return x + TILE_W // 2, y + PAD + THUMBNAIL_SIDE // 2


def _picture(sheet: Image.Image, draw: ImageDraw.ImageDraw, font, jpeg: bytes | None, x: int, y: int) -> None:
    """The thumbnail centred in its square; a grey square saying "no image" where there is none."""
    if jpeg is None:
        draw.rectangle((x, y, x + THUMBNAIL_SIDE - 1, y + THUMBNAIL_SIDE - 1), fill=NO_IMAGE)
        draw.text((x + THUMBNAIL_SIDE // 2, y + THUMBNAIL_SIDE - 2 * LINE), "no image", fill=TEXT, font=font, anchor="mm")
        return
    with Image.open(io.BytesIO(jpeg)) as image:
        image = image.convert("RGB")
        # Fit the square both ways: a run's 32 px shard images are unreadable at their own size.
        scale = THUMBNAIL_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
        sheet.paste(image, (x + (THUMBNAIL_SIDE - image.width) // 2, y + (THUMBNAIL_SIDE - image.height) // 2))


def _wrap(draw: ImageDraw.ImageDraw, font, text: str, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``max_lines``; the last line ends in an ellipsis if text is left over."""
    lines: list[str] = []
    words = text.split(" ")
    while words and len(lines) < max_lines:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line = f"{line} {words.pop(0)}"
        lines.append(line)
    if words:
        lines[-1] += " " + " ".join(words)
    return [_fit(draw, font, line, width) for line in lines]


def _fit(draw: ImageDraw.ImageDraw, font, text: str, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
