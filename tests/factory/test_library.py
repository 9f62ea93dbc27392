"""The workflow library (factory/workflows/): each template loads, fits ComfyUI's node classes, installs once."""

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from factory.library import LIBRARY_DIR, library_entries, library_install
from factory.models import WorkflowTemplate
from factory.templating import find_placeholders, inject

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
# /object_info of a real ComfyUI 0.3.64 (CPU), cut down to the classes the library uses.
OBJECT_INFO = json.loads((DATA / "object_info_0.3.64_library.json").read_text())
LATER_THAN_0_3_64 = {"WanInfiniteTalkToVideo"}  # core, but in later versions (docs/workflows.md)
ENTRIES = {entry.name: entry for entry in library_entries()}
PREVIEWS = ["portrait-preview", "avatar-preview", "motion-preview"]


def test_the_library_ships_a_real_and_a_preview_template_for_each_step():
    steps = {name: entry.manifest["step"] for name, entry in ENTRIES.items()}

    assert steps == {
        "portrait": "picture",
        "infinitetalk-avatar": "avatar",
        "wan22-i2v": "motion",
        "portrait-preview": "picture",
        "avatar-preview": "avatar",
        "motion-preview": "motion",
    }


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_node_and_input_is_one_comfyui_knows(name):
    problems = []
    for node_id, node in ENTRIES[name].workflow.items():
        info = OBJECT_INFO.get(node["class_type"])
        if info is None:
            if node["class_type"] not in LATER_THAN_0_3_64:
                problems.append(f"{node_id}: {node['class_type']} is not a core node")
            continue
        required, optional = info["input"].get("required", {}), info["input"].get("optional", {})
        problems += [f"{node_id}: unknown input {key}" for key in node["inputs"] if key not in {**required, **optional}]
        problems += [f"{node_id}: missing {key}" for key in required if key not in node["inputs"]]
    assert problems == []


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_result_node_saves_and_a_clip_is_made_at_the_manifest_rate(name):
    entry = ENTRIES[name]
    result = entry.workflow[entry.manifest["result_node"]]
    rates = {node["inputs"]["fps"] for node in entry.workflow.values() if node["class_type"] == "CreateVideo"}

    if entry.manifest["step"] == "picture":
        assert (result["class_type"], rates) == ("SaveImage", set())
    else:
        assert (result["class_type"], rates) == ("SaveVideo", {float(entry.manifest["fps"])})
        assert "FRAMES" in find_placeholders(entry.workflow)


def test_the_real_templates_list_the_model_files_they_load():
    for name in ["portrait", "infinitetalk-avatar", "wan22-i2v"]:
        entry = ENTRIES[name]
        loaded = {
            value
            for node in entry.workflow.values()
            for key, value in node["inputs"].items()
            if key in {"unet_name", "clip_name", "vae_name", "lora_name", "name", "audio_encoder_name"}
            and "{{" not in str(value)
        }
        assert loaded == {model["file"] for model in entry.manifest["models"]}, name
    assert ENTRIES["infinitetalk-avatar"].manifest["fps"] == 25
    assert ENTRIES["wan22-i2v"].manifest["fps"] == 16
    assert round(ENTRIES["wan22-i2v"].model_bytes / 1e9, 1) == 35.6


@pytest.mark.parametrize("name", PREVIEWS)
def test_the_previews_need_no_model_and_only_core_nodes_of_0_3_64(name):
    entry = ENTRIES[name]

    assert entry.manifest["models"] == []
    assert {node["class_type"] for node in entry.workflow.values()} <= set(OBJECT_INFO)
    if "FRAMES" in entry.placeholders:  # RepeatImageBatch's amount is a whole number
        assert entry.placeholders["FRAMES"] == {"type": "int"}


def test_installing_twice_imports_once_and_a_changed_file_makes_a_new_version(tmp_path):
    shutil.copytree(LIBRARY_DIR, tmp_path, dirs_exist_ok=True)

    first = library_install(directory=tmp_path)
    again = library_install(directory=tmp_path)
    (tmp_path / "motion-preview.json").write_text(
        (tmp_path / "motion-preview.json").read_text().replace('"fps": 16.0', '"fps": 16.0, "audio": ["9", 0]')
    )
    changed = {template.name: imported for template, imported in library_install(directory=tmp_path)}

    assert [imported for _, imported in first] == [True] * 6
    assert [imported for _, imported in again] == [False] * 6
    assert changed == {name: name == "motion-preview" for name in ENTRIES}
    assert WorkflowTemplate.objects.get(name="motion-preview", version=2).workflow["4"]["inputs"]["audio"] == ["9", 0]
    assert WorkflowTemplate.objects.count() == 7


def test_defaults_come_from_the_manifest_and_a_video_pool_only_where_declared():
    with override_settings(MCN_GPU_POOLS=[]):
        (plain,) = [t for t, _ in library_install(names=["wan22-i2v"])]
    with override_settings(MCN_GPU_POOLS=["video"]):
        (pooled,) = [t for t, _ in library_install(names=["wan22-i2v"])]

    assert plain.placeholders["CLIP_WIDTH"] == {"type": "int", "default": 480}
    assert plain.placeholders["FRAMES"] == {"type": "int"}
    assert plain.placeholders["SOURCE_IMAGE"] == {"type": "image"}
    assert (plain.version, plain.gpu_pool, pooled.version, pooled.gpu_pool) == (1, "", 2, "video")


def test_a_broken_manifest_is_refused_naming_file_and_field(tmp_path):
    shutil.copy(LIBRARY_DIR / "motion-preview.json", tmp_path)
    manifest = json.loads((LIBRARY_DIR / "motion-preview.manifest.json").read_text())
    manifest.update(result_node="99", defaults={"WIDTH": 1})
    (tmp_path / "motion-preview.manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ValidationError) as refused:
        library_install(directory=tmp_path)

    assert refused.value.messages == [
        "motion-preview.manifest.json: result_node '99' is not a node of motion-preview.json.",
        "motion-preview.manifest.json: defaults for placeholders motion-preview.json never uses: WIDTH.",
    ]
    assert not WorkflowTemplate.objects.exists()


# --- opt-in: the preview templates on a real ComfyUI (MCN_REAL_COMFYUI_URL, e.g. http://127.0.0.1:8288) --------

REAL = os.environ.get("MCN_REAL_COMFYUI_URL", "").rstrip("/")


def _upload(path: Path, content_type: str) -> str:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="mcn-{path.name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + path.read_bytes()
    overwrite = 'Content-Disposition: form-data; name="overwrite"\r\n\r\ntrue'
    body += f"\r\n--{boundary}\r\n{overwrite}\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{REAL}/upload/image", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return json.load(urllib.request.urlopen(request, timeout=30))["name"]


def _run(workflow: dict) -> dict:
    request = urllib.request.Request(
        f"{REAL}/prompt", data=json.dumps({"prompt": workflow}).encode(), headers={"Content-Type": "application/json"}
    )
    prompt_id = json.load(urllib.request.urlopen(request, timeout=30))["prompt_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        history = json.load(urllib.request.urlopen(f"{REAL}/history/{prompt_id}", timeout=30))
        if prompt_id in history and history[prompt_id]["status"].get("completed"):
            return history[prompt_id]["outputs"]
        time.sleep(0.2)
    raise AssertionError(f"{prompt_id} did not finish in 120 s")


@pytest.mark.skipif(not REAL, reason="set MCN_REAL_COMFYUI_URL to run the previews on a real ComfyUI")
@pytest.mark.parametrize(("name", "fps"), [("avatar-preview", 25), ("motion-preview", 16)])
def test_a_preview_makes_an_mp4_of_the_clips_shape_on_a_real_comfyui(name, fps, tmp_path):
    from tests.factories import png_bytes, wav_bytes

    (tmp_path / "face.png").write_bytes(png_bytes(64, 96))
    (tmp_path / "voice.wav").write_bytes(wav_bytes(2.0))
    media = {"FACE_IMAGE": _upload(tmp_path / "face.png", "image/png")}
    media["SOURCE_IMAGE"] = media["FACE_IMAGE"]
    media["VOICE_AUDIO"] = _upload(tmp_path / "voice.wav", "audio/wav")
    entry = ENTRIES[name]
    values = {key: spec.get("default") for key, spec in entry.placeholders.items()}
    values.update({key: media[key] for key in values if key in media}, FRAMES=2 * fps)

    outputs = _run(inject(entry.workflow, values))

    result = outputs[entry.manifest["result_node"]]
    (clip,) = result["images"]
    query = f"filename={clip['filename']}&subfolder={clip['subfolder']}&type={clip['type']}"
    (tmp_path / "clip.mp4").write_bytes(urllib.request.urlopen(f"{REAL}/view?{query}", timeout=30).read())
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(tmp_path / "clip.mp4")],
            capture_output=True,
            check=True,
        ).stdout
    )
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (result["animated"], video["codec_name"], video["r_frame_rate"]) == ([True], "h264", f"{fps}/1")
    assert (video["width"], video["height"], int(video["nb_frames"])) == (240, 416, 2 * fps)
    has_audio = any(s["codec_type"] == "audio" for s in probe["streams"])
    assert has_audio == (name == "avatar-preview")
    assert abs(float(probe["format"]["duration"]) - 2.0) < 0.1
