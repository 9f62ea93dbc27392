import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mcn_site.lib.sanity_export import ExportError
from schedules.sanity_import import sanity_import


class Command(BaseCommand):
    help = (
        "Import the old studio's Sanity export (`sanity dataset export`: a .tar.gz, or a bare data.ndjson) "
        "into MCN OS: voices, sources, wardrobes, prompts, artists, schedules and posts with their "
        "storyboards. All or nothing; safe to run again (rows are matched by their Sanity _id). "
        "See docs/migrating.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the export: <name>.tar.gz / .tgz, or data.ndjson")
        parser.add_argument("--dry-run", action="store_true", help="check everything and report; write nothing")
        parser.add_argument(
            "--timezone",
            help="IANA zone the schedules' HH:MM times are in (Sanity keeps none); "
            f"default MCN_DEFAULT_SCHEDULE_TIMEZONE ({settings.MCN_DEFAULT_SCHEDULE_TIMEZONE})",
        )
        parser.add_argument(
            "--member",
            action="append",
            default=[],
            metavar="USERNAME",
            help="add this user as a member of every imported artist (repeatable)",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the report as JSON (for scripts)"
        )

    def handle(self, *args, path: str, dry_run: bool, timezone: str | None, member: list, as_json: bool, **options):
        users = self._members(member)
        try:
            report = sanity_import(path=path, dry_run=dry_run, timezone_name=timezone, members=users)
        except (ExportError, ValueError) as error:
            raise CommandError(str(error)) from None
        if as_json:
            self.stdout.write(_dumps(report.as_dict()))
        else:
            for line in report.lines():
                self.stdout.write(line)
        if not report.ok:
            raise CommandError(f"{len(report.errors)} error(s): nothing was imported.")

    def _members(self, usernames: list[str]) -> list:
        User = get_user_model()
        users = list(User.objects.filter(username__in=usernames))
        missing = sorted(set(usernames) - {user.get_username() for user in users})
        if missing:
            raise CommandError(f"--member: no such user: {', '.join(missing)}.")
        return users


def _dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)
