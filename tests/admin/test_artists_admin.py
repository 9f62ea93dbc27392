"""The artist admin (membership, links to the artist's work, face anchor checks) and the wardrobe form."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from artists.models import Artist, Wardrobe
from mcn_site.lib import roles
from tests.admin import error_text, form_data, login
from tests.factories import make_artist, make_post, make_schedule, make_user, make_voice, make_wardrobe, png_upload

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:artists_artist_changelist")
ADD = reverse("admin:artists_artist_add")
WARDROBE_ADD = reverse("admin:artists_wardrobe_add")


def change_url(artist: Artist) -> str:
    return reverse("admin:artists_artist_change", args=[artist.pk])


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="paula")


@pytest.fixture
def producer_who_may_add_artists(producer):
    # The Producer role (posts/migrations/0002_roles.py) grants view and change on artists but not
    # add, so this producer is given it: ArtistAdmin.save_related is what this fixture exercises.
    producer.user_permissions.add(Permission.objects.get(content_type__app_label="artists", codename="add_artist"))
    return producer


def _new_artist_data(client, **fields) -> dict:
    data = form_data(client.get(ADD))
    data.update(
        {
            "stage_name": "Lin Yue",
            "slug": "lin-yue",
            "niche": "finance",
            "voice": str(make_voice().pk),
            "content_focus": "stocks, gold",
            "face_anchor": png_upload(512, 512),
            **fields,
        }
    )
    return data


# --- who sees which artist ---------------------------------------------------------------


def test_a_producer_does_not_see_an_artist_they_are_not_a_member_of(producer):
    mine = make_artist(members=[producer], stage_name="Mine Mei")
    make_artist(stage_name="Foreign Fei")
    response = login(producer).get(CHANGELIST)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    assert "Foreign Fei" not in response.content.decode()


def test_a_foreign_artist_change_page_is_a_404_not_a_redirect(producer):
    foreign = make_artist()
    client = login(producer)
    assert client.get(change_url(foreign)).status_code == 404
    assert client.post(change_url(foreign), {"stage_name": "Hijacked"}).status_code == 404


def test_a_member_producer_sees_and_edits_the_artist(producer):
    artist = make_artist(members=[producer], stage_name="Old name")
    client = login(producer)
    assert artist in client.get(CHANGELIST).context["cl"].result_list
    data = form_data(client.get(change_url(artist)))
    data["stage_name"] = "New name"
    data["excluded_keywords"] = "politics, gambling"
    response = client.post(change_url(artist), data)
    assert response.status_code == 302, error_text(response)
    artist.refresh_from_db()
    assert (artist.stage_name, artist.excluded_keywords) == ("New name", ["politics", "gambling"])
    assert list(artist.members.all()) == [producer]


def test_ops_see_every_artist():
    artists = {make_artist(), make_artist()}
    response = login(make_user(role=roles.OPS)).get(CHANGELIST)
    assert set(response.context["cl"].result_list) == artists


# --- membership ---------------------------------------------------------------------------


def test_a_producer_who_creates_an_artist_becomes_its_member(producer_who_may_add_artists):
    producer = producer_who_may_add_artists
    client = login(producer)
    response = client.post(ADD, _new_artist_data(client))
    assert response.status_code == 302, error_text(response)
    artist = Artist.objects.get(slug="lin-yue")
    assert list(artist.members.all()) == [producer]
    assert artist.content_focus == ["stocks", "gold"]
    assert artist in client.get(CHANGELIST).context["cl"].result_list


def test_members_are_read_only_for_a_producer(producer):
    other = make_user(role=roles.PRODUCER, username="otto")
    artist = make_artist(members=[producer])
    client = login(producer)
    page = client.get(change_url(artist))
    assert "members" not in page.context["adminform"].form.fields
    assert "paula" in page.content.decode()  # shown, as text
    data = form_data(page)
    data["members"] = [str(producer.pk), str(other.pk)]
    assert client.post(change_url(artist), data).status_code == 302
    assert list(artist.members.all()) == [producer]


def test_members_are_editable_for_ops():
    producer = make_user(role=roles.PRODUCER)
    artist = make_artist()
    client = login(make_user(role=roles.OPS))
    page = client.get(change_url(artist))
    assert "members" in page.context["adminform"].form.fields
    data = form_data(page)
    data["members"] = [str(producer.pk)]
    response = client.post(change_url(artist), data)
    assert response.status_code == 302, error_text(response)
    assert list(artist.members.all()) == [producer]


def test_ops_creating_an_artist_do_not_become_members():
    client = login(make_user(role=roles.OPS))
    response = client.post(ADD, _new_artist_data(client))
    assert response.status_code == 302, error_text(response)
    assert not Artist.objects.get(slug="lin-yue").members.exists()


# --- links to the artist's work --------------------------------------------------------------


def test_the_change_page_links_to_the_artists_schedules_and_posts(producer):
    artist = make_artist(members=[producer])
    make_schedule(artist=artist)
    make_post(artist=artist)
    make_post(artist=artist)
    body = login(producer).get(change_url(artist)).content.decode()
    schedules = reverse("admin:schedules_schedule_changelist")
    posts = reverse("admin:posts_post_changelist")
    assert f'href="{schedules}?artist__id__exact={artist.pk}"' in body
    assert "Schedules (1)" in body
    assert f'href="{posts}?artist__id__exact={artist.pk}"' in body
    assert "Posts (2)" in body
    assert "New schedule for this artist" in body


def test_the_schedules_link_lists_only_that_artists_schedules(producer):
    artist = make_artist(members=[producer])
    other = make_artist(members=[producer])
    mine = make_schedule(artist=artist)
    make_schedule(artist=other)
    url = reverse("admin:schedules_schedule_changelist") + f"?artist__id__exact={artist.pk}"
    assert list(login(producer).get(url).context["cl"].result_list) == [mine]


def test_the_new_schedule_link_prefills_the_artist(producer):
    artist = make_artist(members=[producer], stage_name="Lin Yue")
    client = login(producer)
    new_schedule = reverse("admin:schedules_schedule_add") + f"?artist={artist.pk}"
    assert f'href="{new_schedule}"' in client.get(change_url(artist)).content.decode()
    page = client.get(new_schedule)
    assert page.status_code == 200
    assert page.context["adminform"].form.initial["artist"] == str(artist.pk)
    assert form_data(page)["artist"] == str(artist.pk)
    assert f'<option value="{artist.pk}" selected>Lin Yue</option>' in page.content.decode()


# --- face anchor -----------------------------------------------------------------------------


def test_a_face_anchor_that_is_not_square_shows_the_clear_error():
    client = login(make_user(role=roles.OPS))
    response = client.post(ADD, _new_artist_data(client, face_anchor=png_upload(600, 512)))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["face_anchor"] == [
        "The face anchor must be square (1:1); this image is 600x512. Crop it to a square face close-up."
    ]
    assert not Artist.objects.exists()


def test_a_face_anchor_that_is_too_small_shows_the_error():
    client = login(make_user(role=roles.OPS))
    response = client.post(ADD, _new_artist_data(client, face_anchor=png_upload(256, 256)))
    assert response.status_code == 200
    assert "at least 512x512" in response.context["adminform"].form.errors["face_anchor"][0]


# --- wardrobe form ---------------------------------------------------------------------------


def _wardrobe_data(client, payload: str) -> dict:
    data = form_data(client.get(WARDROBE_ADD))
    data.update(name="Navy suit", category="formal", comfy_payload=payload)
    return data


def test_a_wardrobe_with_invalid_json_shows_a_field_error(producer):
    client = login(producer)
    response = client.post(WARDROBE_ADD, _wardrobe_data(client, '{"lora_name": "suit.safetensors",'))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["comfy_payload"] == ["Enter a valid JSON."]
    assert not Wardrobe.objects.exists()


def test_a_wardrobe_payload_without_lora_and_with_a_bad_strength_names_both_problems(producer):
    client = login(producer)
    response = client.post(WARDROBE_ADD, _wardrobe_data(client, json.dumps({"strength": 3})))
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["comfy_payload"])
    assert '"lora_name" is required' in errors
    assert '"strength" must be a number from 0 to 2 (got 3)' in errors
    assert not Wardrobe.objects.exists()


def test_a_valid_wardrobe_is_saved_and_listed_with_its_lora(producer):
    client = login(producer)
    payload = {"lora_name": "suit_v1.safetensors", "trigger_word": "navy suit", "strength": 0.8}
    response = client.post(WARDROBE_ADD, _wardrobe_data(client, json.dumps(payload)))
    assert response.status_code == 302, error_text(response)
    assert Wardrobe.objects.get().comfy_payload == payload
    assert "suit_v1.safetensors" in client.get(reverse("admin:artists_wardrobe_changelist")).content.decode()


def test_the_wardrobe_list_shows_a_dash_for_a_payload_without_lora(producer):
    make_wardrobe(name="Legacy", comfy_payload={})
    response = login(producer).get(reverse("admin:artists_wardrobe_changelist"))
    assert response.status_code == 200


@pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning")
def test_the_voice_autocomplete_lists_voices_by_name(producer):
    zeta, alpha = make_voice(name="Zeta"), make_voice(name="Alpha")
    response = login(producer).get(
        reverse("admin:autocomplete"),
        {"app_label": "artists", "model_name": "artist", "field_name": "voice", "term": ""},
    )
    assert [r["id"] for r in response.json()["results"]] == [str(alpha.pk), str(zeta.pk)]
