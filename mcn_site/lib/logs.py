"""Structured logs: who a log line is about (job, post, worker), in plain text or one JSON object a line.

Where work runs for a job or a post, the code says so once:

    with log_context(job_id=job.pk, subject=job.subject):
        ...every log line in here, from any module, carries job_id and subject

ContextFilter (on the console handler, settings.LOGGING) copies the fields onto each record;
JsonFormatter writes them as JSON fields when LOG_FORMAT=json. Context variables follow the
code into nested calls but not into other threads (a worker's heartbeat logs without a job).
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

CONTEXT_FIELDS = ("job_id", "subject", "post_id", "worker")

_context: ContextVar[dict] = ContextVar("mcn_log_context", default={})  # noqa: B039 - never mutated, only replaced


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Add `fields` (job_id=, post_id=, subject=, worker=) to every log record made inside the block."""
    token = _context.set({**_context.get(), **{key: value for key, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current log_context onto each record, and a `context` suffix for the plain format."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        for key, value in fields.items():
            if not hasattr(record, key):  # a field passed with extra= wins
                setattr(record, key, value)
        record.context = "".join(f" {key}={fields[key]}" for key in CONTEXT_FIELDS if key in fields)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, the context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
