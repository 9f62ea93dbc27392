import signal
import threading

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from factory.services import reconcile_once


class Command(BaseCommand):
    help = (
        "Re-drive factory jobs stuck in a non-terminal state (worker killed, Redis restarted) "
        "without submitting anything twice. Loops until SIGTERM; --once for cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", type=float, default=30.0, help="seconds between passes (default 30)")

    def handle(self, *args, once: bool, interval: float, **options):
        stop = threading.Event()
        if not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        while True:
            close_old_connections()
            rung = reconcile_once()
            if rung or once:
                self.stdout.write(f"Reconciled {len(rung)} job(s){': ' + ', '.join(map(str, rung)) if rung else ''}.")
            if once or stop.wait(interval):
                return
