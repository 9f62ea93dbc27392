"""The Content-Security-Policy (django-csp, mcn_site/settings.py): scripts only from our static files."""

import base64
import hashlib
import re

import pytest
from django.test import Client

from mcn_site.lib import roles
from tests.factories import make_user

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def logged_in(role) -> Client:
    client = Client()
    client.force_login(make_user(role=role))
    return client


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_a_page_says_scripts_come_from_the_site_only():
    policy = directives(logged_in(roles.PRODUCER).get("/posts/"))

    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]


def test_the_api_docs_page_has_no_inline_script_and_serves_its_script_from_a_url():
    client = logged_in(roles.PRODUCER)

    page = client.get("/api/docs/")
    script = client.get("/api/docs/?script=")

    assert page.status_code == 200
    assert directives(page)["script-src"] == ["'self'"]
    inline = [body for body in INLINE_SCRIPT.findall(page.content) if body.strip()]
    assert inline == []
    assert b"<style" not in page.content
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


def test_the_queue_dashboard_allows_exactly_its_own_inline_script():
    response = logged_in(roles.OPS).get("/admin/rq/queues/0/")

    assert response.status_code == 200
    bodies = [body for body in INLINE_SCRIPT.findall(response.content) if body.strip()]
    assert bodies
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'" for body in bodies}
    assert hashes <= set(directives(response)["script-src"])
    assert "'unsafe-inline'" not in directives(response)["script-src"]
