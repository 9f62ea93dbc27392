"""The cost ledger through real workers: every job a produced post ran is priced once, by the receiver in the
worker processes that finished it (the usage columns are whatever the factory measured)."""

from decimal import Decimal

import pytest

from factory.models import Job, JobStatus, RateKind
from posts import pipeline
from posts.costs import post_cost
from posts.models import CostEntry, PostStatus
from tests.factory.conftest import wait_for
from tests.posts.test_costs import rate
from tests.posts.test_production_e2e import FFPROBE, settled, six_shot_post, workers  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian package ffmpeg) is not installed"),
    pytest.mark.timeout(300),
]


def test_every_job_of_a_produced_post_is_priced_once_in_the_ledger(workers, six_shot_post):  # noqa: F811
    rate(RateKind.GPU_HOUR, "3.60")
    rate(RateKind.CPU_HOUR, "0.36")
    post, reviewer = six_shot_post

    pipeline.post_approve(post_id=post.pk, actor=reviewer)
    wait_for(lambda: settled(post), timeout=240, what="the post to be rendered")
    jobs = Job.objects.filter(subject__startswith=f"post.{post.pk}/")
    # The receiver runs after the job's commit: wait until the render's row is in too.
    wait_for(lambda: CostEntry.objects.filter(post=post).count() == jobs.count(), what="every job to be priced")

    assert post.status == PostStatus.DONE, post.failure
    # Three voices, two pictures (the five stills have two distinct inputs: the post's content cache makes
    # each once, tests/posts/test_production_e2e.py), the render.
    assert jobs.count() == 3 + 2 + 1
    entries = list(CostEntry.objects.filter(post=post).select_related("job"))
    assert {entry.job_id for entry in entries} == set(jobs.values_list("pk", flat=True))
    assert sorted({entry.step for entry in entries}) == ["picture", "render", "voice"]
    assert all(entry.job.status == JobStatus.SUCCEEDED == entry.job_status for entry in entries)
    places = Decimal("0.000001")
    for entry in entries:
        job = entry.job
        if entry.step == "picture":  # ComfyUI: its GPU seconds at the GPU hour, no CPU
            expected = (Decimal(str(job.gpu_seconds)) / 3600 * Decimal("3.60")).quantize(places)
            assert (entry.gpu_amount, entry.cpu_amount) == (expected, 0)
        else:  # TTS and render: their wall time at the CPU hour, no GPU
            expected = (Decimal(str(job.wall_seconds)) / 3600 * Decimal("0.36")).quantize(places)
            assert (entry.gpu_amount, entry.cpu_amount) == (0, expected)
    assert Decimal(post_cost(post_id=post.pk)["total"]) == sum(
        (entry.amount for entry in entries), Decimal("0")
    ).quantize(Decimal("0.0001"))
