"""The one storyboard schema: clean an LLM's answer and validate it strictly.

A storyboard is a list of shots, each `{"kind", "duration", "script", "visual_prompt"}`:
kind is a `ShotKind` value, duration a number of seconds in (0, 60] (what `Shot.duration_seconds`
accepts), script what the artist says (required for A-roll), visual_prompt what the picture shows
(required for B-roll and product shots). The total must land within the target duration ± a share.

Pure: no ORM, no I/O. `parse_storyboard` returns clean shots or raises `StoryboardInvalid`,
whatever string it is given.
"""

import json
import math
import re

KINDS = ("a_roll", "b_roll", "product")  # the values of posts.models.ShotKind
KEYS = frozenset({"kind", "duration", "script", "visual_prompt"})
MAX_SHOT_SECONDS = 60  # Shot.duration_seconds <= 60 (DB constraint shot_duration_0_60)
# Shot.duration_seconds keeps 2 decimals: 0.004 would be saved as 0.00 and break the > 0 constraint.
DURATION_PLACES = 2
# Chatty answers are scanned for a JSON start this many times at most, so a huge junk answer stays cheap.
MAX_JSON_STARTS = 50

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
# Reasoning models (DeepSeek-R1 and kin) may think aloud before answering.
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_JSON_START = re.compile(r"[\[{]")


class StoryboardInvalid(ValueError):
    """The answer is not a valid storyboard. `problems` name each fault by path; `raw` is the answer as given."""

    def __init__(self, problems: list[str], raw: str = ""):
        self.problems = list(problems)
        self.raw = raw
        super().__init__("; ".join(self.problems))


def parse_storyboard(raw: str, *, target_seconds: float, tolerance: float = 0.25, max_shots: int = 40) -> list[dict]:
    """Return the storyboard in `raw` as clean shots, in order, each with all four keys.

    Accepts a bare list of shots or `{"shots": [...]}` (other top-level keys are ignored), inside
    ```json fences and/or surrounded by chatter. Strings are stripped; an optional text given as
    null reads as "". Durations come back as floats rounded to 2 decimals.
    Raises `StoryboardInvalid` listing every problem found.
    """
    if not isinstance(raw, str):
        raise StoryboardInvalid([f"response must be text, not {type(raw).__name__}"], raw=repr(raw))
    document, problem = _extract(raw)
    if problem:
        raise StoryboardInvalid([problem], raw=raw)
    problems: list[str] = []
    shots = _validate(document, max_shots=max_shots, problems=problems)
    if not problems:
        total = round(sum(s["duration"] for s in shots), DURATION_PLACES)
        low, high = target_seconds * (1 - tolerance), target_seconds * (1 + tolerance)
        if not low - 1e-9 <= total <= high + 1e-9:
            problems.append(
                f"total duration {total:.1f} s is outside {_num(low)}–{_num(high)} s (target {_num(target_seconds)} s)"
            )
    if problems:
        raise StoryboardInvalid(problems, raw=raw)
    return shots


def _num(value: float) -> str:
    return f"{round(value, 2):g}"


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float | int) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _extract(raw: str) -> tuple[object, str]:
    """Find the JSON document in an answer: (document, "") or (None, why not)."""
    text = _THINK.sub("", raw).strip()
    if not text:
        return None, "response is empty"
    candidates = [m.group(1).strip() for m in _FENCE.finditer(text)] + [text]
    first_error = ""
    for candidate in candidates:
        try:
            return json.loads(candidate), ""
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
            first_error = first_error or _json_error(error)
        found = _scan(candidate)
        if found is not None:
            return found, ""
    return None, f"response is not valid JSON: {first_error}"


def _scan(text: str):
    """The first storyboard-shaped JSON value inside chatter: a list, or an object with "shots"."""
    decoder = json.JSONDecoder()
    for attempt, match in enumerate(_JSON_START.finditer(text)):
        if attempt >= MAX_JSON_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, list) or (isinstance(value, dict) and "shots" in value):
            return value
    return None


def _json_error(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        hint = " (truncated?)" if error.pos >= len(error.doc.rstrip()) else ""
        return f"{error.msg} at line {error.lineno} column {error.colno}{hint}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error)[:200]


def _validate(document, *, max_shots: int, problems: list[str]) -> list[dict]:
    if isinstance(document, dict):
        if "shots" not in document:
            problems.append('top level must be a list of shots or an object with "shots"')
            return []
        document = document["shots"]
        if not isinstance(document, list):
            problems.append("shots must be a list")
            return []
    elif not isinstance(document, list):
        problems.append('top level must be a list of shots or an object with "shots"')
        return []
    if not document:
        problems.append("shots must not be empty")
        return []
    if len(document) > max_shots:
        # One problem, not one per shot: 10 000 shots must not make 10 000 messages.
        problems.append(f"shots has {len(document)} items, more than the limit of {max_shots}")
        return []
    return [_shot(i, item, problems) for i, item in enumerate(document)]


def _shot(i: int, item, problems: list[str]) -> dict:
    where = f"shots[{i}]"
    if not isinstance(item, dict):
        problems.append(f"{where} must be an object")
        return {}
    extra = sorted(str(k) for k in item if k not in KEYS)
    if extra:
        problems.append(f"{where}: unknown keys: {', '.join(extra)}")

    kind = item.get("kind")
    if "kind" not in item:
        problems.append(f"{where}.kind is missing")
    elif kind not in KINDS:  # `in` on a tuple of str: safe for any JSON value
        problems.append(f"{where}.kind must be one of {', '.join(KINDS)} (got {_show(kind)})")
        kind = None

    duration = item.get("duration")
    if "duration" not in item:
        problems.append(f"{where}.duration is missing")
        duration = None
    elif (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or (isinstance(duration, float) and not math.isfinite(duration))  # json reads NaN and Infinity
    ):
        problems.append(f"{where}.duration must be a number")
        duration = None
    # Compare before converting: a huge JSON integer does not fit in a float.
    elif not (duration > 0 and duration <= MAX_SHOT_SECONDS and round(float(duration), DURATION_PLACES) > 0):
        problems.append(
            f"{where}.duration must be more than 0 and at most {MAX_SHOT_SECONDS} s (got {_show(duration)})"
        )
        duration = None

    texts = {}
    for key, required_for in (("script", ("a_roll",)), ("visual_prompt", ("b_roll", "product"))):
        value = item.get(key)
        if value is None:
            value = ""  # absent or null: an LLM often writes null for the text a kind does not use
        if not isinstance(value, str):
            problems.append(f"{where}.{key} must be a string")
            value = ""
        elif kind in required_for and not value.strip():
            problems.append(f"{where}.{key} must not be empty for {kind}")
        texts[key] = value.strip()

    return {
        "kind": kind,
        "duration": round(float(duration), DURATION_PLACES) if duration is not None else 0.0,
        "script": texts["script"],
        "visual_prompt": texts["visual_prompt"],
    }
