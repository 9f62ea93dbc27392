"""Monthly budgets per artist: a warning from 80 %, new production refused at 100 % on every door (page,
API, admin, the director, a shot's picture) with a readable 4xx that loses nothing, and ops lifting it."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from artists.models import Artist, BudgetState
from artists.services import artist_budget_lift
from factory.models import Job, RateKind
from mcn_site.lib import roles
from mcn_site.lib.months import month_of
from posts.costs import budget_status
from posts.models import PostEvent, PostStatus
from tests.api.conftest import token_client
from tests.factories import make_artist, make_post, make_user
from tests.posts.test_costs import announce, finished, rate
from tests.posts.test_views import logged_in, post_json, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="pia")


@pytest.fixture
def reviewer():
    return make_user(role=roles.REVIEWER, username="rita")


@pytest.fixture
def artist(producer, reviewer):
    rate(RateKind.GPU_HOUR, "3600")  # a GPU second costs 1: spend(n) costs n
    return make_artist(members=[producer, reviewer], stage_name="Lin Yue", monthly_budget=Decimal("100"))


def spend(artist: Artist, amount: int):
    """A finished render of one of the artist's posts that cost `amount` (through the ledger's receiver)."""
    post = make_post(artist=artist)
    announce(finished(f"post.{post.pk}/render", gpu_seconds=amount))


@pytest.fixture
def in_review(artist):
    return make_post(artist=artist, shots=1, status=PostStatus.REVIEW, title="Market wrap")


def test_within_80_percent_the_budget_says_nothing(artist):
    spend(artist, 79)

    status = budget_status(artist=artist)
    assert (status["state"], status["spent"], status["budget"], status["message"]) == ("ok", "79.0000", "100.0000", "")


def test_from_80_percent_a_warning_names_the_spend_and_a_note_is_left_once(artist):
    spend(artist, 50)
    spend(artist, 30)  # crosses 80 %
    spend(artist, 5)

    status = budget_status(artist=artist)
    assert status["state"] == BudgetState.WARNING
    assert status["message"] == (
        f"Lin Yue has spent USD 85.00 of the {month_of()} budget of USD 100.00 (85 %): production stops at 100 %."
    )
    notes = list(PostEvent.objects.filter(kind=PostEvent.Kind.BUDGET).values_list("note", flat=True))
    assert notes == [f"Lin Yue has spent USD 80.00 of the {month_of()} budget of USD 100.00 (80 %)."]


def test_the_storyboard_page_shows_the_warning(artist, in_review, producer):
    spend(artist, 90)

    response = logged_in(producer).get(f"/posts/{in_review.pk}/state")

    assert response.json()["costs"]["budget"]["state"] == "warning"
    assert "Lin Yue has spent USD 90.00" in response.json()["costs"]["budget"]["message"]


def refusal() -> str:
    return (
        f"Lin Yue has spent USD 100.00 of the {month_of()} budget of USD 100.00: new production is refused. "
        "Ops can lift the budget for this month (admin: Artists, action “Lift this month's budget”)."
    )


def test_at_100_percent_approving_on_the_page_is_a_400_naming_artist_spend_and_budget_and_loses_nothing(
    artist, in_review, reviewer
):
    spend(artist, 100)
    before = snapshot(in_review)

    response = post_json(logged_in(reviewer), f"/posts/{in_review.pk}/actions/approved", {"version": 1})

    assert response.status_code == 400
    assert response.json()["error"] == refusal()
    assert snapshot(in_review) == before  # still in review, no job, no event


def test_at_100_percent_the_api_refuses_approve_and_generate_with_budget_exceeded(
    artist, in_review, reviewer, producer
):
    spend(artist, 120)
    draft = make_post(artist=artist, shots=1)
    jobs = Job.objects.count()

    approve = token_client(reviewer).post(f"/api/v1/posts/{in_review.pk}/approve", {}, format="json")
    generate = token_client(producer).post(f"/api/v1/posts/{draft.pk}/generate", {}, format="json")

    assert approve.status_code == 400
    assert approve.json()["error"]["code"] == "budget_exceeded"
    assert "USD 120.00" in approve.json()["error"]["message"] and "Ops can lift" in approve.json()["error"]["message"]
    assert generate.status_code == 400 and generate.json()["error"]["code"] == "budget_exceeded"
    assert Job.objects.count() == jobs
    in_review.refresh_from_db()
    assert in_review.status == PostStatus.REVIEW


def test_at_100_percent_the_director_and_a_shots_picture_are_refused_on_the_page(artist, producer):
    spend(artist, 100)
    draft = make_post(artist=artist, shots=1)
    shot = draft.shots.get()
    page = logged_in(producer)
    before = snapshot(draft)

    rewrite = post_json(page, f"/posts/{draft.pk}/actions/generate", {"version": 1})
    picture = post_json(page, f"/posts/{draft.pk}/shots/{shot.pk}/generate", {})

    assert (rewrite.status_code, rewrite.json()["error"]) == (400, refusal())
    assert (picture.status_code, picture.json()["error"]) == (400, refusal())
    assert snapshot(draft) == before


def test_once_ops_lift_the_month_production_goes_ahead(artist, in_review, reviewer):
    spend(artist, 100)
    ops = make_user(role=roles.OPS)

    artist_budget_lift(artist_id=artist.pk, actor=ops, month=month_of())
    response = post_json(logged_in(reviewer), f"/posts/{in_review.pk}/actions/approved", {"version": 1})

    assert response.status_code == 200
    assert response.json()["post"]["status"] == "rendering"
    artist.refresh_from_db()
    assert (artist.budget_lifted_month, artist.budget_lifted_by) == (month_of(), ops)
    assert budget_status(artist=artist)["state"] == BudgetState.LIFTED


def test_a_lift_for_last_month_does_not_lift_this_one(artist):
    spend(artist, 100)
    Artist.objects.filter(pk=artist.pk).update(budget_lifted_month="2000-01")
    artist.refresh_from_db()

    assert budget_status(artist=artist)["state"] == BudgetState.EXCEEDED


def test_a_producer_may_not_lift_a_budget(artist, producer):
    with pytest.raises(PermissionDenied):
        artist_budget_lift(artist_id=artist.pk, actor=producer, month=month_of())


def test_ops_lift_from_the_artist_admin_and_a_producer_is_not_offered_the_action(artist, producer):
    spend(artist, 100)
    changelist = reverse("admin:artists_artist_changelist")
    lift = {"action": "lift_budget", "_selected_action": [artist.pk]}

    refused = logged_in(producer).post(changelist, lift)
    artist.refresh_from_db()
    assert artist.budget_lifted_month == ""
    assert "lift_budget" not in logged_in(producer).get(changelist).content.decode()
    assert refused.status_code in (200, 302)

    ops_page = logged_in(make_user(role=roles.OPS))
    assert ops_page.post(changelist, lift).status_code == 302
    artist.refresh_from_db()
    assert artist.budget_lifted_month == month_of()
    assert "of 100.00 (100 %)" in ops_page.get(changelist).content.decode()


def test_a_producer_sees_the_budget_but_may_not_change_it_in_the_admin(artist, producer):
    page = logged_in(producer).get(reverse("admin:artists_artist_change", args=[artist.pk]))

    assert page.status_code == 200
    assert 'name="monthly_budget"' not in page.content.decode()
    ops = logged_in(make_user(role=roles.OPS)).get(reverse("admin:artists_artist_change", args=[artist.pk]))
    assert 'name="monthly_budget"' in ops.content.decode()


def test_an_artist_without_a_budget_is_never_refused(artist, in_review, reviewer):
    Artist.objects.filter(pk=artist.pk).update(monthly_budget=None)
    spend(artist, 10_000)

    response = post_json(logged_in(reviewer), f"/posts/{in_review.pk}/actions/approved", {"version": 1})

    assert response.status_code == 200
