"""Check a workflow against what a ComfyUI server has installed, before any GPU time is spent.

The same checks ComfyUI's own validation makes when a prompt is queued (node classes, inputs that exist,
required inputs present, link types, number ranges, combo values), asked of `/object_info` instead, so a
template is judged before a job is run, with every problem named at once and a hint where to get a model.
"""

import math
import time

from factory.comfyui import ComfyUIClient
from factory.templating import PLACEHOLDER_RE, coerce

_CACHE: dict[str, tuple[float, dict]] = {}


def object_info(client: ComfyUIClient, *, max_age: float) -> dict:
    """The server's node catalogue, cached per server for `max_age` seconds (it is ~500 KB)."""
    cached = _CACHE.get(client.base_url)
    if cached and time.monotonic() - cached[0] < max_age:
        return cached[1]
    info = client.object_info()
    _CACHE[client.base_url] = (time.monotonic(), info)
    return info


def forget(base_url: str) -> None:
    _CACHE.pop(base_url, None)


def _combo_options(spec) -> list | None:
    """The allowed values of a combo input spec, in either of ComfyUI's two shapes; None if not a combo."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def _options(spec) -> dict:
    return spec[1] if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def node_order_key(node_id: str) -> tuple:
    """API-format node ids in numeric order ("2" before "10"; subgraph ids "12:3" after "12")."""
    parts = str(node_id).split(":")
    if all(part.isdigit() for part in parts):
        return (0, *map(int, parts))
    return (1, str(node_id))


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int) and isinstance(value[1], int)


def _types_match(received, expected) -> bool:
    """ComfyUI's validate_node_input (non-strict): equal, a wildcard, or comma-separated unions that overlap.
    A combo output (a list of values) feeds a combo input."""
    if received == expected or "*" in (received, expected):
        return True
    if isinstance(received, list):
        return isinstance(expected, list) or expected == "COMBO"
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def _type_name(spec) -> str:
    kind = spec[0] if isinstance(spec, list) and spec else spec
    return "COMBO" if isinstance(kind, list) else str(kind)


def _input_names(node_info: dict) -> list[str]:
    """Every input of a class in the server's order, optional ones marked with "?"."""
    inputs, order = node_info.get("input", {}), node_info.get("input_order", {})
    names = []
    for section, mark in (("required", ""), ("optional", "?")):
        declared = inputs.get(section) or {}
        names += [f"{name}{mark}" for name in order.get(section) or declared if name in declared]
    return names


def model_hint(value: str, manifest: dict | None) -> str:
    """Where to get a model file the template's manifest lists, in words; empty when it lists none such."""
    for model in (manifest or {}).get("models") or []:
        if isinstance(model, dict) and model.get("file") and str(value).endswith(str(model["file"])):
            size = f" ({_size(model['bytes'])})" if isinstance(model.get("bytes"), int) else ""
            folder = model.get("folder") or "?"
            extra = [f"licence {model['licence']}"] if model.get("licence") else []
            extra += [f"from {model['source']}"] if model.get("source") else []
            tail = f" ({', '.join(extra)})" if extra else ""
            return f"put {model['file']}{size} in models/{folder}{tail}"
    return ""


def _size(count: int) -> str:
    if count >= 10**9:
        return f"{count / 10**9:.1f} GB"
    return f"{max(count, 1) / 10**6:.1f} MB"


def _sample(spec: dict) -> tuple[bool, object]:
    """(is a known value, value) for a placeholder: its default, or only its type when it has none."""
    if "default" in spec:
        try:
            return True, coerce("", spec.get("type", "string"), spec["default"])
        except ValueError:
            return False, None
    return False, {"int": 0, "float": 0.0, "bool": False}.get(spec.get("type"), "")


def workflow_problems(
    workflow: dict, info: dict, *, placeholders: dict | None = None, manifest: dict | None = None
) -> list[str]:
    """Everything in `workflow` that this server's catalogue says cannot run, in words naming node, class
    and input. `placeholders` (the template's declarations) give each `{{KEY}}` its default or its type;
    `manifest` names where a missing model file comes from."""
    problems = []
    for node_id in sorted(workflow, key=node_order_key):
        node = workflow[node_id]
        class_type = node.get("class_type", "?")
        node_info = info.get(class_type)
        if not node_info:
            problems.append(f"Node {node_id}: node type {class_type} is not installed on the GPU server.")
            continue
        sections = node_info.get("input", {})
        required = sections.get("required") or {}
        declared = {**required, **(sections.get("optional") or {})}
        hidden = sections.get("hidden") or {}
        inputs = node.get("inputs") or {}
        where = f"Node {node_id} ({class_type})"
        for name in required:
            if name not in inputs:
                problems.append(f"{where}: required input '{name}' is missing.")
        for name, value in inputs.items():
            if name not in declared:
                if name not in hidden:
                    problems.append(
                        f"{where}: input '{name}' does not exist on this server's {class_type} "
                        f"(inputs: {', '.join(_input_names(node_info))})."
                    )
                continue
            problem = _input_problem(workflow, info, class_type, name, declared[name], value, placeholders, manifest)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def _input_problem(workflow, info, class_type, name, spec, value, placeholders, manifest) -> str:
    expected = spec[0] if isinstance(spec, list) and spec else spec
    if _is_link(value):
        source_id = str(value[0])
        source = workflow.get(source_id)
        if not isinstance(source, dict):
            return f"input '{name}' links to node {source_id}, which the workflow does not have."
        outputs = (info.get(source.get("class_type")) or {}).get("output")
        if outputs is None:
            return ""  # the source's class is reported missing on its own
        if not 0 <= value[1] < len(outputs):
            return f"input '{name}' links to output {value[1]} of node {source_id}, which has {len(outputs)}."
        received = outputs[value[1]]
        if not _types_match(received, expected):
            got = "COMBO" if isinstance(received, list) else received
            return (
                f"input '{name}' takes {_type_name(spec)} but is linked to output {value[1]} of node "
                f"{source_id} ({source.get('class_type')}), which gives {got}."
            )
        return ""
    known = True
    if isinstance(value, str) and "{{" in value:
        whole = PLACEHOLDER_RE.fullmatch(value)
        if not whole:
            return ""  # text around a placeholder: a value made per job
        declaration = (placeholders or {}).get(whole.group(1))
        if not isinstance(declaration, dict):
            return ""  # undeclared: the template's own check names it
        known, value = _sample(declaration)
        if expected in ("INT", "FLOAT") and declaration.get("type") not in ("int", "float"):
            return f"input '{name}' takes a number but {{{{{whole.group(1)}}}}} is declared {declaration.get('type')}."
        if not known:
            return ""  # filled per job: only its type can be checked here
    options = _combo_options(spec)
    if options is not None:
        if class_type.startswith(("LoadImage", "LoadAudio", "LoadVideo")) or _options(spec).get("image_upload"):
            return ""  # input files are uploaded per job
        if value in options:
            return ""
        hint = model_hint(value, manifest)
        if hint:
            return f"{name} '{value}' is not installed on the GPU server: {hint}."
        return f"{name} '{value}' is not installed on the GPU server."
    if expected in ("INT", "FLOAT"):
        number_ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number_ok or (expected == "INT" and not float(value).is_integer()):
            return f"input '{name}' takes {'a whole number' if expected == 'INT' else 'a number'}, not {value!r}."
        limits = _options(spec)
        low, high = limits.get("min"), limits.get("max")
        if low is not None and value < low:
            return f"input '{name}' is {value}, below this server's minimum {low}."
        if high is not None and value > high:
            return f"input '{name}' is {value}, above this server's maximum {high}."
    return ""


def template_problems(template, info: dict) -> list[str]:
    """workflow_problems for a WorkflowTemplate: its placeholders' defaults and types, its manifest's models.
    The one check check_factory, the admin, the API and a worker's attempt all make."""
    workflow = template.workflow if isinstance(template.workflow, dict) else {}
    return workflow_problems(
        workflow,
        info,
        placeholders=template.placeholders if isinstance(template.placeholders, dict) else {},
        manifest=getattr(template, "manifest", None) or {},
    )
