"""Provenance: how each output was made, recorded on the job by the runner that made it.

ComfyUI jobs run in-process against the fake ComfyUI (its /system_stats says 0.3.64), voices against the
fake CosyVoice; the opt-in test asks a real ComfyUI (MCN_REAL_COMFYUI_URL) for its version.
"""

import copy
import hashlib
import json
import os
import wave
from pathlib import Path

import pytest

from factory import provenance, services
from factory.comfyui import ComfyUIClient
from factory.jobs import run_job
from factory.models import Job, JobKind, JobStatus
from tests.factories import png_bytes
from tests.fakes.comfyui import COMFYUI_VERSION

pytestmark = pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does

CHECKPOINT = "sd_xl_base_1.0.safetensors"
# A txt2img graph the fake runs, with a loader node, a face uploaded by content and a seed placeholder.
TXT2IMG = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{PROMPT}}", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 32, "batch_size": 1}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": "{{SEED}}",
            "steps": 2,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "prov"}},
    "8": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}},
}
MANIFEST = {"models": [{"file": CHECKPOINT, "folder": "checkpoints", "bytes": 6_938_078_334}]}


def run_comfyui(settings, fake, django_capture_on_commit_callbacks, *, params: dict, workflow=TXT2IMG) -> Job:
    settings.COMFYUI_URL = fake.url
    template = services.template_import(
        name="prov-txt2img", workflow=copy.deepcopy(workflow), manifest=MANIFEST, result_node="7"
    )
    with django_capture_on_commit_callbacks(execute=False):  # no doorbell: the test runs the job itself
        job = services.job_enqueue(template=template, params=params, subject="post.1/shot.1/picture")
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    return job


@pytest.fixture
def face(settings) -> str:
    path = Path(settings.MEDIA_ROOT) / "artists" / "face.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(64, 64))
    return "artists/face.png"


def test_a_comfyui_job_records_its_template_params_seed_models_and_the_servers_comfyui_version(
    settings, fake_comfyui, django_capture_on_commit_callbacks, face
):
    job = run_comfyui(
        settings,
        fake_comfyui,
        django_capture_on_commit_callbacks,
        params={"PROMPT": "a fox", "SEED": 987654321, "FACE_IMAGE": face},
    )

    record = job.provenance
    template = job.template
    content = {"workflow": template.workflow, "placeholders": template.placeholders, "manifest": template.manifest}
    expected_hash = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert record["template"] == {"name": "prov-txt2img", "version": 1, "sha256": expected_hash}
    # The values sent, typed; the face as the content-named file the server received.
    face_sha = hashlib.sha256((Path(settings.MEDIA_ROOT) / face).read_bytes()).hexdigest()
    assert record["params"] == {"PROMPT": "a fox", "SEED": 987654321, "FACE_IMAGE": f"mcn/{face_sha}.png"}
    assert record["seed"] == 987654321
    [submitted] = fake_comfyui.prompts_submitted()
    assert submitted.prompt["5"]["inputs"]["seed"] == record["seed"]
    assert (record["prompt_id"], record["attempt"]) == (job.prompt_id, 1)
    # The loader node's model file, with its folder from the manifest; LoadImage's face is no model.
    assert record["models"] == [
        {
            "node": "1",
            "class_type": "CheckpointLoaderSimple",
            "input": "ckpt_name",
            "file": CHECKPOINT,
            "folder": "checkpoints",
        }
    ]
    assert record["comfyui"]["version"] == COMFYUI_VERSION == "0.3.64"
    assert record["comfyui"]["device"]  # what /system_stats names (the fake: cpu)
    assert record["format"] == provenance.FORMAT


def test_the_template_hash_follows_the_content_not_the_row_or_the_key_order(
    settings, fake_comfyui, django_capture_on_commit_callbacks
):
    first = services.template_import(name="hash-a", workflow=copy.deepcopy(TXT2IMG), manifest=MANIFEST, result_node="7")
    reordered = dict(reversed(list(copy.deepcopy(TXT2IMG).items())))
    second = services.template_import(name="hash-b", workflow=reordered, manifest=MANIFEST, result_node="7")
    changed = copy.deepcopy(TXT2IMG)
    changed["5"]["inputs"]["steps"] = 30
    third = services.template_import(name="hash-c", workflow=changed, manifest=MANIFEST, result_node="7")

    assert provenance.template_hash(first) == provenance.template_hash(second)
    assert provenance.template_hash(first) != provenance.template_hash(third)


def test_the_comfyui_version_is_asked_once_per_server_while_cached(
    settings, fake_comfyui, django_capture_on_commit_callbacks, face
):
    provenance.forget_server(fake_comfyui.url)
    params = {"PROMPT": "a fox", "SEED": 1, "FACE_IMAGE": face}
    first = run_comfyui(settings, fake_comfyui, django_capture_on_commit_callbacks, params=params)
    with django_capture_on_commit_callbacks(execute=False):
        again = services.job_enqueue(template=first.template, params={**params, "SEED": 2}, subject="post.1/shot.2")
    run_job(again.pk)
    again.refresh_from_db()

    assert again.provenance["comfyui"]["version"] == first.provenance["comfyui"]["version"] == COMFYUI_VERSION
    assert again.provenance["seed"] == 2
    assert len(fake_comfyui.requests("GET", "/system_stats")) == 1


def test_loader_nodes_of_the_shipped_and_old_stack_workflows_name_their_model_files():
    root = Path(__file__).resolve().parents[2]
    infinitetalk = json.loads((root / "factory" / "workflows" / "infinitetalk-avatar.json").read_text())
    manifest = json.loads((root / "factory" / "workflows" / "infinitetalk-avatar.manifest.json").read_text())
    found = {(m["class_type"], m["input"]): m["file"] for m in provenance.model_files(infinitetalk, manifest)}
    assert found == {
        ("UNETLoader", "unet_name"): "Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors",
        ("LoraLoaderModelOnly", "lora_name"): "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors",
        ("CLIPLoader", "clip_name"): "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        ("VAELoader", "vae_name"): "wan_2.1_vae.safetensors",
        ("CLIPVisionLoader", "clip_name"): "clip_vision_h.safetensors",
        ("ModelPatchLoader", "name"): "wan2.1_infiniteTalk_single_fp16.safetensors",
        ("AudioEncoderLoader", "audio_encoder_name"): "wav2vec2-chinese-base_fp16.safetensors",
    }
    # Every model file the manifest lists is named by a loader node, each with the manifest's folder.
    assert {m["file"] for m in manifest["models"]} == set(found.values())
    assert all(m.get("folder") for m in provenance.model_files(infinitetalk, manifest))

    longcat = json.loads((root / "tests" / "factory" / "data" / "old_stack" / "longcat_avatar.json").read_text())
    assert [(m["class_type"], m["file"]) for m in provenance.model_files(longcat)] == [
        ("WanVideoModelLoader", "LongCat/LongCat-Avatar_fp8.safetensors"),
        ("WanVideoVAELoader", "Wan2_1_VAE_bf16.safetensors"),
        ("WanVideoLoraSelect", "WanVideo/LongCat_distill_lora_alpha64_bf16.safetensors"),
    ]
    wan = json.loads((root / "tests" / "factory" / "data" / "old_stack" / "wan_i2v.json").read_text())
    assert {m["file"] for m in provenance.model_files(wan)} == {
        "wan2.2_ti2v_5B_fp16.safetensors",
        "Wan2_1_VAE_bf16.safetensors",
        "umt5_xxl_fp8_e4m3fn.safetensors",
    }


def test_the_seed_is_the_seed_value_else_the_first_samplers_noise_seed():
    workflow = {
        "11": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 5}},
        "12": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 0}},
    }
    assert provenance.seed_of({"SEED": 9}, workflow) == 9
    assert provenance.seed_of({}, workflow) == 5
    assert provenance.seed_of({}, {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}}) is None


def test_a_fenced_worker_records_nothing(settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_enqueue_task(kind=JobKind.TTS, params={"text": "hi", "spk_id": "中文女"})
    held = services.job_start(job_id=job.pk, worker_name="cpu-1", server_url="")
    provenance.job_provenance_record(job_id=job.pk, claim=held.claim, tts={"model": "a"})
    Job.objects.filter(pk=job.pk).update(claim="00000000-0000-0000-0000-000000000000")  # taken over meanwhile

    with pytest.raises(services.ClaimLost):
        provenance.job_provenance_record(job_id=job.pk, claim=held.claim, tts={"model": "b"})
    job.refresh_from_db()
    assert job.provenance["tts"] == {"model": "a"}


# --- voices ---------------------------------------------------------------------------------------


def queue_tts(django_capture_on_commit_callbacks, **params) -> Job:
    with django_capture_on_commit_callbacks(execute=False):
        return services.job_enqueue_task(
            kind=JobKind.TTS,
            params={"text": "大家好", "spk_id": "", "prompt_text": "", "prompt_wav": "", **params},
            subject="post.1/shot.1/voice",
        )


def test_a_tts_job_records_the_model_and_the_built_in_speaker(
    settings, fake_cosyvoice, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    settings.COSYVOICE_MODEL = "CosyVoice-300M-SFT"
    job = queue_tts(django_capture_on_commit_callbacks, spk_id="中文女")
    run_job(job.pk)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.provenance["tts"] == {
        "engine": "cosyvoice",
        "model": "CosyVoice-300M-SFT",
        "mode": "sft",
        "speaker": "中文女",
        "sample_rate": 24000,
    }
    assert job.provenance["params"] == {"text": "大家好", "spk_id": "中文女"}
    # What the server was sent is what the record says.
    [request] = fake_cosyvoice.requests()
    assert request.fields["spk_id"] == job.provenance["tts"]["speaker"]


def test_a_cloned_voice_records_the_samples_sha256_not_its_path(
    settings, fake_cosyvoice, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    sample = Path(settings.MEDIA_ROOT) / "artists" / "voices" / "luna.wav"
    sample.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(sample), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x01\x00" * 800)
    job = queue_tts(django_capture_on_commit_callbacks, prompt_text="你好", prompt_wav="artists/voices/luna.wav")
    run_job(job.pk)
    job.refresh_from_db()

    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    assert job.provenance["tts"]["mode"] == "zero_shot"
    assert job.provenance["tts"]["sample_sha256"] == digest
    assert job.provenance["params"] == {"text": "大家好", "prompt_text": "你好", "prompt_wav_sha256": digest}
    assert provenance.summary(job)["tts"]["voice"] == f"sample {digest}"


# --- opt-in: a real ComfyUI ------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("MCN_REAL_COMFYUI_URL"), reason="set MCN_REAL_COMFYUI_URL to a real ComfyUI")
def test_the_comfyui_version_is_read_from_a_real_server():
    url = os.environ["MCN_REAL_COMFYUI_URL"].rstrip("/")
    provenance.forget_server(url)
    facts = provenance.server_facts(ComfyUIClient(url, client_id="mcn-provenance-real"))
    major, minor, *_ = facts["version"].split(".")
    assert major.isdigit() and minor.isdigit(), facts
