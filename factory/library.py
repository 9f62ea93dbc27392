"""The workflow library that ships with the project: `factory/workflows/<name>.json` beside `<name>.manifest.json`.

A manifest says which production step the template makes, its result node, frame rate and time budget, its GPU
pool, the defaults of its own placeholders and the model files it needs (docs/workflows.md). `library_install`
imports each template as a version of the template of that name, once: re-running it changes nothing, and a
changed file makes a new version. Plain files and factory services only: factory imports no app.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from factory.models import WorkflowTemplate
from factory.services import template_import
from factory.templating import find_placeholders, infer_declarations

LIBRARY_DIR = Path(__file__).resolve().parent / "workflows"
STEPS = ("picture", "avatar", "motion")
VIDEO_STEPS = ("avatar", "motion")
MODEL_KEYS = ("file", "folder", "bytes", "licence", "source")
# What goes to template_import by name; the rest of the manifest is the template's `manifest` where it has one.
OWN_KEYS = ("name", "description", "result_node")


@dataclass(frozen=True)
class LibraryEntry:
    name: str
    workflow: dict
    manifest: dict

    @property
    def placeholders(self) -> dict:
        """The template's declarations: types inferred from where each placeholder stands, the manifest's defaults."""
        declared = infer_declarations(self.workflow)
        for key, value in self.manifest.get("defaults", {}).items():
            declared[key] = {**declared.get(key, {"type": "string"}), "default": value}
        return declared

    @property
    def model_bytes(self) -> int:
        return sum(model["bytes"] for model in self.manifest.get("models", []))


def _entry_problems(name: str, workflow, manifest) -> list[str]:
    if not isinstance(workflow, dict) or not isinstance(manifest, dict):
        return [f"{name}: the workflow and its manifest must be JSON objects."]
    problems = []
    if manifest.get("name") != name:
        problems.append(f"{name}.manifest.json: name is {manifest.get('name')!r}, not {name!r} (the file's name).")
    if manifest.get("step") not in STEPS:
        problems.append(f"{name}.manifest.json: step must be one of {', '.join(STEPS)}.")
    if manifest.get("result_node") not in workflow:
        problems.append(
            f"{name}.manifest.json: result_node {manifest.get('result_node')!r} is not a node of {name}.json."
        )
    if manifest.get("step") in VIDEO_STEPS and not isinstance(manifest.get("fps"), int | float):
        problems.append(f"{name}.manifest.json: a video step needs its fps.")
    if not isinstance(manifest.get("time_budget_seconds"), int) or manifest["time_budget_seconds"] <= 0:
        problems.append(f"{name}.manifest.json: time_budget_seconds must be a positive whole number.")
    used = find_placeholders(workflow)
    if unknown := sorted(set(manifest.get("defaults", {})) - used):
        problems.append(
            f"{name}.manifest.json: defaults for placeholders {name}.json never uses: {', '.join(unknown)}."
        )
    for model in manifest.get("models", []):
        if not isinstance(model, dict) or set(MODEL_KEYS) - set(model) or not isinstance(model.get("bytes"), int):
            problems.append(f"{name}.manifest.json: each model needs {', '.join(MODEL_KEYS)} (bytes a whole number).")
    return problems


def library_entries(directory: Path = LIBRARY_DIR) -> list[LibraryEntry]:
    """Every template of the library, checked; a ValidationError lists every problem of every file."""
    entries, problems = [], []
    for path in sorted(directory.glob("*.manifest.json")):
        name = path.name.removesuffix(".manifest.json")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            workflow = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{name}: {error}")
            continue
        found = _entry_problems(name, workflow, manifest)
        problems += found
        if not found:
            entries.append(LibraryEntry(name=name, workflow=workflow, manifest=manifest))
    if problems:
        raise ValidationError(problems)
    return entries


def _pool(manifest: dict) -> str:
    """The manifest's pool where this deployment declares it; the default pool otherwise (a laptop has one)."""
    pool = manifest.get("gpu_pool", "default")
    return pool if pool in settings.MCN_GPU_POOLS else ""


@transaction.atomic
def library_install(
    *, names: list[str] | None = None, directory: Path = LIBRARY_DIR
) -> list[tuple[WorkflowTemplate, bool]]:
    """Import each library template (or those `names`) unless its latest active version is the same already.

    Returns (template, imported) pairs: imported is False where nothing changed, so a re-run writes nothing.
    """
    entries = library_entries(directory)
    if unknown := sorted(set(names or []) - {entry.name for entry in entries}):
        raise ValidationError(f"Not in the workflow library: {', '.join(unknown)}.")
    installed = []
    for entry in entries:
        if names and entry.name not in names:
            continue
        wanted = {
            "workflow": entry.workflow,
            "placeholders": entry.placeholders,
            "description": entry.manifest.get("description", ""),
            "gpu_pool": _pool(entry.manifest),
            "result_node": entry.manifest["result_node"],
            "manifest": {k: v for k, v in entry.manifest.items() if k not in OWN_KEYS},
        }
        # Race: two installs at once; template_import's lock and the (name, version) constraint keep versions apart.
        latest = WorkflowTemplate.objects.filter(name=entry.name, active=True).order_by("-version").first()
        if latest is not None and all(getattr(latest, field) == value for field, value in wanted.items()):
            installed.append((latest, False))
            continue
        overrides = {key: spec for key, spec in wanted.pop("placeholders").items() if "default" in spec}
        installed.append((template_import(name=entry.name, placeholders=overrides, **wanted), True))
    return installed
