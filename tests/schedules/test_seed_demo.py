import io
import re
from decimal import Decimal

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from PIL import Image

from artists.models import Artist, ArtistImage, Source, Voice, Wardrobe
from artists.selectors import artists_visible_to
from mcn_site.lib import roles
from posts.models import Post, PostEvent, PostStatus, Shot, ShotKind
from schedules.models import Schedule

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def printed_password(output: str, username: str) -> str:
    match = re.search(rf"username: {username}\s+password: (\S+)", output)
    assert match, output
    return match.group(1)


def snapshot() -> dict[str, list[dict]]:
    """Every row of every table, auto-created M2M tables included (unmanaged and proxy models have none)."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values())
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


def media_files() -> list[str]:
    root = settings.MEDIA_ROOT
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_seed_demo_creates_the_described_demo():
    seed()

    assert User.objects.count() == 3
    for username, role in [("producer", roles.PRODUCER), ("reviewer", roles.REVIEWER), ("ops", roles.OPS)]:
        user = User.objects.get(username=username)
        assert user.is_staff
        assert list(user.groups.values_list("name", flat=True)) == [role]
    assert Voice.objects.count() == 2
    assert Voice.objects.filter(speaker_id="").exclude(sample_audio="").exclude(sample_transcription="").count() == 1
    assert Wardrobe.objects.count() == 4
    assert sorted(Source.objects.values_list("category", flat=True)) == ["all", "finance", "tech"]
    assert Artist.objects.count() == 2
    assert ArtistImage.objects.count() == 4
    assert Schedule.objects.count() == 2
    assert Post.objects.count() == 2
    for artist in Artist.objects.all():
        assert artist.allowed_wardrobes.count() == 2
        assert artist.default_sources.exists()
        assert sorted(artist.members.values_list("username", flat=True)) == ["producer", "reviewer"]
        assert artist.full_body
        assert sorted(artist.images.values_list("kind", flat=True)) == ["backdrop", "pose"]


def test_every_seeded_row_passes_model_validation():
    seed()

    for model in (Voice, Wardrobe, Source, Artist, ArtistImage, Schedule, Post, Shot):
        for row in model.objects.all():
            row.full_clean()


def test_face_anchors_are_768_pixel_square_pngs():
    seed()

    for artist in Artist.objects.all():
        artist.full_clean()  # runs SquareImageValidator on the stored file
        with artist.face_anchor.open("rb"), Image.open(artist.face_anchor) as img:
            assert (img.format, img.size) == ("PNG", (768, 768))


def test_schedules_are_a_weekly_and_a_monthly_routine_in_shanghai_time():
    seed()

    weekly = Schedule.objects.get(artist__slug="luna-chen")
    assert (weekly.kind, weekly.period) == (Schedule.Kind.ROUTINE, Schedule.Period.WEEKLY)
    assert weekly.weekdays == ["monday", "wednesday", "friday"]
    assert weekly.times == ["09:00", "18:30"]
    monthly = Schedule.objects.get(artist__slug="kai-nova")
    assert monthly.period == Schedule.Period.MONTHLY
    assert (monthly.month_days, monthly.times) == ([1, 15], ["12:00"])
    assert {weekly.timezone, monthly.timezone} == {"Asia/Shanghai"}


def test_each_post_wears_one_of_its_artists_allowed_wardrobes():
    seed()

    for post in Post.objects.select_related("artist", "wardrobe"):
        assert post.wardrobe is not None
        assert post.artist.allowed_wardrobes.filter(pk=post.wardrobe_id).exists()


def test_first_artists_post_is_a_draft_with_six_shots_and_shots_1_and_4_locked():
    seed()

    post = Post.objects.get(artist__slug="luna-chen")
    shots = list(post.shots.order_by("position"))

    assert post.status == PostStatus.DRAFT
    assert [s.position for s in shots] == [1, 2, 3, 4, 5, 6]
    assert [s.position for s in shots if s.locked] == [1, 4]
    assert {s.kind for s in shots} == {ShotKind.A_ROLL, ShotKind.B_ROLL, ShotKind.PRODUCT}
    assert Decimal("28") <= sum(s.duration_seconds for s in shots) <= Decimal("32")
    assert list(post.events.values_list("kind", flat=True)) == [PostEvent.Kind.CREATED, PostEvent.Kind.STORYBOARD]


def test_second_artists_post_waits_for_review_with_its_trail():
    seed()

    post = Post.objects.get(artist__slug="kai-nova")
    producer = User.objects.get(username="producer")

    assert post.status == PostStatus.REVIEW
    assert post.shots.exists()
    events = list(post.events.all())
    assert [e.kind for e in events] == [PostEvent.Kind.CREATED, PostEvent.Kind.STORYBOARD, PostEvent.Kind.STATUS]
    assert (events[-1].from_status, events[-1].to_status, events[-1].actor) == ("draft", "review", producer)
    assert list(Post.objects.awaiting_review()) == [post]


def test_demo_producer_logs_in_with_the_printed_password_and_sees_both_artists():
    output = seed("--url", "http://demo.test/admin/")

    assert "http://demo.test/admin/" in output
    password = printed_password(output, "producer")
    assert password == "mcn-demo-2026"
    assert Client().login(username="producer", password=password)
    producer = User.objects.get(username="producer")
    assert set(artists_visible_to(user=producer).values_list("slug", flat=True)) == {"luna-chen", "kai-nova"}


def test_password_option_beats_the_environment(monkeypatch):
    monkeypatch.setenv("MCN_DEMO_PASSWORD", "from-the-env-1")

    output = seed("--password", "from-the-flag-1")

    assert printed_password(output, "reviewer") == "from-the-flag-1"
    assert Client().login(username="reviewer", password="from-the-flag-1")


def test_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MCN_DEMO_PASSWORD", "from-the-env-1")

    output = seed()

    assert printed_password(output, "ops") == "from-the-env-1"
    assert Client().login(username="ops", password="from-the-env-1")


def test_quiet_prints_nothing():
    assert seed("--quiet") == ""
    assert Artist.objects.count() == 2


def test_running_twice_creates_and_changes_nothing():
    seed()
    before, files_before = snapshot(), media_files()

    output = seed()

    assert snapshot() == before
    assert media_files() == files_before
    assert "Created: nothing." in output


def test_running_again_keeps_a_producers_edits():
    seed()
    luna = Artist.objects.get(slug="luna-chen")
    Artist.objects.filter(pk=luna.pk).update(persona="Edited by a producer.")
    luna.allowed_wardrobes.remove(Wardrobe.objects.get(name="Ivory Silk Blouse"))
    producer = User.objects.get(username="producer")
    producer.set_password("my-own-password-1")
    producer.save()

    output = seed()

    luna.refresh_from_db()
    assert luna.persona == "Edited by a producer."
    assert list(luna.allowed_wardrobes.values_list("name", flat=True)) == ["Navy Business Suit"]
    assert Client().login(username="producer", password="my-own-password-1")
    assert "mcn-demo-2026" not in output


def test_a_deleted_post_is_made_again_for_its_artist():
    seed()
    post = Post.objects.get(artist__slug="kai-nova")
    post.delete()

    seed()

    again = Post.objects.get(artist__slug="kai-nova")
    assert (again.title, again.status, again.shots.count()) == (post.title, PostStatus.REVIEW, 4)
