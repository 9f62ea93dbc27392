"""The operators' commands: import_workflow, check_factory, submit_job (with --wait through a real worker),
reconcile_jobs."""

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from factory import services
from factory.models import Job, JobStatus, WorkflowTemplate
from tests.factories import make_job, make_media_file, make_template, png_bytes
from tests.factory.test_preflight import WAN_MANIFEST

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

DATA = Path(__file__).parent / "data"
PORTRAIT_API = DATA / "portrait_api.json"
PORTRAIT_UI = DATA / "portrait_ui.json"

FLAT = {  # model-free: runs on the fake as is
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 24, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "flat"}},
}


def command(name: str, *args) -> str:
    """Run a management command; its stdout."""
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- import_workflow ------------------------------------------------------------------------------


def test_import_workflow_prints_the_placeholders_with_their_types():
    out = command("import_workflow", str(PORTRAIT_API), "--name", "portrait", "--description", "Example B")

    assert out.strip() == (
        "Imported portrait v1: 5 nodes; placeholders: HEIGHT (int), INPUT_IMAGE (image), SEED (int), WIDTH (int); "
        "result: node 5 (SaveImage)."
    )
    template = WorkflowTemplate.objects.get(name="portrait")
    assert template.description == "Example B" and template.workflow["2"]["inputs"]["width"] == "{{WIDTH}}"


def test_import_workflow_again_makes_a_new_version_with_explicit_placeholders():
    command("import_workflow", str(PORTRAIT_API), "--name", "portrait")
    out = command(
        "import_workflow", str(PORTRAIT_API), "--name", "portrait", "--placeholders", '{"SEED": {"default": 7}}'
    )

    assert out.startswith("Imported portrait v2: 5 nodes;")
    second = WorkflowTemplate.objects.get(name="portrait", version=2)
    assert second.placeholders["SEED"] == {"type": "int", "default": 7}


def test_import_workflow_of_a_ui_export_explains_how_to_export_the_api_format():
    with pytest.raises(CommandError) as caught:
        command("import_workflow", str(PORTRAIT_UI), "--name", "portrait")

    assert "UI export" in str(caught.value) and "Workflow > Export (API)" in str(caught.value)
    assert not WorkflowTemplate.objects.exists()


def test_import_workflow_of_invalid_json_or_a_missing_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"1": {"class_type": "EmptyImage",', encoding="utf-8")

    with pytest.raises(CommandError, match=r"broken\.json is not valid JSON: "):
        command("import_workflow", str(broken), "--name", "portrait")
    with pytest.raises(CommandError, match=r"Cannot read .*nowhere\.json: No such file or directory\."):
        command("import_workflow", str(tmp_path / "nowhere.json"), "--name", "portrait")
    with pytest.raises(CommandError, match="--placeholders is not valid JSON"):
        command("import_workflow", str(PORTRAIT_API), "--name", "portrait", "--placeholders", "{SEED: int}")
    assert not WorkflowTemplate.objects.exists()


VIDEO = {  # Wan image-to-video's model half: a loader whose file the manifest names
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "{{UNET}}", "weight_dtype": "default"}},
    "2": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 24, "batch_size": 1, "color": 0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "flat"}},
}
VIDEO_MANIFEST = {
    "name": "wan-i2v",
    "description": "Wan 2.2 image-to-video",
    "step": "motion",
    "fps": 16,
    "time_budget_seconds": 900,
    "gpu_pool": "video",
    "defaults": {"UNET": "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "WIDTH": 32},
    "models": WAN_MANIFEST["models"],
}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_import_workflow_reads_the_manifest_beside_the_workflow(tmp_path):
    workflow = write_json(tmp_path / "wan_i2v.json", VIDEO)
    write_json(tmp_path / "wan_i2v.manifest.json", VIDEO_MANIFEST)

    out = command("import_workflow", str(workflow), "--name", "wan-i2v")

    template = WorkflowTemplate.objects.get(name="wan-i2v")
    assert "manifest: 1 model file(s)" in out
    assert "GPU pool video is not declared here" in out  # no video pool on this site: the default one runs it
    assert template.gpu_pool == ""
    assert template.description == "Wan 2.2 image-to-video"
    assert template.manifest["models"] == VIDEO_MANIFEST["models"]
    assert template.manifest["time_budget_seconds"] == 900 and template.manifest["fps"] == 16
    assert template.placeholders["UNET"] == {"type": "string", "default": VIDEO_MANIFEST["defaults"]["UNET"]}
    assert template.placeholders["WIDTH"] == {"type": "int", "default": 32}


def test_import_workflow_takes_a_manifest_named_on_the_command_line_and_refuses_a_bad_one(tmp_path):
    workflow = write_json(tmp_path / "video.json", VIDEO)
    good = write_json(tmp_path / "elsewhere.json", VIDEO_MANIFEST)
    command("import_workflow", str(workflow), "--name", "wan-i2v", "--manifest", str(good))
    assert WorkflowTemplate.objects.get(name="wan-i2v").manifest["models"] == VIDEO_MANIFEST["models"]

    bad = write_json(tmp_path / "bad.json", {**VIDEO_MANIFEST, "time_budget_seconds": -5, "models": [{"file": "x"}]})
    with pytest.raises(CommandError) as caught:
        command("import_workflow", str(workflow), "--name", "wan-i2v", "--manifest", str(bad))
    assert str(caught.value) == (
        "Manifest: time_budget_seconds must be a positive number of seconds, not -5. "
        "Manifest: model 1 needs at least a file name and a models folder."
    )
    with pytest.raises(CommandError, match=r"Cannot read .*nowhere\.json"):
        command("import_workflow", str(workflow), "--name", "wan-i2v", "--manifest", str(tmp_path / "nowhere.json"))
    assert WorkflowTemplate.objects.filter(name="wan-i2v").count() == 1  # nothing half-imported


# --- check_factory -------------------------------------------------------------------------------


def test_check_factory_says_which_model_file_to_put_where(fake_comfyui, tmp_path):
    write_json(tmp_path / "wan_i2v.manifest.json", VIDEO_MANIFEST)
    command("import_workflow", str(write_json(tmp_path / "wan_i2v.json", VIDEO)), "--name", "wan-i2v")
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("check_factory", "--comfyui-url", fake_comfyui.url, stdout=out)

    assert out.getvalue().splitlines()[1:] == [
        "✗ wan-i2v v1",
        "    Node 1 (UNETLoader): unet_name 'wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors' is not installed on "
        "the GPU server: put wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors (14.3 GB) in models/diffusion_models "
        "(licence Apache-2.0, from https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged).",
    ]


def test_check_factory_ticks_a_template_the_server_can_run(fake_comfyui):
    services.template_import(name="portrait", workflow=FLAT)

    out = command("check_factory", "--comfyui-url", fake_comfyui.url)

    header, tick = out.strip().splitlines()
    assert header.startswith(f"{fake_comfyui.url}: ComfyUI 0.3.64, cpu, ") and header.endswith(" node types.")
    assert tick == "✓ portrait v1"


def test_check_factory_names_a_missing_node_and_fails(fake_comfyui):
    services.template_import(name="flat", workflow=FLAT)
    services.template_import(
        name="upscale",
        workflow={**FLAT, "3": {"class_type": "UltimateSDUpscale", "inputs": {"image": ["1", 0]}}},
    )
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("check_factory", "--comfyui-url", fake_comfyui.url, stdout=out)

    assert str(caught.value) == f"1 template(s) cannot run on {fake_comfyui.url}."
    lines = out.getvalue().splitlines()
    assert "✓ flat v1" in lines
    at = lines.index("✗ upscale v1")
    assert lines[at + 1].strip() == "Node 3: node type UltimateSDUpscale is not installed on the GPU server."


def test_check_factory_of_one_template_skips_the_others(fake_comfyui):
    services.template_import(name="flat", workflow=FLAT)
    services.template_import(
        name="upscale", workflow={**FLAT, "3": {"class_type": "UltimateSDUpscale", "inputs": {"image": ["1", 0]}}}
    )

    out = command("check_factory", "--comfyui-url", fake_comfyui.url, "--template", "flat")

    assert "✓ flat v1" in out and "upscale" not in out


def test_check_factory_of_an_unknown_template_name_fails(fake_comfyui):
    services.template_import(name="flat", workflow=FLAT)

    with pytest.raises(CommandError, match="flta"):
        command("check_factory", "--comfyui-url", fake_comfyui.url, "--template", "flta")


def test_check_factory_against_a_stopped_server_says_unreachable(fake_comfyui):
    services.template_import(name="flat", workflow=FLAT)
    url = fake_comfyui.url
    fake_comfyui.stop()

    with pytest.raises(CommandError) as caught:
        command("check_factory", "--comfyui-url", url)

    assert str(caught.value).startswith(f"GPU server unreachable at {url} ")


# --- submit_job ---------------------------------------------------------------------------------


def test_submit_job_prints_the_job_id():
    template = services.template_import(name="flat", workflow=FLAT, placeholders={"WIDTH": {"default": 16}})

    out = command("submit_job", "flat", "--param", "WIDTH=40", "--lane", "vip", "--subject", "post.3/shot.1")

    job = Job.objects.get()
    assert out.strip() == str(job.pk)
    assert (job.template, job.params, job.lane, job.subject) == (template, {"WIDTH": "40"}, "vip", "post.3/shot.1")


@pytest.mark.parametrize("item", ["WIDTH", "=40"])
def test_submit_job_refuses_a_param_without_key_and_value(item):
    services.template_import(name="flat", workflow=FLAT)

    with pytest.raises(CommandError, match=r"use KEY=VALUE\."):
        command("submit_job", "flat", "--param", item)
    assert not Job.objects.exists()


def test_submit_job_reports_bad_parameters_and_unknown_templates():
    services.template_import(name="flat", workflow=FLAT)

    with pytest.raises(CommandError, match=re.escape("WIDTH must be a whole number, not 'wide'.")):
        command("submit_job", "flat", "--param", "WIDTH=wide")
    with pytest.raises(CommandError, match=re.escape("No active workflow template named “nope”.")):
        command("submit_job", "nope")
    assert not Job.objects.exists()


def test_submit_job_copies_a_local_file_into_media_for_an_image(settings, tmp_path):
    services.template_import(name="portrait", workflow=_portrait())
    local = tmp_path / "desk" / "me.png"
    local.parent.mkdir()
    local.write_bytes(png_bytes(20, 20))

    command("submit_job", "portrait", "--param", f"INPUT_IMAGE={local}", "--param", "SEED=1")

    job = Job.objects.get()
    name = job.params["INPUT_IMAGE"]
    assert name.startswith("factory/inputs/") and name.endswith("-me.png")
    assert (Path(settings.MEDIA_ROOT) / name).read_bytes() == local.read_bytes()


def test_submit_job_takes_a_file_already_in_media_as_is():
    services.template_import(name="portrait", workflow=_portrait())
    face = make_media_file("artists/face.png")

    command("submit_job", "portrait", "--param", f"INPUT_IMAGE={face}", "--param", "SEED=1")

    assert Job.objects.get().params["INPUT_IMAGE"] == "artists/face.png"


def test_submit_job_of_a_missing_local_file_is_a_clear_error(tmp_path):
    services.template_import(name="portrait", workflow=_portrait())

    with pytest.raises(CommandError, match=r"nothere\.png: no such file\."):
        command("submit_job", "portrait", "--param", f"INPUT_IMAGE={tmp_path / 'nothere.png'}", "--param", "SEED=1")
    assert not Job.objects.exists()


def _portrait() -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "{{INPUT_IMAGE}}"}},
        "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": "{{SEED}}", "strength": 0.1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "portrait"}},
    }


@pytest.mark.django_db(transaction=True)
def test_submit_job_wait_follows_a_job_through_a_real_worker(fake_comfyui, start_worker, settings):
    fake_comfyui.steps_per_node = 3
    fake_comfyui.step_seconds = 0.25  # long enough for the follower (every 0.5 s) to see it running
    services.template_import(name="flat", workflow=FLAT)
    worker = start_worker(fake_comfyui.url)

    out = command("submit_job", "flat", "--param", "WIDTH=32", "--wait", "--timeout", "40")

    lines = out.strip().splitlines()
    job = Job.objects.get()
    assert lines[0] == str(job.pk), worker.output()
    assert job.status == JobStatus.SUCCEEDED, (job.error_message, worker.output())
    running = [line for line in lines if line.startswith("Running ")]
    assert running and all(" node " in line and "%" in line for line in running), lines
    assert lines[-2] == "Succeeded"
    [output] = job.outputs.all()
    assert lines[-1] == str(Path(settings.MEDIA_ROOT) / output.file.name)
    assert Path(lines[-1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db(transaction=True)
def test_submit_job_wait_of_a_failing_job_exits_with_its_error(fake_comfyui, start_worker):
    fake_comfyui.execution_error_at_node("2", "disk quota exceeded", exception_type="OSError")
    services.template_import(name="flat", workflow=FLAT)
    worker = start_worker(fake_comfyui.url)
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("submit_job", "flat", "--param", "WIDTH=32", "--wait", "--timeout", "40", stdout=out)

    job = Job.objects.get()
    assert job.status == JobStatus.FAILED, worker.output()
    assert str(caught.value) == f"Job {job.pk} failed: Failed on node 2 (SaveImage): disk quota exceeded"
    assert out.getvalue().strip().splitlines()[-1] == "Failed"
    assert len(fake_comfyui.prompts_submitted()) == 1  # an execution error is not retried


# --- reconcile_jobs -------------------------------------------------------------------------------


# reconcile_jobs calls close_old_connections(), which closes the connection a non-transactional test runs in.
@pytest.mark.django_db(transaction=True)
def test_reconcile_jobs_once_reports_the_jobs_it_rang_again(rq_clean):
    long_ago = timezone.now() - timedelta(minutes=10)
    lost = make_job(queued_at=long_ago)  # its doorbell vanished (Redis restarted without persistence)
    orphan = make_job(status=JobStatus.RUNNING, queued_at=long_ago, heartbeat_at=long_ago)  # its worker died
    make_job()  # queued just now: its worker will come
    make_job(status=JobStatus.RUNNING, queued_at=long_ago, heartbeat_at=timezone.now())  # alive
    make_job(status=JobStatus.FAILED, queued_at=long_ago, finished_at=long_ago)

    out = command("reconcile_jobs", "--once")

    summary, _, ids = out.strip().removesuffix(".").partition(": ")
    assert summary == "Reconciled 2 job(s)" and set(ids.split(", ")) == {str(lost.pk), str(orphan.pk)}
    assert {job.args for job in django_rq.get_queue("gpu").get_jobs()} == {(lost.pk,), (orphan.pk,)}
    assert lost.events.get().kind == "reconciled"

    # The queued job's new doorbell is alive now: only the orphan (still silent) is rung again.
    assert command("reconcile_jobs", "--once").strip() == f"Reconciled 1 job(s): {orphan.pk}."


@pytest.mark.django_db(transaction=True)
def test_reconcile_jobs_once_with_nothing_to_do_says_so():
    make_template()

    assert command("reconcile_jobs", "--once").strip() == "Reconciled 0 job(s)."
