"""The cost ledger: finished jobs of a post priced at the rates valid when they finished, once each, and
summed per shot, post, artist and month (posts.costs, factory.costs)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from factory.costs import job_cost
from factory.models import Job, JobKind, JobStatus, Rate, RateKind, WorkflowTemplate
from factory.services import job_cancel, job_payload, job_retry
from factory.signals import job_changed
from mcn_site.lib import roles
from mcn_site.lib.months import month_of, parse_month
from posts.costs import (
    artist_costs,
    cost_record,
    estimate_production,
    estimate_rewrite,
    parse_subject,
    post_cost,
    shot_costs,
    totals_by_artist_month,
)
from posts.models import CostEntry, PostStatus
from tests.factories import make_artist, make_job, make_post, make_shot_workflow, make_template, make_user

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=400)


def rate(kind: str, price: str, *, since=LONG_AGO, **extra) -> Rate:
    return Rate.objects.create(kind=kind, price=Decimal(price), valid_from=since, **extra)


def finished(subject: str, *, status=JobStatus.SUCCEEDED, at=None, template=None, **usage) -> Job:
    """A job of `subject` that reached `status` at `at` (default now), with its usage columns set directly
    (the usage helper fills them from real measurements)."""
    kind = usage.pop("kind", JobKind.COMFYUI)
    fields = {"subject": subject, "status": status, "finished_at": at or timezone.now(), **usage}
    if kind == JobKind.COMFYUI:
        return make_job(template=template or make_template(), **fields)
    return Job.objects.create(kind=kind, params={}, queued_at=timezone.now(), **fields)  # CPU jobs: no template


def announce(job: Job) -> None:
    """What factory.services sends after the job's status changed (the receivers run as in production)."""
    job_changed.send(sender=Job, **job_payload(job, event="status"))


@pytest.fixture
def post():
    return make_post(shots=2)


@pytest.fixture
def shot(post):
    return post.shots.order_by("position").first()


# --- pricing (factory.costs) ------------------------------------------------------------------


def test_a_comfyui_job_costs_its_gpu_seconds_at_the_default_pools_hour(post, shot):
    rate(RateKind.GPU_HOUR, "3.60")
    job = finished(f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef", gpu_seconds=100, wall_seconds=130)

    assert job_cost(job) == Decimal("0.100000")


def test_a_pool_with_its_own_rate_is_priced_at_it_and_another_pool_at_the_default(post):
    rate(RateKind.GPU_HOUR, "3.60")
    rate(RateKind.GPU_HOUR, "7.20", pool="video")
    video = finished(f"post.{post.pk}/render", template=make_template(gpu_pool="video"), gpu_seconds=3600)
    other = finished(f"post.{post.pk}/render", template=make_template(gpu_pool="h200"), gpu_seconds=3600)

    assert (job_cost(video), job_cost(other)) == (Decimal("7.200000"), Decimal("3.600000"))


def test_llm_tokens_are_priced_per_million_with_a_models_own_rate_before_the_default_row(post):
    rate(RateKind.LLM_PROMPT, "1.00")
    rate(RateKind.LLM_COMPLETION, "2.00")
    rate(RateKind.LLM_PROMPT, "0.50", model="deepseek-chat")
    job = finished(
        f"post.{post.pk}/storyboard",
        kind=JobKind.LLM,
        llm_model="deepseek-chat",
        llm_prompt_tokens=1000,
        llm_completion_tokens=500,
        wall_seconds=40,
    )

    # 1000 x 0.50 / 1e6 + 500 x 2.00 / 1e6; its wall time (waiting on the API) costs no CPU hour.
    rate(RateKind.CPU_HOUR, "1.00")
    assert job_cost(job) == Decimal("0.001500")


def test_tts_and_render_jobs_cost_their_wall_time_at_the_cpu_hour_and_nothing_without_one(post, shot):
    tts = finished(f"post.{post.pk}/shot.{shot.pk}/voice@0123456789abcdef", kind=JobKind.TTS, wall_seconds=36)
    assert job_cost(tts) == Decimal("0")
    rate(RateKind.CPU_HOUR, "0.50")
    assert job_cost(tts) == Decimal("0.005000")


def test_a_rate_for_a_pool_on_an_llm_kind_is_refused():
    with pytest.raises(ValidationError) as refused:
        Rate(kind=RateKind.LLM_PROMPT, pool="video", price=Decimal("1")).full_clean()
    assert "Only GPU hours are priced per pool" in str(refused.value)


# --- the ledger ------------------------------------------------------------------------------------


def test_a_finished_shot_job_is_priced_once_into_the_ledger_when_its_status_is_announced(post, shot):
    rate(RateKind.GPU_HOUR, "3.60")
    job = finished(f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef", gpu_seconds=100)

    announce(job)
    announce(job)  # a repeated signal

    entry = CostEntry.objects.get()
    assert (entry.job_id, entry.post_id, entry.shot_id, entry.artist_id) == (job.pk, post.pk, shot.pk, post.artist_id)
    assert (entry.step, entry.gpu_seconds, entry.amount, entry.gpu_amount) == (
        "picture",
        100,
        Decimal("0.1"),
        Decimal("0.1"),
    )
    assert entry.month == month_of(job.finished_at)


def test_the_directors_and_the_renders_jobs_are_priced_too_and_other_jobs_are_not(post):
    rate(RateKind.LLM_COMPLETION, "2.00")
    rate(RateKind.GPU_HOUR, "3.60")
    director = finished(f"post.{post.pk}/storyboard", kind=JobKind.LLM, llm_completion_tokens=1_000_000)
    render = finished(f"post.{post.pk}/render", kind=JobKind.RENDER)
    ops_test = finished("ops-test", gpu_seconds=3600)
    running = make_job(subject=f"post.{post.pk}/render", status=JobStatus.RUNNING, gpu_seconds=3600)
    for job in (director, render, ops_test, running):
        announce(job)

    assert sorted(CostEntry.objects.values_list("step", "amount")) == [
        ("render", Decimal("0")),
        ("storyboard", Decimal("2")),
    ]


def test_failed_and_cancelled_jobs_cost_what_they_consumed(post, shot, django_capture_on_commit_callbacks):
    rate(RateKind.GPU_HOUR, "3.60")
    failed = finished(
        f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef", status=JobStatus.FAILED, gpu_seconds=50
    )
    announce(failed)
    queued = make_job(subject=f"post.{post.pk}/shot.{shot.pk}/motion@0123456789abcdef")
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job_id=queued.pk)  # the real service: its signal after commit prices it

    assert dict(CostEntry.objects.values_list("job_status", "amount")) == {
        "failed": Decimal("0.05"),
        "cancelled": Decimal("0"),
    }


def test_a_retried_job_that_finishes_again_is_priced_again_in_its_one_row(
    post, shot, django_capture_on_commit_callbacks
):
    rate(RateKind.GPU_HOUR, "3.60")
    job = finished(f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef", status=JobStatus.FAILED, gpu_seconds=36)
    announce(job)
    with django_capture_on_commit_callbacks(execute=True):
        job_retry(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), gpu_seconds=72)
    announce(Job.objects.get(pk=job.pk))

    entry = CostEntry.objects.get()
    assert (entry.job_status, entry.gpu_seconds, entry.amount) == ("succeeded", 72, Decimal("0.072"))


def test_a_price_change_reprices_nothing_that_finished_before_it(post, shot):
    rate(RateKind.GPU_HOUR, "3.60")
    earlier = finished(
        f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef",
        gpu_seconds=100,
        at=timezone.now() - timedelta(hours=2),
    )
    announce(earlier)
    rate(RateKind.GPU_HOUR, "7.20", since=timezone.now() - timedelta(hours=1))
    later = finished(f"post.{post.pk}/shot.{shot.pk}/picture@fedcba9876543210", gpu_seconds=100)
    announce(later)
    cost_record(job_id=earlier.pk)  # priced again (a repeated signal): still at the rate of its day

    amounts = dict(CostEntry.objects.values_list("job_id", "amount"))
    assert amounts == {earlier.pk: Decimal("0.1"), later.pk: Decimal("0.2")}


def test_the_ledger_row_outlives_the_shot_rewritten_away(post, shot):
    rate(RateKind.GPU_HOUR, "3.60")
    job = finished(f"post.{post.pk}/shot.{shot.pk}/picture@0123456789abcdef", gpu_seconds=100)
    announce(job)
    shot.delete()

    entry = CostEntry.objects.get()
    assert (entry.shot_id, entry.post_id, entry.amount) == (None, post.pk, Decimal("0.1"))
    assert post_cost(post_id=post.pk)["total"] == "0.1000"


# --- sums ---------------------------------------------------------------------------------------


def test_costs_add_up_per_shot_post_artist_and_month():
    rate(RateKind.GPU_HOUR, "3.60")
    rate(RateKind.LLM_PROMPT, "1.00")
    artist, other_artist = make_artist(), make_artist()
    post, second_post, other = (
        make_post(artist=artist, shots=2),
        make_post(artist=artist),
        make_post(artist=other_artist),
    )
    one, two = post.shots.order_by("position")
    last_month = timezone.now().replace(day=1) - timedelta(days=3)
    jobs = [
        finished(f"post.{post.pk}/shot.{one.pk}/picture@0123456789abcdef", gpu_seconds=100),  # 0.10
        finished(f"post.{post.pk}/shot.{one.pk}/motion@0123456789abcdef", gpu_seconds=200),  # 0.20
        finished(f"post.{post.pk}/shot.{two.pk}/picture@0123456789abcdef", gpu_seconds=300),  # 0.30
        finished(f"post.{post.pk}/storyboard", kind=JobKind.LLM, llm_prompt_tokens=400_000),  # 0.40
        finished(f"post.{second_post.pk}/render", gpu_seconds=500),  # 0.50
        finished(f"post.{second_post.pk}/render", gpu_seconds=1000, at=last_month),  # 1.00, last month
        finished(f"post.{other.pk}/render", gpu_seconds=3600),  # 3.60, another artist
    ]
    for job in jobs:
        announce(job)

    assert shot_costs(post_id=post.pk) == {one.pk: Decimal("0.3"), two.pk: Decimal("0.3")}
    spent = post_cost(post_id=post.pk)
    assert (spent["total"], spent["gpu"], spent["llm"], spent["jobs"]) == ("1.0000", "0.6000", "0.4000", 4)
    assert spent["gpu_seconds"] == 600 and spent["prompt_tokens"] == 400_000
    this_month = artist_costs(artist=artist, month=month_of())
    assert (this_month["total"], this_month["jobs"]) == ("1.5000", 5)
    assert [(row["post"], row["total"]) for row in this_month["posts"]] == [
        (post.pk, "1.0000"),
        (second_post.pk, "0.5000"),
    ]
    assert artist_costs(artist=artist, month=month_of(last_month))["total"] == "1.0000"
    sums = {(row["artist_id"], row["month"]): row["amount"] for row in totals_by_artist_month(CostEntry.objects.all())}
    assert sums == {
        (artist.pk, month_of()): Decimal("1.5"),
        (artist.pk, month_of(last_month)): Decimal("1"),
        (other_artist.pk, month_of()): Decimal("3.6"),
    }


def test_subjects_name_the_post_the_shot_and_the_step():
    assert parse_subject("post.4/shot.9/avatar@0123456789abcdef") == (4, 9, "avatar")
    assert parse_subject("post.4/storyboard") == (4, None, "storyboard")
    assert parse_subject("post.4/render") == (4, None, "render")
    assert parse_subject("ops/test") is None


@pytest.mark.parametrize("month", ["2026-13", "26-01", "2026-1", "", "0000-01", "2026-01-01"])
def test_a_month_that_is_not_yyyy_mm_is_refused_with_the_shape(month):
    with pytest.raises(ValidationError) as refused:
        parse_month(month)
    assert "YYYY-MM" in str(refused.value)


# --- estimates -----------------------------------------------------------------------------------


def test_the_production_estimate_counts_the_shots_to_make_at_their_steps_average(post, settings):
    settings.COSYVOICE_URL = ""  # no voices: pictures and the render
    make_shot_workflow(kind="a_roll", template_name="still-sdxl")
    template = WorkflowTemplate.objects.get(name="still-sdxl")
    rate(RateKind.GPU_HOUR, "3.60")
    other_post = make_post()
    for seconds in (100, 300):  # history of this step and template: 0.10 and 0.30, average 0.20
        announce(
            finished(f"post.{other_post.pk}/shot.1/picture@0123456789abcdef", template=template, gpu_seconds=seconds)
        )
    announce(finished(f"post.{other_post.pk}/render", kind=JobKind.RENDER))

    estimate = estimate_production(post=post)

    assert estimate["total"] == "0.4000"  # two shots' pictures at 0.20, the render at 0
    assert estimate["display"] == "about USD 0.4000"
    assert estimate["shots_changing"] == 2
    lines = {(line["step"], line["template"]): (line["count"], line["basis"]) for line in estimate["lines"]}
    assert lines == {("picture", "still-sdxl"): (2, "history"), ("render", ""): (1, "history")}


def test_without_history_the_estimate_is_the_templates_time_budget_at_the_pools_rate(post, settings):
    settings.COSYVOICE_URL = ""
    make_shot_workflow(kind="a_roll", template_name="still-new")
    WorkflowTemplate.objects.filter(name="still-new").update(manifest={"time_budget_seconds": 60})
    rate(RateKind.GPU_HOUR, "3.60")

    estimate = estimate_production(post=post)

    lines = {line["step"]: line for line in estimate["lines"]}
    assert (lines["picture"]["each"], lines["picture"]["basis"]) == ("0.0600", "time budget")
    assert (lines["render"]["basis"], estimate["known"]) == ("no data", False)


def test_a_rewrite_is_estimated_at_the_directors_average_llm_cost(settings):
    settings.LLM_API_KEY = "sk-test"
    rate(RateKind.LLM_COMPLETION, "2.00")
    post = make_post(status=PostStatus.DRAFT)
    for tokens in (1000, 3000):
        announce(finished(f"post.{post.pk}/storyboard", kind=JobKind.LLM, llm_completion_tokens=tokens))

    assert estimate_rewrite()["total"] == "0.0040"
    settings.LLM_API_KEY = ""
    assert estimate_rewrite()["lines"][0]["basis"] == "offline director"


# --- the storyboard page, the API, /metrics ---------------------------------------------------------


def test_the_storyboard_page_shows_what_the_post_cost_per_shot_and_about_what_approving_costs(settings):
    from tests.posts.test_views import logged_in

    settings.COSYVOICE_URL = ""
    producer = make_user(role=roles.PRODUCER)
    post = make_post(artist=make_artist(members=[producer]), shots=2, status=PostStatus.REVIEW)
    one = post.shots.order_by("position").first()
    make_shot_workflow(kind="a_roll", template_name="still-page")
    template = WorkflowTemplate.objects.get(name="still-page")
    rate(RateKind.GPU_HOUR, "3.60")
    rate(RateKind.LLM_PROMPT, "1.00")
    announce(finished(f"post.{post.pk}/shot.{one.pk}/picture@0123456789abcdef", template=template, gpu_seconds=1000))
    announce(finished(f"post.{post.pk}/storyboard", kind=JobKind.LLM, llm_prompt_tokens=250_000))

    page = logged_in(producer).get(f"/posts/{post.pk}/")

    assert page.status_code == 200
    costs = page.context["state"]["costs"]
    assert (costs["spent"]["total"], costs["spent"]["gpu"], costs["spent"]["llm"]) == ("1.2500", "1.0000", "0.2500")
    assert costs["spent_display"] == "USD 1.25"
    assert costs["shots"] == {str(one.pk): "1.0000"}
    # Approving makes both shots' pictures (the stored one has no key yet) at the step's average, 1.00 each.
    assert (costs["estimate"]["action"], costs["estimate"]["display"]) == ("produce", "about USD 2.00")
    assert b'"spent_display": "USD 1.25"' in page.content  # in the page's JSON state, drawn by storyboard.js


def test_the_artist_costs_api_gives_a_month_to_members_and_refuses_a_bad_month():
    from tests.api.conftest import token_client

    producer = make_user(role=roles.PRODUCER)
    artist = make_artist(members=[producer], monthly_budget=Decimal("10"))
    post = make_post(artist=artist)
    rate(RateKind.GPU_HOUR, "3.60")
    announce(finished(f"post.{post.pk}/render", gpu_seconds=3600))
    api = token_client(producer)

    answer = api.get(f"/api/v1/artists/{artist.pk}/costs", {"month": month_of()})
    bad = api.get(f"/api/v1/artists/{artist.pk}/costs", {"month": "2026-13"})
    foreign = api.get(f"/api/v1/artists/{make_artist().pk}/costs")
    detail = api.get(f"/api/v1/posts/{post.pk}/")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["month"], body["currency"], body["total"], body["gpu"], body["jobs"]) == (
        month_of(),
        "USD",
        "3.6000",
        "3.6000",
        1,
    )
    assert body["budget"]["state"] == "ok" and body["budget"]["budget"] == "10.0000"
    assert body["posts"] == [{"post": post.pk, "title": post.title, "total": "3.6000"}]
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["error"]["message"]
    assert foreign.status_code == 404
    assert detail.json()["cost"]["total"] == "3.6000"


def test_metrics_export_the_ledgers_totals_per_artist_month_kind_and_gpu_seconds_per_pool(client, settings):
    from tests.test_health import samples

    settings.MCN_METRICS_TOKEN = "metrics-token-for-tests"
    artist = make_artist(slug="lin-yue", monthly_budget=Decimal("8"))
    post = make_post(artist=artist)
    rate(RateKind.GPU_HOUR, "3.60")
    rate(RateKind.LLM_PROMPT, "1.00")
    announce(finished(f"post.{post.pk}/render", template=make_template(gpu_pool="video"), gpu_seconds=3600))
    announce(finished(f"post.{post.pk}/storyboard", kind=JobKind.LLM, llm_prompt_tokens=400_000))

    response = client.get("/metrics", headers={"authorization": "Bearer metrics-token-for-tests"})

    found = samples(response.content.decode())
    assert found[("mcn_cost_total", (("artist", "lin-yue"), ("kind", "gpu")))] == 3.6
    assert found[("mcn_cost_total", (("artist", "lin-yue"), ("kind", "llm")))] == 0.4
    assert found[("mcn_cost_month_total", (("artist", "lin-yue"), ("kind", "gpu"), ("month", month_of())))] == 3.6
    assert found[("mcn_gpu_seconds_total", (("pool", "video"),))] == 3600
    assert found[("mcn_budget_used_ratio", (("artist", "lin-yue"),))] == 0.5


def test_the_ledger_admin_totals_per_artist_and_month_and_a_producer_sees_only_their_artists():
    from django.urls import reverse

    from tests.posts.test_views import logged_in

    producer = make_user(role=roles.PRODUCER)
    mine = make_artist(members=[producer], stage_name="Lin Yue")
    theirs = make_artist(stage_name="Other Team")
    rate(RateKind.GPU_HOUR, "3.60")
    for artist, seconds in ((mine, 1000), (mine, 2000), (theirs, 3600)):
        post = make_post(artist=artist)
        announce(finished(f"post.{post.pk}/render", gpu_seconds=seconds))
    changelist = reverse("admin:posts_costentry_changelist")

    ops_page = logged_in(make_user(role=roles.OPS)).get(changelist)
    producer_page = logged_in(producer).get(changelist)

    by_artist = {row["artist__stage_name"]: row["amount"] for row in ops_page.context["cost_totals"]}
    assert by_artist == {"Lin Yue": Decimal("3"), "Other Team": Decimal("3.6")}
    assert ops_page.context["cost_grand"]["total"] == "6.6000"
    assert [row["artist__stage_name"] for row in producer_page.context["cost_totals"]] == ["Lin Yue"]
    assert producer_page.context["cost_grand"]["total"] == "3.0000"
    assert "Other Team" not in producer_page.content.decode()


def test_ops_add_a_rate_in_the_admin_and_a_rate_in_force_can_no_longer_be_edited():
    from django.urls import reverse

    from tests.posts.test_views import logged_in

    ops = make_user(role=roles.OPS)
    page = logged_in(ops)
    future = (timezone.now() + timedelta(days=1)).replace(microsecond=0)

    added = page.post(
        reverse("admin:factory_rate_add"),
        {
            "kind": RateKind.GPU_HOUR,
            "pool": "",
            "model": "",
            "price": "2.50",
            "valid_from_0": timezone.localtime(future).strftime("%Y-%m-%d"),
            "valid_from_1": timezone.localtime(future).strftime("%H:%M:%S"),
            "note": "December offer",
        },
    )
    in_force = rate(RateKind.GPU_HOUR, "3.60")

    assert added.status_code == 302, added.content[:500]
    new = Rate.objects.get(note="December offer")
    assert (new.price, new.currency, new.created_by) == (Decimal("2.50"), "USD", ops)
    form = page.get(reverse("admin:factory_rate_change", args=[in_force.pk])).content.decode()
    assert 'name="price"' not in form  # history: a new price is a new rate
    assert 'name="price"' in page.get(reverse("admin:factory_rate_change", args=[new.pk])).content.decode()


def test_rates_in_another_currency_than_mcn_currency_are_not_used(post, settings):
    rate(RateKind.GPU_HOUR, "3.60")
    job = finished(f"post.{post.pk}/render", gpu_seconds=3600)
    settings.MCN_CURRENCY = "CNY"

    assert job_cost(job) == Decimal("0")  # the USD rate is not a CNY price
    rate(RateKind.GPU_HOUR, "26")
    assert job_cost(job) == Decimal("26.000000")
