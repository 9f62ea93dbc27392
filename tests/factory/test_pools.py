"""GPU pools: a template's pool routes its jobs to that pool's queues; undeclared pools are refused."""

import io
import os
import subprocess
import sys
from datetime import timedelta

import django_rq
import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.utils import timezone

from factory import queues, services
from factory.models import Job, JobStatus, WorkflowTemplate
from tests.factories import TINY_WORKFLOW, make_job, make_template
from tests.factory.conftest import subprocess_env
from tests.processes import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def video_pool(settings):
    """Pool "video" declared as MCN_GPU_POOLS=video declares it (settings.py adds its two rq queues)."""
    settings.MCN_GPU_POOLS = ["video"]
    base = settings.RQ_QUEUES["gpu"]
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "gpu-vip.video": base, "gpu.video": base}


def test_the_default_pool_keeps_the_queue_names_existing_installs_use(settings):
    settings.MCN_GPU_POOLS = []
    assert queues.gpu_queues("") == queues.gpu_queues("default") == ["gpu-vip", "gpu"]
    assert queues.all_gpu_queues() == ["gpu-vip", "gpu"]
    assert queues.GPU_QUEUES == {"vip": "gpu-vip", "normal": "gpu"} and queues.CPU_QUEUE == "cpu"


def test_each_declared_pool_has_its_own_queues_vip_first(video_pool):
    assert queues.gpu_queues("video") == ["gpu-vip.video", "gpu.video"]
    assert queues.all_gpu_queues() == ["gpu-vip", "gpu", "gpu-vip.video", "gpu.video"]
    with pytest.raises(ImproperlyConfigured, match="GPU pool “audio” is not declared"):
        queues.gpu_queues("audio")


def test_settings_declare_an_rq_queue_pair_per_pool_from_the_environment():
    environ = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x", "MCN_GPU_POOLS": "video, hires_48gb,default"}
    script = "from django.conf import settings; print(sorted(settings.RQ_QUEUES)); print(settings.MCN_GPU_POOLS)"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "mcn_site.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(
            sorted(
                [
                    "gpu-vip",
                    "gpu",
                    "cpu",
                    "default",
                    "gpu-vip.video",
                    "gpu.video",
                    "gpu-vip.hires_48gb",
                    "gpu.hires_48gb",
                ]
            )
        ),
        "['video', 'hires_48gb']",
    ]


def test_a_pool_name_that_is_no_queue_name_stops_the_start():
    environ = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x", "MCN_GPU_POOLS": "Video Cards"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "mcn_site.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MCN_GPU_POOLS: 'Video Cards' is not a pool name" in result.stderr


@pytest.mark.parametrize(("lane", "queue"), [("vip", "gpu-vip.video"), ("normal", "gpu.video")])
def test_a_job_goes_to_its_template_s_pool_and_lane(
    video_pool, rq_clean, django_capture_on_commit_callbacks, lane, queue
):
    template = make_template(gpu_pool="video")

    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_enqueue(template=template, params={"WIDTH": 8}, lane=lane)

    job.refresh_from_db()
    assert django_rq.get_queue(queue).job_ids == [job.rq_job_id]
    for other in {"gpu-vip", "gpu", "gpu-vip.video", "gpu.video"} - {queue}:
        assert django_rq.get_queue(other).count == 0


def test_a_template_without_a_pool_still_rings_the_plain_gpu_queue(
    video_pool, rq_clean, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_enqueue(template=make_template(), params={"WIDTH": 8})

    job.refresh_from_db()
    assert django_rq.get_queue("gpu").job_ids == [job.rq_job_id]
    assert django_rq.get_queue("gpu.video").count == 0


def test_a_template_naming_an_undeclared_pool_is_refused_with_what_to_do(settings):
    settings.MCN_GPU_POOLS = []

    with pytest.raises(ValidationError) as caught:
        services.template_import(name="clip", workflow=TINY_WORKFLOW, gpu_pool="video")

    [message] = caught.value.message_dict["gpu_pool"]
    assert message.startswith("GPU pool “video” is not declared: add it to MCN_GPU_POOLS (now: empty)")
    assert "--pool video" in message
    assert not WorkflowTemplate.objects.exists()


def test_a_new_template_version_keeps_the_pool_unless_told_otherwise(video_pool):
    services.template_import(name="clip", workflow=TINY_WORKFLOW, gpu_pool="video")

    second = services.template_import(name="clip", workflow=TINY_WORKFLOW)
    third = services.template_import(name="clip", workflow=TINY_WORKFLOW, gpu_pool="")

    assert (second.version, second.gpu_pool) == (2, "video")
    assert (third.version, third.gpu_pool) == (3, "")


def test_a_job_for_a_pool_no_longer_declared_is_refused_before_anything_is_saved(video_pool, settings):
    template = make_template(gpu_pool="video")
    settings.MCN_GPU_POOLS = []  # the pool was taken out of the environment

    with pytest.raises(ValidationError, match="cannot run: GPU pool “video” is not declared"):
        services.job_enqueue(template=template, params={"WIDTH": 8})

    assert not Job.objects.exists()


def test_the_database_check_names_active_templates_whose_pool_is_not_declared(video_pool, settings):
    make_template(name="clip", gpu_pool="video")
    make_template(name="old-clip", gpu_pool="audio", active=False)  # inactive: runs no jobs
    call_command("check", "--database", "default")  # video is declared: clean

    settings.MCN_GPU_POOLS = []
    with pytest.raises(SystemCheckError, match=r"factory\.E009.*GPU pool “video”, which is not declared: clip\."):
        call_command("check", "--database", "default")
    call_command("check")  # without --database the check (it reads the database) does not run


@pytest.mark.django_db(transaction=True)
def test_the_reconciler_rings_a_dead_worker_s_job_at_the_front_of_its_pool_s_queue(video_pool, rq_clean):
    long_ago = timezone.now() - timedelta(minutes=10)
    waiting = make_job(template=make_template(gpu_pool="video"))
    orphan = make_job(
        template=make_template(gpu_pool="video"), status=JobStatus.RUNNING, queued_at=long_ago, heartbeat_at=long_ago
    )
    queues.ring(waiting.pk, queue="gpu.video")

    out = io.StringIO()
    call_command("reconcile_jobs", "--once", stdout=out)

    assert out.getvalue().strip() == f"Reconciled 1 job(s): {orphan.pk}."
    # Its prompt may still run on the GPU server: the next free worker of the pool re-attaches first.
    assert [job.args for job in django_rq.get_queue("gpu.video").get_jobs()] == [(orphan.pk,), (waiting.pk,)]
    assert django_rq.get_queue("gpu").count == 0


def test_run_gpu_worker_refuses_a_pool_that_is_not_declared(settings):
    settings.MCN_GPU_POOLS = []
    with pytest.raises(CommandError, match="GPU pool “video” is not declared"):
        call_command("run_gpu_worker", "--pool", "video", "--burst", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_run_gpu_worker_listens_on_its_pool_s_queues_vip_first(fake_comfyui, rq_clean):
    environ = subprocess_env(MCN_GPU_POOLS="video", MCN_GPU_POOL="video")
    argv = ["run_gpu_worker", "--name", "gpu-video-1", "--comfyui-url", fake_comfyui.url, "--burst"]

    result = subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    line = f"GPU worker gpu-video-1: {fake_comfyui.url}, pool video, queues gpu-vip.video, gpu.video"
    assert result.stdout.splitlines()[0] == line
