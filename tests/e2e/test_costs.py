"""The storyboard page's cost panel in a real Chromium: what the post cost, each shot's cost, about what
approving costs, and the artist's budget warning (drawn by storyboard.js from the page's state)."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from factory.models import RateKind
from mcn_site.lib import roles
from posts.models import PostStatus
from tests.e2e.conftest import log_in
from tests.factories import make_artist, make_post, make_user
from tests.posts.test_costs import announce, finished, rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

TEST_PASSWORD = "pw-for-tests-1"  # what tests.factories.make_user gives everyone


def test_the_storyboard_shows_the_posts_cost_each_shots_cost_the_estimate_and_the_budget(asgi_server, page):
    producer = make_user(role=roles.PRODUCER, username="pia")
    artist = make_artist(members=[producer], stage_name="Lin Yue", monthly_budget=Decimal("10"))
    post = make_post(artist=artist, shots=2, status=PostStatus.REVIEW)
    first = post.shots.order_by("position").first()
    rate(RateKind.GPU_HOUR, "3.60")
    announce(finished(f"post.{post.pk}/shot.{first.pk}/picture@0123456789abcdef", gpu_seconds=8500))  # 8.50

    log_in(page, asgi_server.url, "pia", TEST_PASSWORD)
    page.goto(f"{asgi_server.url}/posts/{post.pk}/")

    expect(page.locator(".cost-spent")).to_have_text("Cost so far: USD 8.50 (GPU USD 8.5000 · LLM USD 0.0000)")
    expect(page.locator(".cost-estimate")).to_contain_text("Approve / render: about USD")
    expect(page.locator(".budget-note")).to_contain_text("Lin Yue has spent USD 8.50 of the")
    expect(page.locator(".budget-note")).to_have_attribute("data-state", "warning")
    expect(page.locator(f'.shot-card[data-shot-id="{first.pk}"] .shot-cost')).to_have_text("Cost so far: USD 8.5000")
