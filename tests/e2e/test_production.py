"""The README demo in a real browser: a reviewer approves the seeded post and watches it become a video."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from posts.models import Post, PostStatus, Shot
from tests.e2e.conftest import PASSWORD, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def in_review(asgi_server) -> Post:
    call_command("seed_demo", password=PASSWORD, quiet=True)
    return Post.objects.get(status=PostStatus.REVIEW)


def open_post(page, base: str, post: Post) -> None:
    page.goto(f"{base}/posts/{post.pk}/")
    expect(page.locator(".live")).to_have_text("Live")


def test_approving_the_demo_post_renders_an_animatic_the_page_can_play(
    in_review, asgi_server, start_worker, page, screenshot
):
    start_worker(cpu=True)  # no ComfyUI, no voice server: title cards and captions, as on a laptop
    log_in(page, asgi_server.url, "reviewer")
    open_post(page, asgi_server.url, in_review)

    page.get_by_role("button", name="Approve").click()

    expect(page.locator(".post-facts .badge")).to_have_text("Rendering")
    expect(page.locator(".production-text")).to_contain_text("video")
    expect(page.locator(".post-facts .badge")).to_have_text("Done", timeout=120_000)
    player = page.locator(".final-video video")
    expect(player).to_be_visible()
    # The browser can load it: the media view serves the MP4 to a signed-in user.
    duration = player.evaluate(
        """v => new Promise(ok => v.readyState >= 1
            ? ok(v.duration) : v.addEventListener("loadedmetadata", () => ok(v.duration)))"""
    )
    in_review.refresh_from_db()
    expected = float(sum(shot.duration_seconds for shot in in_review.shots.all()))
    assert abs(duration - expected) < 0.1
    screenshot(page, "production-done")


def test_a_failed_render_says_which_shot_and_retry_makes_the_video(
    in_review, asgi_server, start_worker, page, screenshot
):
    shot = in_review.shots.order_by("position").last()
    Shot.objects.filter(pk=shot.pk).update(manual_asset="shots/manual/deleted-by-someone.png")
    start_worker(cpu=True)
    log_in(page, asgi_server.url, "reviewer")
    open_post(page, asgi_server.url, in_review)

    page.get_by_role("button", name="Approve").click()

    failure = page.locator(".production-failure")
    expect(failure).to_contain_text(
        f"Clip {shot.position}: cannot read shots/manual/deleted-by-someone.png", timeout=60_000
    )
    expect(failure).to_contain_text("Retry render")
    expect(page.locator(".post-facts .badge")).to_have_text("Failed")
    screenshot(page, "production-failed")

    Shot.objects.filter(pk=shot.pk).update(manual_asset="")  # the producer removes the broken asset
    page.get_by_role("button", name="Retry render").click()

    expect(page.locator(".post-facts .badge")).to_have_text("Done", timeout=120_000)
    expect(failure).to_be_hidden()
