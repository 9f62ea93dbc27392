"""Row 15 of the fault matrix: writing an output under MEDIA_ROOT fails or is cut short.

The GPU worker downloads each output to `<name>.tmp`, fsyncs and renames it (factory/execution.py _store).
Two real faults, through a real worker subprocess and the fault proxy in front of the fake ComfyUI
(its `hold` parks the /view download, so the test acts at a known point of it):

- the disk refuses the write: RLIMIT_FSIZE on the worker process, a limit the kernel enforces (write()
  fails with EFBIG; Python ignores SIGXFSZ), which needs no root and no mount, unlike a tiny tmpfs;
- the worker is SIGKILLed between the first written bytes and the rename.

Either way no truncated file may ever be referenced (I3), no .tmp may be left, and the job must finish
with the complete file once the fault is gone, without running the workflow again (I2).
"""

import contextlib
import hashlib
import os
import resource
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from factory import services
from factory.models import ErrorKind, Job, JobOutput, JobStatus
from tests.factory.test_faults import enqueue, finished, kill_whole_group
from tests.fakes.fault_proxy import FaultProxy
from tests.faults.conftest import wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(120)]

MB = 1 << 20


@pytest.fixture
def proxy(fake_comfyui):
    with FaultProxy(fake_comfyui.url) as proxy:
        yield proxy


def files_of(job: Job) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "factory" / str(job.pk)
    return sorted(p for p in folder.rglob("*") if p.is_file())


def served_file(fake, prompt_id: str) -> Path:
    """The fake ComfyUI's file behind the prompt's one output (what /view sends)."""
    [image] = fake.history_entry(prompt_id)["outputs"]["3"]["images"]
    return fake.output_dir / image["subfolder"] / image["filename"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_size_limit() -> int:
    """A limit above every other file the worker writes: the SQLite test database and its WAL."""
    db = connection.settings_dict
    sizes = [0]
    if db["ENGINE"].endswith("sqlite3"):
        sizes += [Path(f"{db['NAME']}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db['NAME']}{s}").exists()]
    return max(sizes) + 16 * MB


@contextlib.contextmanager
def inherited_file_size_limit(limit: int):
    """Children started inside inherit RLIMIT_FSIZE=`limit` (soft; the hard limit stays, so it can be
    raised again later with prlimit). Set in this process for the moment of the fork: no race."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_an_output_the_disk_refuses_fails_cleanly_and_is_saved_by_the_retry_once_there_is_room(
    fake_comfyui, proxy, start_worker
):
    limit = file_size_limit()
    proxy.hold(b"GET /view")  # every download waits for the test
    with inherited_file_size_limit(limit):
        worker = start_worker(proxy.url)
    job = enqueue()
    proxy.wait_until(lambda: proxy.held, timeout=30, what="the first download")
    source = served_file(fake_comfyui, Job.objects.get(pk=job.pk).prompt_id)
    os.truncate(source, limit + MB)  # the finished output is now larger than the worker may write
    proxy.release()

    waiting = wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, retries=1).first(),
        what="the failed save to schedule a retry",
    )
    assert waiting.error_kind == ErrorKind.EXECUTION
    assert waiting.error_message == "Saving output failed: file too large. Retrying in 1 s (1/3)."
    assert waiting.error_details["file"] == f"factory/{job.pk}/1/3-0.png"
    assert "File too large" in waiting.error_details["error"]
    assert files_of(job) == [], "a half-written .tmp or a truncated file stayed in media"
    assert not JobOutput.objects.filter(job=job).exists()
    assert worker.process.poll() is None  # EFBIG, not SIGXFSZ: the worker lives on

    # Room is made (the limit lifted) while the retry's download waits, then it goes on.
    proxy.wait_until(lambda: proxy.held, timeout=30, what="the retry's download")
    resource.prlimit(worker.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    proxy.pass_through()
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    [output] = job.outputs.all()
    assert (output.size, output.sha256) == (limit + MB, sha256(source))
    # Reconciled by prompt id: the workflow ran once; only the download was repeated.
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert len(fake_comfyui.requests("GET", "/view")) == 2
    assert_invariants(jobs=[job], fakes=[fake_comfyui])


def test_a_worker_killed_between_write_and_rename_leaves_the_taken_over_job_a_complete_file(
    fake_comfyui, proxy, start_worker, settings
):
    settings.FACTORY_STALE_SECONDS = 2
    fast = {"FACTORY_STALE_SECONDS": "2"}
    proxy.hold(b"GET /view")
    first = start_worker(proxy.url, env=fast)
    job = enqueue()
    proxy.wait_until(lambda: proxy.held, timeout=30, what="the download")
    job.refresh_from_db()
    source = served_file(fake_comfyui, job.prompt_id)
    with open(source, "ab") as handle:
        handle.write(os.urandom(4 * MB))  # big enough to arrive in many chunks
    proxy.hold(b"GET /view", response_bytes=MB)  # this time the response stops after 1 MB...
    proxy.release()
    attempt_dir = Path(settings.MEDIA_ROOT) / f"factory/{job.pk}/1"
    # The .tmp carries the writer's claim token: a worker presumed dead never writes into the live one's.
    [tmp] = wait_for(lambda: list(attempt_dir.glob("3-0.png.*.tmp")), what="the worker to start writing")
    wait_for(lambda: tmp.stat().st_size >= MB // 2, what="the worker to write part of it")

    kill_whole_group(first)  # ...and the worker dies with the .tmp half written, before the rename
    assert files_of(job) == [tmp] and tmp.stat().st_size < source.stat().st_size
    proxy.pass_through()
    second = start_worker(proxy.url, env=fast)
    assert wait_for(lambda: services.reconcile_once(), timeout=15, what="the reconciler to ring") == [job.pk]
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message, second.output())
    assert job.events.filter(kind="taken_over").count() == 1
    [output] = job.outputs.all()
    stored = Path(settings.MEDIA_ROOT) / output.file.name
    assert files_of(job) == [stored]  # the killed run's .tmp was discarded, the new run's renamed
    assert (
        (output.size, output.sha256)
        == (source.stat().st_size, sha256(source))
        == (
            stored.stat().st_size,
            sha256(stored),
        )
    )
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(jobs=[job], fakes=[fake_comfyui])
