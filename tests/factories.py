"""Small builders for test data. Each test builds what it asserts on.

(factory_boy would be the house choice, but its top-level module is named
`factory`, the same as our fixed `factory/` app, so we keep plain functions.)
"""

import io
import itertools
import math
import struct
import wave
import zlib

from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from artists.models import Artist, Source, Voice, Wardrobe
from mcn_site.lib import roles
from posts.models import Post, Shot, ShotKind
from schedules.models import Schedule

_seq = itertools.count(1)


def png_bytes(width: int = 512, height: int = 512, colour: str = "#4f46e5", fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, fmt)
    return buffer.getvalue()


def png_upload(width: int = 512, height: int = 512, name: str = "face.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(width, height), content_type="image/png")


def png_claiming(width: int, height: int) -> bytes:
    """A 70-byte PNG whose header claims `width` x `height` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def wav_bytes(seconds: float = 5.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = int(seconds * rate)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(frames)))
    return buffer.getvalue()


def wav_upload(seconds: float = 5.0, name: str = "sample.wav") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, wav_bytes(seconds), content_type="audio/wav")


def mp4_bytes() -> bytes:
    """The first bytes of an MP4 (an ftyp box): enough for content sniffing."""
    return struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2" + b"\x00" * 64


def make_user(*, role: str | None = roles.PRODUCER, username: str | None = None, **extra) -> User:
    user = User.objects.create_user(
        username=username or f"user{next(_seq)}", password="pw-for-tests-1", is_staff=True, **extra
    )
    if role:
        if not Group.objects.filter(name=role).exists():
            # A transactional test's flush took the groups the migration made: bring them back.
            roles.sync_roles(django_apps)
        user.groups.add(Group.objects.get(name=role))
    return user


def make_voice(**extra) -> Voice:
    return Voice.objects.create(**{"name": f"Voice {next(_seq)}", "speaker_id": "zh_female_1", **extra})


def make_wardrobe(**extra) -> Wardrobe:
    n = next(_seq)
    return Wardrobe.objects.create(
        **{"name": f"Wardrobe {n}", "comfy_payload": {"lora_name": f"outfit_{n}.safetensors"}, **extra}
    )


def make_source(**extra) -> Source:
    return Source.objects.create(
        **{
            "name": f"Source {next(_seq)}",
            "category": Source.Category.FINANCE,
            "url": "https://example.com/feed",
            **extra,
        }
    )


def make_artist(*, members=(), wardrobes=(), **extra) -> Artist:
    n = next(_seq)
    artist = Artist(
        stage_name=extra.pop("stage_name", f"Artist {n}"),
        slug=extra.pop("slug", f"artist-{n}"),
        niche=extra.pop("niche", "finance"),
        voice=extra.pop("voice", None) or make_voice(),
        **extra,
    )
    artist.face_anchor.save(f"face-{n}.png", png_upload(), save=False)
    artist.save()
    artist.members.set(members)
    artist.allowed_wardrobes.set(wardrobes)
    return artist


def make_post(*, artist: Artist | None = None, shots: int = 0, **extra) -> Post:
    post = Post.objects.create(
        **{"title": f"Post {next(_seq)}", "artist": artist or make_artist(), "brief": "A brief.", **extra}
    )
    for position in range(1, shots + 1):
        make_shot(post=post, position=position)
    return post


def make_shot(*, post: Post, position: int, **extra) -> Shot:
    return Shot.objects.create(
        **{"post": post, "position": position, "kind": ShotKind.A_ROLL, "script": f"Line {position}.", **extra}
    )


def make_schedule(*, artist: Artist, now=None, **extra) -> Schedule:
    """A saved schedule (weekly, Mondays 09:00 unless told); its first slot counts from `now` (default: now)."""
    from schedules.services import schedule_save

    schedule = Schedule(
        **{"title": f"Schedule {next(_seq)}", "artist": artist, "weekdays": ["monday"], "times": ["09:00"], **extra}
    )
    return schedule_save(schedule=schedule, now=now)


def make_postevent(*, post: Post, **extra):
    """One row of a post's trail (a "created" event unless told otherwise)."""
    return post.events.create(**{"kind": "created", "to_status": post.status, **extra})


# --- factory (GPU jobs) ------------------------------------------------------------------
# Imports stay inside the builders so this block can be appended without touching the header.

TINY_WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{WIDTH}}", "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "tiny"}},
}

# Three executed nodes and no model: what the fault tests run (the fake's steps_per_node makes it slow).
BASIC_WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": "{{WIDTH}}", "height": 48, "batch_size": 1, "color": 3368652},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "basic"}},
}


def make_template(**extra):
    """A valid WorkflowTemplate (EmptyImage -> SaveImage, one int placeholder) unless told otherwise."""
    import copy

    from factory.models import WorkflowTemplate

    return WorkflowTemplate.objects.create(
        **{
            "name": f"tiny-{next(_seq)}",
            "workflow": copy.deepcopy(TINY_WORKFLOW),
            "placeholders": {"WIDTH": {"type": "int", "default": 64}},
            **extra,
        }
    )


def make_job(*, template=None, **extra):
    """A queued ComfyUI job row, written directly (set status and the machine fields through `extra`)."""
    from django.utils import timezone

    from factory.models import Job, JobKind

    return Job.objects.create(
        **{
            "kind": JobKind.COMFYUI,
            "template": template or make_template(),
            "params": {"WIDTH": 64},
            "subject": f"post.{next(_seq)}/shot.1",
            "queued_at": timezone.now(),
            **extra,
        }
    )


def make_job_output(*, job, data: bytes | None = None, name: str = "tiny_00001_.png", **extra):
    """A file a job produced, stored in media like the worker stores it (a PNG unless told otherwise)."""
    import hashlib

    from django.core.files.base import ContentFile

    from factory.models import JobOutput

    data = png_bytes(64, 64) if data is None else data
    output = JobOutput(
        **{
            "job": job,
            "attempt": job.attempts or 1,
            "node_id": "2",
            "original_name": name,
            "content_type": "image/png",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **extra,
        }
    )
    output.file.save(f"job{job.pk}-{name}", ContentFile(data), save=False)
    output.save()
    return output


def make_gpu_worker(**extra):
    """A GpuWorker row as a heartbeat leaves it (an 80 GiB GPU, a quarter used, seen just now)."""
    from django.utils import timezone

    from factory.models import GpuWorker

    return GpuWorker.objects.create(
        **{
            "name": f"gpu-{next(_seq)}",
            "server_url": "http://127.0.0.1:8188",
            "queues": "gpu-vip,gpu",
            "device_name": "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync",
            "vram_total": 80 * 2**30,
            "vram_free": 60 * 2**30,
            "server_reachable": True,
            "last_seen_at": timezone.now(),
            **extra,
        }
    )


def make_media_file(name: str = "artists/face.png", data: bytes | None = None) -> str:
    """A file under MEDIA_ROOT (a small PNG unless told otherwise); returns the relative name jobs take."""
    from pathlib import Path

    from django.conf import settings

    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(32, 32) if data is None else data)
    return name


# --- posts pipeline (shots produced by the factory) ----------------------------------------

SHOT_WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}},
    "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "3": {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["2", 0],
            "clip": ["2", 1],
            "lora_name": "{{LORA_NAME}}",
            "strength_model": "{{LORA_STRENGTH}}",
            "strength_clip": "{{LORA_STRENGTH}}",
        },
    },
    "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 1], "text": "{{TRIGGER_WORD}}, {{PROMPT}}"}},
    "5": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "positive": ["4", 0], "seed": "{{SEED}}"}},
    "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "shot"}},
}


def make_shot_workflow(
    *, kind: str = ShotKind.A_ROLL, workflow: dict | None = None, placeholders: dict | None = None, **extra
):
    """A ShotWorkflow for `kind` naming a freshly imported template (SHOT_WORKFLOW unless told otherwise).

    The template declares FACE_IMAGE (image), LORA_NAME, LORA_STRENGTH (float), TRIGGER_WORD,
    PROMPT and SEED (int), so it asks a shot for exactly those. `placeholders` declares types the
    import cannot infer; `step=` and `bindings=` go to the mapping.
    """
    import copy

    from factory.services import template_import
    from posts.models import ShotWorkflow

    template = template_import(
        name=extra.pop("template_name", f"shot-{next(_seq)}"),
        workflow=copy.deepcopy(workflow or SHOT_WORKFLOW),
        placeholders=placeholders,
    )
    return ShotWorkflow.objects.create(kind=kind, template_name=template.name, **extra)


# --- schedules (runs the scheduler leaves) -------------------------------------------------


def make_schedule_run(*, schedule, slot_at, **extra):
    """A ScheduleRun row as the scheduler leaves it ("created", with no post, unless told otherwise)."""
    from schedules.models import ScheduleRun

    return ScheduleRun.objects.create(
        **{"schedule": schedule, "slot_at": slot_at, "outcome": ScheduleRun.Outcome.CREATED, **extra}
    )


# Workflows the fake ComfyUI can run (the production tests, the load bench): the artist's face
# (uploaded by the worker) for A-roll, a plain frame at the post's size for B-roll.
A_ROLL_WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "a_roll"}},
}
B_ROLL_WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": "{{WIDTH}}", "height": "{{HEIGHT}}", "batch_size": 1, "color": 0x0E7490},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b_roll"}},
}

# Model-free video workflows the fake ComfyUI runs. The avatar (issue 16's core-node "preview" shape) holds the
# face for the voice's frames with the voice as its audio. The motion step repeats the still into an animated
# GIF through VideoHelperSuite's Video Combine (VHS `gifs`, beside its first-frame PNG): the fake draws a
# moving mark on each GIF frame (its MP4s are one flat colour), so the clip's frames differ over time.
PREVIEW_AVATAR_WORKFLOW = {
    "a1": {"class_type": "LoadImage", "inputs": {"image": "{{FACE_IMAGE}}"}},
    "a2": {"class_type": "LoadAudio", "inputs": {"audio": "{{VOICE_AUDIO}}"}},
    "a3": {
        "class_type": "ImageScale",
        "inputs": {"image": ["a1", 0], "upscale_method": "bilinear", "width": 216, "height": 384, "crop": "center"},
    },
    "a4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["a3", 0], "amount": "{{FRAMES}}"}},
    "a5": {"class_type": "CreateVideo", "inputs": {"images": ["a4", 0], "fps": "{{FPS}}", "audio": ["a2", 0]}},
    "a6": {
        "class_type": "SaveVideo",
        "inputs": {"video": ["a5", 0], "filename_prefix": "avatar", "format": "auto", "codec": "auto"},
    },
}
MOTION_GIF_WORKFLOW = {  # needs FakeComfyUI(extra_nodes=VHS_NODES)
    "m1": {"class_type": "LoadImage", "inputs": {"image": "{{SOURCE_IMAGE}}"}},
    "m2": {
        "class_type": "ImageScale",
        "inputs": {"image": ["m1", 0], "upscale_method": "bilinear", "width": 216, "height": 384, "crop": "center"},
    },
    "m3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["m2", 0], "amount": "{{FRAMES}}"}},
    "m4": {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["m3", 0],
            "frame_rate": "{{FPS}}",
            "loop_count": 0,
            "filename_prefix": "motion",
            "format": "image/gif",
            "pingpong": False,
            "save_output": True,
        },
    },
}
PREVIEW_MOTION_WORKFLOW = {  # core nodes only: what a real ComfyUI on a CPU runs (MCN_REAL_COMFYUI_URL tests)
    "m1": {"class_type": "LoadImage", "inputs": {"image": "{{SOURCE_IMAGE}}"}},
    "m2": {
        "class_type": "ImageScale",
        "inputs": {"image": ["m1", 0], "upscale_method": "bilinear", "width": 216, "height": 384, "crop": "center"},
    },
    "m3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["m2", 0], "amount": "{{FRAMES}}"}},
    "m4": {"class_type": "CreateVideo", "inputs": {"images": ["m3", 0], "fps": "{{FPS}}"}},
    "m5": {
        "class_type": "SaveVideo",
        "inputs": {"video": ["m4", 0], "filename_prefix": "motion", "format": "auto", "codec": "auto"},
    },
}
VIDEO_PLACEHOLDERS = {"FRAMES": {"type": "int"}, "FPS": {"type": "float"}}


# --- media (what production leaves: the download endpoints' files) ------------------------


def make_post_media(post) -> None:
    """Give `post` what production leaves: a final video, and a generated picture and a voice per shot."""
    from posts.models import Post, Shot

    name = make_media_file(f"posts/final/post-{post.pk}-job-1.mp4", mp4_bytes())
    Post.objects.filter(pk=post.pk).update(final_video=name)
    for shot in Shot.objects.filter(post=post):
        picture = make_media_file(f"shots/generated/shot-{shot.pk}.png", png_bytes(8, 8))
        voice = make_media_file(f"shots/voice/shot-{shot.pk}.wav", wav_bytes(1))
        Shot.objects.filter(pk=shot.pk).update(generated_asset=picture, voice_asset=voice)
