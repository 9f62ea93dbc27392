from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from schedules.services import schedule_tick


class Command(BaseCommand):
    help = (
        "One scheduler tick: create the draft posts of every slot that has come (for system cron and "
        "tests). Safe to repeat and to run beside run_scheduler: each slot fires once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="tick as if it were this ISO 8601 time, e.g. 2026-03-08T09:30:00+08:00")
        parser.add_argument(
            "--grace", type=int, help="minutes a late slot still fires (default MCN_SCHEDULE_GRACE_MINUTES)"
        )

    def handle(self, *args, now: str | None, grace: int | None, **options):
        when = timezone.now()
        if now:
            try:
                when = parse_datetime(now)
            except ValueError:  # well formed but impossible, e.g. 30 February
                when = None
            if when is None:
                raise CommandError(f"--now {now!r} is not an ISO 8601 date and time such as 2026-03-08T09:30:00+08:00.")
            if timezone.is_naive(when):
                raise CommandError(f"--now {now!r} has no UTC offset; add one, e.g. +08:00 or Z.")
        if grace is not None and grace < 0:
            raise CommandError("--grace must be 0 minutes or more.")
        result = schedule_tick(now=when, grace=None if grace is None else timedelta(minutes=grace))
        self.stdout.write(f"{when.isoformat()}: {result}.")
