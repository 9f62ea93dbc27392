import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posts.director.offline import offline_storyboard
from posts.director.schema import parse_storyboard

CHINESE_BRIEF = (
    "今天我们来聊聊秋冬护肤。皮肤干燥怎么办？第一步，一定要温和清洁！第二步，及时补水保湿。最后，别忘了防晒。"
)
ENGLISH_BRIEF = (
    "Autumn skincare is simple. Start with a gentle cleanser! Then moisturise while your skin is still damp. "
    "Finally, never skip sunscreen, even on cloudy days."
)


def passes_schema(shots: list[dict], target: float = 30) -> bool:
    return parse_storyboard(json.dumps(shots, ensure_ascii=False), target_seconds=target) == shots


def test_chinese_brief_becomes_a_roll_lines_with_keyword_b_roll_between():
    shots = offline_storyboard(CHINESE_BRIEF, artist_name="小美", keywords=["护肤品", "晨间日常"])

    assert passes_schema(shots)
    assert [s["script"] for s in shots if s["kind"] == "a_roll"] == [
        "今天我们来聊聊秋冬护肤。",
        "皮肤干燥怎么办？",
        "第一步，一定要温和清洁！",
        "第二步，及时补水保湿。",
        "最后，别忘了防晒。",
    ]
    assert [s["kind"] for s in shots] == ["a_roll", "b_roll"] * 5
    assert "护肤品" in shots[1]["visual_prompt"]
    assert "晨间日常" in shots[3]["visual_prompt"]
    assert shots[0]["duration"] == 2.7  # 10 characters + a sentence end
    assert all(2 <= s["duration"] <= 8 for s in shots if s["kind"] == "b_roll")
    assert round(sum(s["duration"] for s in shots), 6) == 30


def test_english_brief_without_keywords_takes_b_roll_from_the_brief():
    shots = offline_storyboard(ENGLISH_BRIEF, artist_name="Mia", keywords=[])

    assert passes_schema(shots)
    assert [s["script"] for s in shots if s["kind"] == "a_roll"] == [
        "Autumn skincare is simple.",
        "Start with a gentle cleanser!",
        "Then moisturise while your skin is still damp.",
        "Finally, never skip sunscreen, even on cloudy days.",
    ]
    prompts = [s["visual_prompt"] for s in shots if s["kind"] == "b_roll"]
    assert "Autumn" in prompts[0]
    assert "skincare" in prompts[1]
    assert all("Mia" in s["visual_prompt"] for s in shots if s["kind"] == "a_roll")


@pytest.mark.parametrize(("brief", "keywords"), [(CHINESE_BRIEF, ["护肤品"]), (ENGLISH_BRIEF, [])])
def test_same_input_gives_the_same_storyboard(brief, keywords):
    first = offline_storyboard(brief, artist_name="Mia", keywords=keywords, target_seconds=20)

    assert offline_storyboard(brief, artist_name="Mia", keywords=list(keywords), target_seconds=20) == first


def test_lines_stop_near_the_target():
    long_brief = "。".join(f"第{n}点，这个真的很重要" for n in range(1, 30)) + "。"

    shots = offline_storyboard(long_brief, artist_name="小美", keywords=["护肤"], target_seconds=15)

    assert passes_schema(shots, target=15)
    assert sum(s["duration"] for s in shots) <= 15 * 1.25
    assert len([s for s in shots if s["kind"] == "a_roll"]) < 29


def test_a_single_short_sentence_is_padded_with_b_roll_to_the_target():
    shots = offline_storyboard("Hi.", artist_name="Mia", keywords=["coffee"], target_seconds=30)

    assert passes_schema(shots)
    assert shots[0] == {"kind": "a_roll", "duration": 1.0, "script": "Hi.", "visual_prompt": shots[0]["visual_prompt"]}
    assert all(s["kind"] == "b_roll" for s in shots[1:])


def test_long_sentence_is_cut_at_its_commas():
    brief = "，".join(["这一段话说得特别特别长而且没有句号"] * 6) + "。"

    shots = offline_storyboard(brief, artist_name="小美", keywords=["护肤"], target_seconds=30)

    lines = [s for s in shots if s["kind"] == "a_roll"]
    assert len(lines) > 1
    assert all(s["duration"] <= 12 for s in lines)
    assert passes_schema(shots)


def test_lines_already_in_locked_shots_are_not_said_twice():
    locked = [{"kind": "a_roll", "duration": 2.7, "script": "今天我们来聊聊秋冬护肤。", "visual_prompt": ""}]

    shots = offline_storyboard(CHINESE_BRIEF, artist_name="小美", keywords=["护肤品"], target_seconds=20, locked=locked)

    assert "今天我们来聊聊秋冬护肤。" not in [s["script"] for s in shots]
    assert passes_schema(shots, target=20)


@pytest.mark.parametrize("brief", ["", "   \n ", "。！？"])
def test_empty_brief_is_a_clear_error(brief):
    with pytest.raises(ValueError, match=r"^The (post has no brief|brief has nothing to say)"):
        offline_storyboard(brief, artist_name="Mia", keywords=[])


def test_empty_brief_error_tells_the_producer_what_to_do():
    with pytest.raises(ValueError) as caught:
        offline_storyboard("", artist_name="Mia", keywords=[])

    assert str(caught.value) == (
        "The post has no brief: write a sentence or two of what the artist should say, then retry."
    )


def test_first_sentence_too_long_for_the_time_left_is_a_clear_error():
    with pytest.raises(ValueError, match=r"first sentence takes 8\.\d s to say, more than the 5 s left"):
        offline_storyboard("护" * 36 + "。", artist_name="小美", keywords=[], target_seconds=5)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    brief=st.text(alphabet=st.sampled_from("今天护肤很好。，！？ Hi skin care is easy.,!?\n3"), max_size=300),
    keywords=st.lists(st.text(max_size=6), max_size=3),
    target=st.sampled_from([5, 7.3, 15, 30, 60]),
)
def test_any_brief_gives_a_valid_storyboard_or_a_clear_error(brief, keywords, target):
    try:
        shots = offline_storyboard(brief, artist_name="Mia", keywords=keywords, target_seconds=target)
    except ValueError as error:
        assert str(error).startswith("The ")
        return
    assert passes_schema(shots, target=target)
    assert offline_storyboard(brief, artist_name="Mia", keywords=keywords, target_seconds=target) == shots


def test_a_line_that_nearly_fills_a_short_target_gets_no_cutaway_that_would_overrun():
    # 18 characters + a sentence end = 4.3 s of a 5 s target: a 2 s cutaway would make 6.3 s, past 6.25 s.
    shots = offline_storyboard("护" * 18 + "。", artist_name="小美", keywords=["护肤"], target_seconds=5)

    assert [s["kind"] for s in shots] == ["a_roll"]
    assert passes_schema(shots, target=5)
