"""The factory's inputs and outputs (issue 16): media uploaded to each ComfyUI once per content, video results
collected from the keys the real server uses, a template's declared result node, near-miss placeholders."""

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from factory import services
from factory.comfyui import ComfyUIClient, Deadlines, output_files
from factory.execution import upload_input
from factory.models import JobStatus, WorkflowTemplate
from factory.templating import near_miss_placeholders, template_problems
from tests.factories import png_bytes, wav_bytes
from tests.factory.conftest import wait_for
from tests.factory.test_commands import command
from tests.fakes.comfyui import VHS_NODES, FakeComfyUI

pytestmark = pytest.mark.timeout(60)

FAST = Deadlines(total_seconds=30, stall_seconds=10, poll_seconds=0.2)

# The model-free avatar preview: face + voice -> frames -> CreateVideo(audio) -> SaveVideo.
AVATAR = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}},
    "2": {"class_type": "LoadAudio", "inputs": {"audio": "{{VOICE_AUDIO}}"}},
    "3": {
        "class_type": "ImageScale",
        "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 64, "height": 64, "crop": "disabled"},
    },
    "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": "{{FRAMES}}"}},
    "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "fps": 25, "audio": ["2", 0]}},
    "12": {
        "class_type": "SaveVideo",
        "inputs": {"video": ["5", 0], "filename_prefix": "avatar", "format": "auto", "codec": "auto"},
    },
}
# The same with a still saved beside the clip: a PNG from node "9" sorts before the video from node "12".
AVATAR_WITH_STILL = {
    **AVATAR,
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "still"}},
}


@pytest.fixture
def client(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url, client_id="mcn-io", connect_timeout=1, read_timeout=5)
    yield client
    client.close()


def run(client: ComfyUIClient, prompt: dict) -> dict:
    prompt_id = str(uuid.uuid4())
    socket = client.open_socket()
    client.submit(prompt, prompt_id=prompt_id)
    return client.wait(prompt_id, socket=socket, deadlines=FAST)


def filled(workflow: dict, face: str, voice: str, frames: int = 25) -> dict:
    text = json.dumps(workflow).replace("{{FACE_IMAGE}}", face).replace("{{VOICE_AUDIO}}", voice)
    return json.loads(text.replace('"{{FRAMES}}"', str(frames)))


# --- uploads --------------------------------------------------------------------------------------


def test_an_input_is_uploaded_once_per_server_by_its_content_and_again_when_the_server_lost_it(
    fake_comfyui, client, tmp_path
):
    face = tmp_path / "face.PNG"
    face.write_bytes(png_bytes(16, 16))
    same_face = tmp_path / "copy.png"
    same_face.write_bytes(face.read_bytes())
    digest = hashlib.sha256(face.read_bytes()).hexdigest()

    assert upload_input(client, face) == f"mcn/{digest}.png"
    assert upload_input(client, same_face) == f"mcn/{digest}.png"
    assert [(u.name, u.subfolder, u.sha256) for u in fake_comfyui.uploads()] == [(f"{digest}.png", "mcn", digest)]

    fake_comfyui.restart(lose_inputs=True)  # a fresh GPU machine behind the same URL
    assert upload_input(client, face) == f"mcn/{digest}.png"
    assert len(fake_comfyui.uploads()) == 2
    assert (fake_comfyui.input_dir / "mcn" / f"{digest}.png").read_bytes() == face.read_bytes()


def test_a_voice_goes_through_the_upload_endpoint_and_load_audio_reads_it(fake_comfyui, client, tmp_path):
    face, voice = tmp_path / "face.png", tmp_path / "voice.wav"
    face.write_bytes(png_bytes(16, 16))
    voice.write_bytes(wav_bytes(1.0))

    entry = run(client, filled(AVATAR, upload_input(client, face), upload_input(client, voice)))

    assert [u.name.rpartition(".")[2] for u in fake_comfyui.uploads()] == ["png", "wav"]
    [clip] = output_files(entry)
    assert (clip.node_id, clip.kind, clip.filename) == ("12", "video", "avatar_00001_.mp4")


def test_a_partly_uploaded_file_of_another_size_is_uploaded_again(fake_comfyui, client, tmp_path):
    voice = tmp_path / "voice.wav"
    voice.write_bytes(wav_bytes(0.5))
    name = f"{hashlib.sha256(voice.read_bytes()).hexdigest()}.wav"
    fake_comfyui.put_input_file(name, voice.read_bytes()[:100], subfolder="mcn")

    upload_input(client, voice)

    assert (fake_comfyui.input_dir / "mcn" / name).read_bytes() == voice.read_bytes()


# --- outputs --------------------------------------------------------------------------------------


def test_video_outputs_are_collected_with_their_kind_and_the_declared_result_node_wins(fake_comfyui, client, tmp_path):
    face, voice = tmp_path / "face.png", tmp_path / "voice.wav"
    face.write_bytes(png_bytes(16, 16))
    voice.write_bytes(wav_bytes(1.0))
    prompt = filled(AVATAR_WITH_STILL, upload_input(client, face), upload_input(client, voice))
    prompt["13"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {"images": ["4", 0], "filename_prefix": "loop", "fps": 6.0, "lossless": False, "quality": 80,
                   "method": "default"},
    }  # fmt: skip

    entry = run(client, prompt)

    every = {(o.node_id, o.filename, o.kind) for o in output_files(entry)}
    assert every == {
        ("9", "still_00001_.png", "image"),
        ("12", "avatar_00001_.mp4", "video"),
        ("13", "loop_00001_.webp", "video"),  # an animated WebP is a clip, not a still
    }
    [result] = output_files(entry, result_node="12")
    assert (result.filename, result.kind) == ("avatar_00001_.mp4", "video")


def test_vhs_video_combine_gives_its_audio_clip_never_the_first_frame_png(tmp_path):
    with FakeComfyUI(extra_nodes=VHS_NODES) as fake:
        client = ComfyUIClient(fake.url, client_id="mcn-io", connect_timeout=1, read_timeout=5)
        face, voice = tmp_path / "face.png", tmp_path / "voice.wav"
        face.write_bytes(png_bytes(16, 16))
        voice.write_bytes(wav_bytes(1.0))
        prompt = filled(AVATAR, upload_input(client, face), upload_input(client, voice))
        del prompt["12"]
        prompt["7"] = {
            "class_type": "VHS_VideoCombine",
            "inputs": {"images": ["4", 0], "audio": ["2", 0], "frame_rate": 25, "loop_count": 0,
                       "filename_prefix": "LongCat", "format": "video/h264-mp4", "pingpong": False,
                       "save_output": True},
        }  # fmt: skip
        entry = run(client, prompt)
        [clip] = output_files(entry, result_node="7")
        data = b"".join(client.download(clip))
        client.close()

    assert (clip.filename, clip.kind) == ("LongCat_00001-audio.mp4", "video")
    assert data[4:8] == b"ftyp"  # an MP4, not the PNG


def test_a_silent_twin_listed_beside_its_audio_clip_is_left_out():
    entry = {
        "outputs": {
            "7": {
                "gifs": [
                    {"filename": "c_00001.mp4", "subfolder": "", "type": "output", "workflow": "c_00001.png"},
                    {"filename": "c_00001-audio.mp4", "subfolder": "", "type": "output", "workflow": "c_00001.png"},
                ]
            }
        }
    }
    assert [o.filename for o in output_files(entry)] == ["c_00001-audio.mp4"]


# --- templates: the result node, near-miss placeholders --------------------------------------------


@pytest.mark.django_db
def test_an_import_with_several_output_nodes_and_no_result_node_is_refused_naming_them(tmp_path):
    path = tmp_path / "avatar.json"
    path.write_text(json.dumps(AVATAR_WITH_STILL))

    with pytest.raises(Exception) as refused:
        command("import_workflow", str(path), "--name", "avatar")
    assert "several nodes: 9 (SaveImage), 12 (SaveVideo)" in str(refused.value)
    assert "--result-node" in str(refused.value)

    out = command("import_workflow", str(path), "--name", "avatar", "--result-node", "12")
    assert "result: node 12 (SaveVideo)" in out
    assert WorkflowTemplate.objects.get(name="avatar").result_node == "12"


@pytest.mark.django_db
def test_the_manifest_beside_the_workflow_names_the_result_node(tmp_path):
    path = tmp_path / "avatar.json"
    path.write_text(json.dumps(AVATAR_WITH_STILL))
    (tmp_path / "avatar.manifest.json").write_text(json.dumps({"name": "avatar", "result_node": "12"}))

    command("import_workflow", str(path), "--name", "avatar")

    assert WorkflowTemplate.objects.get(name="avatar").result_node == "12"


@pytest.mark.django_db
def test_a_single_output_node_is_the_result_and_a_result_node_that_saves_nothing_is_refused():
    assert services.template_import(name="avatar", workflow=AVATAR).result_node == "12"
    with pytest.raises(ValidationError, match=r"Result node 5 \(CreateVideo\) saves no file"):
        services.template_import(name="avatar", workflow=AVATAR, result_node="5")
    with pytest.raises(ValidationError, match="Result node 99: the workflow has no such node"):
        services.template_import(name="avatar", workflow=AVATAR, result_node="99")


@pytest.mark.parametrize(
    "value, shown",
    [
        ("{{ WIDTH }}", '"{{ WIDTH }}" in node 1 (width): write {{WIDTH}}'),
        ("{{height}}", '"{{height}}" in node 1 (width): write {{HEIGHT}}'),
        ("{WIDTH}", '"{WIDTH}" in node 1 (width): write {{WIDTH}}'),
        ("{{WIDTH}", '"{{WIDTH}" in node 1 (width): write {{WIDTH}}'),
    ],
)
def test_near_miss_placeholders_are_named_with_the_fix(value, shown):
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {"width": value}}}
    assert near_miss_placeholders(workflow) == [shown]
    assert any(shown in problem for problem in template_problems(workflow, {}))


def test_prompt_text_with_braces_is_not_a_near_miss():
    workflow = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a {red|blue} hat, {name}, {{SEED}}"}}}
    assert near_miss_placeholders(workflow) == []


@pytest.mark.django_db
def test_import_workflow_refuses_near_miss_placeholders_instead_of_reporting_none(tmp_path):
    path = tmp_path / "flat.json"
    path.write_text(
        json.dumps(
            {
                "1": {"class_type": "EmptyImage", "inputs": {"width": "{{ WIDTH }}", "height": "{{height}}"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "flat"}},
            }
        )
    )
    with pytest.raises(Exception) as refused:
        command("import_workflow", str(path), "--name", "flat")
    assert '"{{ WIDTH }}" in node 1 (width): write {{WIDTH}}' in str(refused.value)
    assert '"{{height}}" in node 1 (height): write {{HEIGHT}}' in str(refused.value)
    assert not WorkflowTemplate.objects.exists()


# --- through a real worker ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_jobs_with_the_same_face_upload_it_once_and_the_clip_is_a_video_output(
    fake_comfyui, start_worker, settings
):
    media = Path(settings.MEDIA_ROOT)
    (media / "artists").mkdir(parents=True, exist_ok=True)
    (media / "artists" / "face.png").write_bytes(png_bytes(32, 32))
    (media / "voices").mkdir(parents=True, exist_ok=True)
    for n in (1, 2):
        (media / "voices" / f"v{n}.wav").write_bytes(wav_bytes(0.4 * n))
    services.template_import(name="avatar", workflow=AVATAR_WITH_STILL, result_node="12")
    start_worker(fake_comfyui.url)

    jobs = [
        services.job_enqueue(
            template="avatar",
            params={"FACE_IMAGE": "artists/face.png", "VOICE_AUDIO": f"voices/v{n}.wav", "FRAMES": 10 * n},
            subject=f"post.1/shot.{n}",
        )
        for n in (1, 2)
    ]
    for job in jobs:
        job = wait_for(lambda job=job: job.__class__.objects.filter(pk=job.pk, status__in=["succeeded", "failed"])
                       .first(), what="the job to finish")  # fmt: skip
        assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
        [output] = job.outputs.all()
        assert (output.node_id, output.kind, output.content_type) == ("12", "video", "video/mp4")
        assert (media / output.file.name).read_bytes()[4:8] == b"ftyp"

    face_sha = hashlib.sha256((media / "artists" / "face.png").read_bytes()).hexdigest()
    uploaded = [u.sha256 for u in fake_comfyui.uploads()]
    assert uploaded.count(face_sha) == 1 and len(uploaded) == 3  # one face, two voices


# --- against a real ComfyUI (opt-in) --------------------------------------------------------------

REAL_COMFYUI_URL = os.environ.get("MCN_REAL_COMFYUI_URL", "")


@pytest.mark.skipif(not REAL_COMFYUI_URL, reason="set MCN_REAL_COMFYUI_URL to a ComfyUI (e.g. on a CPU) to run this")
@pytest.mark.timeout(300)
def test_the_model_free_avatar_preview_runs_on_a_real_comfyui_and_its_mp4_comes_back(tmp_path):
    """LoadImage + LoadAudio -> RepeatImageBatch -> CreateVideo(audio) -> SaveVideo, through our client."""
    client = ComfyUIClient(REAL_COMFYUI_URL, client_id=f"mcn-io-{uuid.uuid4().hex[:8]}", read_timeout=30)
    face, voice = tmp_path / "face.png", tmp_path / "voice.wav"
    face.write_bytes(png_bytes(48, 48, colour="#c0392b"))
    voice.write_bytes(wav_bytes(1.0))
    prompt = filled(AVATAR, upload_input(client, face), upload_input(client, voice), frames=25)
    prompt["12"]["inputs"]["filename_prefix"] = f"mcn/io-check-{uuid.uuid4().hex[:8]}"
    # Once more: the server already has both, by name and size, so nothing is sent again.
    assert upload_input(client, face) == prompt["1"]["inputs"]["image"]

    prompt_id = str(uuid.uuid4())
    socket = client.open_socket()
    client.submit(prompt, prompt_id=prompt_id)
    entry = client.wait(prompt_id, socket=socket, deadlines=Deadlines(total_seconds=240, stall_seconds=120))
    [clip] = output_files(entry, result_node="12")
    path = tmp_path / clip.filename
    path.write_bytes(b"".join(client.download(clip)))
    client.close()

    assert entry["outputs"]["12"]["animated"] == [True] and clip.kind == "video"
    if shutil.which("ffprobe"):
        probe = json.loads(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
        assert float(probe["format"]["duration"]) == pytest.approx(1.0, abs=0.1)  # 25 frames at 25 fps
