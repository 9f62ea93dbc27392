import pytest
from django.contrib.auth.models import AnonymousUser, Group

from mcn_site.lib import roles
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def perms_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{app}.{codename}" for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_the_three_roles_exist_after_migrations():
    assert set(Group.objects.values_list("name", flat=True)) >= {roles.PRODUCER, roles.REVIEWER, roles.OPS}


def test_producer_edits_posts_and_storyboards_but_cannot_review():
    perms = perms_of(roles.PRODUCER)

    assert {"posts.add_post", "posts.change_post", "posts.change_shot", "posts.delete_shot"} <= perms
    assert {"artists.change_artist", "schedules.add_schedule", "posts.view_postevent"} <= perms
    assert "posts.review_post" not in perms
    assert "artists.delete_artist" not in perms
    assert "posts.change_postevent" not in perms


def test_reviewer_reviews_posts_and_only_views_the_rest():
    perms = perms_of(roles.REVIEWER)

    assert {"posts.review_post", "posts.view_post", "posts.change_post", "artists.view_artist"} <= perms
    assert not {"posts.add_post", "posts.delete_post", "posts.change_shot", "artists.change_artist"} & perms


def test_ops_can_do_everything_in_the_product_apps_including_review():
    perms = perms_of(roles.OPS)

    assert "posts.review_post" in perms
    for label in [
        "artists.artist",
        "artists.voice",
        "artists.wardrobe",
        "artists.source",
        "schedules.schedule",
        "posts.post",
        "posts.shot",
    ]:
        app, model = label.split(".")
        assert {f"{app}.{action}_{model}" for action in ("view", "add", "change", "delete")} <= perms, label


def test_nobody_edits_the_post_event_trail():
    for role in (roles.PRODUCER, roles.REVIEWER):
        assert not {"posts.change_postevent", "posts.delete_postevent"} & perms_of(role), role


@pytest.mark.parametrize(("role", "may_review"), [(roles.PRODUCER, False), (roles.REVIEWER, True), (roles.OPS, True)])
def test_only_reviewers_and_ops_may_review(role, may_review):
    user = make_user(role=role)

    assert user.has_perm("posts.review_post") is may_review
    assert roles.can_review(user) is may_review


def test_only_ops_and_superusers_count_as_ops():
    assert roles.is_ops(make_user(role=roles.OPS))
    assert roles.is_ops(make_user(role=None, is_superuser=True))
    assert not roles.is_ops(make_user(role=roles.PRODUCER))
    assert not roles.is_ops(make_user(role=roles.REVIEWER))
    assert not roles.is_ops(AnonymousUser())


def test_anonymous_and_missing_users_cannot_review():
    assert not roles.can_review(AnonymousUser())
    assert not roles.can_review(None)
