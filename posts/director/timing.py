"""The "editor": how long a line takes to say, and how long the cutaways around it last.

Estimates stand in until real TTS durations replace them. Pure: no ORM, no I/O.
"""

import re
from decimal import ROUND_HALF_UP, Decimal

# Mandarin news and short-video narration runs at about 240-300 characters a minute: ~4.5 a second.
CJK_CHARS_PER_SECOND = 4.5
# English narration at ~155 words a minute (2.6 words a second); other Latin-script words count the same.
LATIN_WORDS_PER_SECOND = 2.6
# A breath at each sentence end (。！？.!?…), a shorter one at each clause break (，、,;；:：).
SENTENCE_PAUSE_SECONDS = 0.25
CLAUSE_PAUSE_SECONDS = 0.1
# No line is shorter than a cut a viewer can follow, nor longer than a shot may be (Shot.duration_seconds <= 60).
MIN_LINE_SECONDS = 1.0
MAX_LINE_SECONDS = 60.0
# Cutaways (B-roll, product) shorter than 2 s flicker; longer than 8 s drag.
MIN_CUTAWAY_SECONDS = 2.0
MAX_CUTAWAY_SECONDS = 8.0

# Han ideographs (with extension A and compatibility), kana and Hangul: one spoken syllable each.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
# A Latin-script word or number; "don't", "well-known" and "3.5" are one word each.
_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+(?:['’.\-][0-9A-Za-z\u00c0-\u024f]+)*")
# A run of sentence-end marks is one pause ("?!", "..."); a full stop inside "3.5" is not one.
_SENTENCE_END = re.compile(r"[。！？!?…]+|\.+(?![0-9A-Za-z])")
_CLAUSE_BREAK = re.compile(r"[，、,;；:：]+")


def _tenths(value: float) -> float:
    """Round half up to 0.1 s (round() would send 2.25 to 2.2)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def speaking_seconds(text: str) -> float:
    """Seconds the artist needs to say `text`: between 1.0 and 60.0, rounded to 0.1 s.

    Chinese (and other CJK) characters and Latin-script words are counted separately,
    so mixed lines ("这款 serum 很好用") are timed part by part.
    """
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    pauses = SENTENCE_PAUSE_SECONDS * len(_SENTENCE_END.findall(text)) + CLAUSE_PAUSE_SECONDS * len(
        _CLAUSE_BREAK.findall(text)
    )
    seconds = cjk / CJK_CHARS_PER_SECOND + words / LATIN_WORDS_PER_SECOND + pauses
    return min(MAX_LINE_SECONDS, _tenths(max(MIN_LINE_SECONDS, seconds)))


def _has_script(shot: dict) -> bool:
    script = shot.get("script")
    return isinstance(script, str) and bool(script.strip())


def fit_durations(shots: list[dict], target_seconds: float) -> list[dict]:
    """Return copies of `shots` whose cutaways share the time the spoken lines leave, so the total nears the target.

    Shots with a script keep their duration (or get `speaking_seconds(script)` when they have none).
    Shots without one (B-roll, product) split the rest evenly, to 0.1 s, each clamped to 2-8 s:
    the total hits the target exactly when the clamps allow, and stays as near as they let it otherwise.
    """
    fitted = [dict(shot) for shot in shots]
    spoken = 0.0
    cutaways = []
    for shot in fitted:
        if _has_script(shot):
            if not isinstance(shot.get("duration"), int | float) or isinstance(shot.get("duration"), bool):
                shot["duration"] = speaking_seconds(shot["script"])
            spoken += shot["duration"]
        else:
            cutaways.append(shot)
    if not cutaways:
        return fitted
    # Work in tenths of a second so the shares add up exactly: the first ones take the leftover tenths.
    left = max(0, round((target_seconds - spoken) * 10))
    share, leftover = divmod(left, len(cutaways))
    low, high = round(MIN_CUTAWAY_SECONDS * 10), round(MAX_CUTAWAY_SECONDS * 10)
    for i, shot in enumerate(cutaways):
        tenths = share + (1 if i < leftover else 0)
        shot["duration"] = min(high, max(low, tenths)) / 10
    return fitted
