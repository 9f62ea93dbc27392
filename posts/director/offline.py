"""The offline director: a deterministic, rule-based storyboard for when no LLM key is configured.

The brief's sentences become A-roll lines (timed by `speaking_seconds`); B-roll cutaways built from
the artist's keywords (or the brief's own words) go between them; lines stop near the target.
Same input, same output. Pure: no ORM, no I/O. The result passes `parse_storyboard`.
"""

import json
import re
from collections.abc import Sequence

from posts.director.schema import parse_storyboard
from posts.director.timing import MAX_CUTAWAY_SECONDS, MIN_CUTAWAY_SECONDS, fit_durations, speaking_seconds

# A line longer than this is cut at its commas: one breath per shot reads better on a phone.
MAX_LINE_SECONDS = 12.0
MAX_SHOTS = 40  # parse_storyboard's default limit
TOLERANCE = 0.25  # parse_storyboard's default: the total may be off the target by a quarter
# Image models are prompted in English whatever the language of the brief.
B_ROLL_PROMPT = "Vertical cinematic B-roll of {topic}, natural light, shallow depth of field, no text"
A_ROLL_PROMPT = "{artist} speaking to camera, medium close-up"

# Sentence ends: Chinese marks, English marks (a full stop only before a space or the end: not "3.5"), newlines.
_SENTENCE = re.compile(r"[^。！？!?…\n]+?(?:[。！？!?…]+|\.+(?=\s|$)|(?=\n)|$)", re.DOTALL)
_CLAUSE = re.compile(r"[^，、,;；]+[，、,;；]*")
_EDGE_JUNK = " \t\r\n\"'“”‘’「」『』-*•·>#"
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
# Words too common to picture: never a B-roll topic.
_STOPWORDS = frozenset(
    """
    about above after again also because been before being below between both could does doing down during
    each every from further have having here into just like more most much must only other over really same
    should some such than that their them then there these they this those through today under until very
    want we'll we're what when where which while will with would your you're yours let's going thing things
    know make made good great start first second third finally never even still always simple
    """.split()  # noqa: SIM905 (a word list reads better as prose)
)


def offline_storyboard(
    brief: str,
    *,
    artist_name: str,
    keywords: Sequence[str],
    target_seconds: float = 30,
    locked: Sequence[dict] = (),
) -> list[dict]:
    """Return new shots (kind, duration, script, visual_prompt) for the slots around `locked`.

    `target_seconds` is the time the new shots should fill (the caller has taken the locked shots'
    time off already). Lines a locked shot already says are not said twice.
    Raises ValueError, with a message a producer can act on, when the brief gives nothing to say.
    """
    if not isinstance(brief, str) or not brief.strip():
        raise ValueError("The post has no brief: write a sentence or two of what the artist should say, then retry.")
    lines = _lines(brief)
    if not lines:
        raise ValueError(
            "The brief has nothing to say, only punctuation: write what the artist should say, then retry."
        )
    already_said = {_normal(shot.get("script") or "") for shot in locked}
    lines = [line for line in lines if _normal(line) not in already_said]
    if not lines:
        raise ValueError(
            "Every sentence of the brief is already in a locked shot: add new sentences to the brief "
            "or unlock a shot, then retry."
        )
    topics = _topics(brief, keywords)

    chosen: list[dict] = []
    spoken = 0.0
    for line in lines:
        seconds = speaking_seconds(line)
        if chosen and (spoken + seconds > target_seconds or len(chosen) >= MAX_SHOTS // 2):
            break  # near the target: the rest of the brief is left unsaid
        chosen.append({"kind": "a_roll", "duration": seconds, "script": line, "visual_prompt": ""})
        spoken += seconds
    if spoken > target_seconds * (1 + TOLERANCE):
        raise ValueError(
            f"The brief's first sentence takes {spoken:.1f} s to say, more than the {target_seconds:g} s left "
            "for new shots: shorten it, or unlock some shots."
        )
    for shot in chosen:
        shot["visual_prompt"] = A_ROLL_PROMPT.format(artist=artist_name.strip() or "The artist")

    cutaways = _cutaway_count(spoken=spoken, lines=len(chosen), target_seconds=target_seconds)
    # Spread the cutaways evenly: after line 0, then every len/cutaways lines.
    after = [0] * len(chosen)
    for k in range(cutaways):
        after[(k * len(chosen)) // cutaways] += 1
    shots: list[dict] = []
    used = 0
    for line, count in zip(chosen, after, strict=True):
        shots.append(line)
        for _ in range(count):
            topic = topics[used % len(topics)]
            shots.append(
                {"kind": "b_roll", "duration": None, "script": "", "visual_prompt": B_ROLL_PROMPT.format(topic=topic)}
            )
            used += 1
    shots = fit_durations(shots, target_seconds)
    # The same rules as an LLM's answer: fail here, loudly, rather than save a storyboard the schema refuses.
    return parse_storyboard(json.dumps(shots), target_seconds=target_seconds, tolerance=TOLERANCE, max_shots=MAX_SHOTS)


def _cutaway_count(*, spoken: float, lines: int, target_seconds: float) -> int:
    """How many cutaways bring the total nearest the target; of equally near counts, the one nearest one per line."""

    def total(count: int) -> float:
        if not count:
            return spoken
        share = min(MAX_CUTAWAY_SECONDS, max(MIN_CUTAWAY_SECONDS, (target_seconds - spoken) / count))
        return spoken + share * count

    return min(
        range(MAX_SHOTS - lines + 1),
        key=lambda count: (round(abs(total(count) - target_seconds), 1), abs(count - lines)),
    )


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(_EDGE_JUNK + "。！？!?.…，,").lower()


def _lines(brief: str) -> list[str]:
    """The brief's sentences, long ones cut at their commas, without bullets, quotes or empty bits."""
    lines = []
    for match in _SENTENCE.finditer(brief):
        sentence = re.sub(r"\s+", " ", match.group()).strip(_EDGE_JUNK)
        if not sentence or _ONLY_PUNCTUATION.match(sentence):
            continue
        if speaking_seconds(sentence) <= MAX_LINE_SECONDS:
            lines.append(sentence)
            continue
        # Greedily pack clauses into lines of at most MAX_LINE_SECONDS (a single long clause stays whole).
        current = ""
        for clause in _CLAUSE.findall(sentence):
            joined = f"{current} {clause}".strip() if current and clause[:1].isascii() else current + clause
            if current and speaking_seconds(joined) > MAX_LINE_SECONDS:
                lines.append(current.strip())
                current = clause.strip()
            else:
                current = joined
        if current.strip():
            lines.append(current.strip())
    return lines


def _topics(brief: str, keywords: Sequence[str]) -> list[str]:
    """What the cutaways show: the artist's keywords, else the brief's longer words, else the brief itself."""
    chosen = [k.strip() for k in keywords if isinstance(k, str) and k.strip()]
    if not chosen:
        words = [w for w in _LATIN_WORD.findall(brief) if w.lower() not in _STOPWORDS]
        words += _CJK_RUN.findall(brief)
        chosen = [w[:24] for w in words]
    if not chosen:
        chosen = [re.sub(r"\s+", " ", brief).strip()[:60]]
    return list(dict.fromkeys(chosen))  # unique, in order of appearance
