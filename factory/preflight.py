"""Check a workflow against what a ComfyUI server has installed, before any GPU time is spent."""

import time

from factory.comfyui import ComfyUIClient

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


def workflow_problems(workflow: dict, info: dict) -> list[str]:
    """Node classes the server lacks and combo values (model names) it does not offer, in words."""
    problems = []
    for node_id, node in sorted(workflow.items()):
        class_type = node.get("class_type", "?")
        node_info = info.get(class_type)
        if not node_info:
            problems.append(f"Node {node_id}: node type {class_type} is not installed on the GPU server.")
            continue
        declared = {**node_info.get("input", {}).get("required", {}), **node_info.get("input", {}).get("optional", {})}
        for name, value in (node.get("inputs") or {}).items():
            options = _combo_options(declared.get(name))
            if options is None or isinstance(value, list) or "{{" in str(value):
                continue  # not a combo, a link, or a placeholder filled per job
            if class_type.startswith("LoadImage") or class_type.startswith("LoadAudio"):
                continue  # input files are uploaded per job
            if value not in options:
                problems.append(f"Node {node_id} ({class_type}): {name} '{value}' is not installed on the GPU server.")
    return problems
