"""Write one archive of the database and MEDIA_ROOT while the site runs (mcn_site.backup)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mcn_site.backup import BackupError, backup_create, format_bytes


class Command(BaseCommand):
    help = (
        "Write one .tar.gz holding every row (portable JSON), every file under MEDIA_ROOT and a manifest with "
        "checksums and versions, while the site runs. Restore it with `manage.py restore`."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            default=".",
            help="A folder (the archive is named mcn-backup-<UTC time>.tar.gz in it) or a path ending in .tar.gz. "
            "Default: the current folder.",
        )

    def handle(self, *args, output: str, **options):
        try:
            result = backup_create(output=Path(output))
        except BackupError as error:
            raise CommandError(str(error)) from None
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        self.stdout.write(
            f"Backed up {sum(result.rows.values()):,} rows of {len(result.rows)} tables and "
            f"{result.files:,} media files ({format_bytes(result.media_bytes)})."
        )
        self.stdout.write(f"Archive: {result.path} ({format_bytes(result.size)})")
        self.stdout.write(f"sha256:  {result.sha256} (also in {result.path.name}.sha256)")
