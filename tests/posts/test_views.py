"""The storyboard page and its JSON endpoints: who may call them, what they change, how they refuse."""

import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from factory.models import Job, JobStatus
from mcn_site.lib import roles
from posts import services
from posts.models import Post, PostEvent, PostStatus, Shot, ShotKind, ShotStatus
from tests.factories import (
    make_artist,
    make_job,
    make_post,
    make_shot,
    make_shot_workflow,
    make_user,
    png_upload,
)
from tests.posts.test_consumers import communicator, session_cookie

pytestmark = pytest.mark.django_db

ENDPOINTS = ["state", "create", "update", "delete", "reorder", "lock", "asset", "generate", "revoice", "action"]


# --- helpers ---------------------------------------------------------------------------------


def url(post: Post, rest: str = "") -> str:
    return f"/posts/{post.pk}/{rest}"


def post_json(client: Client, path: str, data) -> object:
    body = data if isinstance(data, str) else json.dumps(data)
    return client.post(path, data=body, content_type="application/json")


def call(client: Client, endpoint: str, post: Post, *, version: int = 1):
    """One representative request to `endpoint` on `post` (whose shots are at positions 1 and 2)."""
    first, second = Shot.objects.filter(post=post).order_by("position")[:2]
    if endpoint == "state":
        return client.get(url(post, "state"))
    if endpoint == "create":
        return post_json(client, url(post, "shots"), {"version": version, "kind": "a_roll", "script": "New line."})
    if endpoint == "update":
        return post_json(client, url(post, f"shots/{first.pk}"), {"version": version, "script": "Edited line."})
    if endpoint == "delete":
        return post_json(client, url(post, f"shots/{first.pk}/delete"), {"version": version})
    if endpoint == "reorder":
        return post_json(client, url(post, "shots/reorder"), {"version": version, "order": [second.pk, first.pk]})
    if endpoint == "lock":
        return post_json(client, url(post, f"shots/{first.pk}/lock"), {"version": version, "locked": True})
    if endpoint == "asset":
        return client.post(url(post, f"shots/{first.pk}/asset"), {"version": version, "file": png_upload()})
    if endpoint == "generate":
        return post_json(client, url(post, f"shots/{first.pk}/generate"), {})
    if endpoint == "revoice":
        return post_json(client, url(post, f"shots/{first.pk}/revoice"), {})
    if endpoint == "action":
        return post_json(client, url(post, "actions/review"), {"version": version})
    raise AssertionError(endpoint)


def snapshot(post: Post) -> tuple:
    """Everything an endpoint could change about a post, to prove a refused request changed nothing."""
    return (
        Post.objects.values("version", "status", "feedback", "updated_by").get(pk=post.pk),
        list(
            Shot.objects.filter(post=post)
            .order_by("pk")
            .values("position", "kind", "script", "duration_seconds", "locked", "manual_asset", "status", "job")
        ),
        PostEvent.objects.filter(post=post).count(),
        Job.objects.count(),
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="pia")


@pytest.fixture
def post(producer):
    """A draft post of an artist `producer` works on, with two A-roll shots."""
    return make_post(artist=make_artist(members=[producer]), shots=2, title="Market wrap")


@pytest.fixture
def member(producer) -> Client:
    return logged_in(producer)


def media_files(folder: str) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / folder
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- who may call what -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_anonymous_caller_is_sent_to_log_in_and_changes_nothing(endpoint, post):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    before = snapshot(post)

    response = call(Client(), endpoint, post)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert snapshot(post) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_producer_who_is_not_a_member_gets_404_and_changes_nothing(endpoint, post):
    make_shot_workflow(kind=ShotKind.A_ROLL)  # so generate would work for a member
    outsider = make_user(role=roles.PRODUCER, username="olga")
    make_artist(members=[outsider])  # a member of some other artist
    before = snapshot(post)

    response = call(logged_in(outsider), endpoint, post)

    assert response.status_code == 404
    assert snapshot(post) == before


@pytest.mark.parametrize("endpoint", ["update", "delete", "lock", "asset", "generate", "revoice"])
def test_a_member_cannot_reach_another_posts_shot_through_their_own_post(endpoint, producer, member):
    mine = make_post(artist=make_artist(members=[producer]), shots=1)
    foreign = make_post(shots=1)
    theirs = foreign.shots.get()
    make_shot_workflow(kind=ShotKind.A_ROLL)
    before = snapshot(foreign)
    path = {
        "update": f"shots/{theirs.pk}",
        "delete": f"shots/{theirs.pk}/delete",
        "lock": f"shots/{theirs.pk}/lock",
        "asset": f"shots/{theirs.pk}/asset",
        "generate": f"shots/{theirs.pk}/generate",
        "revoice": f"shots/{theirs.pk}/revoice",
    }[endpoint]
    data = {"version": 1, "script": "Hijacked.", "locked": True}
    if endpoint == "asset":
        response = member.post(url(mine, path), {"version": 1, "file": png_upload()})
    else:
        response = post_json(member, url(mine, path), data)

    assert response.status_code == 400
    assert response.json()["error"] == "This shot is not part of the post any more."
    assert snapshot(foreign) == before


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("create", "Your role may not add shots to a storyboard."),
        ("update", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("delete", "Your role may not delete shots."),
        ("reorder", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("lock", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("asset", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("generate", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("revoice", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
        ("director", "Your role may not edit storyboards (shots, locks, order, assets, the director)."),
    ],
)
def test_a_reviewer_who_is_a_member_may_not_edit_the_storyboard(endpoint, message, post):
    """The API refuses a reviewer's shot edits (no posts.*_shot permission): so do the page's endpoints."""
    make_shot_workflow(kind=ShotKind.A_ROLL)
    rita = make_user(role=roles.REVIEWER, username="rita")
    post.artist.members.add(rita)
    before = snapshot(post)

    if endpoint == "director":
        response = post_json(logged_in(rita), url(post, "actions/generate"), {"version": 1})
    else:
        response = call(logged_in(rita), endpoint, post)

    assert response.status_code == 403
    assert response.json() == {"error": message}
    assert snapshot(post) == before


def test_a_reviewer_is_offered_no_storyboard_edits(post):
    rita = make_user(role=roles.REVIEWER, username="rita")
    post.artist.members.add(rita)

    state = logged_in(rita).get(url(post, "state")).json()

    assert state["post"]["can"] == {"add_shots": False, "change_shots": False, "delete_shots": False}
    assert [a["name"] for a in state["actions"]] == ["review"]  # no director: reviewers may submit, not write


def test_a_producer_may_edit_every_part_of_the_storyboard(post, member):
    state = member.get(url(post, "state")).json()

    assert state["post"]["can"] == {"add_shots": True, "change_shots": True, "delete_shots": True}


def test_the_state_endpoint_gives_a_member_the_whole_storyboard(post, member):
    response = member.get(url(post, "state"))

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["id"] == post.pk
    assert state["post"]["title"] == "Market wrap"
    assert state["post"]["version"] == 1
    assert state["post"]["editable"] is True
    assert [(s["position"], s["script"], s["kind"]) for s in state["shots"]] == [
        (1, "Line 1.", "a_roll"),
        (2, "Line 2.", "a_roll"),
    ]
    assert state["total_duration"] == 6.0
    assert state["actions"] == [
        # No LLM key in tests: the page says the rule-based director will write it.
        {"name": "generate", "label": "Write storyboard (offline director)", "needs_feedback": False},
        {"name": "review", "label": "Submit for review", "needs_feedback": False},
    ]


# --- member happy paths: 200 with the fresh state ------------------------------------------------


def test_a_member_adds_a_shot_and_gets_the_fresh_state(post, member):
    response = post_json(
        member,
        url(post, "shots"),
        {"version": 1, "kind": "b_roll", "visual_prompt": "Trading floor.", "duration": "4.5", "position": 2},
    )

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["version"] == 2
    assert state["post"]["updated_by"] == "pia"
    assert [(s["position"], s["kind"], s["script"] or s["visual_prompt"]) for s in state["shots"]] == [
        (1, "a_roll", "Line 1."),
        (2, "b_roll", "Trading floor."),
        (3, "a_roll", "Line 2."),
    ]
    assert state["shots"][1]["duration"] == 4.5
    assert post.events.get().kind == PostEvent.Kind.STORYBOARD


def test_a_member_edits_a_shot_and_gets_the_fresh_state(post, member):
    shot = post.shots.get(position=2)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"version": 1, "script": "New words.", "duration": 5})

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["version"] == 2
    edited = next(s for s in state["shots"] if s["id"] == shot.pk)
    assert (edited["script"], edited["duration"], edited["position"]) == ("New words.", 5.0, 2)
    shot.refresh_from_db()
    assert shot.script == "New words."


def test_a_member_edits_a_shot_with_patch_too(post, member):
    shot = post.shots.get(position=1)

    response = member.patch(
        url(post, f"shots/{shot.pk}"),
        data=json.dumps({"version": 1, "script": "Patched."}),
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json()["shots"][0]["script"] == "Patched."


def test_a_member_deletes_a_shot_and_the_rest_close_up(post, member):
    doomed = post.shots.get(position=1)

    response = post_json(member, url(post, f"shots/{doomed.pk}/delete"), {"version": 1})

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["version"] == 2
    assert [(s["position"], s["script"]) for s in state["shots"]] == [(1, "Line 2.")]
    assert not Shot.objects.filter(pk=doomed.pk).exists()


def test_a_member_reorders_the_shots(post, member):
    first, second = post.shots.order_by("position")

    response = post_json(member, url(post, "shots/reorder"), {"version": 1, "order": [second.pk, first.pk]})

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["version"] == 2
    assert [(s["id"], s["position"]) for s in state["shots"]] == [(second.pk, 1), (first.pk, 2)]


def test_reorder_must_name_every_shot_once(post, member):
    first, _ = post.shots.order_by("position")
    before = snapshot(post)

    response = post_json(member, url(post, "shots/reorder"), {"version": 1, "order": [first.pk, first.pk]})

    assert response.status_code == 400
    assert response.json()["error"] == "The new order must list every shot of this post exactly once."
    assert snapshot(post) == before


def test_reorder_without_a_list_of_ids_is_a_readable_400(post, member):
    response = post_json(member, url(post, "shots/reorder"), {"version": 1, "order": "1,2"})

    assert response.status_code == 400
    assert response.json()["fields"] == {"order": ["Send the shot ids in their new order."]}


def test_reorder_with_a_superscript_digit_is_a_400_not_a_crash(post, member):
    response = post_json(member, url(post, "shots/reorder"), {"version": 1, "order": ["²", "³"]})

    assert response.status_code == 400


def test_a_new_shot_at_a_superscript_position_is_not_a_crash(post, member):
    response = post_json(member, url(post, "shots"), {"version": 1, "script": "New line.", "position": "²"})

    assert response.status_code in (200, 400)


def test_a_member_locks_and_unlocks_a_shot(post, member):
    shot = post.shots.get(position=1)

    locked = post_json(member, url(post, f"shots/{shot.pk}/lock"), {"version": 1, "locked": True})
    unlocked = post_json(member, url(post, f"shots/{shot.pk}/lock"), {"version": 2, "locked": False})

    assert locked.status_code == 200
    assert (locked.json()["post"]["version"], locked.json()["shots"][0]["locked"]) == (2, True)
    assert unlocked.status_code == 200
    assert (unlocked.json()["post"]["version"], unlocked.json()["shots"][0]["locked"]) == (3, False)
    assert list(post.events.values_list("note", flat=True)) == ["Shot 1 locked", "Shot 1 unlocked"]


def test_locking_is_allowed_while_the_post_is_in_review(producer, member):
    post = make_post(artist=make_artist(members=[producer]), shots=1, status=PostStatus.REVIEW)
    shot = post.shots.get()

    response = post_json(member, url(post, f"shots/{shot.pk}/lock"), {"version": 1, "locked": True})

    assert response.status_code == 200
    assert response.json()["shots"][0]["locked"] is True


def test_a_member_uploads_a_png_as_the_shots_manual_asset(post, member):
    shot = post.shots.get(position=1)

    response = member.post(url(post, f"shots/{shot.pk}/asset"), {"version": 1, "file": png_upload(name="still.png")})

    assert response.status_code == 200
    state = response.json()
    assert state["post"]["version"] == 2
    asset = state["shots"][0]["manual_asset"]
    assert asset["type"] == "image"
    assert asset["name"].endswith(".png")
    assert asset["url"].startswith("/media/shots/manual/")
    shot.refresh_from_db()
    assert (Path(settings.MEDIA_ROOT) / shot.manual_asset.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_text_file_named_mp4_is_refused_as_a_manual_asset(post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)
    fake = SimpleUploadedFile("clip.mp4", b"just some notes, not a video\n" * 20, content_type="video/mp4")

    response = member.post(url(post, f"shots/{shot.pk}/asset"), {"version": 1, "file": fake})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Upload an image (JPEG, PNG, WebP) or a video (MP4, MOV, WebM)."
    assert list(body["fields"]) == ["manual_asset"]
    assert snapshot(post) == before
    assert media_files("shots") == []


def test_remove_clears_the_manual_asset(post, member):
    shot = post.shots.get(position=1)
    shot.manual_asset = png_upload(name="still.png")
    shot.save()

    response = member.post(url(post, f"shots/{shot.pk}/asset"), {"version": 1, "remove": "1"})

    assert response.status_code == 200
    assert response.json()["shots"][0]["manual_asset"] is None
    shot.refresh_from_db()
    assert not shot.manual_asset


def test_the_asset_endpoint_without_a_file_or_remove_asks_for_one(post, member):
    shot = post.shots.get(position=1)

    response = member.post(url(post, f"shots/{shot.pk}/asset"), {"version": 1})

    assert response.status_code == 400
    assert response.json()["fields"] == {"manual_asset": ["Choose an image or video to upload."]}


def test_a_member_queues_a_shots_picture(post, member, django_capture_on_commit_callbacks):
    make_shot_workflow(kind=ShotKind.A_ROLL)
    shot = post.shots.get(position=1)

    with django_capture_on_commit_callbacks() as callbacks:  # no worker: the doorbell is not rung
        response = post_json(member, url(post, f"shots/{shot.pk}/generate"), {})

    assert response.status_code == 200
    state = response.json()
    produced = state["shots"][0]
    job = Job.objects.get()
    assert produced["status"] == ShotStatus.PRODUCING
    assert produced["job"]["id"] == job.pk
    assert produced["job"]["status"] == JobStatus.QUEUED
    assert job.subject.startswith(f"post.{post.pk}/shot.{shot.pk}/picture@")
    assert callbacks  # ring, announce and the post.changed push wait for the commit
    # Queuing a picture is not an edit of the storyboard: it does not take the editors' version.
    assert state["post"]["version"] == 1
    assert post.events.get().note == "Shot 1: picture queued"


def test_a_member_queues_a_new_take_of_a_shots_voice(post, member, settings):
    settings.COSYVOICE_URL = "http://127.0.0.1:9"  # queued only, never sent
    shot = post.shots.get(position=1)
    Shot.objects.filter(pk=shot.pk).update(locked=True)  # what the page offers it for: a locked shot

    response = post_json(member, url(post, f"shots/{shot.pk}/revoice"), {})

    assert response.status_code == 200, response.content
    job = Job.objects.get()
    assert response.json()["shots"][0]["voice_job"]["id"] == job.pk
    assert job.subject.startswith(f"post.{post.pk}/shot.{shot.pk}/voice@")
    assert post.events.get().note == "Shot 1: new voice queued"


def test_revoice_without_a_voice_server_says_so(post, member, settings):
    settings.COSYVOICE_URL = ""
    shot = post.shots.get(position=1)

    response = post_json(member, url(post, f"shots/{shot.pk}/revoice"), {})

    assert response.status_code == 400
    assert "No voice server is configured" in response.json()["error"]
    assert not Job.objects.exists()


def test_generate_without_a_workflow_for_the_kind_tells_ops_where_to_set_it(post, member):
    shot = post.shots.get(position=1)

    response = post_json(member, url(post, f"shots/{shot.pk}/generate"), {})

    assert response.status_code == 400
    assert "ops set one under Posts > Shot workflows" in response.json()["error"]
    assert not Job.objects.exists()


def test_a_member_submits_a_post_for_review(post, member):
    response = post_json(member, url(post, "actions/review"), {"version": 1})

    assert response.status_code == 200
    state = response.json()
    assert (state["post"]["status"], state["post"]["version"], state["post"]["editable"]) == ("review", 2, False)
    post.refresh_from_db()
    assert post.status == PostStatus.REVIEW


# --- optimistic concurrency and readable errors -------------------------------------------------


@pytest.mark.parametrize("endpoint", ["create", "update", "delete", "reorder", "lock", "asset", "action"])
def test_a_stale_version_is_refused_with_409_naming_the_other_editor(endpoint, post, member):
    mia = make_user(role=roles.PRODUCER, username="mia")
    services.shot_save(
        post=post, actor=mia, expected_version=1, data={"script": "Mia's line."}, shot_id=post.shots.get(position=2).pk
    )
    before = snapshot(post)

    response = call(member, endpoint, post, version=1)

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "stale"
    assert body["current_version"] == 2
    assert body["error"].startswith("mia changed this post at ")
    assert "nothing was overwritten" in body["error"]
    assert snapshot(post) == before


def test_a_missing_version_is_a_400_on_the_version_field(post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"script": "No version."})

    assert response.status_code == 400
    assert response.json()["fields"] == {"version": ["Send the version of the storyboard you edited."]}
    assert snapshot(post) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "The request body is not valid JSON."),
        ("[1, 2]", "The request body must be a JSON object."),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_readable_400(body, message, post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), body)

    assert response.status_code == 400
    assert response.json() == {"error": message, "fields": {}}
    assert snapshot(post) == before


def test_editing_a_locked_shots_script_is_refused_naming_the_shot(post, member):
    shot = post.shots.get(position=2)
    Shot.objects.filter(pk=shot.pk).update(locked=True)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"version": 1, "script": "Sneaky rewrite."})

    assert response.status_code == 400
    assert response.json()["error"] == "Shot 2 is locked: unlock it before editing it."
    assert snapshot(post) == before


def test_deleting_a_locked_shot_is_refused(post, member):
    shot = post.shots.get(position=1)
    Shot.objects.filter(pk=shot.pk).update(locked=True)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}/delete"), {"version": 1})

    assert response.status_code == 400
    assert response.json()["error"] == "Shot 1 is locked: unlock it before deleting it."
    assert snapshot(post) == before


def test_a_locked_shot_may_be_moved(post, member):
    first, second = post.shots.order_by("position")
    Shot.objects.filter(pk=first.pk).update(locked=True)

    response = post_json(member, url(post, "shots/reorder"), {"version": 1, "order": [second.pk, first.pk]})

    assert response.status_code == 200
    moved = next(s for s in response.json()["shots"] if s["id"] == first.pk)
    assert (moved["position"], moved["locked"], moved["script"]) == (2, True, "Line 1.")


def test_an_a_roll_shot_needs_a_script(post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"version": 1, "kind": "a_roll", "script": "   "})

    assert response.status_code == 400
    body = response.json()
    assert body["fields"] == {"script": ["An A-roll shot needs a script: the words the artist says."]}
    assert body["error"] == "An A-roll shot needs a script: the words the artist says."
    assert snapshot(post) == before


@pytest.mark.parametrize("duration", [0, 61, "-3"])
def test_a_duration_outside_0_to_60_seconds_is_refused(duration, post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"version": 1, "duration": duration})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["duration_seconds"]
    assert snapshot(post) == before


def test_a_duration_that_is_not_a_number_is_refused(post, member):
    shot = post.shots.get(position=1)

    response = post_json(member, url(post, f"shots/{shot.pk}"), {"version": 1, "duration": "three"})

    assert response.status_code == 400
    assert response.json()["fields"] == {"duration_seconds": ["Duration must be a number of seconds."]}


def test_a_duration_of_nan_is_refused_not_a_crash(post, member):
    shot = post.shots.get(position=1)
    before = snapshot(post)

    response = post_json(member, url(post, f"shots/{shot.pk}"), '{"version": 1, "duration": NaN}')

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["duration_seconds"]
    assert snapshot(post) == before


@pytest.mark.parametrize("endpoint", ["create", "update", "delete", "reorder", "asset"])
def test_the_storyboard_of_a_post_in_review_cannot_be_edited(endpoint, producer, member):
    post = make_post(artist=make_artist(members=[producer]), shots=2, status=PostStatus.REVIEW)
    before = snapshot(post)

    response = call(member, endpoint, post)

    assert response.status_code == 400
    assert response.json()["error"] == (
        "The storyboard of a post that is in review cannot be edited. Move it back to draft first."
    )
    assert snapshot(post) == before


# --- review actions ---------------------------------------------------------------------------


@pytest.fixture
def post_in_review(producer):
    return make_post(artist=make_artist(members=[producer]), shots=1, status=PostStatus.REVIEW)


@pytest.fixture
def reviewer(post_in_review):
    rita = make_user(role=roles.REVIEWER, username="rita")
    post_in_review.artist.members.add(rita)
    return logged_in(rita)


def test_a_producer_may_not_approve(post_in_review, member):
    before = snapshot(post_in_review)

    response = post_json(member, url(post_in_review, "actions/approved"), {"version": 1})

    assert response.status_code == 403
    assert response.json() == {"error": "Only reviewers may approve or reject a post."}
    assert snapshot(post_in_review) == before


def test_a_reviewer_approves(post_in_review, reviewer):
    response = post_json(reviewer, url(post_in_review, "actions/approved"), {"version": 1, "note": "Lovely."})

    assert response.status_code == 200
    state = response.json()
    # Approved, and straight into production (approved -> rendering): two status moves, version 3.
    assert (state["post"]["status"], state["post"]["version"], state["post"]["updated_by"]) == ("rendering", 3, "rita")
    assert state["post"]["render_job"]["status"] == "queued"  # nothing to make first: an animatic
    moves = [(e.from_status, e.to_status, e.note) for e in post_in_review.events.filter(kind="status")]
    assert moves == [("review", "approved", "Lovely."), ("approved", "rendering", "")]


def test_approving_with_a_picture_workflow_that_leaves_a_placeholder_unbound_is_refused_naming_it(
    post_in_review, reviewer
):
    from tests.factories import make_shot_workflow

    workflow = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{POSITIVE_PROMPT}}"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    make_shot_workflow(kind=post_in_review.shots.get().kind, workflow=workflow, template_name="portrait")
    before = snapshot(post_in_review)

    response = post_json(reviewer, url(post_in_review, "actions/approved"), {"version": 1})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Shot 1 (A-roll), picture step, template portrait: "), error
    assert "POSITIVE_PROMPT" in error
    assert snapshot(post_in_review) == before  # not approved: nothing queued, nothing lost


def test_approving_when_a_mapped_template_was_deactivated_since_is_refused_naming_it(post_in_review, reviewer):
    from factory.models import WorkflowTemplate
    from tests.factories import make_shot_workflow

    make_shot_workflow(kind=post_in_review.shots.get().kind, template_name="portrait")
    WorkflowTemplate.objects.filter(name="portrait").update(active=False)  # ops retired it after mapping it
    before = snapshot(post_in_review)

    response = post_json(reviewer, url(post_in_review, "actions/approved"), {"version": 1})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Shot 1 (A-roll), picture step, template portrait: "), error
    assert "No active workflow template named" in error and "Posts > Shot workflows" in error
    assert snapshot(post_in_review) == before  # not a silent title card: nothing approved, nothing queued


def test_rejecting_without_feedback_is_refused(post_in_review, reviewer):
    before = snapshot(post_in_review)

    response = post_json(reviewer, url(post_in_review, "actions/rejected"), {"version": 1, "feedback": "  "})

    assert response.status_code == 400
    assert response.json()["fields"] == {"feedback": ["Say what to change: the feedback goes to the rewrite."]}
    assert snapshot(post_in_review) == before


def test_rejecting_with_feedback_stores_it_on_the_post(post_in_review, reviewer):
    response = post_json(
        reviewer, url(post_in_review, "actions/rejected"), {"version": 1, "feedback": "Shorter intro, please."}
    )

    assert response.status_code == 200
    state = response.json()
    assert (state["post"]["status"], state["post"]["feedback"]) == ("rejected", "Shorter intro, please.")
    post_in_review.refresh_from_db()
    assert post_in_review.feedback == "Shorter intro, please."


def test_submitting_a_post_without_shots_for_review_is_refused(producer, member):
    post = make_post(artist=make_artist(members=[producer]), shots=0)
    before = snapshot(post)

    response = post_json(member, url(post, "actions/review"), {"version": 1})

    assert response.status_code == 400
    assert response.json()["error"] == "A post needs at least one shot before it can be reviewed."
    assert snapshot(post) == before


def test_an_action_the_workflow_does_not_allow_is_a_readable_400(post, member):
    response = post_json(member, url(post, "actions/done"), {"version": 1})

    assert response.status_code == 400
    assert response.json()["error"].startswith("A post that is draft cannot become done")


def test_an_unknown_action_is_a_readable_400(post, member):
    response = post_json(member, url(post, "actions/publish"), {"version": 1})

    assert response.status_code == 400
    assert response.json()["error"] == "Unknown action “publish”."


def test_a_producer_is_not_offered_review_decisions(post_in_review, member):
    state = member.get(url(post_in_review, "state")).json()

    assert [a["name"] for a in state["actions"]] == ["draft"]


def test_a_reviewer_is_offered_approve_and_reject(post_in_review, reviewer):
    state = reviewer.get(url(post_in_review, "state")).json()

    assert [(a["name"], a["needs_feedback"]) for a in state["actions"]] == [
        ("approved", False),
        ("draft", False),
        ("rejected", True),
    ]


# --- pages ----------------------------------------------------------------------------------


def test_the_storyboard_page_renders_for_a_member(post, member):
    response = member.get(url(post))

    assert response.status_code == 200
    content = response.content.decode()
    assert "Market wrap" in content
    assert 'id="storyboard-state"' in content


@pytest.mark.parametrize("path", ["", "{post}/", "{post}/state"])
def test_pages_send_an_anonymous_visitor_to_log_in(path, post):
    response = Client().get("/posts/" + path.format(post=post.pk))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_storyboard_page_is_404_for_a_non_member(post):
    response = logged_in(make_user(role=roles.PRODUCER)).get(url(post))

    assert response.status_code == 404


def test_the_post_list_filters_by_artist_and_status_and_never_lists_foreign_posts(producer, member):
    mia_chen, leo_wu = make_artist(members=[producer]), make_artist(members=[producer])
    draft = make_post(artist=mia_chen, title="Mia draft")
    in_review = make_post(artist=mia_chen, title="Mia in review", status=PostStatus.REVIEW)
    leo_draft = make_post(artist=leo_wu, title="Leo draft")
    foreign_artist = make_artist()
    make_post(artist=foreign_artist, title="Somebody else's post", status=PostStatus.REVIEW)

    def listed(query: str = "") -> set[str]:
        response = member.get("/posts/" + query)
        assert response.status_code == 200
        assert "Somebody else&#x27;s post" not in response.content.decode()
        assert "Somebody else's post" not in response.content.decode()
        return {p.title for p in response.context["posts"]}

    assert listed() == {draft.title, in_review.title, leo_draft.title}
    assert listed(f"?artist={mia_chen.pk}") == {draft.title, in_review.title}
    assert listed("?status=review") == {in_review.title}
    assert listed(f"?artist={mia_chen.pk}&status=draft") == {draft.title}
    assert listed(f"?artist={foreign_artist.pk}") == set()
    assert listed("?status=nonsense") == {draft.title, in_review.title, leo_draft.title}


def test_the_post_list_ignores_an_artist_filter_that_is_not_a_number(post, member):
    response = member.get("/posts/?artist=²")

    assert response.status_code == 200
    assert {p.title for p in response.context["posts"]} == {"Market wrap"}


# --- query counts ------------------------------------------------------------------------------


def storyboard_with(producer, shots: int) -> Post:
    post = make_post(artist=make_artist(members=[producer]))
    for position in range(1, shots + 1):
        job = make_job(subject=f"post.{post.pk}/shot.{position}")
        make_shot(post=post, position=position, job=job, status=ShotStatus.PRODUCING)
    return post


# session, user, is_ops' groups, the post (joined), its shots (jobs joined), the user's and their groups'
# permissions (what the page may offer, cached for the request), the post's cost ledger (one grouped
# query, posts.costs): nothing per shot.
STATE_QUERIES = 8


@pytest.mark.parametrize("shots", [5, 30])
def test_the_state_endpoint_makes_the_same_few_queries_however_many_shots(
    shots, producer, member, django_assert_max_num_queries
):
    post = storyboard_with(producer, shots)

    with django_assert_max_num_queries(STATE_QUERIES):
        response = member.get(url(post, "state"))

    assert response.status_code == 200
    assert len(response.json()["shots"]) == shots
    assert all(s["job"]["status"] == JobStatus.QUEUED for s in response.json()["shots"])


# --- the push every write sends ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_edit_pushes_post_changed_to_the_posts_group():
    producer = make_user(role=roles.PRODUCER, username="pia")
    post = make_post(artist=make_artist(members=[producer]), shots=1)
    client = logged_in(producer)
    cookie = session_cookie(producer)

    async def scenario():
        socket = communicator(post.pk, cookie=cookie)
        connected, _ = await socket.connect()
        assert connected
        hello = await socket.receive_json_from(timeout=5)
        response = await database_sync_to_async(post_json)(
            client, url(post, "shots"), {"version": 1, "kind": "a_roll", "script": "Second line."}
        )
        heard = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return hello, response.status_code, heard

    hello, status, heard = async_to_sync(scenario)()

    assert hello == {"event": "hello", "post_id": post.pk}
    assert status == 200
    assert heard == {
        "event": "post.changed",
        "version": 2,
        "by": "pia",
        "kind": "storyboard",
        "note": "2 shots, 1 added",
    }
