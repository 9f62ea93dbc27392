"""factory.services: every write to jobs and templates, each rule, the trail, and what leaves after commit."""

import copy
import json
import re
from datetime import timedelta

import django_rq
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from factory import services
from factory.models import ErrorKind, Job, JobStatus, WorkflowTemplate
from factory.signals import job_changed
from factory.templating import UI_FORMAT_HELP
from tests.factories import make_job, make_job_output, make_media_file, make_template, make_user

pytestmark = pytest.mark.django_db

# Example B of the protocol notes, exported in API format.
PORTRAIT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{INPUT_IMAGE}}"}},
    "2": {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "bilinear",
            "width": "{{WIDTH}}",
            "height": "{{HEIGHT}}",
            "crop": "disabled",
        },
    },
    "3": {"class_type": "ImageAddNoise", "inputs": {"image": ["2", 0], "seed": "{{SEED}}", "strength": 0.25}},
    "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
    "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "portrait-{{JOB_TAG}}"}},
}


def portrait(**placeholders) -> WorkflowTemplate:
    return services.template_import(name="portrait", workflow=copy.deepcopy(PORTRAIT), placeholders=placeholders)


def good_params(**changes) -> dict:
    return {
        "INPUT_IMAGE": make_media_file("artists/face.png"),
        "WIDTH": 32,
        "HEIGHT": "24",
        "SEED": 7,
        "JOB_TAG": "a",
        **changes,
    }


def running_job(**extra) -> Job:
    now = timezone.now()
    return make_job(
        **{"status": JobStatus.RUNNING, "started_at": now - timedelta(seconds=5), "heartbeat_at": now, **extra}
    )


# --- job_enqueue -------------------------------------------------------------------------------


def test_job_enqueue_queues_the_job_with_an_event():
    template = portrait()
    user = make_user()

    job = services.job_enqueue(
        template=template, params=good_params(), subject="post.4/shot.2", lane="vip", created_by=user
    )

    job.refresh_from_db()
    assert (job.status, job.lane, job.subject, job.template, job.created_by) == (
        JobStatus.QUEUED,
        "vip",
        "post.4/shot.2",
        template,
        user,
    )
    assert job.params["HEIGHT"] == "24" and job.queued_at is not None and job.max_attempts == 3
    [event] = job.events.all()
    assert (event.kind, event.message, event.data) == ("queued", "Queued in the vip lane.", {"template": "portrait v1"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"COLOUR": "red"}, "Parameters that match no placeholder: COLOUR."),
        ({"SEED": None}, "SEED must be a whole number, not None."),
        ({"WIDTH": "wide"}, "WIDTH must be a whole number, not 'wide'."),
        ({"WIDTH": 32.5}, "WIDTH must be a whole number, not 32.5."),
        ({"INPUT_IMAGE": "../secret.png"}, "INPUT_IMAGE: ../secret.png is outside the media folder."),
        ({"INPUT_IMAGE": "artists/../../secret.png"}, "is outside the media folder."),
        ({"INPUT_IMAGE": "artists/gone.png"}, "INPUT_IMAGE: artists/gone.png does not exist in the media folder."),
    ],
)
def test_job_enqueue_refuses_bad_parameters_before_saving(tmp_path, params, expected):
    (tmp_path / "secret.png").write_bytes(b"not yours")  # exists, next to (not inside) MEDIA_ROOT
    template = portrait()

    with pytest.raises(ValidationError) as caught:
        services.job_enqueue(template=template, params=good_params(**params))

    assert any(expected in message for message in caught.value.messages), caught.value.messages
    assert not Job.objects.exists()


def test_job_enqueue_refuses_an_absolute_media_path(tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG")
    template = portrait()

    with pytest.raises(ValidationError, match="outside the media folder"):
        services.job_enqueue(template=template, params=good_params(INPUT_IMAGE=str(outside)))
    assert not Job.objects.exists()


def test_job_enqueue_reports_every_problem_at_once():
    template = portrait()
    params = good_params(WIDTH="wide", INPUT_IMAGE="nope.png")
    del params["SEED"]

    with pytest.raises(ValidationError) as caught:
        services.job_enqueue(template=template, params=params)

    assert caught.value.messages == [
        "SEED has no value and no default.",
        "WIDTH must be a whole number, not 'wide'.",
    ]  # the media check runs once the values themselves are right


def test_job_enqueue_refuses_an_override_for_a_missing_node():
    with pytest.raises(ValidationError, match=re.escape("Override for node 42: the workflow has no such node.")):
        services.job_enqueue(template=portrait(), params=good_params(), overrides={"42": {"steps": 3}})
    assert not Job.objects.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_job_enqueue_refuses_a_float_that_is_not_a_number(value):
    template = services.template_import(
        name="blur",
        workflow={
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": "{{SIGMA}}"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "blur"}},
        },
        placeholders={"SIGMA": {"type": "float"}},
    )

    with pytest.raises(ValidationError, match="SIGMA must be a number"):
        services.job_enqueue(template=template, params={"SIGMA": value})


def test_job_enqueue_refuses_text_with_a_nul_character():
    template = portrait()

    with pytest.raises(ValidationError, match="JOB_TAG"):
        services.job_enqueue(template=template, params=good_params(JOB_TAG="a\x00b"))
    assert not Job.objects.exists()


@pytest.mark.parametrize("value", ["face\x00.png", "a" * 300 + ".png"])
def test_job_enqueue_refuses_an_unusable_media_file_name(value):
    template = portrait()

    with pytest.raises(ValidationError, match="INPUT_IMAGE"):
        services.job_enqueue(template=template, params=good_params(INPUT_IMAGE=value))
    assert not Job.objects.exists()


def test_job_enqueue_by_name_uses_the_latest_active_version():
    first = make_template(name="tiny")
    second = make_template(name="tiny", version=2)
    make_template(name="tiny", version=3, active=False)
    make_template(name="other", version=9)

    job = services.job_enqueue(template="tiny", params={"WIDTH": 16})

    assert job.template == second != first


def test_job_enqueue_by_the_name_of_an_inactive_template_is_a_clear_error():
    make_template(name="retired", active=False)

    with pytest.raises(ValidationError) as caught:
        services.job_enqueue(template="retired", params={})

    assert caught.value.message_dict == {"template": ["No active workflow template named “retired”."]}
    assert not Job.objects.exists()


def test_job_enqueue_checks_the_lane():
    template = make_template()

    with pytest.raises(ValidationError) as caught:
        services.job_enqueue(template=template, params={}, lane="express")

    assert caught.value.message_dict == {"lane": ["Lane must be one of vip, normal."]}
    assert not Job.objects.exists()
    assert services.job_enqueue(template=template, params={}, lane="vip").lane == "vip"


def test_job_enqueue_rings_the_gpu_queue_after_commit(rq_clean, django_capture_on_commit_callbacks):
    template = make_template()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = services.job_enqueue(template=template, params={}, lane="vip")
        assert django_rq.get_queue("gpu-vip").count == 0  # nothing rings before commit

    assert len(callbacks) == 2  # the doorbell, then the announcement
    job.refresh_from_db()
    [rq_job] = django_rq.get_queue("gpu-vip").get_jobs()
    assert (rq_job.id, rq_job.func_name, rq_job.args) == (job.rq_job_id, "factory.jobs.run_job", (job.pk,))
    assert django_rq.get_queue("gpu").count == 0


# --- job_cancel / job_retry ----------------------------------------------------------------------


def test_job_cancel_of_a_queued_job_cancels_it_at_once():
    job = make_job()

    job = services.job_cancel(job_id=job.pk, actor=make_user(username="mei"))

    assert (job.status, job.error_kind, job.error_message) == (
        JobStatus.CANCELLED,
        ErrorKind.CANCELLED,
        "Cancelled by mei.",
    )
    assert job.finished_at is not None
    assert list(job.events.values_list("kind", "message")) == [("cancelled", "Cancelled by mei before it started.")]


def test_job_cancel_of_a_running_job_asks_its_worker():
    job = running_job()

    job = services.job_cancel(job_id=job.pk)

    assert (job.status, job.cancel_requested, job.finished_at) == (JobStatus.RUNNING, True, None)
    assert list(job.events.values_list("kind", "message")) == [
        ("cancel_requested", "the system asked to cancel; interrupting on the GPU server.")
    ]


def test_job_progress_is_the_heartbeat_and_answers_whether_cancel_was_asked():
    job = running_job()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))

    asked = services.job_progress(job_id=job.pk, claim=job.claim, node="3", value=4, maximum=20, percent=20.0)

    job.refresh_from_db()
    assert asked is False
    assert (job.progress_node, job.progress_value, job.progress_max, job.progress_percent) == ("3", 4, 20, 20.0)
    assert timezone.now() - job.heartbeat_at < timedelta(seconds=5)
    services.job_cancel(job_id=job.pk)
    assert services.job_progress(job_id=job.pk, claim=job.claim, node="3", value=5, maximum=20, percent=25.0) is True


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_job_cancel_of_a_finished_job_is_refused(status):
    job = make_job(status=status, finished_at=timezone.now())

    with pytest.raises(services.JobStateError) as caught:
        services.job_cancel(job_id=job.pk)

    assert caught.value.messages == [f"Job {job.pk} is {status.label.lower()}: there is nothing to cancel."]
    job.refresh_from_db()
    assert job.status == status and not job.cancel_requested and not job.events.exists()


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_job_retry_starts_a_failed_or_cancelled_job_afresh(status):
    job = make_job(
        status=status,
        attempts=3,
        retries=2,
        prompt_id="p-1",
        cancel_requested=True,
        error_kind=ErrorKind.STALLED,
        error_message="Stalled.",
        error_details={"node": "5"},
        progress_node="5",
        progress_value=3,
        progress_max=8,
        progress_percent=37.5,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )

    job = services.job_retry(job_id=job.pk, actor=make_user(username="ops"))

    assert job.status == JobStatus.QUEUED
    # Attempts keep counting with a fresh budget on top, so the failed run's files keep their attempt number.
    assert (job.attempts, job.max_attempts, job.retries, job.prompt_id, job.cancel_requested) == (3, 6, 0, "", False)
    assert (job.error_kind, job.error_message, job.error_details) == ("", "", {})
    assert (job.progress_node, job.progress_percent, job.started_at, job.finished_at) == ("", 0, None, None)
    assert list(job.events.values_list("kind", "message")) == [("retried", "Retried by ops.")]


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_job_retry_of_a_job_that_did_not_fail_is_refused(status):
    job = make_job(status=status, attempts=1)

    with pytest.raises(services.JobStateError, match=f"is {status.label.lower()}: only failed or cancelled jobs retry"):
        services.job_retry(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.attempts) == (status, 1) and not job.events.exists()


# --- template_import -----------------------------------------------------------------------------


def test_template_import_infers_placeholder_types_and_numbers_versions():
    first = services.template_import(name="portrait", workflow=PORTRAIT, description="Example B")
    second = services.template_import(name="portrait", workflow=PORTRAIT)
    services.template_import(name="landscape", workflow=PORTRAIT)

    assert (first.version, second.version) == (1, 2)
    assert WorkflowTemplate.objects.get(name="landscape").version == 1
    assert first.placeholders == {
        "HEIGHT": {"type": "int"},
        "INPUT_IMAGE": {"type": "image"},
        "JOB_TAG": {"type": "string"},  # inside a longer text: always text
        "SEED": {"type": "int"},
        "WIDTH": {"type": "int"},
    }
    assert first.description == "Example B" and first.workflow == PORTRAIT


def test_template_import_merges_explicit_placeholders_over_the_inferred_ones():
    template = portrait(SEED={"default": 42}, WIDTH={"type": "float"}, JOB_TAG={"type": "string", "default": "x"})

    assert template.placeholders["SEED"] == {"type": "int", "default": 42}
    assert template.placeholders["WIDTH"] == {"type": "float"}
    assert template.placeholders["JOB_TAG"] == {"type": "string", "default": "x"}
    assert template.placeholders["HEIGHT"] == {"type": "int"}


def test_template_import_refuses_a_ui_export_with_how_to_export_the_api_format():
    ui_export = {"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}

    with pytest.raises(ValidationError) as caught:
        services.template_import(name="portrait", workflow=ui_export)

    assert caught.value.messages == [UI_FORMAT_HELP]
    assert "Export (API)" in UI_FORMAT_HELP
    assert not WorkflowTemplate.objects.exists()


def test_template_import_refuses_undeclared_and_unused_placeholders():
    workflow = copy.deepcopy(PORTRAIT)
    workflow["4"]["_meta"] = {"title": "Invert {{TITLE}}"}  # not an input: its type cannot be inferred

    with pytest.raises(ValidationError) as caught:
        services.template_import(name="portrait", workflow=workflow, placeholders={"UNUSED": {"type": "string"}})

    assert "Placeholders used but not declared: TITLE." in caught.value.messages
    assert "Declared placeholders the workflow never uses: UNUSED." in caught.value.messages
    assert not WorkflowTemplate.objects.exists()


@pytest.mark.parametrize(
    ("placeholders", "expected"),
    [
        ({"SEED": {"type": "integer"}}, "Placeholder SEED: type must be one of"),
        ({"SEED": {"type": "int", "default": "soon"}}, "Default of SEED must be a whole number, not 'soon'."),
    ],
)
def test_template_import_refuses_bad_declarations(placeholders, expected):
    with pytest.raises(ValidationError) as caught:
        portrait(**placeholders)

    assert any(expected in message for message in caught.value.messages), caught.value.messages


def test_template_import_refuses_a_name_that_is_not_a_slug():
    with pytest.raises(ValidationError) as caught:
        services.template_import(name="My Portrait!", workflow=PORTRAIT)

    assert "name" in caught.value.message_dict


@pytest.mark.parametrize("placeholders", [{"SEED": "int"}, ["SEED"]])
def test_template_import_refuses_placeholders_that_are_not_objects(placeholders):
    with pytest.raises(ValidationError, match="Placeholder"):
        services.template_import(name="portrait", workflow=PORTRAIT, placeholders=placeholders)


# --- the worker's side: success needs a file ---------------------------------------------------------


def test_job_succeed_without_any_file_fails_the_job():
    job = running_job(attempts=1)

    services.job_succeed(job_id=job.pk, claim=job.claim)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and not Job.objects.filter(status=JobStatus.SUCCEEDED).exists()
    assert (job.error_kind, job.error_message) == (ErrorKind.EXECUTION, "The workflow finished but saved no file.")
    # Wall time is the run's; GPU time comes only from ComfyUI's execution timestamps (factory.usage).
    assert job.finished_at is not None and job.wall_seconds >= 5 and job.gpu_seconds == 0
    assert list(job.events.values_list("kind", flat=True)) == ["failed"]


def test_job_fail_records_the_error_and_an_event():
    job = running_job(attempts=1)

    assert services.job_fail(
        job_id=job.pk, claim=job.claim, kind=ErrorKind.OOM, message="Out of GPU memory.", details={"node": "5"}
    )

    job.refresh_from_db()
    assert (job.status, job.error_kind, job.error_details) == (JobStatus.FAILED, "oom", {"node": "5"})
    [event] = job.events.all()
    assert (event.kind, event.message, event.data) == ("failed", "Out of GPU memory.", {"kind": "oom"})


def test_job_wait_and_retry_puts_the_job_back_with_a_delay(settings):
    settings.FACTORY_UNREACHABLE_RETRIES = ["10", "30"]
    job = running_job(attempts=1)

    assert services.job_wait_and_retry(
        job_id=job.pk, claim=job.claim, kind=ErrorKind.UNREACHABLE, message="GPU server unreachable."
    )

    job.refresh_from_db()
    assert (job.status, job.retries, job.heartbeat_at) == (JobStatus.QUEUED, 1, None)
    assert job.error_message == "GPU server unreachable. Retrying in 10 s (1/2)."
    assert job.queued_at > timezone.now() + timedelta(seconds=8)
    [event] = job.events.all()
    assert (event.kind, event.data) == ("retry_scheduled", {"kind": "unreachable", "delay": 10})


def test_job_succeed_with_a_file_succeeds():
    job = running_job(attempts=1)
    make_job_output(job=job)

    assert services.job_succeed(job_id=job.pk, claim=job.claim) is True

    job.refresh_from_db()
    assert (job.status, job.progress_percent, job.error_kind) == (JobStatus.SUCCEEDED, 100, "")
    assert list(job.events.values_list("kind", flat=True)) == ["succeeded"]


# --- job_changed: after commit, primitives only -------------------------------------------------------


def _primitive(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _primitive(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_primitive(v) for v in value)
    return value is None or type(value) in {str, int, float, bool}


@pytest.fixture
def heard():
    """Every job_changed sent during the test, as (sender, payload)."""
    received = []

    def receiver(sender, **payload):
        payload.pop("signal", None)
        received.append((sender, payload))

    job_changed.connect(receiver)
    yield received
    job_changed.disconnect(receiver)


def test_job_changed_is_sent_after_commit_with_primitives(heard, rq_clean, django_capture_on_commit_callbacks):
    template = make_template()

    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_enqueue(template=template, params={"WIDTH": 8}, subject="post.9/shot.1")
        assert heard == []  # not before commit

    [(sender, payload)] = heard
    assert sender is Job
    assert payload == {
        "job_id": job.pk,
        "subject": "post.9/shot.1",
        "status": "queued",
        "event": "status",
        "progress": {"node": "", "value": 0, "max": 0, "percent": 0.0},
        "error": None,
    }
    assert _primitive(payload) and json.loads(json.dumps(payload)) == payload

    with django_capture_on_commit_callbacks(execute=True):
        services.job_cancel(job_id=job.pk)
        assert len(heard) == 1

    [_, (_, cancelled)] = heard
    assert (cancelled["status"], cancelled["error"]) == (
        "cancelled",
        {"kind": "cancelled", "message": "Cancelled by the system."},
    )
    assert _primitive(cancelled)


def test_a_failing_receiver_does_not_break_the_service(django_capture_on_commit_callbacks):
    def broken(sender, **payload):
        raise RuntimeError("subscriber bug")

    job_changed.connect(broken)
    try:
        job = make_job()
        with django_capture_on_commit_callbacks(execute=True):
            services.job_cancel(job_id=job.pk)
    finally:
        job_changed.disconnect(broken)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_a_silent_running_job_is_taken_over_by_another_worker():
    job = running_job(attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1))
    taken = services.job_start(job_id=job.pk, worker_name="gpu-2", server_url="http://gpu:8188")
    assert taken is not None and taken.worker_name == "gpu-2"
    assert job.events.filter(kind="taken_over").count() == 1


def test_a_job_whose_worker_dies_every_time_fails_instead_of_looping(settings):
    settings.FACTORY_MAX_ATTEMPTS = 3
    job = running_job(attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1))
    for _ in range(2):
        job.events.create(kind="taken_over", message="earlier takeover")
    assert services.job_start(job_id=job.pk, worker_name="gpu-4", server_url="http://gpu:8188") is None
    job.refresh_from_db()
    assert (job.status, job.error_kind) == (JobStatus.FAILED, ErrorKind.LOST)
    assert job.error_message == "Failed: its worker died 3 times (see the worker logs)."


def test_a_running_job_with_a_live_worker_is_not_taken_over():
    job = running_job(attempts=1, heartbeat_at=timezone.now())
    assert services.job_start(job_id=job.pk, worker_name="gpu-2", server_url="http://gpu:8188") is None
    assert not job.events.filter(kind="taken_over").exists()


# --- fencing: a worker presumed dead that wakes up writes nothing ------------------------------------------

STALE_WRITES = {
    "job_touch": {},
    "job_is_cancel_requested": {},
    "job_progress": {"node": "3", "value": 9, "maximum": 20, "percent": 45.0},
    "job_begin_attempt": {"server_url": "http://gpu-a:8188", "workflow": {"1": {}}},
    "job_abandon_prompt": {"prompt_id": "p-1", "server_url": "http://gpu-a:8188"},
    "job_record_output": {
        **{"attempt": 1, "node_id": "9", "index": 0, "name": "late.png", "stored_name": "factory/late.png"},
        **{"size": 1, "sha256": "0" * 64, "content_type": "image/png"},
    },
    "job_succeed": {"require_output": False},
    "job_fail": {"kind": ErrorKind.EXECUTION, "message": "The old worker's verdict."},
    "job_wait_and_retry": {"kind": ErrorKind.UNREACHABLE, "message": "GPU server unreachable."},
    "job_note": {"kind": "long_node", "message": "Node 3: no progress event for 130 s."},
}


@pytest.mark.parametrize("service", sorted(STALE_WRITES))
def test_a_stale_claim_token_is_refused_by_every_worker_side_service(service, django_capture_on_commit_callbacks):
    # Worker A claimed the job, went silent (SIGSTOP) and worker B took it over: A's token is stale.
    job = running_job(attempts=1, prompt_id="p-1", heartbeat_at=timezone.now() - timedelta(hours=1))
    stale = job.claim
    taken = services.job_start(job_id=job.pk, worker_name="gpu-b", server_url="http://gpu-b:8188")
    assert taken.claim != stale
    before = Job.objects.values().get(pk=job.pk)
    events = list(job.events.values_list("pk", flat=True))
    heard = []
    job_changed.connect(receiver := lambda **kwargs: heard.append(kwargs))
    try:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(services.ClaimLost):
            getattr(services, service)(job_id=job.pk, claim=stale, **STALE_WRITES[service])
    finally:
        job_changed.disconnect(receiver)

    assert Job.objects.values().get(pk=job.pk) == before  # no status, progress, heartbeat, prompt or error
    assert list(job.events.values_list("pk", flat=True)) == events and not job.outputs.exists() and not heard
    # The holder's own token still works.
    assert services.job_progress(job_id=job.pk, claim=taken.claim, node="3", value=1, maximum=2, percent=50) is False


def test_job_note_adds_to_the_trail_of_the_job_its_claim_holds_and_is_a_heartbeat():
    job = running_job(heartbeat_at=timezone.now() - timedelta(minutes=5))

    services.job_note(job_id=job.pk, claim=job.claim, kind="long_node", message="Node 3: silent 130 s.", node="3")

    event = job.events.get(kind="long_node")
    assert (event.message, event.data) == ("Node 3: silent 130 s.", {"node": "3"})
    assert Job.objects.get(pk=job.pk).heartbeat_at > timezone.now() - timedelta(seconds=5)


def test_a_job_back_in_the_queue_refuses_its_last_holder():
    job = running_job(attempts=1)
    assert services.job_wait_and_retry(job_id=job.pk, claim=job.claim, kind=ErrorKind.UNREACHABLE, message="Down.")

    with pytest.raises(services.ClaimLost):
        services.job_fail(job_id=job.pk, claim=job.claim, kind=ErrorKind.EXECUTION, message="late")
    job.refresh_from_db()
    assert (job.status, job.error_kind) == (JobStatus.QUEUED, ErrorKind.UNREACHABLE)


def test_job_touch_is_the_heartbeat_and_answers_whether_cancel_was_asked():
    job = running_job(heartbeat_at=timezone.now() - timedelta(minutes=5))

    assert services.job_touch(job_id=job.pk, claim=job.claim) is False
    assert timezone.now() - Job.objects.get(pk=job.pk).heartbeat_at < timedelta(seconds=5)
    services.job_cancel(job_id=job.pk)
    assert services.job_touch(job_id=job.pk, claim=job.claim) is True


def test_job_enqueue_refuses_overrides_with_a_nul_character():
    template = make_template(
        name="plain", workflow={"1": {"class_type": "SaveImage", "inputs": {"x": 1}}}, placeholders={}
    )
    with pytest.raises(ValidationError, match="NUL character"):
        services.job_enqueue(template=template, params={}, overrides={"1": {"x": "a\x00b"}})
    assert not Job.objects.exists()
