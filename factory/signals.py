"""How callers hear about their jobs without the factory knowing them.

`job_changed` is sent (after commit) whenever a job's status changes, it makes
progress, or it produces a file. Receivers get primitive data only:

    job_id, subject, status, event ("status" | "progress" | "output"),
    progress {"node", "value", "max", "percent"}, error {"kind", "message"} or None

A caller filters on `subject` (e.g. "post.42/...") and does its own thing.
"""

from django.dispatch import Signal

job_changed = Signal()
