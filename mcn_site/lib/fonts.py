"""The CJK-capable font shared by the video render (burned-in captions) and Pillow title cards.

Chinese text drawn with a Latin-only font comes out as tofu boxes, so both places ask here:
`MCN_FONT_FILE` when set, else a font the machine already has (Debian `fonts-noto-cjk`, WenQuanYi,
macOS PingFang, ...) or that fontconfig offers for simplified Chinese, else Noto Sans CJK from the
`manimgx-fonts-cjk` wheel in requirements.txt, so a fresh machine renders Chinese without root.
`MCN_SYSTEM_FONTS=0` skips the machine's fonts (the same captions on every worker).
"""

import functools
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import ImageFont

KNOWN_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian/Ubuntu fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch, Alpine
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",  # macOS
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",  # Windows: Microsoft YaHei
)

# In a collection (.ttc) the simplified-Chinese face is preferred: the same code points have
# region-specific glyph shapes, and the first face of Noto's collection is the Japanese one.
_PREFERRED_FACE_MARKS = (" SC", " CN", " GB", "SC ", "Simplified")


# The bundled font: Noto Sans CJK (SIL Open Font License 1.1, its licence in the wheel's dist-info).
BUNDLED_PACKAGE, BUNDLED_FILE = "manimgx_fonts_cjk", "NotoSansCJK-VF.otf.ttc"


def cjk_font() -> Path | None:
    """The font file to draw Chinese text with, or None when there is none at all.

    `MCN_FONT_FILE` (setting or environment) wins and must point at an existing file. The machine's
    own fonts come next: they are static Regular faces, which libass draws at their real weight (it
    draws a variable font such as the bundled one at its default, light, weight).
    """
    configured = str(getattr(settings, "MCN_FONT_FILE", "") or "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ImproperlyConfigured(f"MCN_FONT_FILE={configured!r} is not a font file on this machine.")
        return path
    if getattr(settings, "MCN_SYSTEM_FONTS", True):
        for candidate in KNOWN_FONTS:
            path = Path(candidate)
            if path.is_file():
                return path
        found = _fontconfig_font()
        if found:
            return found
    return bundled_font()


def bundled_font() -> Path | None:
    """Noto Sans CJK from the font wheel in requirements.txt, or None when the wheel is not installed."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for folder in (spec and spec.submodule_search_locations) or []:
        path = Path(folder) / BUNDLED_FILE
        if path.is_file():
            return path
    return None


def _fontconfig_font() -> Path | None:
    fc_match = shutil.which("fc-match")
    if not fc_match:
        return None
    try:
        answer = subprocess.run(  # noqa: S603 - fixed arguments, binary found on PATH
            [fc_match, "-f", "%{file}\\n%{lang}", "sans:lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found, _, languages = answer.partition("\n")
    # fc-match always answers (DejaVu when the machine has no CJK font): keep it only if it covers zh-cn.
    if found and "zh-cn" in languages.split("|") and Path(found).is_file():
        return Path(found)
    return None


@functools.lru_cache(maxsize=16)
def _faces(path: str) -> tuple[str, ...]:
    families = []
    for index in range(64):  # collections hold a handful of faces; stop at the first missing index
        try:
            families.append(ImageFont.truetype(path, 16, index=index).getname()[0] or "")
        except OSError:
            break
    if not families:
        raise OSError(f"{path} is not a font file Pillow can read")
    return tuple(families)


def face_index(path: Path | str) -> int:
    """Which face of the file to use: the simplified-Chinese one in a collection, else the first."""
    families = _faces(str(path))
    for index, family in enumerate(families):
        if any(mark in family for mark in _PREFERRED_FACE_MARKS):
            return index
    return 0


def font_family(path: Path | str) -> str:
    """The family name libass and fontconfig know the font by (e.g. "Noto Sans CJK SC")."""
    return _faces(str(path))[face_index(path)]


def load_font(size: int, path: Path | str | None = None) -> ImageFont.FreeTypeFont:
    """A Pillow font of `size` pixels from `path` (default: cjk_font()), the right face of a collection.

    Falls back to Pillow's built-in font (Latin only) when the machine has no CJK font at all.
    """
    path = path or cjk_font()
    if path is None:
        return ImageFont.load_default(size)
    font = ImageFont.truetype(str(path), size, index=face_index(path))
    _regular_weight(font)
    return font


def _regular_weight(font: ImageFont.FreeTypeFont) -> None:
    """A variable font (the bundled Noto Sans CJK) starts at its lightest weight: draw at Regular (400)."""
    try:
        axes = font.get_variation_axes()
    except OSError:  # a static font: nothing to choose
        return
    weights = []
    for axis in axes:
        is_weight = axis["name"] in (b"Weight", "Weight")
        weights.append(min(max(400, axis["minimum"]), axis["maximum"]) if is_weight else axis["default"])
    font.set_variation_by_axes(weights)


_TOKENS = re.compile(r"\s+|[0-9A-Za-z\u00c0-\u024f'’.,!?;:%&@#$\-]+|.", re.DOTALL)
_NO_LINE_START = set("，。、！？；：）」』》〉】”’,.!?;:)%")


def wrap(text: str, font, max_width: int) -> list[str]:
    """Lines no wider than max_width (measured with the real font), balanced in width.

    Breaks between any two CJK characters and between Latin words, never before closing
    punctuation (libass only breaks at spaces, and Chinese has none). Captions and title cards.
    """
    lines = []
    for paragraph in text.splitlines() or [""]:
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        tokens = _TOKENS.findall(paragraph)
        greedy = _greedy(tokens, font, max_width)
        if len(greedy) == 1:
            lines.extend(greedy)
            continue
        # Balance: the narrowest width that still needs no more lines than the greedy wrap.
        low, high = 1, max_width
        best = greedy
        while low <= high:
            middle = (low + high) // 2
            attempt = _greedy(tokens, font, middle)
            if len(attempt) <= len(greedy):
                best, high = attempt, middle - 1
            else:
                low = middle + 1
        lines.extend(best)
    return lines


def _greedy(tokens: list[str], font, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for token in tokens:
        candidate = current + token
        if current and font.getlength(candidate.rstrip()) > width and not token.isspace():
            if token[0] in _NO_LINE_START:  # keep "，" with the character before it
                current = candidate
                continue
            lines.append(current.rstrip())
            current = token
        else:
            current = candidate if (current or not token.isspace()) else ""
    if current.strip():
        lines.append(current.rstrip())
    return lines
