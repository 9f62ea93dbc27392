"""What a ComfyUI prompt consumed, from ComfyUI's own execution timestamps (the cost ledger's GPU figures).

ComfyUI stamps `timestamp` (ms since the epoch, the server's clock) on `execution_start`, `execution_cached`,
`execution_success`, `execution_error` and `execution_interrupted`, on the websocket and in the prompt's
`/history` entry (`status.messages`). A prompt's GPU time is its end message's stamp minus its start's: both
from the server's clock, so the worker's clock and the network play no part. The history entry is the
authority (the socket can miss frames, or be re-attached after the start); the socket fills in what a prompt
that never reached history (interrupted after a stall, lost with its server) showed before it went.

A prompt that never started costs nothing. One whose end was never seen (we interrupted it after a stall or a
cancel, or its server went away) held the GPU from its start until we let it go: measured on our clock from
hearing its `execution_start` to sending the interrupt, or, when the socket missed the start, to the last
stamp seen (a lower bound). A fully cached prompt runs start to success in a few ms.

Each prompt is recorded once per job (services.job_record_usage keyed by the prompt id): a worker that takes
over and reads the same prompt from /history again adds nothing.
"""

import logging
import time

from factory import services
from factory.models import Job

log = logging.getLogger(__name__)

START = "execution_start"
ENDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


class PromptClock:
    """The execution stamps of one prompt as they are seen; `gpu_seconds` and `queue_seconds` from them.

    `submitted_at`: the worker's time.time() just before POST /prompt (None for a prompt re-attached
    to): ComfyUI's own queue wait is from then to the moment its `execution_start` arrived on the socket.
    """

    def __init__(self, prompt_id: str, *, submitted_at: float | None = None):
        self.prompt_id = prompt_id
        self.submitted_at = submitted_at
        self.start_ms: int | None = None
        self.end_ms: int | None = None
        self.last_ms: int | None = None
        self.start_heard_at: float | None = None  # our clock, when the socket brought execution_start
        self.let_go_at: float | None = None  # our clock, when we interrupted it or stopped waiting for it
        self.from_history = False

    def see(self, kind: str, data: dict) -> None:
        """A socket message for this prompt (any kind: only stamped execution messages count)."""
        stamp = _stamp(data)
        if stamp is None or self.from_history:
            return
        if kind == START and self.start_ms is None:
            self.start_ms, self.start_heard_at = stamp, time.time()
        elif kind in ENDS and self.end_ms is None:
            self.end_ms = stamp
        self.last_ms = max(self.last_ms or stamp, stamp)

    def let_go(self) -> None:
        """We stop waiting for the prompt (an interrupt is about to go, or the watch ended); the first call counts."""
        if self.let_go_at is None:
            self.let_go_at = time.time()

    def settle(self, entry: dict) -> None:
        """The prompt's /history entry: its messages replace what the socket brought (the authority)."""
        messages = (entry.get("status") or {}).get("messages") or []
        start = end = last = None
        for message in messages:
            if not (isinstance(message, list | tuple) and len(message) == 2 and isinstance(message[1], dict)):
                continue
            kind, stamp = message[0], _stamp(message[1])
            if stamp is None:
                continue
            if kind == START and start is None:
                start = stamp
            elif kind in ENDS and end is None:
                end = stamp
            last = max(last or stamp, stamp)
        if start is None:
            return  # an entry without stamps (a ComfyUI before 2024-07): keep what the socket saw
        self.start_ms, self.end_ms, self.last_ms, self.from_history = start, end, last, True

    @property
    def gpu_seconds(self) -> float:
        """Execution time: start to end, never negative; 0 if it never started. Without an end: see the module."""
        if self.start_ms is None:
            return 0.0
        if self.end_ms is not None:
            return max(0.0, (self.end_ms - self.start_ms) / 1000)
        stamped = max(0.0, ((self.last_ms or self.start_ms) - self.start_ms) / 1000)
        if self.start_heard_at is not None and self.let_go_at is not None:
            return max(stamped, self.let_go_at - self.start_heard_at)
        return stamped

    @property
    def queue_seconds(self) -> float:
        """ComfyUI's queue wait: our submit to its execution_start (0 for a prompt we did not submit here).

        Measured on our clock when the socket brought the start; from the start's stamp otherwise, which
        assumes the two machines' clocks agree (NTP), so it is clamped at 0.
        """
        if self.submitted_at is None or self.start_ms is None:
            return 0.0
        started = self.start_heard_at if self.start_heard_at is not None else self.start_ms / 1000
        return max(0.0, started - self.submitted_at)


def _stamp(data: dict) -> int | None:
    value = data.get("timestamp") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def record_prompt(job: Job, clock: PromptClock) -> None:
    """Add the prompt's GPU time and ComfyUI queue wait to the job, once per prompt id (ClaimLost if not ours)."""
    if clock.start_ms is None:
        return  # never ran: nothing consumed (a lost prompt, one cancelled while queued)
    clock.let_go()
    services.job_record_usage(
        job_id=job.pk,
        claim=job.claim,
        key=f"prompt:{clock.prompt_id}",
        gpu_seconds=clock.gpu_seconds,
        queue_seconds=clock.queue_seconds,
    )
