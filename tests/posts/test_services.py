from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError

from artists.selectors import artists_visible_to
from mcn_site.lib import roles
from posts import services
from posts.models import ALLOWED_TRANSITIONS, Post, PostEvent, PostStatus, Shot, ShotKind
from posts.selectors import post_events_visible_to, posts_visible_to, shots_visible_to
from posts.services import ConcurrentEditError, StoryboardChange, TransitionError
from tests.factories import make_artist, make_post, make_shot, make_user, make_wardrobe

pytestmark = pytest.mark.django_db


def shots_in_order(post: Post) -> list[Shot]:
    """The post's shots as an editor loads them: fresh from the database, in playing order."""
    return list(Shot.objects.filter(post=post).order_by("position"))


def storyboard(post: Post) -> list[tuple[str, int]]:
    """(script, position) of every shot in playing order: what the viewer would see."""
    return list(Shot.objects.filter(post=post).order_by("position").values_list("script", "position"))


def db_version(post: Post) -> int:
    return Post.objects.values_list("version", flat=True).get(pk=post.pk)


# post_create


def test_post_create_makes_a_draft_and_records_who_made_it():
    producer = make_user(username="pia")
    suit = make_wardrobe()
    artist = make_artist(wardrobes=[suit])

    post = services.post_create(actor=producer, title="Market wrap", artist=artist, wardrobe=suit, brief="Stocks.")

    post.refresh_from_db()
    assert (post.status, post.version, post.updated_by, post.wardrobe) == (PostStatus.DRAFT, 1, producer, suit)
    event = post.events.get()
    assert (event.kind, event.actor, event.from_status, event.to_status) == (
        PostEvent.Kind.CREATED,
        producer,
        "",
        PostStatus.DRAFT,
    )


def test_post_create_refuses_a_wardrobe_the_artist_may_not_wear():
    artist = make_artist(stage_name="Mia Chen", wardrobes=[make_wardrobe()])
    tracksuit = make_wardrobe(name="Red tracksuit")

    with pytest.raises(ValidationError) as caught:
        services.post_create(actor=make_user(), title="Market wrap", artist=artist, wardrobe=tracksuit)

    assert caught.value.message_dict == {"wardrobe": ["“Red tracksuit” is not one of Mia Chen's allowed wardrobes."]}
    assert not Post.objects.exists()
    assert not PostEvent.objects.exists()


# post_update


def test_post_update_saves_the_edit_bumps_the_version_and_records_what_changed():
    editor = make_user(username="pia")
    post = make_post(title="Old title")

    services.post_update(post=post, actor=editor, expected_version=1, data={"title": "New title", "brief": post.brief})

    post.refresh_from_db()
    assert (post.title, post.version, post.updated_by) == ("New title", 2, editor)
    event = post.events.get()
    assert (event.kind, event.actor, event.note) == (PostEvent.Kind.EDITED, editor, "Changed: title")


def test_post_update_refuses_a_wardrobe_the_artist_may_not_wear():
    artist = make_artist(stage_name="Mia Chen", wardrobes=[make_wardrobe()])
    tracksuit = make_wardrobe(name="Red tracksuit")
    post = make_post(artist=artist)

    with pytest.raises(ValidationError) as caught:
        services.post_update(post=post, actor=make_user(), expected_version=1, data={"wardrobe": tracksuit})

    assert caught.value.message_dict == {"wardrobe": ["“Red tracksuit” is not one of Mia Chen's allowed wardrobes."]}
    assert Post.objects.get(pk=post.pk).wardrobe is None
    assert db_version(post) == 1


def test_post_update_accepts_an_allowed_wardrobe():
    suit = make_wardrobe()
    post = make_post(artist=make_artist(wardrobes=[suit]))

    services.post_update(post=post, actor=make_user(), expected_version=1, data={"wardrobe": suit})

    assert Post.objects.get(pk=post.pk).wardrobe == suit


def test_post_update_refuses_fields_that_are_not_editable_here():
    post = make_post()

    with pytest.raises(ValidationError) as caught:
        services.post_update(
            post=post, actor=make_user(), expected_version=1, data={"status": "approved", "version": 9}
        )

    assert caught.value.messages == ["These fields cannot be edited here: status, version."]
    assert Post.objects.get(pk=post.pk).status == PostStatus.DRAFT


def test_second_editor_from_the_same_version_is_refused_and_the_first_edit_is_kept():
    alice = make_user(username="alice")
    bob = make_user(username="bob")
    post = make_post(title="Old title", brief="Old brief")
    alices_copy = Post.objects.get(pk=post.pk)
    bobs_copy = Post.objects.get(pk=post.pk)

    services.post_update(post=alices_copy, actor=alice, expected_version=1, data={"title": "Alice's title"})
    with pytest.raises(ConcurrentEditError) as caught:
        services.post_update(
            post=bobs_copy, actor=bob, expected_version=1, data={"title": "Bob's title", "brief": "Bob's brief"}
        )

    message = caught.value.messages[0]
    assert message.startswith("alice changed this post at ")
    assert message.endswith("(now version 2). Reload to see their changes; nothing was overwritten.")
    assert caught.value.code == "stale"
    assert caught.value.current_version == 2
    post.refresh_from_db()
    assert (post.title, post.brief, post.version, post.updated_by) == ("Alice's title", "Old brief", 2, alice)
    assert list(post.events.values_list("actor__username", flat=True)) == ["alice"]


def test_editor_who_reloads_after_a_conflict_can_save():
    alice = make_user(username="alice")
    bob = make_user(username="bob")
    post = make_post()
    services.post_update(post=Post.objects.get(pk=post.pk), actor=alice, expected_version=1, data={"title": "A"})

    reloaded = Post.objects.get(pk=post.pk)
    services.post_update(post=reloaded, actor=bob, expected_version=reloaded.version, data={"title": "B"})

    post.refresh_from_db()
    assert (post.title, post.version, post.updated_by) == ("B", 3, bob)


# post_check_version


def test_post_check_version_accepts_the_current_version():
    post = make_post(version=4)

    assert services.post_check_version(post_id=post.pk, expected_version=4) is None


def test_post_check_version_refuses_a_stale_version_naming_the_last_editor():
    alice = make_user(username="alice")
    post = make_post()
    services.post_update(post=post, actor=alice, expected_version=1, data={"title": "Alice's title"})

    with pytest.raises(ConcurrentEditError) as caught:
        services.post_check_version(post_id=post.pk, expected_version=1)

    assert caught.value.messages[0].startswith("alice changed this post at ")
    assert caught.value.current_version == 2


def test_stale_version_after_a_system_change_names_the_system():
    post = make_post(version=3)

    with pytest.raises(ConcurrentEditError) as caught:
        services.post_check_version(post_id=post.pk, expected_version=2)

    assert caught.value.messages[0].startswith("the system changed this post at ")


# post_transition


ALLOWED = [
    (from_status, to_status) for from_status, nexts in ALLOWED_TRANSITIONS.items() for to_status in sorted(nexts)
]


@pytest.mark.parametrize(("from_status", "to_status"), ALLOWED, ids=[f"{f}->{t}" for f, t in ALLOWED])
def test_every_allowed_transition_succeeds_and_records_an_event(from_status, to_status):
    reviewer = make_user(role=roles.REVIEWER, username="rita")
    post = make_post(status=from_status, shots=1)

    returned = services.post_transition(post_id=post.pk, to_status=to_status, actor=reviewer, note="Looked at it.")

    post.refresh_from_db()
    assert returned.status == post.status == to_status
    assert (post.version, post.updated_by) == (2, reviewer)
    assert post.status_changed_at is not None
    event = post.events.get()
    assert (event.kind, event.from_status, event.to_status, event.actor, event.note) == (
        PostEvent.Kind.STATUS,
        from_status,
        to_status,
        reviewer,
        "Looked at it.",
    )


def test_allowed_transitions_cover_every_status():
    assert set(ALLOWED_TRANSITIONS) == set(PostStatus.values)


@pytest.mark.parametrize(
    ("from_status", "to_status", "message"),
    [
        ("draft", "approved", "A post that is draft cannot become approved (it can become: in review)."),
        ("draft", "draft", "A post that is draft cannot become draft (it can become: in review)."),
        ("done", "draft", "A post that is done cannot become draft (it can become: nothing)."),
        ("rendering", "review", "A post that is rendering cannot become in review (it can become: done, failed)."),
        ("rejected", "approved", "A post that is rejected cannot become approved (it can become: draft)."),
        ("approved", "done", "A post that is approved cannot become done (it can become: draft, rendering)."),
        (
            "review",
            "rendering",
            "A post that is in review cannot become rendering (it can become: approved, draft, rejected).",
        ),
    ],
)
def test_transition_the_workflow_does_not_allow_is_refused(from_status, to_status, message):
    post = make_post(status=from_status, shots=1)

    with pytest.raises(TransitionError) as caught:
        services.post_transition(post_id=post.pk, to_status=to_status, actor=make_user(role=roles.OPS), note="x")

    assert caught.value.messages == [message]
    assert caught.value.code == "bad_transition"
    post.refresh_from_db()
    assert (post.status, post.version) == (from_status, 1)
    assert not post.events.exists()


def test_transition_from_a_stale_version_is_refused():
    post = make_post(status=PostStatus.REVIEW, version=2)

    with pytest.raises(ConcurrentEditError):
        services.post_approve(post_id=post.pk, actor=make_user(role=roles.REVIEWER), expected_version=1)

    assert Post.objects.get(pk=post.pk).status == PostStatus.REVIEW


def test_system_can_finish_a_render():
    post = make_post(status=PostStatus.RENDERING)

    services.post_transition(post_id=post.pk, to_status=PostStatus.DONE, actor=None)

    post.refresh_from_db()
    assert post.status == PostStatus.DONE
    assert post.events.get().actor is None


# Review: approve and reject


def test_producer_cannot_approve():
    post = make_post(status=PostStatus.REVIEW, shots=1)

    with pytest.raises(PermissionDenied) as caught:
        services.post_approve(post_id=post.pk, actor=make_user(role=roles.PRODUCER))

    assert str(caught.value) == "Only reviewers may approve or reject a post."
    post.refresh_from_db()
    assert (post.status, post.version) == (PostStatus.REVIEW, 1)
    assert not post.events.exists()


def test_producer_cannot_reject():
    post = make_post(status=PostStatus.REVIEW, shots=1)

    with pytest.raises(PermissionDenied) as caught:
        services.post_reject(post_id=post.pk, actor=make_user(role=roles.PRODUCER), feedback="Too long.")

    assert str(caught.value) == "Only reviewers may approve or reject a post."
    assert Post.objects.get(pk=post.pk).status == PostStatus.REVIEW


def test_system_cannot_approve():
    post = make_post(status=PostStatus.REVIEW, shots=1)

    with pytest.raises(PermissionDenied):
        services.post_approve(post_id=post.pk, actor=None)


def test_inactive_reviewer_cannot_approve():
    post = make_post(status=PostStatus.REVIEW, shots=1)

    with pytest.raises(PermissionDenied):
        services.post_approve(post_id=post.pk, actor=make_user(role=roles.REVIEWER, is_active=False))


@pytest.mark.parametrize("role", [roles.REVIEWER, roles.OPS])
def test_reviewer_and_ops_can_approve(role):
    approver = make_user(role=role)
    post = make_post(status=PostStatus.REVIEW, shots=1)

    services.post_approve(post_id=post.pk, actor=approver, note="Ship it.", expected_version=1)

    post.refresh_from_db()
    assert (post.status, post.version, post.updated_by) == (PostStatus.APPROVED, 2, approver)
    event = post.events.get()
    assert (event.from_status, event.to_status, event.actor, event.note) == ("review", "approved", approver, "Ship it.")


def test_superuser_can_approve():
    post = make_post(status=PostStatus.REVIEW, shots=1)

    services.post_approve(post_id=post.pk, actor=make_user(role=None, is_superuser=True))

    assert Post.objects.get(pk=post.pk).status == PostStatus.APPROVED


@pytest.mark.parametrize("role", [roles.REVIEWER, roles.OPS])
def test_reviewer_and_ops_can_reject_with_feedback(role):
    reviewer = make_user(role=role)
    post = make_post(status=PostStatus.REVIEW, shots=1)

    services.post_reject(post_id=post.pk, actor=reviewer, feedback="Open with the chart, not the greeting.")

    post.refresh_from_db()
    assert (post.status, post.feedback) == (PostStatus.REJECTED, "Open with the chart, not the greeting.")
    event = post.events.get()
    assert (event.from_status, event.to_status, event.actor, event.note) == (
        "review",
        "rejected",
        reviewer,
        "Open with the chart, not the greeting.",
    )


@pytest.mark.parametrize("feedback", ["", "   \n"])
def test_reject_without_feedback_is_refused(feedback):
    post = make_post(status=PostStatus.REVIEW, shots=1)

    with pytest.raises(ValidationError) as caught:
        services.post_reject(post_id=post.pk, actor=make_user(role=roles.REVIEWER), feedback=feedback)

    assert caught.value.message_dict == {"feedback": ["Say what to change: the feedback goes to the rewrite."]}
    post.refresh_from_db()
    assert (post.status, post.feedback, post.version) == (PostStatus.REVIEW, "", 1)


def test_feedback_stays_on_the_post_when_it_goes_back_to_draft():
    reviewer = make_user(role=roles.REVIEWER)
    post = make_post(status=PostStatus.REVIEW, shots=1)
    services.post_reject(post_id=post.pk, actor=reviewer, feedback="Shorter, please.")

    services.post_transition(post_id=post.pk, to_status=PostStatus.DRAFT, actor=make_user())

    assert Post.objects.get(pk=post.pk).feedback == "Shorter, please."


# Submit for review


def test_submit_for_review_moves_a_post_with_shots_to_review():
    producer = make_user(role=roles.PRODUCER)
    post = make_post(shots=2)

    services.post_submit_for_review(post_id=post.pk, actor=producer, expected_version=1)

    post.refresh_from_db()
    assert (post.status, post.version) == (PostStatus.REVIEW, 2)
    event = post.events.get()
    assert (event.from_status, event.to_status, event.actor) == ("draft", "review", producer)


def test_submit_for_review_of_a_post_without_shots_is_refused():
    post = make_post(shots=0)

    with pytest.raises(ValidationError) as caught:
        services.post_submit_for_review(post_id=post.pk, actor=make_user())

    assert caught.value.messages == ["A post needs at least one shot before it can be reviewed."]
    assert caught.value.code == "empty_storyboard"
    assert Post.objects.get(pk=post.pk).status == PostStatus.DRAFT


# storyboard_apply


def test_storyboard_apply_swaps_two_shots():
    post = make_post(shots=3)
    one, two, three = shots_in_order(post)

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two, one, three])
    )

    assert storyboard(post) == [("Line 2.", 1), ("Line 1.", 2), ("Line 3.", 3)]


def test_storyboard_apply_inserts_a_new_shot_between_others():
    editor = make_user()
    post = make_post(shots=3)
    one, two, three = shots_in_order(post)
    new = Shot(kind=ShotKind.B_ROLL, visual_prompt="A chart going up.", script="Cutaway.")

    services.storyboard_apply(
        post=post, actor=editor, expected_version=1, change=StoryboardChange(shots=[one, new, two, three])
    )

    assert storyboard(post) == [("Line 1.", 1), ("Cutaway.", 2), ("Line 2.", 3), ("Line 3.", 4)]
    assert Shot.objects.get(pk=new.pk).kind == ShotKind.B_ROLL
    assert db_version(post) == 2
    event = post.events.get()
    assert (event.kind, event.actor, event.note) == (PostEvent.Kind.STORYBOARD, editor, "4 shots, 1 added")


def test_storyboard_apply_closes_the_gap_when_a_middle_shot_is_deleted():
    post = make_post(shots=3)
    one, two, three = shots_in_order(post)

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[one, three], deleted=[two])
    )

    assert storyboard(post) == [("Line 1.", 1), ("Line 3.", 2)]
    assert not Shot.objects.filter(pk=two.pk).exists()
    assert post.events.get().note == "2 shots, 1 deleted"


def test_storyboard_apply_renumbers_gappy_positions_densely():
    post = make_post()
    for position in (2, 5, 9):
        make_shot(post=post, position=position, script=f"At {position}.")

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=shots_in_order(post))
    )

    assert storyboard(post) == [("At 2.", 1), ("At 5.", 2), ("At 9.", 3)]


def test_storyboard_apply_adds_new_shots_ahead_of_existing_ones():
    post = make_post(shots=1)
    (old,) = shots_in_order(post)
    first = Shot(kind=ShotKind.A_ROLL, script="New 1.")
    second = Shot(kind=ShotKind.A_ROLL, script="New 2.")

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[first, second, old])
    )

    assert storyboard(post) == [("New 1.", 1), ("New 2.", 2), ("Line 1.", 3)]


def test_storyboard_apply_saves_edits_to_unlocked_shots():
    post = make_post(shots=2)
    one, two = shots_in_order(post)
    two.script = "Rewritten."
    two.duration_seconds = Decimal("4.50")

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[one, two])
    )

    saved = Shot.objects.get(pk=two.pk)
    assert (saved.script, saved.duration_seconds, saved.position) == ("Rewritten.", Decimal("4.50"), 2)


def test_storyboard_apply_refuses_an_invalid_new_shot_and_saves_nothing():
    post = make_post(shots=2)
    one, two = shots_in_order(post)
    one.script = "Changed."
    empty_cutaway = Shot(kind=ShotKind.B_ROLL)

    with pytest.raises(ValidationError) as caught:
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two, empty_cutaway, one])
        )

    assert caught.value.message_dict == {
        "visual_prompt": ["Describe the picture, or upload a manual asset for this shot."]
    }
    assert storyboard(post) == [("Line 1.", 1), ("Line 2.", 2)]
    assert db_version(post) == 1
    assert not post.events.exists()


def test_storyboard_apply_refuses_editing_a_locked_shot():
    post = make_post(shots=1)
    make_shot(post=post, position=2, locked=True)
    one, two = shots_in_order(post)
    two.script = "Sneaky rewrite."

    with pytest.raises(ValidationError) as caught:
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[one, two])
        )

    assert caught.value.messages == ["Shot 2 is locked: unlock it before editing it."]
    assert Shot.objects.get(pk=two.pk).script == "Line 2."
    assert db_version(post) == 1
    assert not post.events.exists()


def test_storyboard_apply_refuses_deleting_a_locked_shot():
    post = make_post(shots=2)
    make_shot(post=post, position=3, locked=True)
    one, two, three = shots_in_order(post)

    with pytest.raises(ValidationError) as caught:
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[one, two], deleted=[three])
        )

    assert caught.value.messages == ["Shot 3 is locked: unlock it before deleting it."]
    assert Shot.objects.filter(pk=three.pk).exists()
    assert storyboard(post) == [("Line 1.", 1), ("Line 2.", 2), ("Line 3.", 3)]


def test_storyboard_apply_lists_every_locked_shot_it_would_touch():
    post = make_post()
    make_shot(post=post, position=1, locked=True)
    make_shot(post=post, position=2, locked=True)
    one, two = shots_in_order(post)
    two.script = "Edited."

    with pytest.raises(ValidationError) as caught:
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two], deleted=[one])
        )

    assert caught.value.messages == [
        "Shot 1 is locked: unlock it before deleting it.",
        "Shot 2 is locked: unlock it before editing it.",
    ]


def test_storyboard_apply_moves_a_locked_shot():
    post = make_post(shots=2)
    make_shot(post=post, position=3, locked=True)
    one, two, three = shots_in_order(post)

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[three, one, two])
    )

    assert storyboard(post) == [("Line 3.", 1), ("Line 1.", 2), ("Line 2.", 3)]
    assert Shot.objects.get(pk=three.pk).locked is True


def test_storyboard_apply_allows_unlocking_and_editing_a_shot_in_one_save():
    post = make_post(shots=1)
    make_shot(post=post, position=2, locked=True)
    one, two = shots_in_order(post)
    two.locked = False
    two.script = "Rewritten after unlocking."

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[one, two])
    )

    saved = Shot.objects.get(pk=two.pk)
    assert (saved.locked, saved.script) == (False, "Rewritten after unlocking.")


@pytest.mark.parametrize(
    ("status", "label"),
    [(PostStatus.REVIEW, "in review"), (PostStatus.APPROVED, "approved"), (PostStatus.RENDERING, "rendering")],
)
def test_storyboard_apply_refuses_edits_while_the_post_is_not_editable(status, label):
    post = make_post(status=status, shots=2)
    one, two = shots_in_order(post)
    one.script = "Changed during review."

    with pytest.raises(ValidationError) as caught:
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two, one])
        )

    assert caught.value.messages == [
        f"The storyboard of a post that is {label} cannot be edited. Move it back to draft first."
    ]
    assert storyboard(post) == [("Line 1.", 1), ("Line 2.", 2)]


@pytest.mark.parametrize("status", [PostStatus.REJECTED, PostStatus.FAILED])
def test_storyboard_apply_is_allowed_after_rejection_or_failure(status):
    post = make_post(status=status, shots=2)
    one, two = shots_in_order(post)

    services.storyboard_apply(
        post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two, one])
    )

    assert storyboard(post) == [("Line 2.", 1), ("Line 1.", 2)]


def test_storyboard_apply_refuses_a_stale_version():
    post = make_post(shots=2, version=2)
    one, two = shots_in_order(post)

    with pytest.raises(ConcurrentEditError):
        services.storyboard_apply(
            post=post, actor=make_user(), expected_version=1, change=StoryboardChange(shots=[two, one])
        )

    assert storyboard(post) == [("Line 1.", 1), ("Line 2.", 2)]


# shots_reorder


def test_shots_reorder_puts_shots_in_the_given_order():
    editor = make_user()
    post = make_post(shots=3)
    one, two, three = shots_in_order(post)

    services.shots_reorder(post=post, actor=editor, expected_version=1, shot_ids=[three.pk, one.pk, two.pk])

    assert storyboard(post) == [("Line 3.", 1), ("Line 1.", 2), ("Line 2.", 3)]
    assert db_version(post) == 2
    event = post.events.get()
    assert (event.kind, event.actor, event.note) == (PostEvent.Kind.STORYBOARD, editor, "Shots reordered")


@pytest.mark.parametrize("order", ["missing", "duplicate", "foreign"])
def test_shots_reorder_requires_every_shot_exactly_once(order):
    post = make_post(shots=3)
    one, two, three = shots_in_order(post)
    foreign = make_shot(post=make_post(), position=1)
    shot_ids = {
        "missing": [three.pk, one.pk],
        "duplicate": [three.pk, one.pk, two.pk, one.pk],
        "foreign": [three.pk, one.pk, two.pk, foreign.pk],
    }[order]

    with pytest.raises(ValidationError) as caught:
        services.shots_reorder(post=post, actor=make_user(), expected_version=1, shot_ids=shot_ids)

    assert caught.value.messages == ["The new order must list every shot of this post exactly once."]
    assert storyboard(post) == [("Line 1.", 1), ("Line 2.", 2), ("Line 3.", 3)]
    assert db_version(post) == 1


def test_shots_reorder_refuses_a_post_in_review():
    post = make_post(status=PostStatus.REVIEW, shots=2)
    one, two = shots_in_order(post)

    with pytest.raises(ValidationError, match="cannot be edited"):
        services.shots_reorder(post=post, actor=make_user(), expected_version=1, shot_ids=[two.pk, one.pk])


# shot_set_locked


def test_shot_set_locked_locks_bumps_the_version_and_records_an_event():
    editor = make_user()
    post = make_post(shots=2)
    _, two = shots_in_order(post)

    services.shot_set_locked(shot=two, actor=editor, locked=True, expected_version=1)

    assert Shot.objects.get(pk=two.pk).locked is True
    assert db_version(post) == 2
    event = post.events.get()
    assert (event.kind, event.actor, event.note) == (PostEvent.Kind.STORYBOARD, editor, "Shot 2 locked")


def test_shot_set_locked_unlocks_and_says_so():
    post = make_post()
    shot = make_shot(post=post, position=1, locked=True)

    services.shot_set_locked(shot=shot, actor=make_user(), locked=False, expected_version=1)

    assert Shot.objects.get(pk=shot.pk).locked is False
    assert post.events.get().note == "Shot 1 unlocked"


def test_shot_can_be_locked_while_the_post_is_in_review():
    post = make_post(status=PostStatus.REVIEW, shots=1)
    (shot,) = shots_in_order(post)

    services.shot_set_locked(shot=shot, actor=make_user(), locked=True, expected_version=1)

    assert Shot.objects.get(pk=shot.pk).locked is True


def test_shot_set_locked_refuses_a_stale_version():
    post = make_post(shots=1, version=2)
    (shot,) = shots_in_order(post)

    with pytest.raises(ConcurrentEditError):
        services.shot_set_locked(shot=shot, actor=make_user(), locked=True, expected_version=1)

    assert Shot.objects.get(pk=shot.pk).locked is False
    assert not post.events.exists()


# Selectors: who sees what


@pytest.fixture
def two_artists():
    producer = make_user(role=roles.PRODUCER)
    mine = make_artist(members=[producer])
    theirs = make_artist(members=[make_user()])
    return producer, mine, theirs


def test_producer_sees_only_the_artists_they_are_a_member_of(two_artists):
    producer, mine, _ = two_artists

    assert list(artists_visible_to(user=producer)) == [mine]


def test_producer_sees_only_posts_shots_and_events_of_their_artists(two_artists):
    producer, mine, theirs = two_artists
    my_post = make_post(artist=mine, shots=1)
    their_post = make_post(artist=theirs, shots=1)
    services.post_transition(post_id=my_post.pk, to_status=PostStatus.REVIEW, actor=producer)
    services.post_transition(post_id=their_post.pk, to_status=PostStatus.REVIEW, actor=None)

    assert list(posts_visible_to(user=producer)) == [my_post]
    assert list(shots_visible_to(user=producer)) == list(my_post.shots.all())
    assert list(post_events_visible_to(user=producer)) == list(my_post.events.all())


def test_reviewer_who_is_no_member_sees_nothing(two_artists):
    make_post(artist=two_artists[1])
    reviewer = make_user(role=roles.REVIEWER)

    assert not artists_visible_to(user=reviewer).exists()
    assert not posts_visible_to(user=reviewer).exists()


def test_ops_sees_every_artist_and_post(two_artists):
    _, mine, theirs = two_artists
    posts = {make_post(artist=mine), make_post(artist=theirs)}
    ops = make_user(role=roles.OPS)

    assert set(artists_visible_to(user=ops)) == {mine, theirs}
    assert set(posts_visible_to(user=ops)) == posts


def test_superuser_sees_every_artist_and_post(two_artists):
    _, mine, theirs = two_artists
    posts = {make_post(artist=mine), make_post(artist=theirs)}
    superuser = make_user(role=None, is_superuser=True)

    assert set(artists_visible_to(user=superuser)) == {mine, theirs}
    assert set(posts_visible_to(user=superuser)) == posts


def test_inactive_ops_user_sees_only_their_memberships(two_artists):
    _, mine, _ = two_artists
    ops = make_user(role=roles.OPS, is_active=False)
    mine.members.add(ops)

    assert list(artists_visible_to(user=ops)) == [mine]


def test_anonymous_user_sees_nothing(two_artists):
    make_post(artist=two_artists[1])

    assert not artists_visible_to(user=AnonymousUser()).exists()
    assert not posts_visible_to(user=AnonymousUser()).exists()
