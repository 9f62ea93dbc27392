"""The post admin: who sees which post, the wardrobe rule, optimistic locking, the shots inline, actions."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from mcn_site.lib import roles
from posts import services
from posts.models import Post, PostEvent, PostStatus, Shot
from tests.admin import error_text, form_data, login
from tests.factories import make_artist, make_post, make_shot, make_user, make_wardrobe

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:posts_post_changelist")
ADD = reverse("admin:posts_post_add")
AUTOCOMPLETE = reverse("admin:autocomplete")


def change_url(post: Post) -> str:
    return reverse("admin:posts_post_change", args=[post.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="paula")


@pytest.fixture
def reviewer():
    return make_user(role=roles.REVIEWER, username="rita")


# --- who sees which post -------------------------------------------------------------


def test_a_producer_does_not_see_posts_of_an_artist_they_are_not_a_member_of(producer):
    mine = make_post(artist=make_artist(members=[producer], stage_name="Mine Mei"), title="My post")
    foreign = make_post(artist=make_artist(stage_name="Foreign Fei"), title="Their post")
    response = login(producer).get(CHANGELIST)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    body = response.content.decode()
    # Neither the post nor its artist's name leaks (not even through the artist filter).
    assert "Their post" not in body
    assert "Foreign Fei" not in body
    assert "Mine Mei" in body
    assert foreign.artist.stage_name not in body


def test_a_foreign_post_change_page_is_a_404_not_a_redirect(producer):
    foreign = make_post()
    client = login(producer)
    assert client.get(change_url(foreign)).status_code == 404
    assert client.post(change_url(foreign), {"title": "hijack"}).status_code == 404
    assert client.get(reverse("admin:posts_post_delete", args=[foreign.pk])).status_code == 404
    assert client.get(reverse("admin:posts_post_history", args=[foreign.pk])).status_code == 404


def test_a_foreign_post_event_is_neither_listed_nor_opened(producer):
    foreign = make_post(title="Their post")
    event = foreign.events.create(kind=PostEvent.Kind.CREATED, to_status=PostStatus.DRAFT)
    client = login(producer)
    response = client.get(reverse("admin:posts_postevent_changelist"))
    assert response.status_code == 200
    assert "Their post" not in response.content.decode()
    assert client.get(reverse("admin:posts_postevent_change", args=[event.pk])).status_code == 404


def test_the_post_artist_dropdown_offers_only_member_artists(producer):
    mine = make_artist(members=[producer])
    make_artist()
    response = login(producer).get(ADD)
    assert list(response.context["adminform"].form.fields["artist"].queryset) == [mine]


@pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning")
def test_the_artist_autocomplete_returns_only_member_artists_by_name(producer):
    zed = make_artist(members=[producer], stage_name="Zed Zhou")
    amy = make_artist(members=[producer], stage_name="Amy An")
    make_artist(stage_name="Foreign Fei")
    response = login(producer).get(
        AUTOCOMPLETE, {"app_label": "posts", "model_name": "post", "field_name": "artist", "term": ""}
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(amy.pk), str(zed.pk)]


def test_a_producer_cannot_create_a_post_for_a_foreign_artist(producer):
    foreign = make_artist()
    client = login(producer)
    data = form_data(client.get(ADD))
    data.update(title="Sneaky", artist=str(foreign.pk))
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert "artist" in response.context["adminform"].form.errors
    assert not Post.objects.filter(title="Sneaky").exists()


def test_a_member_producer_sees_and_edits_the_post(producer):
    post = make_post(artist=make_artist(members=[producer]), title="Old title")
    client = login(producer)
    assert post in client.get(CHANGELIST).context["cl"].result_list
    data = form_data(client.get(change_url(post)))
    data["title"] = "New title"
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    post.refresh_from_db()
    assert (post.title, post.version, post.updated_by) == ("New title", 2, producer)
    assert post.events.filter(kind=PostEvent.Kind.EDITED, actor=producer).exists()


def test_a_producer_creates_a_post_through_the_admin(producer):
    artist = make_artist(members=[producer])
    client = login(producer)
    data = form_data(client.get(ADD, {"artist": artist.pk}))
    data.update(title="Fresh", brief="About gold.")
    response = client.post(ADD, data)
    assert response.status_code == 302, error_text(response)
    post = Post.objects.get(title="Fresh")
    assert (post.artist, post.status, post.updated_by) == (artist, PostStatus.DRAFT, producer)
    assert post.events.filter(kind=PostEvent.Kind.CREATED).exists()


def test_ops_see_every_post():
    posts = {make_post(), make_post()}
    response = login(make_user(role=roles.OPS)).get(CHANGELIST)
    assert set(response.context["cl"].result_list) == posts


# --- the wardrobe rule --------------------------------------------------------------------


def test_the_wardrobe_dropdown_offers_only_the_artists_allowed_wardrobes(producer):
    allowed = make_wardrobe(name="Navy suit")
    make_wardrobe(name="Clown costume")
    post = make_post(artist=make_artist(members=[producer], wardrobes=[allowed]))
    response = login(producer).get(change_url(post))
    assert list(response.context["adminform"].form.fields["wardrobe"].queryset) == [allowed]
    assert "Clown costume" not in response.content.decode()


def test_the_add_form_prefilled_with_an_artist_offers_only_its_wardrobes(producer):
    allowed = make_wardrobe()
    make_wardrobe()
    artist = make_artist(members=[producer], wardrobes=[allowed])
    response = login(producer).get(ADD, {"artist": artist.pk})
    assert list(response.context["adminform"].form.fields["wardrobe"].queryset) == [allowed]


def test_posting_a_foreign_wardrobe_is_refused_and_nothing_is_saved(producer):
    allowed, foreign = make_wardrobe(), make_wardrobe()
    post = make_post(artist=make_artist(members=[producer], wardrobes=[allowed]), title="Kept")
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    data.update(title="Changed", wardrobe=str(foreign.pk))
    response = client.post(change_url(post), data)
    assert response.status_code == 200
    assert "wardrobe" in response.context["adminform"].form.errors
    post.refresh_from_db()
    assert (post.title, post.wardrobe, post.version) == ("Kept", None, 1)


def test_changing_artist_and_wardrobe_together_checks_the_new_artists_wardrobes(producer):
    old_suit, new_suit = make_wardrobe(), make_wardrobe()
    old = make_artist(members=[producer], wardrobes=[old_suit])
    new = make_artist(members=[producer], wardrobes=[new_suit])
    post = make_post(artist=old, wardrobe=old_suit)
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    data.update(artist=str(new.pk), wardrobe=str(new_suit.pk))
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    post.refresh_from_db()
    assert (post.artist, post.wardrobe) == (new, new_suit)


# --- optimistic concurrency ---------------------------------------------------------------


def test_the_second_of_two_editors_is_refused_with_the_first_ones_name_and_keeps_their_input():
    artist = make_artist()
    alice = make_user(role=roles.PRODUCER, username="alice")
    bob = make_user(role=roles.PRODUCER, username="bob")
    artist.members.set([alice, bob])
    post = make_post(artist=artist, title="Original")
    client_a, client_b = login(alice), login(bob)
    data_a = form_data(client_a.get(change_url(post)))
    data_b = form_data(client_b.get(change_url(post)))
    assert data_a["version"] == data_b["version"] == "1"

    data_a["title"] = "Alice's title"
    assert client_a.post(change_url(post), data_a).status_code == 302

    data_b["title"] = "Bob's title"
    response = client_b.post(change_url(post), data_b)
    assert response.status_code == 200
    errors = error_text(response)
    assert "alice" in errors
    assert "nothing was overwritten" in errors
    assert 'value="Bob&#x27;s title"' in response.content.decode()
    post.refresh_from_db()
    assert (post.title, post.version, post.updated_by) == ("Alice's title", 2, alice)


# --- the shots inline ------------------------------------------------------------------


def _shot_rows(data: dict) -> int:
    return int(data["shots-TOTAL_FORMS"])


def test_adding_shots_through_the_change_form_numbers_them_1_to_n(producer):
    post = make_post(artist=make_artist(members=[producer]))
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    assert _shot_rows(data) == 0
    rows = [("7", "Hello."), ("", "Goodbye."), ("3", "Middle.")]
    for i, (position, script) in enumerate(rows):
        data.update(
            {
                f"shots-{i}-position": position,
                f"shots-{i}-kind": "a_roll",
                f"shots-{i}-script": script,
                f"shots-{i}-duration_seconds": "3.0",
            }
        )
    data["shots-TOTAL_FORMS"] = str(len(rows))
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    assert list(post.shots.order_by("position").values_list("position", "script")) == [
        (1, "Middle."),
        (2, "Hello."),
        (3, "Goodbye."),
    ]
    assert post.events.filter(kind=PostEvent.Kind.STORYBOARD).exists()


def test_swapping_two_positions_in_one_save_reorders_the_shots(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=3)
    first, second, third = post.shots.order_by("position")
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    forms = {int(data[f"shots-{i}-id"]): i for i in range(_shot_rows(data))}
    data[f"shots-{forms[first.pk]}-position"] = "2"
    data[f"shots-{forms[second.pk]}-position"] = "1"
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    assert list(post.shots.order_by("position").values_list("pk", flat=True)) == [second.pk, first.pk, third.pk]


def test_adding_a_shot_between_existing_ones_keeps_positions_dense(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=2)
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    data.update(
        {
            "shots-2-position": "2",
            "shots-2-kind": "b_roll",
            "shots-2-visual_prompt": "A gold bar.",
            "shots-2-duration_seconds": "2.5",
            "shots-TOTAL_FORMS": "3",
        }
    )
    data["shots-1-position"] = "3"
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    assert list(post.shots.order_by("position").values_list("position", "kind")) == [
        (1, "a_roll"),
        (2, "b_roll"),
        (3, "a_roll"),
    ]


def test_deleting_a_shot_closes_the_gap(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=3)
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    data["shots-0-DELETE"] = "on"
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    assert list(post.shots.order_by("position").values_list("position", "script")) == [
        (1, "Line 2."),
        (2, "Line 3."),
    ]


def test_editing_a_locked_shot_while_keeping_it_locked_is_refused_and_changes_nothing(producer):
    post = make_post(artist=make_artist(members=[producer]))
    make_shot(post=post, position=1)
    make_shot(post=post, position=2, locked=True, script="Approved words.")
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    data["shots-1-script"] = "Rewritten words."
    data["title"] = "Also a new title"
    response = client.post(change_url(post), data)
    assert response.status_code == 200
    assert "Shot 2 is locked" in error_text(response)
    assert Shot.objects.get(post=post, position=2).script == "Approved words."
    post.refresh_from_db()
    assert post.version == 1
    assert post.title != "Also a new title"


def test_unlocking_and_editing_a_shot_in_one_save_is_allowed(producer):
    post = make_post(artist=make_artist(members=[producer]))
    make_shot(post=post, position=1, locked=True, script="Old words.")
    client = login(producer)
    data = form_data(client.get(change_url(post)))
    del data["shots-0-locked"]
    data["shots-0-script"] = "New words."
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    shot = post.shots.get()
    assert (shot.locked, shot.script) == (False, "New words.")


def test_the_shots_inline_is_read_only_while_the_post_is_in_review(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=1, status=PostStatus.REVIEW)
    client = login(producer)
    response = client.get(change_url(post))
    shots_inline = next(i for i in response.context["inline_admin_formsets"] if i.formset.model is Shot)
    assert not shots_inline.has_add_permission
    assert not shots_inline.has_change_permission
    assert not shots_inline.has_delete_permission
    # A forged extra row is ignored, and the existing shot keeps its words.
    data = form_data(response)
    data.update(
        {
            "shots-1-position": "2",
            "shots-1-kind": "a_roll",
            "shots-1-script": "Sneaked in.",
            "shots-1-duration_seconds": "3",
            "shots-TOTAL_FORMS": "2",
            "shots-0-id": str(post.shots.get().pk),
            "shots-0-script": "Changed in review.",
            "shots-0-position": "1",
            "shots-0-kind": "a_roll",
            "shots-0-duration_seconds": "3",
        }
    )
    response = client.post(change_url(post), data)
    assert response.status_code == 302, error_text(response)
    assert list(post.shots.values_list("script", flat=True)) == ["Line 1."]


# --- actions -----------------------------------------------------------------------------


def _action(client, action: str, posts, **extra):
    data = {"action": action, "_selected_action": [str(p.pk) for p in posts], "index": "0", **extra}
    return client.post(CHANGELIST, data)


def _offered_actions(client) -> set[str]:
    return {name for name, _ in client.get(CHANGELIST).context["action_form"].fields["action"].choices}


def test_a_producer_is_not_offered_approve_or_reject(producer):
    make_post(artist=make_artist(members=[producer]))
    offered = _offered_actions(login(producer))
    assert {"submit_for_review", "back_to_draft"} <= offered
    assert not {"approve", "reject"} & offered


def test_a_reviewer_is_offered_approve_and_reject(reviewer):
    make_post(artist=make_artist(members=[reviewer]))
    assert {"approve", "reject"} <= _offered_actions(login(reviewer))


def test_a_producer_posting_the_approve_action_changes_nothing(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=1, status=PostStatus.REVIEW)
    _action(login(producer), "approve", [post])
    post.refresh_from_db()
    assert post.status == PostStatus.REVIEW


def test_a_reviewer_approves_a_post_in_review(reviewer):
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, status=PostStatus.REVIEW)
    response = _action(login(reviewer), "approve", [post])
    assert response.status_code == 302
    post.refresh_from_db()
    # Approval starts production at once: the post is rendering (here an animatic: no voice, no GPU).
    assert post.status == PostStatus.RENDERING
    assert post.events.filter(
        kind=PostEvent.Kind.STATUS, actor=reviewer, from_status=PostStatus.REVIEW, to_status=PostStatus.APPROVED
    ).exists()
    assert post.render_job is not None
    assert any("Approved, in production: 1 post" in m for m in messages_of(response))


def test_approving_a_draft_reports_the_refusal_and_changes_nothing(reviewer):
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, title="Too early")
    response = _action(login(reviewer), "approve", [post])
    post.refresh_from_db()
    assert post.status == PostStatus.DRAFT
    assert any("Too early" in m and "cannot become approved" in m for m in messages_of(response))


def test_the_reject_action_asks_for_feedback_first(reviewer):
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, status=PostStatus.REVIEW, title="Gold")
    response = _action(login(reviewer), "reject", [post])
    assert response.status_code == 200
    assert response.templates[0].name == "admin/posts/post/reject.html"
    body = response.content.decode()
    assert "Gold" in body
    assert 'name="feedback"' in body
    post.refresh_from_db()
    assert post.status == PostStatus.REVIEW


def _reject_through_the_feedback_page(client, posts, feedback: str):
    page = _action(client, "reject", posts)
    assert page.status_code == 200
    data = form_data(page, form_id="reject_form")
    selected = data["_selected_action"]
    assert sorted(selected if isinstance(selected, list) else [selected]) == sorted(str(p.pk) for p in posts)
    data["feedback"] = feedback
    return client.post(CHANGELIST, data)


def test_rejecting_with_feedback_rejects_and_stores_the_feedback(reviewer):
    artist = make_artist(members=[reviewer])
    posts = [make_post(artist=artist, shots=1, status=PostStatus.REVIEW) for _ in range(2)]
    response = _reject_through_the_feedback_page(login(reviewer), posts, "  Shorter intro, please.  ")
    assert response.status_code == 302
    assert any("Rejected: 2 post" in m for m in messages_of(response))
    for post in posts:
        post.refresh_from_db()
        assert (post.status, post.feedback) == (PostStatus.REJECTED, "Shorter intro, please.")
        assert post.events.filter(
            to_status=PostStatus.REJECTED, note__contains="Shorter intro", actor=reviewer
        ).exists()


def test_rejecting_with_empty_feedback_shows_the_form_again_with_an_error(reviewer):
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, status=PostStatus.REVIEW)
    response = _reject_through_the_feedback_page(login(reviewer), [post], "   ")
    assert response.status_code == 200
    assert response.templates[0].name == "admin/posts/post/reject.html"
    assert response.context["form"].errors["feedback"] == ["This field is required."]
    assert 'class="errorlist' in response.content.decode()
    post.refresh_from_db()
    assert post.status == PostStatus.REVIEW
    assert not post.events.filter(to_status=PostStatus.REJECTED).exists()


def test_submitting_a_post_without_shots_reports_an_error_naming_it_and_leaves_it_draft(producer):
    post = make_post(artist=make_artist(members=[producer]), title="Empty storyboard")
    response = _action(login(producer), "submit_for_review", [post])
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.status == PostStatus.DRAFT
    errors = [m for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert len(errors) == 1
    assert "Empty storyboard" in str(errors[0]) and "at least one shot" in str(errors[0])


def test_submitting_a_post_with_shots_moves_it_to_review(producer):
    post = make_post(artist=make_artist(members=[producer]), shots=2)
    _action(login(producer), "submit_for_review", [post])
    post.refresh_from_db()
    assert post.status == PostStatus.REVIEW


def test_an_action_cannot_reach_a_foreign_post(reviewer):
    foreign = make_post(shots=1, status=PostStatus.REVIEW)
    _action(login(reviewer), "approve", [foreign])
    foreign.refresh_from_db()
    assert foreign.status == PostStatus.REVIEW


def test_the_service_refusal_is_the_same_as_the_admins(reviewer):
    # The admin only relays the service: approving twice fails the same way in both.
    post = make_post(artist=make_artist(members=[reviewer]), shots=1, status=PostStatus.REVIEW)
    services.post_approve(post_id=post.pk, actor=reviewer)
    response = _action(login(reviewer), "approve", [post])
    assert any("cannot become approved" in m for m in messages_of(response))


def test_the_post_list_and_page_link_to_the_storyboard_page():
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]))
    client = login(producer)
    link = f'href="/posts/{post.pk}/"'
    assert link in client.get(reverse("admin:posts_post_changelist")).content.decode()
    assert link in client.get(reverse("admin:posts_post_change", args=[post.pk])).content.decode()
