"""tick_schedules (one tick, for cron and tests) and run_scheduler (the loop), the second as a real process."""

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from posts.models import Post
from schedules.management.commands.run_scheduler import seconds_to_next_minute
from schedules.models import Schedule, ScheduleRun
from tests.factories import make_artist, make_schedule
from tests.factory.conftest import database_url_for_subprocess, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def tick(*args: str) -> str:
    out = io.StringIO()
    call_command("tick_schedules", *args, stdout=out)
    return out.getvalue()


def monday_0930(**extra) -> Schedule:
    return make_schedule(
        artist=make_artist(),
        now=datetime(2026, 3, 1, 12, tzinfo=SHANGHAI),
        weekdays=["monday"],
        times=["09:30"],
        timezone="Asia/Shanghai",
        **extra,
    )


def subprocess_env(**extra) -> dict:
    return {
        **os.environ,
        "REDIS_URL": django_settings.REDIS_URL,
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "SECRET_KEY": "tests-only",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


# --------------------------------------------------------------------------- tick_schedules


@pytest.mark.django_db
def test_tick_schedules_at_a_given_now_creates_the_due_post_and_prints_a_summary():
    schedule = monday_0930()

    output = tick("--now", "2026-03-02T09:30:00+08:00")

    assert output == "2026-03-02T09:30:00+08:00: 1 schedules due: 1 posts created, 0 missed, 0 skipped, 0 failed.\n"
    assert Post.objects.filter(created_from_schedule=schedule).count() == 1


@pytest.mark.django_db
def test_tick_schedules_accepts_z_for_utc():
    monday_0930()

    output = tick("--now", "2026-03-02T01:30:00Z")

    assert output == "2026-03-02T01:30:00+00:00: 1 schedules due: 1 posts created, 0 missed, 0 skipped, 0 failed.\n"


@pytest.mark.django_db
def test_tick_schedules_with_grace_0_records_a_slot_a_minute_late_as_missed():
    schedule = monday_0930()

    output = tick("--now", "2026-03-02T09:31:00+08:00", "--grace", "0")

    assert output.endswith(": 1 schedules due: 0 posts created, 1 missed, 0 skipped, 0 failed.\n")
    assert schedule.runs.get().outcome == ScheduleRun.Outcome.MISSED


@pytest.mark.django_db
def test_tick_schedules_with_nothing_due_says_so():
    monday_0930()

    output = tick("--now", "2026-03-02T09:29:00+08:00")

    assert output.endswith(": 0 schedules due: 0 posts created, 0 missed, 0 skipped, 0 failed.\n")


@pytest.mark.django_db
def test_tick_schedules_without_now_ticks_at_the_current_time():
    trigger = timezone.now() - timedelta(minutes=1)
    make_schedule(artist=make_artist(), kind="one_off", trigger_at=trigger, times=[])

    output = tick()

    assert ": 1 schedules due: 1 posts created" in output
    assert ScheduleRun.objects.get().slot_at == trigger


@pytest.mark.parametrize(
    ("now", "message"),
    [
        ("2026-03-02T09:30:00", "--now '2026-03-02T09:30:00' has no UTC offset; add one, e.g. +08:00 or Z."),
        (
            "next monday",
            "--now 'next monday' is not an ISO 8601 date and time such as 2026-03-08T09:30:00+08:00.",
        ),
        (
            "2026-02-30T09:30:00+08:00",
            "--now '2026-02-30T09:30:00+08:00' is not an ISO 8601 date and time such as 2026-03-08T09:30:00+08:00.",
        ),
        ("2026-03-02", "--now '2026-03-02' has no UTC offset; add one, e.g. +08:00 or Z."),  # read as midnight
    ],
)
def test_tick_schedules_refuses_a_now_it_cannot_place_in_time_with_a_clear_message(now, message):
    with pytest.raises(CommandError) as refused:
        tick("--now", now)

    assert str(refused.value) == message


def test_tick_schedules_refuses_a_negative_grace():
    with pytest.raises(CommandError) as refused:
        tick("--now", "2026-03-02T09:30:00+08:00", "--grace", "-5")

    assert str(refused.value) == "--grace must be 0 minutes or more."


def test_tick_schedules_from_the_shell_with_a_naive_now_exits_1_with_the_message_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "tick_schedules", "--now", "2026-03-02T09:30"],
        cwd=ROOT,
        env=subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'never-opened.sqlite3'}"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "CommandError: --now '2026-03-02T09:30' has no UTC offset; add one, e.g. +08:00 or Z."
    )


# --------------------------------------------------------------------------- run_scheduler


def test_the_scheduler_wakes_just_after_the_next_minute_boundary():
    assert seconds_to_next_minute(120.0) == pytest.approx(60.05)
    assert seconds_to_next_minute(179.5) == pytest.approx(0.55)


class Scheduler:
    """`manage.py run_scheduler` against the test database, its output collected line by line."""

    def __init__(self):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_scheduler"],
            cwd=ROOT,
            env=subprocess_env(DATABASE_URL=database_url_for_subprocess()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def scheduler():
    started: list[Scheduler] = []

    def start() -> Scheduler:
        started.append(Scheduler())
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_scheduler_ticks_on_start_and_stops_promptly_on_a_signal(scheduler, sig):
    schedule = make_schedule(
        artist=make_artist(), kind="one_off", trigger_at=timezone.now() - timedelta(minutes=2), times=[]
    )

    running = scheduler()
    post = wait_for(
        lambda: Post.objects.filter(created_from_schedule=schedule).first(), timeout=30, what="the first tick's post"
    )
    wait_for(lambda: "1 schedules due: 1 posts created, 0 missed, 0 skipped, 0 failed" in running.lines, timeout=10)
    # Now it sleeps until the next minute boundary (up to a minute): the signal must cut that short.
    signalled = time.monotonic()
    running.process.send_signal(sig)
    returncode = running.process.wait(timeout=20)
    took = time.monotonic() - signalled
    wait_for(lambda: running.lines and running.lines[-1] == "Scheduler stopped.", timeout=5, what="the last line")

    assert returncode == 0, "\n".join(running.lines)
    assert took < 5, f"took {took:.1f}s to stop"
    assert running.lines[0] == "Scheduler running; Ctrl-C stops it."
    assert schedule.runs.get().post == post
    assert "Traceback" not in "\n".join(running.lines)
