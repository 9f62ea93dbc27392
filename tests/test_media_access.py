"""Who may fetch which media file: every kind of file x every role, sent by Django and by nginx.

One rule (posts.selectors.media_visible_to): a file is for the users who may see its artist (ops: every
file); a file of no artist, and one that no row names, is for ops only; anyone else gets the 404 of a
missing file, and nginx's X-Accel-Redirect header only after the same check. KINDS is checked against
the models: every FileField of every installed app needs a row, so a new upload field fails
`test_every_file_field_has_a_row` until someone says who may fetch its files.

Roles: X a producer who is a member of another artist only (an outsider), P a producer and R a reviewer
who are members of the artist, O ops. Anonymous visitors are sent to log in.

Then the signed links of webhook payloads (valid, expired, altered, for another file) and the API's
downloads, which take a token.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from artists.models import Artist, ArtistImage
from factory.models import JobKind
from mcn_site.lib import roles
from mcn_site.lib.downloads import signed_media_path
from posts.models import Post, Shot
from posts.selectors import MEDIA_REFERENCES, media_artists, media_visible_to
from tests.api.conftest import token_client
from tests.factories import (
    make_artist,
    make_job,
    make_job_output,
    make_media_file,
    make_post,
    make_user,
    make_voice,
    make_wardrobe,
    mp4_bytes,
    png_bytes,
    wav_bytes,
)

pytestmark = pytest.mark.django_db

ROLES = "XPRO"
MEMBERS = frozenset("PRO")
OPS_ONLY = frozenset("O")
ACCEL = "/protected-media/"


@dataclass(frozen=True)
class Kind:
    covers: tuple[str, str]  # the (model, FileField) whose files this row checks
    make: Callable  # (artist, post, shot) -> the stored name of a file only that field names
    allowed: frozenset[str]


def _saved(field_file, name: str, data: bytes) -> str:
    field_file.save(name, ContentFile(data))  # saves the row too
    return field_file.name


def _named(model, pk: int, field: str, name: str, data: bytes) -> str:
    """A file written where a worker writes it, and a row naming it (as the pipeline sets it)."""
    make_media_file(name, data)
    model.objects.filter(pk=pk).update(**{field: name})
    return name


def _job_output(*, link: Callable, kind: str = JobKind.COMFYUI, subject: str = "") -> str:
    job = make_job(subject=subject) if kind == JobKind.COMFYUI else make_job(kind=kind, template=None, subject=subject)
    output = make_job_output(job=job)
    link(job)
    return output.file.name


def _library_image(artist, post, shot) -> str:
    image = ArtistImage(artist=artist, kind=ArtistImage.Kind.POSE)
    return _saved(image.image, "pose.png", png_bytes(64, 64))


def _voice_sample(artist, post, shot) -> str:
    return _saved(artist.voice.sample_audio, "sample.wav", wav_bytes(3))


def _unused_voice_sample(artist, post, shot) -> str:
    return _saved(make_voice().sample_audio, "nobody.wav", wav_bytes(3))


def _wardrobe_preview(artist, post, shot) -> str:
    wardrobe = make_wardrobe()
    artist.allowed_wardrobes.add(wardrobe)
    return _saved(wardrobe.preview, "suit.png", png_bytes(64, 64))


def _unworn_wardrobe_preview(artist, post, shot) -> str:
    return _saved(make_wardrobe().preview, "cape.png", png_bytes(64, 64))


KINDS: dict[str, Kind] = {
    "face anchor": Kind(("artists.Artist", "face_anchor"), lambda a, p, s: a.face_anchor.name, MEMBERS),
    "full body": Kind(
        ("artists.Artist", "full_body"), lambda a, p, s: _saved(a.full_body, "body.png", png_bytes(64, 64)), MEMBERS
    ),
    "three-view sheet": Kind(
        ("artists.Artist", "three_view_sheet"),
        lambda a, p, s: _saved(a.three_view_sheet, "sheet.png", png_bytes(64, 64)),
        MEMBERS,
    ),
    "artist library image": Kind(("artists.ArtistImage", "image"), _library_image, MEMBERS),
    "voice sample": Kind(("artists.Voice", "sample_audio"), _voice_sample, MEMBERS),
    "voice sample no artist speaks with": Kind(("artists.Voice", "sample_audio"), _unused_voice_sample, OPS_ONLY),
    "wardrobe preview": Kind(("artists.Wardrobe", "preview"), _wardrobe_preview, MEMBERS),
    "wardrobe preview no artist may wear": Kind(("artists.Wardrobe", "preview"), _unworn_wardrobe_preview, OPS_ONLY),
    "music": Kind(("posts.Post", "music"), lambda a, p, s: _saved(p.music, "song.wav", wav_bytes(1)), MEMBERS),
    "final render": Kind(
        ("posts.Post", "final_video"),
        lambda a, p, s: _named(Post, p.pk, "final_video", f"posts/final/post-{p.pk}-job-7.mp4", mp4_bytes()),
        MEMBERS,
    ),
    "manual shot asset": Kind(
        ("posts.Shot", "manual_asset"),
        lambda a, p, s: _saved(s.manual_asset, "upload.png", png_bytes(64, 64)),
        MEMBERS,
    ),
    "generated picture": Kind(
        ("posts.Shot", "generated_asset"),
        lambda a, p, s: _named(Shot, s.pk, "generated_asset", f"shots/generated/p{p.pk}-1.png", png_bytes(8, 8)),
        MEMBERS,
    ),
    "generated clip": Kind(
        ("posts.Shot", "generated_clip"),
        lambda a, p, s: _named(Shot, s.pk, "generated_clip", f"shots/clips/p{p.pk}-1.mp4", mp4_bytes()),
        MEMBERS,
    ),
    "voice asset": Kind(
        ("posts.Shot", "voice_asset"),
        lambda a, p, s: _named(Shot, s.pk, "voice_asset", f"shots/voice/p{p.pk}-1.wav", wav_bytes(1)),
        MEMBERS,
    ),
    "factory output of a shot's picture job": Kind(
        ("factory.JobOutput", "file"),
        lambda a, p, s: _job_output(link=lambda job: Shot.objects.filter(pk=s.pk).update(job=job)),
        MEMBERS,
    ),
    "factory output of a shot's voice job": Kind(
        ("factory.JobOutput", "file"),
        lambda a, p, s: _job_output(
            kind=JobKind.TTS, link=lambda job: Shot.objects.filter(pk=s.pk).update(voice_job=job)
        ),
        MEMBERS,
    ),
    "factory output of a post's render job": Kind(
        ("factory.JobOutput", "file"),
        lambda a, p, s: _job_output(
            kind=JobKind.RENDER, link=lambda job: Post.objects.filter(pk=p.pk).update(render_job=job)
        ),
        MEMBERS,
    ),
    "factory output without artist": Kind(
        ("factory.JobOutput", "file"), lambda a, p, s: _job_output(link=lambda job: None), OPS_ONLY
    ),
    "file no row names": Kind(
        ("", ""), lambda a, p, s: make_media_file("shots/manual/stray.png", png_bytes(8, 8)), OPS_ONLY
    ),
}


def file_fields() -> set[tuple[str, str]]:
    """Every (model, field) of every installed app that stores a media file (ImageField included)."""
    return {
        (model._meta.label, field.name)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, models.FileField)
    }


def _field_of(model_label: str, lookup: str) -> tuple[str, str]:
    """The (model, field) a MEDIA_REFERENCES lookup such as "render_job__outputs__file" ends on."""
    model = apps.get_model(model_label)
    *path, last = lookup.split("__")
    for step in path:
        model = model._meta.get_field(step).related_model
    return model._meta.label, model._meta.get_field(last).name


def test_every_file_field_has_a_row():
    fields = file_fields()
    assert len(fields) >= 12
    missing = sorted(fields - {kind.covers for kind in KINDS.values()})
    assert not missing, f"FileFields without a row in KINDS (say who may fetch their files): {missing}"


def test_every_file_field_is_one_the_access_rule_looks_in():
    """A field missing from posts.selectors.MEDIA_REFERENCES would make its files ops-only without a word."""
    looked_in = {_field_of(model, lookup) for model, lookup, _artist in MEDIA_REFERENCES}
    missing = sorted(file_fields() - looked_in)
    assert not missing, f"FileFields that posts.selectors.MEDIA_REFERENCES does not look in: {missing}"


@pytest.fixture
def world():
    """An artist with a post and a shot, its member producer and reviewer, an outsider with an artist of their
    own, ops; a signed-in client per role and an anonymous one."""
    producer, reviewer = make_user(role=roles.PRODUCER), make_user(role=roles.REVIEWER)
    artist = make_artist(members=[producer, reviewer])
    post = make_post(artist=artist, shots=1)
    outsider = make_user(role=roles.PRODUCER)
    make_artist(members=[outsider])
    users = {"X": outsider, "P": producer, "R": reviewer, "O": make_user(role=roles.OPS)}
    clients = {}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    return artist, post, post.shots.get(), clients


def _bytes(name: str, settings) -> bytes:
    return (settings.MEDIA_ROOT / name).read_bytes()


@pytest.mark.parametrize("accel", [False, True], ids=["django", "nginx"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_who_may_fetch_it(kind, accel, world, client, settings):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL if accel else ""
    artist, post, shot, clients = world
    name = KINDS[kind].make(artist, post, shot)
    url = f"/media/{name}"

    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/?next=/media/")

    got = {}
    for role in ROLES:
        response = clients[role].get(url)
        got[role] = response.status_code
        if response.status_code != 200:
            assert "X-Accel-Redirect" not in response
            continue
        if accel:
            assert response["X-Accel-Redirect"] == ACCEL + name
            assert response.content == b""
        else:
            assert b"".join(response.streaming_content) == _bytes(name, settings)
    expected = {role: 200 if role in KINDS[kind].allowed else 404 for role in ROLES}
    assert got == expected, f"{kind} ({name}): expected {expected}, got {got}"


@pytest.mark.parametrize("accel", [False, True], ids=["django", "nginx"])
@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "..%2Fsecret.txt",
        "%2E%2E/secret.txt",
        "artists/../../secret.txt",
        "artists/faces/../../../secret.txt",
        "./artists/face.png",
        "artists//face.png",
        "artists/./face.png",
        "/artists/face.png",
        "artists\\..\\..\\secret.txt",
    ],
)
def test_no_path_reaches_a_file_outside_the_media_folder_or_by_another_name(path, accel, world, settings):
    """`..` out of MEDIA_ROOT is a 404 for everyone, ops too; so is another spelling of a stored name, which
    would otherwise be looked up under a name no row stores."""
    settings.MEDIA_ACCEL_REDIRECT = ACCEL if accel else ""
    (settings.MEDIA_ROOT.parent / "secret.txt").write_text("the .env")
    make_media_file("artists/face.png")
    _artist, _post, _shot, clients = world
    for role in ROLES:
        response = clients[role].get(f"/media/{path}")
        assert response.status_code == 404, (role, path)
        assert "X-Accel-Redirect" not in response
    assert clients["O"].get("/media/artists/face.png").status_code == 200  # the canonical name works


def test_a_foreign_file_is_the_same_404_as_a_missing_one(world):
    artist, _post, _shot, clients = world
    foreign = clients["X"].get(f"/media/{artist.face_anchor.name}")
    missing = clients["X"].get("/media/artists/faces/no-such-face.png")
    assert foreign.status_code == missing.status_code == 404
    assert foreign["Content-Type"] == missing["Content-Type"]


def test_membership_is_read_on_every_request(world):
    artist, _post, _shot, clients = world
    url = f"/media/{artist.face_anchor.name}"
    assert clients["P"].get(url).status_code == 200
    artist.members.clear()
    assert clients["P"].get(url).status_code == 404


def test_a_voice_shared_by_two_artists_is_heard_by_the_members_of_either(world):
    artist, _post, _shot, clients = world
    name = _voice_sample(artist, None, None)
    outsider = clients["X"].get(f"/media/{name}")
    assert outsider.status_code == 404
    make_artist(voice=artist.voice, members=[make_user()])  # not the outsider's: still a 404
    assert clients["X"].get(f"/media/{name}").status_code == 404
    other = make_user()
    make_artist(voice=artist.voice, members=[other])
    extra = Client()
    extra.force_login(other)
    assert extra.get(f"/media/{name}").status_code == 200


def test_the_check_is_a_few_indexed_queries_whatever_the_kind(world, settings):
    artist, post, shot, _clients = world
    member = artist.members.get(groups__name=roles.PRODUCER)
    names = [KINDS[kind].make(artist, post, shot) for kind in sorted(KINDS)]
    for name in names:
        with CaptureQueriesContext(connection) as queries:
            media_visible_to(user=member, name=name)
        assert len(queries) <= 3, [q["sql"] for q in queries]


def test_the_lookup_of_a_file_s_artists_scans_no_table(world):
    """Every reference is an indexed lookup (the *_idx indexes on the file columns): no full scan of the
    shots or job outputs on any media request, however many there are."""
    artist, _post, _shot, _clients = world
    member = artist.members.get(groups__name=roles.PRODUCER)
    query = Artist.objects.filter(members=member, pk__in=media_artists(name="posts/final/post-1-job-1.mp4"))
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # tiny test tables: ask whether an index can serve
            cursor.execute(f"EXPLAIN {sql}", params)
            scans = [row[0] for row in cursor.fetchall() if "Seq Scan" in row[0]]
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            scans = [row[-1] for row in cursor.fetchall() if row[-1].startswith("SCAN ")]
    assert not scans, scans


# --------------------------------------------------------------------------- signed links (webhook payloads)


@pytest.fixture
def video(world):
    _artist, post, _shot, _clients = world
    return _named(Post, post.pk, "final_video", f"posts/final/post-{post.pk}-job-9.mp4", mp4_bytes())


@pytest.mark.parametrize("accel", [False, True], ids=["django", "nginx"])
def test_a_signed_link_opens_its_file_without_a_login(video, client, settings, accel):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL if accel else ""
    link, expires_at = signed_media_path(video)
    assert link.startswith(f"/media/{video}?expires=")
    assert expires_at - timezone.now() > timedelta(hours=23, minutes=59)
    response = client.get(link)
    assert response.status_code == 200
    if accel:
        assert response["X-Accel-Redirect"] == ACCEL + video
    else:
        assert b"".join(response.streaming_content) == mp4_bytes()


def _refused(response, words: str) -> None:
    assert response.status_code == 403
    assert "X-Accel-Redirect" not in response
    error = response.json()["error"]
    assert error["code"] == "bad_link" and words in error["message"], error


def test_an_expired_signed_link_is_refused_with_the_time_it_expired(video, client, settings):
    settings.MCN_SIGNED_URL_SECONDS = 3600
    link, expires_at = signed_media_path(video, now=timezone.now() - timedelta(seconds=3601))
    _refused(client.get(link), f"expired at {expires_at.isoformat()}")
    fresh, _ = signed_media_path(video, now=timezone.now() - timedelta(seconds=3500))
    assert client.get(fresh).status_code == 200


@pytest.mark.parametrize("accel", [False, True], ids=["django", "nginx"])
def test_an_altered_signed_link_is_refused(video, client, settings, accel):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL if accel else ""
    link, _ = signed_media_path(video)
    path, query = link.split("?")
    expires, signature = (part.split("=", 1)[1] for part in query.split("&"))
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    _refused(client.get(f"{path}?expires={expires}&signature={flipped}"), "signature does not match")
    later = int(expires) + 86400  # a longer life, with the signature of the shorter one
    _refused(client.get(f"{path}?expires={later}&signature={signature}"), "signature does not match")
    _refused(client.get(f"{path}?signature={signature}"), "incomplete or altered")
    _refused(client.get(f"{path}?expires=soon&signature={signature}"), "incomplete or altered")


def test_a_signed_link_opens_no_other_file(video, world, client):
    artist, _post, _shot, _clients = world
    _link, _ = signed_media_path(video)
    query = _link.split("?")[1]
    _refused(client.get(f"/media/{artist.face_anchor.name}?{query}"), "signature does not match")
    _refused(client.get(f"/media/posts/final/../../{video}?{query}"), "incomplete or altered")


def test_a_signed_link_to_a_file_gone_since_is_a_404(video, client, settings):
    link, _ = signed_media_path(video)
    (settings.MEDIA_ROOT / video).unlink()
    assert client.get(link).status_code == 404


# --------------------------------------------------------------------------- API downloads (token)


@pytest.fixture
def produced(world):
    """The world's post rendered, its shot with a generated picture and a voice."""
    _artist, post, shot, _clients = world
    _named(Post, post.pk, "final_video", f"posts/final/post-{post.pk}-job-3.mp4", mp4_bytes())
    _named(Shot, shot.pk, "generated_asset", f"factory/1/1/shot-{shot.pk}.png", png_bytes(8, 8))
    _named(Shot, shot.pk, "voice_asset", f"factory/tts/job-{shot.pk}-1.wav", wav_bytes(1))
    return post, shot


def _tokens(post) -> dict:
    members = {user.groups.get().name: user for user in post.artist.members.all()}
    outsider = make_user(role=roles.PRODUCER)
    make_artist(members=[outsider])
    users = {"X": outsider, "P": members[roles.PRODUCER], "R": members[roles.REVIEWER]}
    return {role: token_client(user) for role, user in {**users, "O": make_user(role=roles.OPS)}.items()}


@pytest.mark.parametrize("accel", [False, True], ids=["django", "nginx"])
def test_a_token_downloads_a_post_video_and_a_shot_picture_and_voice(produced, settings, accel):
    settings.MEDIA_ACCEL_REDIRECT = ACCEL if accel else ""
    post, shot = produced
    shot.refresh_from_db()
    downloads = {
        f"/api/v1/posts/{post.pk}/video": (Post.objects.get(pk=post.pk).final_video.name, f"post-{post.pk}.mp4"),
        f"/api/v1/shots/{shot.pk}/picture": (shot.generated_asset.name, f"shot-{shot.pk}-picture.png"),
        f"/api/v1/shots/{shot.pk}/voice": (shot.voice_asset.name, f"shot-{shot.pk}-voice.wav"),
    }
    clients = _tokens(post)
    for url, (name, filename) in downloads.items():
        for role in ROLES:
            # Integrations ask for what they expect: the file comes whatever Accept says.
            response = clients[role].get(url, HTTP_ACCEPT="video/mp4, audio/*, image/*")
            if role == "X":
                assert response.status_code == 404, (url, role)
                assert response.json()["error"]["code"] == "not_found"
                assert "X-Accel-Redirect" not in response
                continue
            assert response.status_code == 200, (url, role, response.content[:200])
            assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
            if accel:
                assert response["X-Accel-Redirect"] == ACCEL + name
            else:
                assert b"".join(response.streaming_content) == _bytes(name, settings)


def test_a_shot_picture_download_is_the_manual_asset_when_there_is_one(produced, settings):
    post, shot = produced
    name = _saved(Shot.objects.get(pk=shot.pk).manual_asset, "mine.png", png_bytes(16, 16))
    response = _tokens(post)["P"].get(f"/api/v1/shots/{shot.pk}/picture")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == _bytes(name, settings)


def test_a_download_of_what_is_not_made_yet_is_a_404_that_says_so(world):
    _artist, post, shot, _clients = world
    api = _tokens(post)["P"]
    for url, message in [
        (f"/api/v1/posts/{post.pk}/video", "This post has no final video yet."),
        (f"/api/v1/shots/{shot.pk}/picture", "This shot has no picture yet."),
        (f"/api/v1/shots/{shot.pk}/voice", "This shot has no voice yet."),
    ]:
        response = api.get(url)
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "not_found", "message": message, "fields": {}}


def test_a_download_without_a_token_is_a_401_not_a_login_page(produced, client):
    post, shot = produced
    for url in (f"/api/v1/posts/{post.pk}/video", f"/api/v1/shots/{shot.pk}/picture", f"/api/v1/shots/{shot.pk}/voice"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"]
