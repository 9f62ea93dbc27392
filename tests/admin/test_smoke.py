"""Every admin page a producer console user lands on renders, and the busy lists stay cheap."""

import pytest
from django.contrib import admin
from django.urls import reverse

from mcn_site.lib import roles
from posts.models import PostStatus
from tests.admin import login
from tests.factories import (
    make_artist,
    make_post,
    make_postevent,
    make_schedule,
    make_source,
    make_user,
    make_voice,
    make_wardrobe,
)

pytestmark = pytest.mark.django_db

REGISTERED = sorted(f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry)
# What ops work with every day; each must be on their admin index and open.
OPS_MODELS = {
    "artists.artist",
    "artists.voice",
    "artists.wardrobe",
    "artists.source",
    "schedules.schedule",
    "posts.post",
    "posts.postevent",
}


def _url(label: str, view: str) -> str:
    app_label, model_name = label.split(".")
    return reverse(f"admin:{app_label}_{model_name}_{view}")


def _model_admin(label: str):
    return next(ma for m, ma in admin.site._registry.items() if f"{m._meta.app_label}.{m._meta.model_name}" == label)


def _some_data():
    wardrobe = make_wardrobe()
    artist = make_artist(wardrobes=[wardrobe])
    artist.default_sources.add(make_source())
    post = make_post(artist=artist, shots=2, wardrobe=wardrobe)
    make_postevent(post=post)
    make_schedule(artist=artist)
    return artist, post


def test_the_expected_models_are_registered():
    assert OPS_MODELS | {"auth.user", "auth.group"} <= set(REGISTERED)


@pytest.mark.parametrize("label", REGISTERED)
def test_every_changelist_answers_200_for_a_superuser(label):
    _some_data()
    client = login(make_user(role=None, is_superuser=True))
    assert client.get(_url(label, "changelist")).status_code == 200


@pytest.mark.parametrize("label", REGISTERED)
def test_every_add_page_answers_200_for_a_superuser_where_adding_is_allowed(label, rf):
    superuser = make_user(role=None, is_superuser=True)
    request = rf.get("/")
    request.user = superuser
    expected = 200 if _model_admin(label).has_add_permission(request) else 403
    assert login(superuser).get(_url(label, "add")).status_code == expected


@pytest.mark.parametrize("label", sorted(OPS_MODELS))
def test_every_product_changelist_answers_200_for_ops(label):
    _some_data()
    assert login(make_user(role=roles.OPS)).get(_url(label, "changelist")).status_code == 200


@pytest.mark.parametrize("label", sorted(OPS_MODELS - {"posts.postevent"}))
def test_every_product_add_page_answers_200_for_ops(label):
    assert login(make_user(role=roles.OPS)).get(_url(label, "add")).status_code == 200


def test_the_event_trail_has_no_add_page_even_for_a_superuser():
    client = login(make_user(role=None, is_superuser=True))
    assert client.get(_url("posts.postevent", "add")).status_code == 403


def test_every_model_on_the_ops_index_opens_for_ops():
    client = login(make_user(role=roles.OPS))
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    listed = {
        f"{app['app_label']}.{m['object_name'].lower()}": m for app in index.context["app_list"] for m in app["models"]
    }
    assert set(listed) >= OPS_MODELS
    for label, entry in listed.items():
        assert client.get(entry["admin_url"]).status_code == 200, label
        if entry["add_url"]:
            assert client.get(entry["add_url"]).status_code == 200, label


@pytest.mark.parametrize("role", [roles.PRODUCER, roles.REVIEWER])
def test_every_change_page_with_data_answers_200_for_a_member(role):
    artist, post = _some_data()
    user = make_user(role=role)
    artist.members.add(user)
    client = login(user)
    schedule = artist.schedules.get()
    event = post.events.first()
    for label, pk in [
        ("artists.artist", artist.pk),
        ("posts.post", post.pk),
        ("schedules.schedule", schedule.pk),
        ("posts.postevent", event.pk),
        ("artists.voice", artist.voice_id),
    ]:
        app_label, model_name = label.split(".")
        url = reverse(f"admin:{app_label}_{model_name}_change", args=[pk])
        assert client.get(url).status_code == 200, label


def test_post_changelist_with_ten_posts_runs_a_bounded_number_of_queries(django_assert_max_num_queries):
    wardrobe = make_wardrobe()
    producer = make_user(role=roles.PRODUCER)
    artists = [make_artist(members=[producer], wardrobes=[wardrobe]) for _ in range(2)]
    for i in range(10):
        post = make_post(artist=artists[i % 2], shots=2, wardrobe=wardrobe)
        make_postevent(post=post)
    client = login(producer)
    client.get(reverse("admin:posts_post_changelist"))  # warm the session and content types
    with django_assert_max_num_queries(15):
        response = client.get(reverse("admin:posts_post_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 10


def test_artist_changelist_with_ten_artists_runs_a_bounded_number_of_queries(django_assert_max_num_queries):
    ops = make_user(role=roles.OPS)
    voice = make_voice()
    for _ in range(10):
        artist = make_artist(voice=voice)
        make_post(artist=artist, status=PostStatus.DRAFT)
    client = login(ops)
    client.get(reverse("admin:artists_artist_changelist"))
    with django_assert_max_num_queries(12):
        response = client.get(reverse("admin:artists_artist_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 10


def test_schedule_and_event_changelists_with_ten_rows_run_a_bounded_number_of_queries(
    django_assert_max_num_queries,
):
    ops = make_user(role=roles.OPS)
    artist = make_artist()
    for _ in range(10):
        make_schedule(artist=artist)
        make_postevent(post=make_post(artist=artist), actor=ops)
    client = login(ops)
    for name in ["schedules_schedule", "posts_postevent"]:
        client.get(reverse(f"admin:{name}_changelist"))
        with django_assert_max_num_queries(12):
            assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
