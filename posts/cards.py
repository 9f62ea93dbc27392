"""Title cards for animatics: a shot without a picture still gets a frame worth watching.

The card shows the shot's words on the artist's colour, its kind, and for A-roll the artist's face
anchor as an inset, so a storyboard can be watched (and reviewed) before any GPU is involved.
Cards are cached by content under MEDIA_ROOT/posts/cards/: the same shot draws once.
"""

import hashlib
from pathlib import Path

from django.conf import settings
from PIL import Image, ImageColor, ImageDraw, ImageOps

from mcn_site.lib.fonts import load_font, wrap
from posts.models import Shot, ShotKind

FALLBACK_COLOUR = "#334155"


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in colour)


def card_text(shot: Shot) -> str:
    return (shot.script if shot.kind == ShotKind.A_ROLL else shot.visual_prompt or shot.script).strip()


def title_card(shot: Shot, *, size: tuple[int, int]) -> Path:
    """The card for this shot at `size`, drawn once per content (returns its path under MEDIA_ROOT)."""
    artist = shot.post.artist
    face = artist.face_anchor.name if shot.kind == ShotKind.A_ROLL and artist.face_anchor else ""
    text = card_text(shot)
    key = hashlib.sha256(
        repr((text, shot.kind, shot.position, artist.colour, artist.stage_name, face, size)).encode()
    ).hexdigest()[:20]
    path = Path(settings.MEDIA_ROOT) / "posts" / "cards" / f"card-{key}.png"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    image = _draw(shot, text=text, face=face, size=size)
    partial = path.with_suffix(".part.png")
    image.save(partial, "PNG", optimize=False)
    partial.replace(path)  # atomic: two renders drawing the same card never read half a file
    return path


def _draw(shot: Shot, *, text: str, face: str, size: tuple[int, int]) -> Image.Image:
    width, height = size
    try:
        base = ImageColor.getrgb(shot.post.artist.colour or FALLBACK_COLOUR)
    except ValueError:
        base = ImageColor.getrgb(FALLBACK_COLOUR)
    image = Image.new("RGB", size, _shade(base, 0.35))
    draw = ImageDraw.Draw(image)
    # A soft vertical gradient from the artist's colour to near-black.
    top, bottom = _shade(base, 0.9), _shade(base, 0.2)
    for y in range(0, height, 4):
        t = y / max(1, height - 1)
        draw.rectangle([0, y, width, y + 4], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    unit = min(width, height)
    margin = int(unit * 0.08)
    y = int(height * 0.12)
    if face:
        inset = int(unit * 0.34)
        with Image.open(Path(settings.MEDIA_ROOT) / face) as source:
            portrait = ImageOps.fit(source.convert("RGB"), (inset, inset))
        mask = Image.new("L", (inset, inset), 0)
        ImageDraw.Draw(mask).ellipse([0, 0, inset, inset], fill=255)
        ring = int(unit * 0.012)
        x = (width - inset) // 2
        draw.ellipse([x - ring, y - ring, x + inset + ring, y + inset + ring], fill=(255, 255, 255))
        image.paste(portrait, (x, y), mask)
        y += inset + int(unit * 0.08)
    label_font = load_font(int(unit * 0.035))
    label = f"{shot.position} · {shot.get_kind_display()}"
    draw.text((margin, margin), label, font=label_font, fill=(255, 255, 255, 200))
    body_font = load_font(int(unit * 0.065))
    lines = wrap(text, body_font, width - 2 * margin) or [""]
    line_height = int(unit * 0.065 * 1.35)
    room = (height - margin - y) // line_height
    if len(lines) > room:
        lines = [*lines[: max(0, room - 1)], lines[max(0, room - 1)][:-1] + "…"]
    block = line_height * len(lines)
    y = max(y, (height - block) // 2 if not face else y)
    for line in lines:
        line_width = body_font.getlength(line)
        draw.text(((width - line_width) / 2, y), line, font=body_font, fill=(255, 255, 255))
        y += line_height
    name_font = load_font(int(unit * 0.04))
    name = shot.post.artist.stage_name
    draw.text(
        ((width - name_font.getlength(name)) / 2, height - margin - int(unit * 0.05)), name, font=name_font, fill=top
    )
    return image
