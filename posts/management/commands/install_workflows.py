from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from factory.library import library_entries, library_install
from posts.services import shot_workflow_set
from posts.workflows import LIBRARY_MAPPINGS

GB = 10**9


class Command(BaseCommand):
    help = (
        "Install the workflow library (factory/workflows/) as workflow templates and map it to the shot kinds "
        "(A-roll: portrait + InfiniteTalk avatar; B-roll and product: portrait + Wan 2.2 image-to-video). "
        "Re-running changes nothing; a changed file becomes a new template version. --preview maps the "
        "model-free variants, for a ComfyUI on a CPU."
    )

    def add_arguments(self, parser):
        parser.add_argument("--preview", action="store_true", help="map the model-free preview variants")

    def handle(self, *args, preview: bool, **options):
        mappings = LIBRARY_MAPPINGS["preview" if preview else "real"]
        try:
            with transaction.atomic():
                manifests = {entry.name: entry for entry in library_entries()}
                for template, imported in library_install(names=sorted(set(mappings.values()))):
                    self._report_template(template, imported, manifests[template.name])
                for (kind, step), name in mappings.items():
                    mapping, changed = shot_workflow_set(kind=kind, step=step, template_name=name)
                    self.stdout.write(f"{mapping}: {'set' if changed else 'unchanged'}.")
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(self.style.SUCCESS(f"Workflow library installed ({'preview' if preview else 'real'})."))

    def _report_template(self, template, imported: bool, entry) -> None:
        pool = template.gpu_pool or "default"
        wanted = entry.manifest.get("gpu_pool", "default")
        note = f" (its manifest asks for the {wanted} pool: declare it in MCN_GPU_POOLS)" if wanted != pool else ""
        models = entry.manifest.get("models", [])
        needs = f"needs {len(models)} model files, {entry.model_bytes / GB:.1f} GB" if models else "needs no model"
        state = "imported" if imported else "unchanged"
        self.stdout.write(f"{template}: {state}; {entry.manifest['step']} step on the {pool} pool{note}; {needs}.")
        if entry.manifest.get("comfyui"):
            self.stdout.write(f"  {entry.manifest['comfyui']}")
