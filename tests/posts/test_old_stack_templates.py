"""The old stack's three templates (tests/factory/data/old_stack/) import, bind and preflight with clear answers."""

import io
import json
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from posts.models import ShotKind, ShotWorkflow
from posts.services import shot_workflow_set
from posts.workflows import workflow_parameters

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

DATA = Path(__file__).parents[1] / "factory" / "data"
OLD = DATA / "old_stack"
CORE_0_3_64 = json.loads((DATA / "object_info_0.3.64_library.json").read_text())
TASK_ID_DEFAULT = '{"TASK_ID": {"type": "string", "default": "mcn"}}'
# name, file, kind, step, bindings, the placeholders import names
OLD_TEMPLATES = [
    (
        "longcat-avatar",
        "longcat_avatar.json",
        ShotKind.A_ROLL,
        "avatar",
        {"FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"},
        "AUDIO_PATH (audio), FACE_IMAGE_PATH (image), SEED (int), TASK_ID (string)",
    ),
    (
        "wan-i2v",
        "wan_i2v.json",
        ShotKind.B_ROLL,
        "motion",
        {"IMAGE_PATH": "SOURCE_IMAGE", "MOTION_PROMPT": "PROMPT"},
        "IMAGE_PATH (image), MOTION_PROMPT (string), SEED (int), TASK_ID (string)",
    ),
    (
        "flux-dev",
        "flux_dev.json",
        ShotKind.PRODUCT,
        "picture",
        {"POSITIVE_PROMPT": "PROMPT"},
        "POSITIVE_PROMPT (string), SEED (int), TASK_ID (string)",
    ),
]
CUSTOM_NODES = {
    "longcat-avatar": {
        "WanVideoModelLoader",
        "WanVideoVAELoader",
        "WanVideoLoraSelect",
        "WanVideoLongCatAvatarExtendEmbeds",
        "WanVideoSampler",
        "WanVideoDecode",
        "VHS_VideoCombine",
    },
    "wan-i2v": {
        "WanVideoModelLoader",
        "WanVideoVAELoader",
        "WanVideoTextEncode",
        "WanVideoSampler",
        "WanVideoDecode",
        "VHS_VideoCombine",
        "LoadWanVideoClipTextEncoder",
    },
    "flux-dev": set(),
}


def command(name: str, *args) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_old(name: str, file: str, *extra) -> str:
    return command("import_workflow", str(OLD / file), "--name", name, *extra)


@pytest.mark.parametrize(("name", "file", "kind", "step", "bindings", "named"), OLD_TEMPLATES)
def test_an_old_template_imports_naming_its_placeholders(name, file, kind, step, bindings, named):
    nodes = len(json.loads((OLD / file).read_text()))

    said = import_old(name, file).strip()

    assert said.startswith(f"Imported {name} v1: {nodes} nodes; placeholders: {named}; result: node ")
    result_class = said.rsplit("(", 1)[1].rstrip(").")
    assert result_class == ("SaveImage" if name == "flux-dev" else "VHS_VideoCombine")


@pytest.mark.parametrize(("name", "file", "kind", "step", "bindings", "named"), OLD_TEMPLATES)
def test_task_id_without_a_default_is_a_clear_refusal_and_with_one_the_template_binds(
    name, file, kind, step, bindings, named
):
    import_old(name, file)
    with pytest.raises(ValidationError) as refused:
        shot_workflow_set(kind=kind, step=step, template_name=name, bindings=bindings)
    import_old(name, file, "--placeholders", TASK_ID_DEFAULT)

    mapping, _ = shot_workflow_set(kind=kind, step=step, template_name=name, bindings=bindings)

    assert refused.value.messages == [
        f"Template “{name}” v1: placeholder TASK_ID has no default and is bound to no production parameter: "
        'bind it (e.g. {"TASK_ID": "PROMPT"}) or give it a default.'
    ]
    offered = {"PROMPT": "she waves", "FACE_IMAGE": "artists/f.png", "SOURCE_IMAGE": "shots/s.png", "SEED": 7}
    offered["VOICE_AUDIO"] = "voices/v.wav"
    values = workflow_parameters(mapping, offered)
    assert values == {
        placeholder: offered[parameter] for placeholder, parameter in {**bindings, "SEED": "SEED"}.items()
    }
    assert ShotWorkflow.objects.get().template_name == name


def test_an_old_template_bound_to_a_parameter_its_step_lacks_is_refused():
    import_old("longcat-avatar", "longcat_avatar.json", "--placeholders", TASK_ID_DEFAULT)

    with pytest.raises(ValidationError) as refused:
        shot_workflow_set(
            kind=ShotKind.A_ROLL,
            step="picture",
            template_name="longcat-avatar",
            bindings={"FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"},
        )

    assert refused.value.messages == ["AUDIO_PATH is bound to VOICE_AUDIO, which the picture step does not have."]


@pytest.mark.parametrize(("name", "file", "kind", "step", "bindings", "named"), OLD_TEMPLATES)
def test_preflight_names_the_custom_nodes_the_server_lacks(fake_comfyui, name, file, kind, step, bindings, named):
    for core in ("LoadAudio", "WanImageToVideo"):  # core in ComfyUI 0.3.64, as its /object_info lists them
        fake_comfyui.add_node_class(CORE_0_3_64[core])
    import_old(name, file)
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"1 template\(s\) cannot run"):
        call_command("check_factory", "--comfyui-url", fake_comfyui.url, "--template", name, stdout=out)

    lines = out.getvalue().splitlines()
    assert f"✗ {name} v1" in lines
    missing = {m.group(1) for line in lines if (m := re.search(r"node type (\S+) is not installed", line))}
    assert missing == CUSTOM_NODES[name]
    if name == "flux-dev":  # core nodes only: what it lacks is the model
        assert any("ckpt_name 'flux1-dev-fp8.safetensors' is not installed" in line for line in lines)
