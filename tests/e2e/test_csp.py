"""The Content-Security-Policy in a real Chromium: the pages work under it and the browser reports nothing blocked."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from posts.models import Post, PostStatus
from tests.e2e.conftest import PASSWORD, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# Recorded in the page before any of its own scripts run; the browser also logs each refusal to the console.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def watched(page):
    """The page, with every CSP refusal it meets collected in `page.csp_problems`."""
    problems: list[str] = []
    page.add_init_script(LISTEN)
    page.on(
        "console",
        lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.csp_problems = problems
    return page


def violations(page) -> list[str]:
    return page.csp_problems + page.evaluate("window.__cspViolations")


def test_the_storyboard_calendar_admin_and_api_docs_run_under_the_policy_with_no_violation(asgi_server, watched):
    call_command("seed_demo", password=PASSWORD, quiet=True)
    post = Post.objects.get(status=PostStatus.DRAFT)
    page, base = watched, asgi_server.url
    log_in(page, base, "ops")
    seen = {}

    def visit(url: str, ready) -> None:
        response = page.goto(f"{base}{url}")
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy, (url, policy)
        ready()
        page.wait_for_timeout(300)  # late scripts (Swagger UI's) get the time to trip the policy
        seen[url] = violations(page)

    # The storyboard: its module script runs, the socket (connect-src 'self') says hello.
    visit(f"/posts/{post.pk}/", lambda: expect(page.locator(".live")).to_have_text("Live"))
    visit("/schedules/", lambda: expect(page.locator(".lane").first).to_be_visible())
    visit("/admin/", lambda: expect(page.locator("#site-name")).to_be_visible())
    # A change form with inlines and the admin's JavaScript (add-another links, inline rows).
    visit(
        f"/admin/posts/post/{post.pk}/change/",
        lambda: expect(page.locator(".inline-group .add-row a").first).to_be_visible(),
    )
    visit("/admin/posts/post/", lambda: expect(page.locator("#changelist")).to_be_visible())
    visit("/admin/rq/queues/0/", lambda: expect(page.locator("#content-main")).to_be_visible())
    # Swagger UI: its script comes from ?script (no inline), and it draws the operations.
    visit("/api/docs/", lambda: expect(page.locator(".swagger-ui .opblock").first).to_be_visible())

    assert seen == {url: [] for url in seen}
