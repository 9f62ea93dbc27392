import pytest

from posts.director.timing import fit_durations, speaking_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # 9 characters / 4.5 + one sentence end 0.25 = 2.25 -> 2.3 (half up)
        ("今天我们来聊聊护肤。", 2.3),
        # 19 characters / 4.5 = 4.22, + comma 0.1 + sentence end 0.25 = 4.57 -> 4.6
        ("秋冬皮肤容易干燥，所以一定要记得补水保湿！", 4.6),
        # 45 characters = 10.0 s, no punctuation
        ("护" * 45, 10.0),
    ],
)
def test_chinese_is_timed_by_characters(text, seconds):
    assert speaking_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # 6 words / 2.6 = 2.31, + comma 0.1 + sentence end 0.25 = 2.66 -> 2.7
        ("Hello world, this is a test.", 2.7),
        # 13 words / 2.6 = 5.0, + one sentence end 0.25 -> 5.3 (half up from 5.25)
        ("Start with a gentle cleanser and always finish with a good moisturiser tonight.", 5.3),
        # "don't" and "well-known" are one word each: 4 words = 1.54 + 0.25 = 1.79 -> 1.8
        ("Don't skip well-known steps.", 1.8),
    ],
)
def test_english_is_timed_by_words(text, seconds):
    assert speaking_seconds(text) == seconds


def test_mixed_text_is_timed_part_by_part():
    # 这款 很好用 = 5 characters (1.11 s) + "serum" 1 word (0.38 s) + "！" 0.25 s = 1.74 -> 1.7
    assert speaking_seconds("这款 serum 很好用！") == 1.7


def test_runs_of_sentence_marks_are_one_pause_and_decimals_are_none():
    # "It costs 3.5 dollars" is 4 words (1.54 s); "?!" is one pause: 1.79 -> 1.8
    assert speaking_seconds("It costs 3.5 dollars?!") == 1.8


def test_short_lines_take_at_least_one_second():
    assert speaking_seconds("") == 1.0
    assert speaking_seconds("嗨") == 1.0
    assert speaking_seconds("Hi") == 1.0


def test_long_lines_are_capped_at_sixty_seconds():
    assert speaking_seconds("word " * 500) == 60.0
    assert speaking_seconds("字" * 1000) == 60.0


def test_cutaways_share_the_time_left_by_the_lines():
    shots = [
        {"kind": "a_roll", "duration": 4.0, "script": "Hi."},
        {"kind": "b_roll", "visual_prompt": "x"},
        {"kind": "a_roll", "duration": 6.0, "script": "Bye."},
        {"kind": "product", "duration": 9.9, "visual_prompt": "y"},
        {"kind": "b_roll", "visual_prompt": "z"},
    ]

    fitted = fit_durations(shots, 20)

    assert [s["duration"] for s in fitted] == [4.0, 3.4, 6.0, 3.3, 3.3]
    assert round(sum(s["duration"] for s in fitted), 6) == 20


def test_cutaways_stay_between_two_and_eight_seconds():
    lines = [{"kind": "a_roll", "duration": 10.0, "script": "Hi."}, {"kind": "b_roll"}, {"kind": "b_roll"}]

    assert [s["duration"] for s in fit_durations(lines, 60)][1:] == [8.0, 8.0]
    assert [s["duration"] for s in fit_durations(lines, 11)][1:] == [2.0, 2.0]


def test_lines_without_a_duration_are_timed_from_their_script():
    fitted = fit_durations([{"kind": "a_roll", "script": "今天我们来聊聊护肤。"}, {"kind": "b_roll"}], 10)

    assert [s["duration"] for s in fitted] == [2.3, 7.7]


def test_fit_durations_leaves_its_input_alone():
    shots = [{"kind": "b_roll", "duration": 1.0}]

    fit_durations(shots, 5)

    assert shots == [{"kind": "b_roll", "duration": 1.0}]
