"""The factory admin, the ops console of the GPU factory: jobs, workflow templates, GPU workers."""

import json
from datetime import timedelta

import django_rq
import pytest
from django.contrib import messages as message_levels
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from factory.models import ErrorKind, GpuWorker, Job, JobEvent, JobStatus, Lane, WorkflowTemplate
from factory.templating import UI_FORMAT_HELP
from factory.worker import heartbeat_once
from mcn_site.lib import roles
from tests.admin import error_text, form_data, login
from tests.factories import make_gpu_worker, make_job, make_job_output, make_template, make_user

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:factory_job_changelist")
TEMPLATES = reverse("admin:factory_workflowtemplate_changelist")
TEMPLATE_ADD = reverse("admin:factory_workflowtemplate_add")
WORKERS = reverse("admin:factory_gpuworker_changelist")
GIB = 2**30


def job_url(job: Job) -> str:
    return reverse("admin:factory_job_change", args=[job.pk])


def messages_of(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def row_of(body: str, text: str) -> str:
    """The changelist table row that mentions `text`."""
    [row] = [row for row in body.split("<tr")[1:] if text in row]
    return row


def _action(client, url: str, action: str, objects, **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects], "index": "0", **extra}
    return client.post(url, data)


@pytest.fixture
def ops():
    return make_user(role=roles.OPS, username="olga")


def _jobs_in_every_state() -> list[Job]:
    template = make_template(name="portrait")
    now = timezone.now()
    started = now - timedelta(minutes=3)
    return [
        make_job(template=template, subject="post.1/shot.1"),
        make_job(
            template=template,
            subject="post.2/shot.1",
            lane=Lane.VIP,
            status=JobStatus.RUNNING,
            attempts=1,
            started_at=started,
            heartbeat_at=now,
            worker_name="gpu-h100",
            progress_node="1",
            progress_value=12,
            progress_max=30,
            progress_percent=40,
        ),
        make_job(
            template=template,
            subject="post.3/shot.1",
            status=JobStatus.SUCCEEDED,
            attempts=1,
            started_at=started,
            finished_at=now,
            progress_percent=100,
        ),
        make_job(
            template=template,
            subject="post.4/shot.2",
            status=JobStatus.FAILED,
            attempts=3,
            started_at=started,
            finished_at=now,
            error_kind=ErrorKind.OOM,
            error_message="The GPU ran out of memory at node 1.",
        ),
    ]


# --- who gets in ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.OPS, None])
def test_the_factory_pages_answer_200_for_ops_and_a_superuser(role):
    user = make_user(role=role, is_superuser=role is None)
    jobs = _jobs_in_every_state()
    make_job_output(job=jobs[2])
    worker = make_gpu_worker(current_job=jobs[1])
    client = login(user)
    pages = [
        JOBS,
        job_url(jobs[1]),
        job_url(jobs[2]),
        TEMPLATES,
        reverse("admin:factory_workflowtemplate_change", args=[jobs[0].template_id]),
        WORKERS,
        reverse("admin:factory_gpuworker_change", args=[worker.pk]),
    ]
    for page in pages:
        assert client.get(page).status_code == 200, page


@pytest.mark.parametrize("role", [roles.PRODUCER, roles.REVIEWER])
def test_producers_and_reviewers_are_refused_every_factory_page(role):
    job = make_job()
    worker = make_gpu_worker()
    client = login(make_user(role=role))
    for page in [JOBS, job_url(job), TEMPLATES, TEMPLATE_ADD, WORKERS]:
        assert client.get(page).status_code == 403, page
    assert client.get(reverse("admin:factory_gpuworker_change", args=[worker.pk])).status_code == 403
    assert _action(client, JOBS, "cancel_jobs", [job]).status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_the_factory_is_not_on_a_producers_admin_index():
    body = login(make_user(role=roles.PRODUCER)).get(reverse("admin:index")).content.decode()
    assert "/admin/factory/" not in body


# --- the job list --------------------------------------------------------------------------


def test_the_job_list_shows_status_lane_progress_attempts_and_errors(ops):
    queued, running, succeeded, failed = _jobs_in_every_state()
    response = login(ops).get(JOBS)
    assert response.status_code == 200
    # Newest first.
    assert list(response.context["cl"].result_list) == [failed, succeeded, running, queued]
    body = response.content.decode()
    for label in ["Queued", "Running", "Succeeded", "Failed"]:
        assert f">{label}</span>" in body
    assert "★ VIP" in body
    assert "40%" in body and "EmptyImage #1" in body  # the running job's node, named by its class
    assert "3/3" in body and "1/3" in body
    assert "Out of GPU memory" in body and 'title="The GPU ran out of memory at node 1."' in body
    assert "3m 00s" in body  # succeeded: started -> finished
    assert "3m 00s…" in body or "3m 01s…" in body  # running: started -> now
    assert "portrait v1" in body and "gpu-h100" in body


def test_the_job_list_filters_by_status_and_lane_and_searches_subjects(ops):
    queued, running, _, failed = _jobs_in_every_state()
    client = login(ops)
    assert list(client.get(JOBS, {"status__exact": "failed"}).context["cl"].result_list) == [failed]
    assert list(client.get(JOBS, {"lane__exact": "vip"}).context["cl"].result_list) == [running]
    assert list(client.get(JOBS, {"q": "post.1/"}).context["cl"].result_list) == [queued]
    assert list(client.get(JOBS, {"q": "ran out of memory"}).context["cl"].result_list) == [failed]
    assert list(client.get(JOBS, {"q": "gpu-h100"}).context["cl"].result_list) == [running]


def test_the_job_list_costs_the_same_queries_for_20_jobs_as_for_2(ops, django_assert_max_num_queries):
    client = login(ops)
    templates = [make_template() for _ in range(4)]
    for i in range(2):
        make_job(template=templates[i], status=JobStatus.RUNNING, progress_node="1", progress_percent=10)
    client.get(JOBS)  # warm the session and content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(JOBS).status_code == 200
    for i in range(18):
        make_job(template=templates[i % 4], status=JobStatus.RUNNING, progress_node="1", progress_percent=10)
    with django_assert_max_num_queries(len(few)):
        response = client.get(JOBS)
    assert len(response.context["cl"].result_list) == 20


def test_the_job_and_worker_lists_link_the_queue_dashboard_for_ops(ops):
    client = login(ops)
    dashboard = reverse("django_rq:home")
    assert f'href="{dashboard}"' in client.get(JOBS).content.decode()
    assert f'href="{dashboard}"' in client.get(WORKERS).content.decode()


def test_a_superuser_without_the_ops_role_also_gets_the_queue_dashboard_link():
    client = login(make_user(role=None, is_superuser=True))
    assert f'href="{reverse("django_rq:home")}"' in client.get(JOBS).content.decode()


# --- the job page --------------------------------------------------------------------------


def test_the_job_page_shows_params_outputs_with_thumbnails_and_the_event_trail(ops):
    job = make_job(
        status=JobStatus.SUCCEEDED,
        attempts=1,
        params={"WIDTH": 64, "PROMPT": "a “quoted” prompt"},
        overrides={"1": {"height": 32}},
        submitted_workflow={"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}},
        prompt_id="9f1c2d3e-0000-4000-8000-000000000001",
        provenance={"template": {"name": "tiny", "version": 1, "sha256": "ab" * 32}, "seed": 7},
    )
    output = make_job_output(job=job)
    JobEvent.objects.create(job=job, kind="submitted", message="Attempt 1: prompt 9f1c.", data={"attempt": 1})
    response = login(ops).get(job_url(job))
    assert response.status_code == 200
    body = response.content.decode()
    # Pretty JSON, escaped once.
    assert json.dumps(job.params, indent=2, ensure_ascii=False).replace('"', "&quot;") in body
    assert "&quot;height&quot;: 32" in body
    assert "9f1c2d3e-0000-4000-8000-000000000001" in body
    # The output: a thumbnail served from our media, its size and checksum.
    assert f'<img src="{output.file.url}"' in body and output.file.url.startswith("/media/")
    assert output.sha256 in body and "tiny_00001_.png" in body
    assert "Attempt 1: prompt 9f1c." in body
    assert "&quot;class_type&quot;: &quot;EmptyImage&quot;" in body  # the submitted workflow
    assert f"&quot;sha256&quot;: &quot;{'ab' * 32}&quot;" in body  # how it was made (provenance)


def test_the_job_page_shows_what_the_job_consumed_read_only(ops):
    job = make_job(
        status=JobStatus.SUCCEEDED,
        gpu_seconds=12.75,
        queue_seconds=3.5,
        wall_seconds=20.25,
        llm_model="deepseek-chat-v3",
        llm_prompt_tokens=9876,
        llm_completion_tokens=543,
    )
    response = login(ops).get(job_url(job))
    assert response.status_code == 200
    fieldsets = {name: options["fields"] for name, options in response.context["adminform"].fieldsets}
    assert fieldsets["Usage"] == [
        "gpu_seconds",
        "queue_seconds",
        "wall_seconds",
        "audio_seconds",
        "llm_model",
        "llm_prompt_tokens",
        "llm_completion_tokens",
    ]
    body = response.content.decode()
    for shown in ("12.75", "3.5", "20.25", "deepseek-chat-v3", "9876", "543"):
        assert shown in body
    assert 'name="gpu_seconds"' not in body  # read-only: no input


def test_a_job_output_thumbnail_is_served_to_a_logged_in_user(ops):
    output = make_job_output(job=make_job(status=JobStatus.SUCCEEDED))
    response = login(ops).get(output.file.url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"


def test_jobs_have_no_add_page_and_a_read_only_job_page(ops):
    job = make_job()
    client = login(ops)
    assert client.get(reverse("admin:factory_job_add")).status_code == 403
    response = client.get(job_url(job))
    assert response.context["title"] == "View job"
    assert 'name="_save"' not in response.content.decode()
    assert client.post(job_url(job), {"subject": "hijack"}).status_code == 403
    assert Job.objects.get(pk=job.pk).subject == job.subject


def test_only_a_superuser_may_delete_a_job(ops):
    job = make_job()
    delete = reverse("admin:factory_job_delete", args=[job.pk])
    assert login(ops).get(delete).status_code == 403
    offered = {name for name, _ in login(ops).get(JOBS).context["action_form"].fields["action"].choices}
    assert offered == {"", "cancel_jobs", "retry_jobs"}
    superuser = login(make_user(role=None, is_superuser=True))
    assert superuser.get(delete).status_code == 200
    superuser.post(delete, {"post": "yes"})
    assert not Job.objects.filter(pk=job.pk).exists()


# --- cancel and retry ----------------------------------------------------------------------


def test_the_cancel_action_cancels_a_queued_job_and_records_it(ops):
    job = make_job()
    response = _action(login(ops), JOBS, "cancel_jobs", [job])
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.error_kind == ErrorKind.CANCELLED
    assert job.error_message == "Cancelled by olga."
    assert job.events.filter(kind="cancelled", message__contains="olga").exists()
    assert messages_of(response) == [(message_levels.SUCCESS, f"Cancelled 1 job(s): #{job.pk}.")]


def test_cancelling_a_succeeded_job_reports_the_job_by_name_and_changes_nothing(ops):
    done = make_job(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    queued = make_job()
    response = _action(login(ops), JOBS, "cancel_jobs", [done, queued])
    assert response.status_code == 302
    assert Job.objects.get(pk=done.pk).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED
    assert (message_levels.ERROR, f"Job {done.pk} is succeeded: there is nothing to cancel.") in messages_of(response)
    assert not done.events.exists()


def test_cancelling_a_running_job_asks_its_worker_to_interrupt_it(ops):
    job = make_job(status=JobStatus.RUNNING, started_at=timezone.now(), worker_name="gpu-1")
    response = _action(login(ops), JOBS, "cancel_jobs", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.cancel_requested
    assert job.events.filter(kind="cancel_requested").exists()
    [(level, text)] = messages_of(response)
    assert level == message_levels.WARNING and f"Job {job.pk}" in text and "interrupt" in text


def test_the_retry_action_requeues_a_failed_job_with_a_fresh_attempt_budget(ops):
    job = make_job(
        status=JobStatus.FAILED,
        attempts=3,
        error_kind=ErrorKind.EXECUTION,
        error_message="Node 1 failed.",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    response = _action(login(ops), JOBS, "retry_jobs", [job])
    assert response.status_code == 302
    job.refresh_from_db()
    # Attempts keep counting, with a fresh budget on top: old files stay under their old attempt.
    assert job.status == JobStatus.QUEUED and (job.attempts, job.max_attempts) == (3, 6)
    assert job.error_kind == "" and job.finished_at is None
    assert job.events.filter(kind="retried", message="Retried by olga.").exists()
    assert messages_of(response) == [(message_levels.SUCCESS, f"Queued again 1 job(s): #{job.pk}.")]


def test_retrying_a_running_job_reports_the_job_by_name(ops):
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    response = _action(login(ops), JOBS, "retry_jobs", [job])
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).attempts == 1
    assert messages_of(response) == [
        (message_levels.ERROR, f"Job {job.pk} is running: only failed or cancelled jobs retry.")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_retried_job_rings_its_lane_queue_after_commit(rq_clean):
    # Real commits: the doorbell rings from the service's on_commit, as in production.
    job = make_job(status=JobStatus.FAILED, lane=Lane.VIP, attempts=3)
    _action(login(make_user(role=roles.OPS)), JOBS, "retry_jobs", [job])
    job.refresh_from_db()
    assert job.rq_job_id
    assert django_rq.get_queue("gpu-vip").job_ids == [job.rq_job_id]


def test_the_job_page_offers_the_actions_that_apply_and_comes_back_after_one(ops):
    failed = make_job(status=JobStatus.FAILED, attempts=3)
    client = login(ops)
    page = client.get(job_url(failed))
    assert page.context["job_buttons"] == [("retry_jobs", "Retry job")]
    data = form_data(page, form_id="job-action-retry_jobs")
    response = client.post(JOBS, data)
    assert response.status_code == 302 and response["Location"] == job_url(failed)
    assert Job.objects.get(pk=failed.pk).status == JobStatus.QUEUED
    assert client.get(job_url(failed)).context["job_buttons"] == [("cancel_jobs", "Cancel job")]
    succeeded = make_job(status=JobStatus.SUCCEEDED)
    assert client.get(job_url(succeeded)).context["job_buttons"] == []


def test_the_job_page_ignores_a_foreign_next_address(ops):
    job = make_job()
    response = _action(login(ops), JOBS, "cancel_jobs", [job], next="https://evil.example/")
    assert response.status_code == 302 and response["Location"] == JOBS


# --- workflow templates --------------------------------------------------------------------


def test_the_template_list_shows_nodes_placeholders_and_job_count(ops):
    template = make_template(name="portrait")
    make_job(template=template)
    make_job(template=template)
    response = login(ops).get(TEMPLATES)
    assert response.status_code == 200
    [row] = response.context["cl"].result_list
    assert row.n_jobs == 2
    body = response.content.decode()
    assert "<code>WIDTH</code>" in body
    assert f"?template__id__exact={template.pk}" in body


def test_adding_a_template_saves_the_next_version_with_inferred_placeholders(ops):
    make_template(name="portrait")
    client = login(ops)
    data = form_data(client.get(TEMPLATE_ADD))
    data.update(
        name="portrait",
        workflow=json.dumps(
            {
                "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 64, "batch_size": 1}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{PREFIX}}"}},
            }
        ),
        placeholders="",
    )
    response = client.post(TEMPLATE_ADD, data)
    assert response.status_code == 302, error_text(response)
    saved = WorkflowTemplate.objects.get(name="portrait", version=2)
    assert saved.placeholders == {"PREFIX": {"type": "string"}, "WIDTH": {"type": "int"}}
    assert saved.created_by == ops


def test_a_pasted_ui_export_is_refused_with_the_export_api_help(ops):
    client = login(ops)
    data = form_data(client.get(TEMPLATE_ADD))
    data.update(name="portrait", workflow=json.dumps({"nodes": [{"id": 1, "type": "KSampler"}], "links": []}))
    response = client.post(TEMPLATE_ADD, data)
    assert response.status_code == 200
    assert UI_FORMAT_HELP in error_text(response)
    assert "Export (API)" in response.content.decode()
    assert not WorkflowTemplate.objects.exists()


def test_an_undeclared_placeholder_is_named_in_the_form_error(ops):
    template = make_template(name="portrait")
    client = login(ops)
    url = reverse("admin:factory_workflowtemplate_change", args=[template.pk])
    data = form_data(client.get(url))
    workflow = json.loads(data["workflow"])
    workflow["2"]["inputs"]["filename_prefix"] = "{{PREFIX}}"
    data["workflow"] = json.dumps(workflow)
    response = client.post(url, data)
    assert response.status_code == 200
    assert "Placeholders used but not declared: PREFIX." in error_text(response)
    assert WorkflowTemplate.objects.get(pk=template.pk).workflow["2"]["inputs"]["filename_prefix"] == "tiny"


def test_a_template_change_page_keeps_name_and_version_and_saves_the_rest(ops):
    template = make_template(name="portrait")
    client = login(ops)
    url = reverse("admin:factory_workflowtemplate_change", args=[template.pk])
    data = form_data(client.get(url))
    assert "name" not in data and "version" not in data
    data["description"] = "Square test image."
    data.pop("active")
    response = client.post(url, data)
    assert response.status_code == 302, error_text(response)
    template.refresh_from_db()
    assert template.description == "Square test image." and not template.active
    assert (template.name, template.version) == ("portrait", 1)


def test_a_template_change_page_saves_a_manifest_and_refuses_a_bad_one_with_the_reason(ops):
    template = make_template(name="wan-i2v")
    client = login(ops)
    url = reverse("admin:factory_workflowtemplate_change", args=[template.pk])
    data = form_data(client.get(url))
    manifest = {"time_budget_seconds": 900, "models": [{"file": "wan.safetensors", "folder": "diffusion_models"}]}

    bad = client.post(url, {**data, "manifest": json.dumps({"time_budget_seconds": "soon"})})
    assert bad.status_code == 200
    assert "Manifest: time_budget_seconds must be a positive number of seconds, not &#x27;soon&#x27;." in (
        bad.content.decode()
    )
    response = client.post(url, {**data, "manifest": json.dumps(manifest)})
    assert response.status_code == 302, error_text(response)
    assert WorkflowTemplate.objects.get(pk=template.pk).manifest == manifest


def test_saving_a_template_unchanged_keeps_its_workflow_exactly(ops):
    # The textarea shows links on one line (["1", 0]); text that merely looks like a list must survive as typed.
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 64, "batch_size": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "[  odd ,\n name ]"}},
    }
    template = make_template(workflow=workflow)
    client = login(ops)
    url = reverse("admin:factory_workflowtemplate_change", args=[template.pk])
    data = form_data(client.get(url))
    assert '"images": ["1", 0]' in data["workflow"]
    response = client.post(url, data)
    assert response.status_code == 302, error_text(response)
    assert WorkflowTemplate.objects.get(pk=template.pk).workflow == workflow


def test_preflight_reports_each_template_and_a_missing_node_class_by_name(ops, fake_comfyui, settings):
    settings.COMFYUI_URL = fake_comfyui.url
    good = make_template(name="portrait")
    workflow = {
        **good.workflow,
        "3": {"class_type": "UltimateSDUpscale", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing_model.safetensors"}},
    }
    bad = make_template(name="upscale", workflow=workflow)
    response = _action(login(ops), TEMPLATES, "preflight_templates", [good, bad])
    assert response.status_code == 302
    found = dict((text.split(":")[0], (level, text)) for level, text in messages_of(response))
    assert found["✓ portrait v1"][0] == message_levels.SUCCESS
    level, text = found["✗ upscale v1"]
    assert level == message_levels.ERROR
    assert "Node 3: node type UltimateSDUpscale is not installed on the GPU server." in text
    assert "ckpt_name 'missing_model.safetensors' is not installed" in text
    assert fake_comfyui.requests("GET", "/object_info")  # asked the server, not a cache


def test_preflight_with_the_gpu_server_down_says_unreachable_as_an_error(ops, fake_comfyui, settings):
    settings.COMFYUI_URL = fake_comfyui.url
    fake_comfyui.refuse_connections = True
    template = make_template()
    response = _action(login(ops), TEMPLATES, "preflight_templates", [template])
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == message_levels.ERROR
    assert text.startswith(f"GPU server unreachable at {fake_comfyui.url}")


# --- GPU workers ---------------------------------------------------------------------------


def test_the_worker_panel_renders_vram_figures_from_a_heartbeat(ops, fake_comfyui):
    fake_comfyui.set_device("cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", vram_total=80 * GIB, vram_free=60 * GIB)
    job = make_job(status=JobStatus.RUNNING, worker_name="gpu-h100")
    heartbeat_once(name="gpu-h100", server_url=fake_comfyui.url, queues=["gpu-vip", "gpu"])
    response = login(ops).get(WORKERS)
    assert response.status_code == 200
    body = response.content.decode()
    assert "20.0 / 80.0 GiB" in body
    assert "cuda:0 NVIDIA H100 80GB HBM3" in body
    assert ">reachable</span>" in body and "stale" not in body
    assert f'href="{job_url(job)}"' in body


def test_a_worker_silent_for_three_heartbeats_is_marked_stale(ops, settings):
    settings.FACTORY_HEARTBEAT_SECONDS = 10
    make_gpu_worker(name="gpu-fresh", last_seen_at=timezone.now() - timedelta(seconds=25))
    make_gpu_worker(name="gpu-gone", last_seen_at=timezone.now() - timedelta(seconds=31), server_reachable=False)
    body = login(ops).get(WORKERS).content.decode()
    assert ">stale</span>" not in row_of(body, "gpu-fresh")
    assert ">stale</span>" in row_of(body, "gpu-gone") and ">unreachable</span>" in row_of(body, "gpu-gone")


def test_the_worker_panel_is_read_only(ops):
    worker = make_gpu_worker()
    client = login(ops)
    assert client.get(reverse("admin:factory_gpuworker_add")).status_code == 403
    url = reverse("admin:factory_gpuworker_change", args=[worker.pk])
    assert client.post(url, {"name": "renamed"}).status_code == 403
    assert client.get(reverse("admin:factory_gpuworker_delete", args=[worker.pk])).status_code == 403
    assert GpuWorker.objects.get(pk=worker.pk).name == worker.name
