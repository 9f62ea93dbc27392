"""Structured logs: log_context's fields on every record, JSON lines with LOG_FORMAT=json, from a real worker too."""

import io
import json
import logging
import subprocess
import sys

import pytest

from factory import services
from factory.models import Job
from mcn_site.lib.logs import ContextFilter, JsonFormatter, log_context
from tests.factories import make_template
from tests.factory.conftest import WorkerProcess, subprocess_env, wait_for
from tests.fakes.comfyui import FakeComfyUI
from tests.processes import ROOT


@pytest.fixture
def captured():
    """A logger whose lines go through the project's filter and JSON formatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_line_inside_log_context_carries_the_job_and_post_as_json_fields(captured):
    logger, lines = captured
    with log_context(job_id=42, subject="post.7/shot.3/picture@0123456789abcdef"), log_context(post_id=7):
        logger.info("rendering %s", "shot 3")
    logger.warning("outside")

    inside, outside = lines()
    assert inside["message"] == "rendering shot 3"
    assert inside["level"] == "INFO" and inside["logger"] == "tests.logs"
    assert inside["job_id"] == 42 and inside["post_id"] == 7
    assert inside["subject"] == "post.7/shot.3/picture@0123456789abcdef"
    assert inside["timestamp"].endswith("+00:00")
    assert outside["message"] == "outside" and "job_id" not in outside and "post_id" not in outside


def test_an_inner_context_ends_with_its_block_and_exceptions_are_kept(captured):
    logger, lines = captured
    with log_context(job_id=1):
        with log_context(job_id=2, worker="gpu-a"):
            logger.info("inner")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("outer")

    inner, outer = lines()
    assert (inner["job_id"], inner["worker"]) == (2, "gpu-a")
    assert outer["job_id"] == 1 and "worker" not in outer
    assert "ValueError: boom" in outer["exception"]


def test_the_plain_format_names_the_context_at_the_end_of_the_line():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    with log_context(job_id=5, post_id=9):
        ContextFilter().filter(record)
    assert record.context == " job_id=5 post_id=9"
    formatter = logging.Formatter("%(levelname)s %(message)s%(context)s")
    assert formatter.format(record) == "INFO hello job_id=5 post_id=9"


def _log_in_a_fresh_process(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django, logging; django.setup();"
        "from mcn_site.lib.logs import log_context\n"
        "with log_context(job_id=3, post_id=8): logging.getLogger('factory.test').warning('hi')"
    )
    environ = {"DJANGO_SETTINGS_MODULE": "mcn_site.settings", "SECRET_KEY": "tests-only", "DEBUG": "0", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(**environ), capture_output=True, text=True
    )


@pytest.mark.django_db
def test_log_format_json_in_the_environment_makes_settings_log_json_lines():
    result = _log_in_a_fresh_process(LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert line["message"] == "hi" and line["logger"] == "factory.test" and line["level"] == "WARNING"
    assert line["job_id"] == 3 and line["post_id"] == 8


@pytest.mark.django_db
def test_plain_is_the_default_and_a_wrong_log_format_stops_the_start():
    plain = _log_in_a_fresh_process(LOG_FORMAT="")
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.strip().endswith("WARNING factory.test hi job_id=3 post_id=8")

    wrong = _log_in_a_fresh_process(LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "LOG_FORMAT must be plain or json" in wrong.stderr


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_with_log_format_json_logs_the_jobs_lines_with_its_job_id(settings, tmp_path):
    import django_rq

    django_rq.get_connection("default").flushdb()
    make_template(name="tiny-logs")
    with FakeComfyUI() as fake:
        worker = WorkerProcess(
            comfyui_url=fake.url, name="gpu-json", media_root=settings.MEDIA_ROOT, env={"LOG_FORMAT": "json"}
        )
        try:
            job = services.job_enqueue(template="tiny-logs", params={"WIDTH": 64}, subject="post.77/shot.1")
            wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, what="the job to finish")
            lines = wait_for(
                lambda: [
                    entry
                    for entry in (json.loads(line) for line in list(worker.lines) if line.startswith("{"))
                    if entry.get("job_id") == job.pk and entry["message"].startswith("job run ends")
                ],
                what=f"the worker's last line for job {job.pk}\n{worker.output()}",
            )
        finally:
            worker.stop()
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    [end] = lines
    assert end["message"] == "job run ends: succeeded"
    assert end["subject"] == "post.77/shot.1" and end["worker"] == "gpu-json"
    assert end["logger"] == "factory.jobs" and end["level"] == "INFO"
    # Every JSON line of the worker parses; the job's own lines all carry its id.
    starts = [json.loads(line) for line in worker.lines if line.startswith("{") and "job run starts" in line]
    assert [entry["job_id"] for entry in starts] == [job.pk]
