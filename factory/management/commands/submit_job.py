import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from factory.models import Job, Lane
from factory.services import job_enqueue, template_latest
from factory.templating import media_keys


class Command(BaseCommand):
    help = "Queue a ComfyUI job from a template: prints the job id; --wait shows progress and the output files."

    def add_arguments(self, parser):
        parser.add_argument("template", help="template name (latest active version)")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--lane", choices=Lane.values, default=Lane.NORMAL)
        parser.add_argument("--subject", default="", help="what the job is for, e.g. post.42/shot.7")
        parser.add_argument("--wait", action="store_true", help="follow the job; exit 1 unless it succeeds")
        parser.add_argument("--timeout", type=float, default=3600.0, help="with --wait: give up after (s)")

    def handle(
        self, *args, template: str, param: list[str], lane: str, subject: str, wait: bool, timeout: float, **options
    ):
        params = {}
        for item in param:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--param {item!r}: use KEY=VALUE.")
            params[key.strip()] = value
        copied: list[str] = []
        try:
            tpl = template_latest(template)
            for key in media_keys(tpl.placeholders):
                if key in params:
                    params[key] = self._into_media(params[key])
                    copied.append(params[key])
            job = job_enqueue(template=tpl, params=params, lane=lane, subject=subject)
        except ValidationError as error:
            for name in copied:  # a refused job leaves no stray copies behind
                if name.startswith("factory/inputs/"):
                    (Path(settings.MEDIA_ROOT) / name).unlink(missing_ok=True)
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(str(job.pk))
        if wait:
            self._follow(job.pk, timeout)

    @staticmethod
    def _into_media(value: str) -> str:
        """A local file given on the command line is copied into media, where jobs read inputs."""
        source = Path(value)
        if not source.is_absolute() and (Path(settings.MEDIA_ROOT) / value).is_file():
            return value
        if not source.is_file():
            raise CommandError(f"{value}: no such file.")
        name = f"factory/inputs/{uuid.uuid4().hex[:8]}-{source.name}"
        target = Path(settings.MEDIA_ROOT) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return name

    def _follow(self, job_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        shown = None
        while time.monotonic() < deadline:
            job = Job.objects.get(pk=job_id)
            line = f"{job.get_status_display()}"
            if job.status == "running":
                line += f" {job.progress_percent:.0f}% node {job.progress_node or '-'}"
            if line != shown:
                self.stdout.write(line)
                shown = line
            if job.is_terminal:
                for output in job.outputs.order_by("attempt", "node_id", "index"):
                    self.stdout.write(str(Path(settings.MEDIA_ROOT) / output.file.name))
                if job.status != "succeeded":
                    raise CommandError(f"Job {job_id} {job.status}: {job.error_message}")
                return
            time.sleep(0.5)
        raise CommandError(f"Job {job_id} still {Job.objects.get(pk=job_id).status} after {timeout:.0f} s.")
