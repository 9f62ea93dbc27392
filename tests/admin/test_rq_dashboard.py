"""django_rq's queue dashboard can empty queues: only ops may open it."""

import pytest

from mcn_site.lib import roles
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/admin/rq/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("role", [roles.PRODUCER, roles.REVIEWER])
def test_producers_and_reviewers_do_not_get_the_queue_dashboard(client, role):
    client.force_login(make_user(role=role))
    assert client.get("/admin/rq/").status_code == 404
    assert client.get("/admin/rq/queues/0/").status_code == 404


def test_ops_see_the_queue_dashboard(client):
    client.force_login(make_user(role=roles.OPS))
    response = client.get("/admin/rq/")
    assert response.status_code == 200
    assert b"default" in response.content
