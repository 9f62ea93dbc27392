"""A job through the whole factory: row, rq, a real worker process, the fake ComfyUI, files in media."""

import hashlib
import json
from pathlib import Path

import pytest
from django.conf import settings

from factory import services
from factory.models import GpuWorker, Job, JobStatus
from tests.factories import TINY_WORKFLOW, png_bytes
from tests.factory.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Example B of the ComfyUI protocol notes, as an operator would export it (API format).
PORTRAIT = json.loads((Path(__file__).parent / "data" / "portrait_api.json").read_text())
# Another workflow (other nodes, so other models on a real GPU) for switching between templates.
INVERTED = {
    **TINY_WORKFLOW,
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}},
}


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.is_terminal else None


@pytest.fixture
def face(settings) -> str:
    path = Path(settings.MEDIA_ROOT) / "artists" / "face.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(64, 64))
    return "artists/face.png"


def test_a_job_runs_end_to_end_through_a_real_worker(fake_comfyui, start_worker, face):
    template = services.template_import(name="portrait", workflow=PORTRAIT)
    start_worker(fake_comfyui.url)
    job = services.job_enqueue(
        template="portrait",
        params={"INPUT_IMAGE": face, "WIDTH": 32, "HEIGHT": 24, "SEED": 123456789},
        subject="post.1/shot.1",
    )

    job = wait_for(lambda: finished(job.pk), what="the job to finish")
    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert job.template == template and job.attempts == 1 and job.progress_percent == 100

    # Exactly one prompt, under the id we stored before submitting, with typed values.
    [submitted] = fake_comfyui.prompts_submitted()
    assert submitted.prompt_id == job.prompt_id
    assert submitted.prompt["3"]["inputs"]["seed"] == 123456789
    assert submitted.prompt["2"]["inputs"]["width"] == 32
    assert submitted.prompt["5"]["inputs"]["filename_prefix"] == f"mcn/job{job.pk}-1/portrait"
    # The face was uploaded (named by its content) and the name ComfyUI returned went into LoadImage.
    face_sha = hashlib.sha256((Path(settings.MEDIA_ROOT) / face).read_bytes()).hexdigest()
    assert submitted.prompt["1"]["inputs"]["image"] == f"mcn/{face_sha}.png"

    [output] = job.outputs.all()
    stored = Path(settings.MEDIA_ROOT) / output.file.name
    assert stored.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.size == stored.stat().st_size
    assert output.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[0] == "queued" and "started" in kinds and "submitted" in kinds and kinds[-1] == "succeeded"


def test_the_worker_heartbeats_its_servers_vram(fake_comfyui, start_worker):
    fake_comfyui.set_device(
        name="cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", vram_total=80 * 2**30, vram_free=60 * 2**30
    )
    start_worker(fake_comfyui.url, name="gpu-h100")
    worker = wait_for(
        lambda: GpuWorker.objects.filter(name="gpu-h100", server_reachable=True).first(), what="the first heartbeat"
    )
    assert worker.device_name.startswith("cuda:0 NVIDIA H100")
    assert worker.vram_total == 80 * 2**30 and worker.vram_free == 60 * 2**30


def test_a_worker_unloads_models_only_when_the_next_job_runs_another_workflow(fake_comfyui, start_worker):
    """FACTORY_FREE_AFTER_JOB=auto (the default): a backlog of one workflow keeps its models loaded."""
    services.template_import(name="plain", workflow=TINY_WORKFLOW)
    services.template_import(name="inverted", workflow=INVERTED)
    order = ["plain", "plain", "plain", "inverted", "plain"]
    ids = [
        services.job_enqueue(template=name, params={"WIDTH": 32}, subject=f"post.1/shot.{n}").pk
        for n, name in enumerate(order)
    ]
    # In queue order (FIFO): the workflow-aware dispatch would group the plain jobs (tests/factory/test_affinity.py).
    start_worker(fake_comfyui.url, env={"FACTORY_FREE_AFTER_JOB": "auto", "FACTORY_AFFINITY_MAX_WAIT_SECONDS": "0"})

    wait_for(lambda: all(finished(pk) for pk in ids), what="every job to finish")
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    # Before the first job (what the server held was unknown), then at each change of workflow.
    posts = [(r.path, r.json) for r in fake_comfyui.requests("POST") if r.path in {"/prompt", "/free"}]
    kinds = ["free" if path == "/free" else "prompt" for path, _ in posts]
    assert kinds == ["free", "prompt", "prompt", "prompt", "free", "prompt", "free", "prompt"]
    assert {json.dumps(body) for path, body in posts if path == "/free"} == {
        json.dumps({"unload_models": True, "free_memory": False})
    }
