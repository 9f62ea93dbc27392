"""A shot shows how each of its assets was made (page state, API), and the post's record goes into the MP4.

The jobs' provenance is written here as the factory writes it (tests/factory/test_provenance.py runs real jobs);
the record in a real render is read back with ffprobe in tests/posts/test_production_e2e.py.
"""

import json

import pytest
from django.conf import settings
from django.test import Client

from factory.jobs import run_job
from factory.models import JobKind, JobStatus
from mcn_site.lib import roles
from posts import provenance
from posts.director.jobs import storyboard_generate, storyboard_subject
from posts.director.prompts import DEFAULTS
from posts.models import PromptTemplate
from tests.api.conftest import token_client
from tests.factories import make_artist, make_job, make_media_file, make_post, make_shot, make_template, make_user
from tests.fakes.llm import FakeLLM

pytestmark = pytest.mark.django_db

PICTURE = {
    "format": 1,
    "template": {"name": "portrait", "version": 3, "sha256": "9f" * 32},
    "params": {"SEED": 42, "PROMPT": "gold bars"},
    "seed": 42,
    "models": [
        {"node": "1", "class_type": "UNETLoader", "input": "unet_name", "file": "qwen_image.safetensors"},
        {"node": "4", "class_type": "LoraLoaderModelOnly", "input": "lora_name", "file": "luna.safetensors"},
    ],
    "attempt": 1,
    "prompt_id": "p-1",
    "comfyui": {"version": "0.3.64", "device": "cuda:0 NVIDIA H100"},
}
VOICE = {
    "format": 1,
    "tts": {
        "engine": "cosyvoice",
        "model": "CosyVoice2-0.5B",
        "mode": "sft",
        "speaker": "中文女",
        "sample_rate": 24_000,
    },
    "params": {"text": "大家好", "spk_id": "中文女"},
}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def producer():
    return make_user(role=roles.PRODUCER, username="pia")


def produced_shot(post, position: int = 1, **extra):
    """A shot whose picture and voice jobs succeeded with the provenance the factory records."""
    template = make_template(name=f"portrait-{post.pk}-{position}")
    picture = make_job(template=template, status=JobStatus.SUCCEEDED, provenance=PICTURE)
    voice = make_job(template=None, kind=JobKind.TTS, status=JobStatus.SUCCEEDED, provenance=VOICE)
    return make_shot(post=post, position=position, job=picture, voice_job=voice, **extra)


def test_the_storyboard_state_shows_how_each_asset_of_a_shot_was_made(producer):
    post = make_post(artist=make_artist(members=[producer]))
    shot = produced_shot(post)

    response = logged_in(producer).get(f"/posts/{post.pk}/state")

    assert response.status_code == 200
    [data] = response.json()["shots"]
    assert data["provenance"]["picture"] == {
        "job": shot.job_id,
        "template": {"name": "portrait", "version": 3, "sha256": "9f" * 32},
        "seed": 42,
        "models": ["qwen_image.safetensors", "luna.safetensors"],
        "comfyui_version": "0.3.64",
    }
    assert data["provenance"]["voice"] == {
        "job": shot.voice_job_id,
        "tts": {"model": "CosyVoice2-0.5B", "mode": "sft", "voice": "中文女"},
    }
    assert data["provenance"]["clip"] is None


def test_another_artists_producer_sees_neither_the_shot_nor_its_provenance(producer):
    post = make_post(artist=make_artist(members=[producer]))
    produced_shot(post)
    stranger = make_user(role=roles.PRODUCER, username="otto")

    assert logged_in(stranger).get(f"/posts/{post.pk}/state").status_code == 404
    assert Client().get(f"/posts/{post.pk}/state").status_code in (302, 403)
    assert token_client(stranger).get(f"/api/v1/shots/{post.shots.get().pk}/").status_code == 404


def test_an_asset_being_made_again_or_replaced_by_an_upload_shows_no_provenance(producer):
    post = make_post(artist=make_artist(members=[producer]))
    running = make_job(status=JobStatus.RUNNING, provenance=PICTURE)  # submitted: not what the card shows yet
    make_shot(post=post, position=1, job=running)
    produced_shot(post, position=2, manual_asset=make_media_file("shots/manual/product.png"))

    shots = logged_in(producer).get(f"/posts/{post.pk}/state").json()["shots"]

    assert shots[0]["provenance"] == {"picture": None, "voice": None, "clip": None}
    assert shots[1]["provenance"]["picture"] is None and shots[1]["provenance"]["voice"]["tts"]["voice"] == "中文女"


def test_the_api_shows_each_shots_provenance_read_only_in_the_post_and_the_shot(producer):
    post = make_post(artist=make_artist(members=[producer]))
    shot = produced_shot(post)
    api = token_client(producer)

    [listed] = api.get(f"/api/v1/posts/{post.pk}/").json()["shots"]
    single = api.get(f"/api/v1/shots/{shot.pk}/").json()

    assert listed["provenance"] == single["provenance"]
    assert single["provenance"]["picture"]["template"]["sha256"] == "9f" * 32
    assert single["provenance"]["voice"]["tts"]["model"] == "CosyVoice2-0.5B"
    # Read-only: a write that sends it changes nothing and is not refused for it.
    edit = {"script": "New line.", "provenance": {"picture": None}, "version": 1}
    assert api.patch(f"/api/v1/shots/{shot.pk}/", edit, format="json").status_code == 200
    assert api.get(f"/api/v1/shots/{shot.pk}/").json()["provenance"]["picture"]["seed"] == 42


def test_the_openapi_schema_documents_the_shots_provenance(producer):
    schema = token_client(producer).get("/api/schema/?format=json").json()
    shot = schema["components"]["schemas"]["Shot"]["properties"]["provenance"]
    assert shot["readOnly"] is True
    ref = shot.get("$ref") or shot["allOf"][0]["$ref"]
    steps = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]
    assert set(steps) == {"picture", "voice", "clip"}
    step = schema["components"]["schemas"]["StepProvenance"]["properties"]
    assert {"job", "template", "seed", "models", "comfyui_version", "tts"} <= set(step)


@pytest.mark.parametrize("shots", [2, 12])
def test_the_api_reads_the_provenance_of_every_shot_without_a_query_per_shot(
    producer, shots, django_assert_max_num_queries
):
    post = make_post(artist=make_artist(members=[producer]))
    for position in range(1, shots + 1):
        produced_shot(post, position)
    api = token_client(producer)

    with django_assert_max_num_queries(12):
        data = api.get(f"/api/v1/posts/{post.pk}/").json()

    assert [s["provenance"]["picture"]["seed"] for s in data["shots"]] == [42] * shots


# --- the record for the MP4 ----------------------------------------------------------------------


def test_the_posts_record_names_every_shots_steps_the_director_model_and_the_release(producer):
    post = make_post(artist=make_artist(members=[producer]))
    first = produced_shot(post, 1)
    make_shot(post=post, position=2, manual_asset=make_media_file("shots/manual/p.png"), script="", kind="product")
    director = make_job(
        template=None,
        kind=JobKind.LLM,
        status=JobStatus.SUCCEEDED,
        subject=storyboard_subject(post.pk),
        llm_model="deepseek-chat",
        provenance={"format": 1, "llm": {"model": "deepseek-chat", "mode": "llm"}},
    )

    [(key, text)] = provenance.video_metadata(post).items()
    record = json.loads(text)

    assert key == "mcn_provenance"
    assert text == json.dumps(record, ensure_ascii=False, separators=(",", ":"))  # compact, Chinese as is
    assert (record["post"], record["mcn_os"]) == (post.pk, settings.MCN_VERSION)
    assert record["director"] == {"model": "deepseek-chat", "mode": "llm", "job": director.pk}
    assert record["models"] == {"portrait v3": ["qwen_image.safetensors", "luna.safetensors"]}
    assert record["shots"] == [
        {
            "position": 1,
            "kind": "a_roll",
            "picture": {
                "template": "portrait",
                "version": 3,
                "sha256": "9f" * 32,
                "seed": 42,
                "comfyui": "0.3.64",
                "job": first.job_id,
            },
            "voice": {"model": "CosyVoice2-0.5B", "voice": "中文女", "job": first.voice_job_id},
            "clip": None,
        },
        {"position": 2, "kind": "product", "picture": {"manual": True}, "voice": None, "clip": None},
    ]


def test_a_record_too_long_for_a_tag_drops_the_model_lists_then_the_last_shots_and_says_so():
    record = {
        "v": 1,
        "models": {"portrait v3": ["m" * 200] * 10},
        "shots": [{"position": n, "picture": {"sha256": "f" * 64}} for n in range(1, 41)],
    }
    fits = json.loads(provenance.compact(record, limit=100_000))
    assert fits == record

    no_models = json.loads(provenance.compact(record, limit=5_000))
    assert no_models["models"] == {} and no_models["models_omitted"] is True and len(no_models["shots"]) == 40

    short = provenance.compact(record, limit=1_000)
    cut = json.loads(short)
    assert len(short.encode()) <= 1_000
    assert cut["shots"] == record["shots"][: len(cut["shots"])] and cut["shots_omitted"] == 40 - len(cut["shots"])


# --- the director's model ------------------------------------------------------------------------


STORYBOARD = {
    "shots": [
        {"kind": "a_roll", "duration": 10, "script": "Rates are falling.", "visual_prompt": ""},
        {"kind": "b_roll", "duration": 10, "script": "", "visual_prompt": "A falling line chart"},
        {"kind": "a_roll", "duration": 10, "script": "Here is what it means for savings.", "visual_prompt": ""},
    ]
}


def run_director_job(post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = storyboard_generate(post_id=post.pk, actor=make_user())
    run_job(job.pk)  # what the CPU worker does with the rung job
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    return job


@pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does
def test_the_director_job_records_its_llm_model_and_the_post_carries_it(settings, django_capture_on_commit_callbacks):
    for role, text in DEFAULTS.items():  # a transactional test before this one flushed the migration's prompts
        PromptTemplate.objects.get_or_create(role=role, version=1, defaults={"template": text, "active": True})
    post = make_post(brief="降息预期下，普通投资者该怎么看债券。")
    with FakeLLM(api_key="sk-test-director") as fake:
        settings.LLM_API_KEY, settings.LLM_BASE_URL, settings.LLM_MODEL = "sk-test-director", fake.url, "deepseek-chat"
        fake.reply(json.dumps(STORYBOARD))
        job = run_director_job(post, django_capture_on_commit_callbacks)

    assert job.provenance["llm"] == {"model": "deepseek-chat", "mode": "llm"}
    assert provenance.post_provenance(post)["director"] == {"model": "deepseek-chat", "mode": "llm", "job": job.pk}


@pytest.mark.django_db(transaction=True)
def test_an_offline_storyboard_names_no_llm_model(settings, django_capture_on_commit_callbacks):
    settings.LLM_API_KEY = ""
    post = make_post(brief="降息预期下，普通投资者该怎么看债券。")
    job = run_director_job(post, django_capture_on_commit_callbacks)

    assert job.provenance["llm"] == {"model": "", "mode": "offline"}
    assert provenance.post_provenance(post)["director"] == {"model": "", "mode": "offline", "job": job.pk}
