"""Staff accounts: ops give roles, only a superuser makes superusers or grants more (mcn_site/admin.py)."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from mcn_site.lib import roles
from tests.admin import error_text, form_data, login
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def change_url(user) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def post_changes(client, user, **changes):
    """Submit `user`'s change form as the browser shows it, with `changes` on top (what a forged POST adds)."""
    page = client.get(change_url(user))
    assert page.status_code == 200
    data = {**form_data(page), **changes}
    return client.post(change_url(user), data)


@pytest.fixture
def all_powerful_group():
    group = Group.objects.create(name="Everything")
    group.permissions.set(Permission.objects.all())
    return group


def test_ops_cannot_make_themselves_superuser_or_grant_themselves_permissions(all_powerful_group):
    ops = make_user(role=roles.OPS, username="otto")
    client = login(ops)
    everything = [str(p.pk) for p in Permission.objects.all()]

    response = post_changes(client, ops, is_superuser="on", user_permissions=everything)

    assert response.status_code == 302  # saved: the read-only fields were ignored
    ops.refresh_from_db()
    assert not ops.is_superuser
    assert not ops.user_permissions.exists()
    assert list(ops.groups.values_list("name", flat=True)) == [roles.OPS]


def test_ops_cannot_put_anyone_in_a_group_beyond_the_roles(all_powerful_group):
    ops = make_user(role=roles.OPS)
    colleague = make_user(role=roles.PRODUCER, username="pia")
    client = login(ops)

    page = client.get(change_url(colleague))
    offered = {g.name for g in page.context["adminform"].form.fields["groups"].queryset}
    response = post_changes(client, colleague, groups=[str(all_powerful_group.pk)])
    mine = post_changes(client, ops, groups=[str(all_powerful_group.pk)])

    assert offered == set(roles.ROLES)
    assert response.status_code == mine.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in error_text(response)
    assert not colleague.groups.filter(pk=all_powerful_group.pk).exists()
    assert not ops.groups.filter(pk=all_powerful_group.pk).exists()


def test_the_superuser_fields_are_read_only_on_the_ops_form():
    ops = make_user(role=roles.OPS)

    form = login(ops).get(change_url(make_user(role=roles.PRODUCER))).context["adminform"].form

    assert "is_superuser" not in form.fields
    assert "user_permissions" not in form.fields
    assert "groups" in form.fields


def test_ops_give_a_colleague_a_role():
    ops = make_user(role=roles.OPS)
    colleague = make_user(role=roles.PRODUCER, username="pia")
    reviewer = Group.objects.get(name=roles.REVIEWER)

    response = post_changes(login(ops), colleague, groups=[str(reviewer.pk)])

    assert response.status_code == 302
    assert list(colleague.groups.values_list("name", flat=True)) == [roles.REVIEWER]


def test_ops_editing_a_user_keep_the_groups_they_may_not_give(all_powerful_group):
    ops = make_user(role=roles.OPS)
    colleague = make_user(role=roles.PRODUCER, username="pia")
    colleague.groups.add(all_powerful_group)

    response = post_changes(login(ops), colleague, first_name="Pia")

    assert response.status_code == 302
    assert set(colleague.groups.values_list("name", flat=True)) == {roles.PRODUCER, "Everything"}


def test_ops_cannot_edit_a_superusers_account():
    ops = make_user(role=roles.OPS)
    boss = make_user(role=None, username="boss", is_superuser=True)
    client = login(ops)

    page = client.get(change_url(boss))
    forged = client.post(change_url(boss), {"username": "boss", "is_active": "", "groups": []})
    password = client.post(
        reverse("admin:auth_user_password_change", args=[boss.pk]),
        {"password1": "taken-over-1234", "password2": "taken-over-1234"},
    )

    assert page.status_code == 200 and not page.context["has_change_permission"]  # view only
    assert forged.status_code == password.status_code == 403
    boss.refresh_from_db()
    assert boss.is_active and boss.check_password("pw-for-tests-1")


def test_a_superuser_may_make_a_superuser_and_grant_permissions():
    boss = make_user(role=None, is_superuser=True)
    colleague = make_user(role=roles.OPS, username="otto")
    perm = Permission.objects.get(codename="delete_user")

    response = post_changes(login(boss), colleague, is_superuser="on", user_permissions=[str(perm.pk)])

    assert response.status_code == 302
    colleague.refresh_from_db()
    assert colleague.is_superuser
    assert list(colleague.user_permissions.all()) == [perm]
