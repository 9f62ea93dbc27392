"""The storyboard page in a real Chromium, served by the real ASGI server (uvicorn) with its websocket."""

import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from factory.services import template_import
from posts import services
from posts.models import Post, PostStatus, Shot, ShotKind, ShotWorkflow
from tests.e2e.conftest import PASSWORD, log_in
from tests.factories import make_artist, make_post, make_user, png_bytes
from tests.fakes.comfyui import COMFYUI_VERSION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

TEST_PASSWORD = "pw-for-tests-1"  # what tests.factories.make_user gives everyone

# A model-free picture workflow using only placeholders posts.pipeline offers: a teal 9:16 frame, blurred, a seed.
B_ROLL_WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": "{{WIDTH}}", "height": "{{HEIGHT}}", "batch_size": 1, "color": 0x0E7490},
    },
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "shot"}},
    "4": {"class_type": "ImageAddNoise", "inputs": {"image": ["2", 0], "seed": "{{SEED}}", "strength": 0.05}},
}


@pytest.fixture
def demo(asgi_server) -> Post:
    """The seeded demo, and its draft post (six shots; shots 1 and 4 locked)."""
    call_command("seed_demo", password=PASSWORD, quiet=True)
    return Post.objects.get(status=PostStatus.DRAFT)


def card(page, shot: Shot):
    return page.locator(f'.shot-card[data-shot-id="{shot.pk}"]')


def open_storyboard(page, base: str, post: Post) -> None:
    page.goto(f"{base}/posts/{post.pk}/")
    # Live means the socket said hello and the page re-read the state.
    expect(page.locator(".live")).to_have_text("Live")


def saved(page, version: int) -> None:
    """Wait until the page holds storyboard `version` and has nothing in flight."""
    board = page.locator("#storyboard")
    expect(board).to_have_attribute("data-version", str(version))
    expect(board).to_have_attribute("data-pending-writes", "0")


def version_on(page) -> int:
    return int(page.locator("#storyboard").get_attribute("data-version"))


def shot_ids(page) -> list[int]:
    return [int(i) for i in page.locator(".shot-card").evaluate_all("cards => cards.map(c => c.dataset.shotId)")]


def test_a_producer_locks_reorders_and_edits_shots_and_every_change_persists(demo, asgi_server, page, screenshot):
    base, post = asgi_server.url, demo
    shots = list(post.shots.order_by("position"))
    log_in(page, base, "producer")

    # The post list: both demo posts, filtered by status, each linking to its storyboard.
    rows = page.locator(".post-table tbody tr")
    expect(rows).to_have_count(2)
    screenshot(page, "post-list")
    page.select_option("select[name=status]", "review")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    rows.first.locator("a").click()
    expect(page.locator(".readonly-note")).to_contain_text("read-only until it goes back to draft")
    expect(page.locator(".shot-card textarea").first).not_to_be_editable()

    open_storyboard(page, base, post)
    expect(page.locator(".shot-card")).to_have_count(6)
    expect(page.locator(".post-title")).to_have_text(post.title)
    screenshot(page, "storyboard")
    page.set_viewport_size({"width": 800, "height": 900})
    screenshot(page, "storyboard-800px")
    page.set_viewport_size({"width": 1400, "height": 900})

    # Lock shot 3: it stays locked after a reload, and its script is read-only.
    third = card(page, shots[2])
    version = version_on(page)
    third.get_by_role("button", name="Lock shot 3").click()
    saved(page, version + 1)
    expect(third.locator(".lock-toggle")).to_have_attribute("aria-pressed", "true")
    expect(third.locator("textarea[name=script]")).not_to_be_editable()
    page.reload()
    expect(page.locator(".live")).to_have_text("Live")
    expect(third.locator(".lock-toggle")).to_have_attribute("aria-pressed", "true")
    expect(third.locator("textarea[name=script]")).not_to_be_editable()

    # Keyboard-accessible reorder: shot 2 moves down, below the old shot 3.
    page.get_by_role("button", name="Move shot 2 down").click()
    saved(page, version + 2)
    order = [shots[0].pk, shots[2].pk, shots[1].pk, *(s.pk for s in shots[3:])]
    assert shot_ids(page) == order

    # Drag and drop on the handle: the third card goes on top (dropped on the first card's upper half).
    # (Both stay in view: Chromium does not start a drag when Playwright scrolls between press and move.)
    card(page, shots[1]).locator(".drag-handle").drag_to(
        page.locator(".shot-card").first, target_position={"x": 300, "y": 8}
    )
    saved(page, version + 3)
    order = [shots[1].pk, shots[0].pk, shots[2].pk, *(s.pk for s in shots[3:])]
    assert shot_ids(page) == order
    expect(card(page, shots[1]).locator(".shot-pos")).to_have_text("1")

    # Inline edit of a script: saved on blur.
    fifth = card(page, shots[4]).locator("textarea[name=script]")
    fifth.fill("第二是黄金：央行还在买。第三是高股息股，但要看现金流。")
    fifth.press("Tab")
    saved(page, version + 4)

    page.reload()
    expect(page.locator(".live")).to_have_text("Live")
    assert shot_ids(page) == order
    expect(card(page, shots[4]).locator("textarea[name=script]")).to_have_value(
        "第二是黄金：央行还在买。第三是高股息股，但要看现金流。"
    )
    expect(card(page, shots[2]).locator(".lock-toggle")).to_have_attribute("aria-pressed", "true")

    in_db = list(post.shots.order_by("position").values_list("pk", "locked", "script"))
    assert [pk for pk, _, _ in in_db] == order
    assert dict((pk, locked) for pk, locked, _ in in_db)[shots[2].pk] is True
    assert dict((pk, script) for pk, _, script in in_db)[shots[4].pk].startswith("第二是黄金：央行还在买")


def test_two_producers_see_each_others_edits_live_and_a_conflict_keeps_both_texts(
    demo, asgi_server, browser, page, screenshot
):
    base, post = asgi_server.url, demo
    shots = list(post.shots.order_by("position"))
    second = make_user(username="producer2", first_name="Mia")
    post.artist.members.add(second)

    page_a = page
    context_b = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    context_b.set_default_timeout(15_000)
    page_b = context_b.new_page()
    try:
        log_in(page_a, base, "producer")
        log_in(page_b, base, "producer2", TEST_PASSWORD)
        open_storyboard(page_a, base, post)
        open_storyboard(page_b, base, post)

        # A edits shot 3; B sees it without reloading, with a note saying who.
        a_text = "第一条主线：长久期债券。降息时，早买的高票息债更值钱。"
        script_a = card(page_a, shots[2]).locator("textarea[name=script]")
        version = version_on(page_a)
        script_a.fill(a_text)
        script_a.press("Tab")
        saved(page_a, version + 1)
        expect(card(page_b, shots[2]).locator("textarea[name=script]")).to_have_value(a_text)
        expect(page_b.locator(".toast").first).to_have_text("producer edited the storyboard")
        assert version_on(page_b) == version_on(page_a)

        # B starts typing in shot 5 while A saves a change to that same script.
        script_b = card(page_b, shots[4]).locator("textarea[name=script]")
        b_text = "第二是黄金（B 的版本）：别追高。"
        script_b.fill(b_text)
        a_again = "第二是黄金（A 的版本）：分批买。"
        script_a5 = card(page_a, shots[4]).locator("textarea[name=script]")
        a_version = version + 2
        script_a5.fill(a_again)
        script_a5.press("Tab")
        saved(page_a, a_version)

        # B's page took the news, yet left the field B is typing in alone.
        expect(page_b.locator("#storyboard")).to_have_attribute("data-version", str(a_version))
        expect(script_b).to_be_focused()
        expect(script_b).to_have_value(b_text)

        # B saves: refused, naming A; B's words stay on screen to copy.
        script_b.press("Tab")
        banner = page_b.locator(".banner-conflict")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("producer changed this post")
        expect(banner.locator(".your-text-value")).to_have_text(b_text)
        screenshot(page_b, "conflict")
        assert Shot.objects.get(pk=shots[4].pk).script == a_again  # nothing A saved was overwritten

        # Reload brings A's words into the field.
        banner.get_by_role("button", name="Reload").click()
        expect(banner).to_have_count(0)
        expect(script_b).to_have_value(a_again)
        expect(card(page_b, shots[2]).locator("textarea[name=script]")).to_have_value(a_text)
    finally:
        context_b.close()

    in_db = dict(post.shots.values_list("pk", "script"))
    assert in_db[shots[2].pk] == a_text and in_db[shots[4].pk] == a_again


def test_a_shot_picture_job_shows_its_progress_and_its_picture_arrives_live(
    demo, asgi_server, fake_comfyui, start_worker, page, screenshot
):
    base, post = asgi_server.url, demo
    b_roll = post.shots.filter(kind=ShotKind.B_ROLL, locked=False).order_by("position").first()
    template_import(name="b-roll-card", workflow=B_ROLL_WORKFLOW)
    ShotWorkflow.objects.create(kind=ShotKind.B_ROLL, template_name="b-roll-card")
    fake_comfyui.steps_per_node = 10
    fake_comfyui.step_seconds = 0.15
    start_worker(fake_comfyui.url)

    log_in(page, base, "producer")
    open_storyboard(page, base, post)
    shot = card(page, b_roll)
    expect(shot.locator(".shot-status")).to_have_text("Pending")
    # Record every value the progress bar shows; a reload would wipe the marker.
    page.evaluate(
        """(id) => {
            window.__noReload = true;
            window.__bars = [];
            setInterval(() => {
                const bar = document.querySelector(`.shot-card[data-shot-id="${id}"] .job-bar`);
                if (bar && !bar.hidden && window.__bars.at(-1) !== bar.value) window.__bars.push(bar.value);
            }, 20);
        }""",
        b_roll.pk,
    )

    shot.get_by_role("button", name=f"Generate the picture of shot {b_roll.position}").click()
    expect(shot.locator(".shot-status")).to_have_text("Producing")
    page.wait_for_function(
        "() => window.__bars.filter((v, i, all) => i > 0 && v > all[i - 1]).length >= 2", timeout=30_000
    )
    expect(shot.locator(".job-node")).to_contain_text("Node")
    screenshot(page, "producing", clip=_clip_around(shot))

    image = shot.locator(".preview img")
    expect(image).to_be_visible(timeout=30_000)
    page.wait_for_function(
        "(id) => document.querySelector(`.shot-card[data-shot-id='${id}'] .preview img`)?.naturalWidth > 0",
        arg=b_roll.pk,
    )
    expect(shot.locator(".shot-status")).to_have_text("Ready")
    expect(shot.locator(".job-bar")).to_be_hidden()
    screenshot(page, "picture-ready", clip=_clip_around(shot))
    assert page.evaluate("window.__noReload") is True
    produced = Shot.objects.get(pk=b_roll.pk)
    assert produced.status == "ready" and produced.generated_asset.name

    # How the picture was made, folded under the card: template version and hash, seed, ComfyUI.
    how = shot.locator("details.provenance")
    expect(how).to_be_visible()
    how.locator("summary").click()
    made = produced.job.provenance
    expect(how).to_contain_text(f"Picture: b-roll-card v1 #{made['template']['sha256'][:8]}")
    expect(how).to_contain_text(f"seed {made['seed']}")
    expect(how).to_contain_text(f"ComfyUI {COMFYUI_VERSION}")
    screenshot(page, "provenance", clip=_clip_around(shot))


@pytest.fixture
def voice_server_env(monkeypatch):
    """A voice server for the web server to queue voices for (nothing listens: no worker runs here). Requested
    before `demo`, so the server process starts with it."""
    monkeypatch.setenv("COSYVOICE_URL", "http://127.0.0.1:9")


def test_a_locked_shot_with_a_voice_offers_a_new_take_and_queues_it(voice_server_env, demo, asgi_server, page):
    from factory.models import Job, JobKind
    from tests.factories import make_media_file, wav_bytes

    base, post = asgi_server.url, demo
    locked = post.shots.get(position=1)
    unlocked = post.shots.filter(locked=False, kind=ShotKind.A_ROLL).first() or post.shots.get(position=2)
    for shot in (locked, unlocked):
        voice = make_media_file(f"shots/voice/demo-{shot.pk}.wav", wav_bytes(1.0, rate=24000))
        Shot.objects.filter(pk=shot.pk).update(voice_asset=voice)

    log_in(page, base, "producer")
    open_storyboard(page, base, post)

    button = card(page, locked).get_by_role("button", name="New take of shot 1's voice")
    expect(button).to_be_visible()
    expect(card(page, unlocked).locator(".revoice")).to_be_hidden()  # production re-voices an unlocked shot itself
    button.click()
    expect(button).to_have_text("Speaking…")
    expect(card(page, locked).locator(".voice-state")).to_have_text("Voice: waiting for the voice server…")
    job = Job.objects.get(subject__startswith=f"post.{post.pk}/shot.{locked.pk}/voice@")
    assert job.kind == JobKind.TTS and job.params["text"] == locked.script


def _clip_around(locator) -> dict:
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    return {"x": box["x"] - 16, "y": box["y"] - 16, "width": box["width"] + 32, "height": box["height"] + 32}


def test_the_page_shows_reconnecting_when_the_socket_drops_and_catches_up_on_recovery(
    demo, asgi_server, page, screenshot
):
    base, post = asgi_server.url, demo
    shots = list(post.shots.order_by("position"))
    log_in(page, base, "producer")
    open_storyboard(page, base, post)
    live = page.locator(".live")

    asgi_server.kill()
    expect(live).to_have_text("Reconnecting…")
    expect(live).to_have_attribute("data-state", "reconnecting")
    screenshot(page, "reconnecting", clip={"x": 0, "y": 0, "width": 1400, "height": 520})

    # Someone edits while this page cannot hear about it.
    fresh = Post.objects.get(pk=post.pk)
    before = fresh.version
    services.shot_save(
        post=fresh,
        actor=User.objects.get(username="reviewer"),
        expected_version=fresh.version,
        data={"script": "断线期间改的台词：降息不等于牛市。"},
        shot_id=shots[2].pk,
    )

    asgi_server.start()
    expect(live).to_have_text("Live", timeout=30_000)
    expect(card(page, shots[2]).locator("textarea[name=script]")).to_have_value("断线期间改的台词：降息不等于牛市。")
    expect(page.locator("#storyboard")).to_have_attribute("data-version", str(before + 1))


def test_anonymous_visitors_log_in_first_and_outsiders_get_404_for_the_page_and_its_state(asgi_server, page):
    base = asgi_server.url
    member = make_user(username="member")
    post = make_post(artist=make_artist(members=[member]), shots=2)

    page.goto(f"{base}/posts/{post.pk}/")
    expect(page).to_have_url(re.compile(rf"/admin/login/\?next=/posts/{post.pk}/$"))

    outsider = make_user(username="outsider")
    log_in(page, base, outsider.username, TEST_PASSWORD)
    expect(page.locator(".post-table")).to_have_count(0)  # the list does not show it either
    assert page.goto(f"{base}/posts/{post.pk}/").status == 404
    assert page.goto(f"{base}/posts/{post.pk}/state").status == 404


def test_an_ended_session_says_so_and_keeps_the_unsaved_text(asgi_server, page):
    base = asgi_server.url
    member = make_user(username="member")
    post = make_post(artist=make_artist(members=[member]), shots=2)
    first = post.shots.get(position=1)
    log_in(page, base, member.username, TEST_PASSWORD)
    open_storyboard(page, base, post)

    page.context.clear_cookies()  # signed out elsewhere, or the session expired
    script = card(page, first).locator("textarea[name=script]")
    script.fill("Words typed after the session ended.")
    script.press("Tab")
    banner = page.locator(".banner-session")
    expect(banner).to_contain_text("Your session ended: reload to sign in again")
    expect(banner.locator(".your-text-value")).to_have_text("Words typed after the session ended.")
    assert Shot.objects.get(pk=first.pk).script == "Line 1."


def test_a_reviewer_rejects_with_feedback_and_the_post_goes_back_to_its_producers(demo, asgi_server, page):
    base = asgi_server.url
    in_review = Post.objects.get(status=PostStatus.REVIEW)
    log_in(page, base, "reviewer")
    open_storyboard(page, base, in_review)
    expect(page.locator(".readonly-note")).to_be_visible()

    page.get_by_role("button", name="Reject with feedback").click()
    feedback = page.locator("textarea[name=feedback]")
    expect(feedback).to_be_focused()
    feedback.fill("开头的钩子再短一点；第 3 镜补一个真实的跑分数字。")
    page.locator(".feedback-form").get_by_role("button", name="Reject").click()

    expect(page.locator(".post-facts .badge")).to_have_text("Rejected")
    expect(page.locator(".feedback")).to_contain_text("第 3 镜补一个真实的跑分数字")
    # Editable again, for its producers: a reviewer's role may not edit shots (the endpoints say 403 too).
    expect(page.locator(".readonly-note")).to_have_text(
        "Your role reviews storyboards: you can read this one and decide on it, not edit it."
    )
    expect(page.locator(".shot-card textarea[name=script]").nth(1)).not_to_be_editable()
    assert page.locator(".shot-card .lock-toggle").count() == page.locator(".shot-card").count() > 0
    for control in (".delete-shot", ".lock-toggle", ".upload", ".generate", ".move-up", ".drag-handle"):
        expect(page.locator(f".shot-card {control}:visible")).to_have_count(0)
    expect(page.locator(".add-shot-open")).to_be_hidden()
    expect(page.get_by_role("button", name="Write storyboard", exact=False)).to_have_count(0)
    in_review.refresh_from_db()
    assert in_review.status == PostStatus.REJECTED and in_review.feedback.startswith("开头的钩子")


def test_a_producer_adds_a_shot_uploads_and_removes_its_asset_and_deletes_it(asgi_server, page):
    base = asgi_server.url
    member = make_user(username="member")
    post = make_post(artist=make_artist(members=[member]), shots=1)
    log_in(page, base, member.username, TEST_PASSWORD)
    open_storyboard(page, base, post)

    # A new B-roll shot without a prompt is refused next to the field; with one it is added last.
    page.get_by_role("button", name="Add shot").click()
    form = page.locator(".add-form")
    form.locator("select[name=kind]").select_option("b_roll")
    form.get_by_role("button", name="Add this shot").click()
    expect(form.locator(".field-error").filter(has_text="Describe the picture")).to_be_visible()
    form.locator("textarea[name=visual_prompt]").fill("City skyline at dusk, slow push-in")
    form.get_by_role("button", name="Add this shot").click()
    expect(page.locator(".shot-card")).to_have_count(2)
    added = Shot.objects.get(post=post, position=2)
    new_card = card(page, added)
    expect(new_card.locator("textarea[name=visual_prompt]")).to_have_value("City skyline at dusk, slow push-in")

    # A manual asset replaces generation until it is removed.
    new_card.locator("input[type=file]").set_input_files(
        {"name": "skyline.png", "mimeType": "image/png", "buffer": png_bytes(90, 160)}
    )
    expect(new_card.locator(".asset-tag")).to_have_text("Manual")
    page.wait_for_function(
        "(id) => document.querySelector(`.shot-card[data-shot-id='${id}'] .preview img`)?.naturalWidth === 90",
        arg=added.pk,
    )
    expect(new_card.get_by_role("button", name="Generate the picture of shot 2")).to_be_disabled()
    expect(new_card.locator(".gen-hint")).to_have_text("Uses the manual asset")
    new_card.get_by_role("button", name="Remove the manual asset of shot 2").click()
    expect(new_card.locator(".no-asset")).to_have_text("No picture yet")
    expect(new_card.get_by_role("button", name="Generate the picture of shot 2")).to_be_enabled()

    page.once("dialog", lambda dialog: dialog.accept())
    new_card.get_by_role("button", name="Delete shot 2").click()
    expect(page.locator(".shot-card")).to_have_count(1)
    assert list(post.shots.values_list("position", flat=True)) == [1]
