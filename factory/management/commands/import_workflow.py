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

    def handle(self, *args, path: str, name: str, description: str, placeholders: str, **options):
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
        try:
            template = template_import(name=name, workflow=workflow, placeholders=declared, description=description)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        keys = ", ".join(f"{k} ({v['type']})" for k, v in template.placeholders.items()) or "none"
        self.stdout.write(self.style.SUCCESS(f"Imported {template}: {len(workflow)} nodes; placeholders: {keys}."))
