import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from factory.services import template_import


class Command(BaseCommand):
    help = (
        "Import a ComfyUI workflow exported in API format as a new version of a template. "
        "{{KEY}} placeholders become declared parameters (types inferred; --placeholders overrides)."
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

    def handle(
        self, *args, path: str, name: str, description: str, placeholders: str, result_node: str | None, **options
    ):
        try:
            workflow = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        except ValueError as error:
            raise CommandError(f"{path} is not valid JSON: {error}.") from None
        try:
            declared = json.loads(placeholders)
        except ValueError as error:
            raise CommandError(f"--placeholders is not valid JSON: {error}.") from None
        if result_node is None:
            result_node = _manifest_result_node(Path(path))
        try:
            template = template_import(
                name=name, workflow=workflow, placeholders=declared, description=description, result_node=result_node
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        keys = ", ".join(f"{k} ({v['type']})" for k, v in template.placeholders.items()) or "none"
        result = template.result_node
        result = f"node {result} ({workflow[result]['class_type']})" if result else "every saved file"
        self.stdout.write(
            self.style.SUCCESS(f"Imported {template}: {len(workflow)} nodes; placeholders: {keys}; result: {result}.")
        )


def _manifest_result_node(path: Path) -> str | None:
    """result_node of the library manifest beside the workflow (`x.json` -> `x.manifest.json`), if any."""
    manifest = path.with_name(f"{path.stem}.manifest.json")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError as error:
        raise CommandError(f"{manifest} is not valid JSON: {error}.") from None
    value = data.get("result_node") if isinstance(data, dict) else None
    return str(value) if value not in (None, "") else None
