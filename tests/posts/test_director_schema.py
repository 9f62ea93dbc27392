import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posts.director.schema import StoryboardInvalid, parse_storyboard

GOOD = [
    {"kind": "a_roll", "duration": 4, "script": "今天聊聊护肤。", "visual_prompt": ""},
    {"kind": "b_roll", "duration": 6.5, "visual_prompt": "serum bottle on marble"},
    {"kind": "product", "duration": 5, "script": "", "visual_prompt": "close-up of the jar"},
    {"kind": "a_roll", "duration": 14.5, "script": "Try it tonight."},
]  # 30 s


def problems_of(raw: str, **kwargs) -> list[str]:
    kwargs.setdefault("target_seconds", 30)
    with pytest.raises(StoryboardInvalid) as caught:
        parse_storyboard(raw, **kwargs)
    return caught.value.problems


def doc(*changes: tuple[int, str, object], shots=None) -> str:
    """GOOD with shots[i][key] = value for each change (value ... deletes the key)."""
    shots = [dict(s) for s in (shots if shots is not None else GOOD)]
    for i, key, value in changes:
        if value is ...:
            shots[i].pop(key, None)
        else:
            shots[i][key] = value
    return json.dumps({"shots": shots}, ensure_ascii=False)


def test_valid_storyboard_comes_back_clean_with_all_four_keys():
    shots = parse_storyboard(json.dumps({"shots": GOOD}), target_seconds=30)

    assert shots == [
        {"kind": "a_roll", "duration": 4.0, "script": "今天聊聊护肤。", "visual_prompt": ""},
        {"kind": "b_roll", "duration": 6.5, "script": "", "visual_prompt": "serum bottle on marble"},
        {"kind": "product", "duration": 5.0, "script": "", "visual_prompt": "close-up of the jar"},
        {"kind": "a_roll", "duration": 14.5, "script": "Try it tonight.", "visual_prompt": ""},
    ]


def test_bare_list_is_accepted():
    assert len(parse_storyboard(json.dumps(GOOD), target_seconds=30)) == 4


def test_fenced_json_with_chatter_around_it_is_accepted():
    raw = "Sure! Here is your storyboard:\n```json\n" + json.dumps({"shots": GOOD}) + "\n```\nHope this helps."

    assert len(parse_storyboard(raw, target_seconds=30)) == 4


def test_chatty_json_without_fences_is_accepted():
    raw = "Here [draft 2] is the plan: " + json.dumps(GOOD) + " Let me know if you want changes!"

    assert len(parse_storyboard(raw, target_seconds=30)) == 4


def test_reasoning_before_the_answer_is_ignored():
    raw = "<think>The user wants [30 s]; {maybe} four shots.</think>\n" + json.dumps({"shots": GOOD})

    assert len(parse_storyboard(raw, target_seconds=30)) == 4


def test_strings_are_stripped_and_null_text_reads_as_empty():
    shots = parse_storyboard(doc((0, "script", "  Hi there.  "), (0, "visual_prompt", None)), target_seconds=30)

    assert shots[0]["script"] == "Hi there."
    assert shots[0]["visual_prompt"] == ""


def test_durations_are_rounded_to_two_decimals():
    shots = parse_storyboard(doc((0, "duration", 3.996), (3, "duration", 14.504)), target_seconds=30)

    assert [s["duration"] for s in shots] == [4.0, 6.5, 5.0, 14.5]


def test_invalid_keeps_the_raw_text_for_staff():
    raw = "I cannot help with that."
    with pytest.raises(StoryboardInvalid) as caught:
        parse_storyboard(raw, target_seconds=30)

    assert caught.value.raw == raw
    assert caught.value.problems[0].startswith("response is not valid JSON: ")
    assert str(caught.value) == "; ".join(caught.value.problems)


def test_empty_response_is_invalid():
    assert problems_of("  \n ") == ["response is empty"]


def test_truncated_json_is_invalid_and_says_so():
    raw = json.dumps({"shots": GOOD})[:-30]

    [problem] = problems_of(raw)

    assert problem.startswith("response is not valid JSON: ")
    assert problem.endswith("(truncated?)")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("42", 'top level must be a list of shots or an object with "shots"'),
        ('{"storyboard": []}', 'top level must be a list of shots or an object with "shots"'),
        ('{"shots": "four"}', "shots must be a list"),
        ('{"shots": []}', "shots must not be empty"),
        ('{"shots": [3]}', "shots[0] must be an object"),
    ],
)
def test_wrong_top_level_shape_is_named(raw, problem):
    assert problems_of(raw) == [problem]


def test_unknown_keys_are_listed_by_shot():
    assert problems_of(doc((0, "foo", 1), (0, "camera", "wide"))) == ["shots[0]: unknown keys: camera, foo"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ((3, "duration", "4"), "shots[3].duration must be a number"),
        ((3, "duration", None), "shots[3].duration must be a number"),
        ((3, "duration", True), "shots[3].duration must be a number"),
        ((3, "duration", ...), "shots[3].duration is missing"),
        ((3, "duration", 0), "shots[3].duration must be more than 0 and at most 60 s (got 0)"),
        ((3, "duration", -2.5), "shots[3].duration must be more than 0 and at most 60 s (got -2.5)"),
        ((3, "duration", 0.004), "shots[3].duration must be more than 0 and at most 60 s (got 0.004)"),
        ((3, "duration", 61), "shots[3].duration must be more than 0 and at most 60 s (got 61)"),
        ((1, "kind", "talking"), 'shots[1].kind must be one of a_roll, b_roll, product (got "talking")'),
        ((1, "kind", ...), "shots[1].kind is missing"),
        ((0, "script", 7), "shots[0].script must be a string"),
        ((0, "script", "   "), "shots[0].script must not be empty for a_roll"),
        ((3, "script", ...), "shots[3].script must not be empty for a_roll"),
        ((1, "visual_prompt", ""), "shots[1].visual_prompt must not be empty for b_roll"),
        ((2, "visual_prompt", None), "shots[2].visual_prompt must not be empty for product"),
        ((2, "visual_prompt", ["jar"]), "shots[2].visual_prompt must be a string"),
    ],
)
def test_each_field_problem_is_named_by_path(change, problem):
    assert problems_of(doc(change)) == [problem]


def test_non_finite_duration_is_not_a_number():
    raw = doc().replace('"duration": 4', '"duration": NaN', 1)

    assert problems_of(raw) == ["shots[0].duration must be a number"]


def test_huge_integer_duration_is_out_of_range_not_a_crash():
    raw = doc().replace('"duration": 4', '"duration": ' + "9" * 400, 1)

    [problem] = problems_of(raw)

    assert problem.startswith("shots[0].duration must be more than 0 and at most 60 s (got 999")


def test_every_problem_is_listed_not_just_the_first():
    problems = problems_of(doc((0, "duration", "x"), (1, "kind", "drone"), (2, "bar", 1)))

    assert problems == [
        "shots[0].duration must be a number",
        'shots[1].kind must be one of a_roll, b_roll, product (got "drone")',
        "shots[2]: unknown keys: bar",
    ]


def test_total_outside_the_target_share_is_invalid():
    shots = [
        {"kind": "a_roll", "duration": 47.5, "script": "Hi."},
        {"kind": "b_roll", "duration": 47.5, "visual_prompt": "x"},
    ]

    assert problems_of(json.dumps(shots)) == ["total duration 95.0 s is outside 22.5–37.5 s (target 30 s)"]


def test_total_at_the_edge_of_the_tolerance_is_valid():
    shots = [{"kind": "a_roll", "duration": 37.5, "script": "Hi."}]

    assert parse_storyboard(json.dumps(shots), target_seconds=30)[0]["duration"] == 37.5


def test_tolerance_is_a_parameter():
    shots = json.dumps([{"kind": "a_roll", "duration": 33, "script": "Hi."}])

    assert parse_storyboard(shots, target_seconds=30, tolerance=0.1)[0]["duration"] == 33.0
    assert problems_of(shots, target_seconds=20, tolerance=0.1) == [
        "total duration 33.0 s is outside 18–22 s (target 20 s)"
    ]


def test_ten_thousand_shots_give_one_problem():
    shots = [{"kind": "b_roll", "duration": 3, "visual_prompt": "x"}] * 10_000

    assert problems_of(json.dumps({"shots": shots})) == ["shots has 10000 items, more than the limit of 40"]


def test_max_shots_is_a_parameter():
    shots = [{"kind": "b_roll", "duration": 10, "visual_prompt": "x"}] * 3

    assert problems_of(json.dumps(shots), max_shots=2) == ["shots has 3 items, more than the limit of 2"]


def test_non_text_input_is_invalid_not_a_crash():
    assert problems_of(None) == ["response must be text, not NoneType"]


# Property: whatever the LLM says, the parser answers with valid shots or StoryboardInvalid, nothing else.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def assert_valid_or_invalid(raw: str, target: float = 30) -> None:
    try:
        shots = parse_storyboard(raw, target_seconds=target)
    except StoryboardInvalid as error:
        assert error.problems
        assert all(isinstance(p, str) and p for p in error.problems)
        assert error.raw == raw
        return
    assert 1 <= len(shots) <= 40
    for shot in shots:
        assert set(shot) == {"kind", "duration", "script", "visual_prompt"}
        assert shot["kind"] in ("a_roll", "b_roll", "product")
        assert isinstance(shot["duration"], float)
        assert 0 < shot["duration"] <= 60
        assert shot["kind"] != "a_roll" or shot["script"]
        assert shot["kind"] == "a_roll" or shot["visual_prompt"]
    assert target * 0.75 - 1e-6 <= sum(s["duration"] for s in shots) <= target * 1.25 + 1e-6


@given(st.text())
def test_any_text_gives_shots_or_storyboard_invalid(raw):
    assert_valid_or_invalid(raw)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_documents_give_shots_or_storyboard_invalid(data):
    shots = [dict(s) for s in GOOD]
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(shots) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "drop_shot", "dup_shot"]))
        key = data.draw(st.sampled_from(["kind", "duration", "script", "visual_prompt", "extra"]))
        if action == "set":
            shots[i][key] = data.draw(json_values)
        elif action == "delete":
            shots[i].pop(key, None)
        elif action == "drop_shot" and len(shots) > 1:
            shots.pop(i)
        elif action == "dup_shot":
            shots.insert(i, dict(shots[i]))
    text = json.dumps(data.draw(st.sampled_from([{"shots": shots}, shots])), ensure_ascii=False)
    cut = data.draw(st.integers(0, len(text)))
    wrap = data.draw(st.sampled_from(["{}", "```json\n{}\n```", "Here you go: {} Enjoy!"]))
    raw = wrap.format(text if data.draw(st.booleans()) else text[:cut])
    assert_valid_or_invalid(raw, target=data.draw(st.sampled_from([10, 30, 60])))
