"""A newcomer's first five minutes, in a real browser: log in as the demo producer and browse."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

# transaction=True: the live server thread needs committed data. The flush after each test
# also drops the role groups; seed_demo brings them back.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "demo-pass-for-e2e"


@pytest.fixture
def demo(live_server):
    call_command("seed_demo", password=PASSWORD, quiet=True)
    return live_server.url


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def test_demo_producer_logs_in_and_browses_artists_schedules_and_a_storyboard(demo, page, tmp_path):
    _log_in(page, demo, "producer")

    page.click("a[href$='/admin/artists/artist/']")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    # Face anchor thumbnails are real images served to a signed-in user.
    page.wait_for_function("() => [...document.querySelectorAll('#result_list img')].every(i => i.complete)")
    widths = page.eval_on_selector_all("#result_list .field-face_thumb img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths)

    page.goto(f"{demo}/admin/schedules/schedule/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)

    page.goto(f"{demo}/admin/posts/post/?status__exact=draft")
    page.locator("#result_list tbody tr th a").first.click()
    shots = page.locator("#shots-group tbody tr.form-row.has_original")
    expect(shots).to_have_count(6)
    locked = [shots.nth(i).locator("input[name$='-locked']").is_checked() for i in range(6)]
    assert locked == [True, False, False, True, False, False]
    assert page.locator(".field-status_label").inner_text().strip().lower().startswith("status")
    page.screenshot(path=str(tmp_path / "storyboard.png"), full_page=True)


def test_a_wrong_password_keeps_the_visitor_on_the_login_page(demo, page):
    page.goto(f"{demo}/admin/")
    page.fill("#id_username", "producer")
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    expect(page.locator(".errornote")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/login/"))
