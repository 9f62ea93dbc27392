"""The parameters production offers a shot's workflow templates: a published contract.

A template's placeholders (`{{NAME}}`) are filled from these, by the same name or through the shot
workflow mapping's `bindings` (template placeholder -> parameter). docs/workflows.md documents them;
posts.pipeline computes them for each shot and step.
"""

import difflib

from django.core.exceptions import ValidationError

PARAMETERS: dict[str, str] = {
    "PROMPT": "The shot's visual prompt (its script when it has none), with the wardrobe's trigger word.",
    "NEGATIVE_PROMPT": "What the picture must not show (the artist's negative prompt; may be empty).",
    "SCRIPT": "The words the artist says in this shot.",
    "FACE_IMAGE": "The artist's face anchor, uploaded to the ComfyUI server (an input file name).",
    "SOURCE_IMAGE": "The shot's still (its manual image or its made picture), uploaded: image-to-video's start.",
    "VOICE_AUDIO": "The shot's voice (WAV), uploaded: what an avatar's lips follow.",
    "DURATION": "The shot's length in seconds (its voice's real length when it has one).",
    "FPS": "Frames per second the step's clip is made at (the template's own rate).",
    "FRAMES": "Frames in the clip: DURATION x FPS, rounded up.",
    "WIDTH": "Frame width in pixels for the post's aspect ratio.",
    "HEIGHT": "Frame height in pixels for the post's aspect ratio.",
    "SEED": "A seed derived from the shot's content: the same inputs give the same picture.",
    "ARTIST": "The artist's stage name.",
    "LORA_NAME": "The wardrobe's LoRA file name (may be empty).",
    "TRIGGER_WORD": "The wardrobe's trigger word (may be empty).",
    "LORA_STRENGTH": "The wardrobe's LoRA strength (0.8 when it names none).",
}

# A step cannot be offered what is made at or after it: the picture step makes the still (SOURCE_IMAGE) and
# runs beside the voice (VOICE_AUDIO); a still has no frame rate. Saving a mapping checks its bindings here.
NOT_OFFERED: dict[str, frozenset[str]] = {
    "picture": frozenset({"SOURCE_IMAGE", "VOICE_AUDIO", "FPS", "FRAMES"}),
    "avatar": frozenset(),
    "motion": frozenset(),
}


def _describe(mapping, template) -> str:
    where = f"{mapping.get_kind_display()} {mapping.step}" if mapping.kind else mapping.step
    return f"{where} template “{template.name}” v{template.version}"


def workflow_parameters(mapping, offered: dict, *, template=None) -> dict:
    """The values for `mapping`'s template, keyed by the template's own placeholder names.

    `offered` holds the contract's values (PARAMETERS names) production has for this shot and step. Each
    placeholder the template declares takes the parameter its binding names, or the parameter of its own
    name; one that neither binds nor offers keeps its declared default. A placeholder left without a value
    raises a ValidationError naming the mapping, the template and the placeholder, before any job is made.
    `template` is the mapping's template when the caller has it (its latest active version otherwise).
    """
    from factory.services import template_latest  # posts.models imports this module lazily; keep it light

    if template is None:
        template = template_latest(mapping.template_name)
    bindings = mapping.bindings or {}
    values, problems = {}, []
    for placeholder, spec in template.placeholders.items():
        parameter = bindings.get(placeholder, placeholder)
        if parameter in offered:
            values[placeholder] = offered[parameter]
        elif "default" in spec:
            continue  # the template's (or its manifest's) default fills it
        elif placeholder in bindings:
            problems.append(f"{placeholder} is bound to {parameter}, which production has no value for in this step")
        elif placeholder in PARAMETERS:
            problems.append(f"{placeholder} has no value in this step and no default")
        else:
            problems.append(
                f"{placeholder} is bound to no production parameter and has no default "
                f'(bind it under Posts > Shot workflows, e.g. {{"{placeholder}": "PROMPT"}})'
            )
    if problems:
        raise ValidationError(f"{_describe(mapping, template)}: {'; '.join(problems)}.", code="unbound")
    return values


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]}?" if close else ""


def mapping_problems(*, step: str, template_name: str, bindings) -> dict[str, list[str]]:
    """Why a shot workflow mapping cannot make its step, keyed by field; empty when it can.

    The template exists (an active version); every binding names one of the template's placeholders and a
    parameter of the contract the step has; every placeholder without a default is bound or named like
    such a parameter. Messages name the template and the placeholder, so ops can fix the mapping itself.
    """
    from factory.models import WorkflowTemplate  # posts.models calls this from clean(); keep imports lazy

    if not isinstance(bindings, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in bindings.items()
    ):
        example = '{"POSITIVE_PROMPT": "PROMPT"}'
        return {"bindings": [f"Bindings must be an object of placeholder names to parameter names, e.g. {example}."]}
    template = WorkflowTemplate.objects.filter(name=template_name, active=True).order_by("-version").first()
    if template is None:
        names = WorkflowTemplate.objects.filter(active=True).values_list("name", flat=True).distinct()
        return {
            "template_name": [f"No active workflow template named “{template_name}”.{_suggest(template_name, names)}"]
        }
    described = f"Template “{template.name}” v{template.version}"
    missing = NOT_OFFERED.get(step, frozenset())
    declared = template.placeholders or {}
    problems = []
    for placeholder, parameter in sorted(bindings.items()):
        if placeholder not in declared:
            have = ", ".join(sorted(declared)) or "none"
            problems.append(f"{described} has no placeholder {placeholder} (its placeholders: {have}).")
        elif parameter not in PARAMETERS:
            problems.append(
                f"{placeholder} is bound to {parameter}, which is not a production parameter."
                f"{_suggest(parameter, PARAMETERS)} See docs/workflows.md."
            )
        elif parameter in missing:
            problems.append(f"{placeholder} is bound to {parameter}, which the {step} step does not have.")
    for placeholder, spec in sorted(declared.items()):
        if placeholder in bindings or "default" in spec:
            continue
        if placeholder not in PARAMETERS:
            problems.append(
                f"{described}: placeholder {placeholder} has no default and is bound to no production parameter: "
                f'bind it (e.g. {{"{placeholder}": "PROMPT"}}) or give it a default.'
            )
        elif placeholder in missing:
            problems.append(f"{described}: placeholder {placeholder} has no value in the {step} step and no default.")
    return {"bindings": problems} if problems else {}


# The shot workflow mappings `manage.py install_workflows` sets: (kind, step) -> library template.
# Every kind's still is the artist's portrait (a B-roll or product still shows her in the scene; map a
# text-to-image template of your own for stills without her). A-roll speaks (avatar); B-roll and product
# move (motion). --preview maps the model-free variants, for a ComfyUI on a CPU.
LIBRARY_MAPPINGS: dict[str, dict[tuple[str, str], str]] = {
    "real": {
        ("a_roll", "picture"): "portrait",
        ("a_roll", "avatar"): "infinitetalk-avatar",
        ("b_roll", "picture"): "portrait",
        ("b_roll", "motion"): "wan22-i2v",
        ("product", "picture"): "portrait",
        ("product", "motion"): "wan22-i2v",
    },
    "preview": {
        ("a_roll", "picture"): "portrait-preview",
        ("a_roll", "avatar"): "avatar-preview",
        ("b_roll", "picture"): "portrait-preview",
        ("b_roll", "motion"): "motion-preview",
        ("product", "picture"): "portrait-preview",
        ("product", "motion"): "motion-preview",
    },
}
