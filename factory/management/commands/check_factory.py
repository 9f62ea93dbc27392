from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from factory import preflight
from factory.comfyui import ComfyUIError
from factory.execution import client_for
from factory.models import WorkflowTemplate


class Command(BaseCommand):
    help = (
        "Check the ComfyUI server answers and every active template's nodes, inputs and models check out on it "
        "(against its /object_info)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--comfyui-url", default=settings.COMFYUI_URL)
        parser.add_argument("--template", help="check only this template name")

    def handle(self, *args, comfyui_url: str, template: str | None, **options):
        client = client_for(comfyui_url)
        try:
            stats = client.system_stats()
            preflight.forget(client.base_url)
            info = preflight.object_info(client, max_age=0)
        except ComfyUIError as error:
            raise CommandError(error.message) from None
        device = (stats.get("devices") or [{}])[0]
        self.stdout.write(
            f"{comfyui_url}: ComfyUI {stats.get('system', {}).get('comfyui_version', '?')}, "
            f"{device.get('name', '?')}, {len(info)} node types."
        )
        templates = WorkflowTemplate.objects.filter(active=True)
        if template:
            templates = templates.filter(name=template)
            if not templates.exists():
                raise CommandError(f"No active template named {template}.")
        failed = 0
        for tpl in templates:
            problems = preflight.template_problems(tpl, info)
            if problems:
                failed += 1
                self.stdout.write(self.style.ERROR(f"✗ {tpl}"))
                for problem in problems:
                    self.stdout.write(f"    {problem}")
            else:
                self.stdout.write(self.style.SUCCESS(f"✓ {tpl}"))
        if failed:
            raise CommandError(f"{failed} template(s) cannot run on {comfyui_url}.")
