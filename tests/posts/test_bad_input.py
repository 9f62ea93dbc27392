"""Bad input to posts and storyboards gets a clear 400 through every door, and changes nothing:
decompression-bomb images, NUL characters, more shots than MCN_MAX_SHOTS_PER_POST. An added shot costs
the same statements whatever the storyboard's length."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory import runners
from factory import services as factory_services
from factory.models import ErrorKind, Job
from mcn_site.lib import roles
from posts import services
from posts.director.jobs import run_director, storyboard_generate
from posts.models import Post, PostEvent, PostStatus, Shot
from schedules.models import Schedule
from tests.admin import login
from tests.api.conftest import token_client
from tests.factories import make_artist, make_post, make_shot, make_user, png_claiming
from tests.posts.test_views import post_json, snapshot, url

pytestmark = pytest.mark.django_db

NUL = "Null characters are not allowed."
CAP = "A post has at most {cap} shots (MCN_MAX_SHOTS_PER_POST); this storyboard would have {count}. "
CAP += "Merge or delete shots first."


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER)


@pytest.fixture
def post(producer):
    return make_post(artist=make_artist(members=[producer]), shots=2)


def bomb(width: int = 30000, height: int = 30000) -> SimpleUploadedFile:
    return SimpleUploadedFile("bomb.png", png_claiming(width, height), content_type="image/png")


# --- images that claim more pixels than we decode ---------------------------------------------------

BOMB_MESSAGES = {
    # Pillow refuses this one itself, inside Image.open (DecompressionBombError): no size to show.
    (30000, 30000): "This image is larger; the limit is 50.0 megapixels (MCN_MAX_IMAGE_PIXELS). "
    "Scale it down before uploading.",
    (9000, 9000): "This image is 9000x9000 pixels (81.0 megapixels); the limit is 50.0 megapixels "
    "(MCN_MAX_IMAGE_PIXELS). Scale it down before uploading.",
}


@pytest.mark.parametrize("size", list(BOMB_MESSAGES))
def test_the_storyboard_page_refuses_an_image_claiming_too_many_pixels_with_a_400(post, producer, size):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = login(producer).post(url(post, f"shots/{shot.pk}/asset"), {"version": 1, "file": bomb(*size)})

    assert response.status_code == 400
    assert response.json() == {"error": BOMB_MESSAGES[size], "fields": {"manual_asset": [BOMB_MESSAGES[size]]}}
    assert snapshot(post) == before


@pytest.mark.parametrize("size", list(BOMB_MESSAGES))
def test_the_api_refuses_an_image_claiming_too_many_pixels_with_a_400(post, producer, size):
    shot = post.shots.get(position=1)

    response = token_client(producer).post(
        f"/api/v1/shots/{shot.pk}/asset", {"manual_asset": bomb(*size), "version": 1}, format="multipart"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["manual_asset"] == [BOMB_MESSAGES[size]]
    assert not Shot.objects.get(pk=shot.pk).manual_asset


def test_the_pixel_limit_is_a_setting(post, producer, settings):
    settings.MCN_MAX_IMAGE_PIXELS = 100 * 100
    shot = post.shots.get(position=1)

    response = login(producer).post(url(post, f"shots/{shot.pk}/asset"), {"version": 1, "file": bomb(101, 100)})

    assert response.status_code == 400
    assert response.json()["error"].startswith("This image is 101x100 pixels (0.0 megapixels); the limit is 0.0")


def test_a_face_anchor_claiming_too_many_pixels_is_a_400_not_a_500(producer):
    ops = token_client(make_user(role=roles.OPS))
    artist = make_artist()

    response = ops.patch(f"/api/v1/artists/{artist.pk}/", {"face_anchor": bomb()}, format="multipart")

    assert response.status_code == 400, response.content
    assert "face_anchor" in response.json()["error"]["fields"]


# --- NUL characters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("shots", {"kind": "a_roll", "script": "Hello\x00world"}, "script"),
        ("shots/{first}", {"script": "Hi\x00"}, "script"),
        ("shots/{first}", {"kind": "b_roll", "visual_prompt": "\x00"}, "visual_prompt"),
        ("actions/generate", {"feedback": "Shorter\x00"}, "feedback"),
    ],
)
def test_the_storyboard_page_refuses_nul_characters_with_a_400_on_every_database(post, producer, path, body, field):
    first = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(login(producer), url(post, path.format(first=first.pk)), {"version": 1, **body})

    assert response.status_code == 400, response.content
    assert response.json() == {"error": NUL, "fields": {field: [NUL]}}
    assert snapshot(post) == before


def test_review_notes_and_feedback_with_nul_are_refused_on_the_page(producer):
    reviewer = make_user(role=roles.REVIEWER)
    post = make_post(artist=make_artist(members=[producer, reviewer]), shots=1, status=PostStatus.REVIEW)
    before = snapshot(post)

    rejected = post_json(login(reviewer), url(post, "actions/rejected"), {"version": 1, "feedback": "No\x00"})
    approved = post_json(login(reviewer), url(post, "actions/approved"), {"version": 1, "note": "Ok\x00"})

    assert (rejected.status_code, rejected.json()["fields"]) == (400, {"feedback": [NUL]})
    assert (approved.status_code, approved.json()["fields"]) == (400, {"note": [NUL]})
    assert snapshot(post) == before


def test_the_api_refuses_nul_characters_with_the_same_message(post, producer):
    response = token_client(producer).post(
        f"/api/v1/posts/{post.pk}/shots/", {"script": "Hello\x00world", "version": 1}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["script"] == [NUL]


def test_services_refuse_nul_in_every_text_field_whatever_calls_them(post, producer):
    # The one rule lives below the doors: a service called by the admin, an import or a script refuses too.
    with pytest.raises(ValidationError) as refused:
        services.post_update(
            post=post,
            actor=producer,
            expected_version=1,
            data={"title": "T\x00", "brief": "ok", "source_content": "\x00"},
        )
    assert refused.value.message_dict == {"title": [NUL], "source_content": [NUL]}
    with pytest.raises(ValidationError) as refused:
        storyboard_generate(post_id=post.pk, actor=producer, feedback="\x00")
    assert refused.value.message_dict == {"feedback": [NUL]}
    assert (Post.objects.get(pk=post.pk).version, Job.objects.count()) == (1, 0)


def test_schedules_and_artists_refuse_nul_characters(producer):
    artist = make_artist(members=[producer])
    schedule = Schedule(title="Morning\x00", artist=artist, weekdays=["monday"], times=["09:00"], brief="\x00")
    with pytest.raises(ValidationError) as refused:
        schedule.full_clean()
    assert refused.value.message_dict == {"title": [NUL], "brief": [NUL]}
    ops = token_client(make_user(role=roles.OPS))
    # JSON data too: PostgreSQL's jsonb refuses \u0000 as its text columns refuse NUL.
    response = ops.post("/api/v1/wardrobes/", {"name": "Suit", "comfy_payload": {"lora_name": "a\x00"}}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["comfy_payload"] == [NUL]
    artist.content_focus = ["stocks", "\x00"]
    with pytest.raises(ValidationError) as refused:
        artist.full_clean(exclude=["face_anchor"])
    assert refused.value.message_dict == {"content_focus": [NUL]}


# --- shots per post -----------------------------------------------------------------------------------


def test_a_shot_past_the_cap_is_refused_on_the_page_and_through_the_api(producer, settings):
    settings.MCN_MAX_SHOTS_PER_POST = 3
    post = make_post(artist=make_artist(members=[producer]), shots=3)
    before = snapshot(post)
    message = CAP.format(cap=3, count=4)

    page = post_json(login(producer), url(post, "shots"), {"version": 1, "kind": "a_roll", "script": "One more."})
    api = token_client(producer).post(f"/api/v1/posts/{post.pk}/shots/", {"script": "One more.", "version": 1})

    assert (page.status_code, page.json()["error"]) == (400, message)
    assert (api.status_code, api.json()["error"]["message"]) == (400, message)
    assert snapshot(post) == before


def test_the_director_cannot_write_past_the_cap_and_its_job_says_why(producer, settings):
    settings.MCN_MAX_SHOTS_PER_POST = 3
    post = make_post(artist=make_artist(members=[producer]), brief="Rates, stocks and the dollar.")
    for position in (1, 2, 3):
        make_shot(post=post, position=position, locked=True)
    job = storyboard_generate(post_id=post.pk, actor=producer)

    claimed = factory_services.job_start(job_id=job.pk, worker_name="cpu-a", server_url="")  # as a worker does

    with pytest.raises(runners.TaskFailed) as failed:
        run_director(claimed)

    assert failed.value.kind == ErrorKind.CONFIG
    assert str(failed.value).startswith("A post has at most 3 shots (MCN_MAX_SHOTS_PER_POST); this storyboard would")
    assert post.shots.count() == 3


def test_the_cap_defaults_to_200(settings):
    assert settings.MCN_MAX_SHOTS_PER_POST == 200


def add_statements(post: Post, actor, position: int | None = None) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        services.shot_save(
            post=post, actor=actor, expected_version=post.version, data={"script": "New."}, position=position
        )
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("position", [None, 1, 5])
def test_adding_a_shot_costs_the_same_statements_at_10_and_150_shots(producer, position):
    small = make_post(artist=make_artist(members=[producer]), shots=10)
    large = make_post(artist=make_artist(members=[producer]), shots=150)

    at_10, at_150 = add_statements(small, producer, position), add_statements(large, producer, position)

    assert len(at_10) == len(at_150) <= 12
    for post, count in ((small, 11), (large, 151)):
        positions = list(post.shots.order_by("position").values_list("position", "script"))
        assert [p for p, _ in positions] == list(range(1, count + 1))
        added = (position or count) - 1
        assert positions[added][1] == "New." and positions[0 if added else 1][1] == "Line 1."


def test_adding_a_shot_through_the_api_costs_the_same_statements_at_10_and_150_shots(
    producer, django_assert_max_num_queries
):
    api = token_client(producer)
    small = make_post(artist=make_artist(members=[producer]), shots=10)
    large = make_post(artist=make_artist(members=[producer]), shots=150)
    api.get("/api/v1/posts/")  # the token's first use writes its last_used_at: not part of an add
    counts = []
    for post in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = api.post(f"/api/v1/posts/{post.pk}/shots/", {"script": "New.", "position": 3, "version": 1})
        assert response.status_code == 201, response.content
        counts.append(len(queries))
    assert counts[0] == counts[1]
    with django_assert_max_num_queries(counts[0]):
        api.post(f"/api/v1/posts/{large.pk}/shots/", {"script": "Again.", "version": 2})
    assert large.shots.count() == 152
    assert PostEvent.objects.filter(post=large, note="151 shots, 1 added").exists()


def test_a_middle_insert_keeps_every_shot_in_order(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=4)
    shot = services.shot_save(post=post, actor=producer, expected_version=1, data={"script": "Third."}, position=3)

    assert shot.position == 3
    assert list(post.shots.order_by("position").values_list("script", flat=True)) == [
        "Line 1.",
        "Line 2.",
        "Third.",
        "Line 3.",
        "Line 4.",
    ]
    assert json.loads(json.dumps(Post.objects.values("version").get(pk=post.pk))) == {"version": 2}
