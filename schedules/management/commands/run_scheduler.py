import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from posts.webhooks import webhook_ring_due
from schedules.services import schedule_tick

log = logging.getLogger(__name__)


def seconds_to_next_minute(now: float) -> float:
    """Wake just after the next minute boundary, when that minute's slots have come."""
    return 60.0 - (now % 60.0) + 0.05


class Command(BaseCommand):
    help = (
        "The scheduler: ticks at every minute boundary and creates the draft posts whose slot has come "
        "(and re-rings overdue webhook deliveries). "
        "Runs until SIGTERM or Ctrl-C (finishing the tick in progress). Any number may run at once."
    )

    def handle(self, *args, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("Scheduler running; Ctrl-C stops it.")
        while not stop.is_set():
            close_old_connections()
            try:
                result = schedule_tick()
            except Exception:  # a database blip must not end the loop; the next tick catches up
                log.exception("scheduler tick failed")
            else:
                if result.schedules:
                    self.stdout.write(str(result))
            try:
                # Webhook retries whose rq doorbell was lost (Redis restarted) ring again here.
                webhook_ring_due()
            except Exception:
                log.exception("webhook re-ring failed")
            stop.wait(seconds_to_next_minute(time.time()))
        self.stdout.write("Scheduler stopped.")
