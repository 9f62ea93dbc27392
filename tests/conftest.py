import os
import shutil

import pytest


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Uploads land in a per-test folder, never in the developer's var/media; passwords hash fast."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine has no outside network: don't try
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (no browser download), closed after each module.

    Not session-wide: while Playwright's sync API is open it keeps an asyncio loop running in the main thread,
    and every later async_to_sync() there fails ("cannot use AsyncToSync in the same thread as
    an async event loop"): the consumer tests and publish() in the tests that run after these.
    """
    if not os.path.exists(CHROMIUM):
        message = "Debian chromium is not installed: apt-get install chromium fonts-noto-cjk"
        if os.environ.get("MCN_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    # The ORM calls the test itself makes run beside Playwright's loop: plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()
