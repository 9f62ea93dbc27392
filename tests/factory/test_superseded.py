"""A job superseded by a later one for the same work is not retried (ops API, admin, service)."""

import pytest
from django.contrib import messages as message_levels
from django.utils import timezone

from factory import services
from factory.models import Job, JobKind, JobStatus
from mcn_site.lib import roles
from tests.admin import login
from tests.api.conftest import token_client
from tests.factories import make_job, make_user
from tests.factory.test_admin import JOBS, _action, messages_of

pytestmark = pytest.mark.django_db


def render(subject: str = "post.7/render", **extra) -> Job:
    fields = {"kind": JobKind.RENDER, "template": None, "subject": subject, "finished_at": timezone.now()}
    return make_job(**{**fields, **extra})


def superseded_message(old: Job, new: Job, status: str, work: str) -> str:
    return (
        f"Job {old.pk} was superseded by job {new.pk} ({status}), made later for the same work ({work}): "
        "only the latest job of a work is retried."
    )


def test_a_failed_render_of_a_post_rendered_again_since_is_not_retried_and_names_the_newer_job():
    old = render(status=JobStatus.FAILED, error_message="ffmpeg died.")
    new = render(status=JobStatus.SUCCEEDED)

    with pytest.raises(services.JobStateError) as refused:
        services.job_retry(job_id=old.pk)

    assert refused.value.messages == [superseded_message(old, new, "succeeded", "post.7/render")]
    old.refresh_from_db()
    assert (old.status, old.error_message, old.events.count()) == (JobStatus.FAILED, "ffmpeg died.", 0)


def test_a_picture_job_is_superseded_by_a_later_one_for_the_same_shot_whatever_its_key():
    old = make_job(subject="post.7/shot.2/picture@aaaaaaaaaaaaaaaa", status=JobStatus.CANCELLED)
    new = make_job(subject="post.7/shot.2/picture@bbbbbbbbbbbbbbbb", status=JobStatus.FAILED)

    with pytest.raises(services.JobStateError) as refused:
        services.job_retry(job_id=old.pk)

    assert refused.value.messages == [superseded_message(old, new, "failed", "post.7/shot.2/picture")]
    # The latest one of the work retries.
    assert services.job_retry(job_id=new.pk).status == JobStatus.QUEUED


def test_jobs_of_other_work_or_without_a_subject_do_not_supersede():
    old = make_job(subject="post.7/shot.2/picture@aaaaaaaaaaaaaaaa", status=JobStatus.FAILED)
    make_job(subject="post.7/shot.22/picture@aaaaaaaaaaaaaaaa")  # another shot
    make_job(subject="post.7/shot.2/voice@aaaaaaaaaaaaaaaa")  # its voice
    make_job(subject="post.7/shot.2/picturesque")
    anonymous = make_job(subject="", status=JobStatus.FAILED)
    make_job(subject="")

    assert services.job_retry(job_id=old.pk).status == JobStatus.QUEUED
    assert services.job_retry(job_id=anonymous.pk).status == JobStatus.QUEUED


def test_an_older_job_does_not_supersede_a_newer_one():
    render(status=JobStatus.FAILED)
    latest = render(status=JobStatus.FAILED)

    assert services.job_retry(job_id=latest.pk).status == JobStatus.QUEUED


def test_ops_retry_of_a_superseded_job_through_the_api_is_a_409_naming_the_newer_job():
    old = render(status=JobStatus.FAILED)
    new = render(status=JobStatus.SUCCEEDED)

    response = token_client(make_user(role=roles.OPS)).post(f"/api/v1/jobs/{old.pk}/retry")

    assert response.status_code == 409, response.content
    assert response.json()["error"]["message"] == superseded_message(old, new, "succeeded", "post.7/render")
    assert Job.objects.get(pk=old.pk).status == JobStatus.FAILED


def test_the_admins_retry_action_reports_a_superseded_job_and_leaves_it():
    old = render(status=JobStatus.FAILED)
    new = render(status=JobStatus.SUCCEEDED)

    response = _action(login(make_user(role=roles.OPS)), JOBS, "retry_jobs", [old])

    assert messages_of(response) == [(message_levels.ERROR, superseded_message(old, new, "succeeded", "post.7/render"))]
    assert Job.objects.get(pk=old.pk).status == JobStatus.FAILED
