"""The director writes and rewrites storyboards; locked shots and manual assets are never touched."""

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from factory import services as factory_services
from factory.jobs import run_job
from factory.models import Job, JobKind, JobStatus
from factory.services import job_cancel
from posts.director.jobs import run_director, storyboard_generate
from posts.director.prompts import DEFAULTS
from posts.director.service import DirectorFailed, write_storyboard
from posts.director.timing import speaking_seconds
from posts.models import PostEvent, PostStatus, PromptTemplate, ShotKind
from tests.factories import make_post, make_shot, make_user, png_bytes
from tests.fakes.llm import FakeLLM

pytestmark = pytest.mark.django_db

GOOD = {
    "shots": [
        {"kind": "a_roll", "duration": 6, "script": "Rates are falling.", "visual_prompt": ""},
        {"kind": "b_roll", "duration": 5, "script": "", "visual_prompt": "A falling line chart"},
        {"kind": "a_roll", "duration": 7, "script": "Here is what it means for savings.", "visual_prompt": ""},
    ]
}


@pytest.fixture
def llm(settings):
    with FakeLLM(api_key="sk-test-director") as fake:
        settings.LLM_API_KEY = "sk-test-director"
        settings.LLM_BASE_URL = fake.url
        settings.LLM_TIMEOUT = 5
        yield fake


@pytest.fixture
def storyboard():
    """A six-shot storyboard whose shots 1 and 4 are locked and shot 6 has a manual asset."""
    post = make_post(brief="降息预期下，普通投资者该怎么看债券。利率往下走，久期长的债券价格往上。")
    for position in range(1, 7):
        make_shot(post=post, position=position, locked=position in (1, 4), script=f"Old line {position}.")
    sixth = post.shots.get(position=6)
    sixth.manual_asset.save("clip.png", io.BytesIO(png_bytes(64, 64)), save=True)
    return post


def sacred(post) -> list[tuple]:
    return [
        (s.pk, s.position, s.script, s.duration_seconds, s.manual_asset.name)
        for s in post.shots.filter(position__in=[1, 4, 6])
    ]


def test_offline_rewrite_keeps_locked_and_manual_shots_byte_for_byte(storyboard):
    before = sacred(storyboard)
    post = write_storyboard(post_id=storyboard.pk, actor=None)
    after = [(s.pk, s.position, s.script, s.duration_seconds, s.manual_asset.name) for s in post.shots.all()]
    for row in before:
        assert row in after
    others = [s for s in post.shots.all() if s.pk not in {row[0] for row in before}]
    assert others and all(not s.script.startswith("Old line") for s in others)
    assert post.version == storyboard.version + 1


def test_llm_storyboard_fills_the_unlocked_slots_and_sees_the_locked_shots(llm, storyboard):
    llm.reply(json.dumps(GOOD))
    before = sacred(storyboard)
    post = write_storyboard(post_id=storyboard.pk, actor=None, feedback="Shorter sentences")
    shots = list(post.shots.order_by("position"))
    assert [s.position for s in shots] == [1, 2, 3, 4, 5, 6]
    assert [
        (s.pk, s.position, s.script, s.duration_seconds, s.manual_asset.name) for s in shots if s.position in (1, 4, 6)
    ] == before
    assert [s.script or s.visual_prompt for s in shots if s.position in (2, 3, 5)] == [
        "Rates are falling.",
        "A falling line chart",
        "Here is what it means for savings.",
    ]
    # Spoken lines last as long as they take to say (English at ~2.6 words a second), not what the LLM guessed.
    assert shots[1].duration_seconds == Decimal(str(speaking_seconds("Rates are falling.")))
    assert shots[2].kind == ShotKind.B_ROLL
    [request] = llm.completions()
    assert request.json["response_format"] == {"type": "json_object"}
    assert "Old line 1." in request.prompt_text and "Shorter sentences" in request.prompt_text


def test_an_invalid_answer_gets_one_repair_request_quoting_the_problem(llm, storyboard):
    broken = {"shots": [{**GOOD["shots"][0], "duration": "six"}, *GOOD["shots"][1:]]}
    llm.reply("Sure! ```json\n" + json.dumps(broken) + "\n```")
    llm.reply(json.dumps(GOOD))
    write_storyboard(post_id=storyboard.pk, actor=None)
    _first, repair = llm.completions()
    assert "shots[0].duration must be a number" in repair.messages[-1]["content"]


def test_two_invalid_answers_fail_clearly_and_leave_the_storyboard_untouched(llm, storyboard):
    llm.reply('{"shots": []}')
    llm.reply("I cannot help with that.")
    before = list(storyboard.shots.values_list("pk", "position", "script"))
    with pytest.raises(DirectorFailed) as failure:
        write_storyboard(post_id=storyboard.pk, actor=None)
    assert failure.value.message.startswith("The LLM returned an invalid storyboard:")
    assert failure.value.details["raw"] == "I cannot help with that."
    assert list(storyboard.shots.values_list("pk", "position", "script")) == before


def test_rewriting_a_rejected_post_puts_it_back_in_draft_with_the_feedback_in_its_trail(storyboard):
    storyboard.status = PostStatus.REJECTED
    storyboard.feedback = "Too long"
    storyboard.save()
    post = write_storyboard(post_id=storyboard.pk, actor=None)  # the reviewer's feedback is the brief
    assert post.status == PostStatus.DRAFT
    assert PostEvent.objects.filter(post=post, to_status=PostStatus.DRAFT, note__contains="Too long").exists()


@pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does
def test_the_director_runs_as_an_llm_factory_job(storyboard, django_capture_on_commit_callbacks):
    producer = make_user()
    with django_capture_on_commit_callbacks(execute=False):
        job = storyboard_generate(post_id=storyboard.pk, actor=producer)
    assert (job.kind, job.subject) == (JobKind.LLM, f"post.{storyboard.pk}/storyboard")
    run_job(job.pk)  # what the CPU worker does with the rung job
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    storyboard.refresh_from_db()
    assert storyboard.version > 1 and storyboard.events.filter(note__contains="offline director").exists()


def test_asking_again_while_the_director_works_returns_the_same_job_and_other_feedback_waits(storyboard):
    producer = make_user()
    job = storyboard_generate(post_id=storyboard.pk, actor=producer, feedback="Shorter")
    events = storyboard.events.count()

    assert storyboard_generate(post_id=storyboard.pk, actor=producer, feedback="Shorter") == job
    with pytest.raises(ValidationError) as refused:
        storyboard_generate(post_id=storyboard.pk, actor=producer, feedback="Funnier")
    assert refused.value.messages == [
        f"The director is still writing this storyboard (job {job.pk}). Wait for it, or cancel it, "
        "before asking again with other feedback."
    ]
    assert Job.objects.filter(subject=job.subject).count() == 1 and storyboard.events.count() == events

    job_cancel(job_id=job.pk)  # once it has ended, the next request queues a new job
    again = storyboard_generate(post_id=storyboard.pk, actor=producer, feedback="Funnier")
    assert again != job and again.params["feedback"] == "Funnier"


def test_a_post_in_review_cannot_be_rewritten():
    post = make_post(status=PostStatus.REVIEW)
    with pytest.raises(Exception, match="cannot be edited"):
        storyboard_generate(post_id=post.pk, actor=make_user())


def test_direct_post_command_prints_the_new_storyboard(storyboard):
    out = io.StringIO()
    call_command("direct_post", str(storyboard.pk), stdout=out)
    text = out.getvalue()
    assert "offline director" in text and "🔒 1." in text and "🔒 4." in text


@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(locked=st.sets(st.integers(min_value=1, max_value=6)))
def test_locked_shots_survive_any_lock_pattern_across_regenerations(locked):
    post = make_post(brief="Rates are falling. Bonds rise when rates fall. Keep some cash for the dip.")
    for position in range(1, 7):
        make_shot(post=post, position=position, locked=position in locked, script=f"Kept line {position}.")
    before = [(s.pk, s.position, s.script, s.duration_seconds) for s in post.shots.filter(locked=True)]
    for _ in range(2):
        write_storyboard(post_id=post.pk, actor=None)
    after = [(s.pk, s.position, s.script, s.duration_seconds) for s in post.shots.filter(locked=True)]
    assert after == before


def test_the_prompt_sent_carries_the_persona_and_the_feedback(llm, storyboard):
    storyboard.artist.persona = "A calm former bond trader who explains money to her younger sister."
    storyboard.artist.save()
    llm.reply(json.dumps(GOOD))
    write_storyboard(post_id=storyboard.pk, actor=None, feedback="Mention inflation once")
    [request] = llm.completions()
    assert "former bond trader" in request.prompt_text and "Mention inflation once" in request.prompt_text


def test_an_llm_refusal_fails_with_its_reason_and_touches_nothing(llm, storyboard):
    llm.reply_status(400, message="Invalid model")
    before = list(storyboard.shots.values_list("pk", "position", "script"))
    with pytest.raises(DirectorFailed) as failure:
        write_storyboard(post_id=storyboard.pk, actor=None)
    assert failure.value.kind == "config" and "sk-test-director" not in failure.value.message
    assert list(storyboard.shots.values_list("pk", "position", "script")) == before


def test_a_director_run_taken_over_while_it_waited_writes_no_storyboard(storyboard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = storyboard_generate(post_id=storyboard.pk, actor=None)
    stale = factory_services.job_start(job_id=job.pk, worker_name="cpu-a", server_url="")
    # cpu-a went silent (stopped) while the LLM answered; cpu-b took the job over.
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert factory_services.job_start(job_id=job.pk, worker_name="cpu-b", server_url="")
    before = (storyboard.version, list(storyboard.shots.order_by("position").values_list("pk", "script")))

    with pytest.raises(factory_services.ClaimLost):
        run_director(stale)  # cpu-a wakes up with its answer

    storyboard.refresh_from_db()
    assert (storyboard.version, list(storyboard.shots.order_by("position").values_list("pk", "script"))) == before
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING  # cpu-b's, untouched


# --- the cost ledger: what the director's LLM calls used ----------------------------------------------------


def director_job(storyboard, django_capture_on_commit_callbacks) -> Job:
    # The default prompts come from a data migration, which an earlier transactional test's flush removed.
    for role, text in DEFAULTS.items():
        PromptTemplate.objects.get_or_create(role=role, version=1, defaults={"template": text, "active": True})
    with django_capture_on_commit_callbacks(execute=False):
        return storyboard_generate(post_id=storyboard.pk, actor=make_user())


@pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does
def test_a_director_job_records_the_model_and_tokens_of_every_llm_call(
    llm, storyboard, django_capture_on_commit_callbacks
):
    storyboard.source_content = "An article about bond prices when rates fall."  # so the analyst is asked first
    storyboard.save()
    llm.reply("Rates down, long bonds up.", model="deepseek-chat-v3")  # the analyst
    llm.reply('{"shots": []}', model="deepseek-chat-v3")  # the writer: invalid, so one repair request
    llm.reply(json.dumps(GOOD), model="deepseek-chat-v3")
    job = director_job(storyboard, django_capture_on_commit_callbacks)

    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    answers = llm.answers()
    assert len(answers) == 3
    assert job.llm_model == "deepseek-chat-v3"  # the model that answered, not the alias asked for
    assert job.llm_prompt_tokens == sum(a["usage"]["prompt_tokens"] for a in answers) > 0
    assert job.llm_completion_tokens == sum(a["usage"]["completion_tokens"] for a in answers) > 0
    assert job.gpu_seconds == 0 and job.wall_seconds > 0
    assert job.events.filter(kind="usage").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_failed_director_job_still_records_what_its_calls_used(llm, storyboard, django_capture_on_commit_callbacks):
    llm.reply('{"shots": []}')
    llm.reply("I cannot help with that.")
    job = director_job(storyboard, django_capture_on_commit_callbacks)

    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    answers = llm.answers()
    assert job.llm_prompt_tokens == sum(a["usage"]["prompt_tokens"] for a in answers) > 0
    assert job.llm_completion_tokens == sum(a["usage"]["completion_tokens"] for a in answers)


@pytest.mark.django_db(transaction=True)
def test_an_answer_without_usage_records_no_tokens_and_the_job_succeeds(
    llm, storyboard, django_capture_on_commit_callbacks
):
    llm.reply(json.dumps(GOOD), usage=None)
    job = director_job(storyboard, django_capture_on_commit_callbacks)

    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert "usage" not in llm.answers()[0]
    assert (job.llm_model, job.llm_prompt_tokens, job.llm_completion_tokens) == ("deepseek-chat", 0, 0)
