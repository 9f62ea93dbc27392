import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from factory.queues import pool_problem
from factory.services import template_import

# Manifest keys the template keeps in fields of its own (or, for result_node, that the import sets apart).
OWN_FIELDS = ("name", "description", "gpu_pool", "result_node")


class Command(BaseCommand):
    help = (
        "Import a ComfyUI workflow exported in API format as a new version of a template. "
        "{{KEY}} placeholders become declared parameters (types inferred; --placeholders overrides). "
        "A <name>.manifest.json beside the file (or --manifest) gives the model files, defaults and time budget."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the API-format JSON file")
        parser.add_argument("--name", required=True, help="template name (a slug), e.g. portrait-flux")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--placeholders", default="{}", help='JSON, e.g. \'{"SEED": {"type": "int", "default": 0}}\''
        )
        parser.add_argument(
            "--result-node",
            default=None,
            help="id of the node whose saved file is the job's result (default: result_node of the "
            "<name>.manifest.json beside the file, else the workflow's only output node)",
        )

        parser.add_argument("--manifest", help="the manifest file (default: <path without .json>.manifest.json)")

    def handle(
        self, *args, path: str, name: str, description: str, placeholders: str, result_node: str | None, **options
    ):
        workflow = _read_json(Path(path))
        try:
            declared = json.loads(placeholders)
        except ValueError as error:
            raise CommandError(f"--placeholders is not valid JSON: {error}.") from None
        manifest_path = Path(options.get("manifest") or Path(path).with_suffix(".manifest.json"))
        manifest = _read_json(manifest_path) if options.get("manifest") or manifest_path.exists() else None
        if manifest is not None and not isinstance(manifest, dict):
            raise CommandError(f"{manifest_path} must hold a JSON object (the template's manifest).")
        gpu_pool = None
        if manifest is not None:
            # The manifest's defaults are placeholder defaults; --placeholders still wins.
            defaults = manifest.get("defaults") or {}
            if not isinstance(defaults, dict):
                raise CommandError(f"{manifest_path}: defaults must be an object of placeholder values.")
            if isinstance(declared, dict):
                given, declared = declared, {key: {"default": value} for key, value in defaults.items()}
                for key, spec in given.items():
                    declared[key] = {**declared.get(key, {}), **spec} if isinstance(spec, dict) else spec
            description = description or str(manifest.get("description") or "")
            pool = "" if manifest.get("gpu_pool") in (None, "default") else str(manifest["gpu_pool"])
            # A pool this site has not declared (a laptop has no video pool) runs on the default one.
            gpu_pool = None if pool_problem(pool) else pool
            if pool and gpu_pool is None:
                self.stdout.write(f"GPU pool {pool} is not declared here (MCN_GPU_POOLS): the default pool runs it.")
            if result_node is None and manifest.get("result_node") not in (None, ""):
                result_node = str(manifest["result_node"])
            manifest = {key: value for key, value in manifest.items() if key not in OWN_FIELDS}
        try:
            template = template_import(
                name=name,
                workflow=workflow,
                placeholders=declared,
                description=description,
                gpu_pool=gpu_pool,
                manifest=manifest,
                result_node=result_node,
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        keys = ", ".join(f"{k} ({v['type']})" for k, v in template.placeholders.items()) or "none"
        result = template.result_node
        result = f"node {result} ({workflow[result]['class_type']})" if result else "every saved file"
        models = len(template.manifest.get("models") or [])
        extra = f"; manifest: {models} model file(s)" if manifest is not None else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {template}: {len(workflow)} nodes; placeholders: {keys}; result: {result}{extra}."
            )
        )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
    except ValueError as error:
        raise CommandError(f"{path} is not valid JSON: {error}.") from None
