"""The director runs as a factory job of kind `llm` on the CPU queue, with its status pushed to the page."""

from django.core.exceptions import ValidationError
from django.db import transaction

from factory import provenance, runners, services
from factory.models import ErrorKind, Job, JobKind
from factory.services import job_enqueue_task
from mcn_site.lib.text import refuse_nul
from posts.costs import budget_check
from posts.director.llm import Usage
from posts.director.service import DirectorFailed, director_mode, write_storyboard
from posts.models import Post, PostEvent
from posts.services import _ensure_editable, _record

KINDS = {
    "config": ErrorKind.CONFIG,
    "unreachable": ErrorKind.UNREACHABLE,
    "stalled": ErrorKind.STALLED,
    "execution": ErrorKind.EXECUTION,
}


def storyboard_subject(post_id: int) -> str:
    return f"post.{post_id}/storyboard"


@transaction.atomic
def storyboard_generate(*, post_id: int, actor, feedback: str = "") -> Job:
    """Queue the director for this post (refused unless the storyboard may be edited).

    While a director job of the post is queued or running, asking again with the same feedback (a
    second click, a retried request) returns that job; other feedback is refused until it ends.
    """
    refuse_nul(feedback=feedback)  # kept in the job's params and the post's trail
    post = Post.objects.select_for_update(of=("self",)).get(pk=post_id)
    _ensure_editable(post)
    budget_check(post_id=post.pk)  # a month over budget starts no new work (ops lift it)
    working = (
        Job.objects.unfinished().filter(kind=JobKind.LLM, subject=storyboard_subject(post.pk)).order_by("-pk").first()
    )
    if working is not None:
        if working.params.get("feedback", "") == feedback:
            return working
        raise ValidationError(
            f"The director is still writing this storyboard (job {working.pk}). Wait for it, or cancel it, "
            "before asking again with other feedback.",
            code="director_busy",
        )
    job = job_enqueue_task(
        kind=JobKind.LLM,
        params={"post_id": post.pk, "feedback": feedback},
        subject=storyboard_subject(post.pk),
        created_by=actor,
    )
    label = "LLM director" if director_mode() == "llm" else "offline director (no LLM key set)"
    note = f"Storyboard requested from the {label}" + (f"; feedback: {feedback}" if feedback else "")
    _record(post=post, kind=PostEvent.Kind.STORYBOARD, actor=actor, note=note)
    return job


@runners.register(JobKind.LLM)
def run_director(job: Job) -> None:
    def record(usage: Usage) -> None:
        # Each answer as it comes (a director that fails later has still been billed for it).
        services.job_record_usage(
            job_id=job.pk,
            claim=job.claim,
            llm_model=usage.model,
            llm_prompt_tokens=usage.prompt_tokens,
            llm_completion_tokens=usage.completion_tokens,
        )

    try:
        write_storyboard(
            post_id=job.params["post_id"],
            actor=job.created_by,
            feedback=job.params.get("feedback", ""),
            # A worker presumed dead while the LLM answered must not replace the storyboard its successor wrote.
            before_write=lambda: services.job_touch(job_id=job.pk, claim=job.claim),
            on_usage=record,
        )
    except DirectorFailed as error:
        raise runners.TaskFailed(
            error.message, kind=KINDS.get(error.kind, ErrorKind.EXECUTION), details=error.details
        ) from None
    except ValidationError as error:
        raise runners.TaskFailed(" ".join(error.messages), kind=ErrorKind.CONFIG) from None
    provenance.record_llm(job, mode=director_mode())  # the model that wrote it (the usage's), for the MP4's record
