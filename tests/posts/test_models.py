from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from posts.models import Post, PostStatus, Shot, ShotKind
from tests.factories import make_artist, make_post, make_shot, make_wardrobe, mp4_bytes, png_bytes, wav_bytes
from tests.validation import clean_errors

pytestmark = pytest.mark.django_db


# Post wardrobe


def test_post_with_one_of_the_artists_allowed_wardrobes_is_accepted():
    suit = make_wardrobe(name="Navy suit")
    artist = make_artist(wardrobes=[suit, make_wardrobe()])

    assert clean_errors(Post(title="Market wrap", artist=artist, wardrobe=suit)) == {}


def test_post_without_wardrobe_is_accepted():
    assert clean_errors(Post(title="Market wrap", artist=make_artist())) == {}


def test_post_with_a_wardrobe_the_artist_may_not_wear_is_refused_naming_both():
    artist = make_artist(stage_name="Mia Chen", wardrobes=[make_wardrobe()])
    tracksuit = make_wardrobe(name="Red tracksuit")

    assert clean_errors(Post(title="Market wrap", artist=artist, wardrobe=tracksuit)) == {
        "wardrobe": ["“Red tracksuit” is not one of Mia Chen's allowed wardrobes."]
    }


def test_post_wardrobe_allowed_for_another_artist_only_is_refused():
    suit = make_wardrobe(name="Navy suit")
    make_artist(wardrobes=[suit])
    artist = make_artist(stage_name="Leo")

    assert clean_errors(Post(title="Market wrap", artist=artist, wardrobe=suit)) == {
        "wardrobe": ["“Navy suit” is not one of Leo's allowed wardrobes."]
    }


def test_post_is_editable_only_in_draft_rejected_and_failed():
    editable = {status for status in PostStatus.values if Post(status=status).is_editable}

    assert editable == {PostStatus.DRAFT, PostStatus.REJECTED, PostStatus.FAILED}


def test_database_refuses_an_unknown_post_status():
    with pytest.raises(IntegrityError, match="post_status_valid"), transaction.atomic():
        make_post(status="published")


def test_database_refuses_post_version_0():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_post(version=0)


def test_awaiting_review_lists_only_posts_in_review():
    in_review = make_post(status=PostStatus.REVIEW)
    make_post(status=PostStatus.DRAFT)
    make_post(status=PostStatus.APPROVED)

    assert list(Post.objects.awaiting_review()) == [in_review]


# Shots


def new_shot(**extra) -> Shot:
    return Shot(**{"post": make_post(), "position": 1, "kind": ShotKind.A_ROLL, "script": "Hello.", **extra})


def test_a_roll_shot_with_script_is_accepted():
    assert clean_errors(new_shot(kind=ShotKind.A_ROLL, script="Stocks fell today.")) == {}


def test_a_roll_shot_without_script_is_refused():
    shot = new_shot(kind=ShotKind.A_ROLL, script="  ")

    assert clean_errors(shot) == {"script": ["An A-roll shot needs a script: the words the artist says."]}


@pytest.mark.parametrize("kind", [ShotKind.B_ROLL, ShotKind.PRODUCT])
def test_cutaway_shot_with_visual_prompt_is_accepted(kind):
    assert clean_errors(new_shot(kind=kind, script="", visual_prompt="A trading floor at dawn.")) == {}


@pytest.mark.parametrize("kind", [ShotKind.B_ROLL, ShotKind.PRODUCT])
def test_cutaway_shot_without_visual_prompt_or_manual_asset_is_refused(kind):
    shot = new_shot(kind=kind, script="", visual_prompt=" ")

    assert clean_errors(shot) == {"visual_prompt": ["Describe the picture, or upload a manual asset for this shot."]}


@pytest.mark.parametrize(
    ("name", "content"),
    [("still.png", png_bytes(320, 180)), ("still.jpg", png_bytes(320, 180, fmt="JPEG")), ("clip.mp4", mp4_bytes())],
)
def test_cutaway_shot_with_manual_image_or_video_needs_no_visual_prompt(name, content):
    shot = new_shot(kind=ShotKind.B_ROLL, script="", visual_prompt="", manual_asset=SimpleUploadedFile(name, content))

    assert clean_errors(shot) == {}


def test_manual_asset_that_is_a_text_file_named_mp4_is_refused():
    upload = SimpleUploadedFile("clip.mp4", b"this is not a video\n" * 20, content_type="video/mp4")
    shot = new_shot(kind=ShotKind.PRODUCT, script="", visual_prompt="", manual_asset=upload)

    assert clean_errors(shot)["manual_asset"] == ["Upload an image (JPEG, PNG, WebP) or a video (MP4, MOV, WebM)."]


def test_manual_asset_that_is_audio_is_refused_naming_what_it_looks_like():
    shot = new_shot(manual_asset=SimpleUploadedFile("clip.mp4", wav_bytes(1)))

    assert clean_errors(shot) == {
        "manual_asset": ["Upload an image (JPEG, PNG, WebP) or a video (MP4, MOV, WebM) (it looks like audio/x-wav)."]
    }


@pytest.mark.parametrize("seconds", ["0.01", "3", "60"])
def test_shot_duration_up_to_60_seconds_is_accepted(seconds):
    assert clean_errors(new_shot(duration_seconds=Decimal(seconds))) == {}


def test_shot_duration_0_is_refused():
    shot = new_shot(duration_seconds=Decimal("0"))

    assert clean_errors(shot) == {"duration_seconds": ["Ensure this value is greater than or equal to 0.01."]}


def test_shot_duration_61_is_refused():
    shot = new_shot(duration_seconds=Decimal("61"))

    assert clean_errors(shot) == {"duration_seconds": ["Ensure this value is less than or equal to 60."]}


def test_database_refuses_a_shot_longer_than_60_seconds():
    post = make_post()

    with pytest.raises(IntegrityError, match="shot_duration_0_60"), transaction.atomic():
        make_shot(post=post, position=1, duration_seconds=Decimal("61"))


def test_database_refuses_two_shots_at_the_same_position():
    post = make_post(shots=1)

    with pytest.raises(IntegrityError), transaction.atomic():
        make_shot(post=post, position=1)


def test_shot_label_shows_the_lock():
    post = make_post()

    assert str(make_shot(post=post, position=2, locked=True)) == "🔒 Shot 2: A-roll (artist talking)"
    assert str(make_shot(post=post, position=3)) == "Shot 3: A-roll (artist talking)"


# Background music


def test_background_music_over_the_audio_limit_is_refused_with_its_size_before_it_is_read(settings):
    settings.MCN_MAX_AUDIO_BYTES = 64 * 1024
    music = SimpleUploadedFile("theme.wav", wav_bytes(4.0), "audio/wav")  # 4 s of 16-bit mono: 125 KB
    post = Post(title="Market wrap", artist=make_artist(), music=music)

    errors = clean_errors(post)

    assert errors == {"music": [f"This music file is {music.size / 1024:.1f}\xa0KB; the limit is 64.0\xa0KB."]}


def test_background_music_within_the_limit_is_accepted(settings):
    settings.MCN_MAX_AUDIO_BYTES = 1024 * 1024
    music = SimpleUploadedFile("theme.wav", wav_bytes(2.0), "audio/wav")

    assert clean_errors(Post(title="Market wrap", artist=make_artist(), music=music)) == {}
