"""Restore an archive made by `manage.py backup` into an empty database and MEDIA_ROOT (mcn_site.backup)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mcn_site.backup import ArchiveCheck, BackupError, archive_verify, format_bytes, restore


class Command(BaseCommand):
    help = (
        "Restore a `manage.py backup` archive into an EMPTY database and MEDIA_ROOT. Every member is checked "
        "against the manifest before anything is written; --check only checks and describes the archive."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", help="The .tar.gz that `manage.py backup` wrote.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Verify the checksums and print the manifest's summary; write nothing.",
        )

    def handle(self, *args, archive: str, check: bool, **options):
        try:
            if check:
                checked = archive_verify(path=Path(archive))
            else:
                result = restore(path=Path(archive))
                checked = result.check
        except BackupError as error:
            raise CommandError(str(error)) from None
        self.describe(checked)
        if check:
            if checked.problems:
                self.stdout.write("This code cannot restore it: " + " ".join(checked.problems))
            else:
                self.stdout.write("This code can restore it.")
            return
        self.stdout.write(f"Restored {sum(result.rows.values()):,} rows:")
        width = max((len(label) for label in result.rows), default=0)
        for label, count in result.rows.items():
            self.stdout.write(f"  {label:<{width}}  {count:>9,}")
        self.stdout.write(f"Restored {result.files:,} media files ({format_bytes(result.media_bytes)}).")
        self.stdout.write("Sessions are not in backups: everyone signs in again.")

    def describe(self, checked: ArchiveCheck) -> None:
        manifest = checked.manifest
        members = manifest["members"]
        media = [entry for name, entry in members.items() if name.startswith("media/")]
        self.stdout.write(f"{checked.path.name}: every member matches the manifest (archive sha256 {checked.sha256}).")
        self.stdout.write(
            f"Made {manifest.get('created_at')} by MCN OS {manifest.get('mcn_version')} "
            f"(Django {manifest.get('django_version')}, Python {manifest.get('python_version')}, "
            f"{manifest.get('database_vendor')})."
        )
        self.stdout.write(
            f"Holds {sum(t['rows'] for t in manifest['tables']):,} rows of {len(manifest['tables'])} tables and "
            f"{len(media):,} media files ({format_bytes(sum(entry['size'] for entry in media))})."
        )
        for warning in manifest.get("warnings", []):
            self.stdout.write(f"Noted at backup: {warning}")
