"""/api/v1/posts, shots and post-events: the storyboard page's services, through the API."""

import threading

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from factory.models import Job, JobKind, JobStatus
from mcn_site.lib import roles
from posts.models import Post, PostEvent, PostStatus, Shot
from tests.api.conftest import token_client
from tests.factories import make_artist, make_job, make_post, make_shot, make_user, mp4_bytes, png_bytes

pytestmark = pytest.mark.django_db


def act(client, post, action: str, data=None, **headers):
    return client.post(f"/api/v1/posts/{post.pk}/{action}", data or {}, format="json", headers=headers)


# --- posts ------------------------------------------------------------------------------------


def test_create_a_draft_for_a_member_artist(api, artist, producer):
    response = api.post("/api/v1/posts/", {"title": "Rates explained", "artist": artist.pk, "brief": "Why."})
    assert response.status_code == 201, response.content
    body = response.json()
    post = Post.objects.get(pk=body["id"])
    assert (post.status, post.updated_by, body["shots"]) == (PostStatus.DRAFT, producer, [])
    assert response.headers["ETag"] == f'"v{post.version}"'
    assert PostEvent.objects.filter(post=post, kind=PostEvent.Kind.CREATED, actor=producer).exists()


def test_create_for_a_foreign_artist_reads_as_an_unknown_artist(api):
    foreign = make_artist()
    response = api.post("/api/v1/posts/", {"title": "x", "artist": foreign.pk})
    assert response.status_code == 400
    unknown = api.post("/api/v1/posts/", {"title": "x", "artist": 999999})
    assert response.json()["error"]["fields"]["artist"] == [
        m.replace("999999", str(foreign.pk)) for m in unknown.json()["error"]["fields"]["artist"]
    ]
    assert not Post.objects.exists()


def test_list_is_scoped_filtered_and_ordered(api, artist):
    other = make_artist(members=[api.user])
    draft = make_post(artist=artist, title="B")
    review = make_post(artist=artist, title="A", status=PostStatus.REVIEW)
    elsewhere = make_post(artist=other)
    make_post(artist=make_artist())  # not a member: never listed
    ids = lambda r: [p["id"] for p in r.json()["results"]]  # noqa: E731
    assert sorted(ids(api.get("/api/v1/posts/"))) == sorted([draft.pk, review.pk, elsewhere.pk])
    assert ids(api.get(f"/api/v1/posts/?artist={artist.pk}&status=review")) == [review.pk]
    assert ids(api.get(f"/api/v1/posts/?artist={artist.pk}&ordering=title")) == [review.pk, draft.pk]
    later = (timezone.now() + timezone.timedelta(hours=1)).isoformat()
    assert ids(api.get("/api/v1/posts/", {"created_after": later})) == []
    assert api.get("/api/v1/posts/?status=nope").status_code == 400
    assert api.get("/api/v1/posts/?page_size=1").json()["count"] == 3


def test_detail_nests_the_shots_in_playing_order_with_an_etag(api, artist):
    post = make_post(artist=artist, shots=3)
    Shot.objects.filter(post=post, position=1).update(script="First.")
    response = api.get(f"/api/v1/posts/{post.pk}/")
    assert [s["position"] for s in response.json()["shots"]] == [1, 2, 3]
    assert response.json()["shots"][0]["script"] == "First."
    assert response.headers["ETag"] == '"v1"'


def test_edit_with_if_match_and_a_stale_etag_is_412(api, artist):
    post = make_post(artist=artist)
    ok = api.patch(f"/api/v1/posts/{post.pk}/", {"title": "New"}, format="json", headers={"If-Match": '"v1"'})
    assert ok.status_code == 200 and ok.json()["title"] == "New" and ok.headers["ETag"] == '"v2"'
    stale = api.patch(f"/api/v1/posts/{post.pk}/", {"title": "Old"}, format="json", headers={"If-Match": '"v1"'})
    assert stale.status_code == 412
    assert stale.json()["error"] | {} == stale.json()["error"]
    assert stale.json()["error"]["current_version"] == 2
    assert Post.objects.get(pk=post.pk).title == "New"


def test_edit_with_a_stale_body_version_is_409_naming_who(api, artist):
    post = make_post(artist=artist)
    token_client(api.user).patch(f"/api/v1/posts/{post.pk}/", {"brief": "Mine.", "version": 1}, format="json")
    response = api.patch(f"/api/v1/posts/{post.pk}/", {"brief": "Theirs.", "version": 1}, format="json")
    error = response.json()["error"]
    assert response.status_code == 409 and error["code"] == "stale" and error["current_version"] == 2
    assert api.user.username in error["message"]


def test_edit_without_any_version_is_refused(api, artist):
    post = make_post(artist=artist)
    response = api.patch(f"/api/v1/posts/{post.pk}/", {"title": "x"}, format="json")
    error = response.json()["error"]
    assert response.status_code == 428 and error["code"] == "precondition_required" and "version" in error["fields"]


# --- shots ------------------------------------------------------------------------------------


def test_shot_create_update_lock_reorder_delete(api, artist):
    post = make_post(artist=artist, shots=1)
    created = api.post(f"/api/v1/posts/{post.pk}/shots/", {"script": "Hi.", "position": 1, "version": 1}, format="json")
    assert created.status_code == 201, created.content
    shot = created.json()
    assert (shot["position"], shot["post_version"]) == (1, 2)
    edited = api.patch(
        f"/api/v1/shots/{shot['id']}/", {"script": "Hello."}, format="json", headers={"If-Match": '"v2"'}
    )
    assert edited.json()["script"] == "Hello." and edited.headers["ETag"] == '"v3"'
    locked = api.post(f"/api/v1/shots/{shot['id']}/lock", {"version": 3}, format="json")
    assert locked.json()["locked"] is True
    refused = api.patch(f"/api/v1/shots/{shot['id']}/", {"script": "No.", "version": 4}, format="json")
    assert refused.status_code == 400 and "locked" in refused.json()["error"]["message"]
    api.post(f"/api/v1/shots/{shot['id']}/unlock", {"version": 4}, format="json")
    other = Shot.objects.get(post=post, position=2)
    order = [other.pk, shot["id"]]
    reordered = api.post(f"/api/v1/posts/{post.pk}/shots/reorder", {"order": order, "version": 5}, format="json")
    assert [s["id"] for s in reordered.json()["shots"]] == order
    deleted = api.delete(f"/api/v1/shots/{other.pk}/", headers={"If-Match": '"v6"'})
    assert deleted.status_code == 204 and deleted.headers["ETag"] == '"v7"'
    assert list(Shot.objects.filter(post=post).values_list("pk", "position")) == [(shot["id"], 1)]


def test_revoice_queues_a_new_take_of_a_locked_shots_voice(api, artist, settings):
    settings.COSYVOICE_URL = "http://127.0.0.1:9"  # queued only, never sent
    post = make_post(artist=artist, shots=1)
    shot = post.shots.get()
    Shot.objects.filter(pk=shot.pk).update(locked=True)

    response = api.post(f"/api/v1/shots/{shot.pk}/revoice", format="json")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert (job.kind, job.status, response.json()["voice_job"]) == (JobKind.TTS, JobStatus.QUEUED, job.pk)
    assert job.subject.startswith(f"post.{post.pk}/shot.{shot.pk}/voice@")
    again = api.post(f"/api/v1/shots/{shot.pk}/revoice", format="json")
    assert again.status_code == 400 and "being made already" in again.json()["error"]["message"]
    assert Job.objects.count() == 1


def test_a_foreign_shot_is_404(api):
    shot = make_shot(post=make_post(artist=make_artist()), position=1)
    assert api.patch(f"/api/v1/shots/{shot.pk}/", {"script": "x", "version": 1}, format="json").status_code == 404
    assert api.post(f"/api/v1/shots/{shot.pk}/lock", {"version": 1}, format="json").status_code == 404


def test_upload_is_judged_by_content(api, artist):
    post = make_post(artist=artist, shots=1)
    shot = post.shots.get()
    fake = SimpleUploadedFile("cat.png", b"MZ\x90\x00 not an image at all", content_type="image/png")
    response = api.post(f"/api/v1/shots/{shot.pk}/asset", {"manual_asset": fake, "version": 1}, format="multipart")
    assert response.status_code == 400 and "manual_asset" in response.json()["error"]["fields"]
    video = SimpleUploadedFile("clip.bin", mp4_bytes(), content_type="application/octet-stream")
    response = api.post(f"/api/v1/shots/{shot.pk}/asset", {"manual_asset": video, "version": 1}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json()["manual_asset"].endswith(".bin")
    removed = api.delete(f"/api/v1/shots/{shot.pk}/asset", {"version": 2}, format="json")
    assert removed.json()["manual_asset"] is None


def test_an_oversize_upload_is_a_400_field_error(api, artist, settings):
    settings.MCN_MAX_IMAGE_BYTES = 100
    shot = make_post(artist=artist, shots=1).shots.get()
    big = SimpleUploadedFile("big.png", png_bytes(256, 256), content_type="image/png")
    response = api.post(f"/api/v1/shots/{shot.pk}/asset", {"manual_asset": big, "version": 1}, format="multipart")
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]["manual_asset"][0]


# --- actions ------------------------------------------------------------------------------------


def test_generate_queues_the_director_and_returns_its_job(api, artist):
    post = make_post(artist=artist)
    response = act(api, post, "generate", {"feedback": "Shorter."})
    assert response.status_code == 200, response.content
    [job_id] = response.json()["job_ids"]
    job = Job.objects.get(pk=job_id)
    assert (job.kind, job.params["feedback"], job.subject) == (JobKind.LLM, "Shorter.", f"post.{post.pk}/storyboard")
    assert response.json()["post"]["id"] == post.pk


def test_submit_approve_flow_returns_the_production_jobs(api, artist):
    post = make_post(artist=artist, shots=2)
    submitted = act(api, post, "submit", {"version": 1})
    assert submitted.json()["post"]["status"] == "review" and submitted.json()["job_ids"] == []
    assert act(api, post, "approve").status_code == 403  # producers do not approve
    reviewer = make_user(role=roles.REVIEWER)
    artist.members.add(reviewer)
    approved = act(token_client(reviewer), post, "approve", headers={"If-Match": '"v2"'})
    assert approved.status_code == 200, approved.content
    assert approved.json()["post"]["status"] == "rendering"
    job_ids = approved.json()["job_ids"]
    assert job_ids and set(job_ids) == set(Job.objects.values_list("pk", flat=True))
    assert Post.objects.get(pk=post.pk).render_job_id in job_ids


def test_reject_needs_feedback(db):
    reviewer = make_user(role=roles.REVIEWER)
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, status=PostStatus.REVIEW)
    client = token_client(reviewer)
    response = act(client, post, "reject", {"feedback": ""})
    assert response.status_code == 400 and "feedback" in response.json()["error"]["fields"]
    rejected = act(client, post, "reject", {"feedback": "Brighter, please."})
    assert (
        rejected.json()["post"]["status"] == "rejected" and rejected.json()["post"]["feedback"] == "Brighter, please."
    )


def test_a_refused_transition_is_a_400_with_its_code(api, artist):
    post = make_post(artist=artist)  # a draft cannot be rendered
    response = act(api, post, "render")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_transition"


def test_cancel_cancels_the_posts_unfinished_jobs(api, artist):
    post = make_post(artist=artist, shots=1, status=PostStatus.RENDERING)
    queued = make_job(subject=f"post.{post.pk}/shot.1/picture@0123456789abcdef")
    done = make_job(status=JobStatus.SUCCEEDED)
    clip = make_job(subject=f"post.{post.pk}/shot.1/motion@0123456789abcdef")
    Shot.objects.filter(post=post).update(job=queued, voice_job=done, clip_job=clip)
    unrelated = make_job()
    response = act(api, post, "cancel")
    assert response.status_code == 200, response.content
    assert response.json()["job_ids"] == [queued.pk, clip.pk]
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {
        queued.pk: JobStatus.CANCELLED,
        done.pk: JobStatus.SUCCEEDED,
        clip.pk: JobStatus.CANCELLED,
        unrelated.pk: JobStatus.QUEUED,
    }


def test_an_idempotency_key_replays_the_first_answer_and_queues_nothing_new(api, artist):
    post = make_post(artist=artist)
    first = act(api, post, "generate", {}, **{"Idempotency-Key": "abc-1"})
    again = act(api, post, "generate", {}, **{"Idempotency-Key": "abc-1"})
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert Job.objects.count() == 1
    other_body = act(api, post, "generate", {"feedback": "different"}, **{"Idempotency-Key": "abc-1"})
    assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "idempotency_mismatch"
    fresh = act(api, post, "generate", {}, **{"Idempotency-Key": "abc-2"})
    assert fresh.status_code == 200 and "Idempotent-Replayed" not in fresh.headers
    # A new request, but the director is still on the first one: its job again, nothing queued twice.
    assert fresh.json()["job_ids"] == first.json()["job_ids"] and Job.objects.count() == 1
    bad_key = act(api, post, "generate", {}, **{"Idempotency-Key": "with space"})
    assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json()["error"]["fields"]


def test_a_failed_request_does_not_keep_its_key(api, artist):
    post = make_post(artist=artist)
    assert act(api, post, "submit", {}, **{"Idempotency-Key": "k"}).status_code == 400  # no shots yet
    make_shot(post=post, position=1)
    assert act(api, post, "submit", {}, **{"Idempotency-Key": "k"}).json()["post"]["status"] == "review"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_start_one_job(live_server):
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]))
    key = token_client(producer)._credentials["HTTP_AUTHORIZATION"]
    barrier, answers = threading.Barrier(4), []

    def call():
        barrier.wait()
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            answers.append(
                client.post(
                    f"/api/v1/posts/{post.pk}/generate",
                    json={},
                    headers={"Authorization": key, "Idempotency-Key": "same-key"},
                )
            )

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Job.objects.filter(kind=JobKind.LLM).count() == 1
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 409} and codes.count(200) >= 1, [r.text for r in answers]
    first = [r for r in answers if r.status_code == 200 and "Idempotent-Replayed" not in r.headers]
    assert len(first) == 1
    for r in answers:
        if r.status_code == 200:
            assert r.json()["job_ids"] == first[0].json()["job_ids"]
        else:
            assert r.json()["error"]["code"] == "in_progress"


def test_generate_is_throttled_per_token(api, artist, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"expensive": "2/min"}}
    post = make_post(artist=artist)
    assert [act(api, post, "generate").status_code for _ in range(2)] == [200, 200]
    throttled = act(api, post, "generate")
    assert throttled.status_code == 429
    error = throttled.json()["error"]
    assert error["code"] == "throttled" and error["retry_after"] > 0
    assert int(throttled.headers["Retry-After"]) > 0
    assert act(token_client(api.user), post, "generate").status_code == 200  # another token has its own budget
    assert act(api, post, "submit", {}).status_code != 429  # cheap actions are not throttled


# --- events -------------------------------------------------------------------------------------


def test_post_events_list_a_posts_trail(api, artist):
    post = make_post(artist=artist)
    api.patch(f"/api/v1/posts/{post.pk}/", {"title": "Renamed", "version": 1}, format="json")
    foreign = make_post(artist=make_artist())
    PostEvent.objects.create(post=foreign, kind=PostEvent.Kind.CREATED)
    events = api.get(f"/api/v1/post-events/?post={post.pk}").json()["results"]
    assert [e["kind"] for e in events] == ["edited"] and events[0]["actor"] == api.user.username
    assert api.get(f"/api/v1/post-events/?post={foreign.pk}").json()["results"] == []
