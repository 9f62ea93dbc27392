"""The cost ledger of posts: each finished job that worked for a post, priced once; sums per shot, post,
artist and month; what the next action will roughly cost; and the artists' monthly budgets.

    job_changed (terminal status, subject post.<id>/...) -> cost_record: one CostEntry per job, priced by
        factory.costs at the rates valid when it finished (failed and cancelled jobs too: what they consumed)
    budget_check(post_id=...) -> before new production (post_produce, the director, a shot's picture):
        refused with BudgetExceeded once the artist's month reaches its budget, until ops lift it

Reads that decide who sees which costs go through cost_entries_visible_to (artists.selectors), like every
other door.
"""

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from artists.models import Artist, BudgetState
from artists.selectors import artists_visible_to
from factory.costs import job_cost_parts, rate_at
from factory.models import TERMINAL_STATUSES, Job, JobStatus, RateKind, WorkflowTemplate
from mcn_site.lib.months import month_of
from posts.models import CostEntry, Post, PostEvent, PostStatus, Shot

log = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"^post\.(\d+)/(.+)$")
SHOT_RE = re.compile(r"^shot\.(\d+)/([a-z_]+)")
ZERO = Decimal("0")
AMOUNT_FIELDS = ("amount", "gpu_amount", "llm_amount", "cpu_amount")
COST_PERMS = ("posts.view_costentry",)  # who sees costs: every role (mcn_site.lib.roles), on their artists
HISTORY = 200  # the estimate averages a step's last this many succeeded jobs


# --------------------------------------------------------------------------- the ledger (writes)


def parse_subject(subject: str) -> tuple[int, int | None, str] | None:
    """(post id, shot id or None, step) of a job made for a post; None for any other job."""
    found = SUBJECT_RE.match(subject or "")
    if not found:
        return None
    rest = found.group(2)
    shot = SHOT_RE.match(rest)
    if shot:
        return int(found.group(1)), int(shot.group(1)), shot.group(2)[:20]
    return int(found.group(1)), None, rest.partition("@")[0].rsplit("/", 1)[-1][:20]


@transaction.atomic
def cost_record(*, job_id: int) -> CostEntry | None:
    """Price a finished job that worked for a post into its ledger row; returns it (None: not a post's job,
    not finished, or its post is gone). Idempotent: the row is the job's, written again with the same
    figures on a repeated signal, and with its new totals when a retried job finishes again."""
    job = Job.objects.select_related("template").filter(pk=job_id).first()
    if job is None or job.status not in TERMINAL_STATUSES:
        return None
    parsed = parse_subject(job.subject)
    if parsed is None:
        return None
    post_id, shot_id, step = parsed
    artist_id = Post.objects.filter(pk=post_id).values_list("artist_id", flat=True).first()
    if artist_id is None:
        return None
    if shot_id is not None and not Shot.objects.filter(pk=shot_id, post_id=post_id).exists():
        shot_id = None  # rewritten away since: the spend stays with the post
    finished = job.finished_at or job.heartbeat_at or job.created_at
    cost = job_cost_parts(job, at=finished)
    entry, _ = CostEntry.objects.update_or_create(
        job=job,
        defaults={
            "artist_id": artist_id,
            "post_id": post_id,
            "shot_id": shot_id,
            "step": step,
            "job_kind": job.kind,
            "job_status": job.status,
            "template_name": job.template.name if job.template_id else "",
            "pool": cost.pool,
            "llm_model": job.llm_model,
            "month": month_of(finished),
            "finished_at": finished,
            "gpu_seconds": job.gpu_seconds if job.kind == "comfyui" else 0,
            "cpu_seconds": cost.cpu_seconds,
            "prompt_tokens": job.llm_prompt_tokens,
            "completion_tokens": job.llm_completion_tokens,
            "gpu_amount": cost.gpu,
            "llm_amount": cost.llm,
            "cpu_amount": cost.cpu,
            "amount": cost.total,
            "currency": settings.MCN_CURRENCY,
        },
    )
    _note_budget_warning(artist_id=artist_id, month=entry.month, post_id=post_id)
    return entry


def _note_budget_warning(*, artist_id: int, month: str, post_id: int) -> None:
    """Once a month, when the artist's spend crosses 80 % of its budget: a note in the post's trail."""
    artist = Artist.objects.get(pk=artist_id)
    if artist.monthly_budget is None or artist.budget_warned_month == month:
        return
    spent = month_spend(artist_id=artist_id, month=month)
    if artist.budget_state(spent=spent, month=month) not in (BudgetState.WARNING, BudgetState.EXCEEDED):
        return
    # Race: two jobs of the artist finishing at once; the conditional update lets one of them write the note.
    if Artist.objects.filter(pk=artist_id).exclude(budget_warned_month=month).update(budget_warned_month=month):
        PostEvent.objects.create(
            post_id=post_id,
            kind=PostEvent.Kind.BUDGET,
            note=f"{artist.stage_name} has spent {money(spent)} of the {month} budget of "
            f"{money(artist.monthly_budget)} ({_percent(spent, artist.monthly_budget)}).",
        )


def on_job_changed(sender, *, job_id, subject, status, event, **kwargs) -> None:
    """factory.signals.job_changed receiver: a post's job that reached a terminal status is priced.

    Connected before the pipeline's receiver, so the page's re-read on job.finished already sees the job's
    cost. A failure here is logged and swallowed: the ledger must never stop production (the receivers after
    it would not run).
    """
    if event != "status" or status not in TERMINAL_STATUSES or not SUBJECT_RE.match(subject or ""):
        return
    try:
        cost_record(job_id=job_id)
    except Exception:
        log.exception("could not price job %s into the cost ledger", job_id)


# --------------------------------------------------------------------------- sums (selectors)


def cost_entries_visible_to(*, user) -> QuerySet[CostEntry]:
    """Ledger rows of the artists this user may see (ops: every artist)."""
    return CostEntry.objects.filter(artist__in=artists_visible_to(user=user))


def _sums(queryset) -> dict:
    totals = queryset.aggregate(
        **{name: Coalesce(Sum(name), ZERO) for name in AMOUNT_FIELDS},
        gpu_seconds=Coalesce(Sum("gpu_seconds"), 0.0),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        jobs=Count("pk"),
    )
    return totals


SUMMED = (*AMOUNT_FIELDS, "gpu_seconds", "prompt_tokens", "completion_tokens", "jobs")


def totals(queryset) -> dict:
    """The sums of some ledger rows, as plain JSON: amounts as strings, seconds and tokens as numbers."""
    return _as_totals(_sums(queryset))


def _as_totals(sums: dict) -> dict:
    return {
        "currency": settings.MCN_CURRENCY,
        "total": _amount(sums["amount"]),
        "gpu": _amount(sums["gpu_amount"]),
        "llm": _amount(sums["llm_amount"]),
        "cpu": _amount(sums["cpu_amount"]),
        "gpu_seconds": round(sums["gpu_seconds"], 3),
        "prompt_tokens": sums["prompt_tokens"],
        "completion_tokens": sums["completion_tokens"],
        "jobs": sums["jobs"],
    }


def post_cost(*, post_id: int) -> dict:
    return totals(CostEntry.objects.filter(post_id=post_id))


def shot_costs(*, post_id: int) -> dict[int, Decimal]:
    """Each shot's spend so far (every job that worked for it), by shot id: one grouped query."""
    rows = (
        CostEntry.objects.filter(post_id=post_id, shot__isnull=False)
        .values("shot_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {row["shot_id"]: row["total"] for row in rows}


def month_spend(*, artist_id: int, month: str) -> Decimal:
    return CostEntry.objects.filter(artist_id=artist_id, month=month).aggregate(total=Coalesce(Sum("amount"), ZERO))[
        "total"
    ]


def artist_costs(*, artist: Artist, month: str) -> dict:
    """An artist's month: the totals, its budget, and the spend per post (most expensive first)."""
    entries = CostEntry.objects.filter(artist=artist, month=month)
    per_post = (
        entries.values("post_id", "post__title").annotate(total=Sum("amount")).order_by("-total", "post_id")[:100]
    )
    return {
        "artist": artist.pk,
        "month": month,
        **totals(entries),
        "budget": budget_status(artist=artist, month=month),
        "posts": [
            {"post": row["post_id"], "title": row["post__title"] or "", "total": _amount(row["total"])}
            for row in per_post
        ],
    }


def totals_by_artist_month(queryset) -> list[dict]:
    """Sums per artist and month of some ledger rows (the admin's totals, /metrics): one grouped query."""
    return list(
        queryset.values("artist_id", "artist__stage_name", "artist__slug", "month")
        .annotate(
            **{name: Coalesce(Sum(name), ZERO) for name in AMOUNT_FIELDS},
            gpu_seconds=Coalesce(Sum("gpu_seconds"), 0.0),
            jobs=Count("pk"),
        )
        .order_by("-month", "artist__stage_name")
    )


def gpu_seconds_by_pool() -> dict[str, float]:
    rows = CostEntry.objects.filter(gpu_seconds__gt=0).values("pool").annotate(s=Sum("gpu_seconds")).order_by()
    return {row["pool"] or "default": row["s"] for row in rows}


# --------------------------------------------------------------------------- budgets


class BudgetExceeded(ValidationError):
    """New production refused: the artist's month reached its budget (a 400 `budget_exceeded`, never a 500)."""


def budget_status(*, artist: Artist, month: str | None = None) -> dict:
    """Where the artist's month stands against its budget, with the sentence a page shows (warning, refusal)."""
    month = month or month_of()
    spent = month_spend(artist_id=artist.pk, month=month) if artist.monthly_budget is not None else None
    state = artist.budget_state(spent=spent or ZERO, month=month)
    message = ""
    if state == BudgetState.WARNING:
        message = (
            f"{artist.stage_name} has spent {money(spent)} of the {month} budget of {money(artist.monthly_budget)} "
            f"({_percent(spent, artist.monthly_budget)}): production stops at 100 %."
        )
    elif state == BudgetState.EXCEEDED:
        message = _refusal(artist, spent, month)
    elif state == BudgetState.LIFTED:
        message = f"Ops lifted {artist.stage_name}'s budget for {month}: production is not limited this month."
    return {
        "state": state,
        "month": month,
        "currency": settings.MCN_CURRENCY,
        "budget": _amount(artist.monthly_budget) if artist.monthly_budget is not None else None,
        "spent": _amount(spent) if spent is not None else None,
        "message": message,
    }


def _refusal(artist: Artist, spent: Decimal, month: str) -> str:
    return (
        f"{artist.stage_name} has spent {money(spent)} of the {month} budget of {money(artist.monthly_budget)}: "
        "new production is refused. Ops can lift the budget for this month (admin: Artists, action "
        "“Lift this month's budget”)."
    )


def budget_check(*, post_id: int) -> None:
    """Refuse new production for this post's artist once its month reached the budget (BudgetExceeded).

    The one check before every start of paid work: post_produce (approve, render, retry), the director's
    (re)write and a shot's picture. Work already under way (a clip after its picture) is never stopped.
    """
    artist = Artist.objects.filter(posts__pk=post_id).first()
    if artist is None or artist.monthly_budget is None:
        return
    month = month_of()
    spent = month_spend(artist_id=artist.pk, month=month)
    if artist.budget_state(spent=spent, month=month) == BudgetState.EXCEEDED:
        raise BudgetExceeded(_refusal(artist, spent, month), code="budget_exceeded")


# --------------------------------------------------------------------------- the next action's estimate


@dataclass
class _Line:
    step: str
    template: str
    count: int
    each: Decimal
    basis: str  # "history" | "time budget" | "no data"


def _step_average(step: str, template: str) -> tuple[Decimal, str]:
    """The average cost of a step's succeeded jobs (its last HISTORY), or its template's time budget x the
    pool's GPU hour when there is no history; 0 with "no data" when neither is known."""
    recent = (
        CostEntry.objects.filter(step=step, template_name=template, job_status=JobStatus.SUCCEEDED)
        .order_by("-finished_at")
        .values("amount")[:HISTORY]
    )
    amounts = [row["amount"] for row in recent]
    if amounts:
        return sum(amounts, ZERO) / len(amounts), "history"
    if template:
        found = WorkflowTemplate.objects.filter(name=template, active=True).order_by("-version").first()
        seconds = (found.manifest or {}).get("time_budget_seconds") if found else None
        if seconds:
            pool = "" if found.gpu_pool in ("", "default") else found.gpu_pool
            hour = rate_at(RateKind.GPU_HOUR, at=timezone.now(), pool=pool)
            return Decimal(seconds) / 3600 * hour, "time budget"
    return ZERO, "no data"


def estimate_production(*, post: Post) -> dict | None:
    """About what approving or producing this post would cost now: the jobs production would queue (the
    shots whose keys changed), each at its step's average from history, plus the clip a new picture or
    voice leads to and the render. None when the plan cannot be made (a mapping is broken: approval says so)."""
    # posts.pipeline imports this module (budget_check): its planner is read here, lazily.
    from posts import pipeline

    shots = list(
        Shot.objects.filter(post=post)
        .select_related("post__artist__voice", "post__wardrobe", "job", "voice_job", "clip_job")
        .order_by("position")
    )
    workflows: dict = {}
    made = pipeline.made_assets(post_id=post.pk)  # what the post's jobs made or are making costs nothing more
    wanted: dict[tuple[str, str], int] = {}
    planned: set[str] = set()  # twins (same step and key) share one job, as in post_produce
    shots_changing = 0
    try:
        for shot in shots:
            needs = pipeline._plan_shot(shot, workflows, made)
            if not needs:
                continue
            shots_changing += 1
            for _field, request in needs:
                if pipeline._step_key(request.subject) in planned:
                    continue
                planned.add(pipeline._step_key(request.subject))
                step = parse_subject(request.subject)[2]
                key = (step, request.template.name if request.template else "")
                wanted[key] = wanted.get(key, 0) + 1
            if any(parse_subject(r.subject)[2] in ("voice", "picture") for _f, r in needs):
                clip = _clip_template(shot, workflows, pipeline)
                if clip:
                    wanted[clip] = wanted.get(clip, 0) + 1
    except ValidationError:
        return None
    wanted[("render", "")] = 1
    lines = []
    for (step, template), count in sorted(wanted.items()):
        each, basis = _step_average(step, template)
        lines.append(_Line(step=step, template=template, count=count, each=each, basis=basis))
    return _estimate(lines, shots_changing=shots_changing, shots=len(shots))


def _clip_template(shot: Shot, workflows: dict, pipeline) -> tuple[str, str] | None:
    """The clip step a shot whose voice or picture is remade will then need: (step, template) or None."""
    if shot.manual_asset and pipeline._is_video(shot.manual_asset.name):
        return None
    for step in pipeline.CLIP_STEPS:
        if (shot.kind, step) not in workflows:
            workflows[shot.kind, step] = pipeline._step_workflow(shot, step)
        found = workflows[shot.kind, step]
        if found is None or (step == "avatar" and not shot.script.strip()):
            continue
        return step, found[1].name
    return None


def estimate_rewrite() -> dict:
    """About what a director rewrite costs: the average LLM cost of its past jobs (0 offline: no tokens)."""
    if not settings.LLM_API_KEY:
        return _estimate([_Line("storyboard", "", 1, ZERO, "offline director")])
    each, basis = _step_average("storyboard", "")
    return _estimate([_Line("storyboard", "", 1, each, basis)])


def _estimate(lines: list[_Line], **extra) -> dict:
    total = sum((line.each * line.count for line in lines), ZERO)
    return {
        "currency": settings.MCN_CURRENCY,
        "total": _amount(total),
        "display": f"about {money(total)}",
        "known": all(line.basis != "no data" for line in lines),
        "lines": [
            {
                "step": line.step,
                "template": line.template,
                "count": line.count,
                "each": _amount(line.each),
                "basis": line.basis,
            }
            for line in lines
        ],
        **extra,
    }


def storyboard_costs(*, post: Post, user) -> dict | None:
    """The storyboard page's cost panel: spent so far (split), per shot, the budget and the next action's
    estimate. None for a user whose role does not see costs."""
    if not (user and user.is_authenticated and user.has_perms(COST_PERMS)):
        return None
    # One grouped query gives both: the post's sums (every row) and each shot's (rows with a shot).
    rows = list(
        CostEntry.objects.filter(post_id=post.pk)
        .values("shot_id")
        .annotate(
            **{name: Coalesce(Sum(name), ZERO) for name in AMOUNT_FIELDS},
            gpu_seconds=Coalesce(Sum("gpu_seconds"), 0.0),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            jobs=Count("pk"),
        )
        .order_by()
    )
    spent = _as_totals({key: sum((row[key] for row in rows), ZERO if key in AMOUNT_FIELDS else 0) for key in SUMMED})
    estimate = None
    if post.status in (PostStatus.REVIEW, PostStatus.APPROVED, PostStatus.FAILED):
        estimate = {"action": "produce", **(estimate_production(post=post) or {"total": None, "display": ""})}
    elif post.is_editable:
        estimate = {"action": "generate", **estimate_rewrite()}
    return {
        "spent": spent,
        "spent_display": money(Decimal(spent["total"])),
        "shots": {str(row["shot_id"]): _amount(row["amount"]) for row in rows if row["shot_id"] is not None},
        "budget": budget_status(artist=post.artist),
        "estimate": estimate,
    }


# --------------------------------------------------------------------------- formatting


def _amount(value: Decimal | None) -> str:
    """An amount as the JSON string of a Decimal, to the ledger's precision trimmed to 4 places."""
    return str((value or ZERO).quantize(Decimal("0.0001")))


def money(value: Decimal | None) -> str:
    """ "USD 1.23" (cents from 1 up, 4 places below: a still costs a fraction of a cent)."""
    value = value or ZERO
    places = Decimal("0.01") if abs(value) >= 1 or value == 0 else Decimal("0.0001")
    return f"{settings.MCN_CURRENCY} {value.quantize(places):,}"


def _percent(spent: Decimal, budget: Decimal) -> str:
    return f"{spent / budget * 100:.0f} %" if budget else "100 %"


# --------------------------------------------------------------------------- /metrics


def ledger_snapshot(*, now) -> dict:
    """What /metrics exports of the ledger (mcn_site.metrics.CostCollector), in four grouped queries."""
    this_month = month_of(now)
    first = timezone.localtime(now).replace(day=1)
    last_month = month_of(first - timedelta(days=1))
    all_time = (
        CostEntry.objects.values("artist__slug")
        .annotate(**{name: Coalesce(Sum(name), ZERO) for name in AMOUNT_FIELDS})
        .order_by("artist__slug")
    )
    months = totals_by_artist_month(CostEntry.objects.filter(month__in=[this_month, last_month]))
    spent = {row["artist__slug"]: row["amount"] for row in months if row["month"] == this_month}
    budgets = {
        artist.slug: float(spent.get(artist.slug, ZERO) / artist.monthly_budget) if artist.monthly_budget else 1.0
        for artist in Artist.objects.filter(monthly_budget__isnull=False).only("slug", "monthly_budget")
    }
    return {
        "currency": settings.MCN_CURRENCY,
        "all_time": list(all_time),
        "months": months,
        "gpu_seconds": gpu_seconds_by_pool(),
        "budgets": budgets,
    }
