"""Fill a ComfyUI workflow's `{{KEY}}` placeholders by walking the parsed JSON tree.

Never by string replacement in JSON text: a value with quotes, newlines,
backslashes, `$&`, `\\1` or `{{` arrives in ComfyUI exactly as given, and a
placeholder that is a whole value becomes a typed value (an int seed stays an int).
Pure functions on plain data; no Django, no I/O.
"""

import copy
import math
import re
from collections.abc import Callable

PLACEHOLDER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
# Almost a placeholder: spaces inside, lower case, one brace missing ({{ WIDTH }}, {{height}}, {WIDTH}, {{WIDTH}).
# A single-brace word counts only in capitals: "{name}" may be a prompt's own text.
_NEAR_MISS_RE = re.compile(r"(\{\{?)\s*([A-Za-z][A-Za-z0-9_]*)\s*(\}\}?)")
TYPES = ("string", "int", "float", "bool", "image", "audio")
MEDIA_TYPES = frozenset({"image", "audio"})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

UI_FORMAT_HELP = (
    "This is a ComfyUI UI export (it has 'nodes' and 'links'), not the API format the server runs. "
    "In ComfyUI open the workflow and use Workflow > Export (API) (older versions: enable "
    "'Dev mode' in the settings, then 'Save (API Format)'), and import that file."
)


class InjectionError(ValueError):
    """The parameters do not fit the template; `problems` lists every reason, in words."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def is_ui_format(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _strings(tree):
    """Every string leaf of a JSON tree."""
    if isinstance(tree, str):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _strings(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _strings(value)


def find_placeholders(workflow) -> set[str]:
    return {key for text in _strings(workflow) for key in PLACEHOLDER_RE.findall(text)}


def near_miss_placeholders(workflow) -> list[str]:
    """Text that looks meant as a `{{KEY}}` placeholder but is not one, each with where it stands and the fix."""
    found = []
    for node_id, node in workflow.items() if isinstance(workflow, dict) else []:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for name, value in inputs.items() if isinstance(inputs, dict) else []:
            for text in _strings(value):
                for match in _NEAR_MISS_RE.finditer(text):
                    opening, word, closing = match.groups()
                    if PLACEHOLDER_RE.fullmatch(match.group(0)):
                        continue
                    if opening == "{" and closing == "}" and not word.isupper():
                        continue
                    fix = "{{" + word.upper() + "}}"
                    found.append(f'"{match.group(0)}" in node {node_id} ({name}): write {fix}')
    return found


def output_nodes(workflow) -> dict[str, str]:
    """Node id -> class of every node that saves a file (it has a `filename_prefix`), in numeric id order."""
    found = {
        str(node_id): node["class_type"]
        for node_id, node in (workflow.items() if isinstance(workflow, dict) else [])
        if isinstance(node, dict)
        and isinstance(node.get("inputs"), dict)
        and isinstance(node["inputs"].get("filename_prefix"), str)
    }
    return dict(sorted(found.items(), key=lambda item: _node_order(item[0])))


def _node_order(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def result_node_problems(workflow, result_node: str) -> list[str]:
    """Why `result_node` cannot name the shot's result of `workflow` ("" = undeclared: fine if unambiguous)."""
    if not isinstance(workflow, dict):
        return []
    candidates = output_nodes(workflow)
    listed = ", ".join(f"{node_id} ({cls})" for node_id, cls in candidates.items())
    if not result_node:
        if len(candidates) > 1:
            return [
                f"The workflow saves files from several nodes: {listed}. Declare which one is the result "
                "(--result-node, or result_node in the manifest)."
            ]
        return []
    if result_node not in workflow:
        return [f"Result node {result_node}: the workflow has no such node (output nodes: {listed or 'none'})."]
    if result_node not in candidates:
        node = workflow[result_node]
        return [
            f"Result node {result_node} ({node.get('class_type') if isinstance(node, dict) else '?'}) saves no "
            f"file (no filename_prefix); output nodes: {listed or 'none'}."
        ]
    return []


def infer_declarations(workflow) -> dict[str, dict]:
    """Declarations for a template's placeholders, guessing types from where they stand.

    A whole-value placeholder in an input ComfyUI reads as a number (seed, steps,
    width, cfg ...) becomes int/float; `image` inputs become image; others text.
    """
    declared: dict[str, dict] = {}
    for node in workflow.values() if isinstance(workflow, dict) else []:
        for name, value in (node.get("inputs") or {}).items() if isinstance(node, dict) else []:
            if not isinstance(value, str):
                continue
            for key in PLACEHOLDER_RE.findall(value):
                whole = value == "{{" + key + "}}"
                declared.setdefault(key, {"type": _guess_type(name) if whole else "string"})
    return dict(sorted(declared.items()))


def _guess_type(input_name: str) -> str:
    name = input_name.lower()
    if name in {"image", "images", "mask"} or name.endswith("_image"):
        return "image"
    if name in {"audio"} or name.endswith("_audio"):
        return "audio"
    if name in {"seed", "noise_seed", "steps", "width", "height", "batch_size", "length", "frames", "amount"}:
        return "int"
    if name in {"cfg", "denoise", "strength", "strength_model", "strength_clip", "scale_by"}:
        return "float"
    return "string"


def template_problems(workflow, declared) -> list[str]:
    """Why a workflow template cannot be used; empty when it is fine."""
    if is_ui_format(workflow):
        return [UI_FORMAT_HELP]
    if not isinstance(workflow, dict) or not workflow:
        return ["The workflow must be a JSON object of nodes in ComfyUI's API format."]
    problems = []
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            problems.append(f"Node {node_id} has no class_type: is this ComfyUI's API format?")
        elif not isinstance(node.get("inputs", {}), dict):
            problems.append(f"Node {node_id} ({node['class_type']}): inputs must be an object.")
    if not isinstance(declared, dict):
        return [*problems, 'Placeholders must be an object such as {"SEED": {"type": "int"}}.']
    for key, spec in declared.items():
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            problems.append(f"Placeholder {key}: type must be one of {', '.join(TYPES)}.")
        elif "default" in spec:
            try:
                coerce(key, spec["type"], spec["default"])
            except InjectionError as error:
                problems += [f"Default of {p}" for p in error.problems]
    if near := near_miss_placeholders(workflow):
        problems.append("Near-miss placeholders (not filled in, sent to ComfyUI as written): " + "; ".join(near) + ".")
    used = find_placeholders(workflow)
    if undeclared := sorted(used - set(declared)):
        problems.append(f"Placeholders used but not declared: {', '.join(undeclared)}.")
    if unused := sorted(set(declared) - used):
        problems.append(f"Declared placeholders the workflow never uses: {', '.join(unused)}.")
    return problems


def manifest_problems(manifest) -> list[str]:
    """Why a template's manifest (the rest of <name>.manifest.json) cannot be used; empty when it is fine."""
    if not isinstance(manifest, dict):
        return ['The manifest must be an object such as {"models": [...], "time_budget_seconds": 900}.']
    problems = []
    budget = manifest.get("time_budget_seconds")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0):
        problems.append(f"Manifest: time_budget_seconds must be a positive number of seconds, not {budget!r}.")
    models = manifest.get("models", [])
    if not isinstance(models, list):
        return [*problems, "Manifest: models must be a list of model files."]
    for number, model in enumerate(models, start=1):
        if not isinstance(model, dict) or not model.get("file") or not model.get("folder"):
            problems.append(f"Manifest: model {number} needs at least a file name and a models folder.")
        elif model.get("bytes") is not None and type(model["bytes"]) is not int:
            problems.append(f"Manifest: model {model['file']}: bytes must be a whole number.")
    return problems


def coerce(key: str, kind: str, value):
    """`value` as the declared type, accepting the text forms a command line gives."""
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # NaN and infinity are not JSON
                raise ValueError
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if isinstance(value, dict | list) or value is None:
            raise ValueError
        text = value if isinstance(value, str) else str(value)
        if "\x00" in text:  # PostgreSQL's jsonb cannot store U+0000
            raise ValueError
        return text
    except (TypeError, ValueError):
        raise InjectionError([f"{key} must be {_describe(kind)}, not {value!r}."]) from None


def _describe(kind: str) -> str:
    return {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "image": "an image file",
        "audio": "an audio file",
    }.get(kind, "text")


def resolve_values(declared: dict, values: dict) -> dict:
    """Typed values for every declared placeholder (given or default); raises with every problem at once."""
    problems = []
    if unknown := sorted(set(values) - set(declared)):
        problems.append(f"Parameters that match no placeholder: {', '.join(unknown)}.")
    resolved = {}
    for key, spec in declared.items():
        if key in values:
            raw = values[key]
        elif "default" in spec:
            raw = spec["default"]
        else:
            problems.append(f"{key} has no value and no default.")
            continue
        try:
            resolved[key] = coerce(key, spec["type"], raw)
        except InjectionError as error:
            problems += error.problems
    if problems:
        raise InjectionError(problems)
    return resolved


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def inject(workflow: dict, values: dict, *, overrides: dict | None = None) -> dict:
    """A new workflow with every placeholder filled from `values` (already typed) and overrides applied."""

    def fill(node):
        if isinstance(node, str):
            whole = PLACEHOLDER_RE.fullmatch(node)
            if whole:
                return values[whole.group(1)]
            # A function replacement: the value is never read as a regex template (\1, \g<0>).
            return PLACEHOLDER_RE.sub(lambda m: _as_text(values[m.group(1)]), node)
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    if missing := sorted(find_placeholders(workflow) - set(values)):
        raise InjectionError([f"No value for {', '.join(missing)}."])
    filled = fill(workflow)
    problems = []
    for node_id, inputs in (overrides or {}).items():
        node = filled.get(str(node_id))
        if node is None:
            problems.append(f"Override for node {node_id}: the workflow has no such node.")
        elif not isinstance(inputs, dict):
            problems.append(f"Override for node {node_id} must be an object of inputs.")
        else:
            node.setdefault("inputs", {}).update(copy.deepcopy(inputs))
    if problems:
        raise InjectionError(problems)
    return filled


def prefix_outputs(workflow: dict, prefix: str) -> dict:
    """Put every `filename_prefix` under `prefix/` so ComfyUI's cache never hands back an old file."""
    for node in workflow.values():
        inputs = node.get("inputs") or {}
        if isinstance(inputs.get("filename_prefix"), str):
            inputs["filename_prefix"] = f"{prefix}/{inputs['filename_prefix'].lstrip('/')}"
    return workflow


def media_keys(declared: dict) -> list[str]:
    return [key for key, spec in declared.items() if spec.get("type") in MEDIA_TYPES]


def map_media(values: dict, declared: dict, upload: Callable[[str, str], str]) -> dict:
    """Replace each media value (a file path) by the name `upload(key, path)` returns."""
    return {k: upload(k, v) if k in media_keys(declared) else v for k, v in values.items()}
