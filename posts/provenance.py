"""A post's provenance, read from its shots' factory jobs: shown on each shot and written into the final MP4.

Each produced asset of a shot has the job that made it (Shot.job: the picture, voice_job, clip_job); the
factory recorded on that job how it was made (factory.provenance). The render carries the post's
record, with the director's LLM model and the release of MCN OS, as MP4 metadata (`video_metadata`),
readable with `ffprobe -show_format` as the format tag `mcn_provenance` (compact JSON):

    {"v": 1, "mcn_os": "0.1.0", "post": 42, "director": {"model": "deepseek-chat", "mode": "llm", "job": 7},
     "models": {"portrait v3": ["qwen_image_edit_2509_fp8_e4m3fn.safetensors", ...]},
     "shots": [{"position": 1, "kind": "a_roll",
                "picture": {"template": "portrait", "version": 3, "sha256": "9f2c...", "seed": 42,
                            "comfyui": "0.3.64", "job": 12},
                "voice": {"model": "CosyVoice2-0.5B", "voice": "中文女", "job": 13},
                "clip": {...} | null}]}

Model files are listed once per template version (`models`), not per shot, to keep the tag small.
"""

import json

from django.conf import settings
from django.db.models import QuerySet

from factory import provenance as factory_provenance
from factory.models import Job, JobKind, JobStatus

FORMAT = 1
METADATA_KEY = "mcn_provenance"
MAX_METADATA_BYTES = 48_000  # well under one argv string's limit (128 KiB) and what players keep in a tag
SHOT_JOBS = ("job", "voice_job", "clip_job")  # the picture's, the voice's and the clip's job
STEP_JOBS = {"picture": "job", "voice": "voice_job", "clip": "clip_job"}
# What a shot's provenance does not read: the large JSON of the jobs a shot points at.
_HEAVY = ("submitted_workflow", "params", "overrides", "error_details")


def with_jobs(shots: QuerySet) -> QuerySet:
    """Shots with the jobs their provenance reads, in the same query (no query per shot)."""
    return shots.select_related(*SHOT_JOBS).defer(*(f"{job}__{field}" for job in SHOT_JOBS for field in _HEAVY))


def shot_provenance(shot) -> dict:
    """How each produced asset of the shot was made: {"picture", "voice", "clip"}, each a summary
    (factory.provenance.summary) or None (not made, still being made, or a manual asset in its place)."""
    steps = {step: factory_provenance.summary(getattr(shot, field)) for step, field in STEP_JOBS.items()}
    if shot.manual_asset:  # the upload replaces the picture and any clip made from it
        steps["picture"] = steps["clip"] = None
    return steps


def director_job(post) -> Job | None:
    """The director run whose storyboard the post has now: its latest successful `llm` job."""
    from posts.director.jobs import storyboard_subject  # the director's module imports posts.services

    return (
        Job.objects.filter(kind=JobKind.LLM, subject=storyboard_subject(post.pk), status=JobStatus.SUCCEEDED)
        .only("pk", "llm_model", "provenance")
        .order_by("-pk")
        .first()
    )


def _step(summary: dict | None, models: dict) -> dict | None:
    if summary is None:
        return None
    step: dict = {}
    template = summary.get("template")
    if template:
        label = f"{template['name']} v{template['version']}"
        models.setdefault(label, summary.get("models") or [])
        step.update(
            template=template["name"],
            version=template["version"],
            sha256=template["sha256"],
            seed=summary.get("seed"),
            comfyui=summary.get("comfyui_version", ""),
        )
    if summary.get("tts"):
        step.update(model=summary["tts"]["model"], voice=summary["tts"]["voice"])
    step["job"] = summary["job"]
    return step


def post_provenance(post) -> dict:
    """The post's record for its final video: every shot's steps, the director's model, the release."""
    models: dict[str, list[str]] = {}
    shots = []
    for shot in with_jobs(post.shots.all()).order_by("position"):
        steps = shot_provenance(shot)
        entry = {"position": shot.position, "kind": shot.kind}
        for step, summary in steps.items():
            entry[step] = _step(summary, models)
        if shot.manual_asset:
            entry["picture"] = {"manual": True}
        shots.append(entry)
    director = director_job(post)
    llm = None
    if director is not None:
        recorded = (director.provenance or {}).get("llm") or {}
        llm = {
            "model": director.llm_model or recorded.get("model", ""),  # the usage's: the model that answered
            "mode": recorded.get("mode", ""),
            "job": director.pk,
        }
    return {
        "v": FORMAT,
        "mcn_os": settings.MCN_VERSION,
        "post": post.pk,
        "director": llm,
        "models": models,
        "shots": shots,
    }


def compact(record: dict, *, limit: int = MAX_METADATA_BYTES) -> str:
    """The record as compact JSON of at most `limit` bytes: a storyboard too long for that drops the model
    lists first, then its last shots (each omission said in the record itself)."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) <= limit:
        return text
    record = {**record, "models": {}, "models_omitted": True}
    shots = list(record["shots"])
    while True:
        text = json.dumps({**record, "shots": shots}, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) <= limit or not shots:
            return text
        shots.pop()
        record["shots_omitted"] = len(record["shots"]) - len(shots)


def video_metadata(post) -> dict[str, str]:
    """The final MP4's metadata tags (factory.render writes them). Issue 18's AI label goes here too."""
    return {METADATA_KEY: compact(post_provenance(post))}
