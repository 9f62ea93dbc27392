"""The schedules calendar in a real Chromium, served by the real ASGI server (uvicorn)."""

import zoneinfo
from datetime import date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from artists.models import Artist
from posts.models import Post
from schedules.models import Schedule, ScheduleRun
from tests.e2e.conftest import PASSWORD, log_in
from tests.factories import make_schedule, make_schedule_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def demo(asgi_server) -> Schedule:
    """The seeded demo, plus "every Monday and Thursday at 09:30 Shanghai time" for Luna and a few past runs."""
    call_command("seed_demo", password=PASSWORD, quiet=True)
    luna = Artist.objects.get(slug="luna-chen")
    schedule = make_schedule(
        artist=luna,
        title="Luna 周一周四早班",
        weekdays=["monday", "thursday"],
        times=["09:30"],
        timezone="Asia/Shanghai",
    )
    now = timezone.now().replace(second=0, microsecond=0)
    post = Post.objects.filter(artist=luna).first()
    make_schedule_run(schedule=schedule, slot_at=now - timedelta(days=1, hours=3), post=post)
    make_schedule_run(
        schedule=schedule,
        slot_at=now - timedelta(days=4),
        outcome=ScheduleRun.Outcome.MISSED,
        detail="The scheduler was not running within 1:00:00 of this slot.",
    )
    kai = Schedule.objects.get(artist__slug="kai-nova")
    make_schedule_run(
        schedule=kai,
        slot_at=now - timedelta(days=6),
        outcome=ScheduleRun.Outcome.SKIPPED,
        detail="Kai Nova is inactive.",
    )
    return schedule


def test_a_producer_sees_the_monday_and_thursday_0930_shanghai_slots_on_the_timeline(
    demo, asgi_server, page, screenshot, tmp_path
):
    base, schedule = asgi_server.url, demo
    log_in(page, base, "producer")

    page.get_by_role("link", name="Upcoming from schedules →").click()
    expect(page.get_by_role("heading", name="Calendar", level=1)).to_be_visible()
    expect(page.locator(".site-nav a[aria-current=page]")).to_have_text("Calendar")
    expect(page.locator(".lane")).to_have_count(2)  # Luna and Kai: the producer's two artists

    # Monday and Thursday: one or two of them from today's midnight for seven days, each at 09:30 Shanghai.
    markers = page.locator(f'.slot[data-schedule="{schedule.pk}"]')
    expect(markers.first).to_be_visible()
    assert 1 <= markers.count() <= 3
    for i in range(markers.count()):
        marker = markers.nth(i)
        assert marker.locator("time").inner_text() == "09:30"
        day = marker.get_attribute("data-day")
        assert date.fromisoformat(day).strftime("%A") in ("Monday", "Thursday")
        assert "Luna 周一周四早班" in marker.inner_text()
    # Past runs: newest first, the created one links to its storyboard.
    runs = page.locator(".run-table tbody tr")
    expect(runs).to_have_count(3)
    expect(runs.first.locator(".badge")).to_have_text("Post created")
    expect(runs.first.locator("a[href^='/posts/']")).to_be_visible()
    page.wait_for_function("() => [...document.querySelectorAll('.lane-head img')].every(i => i.complete)")
    screenshot(page, "calendar", full_page=True)

    # The same slots seen from Berlin: 02:30 (winter) or 03:30 (summer) on the same morning.
    page.fill("input[name=tz]", "Europe/Berlin")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".page-lede strong")).to_have_text("Europe/Berlin")
    first = markers.first
    slot = datetime.fromisoformat(first.locator("time").get_attribute("datetime"))
    expected = slot.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert first.locator("time").inner_text() == f"{expected:%H:%M}" in ("02:30", "03:30")

    # A month: more of them, each still on a Monday or Thursday.
    page.select_option("select[name=days]", "30")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".tl-day")).to_have_count(30)
    assert markers.count() >= 8
    page.screenshot(path=str(tmp_path / "calendar-30-days.png"), full_page=True)

    # Luna's admin page lists her next slots, each in its schedule's own zone, linking to the schedule.
    page.goto(f"{base}/admin/artists/artist/{schedule.artist_id}/change/")
    rows = page.locator(".next-slots tbody tr")
    expect(rows).to_have_count(10)
    expect(rows.filter(has_text="Luna 周一周四早班").first).to_contain_text("09:30 Asia/Shanghai")
    page.locator(".next-slots").screenshot(path=str(tmp_path / "artist-next-slots.png"))
