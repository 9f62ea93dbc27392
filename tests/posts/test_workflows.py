"""The parameter contract (posts.workflows): what a mapping's bindings turn production's values into."""

import pytest
from django.core.exceptions import ValidationError

from factory.services import template_import
from posts.models import ShotKind, ShotWorkflow
from posts.services import shot_workflow_set
from posts.workflows import PARAMETERS, workflow_parameters

pytestmark = pytest.mark.django_db

OLD_AVATAR = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE_PATH}}"}},
    "2": {"class_type": "LoadAudio", "inputs": {"audio": "{{AUDIO_PATH}}"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{POSITIVE_PROMPT}}", "clip": ["9", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{TASK_ID}}"}},
}


def mapping_for(workflow, *, bindings=None, placeholders=None, step=ShotWorkflow.Step.AVATAR):
    template_import(name="old-avatar", workflow=workflow, placeholders=placeholders)
    return ShotWorkflow(kind=ShotKind.A_ROLL, step=step, template_name="old-avatar", bindings=bindings or {})


def test_bound_placeholders_take_the_parameters_they_name():
    mapping = mapping_for(
        OLD_AVATAR,
        bindings={"POSITIVE_PROMPT": "PROMPT", "FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"},
        placeholders={"TASK_ID": {"type": "string", "default": "mcn"}},
    )
    offered = {"PROMPT": "she smiles", "FACE_IMAGE": "artists/face.png", "VOICE_AUDIO": "voices/1.wav", "SEED": 7}

    assert workflow_parameters(mapping, offered) == {
        "POSITIVE_PROMPT": "she smiles",
        "FACE_IMAGE_PATH": "artists/face.png",
        "AUDIO_PATH": "voices/1.wav",
    }  # TASK_ID keeps its default; SEED is not asked for


def test_a_placeholder_named_like_a_parameter_needs_no_binding():
    template_import(name="plain", workflow={"1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}}})
    mapping = ShotWorkflow(kind=ShotKind.B_ROLL, step=ShotWorkflow.Step.PICTURE, template_name="plain")

    assert workflow_parameters(mapping, {"FACE_IMAGE": "a.png", "PROMPT": "x"}) == {"FACE_IMAGE": "a.png"}


def test_an_unbound_placeholder_is_refused_naming_the_mapping_template_and_placeholder():
    mapping = mapping_for(OLD_AVATAR, bindings={"POSITIVE_PROMPT": "PROMPT", "FACE_IMAGE_PATH": "FACE_IMAGE"})

    with pytest.raises(ValidationError) as refused:
        workflow_parameters(mapping, {"PROMPT": "p", "FACE_IMAGE": "f.png"})

    (message,) = refused.value.messages
    assert message.startswith("A-roll (artist talking) avatar template “old-avatar” v1: ")
    assert "AUDIO_PATH is bound to no production parameter and has no default" in message
    assert "TASK_ID is bound to no production parameter and has no default" in message


def test_a_binding_to_a_parameter_the_step_lacks_is_refused_naming_both():
    mapping = mapping_for(
        OLD_AVATAR,
        bindings={"POSITIVE_PROMPT": "PROMPT", "FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"},
        placeholders={"TASK_ID": {"type": "string", "default": "mcn"}},
    )

    with pytest.raises(ValidationError, match="AUDIO_PATH is bound to VOICE_AUDIO, which production has no value"):
        workflow_parameters(mapping, {"PROMPT": "p", "FACE_IMAGE": "f.png"})


def test_the_contract_names_what_the_issue_promises():
    assert set(PARAMETERS) >= {
        *("PROMPT", "NEGATIVE_PROMPT", "SCRIPT", "FACE_IMAGE", "SOURCE_IMAGE", "VOICE_AUDIO", "DURATION", "FPS"),
        *("FRAMES", "WIDTH", "HEIGHT", "SEED", "ARTIST", "LORA_NAME", "TRIGGER_WORD", "LORA_STRENGTH"),
    }


# --- a mapping is checked when saved (posts.services.shot_workflow_set, ShotWorkflow.clean) -----------------


def refusal(**fields) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        shot_workflow_set(**{"kind": ShotKind.A_ROLL, "step": ShotWorkflow.Step.AVATAR, **fields})
    assert not ShotWorkflow.objects.exists()
    return refused.value.message_dict


def test_a_typo_in_the_template_name_is_refused_with_the_nearest_name():
    template_import(name="infinitetalk-avatar", workflow=OLD_AVATAR)

    assert refusal(template_name="infinitetalk-avatr") == {
        "template_name": ["No active workflow template named “infinitetalk-avatr”. Did you mean infinitetalk-avatar?"]
    }


def test_an_unbound_placeholder_is_refused_naming_template_and_placeholder():
    template_import(name="old-avatar", workflow=OLD_AVATAR)

    problems = refusal(template_name="old-avatar", bindings={"POSITIVE_PROMPT": "PROMPT", "AUDIO_PATH": "VOICE_AUDIO"})

    assert problems == {
        "bindings": [
            "Template “old-avatar” v1: placeholder FACE_IMAGE_PATH has no default and is bound to no production "
            'parameter: bind it (e.g. {"FACE_IMAGE_PATH": "PROMPT"}) or give it a default.',
            "Template “old-avatar” v1: placeholder TASK_ID has no default and is bound to no production "
            'parameter: bind it (e.g. {"TASK_ID": "PROMPT"}) or give it a default.',
        ]
    }


def test_bindings_name_real_placeholders_and_contract_parameters():
    template_import(name="old-avatar", workflow=OLD_AVATAR, placeholders={"TASK_ID": {"type": "string", "default": ""}})
    bindings = {
        "POSITIVE_PROMPT": "PROMT",
        "FACE_IMAGE_PATH": "FACE_IMAGE",
        "AUDIO_PATH": "VOICE_AUDIO",
        "IMAGE_PATH": "SOURCE_IMAGE",
    }

    assert refusal(template_name="old-avatar", bindings=bindings)["bindings"] == [
        "Template “old-avatar” v1 has no placeholder IMAGE_PATH (its placeholders: AUDIO_PATH, FACE_IMAGE_PATH, "
        "POSITIVE_PROMPT, TASK_ID).",
        "POSITIVE_PROMPT is bound to PROMT, which is not a production parameter. Did you mean PROMPT? "
        "See docs/workflows.md.",
    ]


def test_a_picture_step_cannot_bind_what_is_made_after_it():
    template_import(name="old-avatar", workflow=OLD_AVATAR, placeholders={"TASK_ID": {"type": "string", "default": ""}})
    bindings = {"POSITIVE_PROMPT": "PROMPT", "FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"}

    problems = refusal(step=ShotWorkflow.Step.PICTURE, template_name="old-avatar", bindings=bindings)

    assert problems == {"bindings": ["AUDIO_PATH is bound to VOICE_AUDIO, which the picture step does not have."]}


def test_bindings_must_be_an_object_of_names():
    template_import(name="old-avatar", workflow=OLD_AVATAR)

    assert refusal(template_name="old-avatar", bindings=["PROMPT"]) == {
        "bindings": [
            'Bindings must be an object of placeholder names to parameter names, e.g. {"POSITIVE_PROMPT": "PROMPT"}.'
        ]
    }


def test_a_valid_mapping_is_saved_once_and_a_rerun_changes_nothing():
    template_import(name="old-avatar", workflow=OLD_AVATAR, placeholders={"TASK_ID": {"type": "string", "default": ""}})
    bindings = {"POSITIVE_PROMPT": "PROMPT", "FACE_IMAGE_PATH": "FACE_IMAGE", "AUDIO_PATH": "VOICE_AUDIO"}
    fields = {"kind": ShotKind.A_ROLL, "step": ShotWorkflow.Step.AVATAR, "template_name": "old-avatar"}

    mapping, changed = shot_workflow_set(**fields, bindings=bindings)
    again, changed_again = shot_workflow_set(**fields, bindings=dict(bindings))

    assert (changed, changed_again, again.pk) == (True, False, mapping.pk)
    assert ShotWorkflow.objects.get().bindings == bindings
