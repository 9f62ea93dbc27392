"""Voices from CosyVoice: the streaming client against a fake server, and `tts` jobs run by a real CPU worker."""

import hashlib
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from factory import runners, services, tts
from factory.jobs import run_job
from factory.models import ErrorKind, Job, JobKind, JobStatus
from factory.tts import CosyVoiceClient, VoiceError
from tests.factory.conftest import subprocess_env, wait_for
from tests.fakes.cosyvoice import running_cosyvoice
from tests.processes import ROOT

CHINESE = "大家好，今天我们去海边。"
ENGLISH = "Hello from the seaside"


def client(fake, **options) -> CosyVoiceClient:
    return CosyVoiceClient(fake.url, **{"timeout": 10, "sample_rate": 24000, **options})


def wav_params(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as reader:
        return reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()


def voice_sample(folder: Path, size: int = 3000) -> Path:
    """A small real WAV to clone a voice from."""
    path = folder / "sample.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x01\x00" * ((size - 44) // 2))
    return path


# --- the client -----------------------------------------------------------------------------


def test_sft_sends_the_text_and_speaker_and_writes_a_24k_mono_16_bit_wav(fake_cosyvoice, tmp_path):
    target = tmp_path / "voice" / "a.wav"
    seconds = client(fake_cosyvoice).synthesize_to(target, text=CHINESE, spk_id="中文女")

    [request] = fake_cosyvoice.requests()
    assert request.path == "/inference_sft"
    assert request.fields == {"tts_text": CHINESE, "spk_id": "中文女"} and request.files == {}
    assert wav_params(target) == (1, 2, 24000, fake_cosyvoice.expected_frames(CHINESE))
    assert seconds == pytest.approx(fake_cosyvoice.expected_seconds(CHINESE)) == pytest.approx(10 * 0.25 + 2 * 0.06)
    assert tts.wav_duration(target) == pytest.approx(seconds)
    assert [p.name for p in target.parent.iterdir()] == ["a.wav"]  # no temporary file left beside it


def test_zero_shot_sends_the_sample_as_a_file_with_its_transcription(fake_cosyvoice, tmp_path):
    sample = voice_sample(tmp_path, size=3000)
    seconds = client(fake_cosyvoice).synthesize_to(
        tmp_path / "b.wav",
        text=ENGLISH,
        spk_id="ignored",
        prompt_text="希望你以后能够做的比我还好呦。",
        prompt_wav=sample,
    )

    [request] = fake_cosyvoice.requests()
    assert request.path == "/inference_zero_shot" and request.content_type == "multipart/form-data"
    assert request.fields == {"tts_text": ENGLISH, "prompt_text": "希望你以后能够做的比我还好呦。"}
    assert request.files["prompt_wav"].filename == "sample.wav"
    assert request.prompt_wav_size == sample.stat().st_size == 3000
    assert seconds == pytest.approx(fake_cosyvoice.expected_seconds(ENGLISH))


def test_the_servers_sample_rate_header_wins_over_the_configured_rate(tmp_path):
    with running_cosyvoice(sample_rate=22050, send_rate_header=True) as fake:
        seconds = client(fake, sample_rate=24000).synthesize_to(tmp_path / "c.wav", text=CHINESE, spk_id="中文女")
        assert fake.requests()[0].path == "/inference_sft"
    assert wav_params(tmp_path / "c.wav")[2] == 22050
    assert seconds == pytest.approx(fake.expected_seconds(CHINESE))


def test_without_the_header_the_configured_rate_is_written(tmp_path):
    with running_cosyvoice(sample_rate=22050) as fake:
        client(fake, sample_rate=22050).synthesize_to(tmp_path / "d.wav", text=ENGLISH, spk_id="英文女")
    assert wav_params(tmp_path / "d.wav") == (1, 2, 22050, fake.expected_frames(ENGLISH))


def test_chunks_cut_inside_samples_and_a_stray_last_byte_still_make_whole_samples(tmp_path):
    with running_cosyvoice(chunks=7, split_samples=True, trailing_byte=True) as fake:
        client(fake).synthesize_to(tmp_path / "e.wav", text=CHINESE, spk_id="中文女")
    assert wav_params(tmp_path / "e.wav")[3] == fake.expected_frames(CHINESE)


def test_one_http_client_per_server_per_process(fake_cosyvoice):
    assert client(fake_cosyvoice).http is CosyVoiceClient(fake_cosyvoice.url + "/", timeout=1).http


def test_a_422_is_a_config_error_showing_the_servers_detail(fake_cosyvoice, tmp_path):
    fake_cosyvoice.fail_next(422)
    with pytest.raises(VoiceError) as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "f.wav", text=CHINESE, spk_id="中文女")
    assert caught.value.kind == ErrorKind.CONFIG
    assert caught.value.message == "The voice server refused the request (422): spk_id: Field required."
    assert list(tmp_path.iterdir()) == []


def test_a_500_is_an_execution_error(fake_cosyvoice, tmp_path):
    fake_cosyvoice.fail_next(500)
    with pytest.raises(VoiceError) as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "g.wav", text=CHINESE, spk_id="中文女")
    assert caught.value.kind == ErrorKind.EXECUTION
    assert caught.value.message == "The voice server failed (500): Internal Server Error."
    assert caught.value.details["status"] == 500


def test_an_unknown_speaker_breaks_the_stream_and_leaves_no_file(fake_cosyvoice, tmp_path):
    with pytest.raises(VoiceError) as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "h.wav", text=CHINESE, spk_id="nobody")
    assert caught.value.kind == ErrorKind.EXECUTION
    assert "broke off" in caught.value.message and "unknown speaker id" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_stream_cut_midway_leaves_no_partial_file(fake_cosyvoice, tmp_path):
    fake_cosyvoice.abort_after_bytes(5000)
    with pytest.raises(VoiceError, match="broke off after 5000 bytes"):
        client(fake_cosyvoice).synthesize_to(tmp_path / "i.wav", text=CHINESE, spk_id="中文女")
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_refuses_connections_is_unreachable(fake_cosyvoice, tmp_path):
    client(fake_cosyvoice).synthesize_to(tmp_path / "j.wav", text=CHINESE, spk_id="中文女")  # a pooled connection
    (tmp_path / "j.wav").unlink()
    fake_cosyvoice.refuse()
    with pytest.raises(VoiceError) as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "j.wav", text=CHINESE, spk_id="中文女")
    assert caught.value.kind == ErrorKind.UNREACHABLE
    assert caught.value.message == f"Voice server unreachable at {fake_cosyvoice.url}."
    fake_cosyvoice.accept()  # and back up, the same client works again
    assert client(fake_cosyvoice).synthesize_to(tmp_path / "j.wav", text=CHINESE, spk_id="中文女") > 0


def test_a_stalled_stream_fails_within_the_timeout_and_leaves_no_partial_file(fake_cosyvoice, tmp_path):
    fake_cosyvoice.stall_after_bytes(4800)
    started = time.monotonic()
    with pytest.raises(VoiceError) as caught:
        client(fake_cosyvoice, timeout=1).synthesize_to(tmp_path / "k.wav", text=CHINESE, spk_id="中文女")
    assert time.monotonic() - started < 3
    assert caught.value.kind == ErrorKind.STALLED
    assert caught.value.message == f"The voice server at {fake_cosyvoice.url} sent nothing for 1 s (COSYVOICE_TIMEOUT)."
    assert list(tmp_path.iterdir()) == []
    fake_cosyvoice.release()


def test_an_empty_answer_is_an_execution_error(fake_cosyvoice, tmp_path):
    fake_cosyvoice.empty_body()
    with pytest.raises(VoiceError, match=r"^The voice server returned no audio\.$") as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "l.wav", text=CHINESE, spk_id="中文女")
    assert caught.value.kind == ErrorKind.EXECUTION
    assert list(tmp_path.iterdir()) == []


def test_cancel_mid_stream_stops_and_leaves_no_file(tmp_path):
    heard: list[float] = []
    with running_cosyvoice(chunks=10, chunk_delay=0.05) as fake, pytest.raises(VoiceError) as caught:
        client(fake).synthesize_to(
            tmp_path / "m.wav",
            text=CHINESE,
            spk_id="中文女",
            on_progress=heard.append,
            should_cancel=lambda: len(heard) >= 3,
        )
    assert caught.value.kind == ErrorKind.CANCELLED
    assert len(heard) == 3 and 0 < heard[0] < heard[-1] < fake.expected_seconds(CHINESE)
    assert list(tmp_path.iterdir()) == []


def test_a_sample_without_its_transcription_is_refused_before_anything_is_sent(fake_cosyvoice, tmp_path):
    sample = voice_sample(tmp_path)
    with pytest.raises(VoiceError, match="no transcription") as caught:
        client(fake_cosyvoice).synthesize_to(tmp_path / "n.wav", text=CHINESE, prompt_wav=sample)
    assert caught.value.kind == ErrorKind.CONFIG and fake_cosyvoice.requests() == []


# --- the runner ------------------------------------------------------------------------------


def queue_tts(django_capture_on_commit_callbacks, **params) -> Job:
    """A tts job as a caller makes it; the rq doorbell is not rung (the test runs the job itself)."""
    with django_capture_on_commit_callbacks(execute=False):
        return services.job_enqueue_task(
            kind=JobKind.TTS,
            params={"text": CHINESE, "spk_id": "", "prompt_text": "", "prompt_wav": "", **params},
            subject="tests/voice",
        )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_factory_app_registers_the_tts_runner():
    assert runners._RUNNERS[JobKind.TTS] is tts.run_tts


@pytest.mark.django_db(transaction=True)  # run_job closes the connection between jobs, as a worker does
def test_a_tts_job_clones_the_voice_from_a_sample_in_media(
    fake_cosyvoice, settings, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    sample = voice_sample(Path(settings.MEDIA_ROOT) / "artists" / "voices", size=2000)
    job = queue_tts(
        django_capture_on_commit_callbacks, prompt_text="你好", prompt_wav="artists/voices/sample.wav", spk_id=""
    )
    run_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    [request] = fake_cosyvoice.requests()
    assert request.path == "/inference_zero_shot" and request.prompt_wav_size == sample.stat().st_size
    [output] = job.outputs.all()
    assert (output.attempt, output.node_id, output.file.name) == (1, "tts", f"factory/tts/job-{job.pk}-1.wav")
    assert tts.output_duration(output) == pytest.approx(fake_cosyvoice.expected_seconds(CHINESE))


@pytest.mark.django_db(transaction=True)
def test_running_the_tts_runner_twice_keeps_the_first_file(
    fake_cosyvoice, settings, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    job = queue_tts(django_capture_on_commit_callbacks, spk_id="中文女")
    job = services.job_start(job_id=job.pk, worker_name="cpu-1", server_url="")  # runners call it with the claim
    tts.run_tts(job)
    tts.run_tts(job)  # a worker killed after the file was made, then the job re-driven
    assert len(fake_cosyvoice.requests()) == 1
    [output] = job.outputs.all()
    assert output.sha256 == sha256_of(Path(settings.MEDIA_ROOT) / output.file.name)


@pytest.mark.django_db(transaction=True)
def test_progress_is_reported_and_a_cancel_ends_the_job_cancelled_with_no_file(
    settings, django_capture_on_commit_callbacks
):
    with running_cosyvoice(chunks=20, chunk_delay=0.25) as fake:  # a 2.8 s voice sent over 5 s
        settings.COSYVOICE_URL = fake.url
        job = queue_tts(django_capture_on_commit_callbacks, spk_id="中文女")
        worker = threading.Thread(target=run_job, args=(job.pk,))
        worker.start()
        try:
            running = wait_for(
                lambda: Job.objects.filter(pk=job.pk, progress_percent__gt=0).first(), what="progress", timeout=10
            )
            assert running.status == JobStatus.RUNNING and running.progress_node == "voice"
            assert 0 < running.progress_percent < 100 and running.progress_max == int(
                tts.estimate_seconds(CHINESE) * 1000
            )
            with django_capture_on_commit_callbacks(execute=True):
                services.job_cancel(job_id=job.pk)
        finally:
            worker.join(timeout=15)

    job.refresh_from_db()
    assert (job.status, job.error_kind) == (JobStatus.CANCELLED, ErrorKind.CANCELLED)
    assert job.error_message == "Cancelled while the voice was being made."
    assert not job.outputs.exists()
    assert list((Path(settings.MEDIA_ROOT) / "factory" / "tts").iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_voice_server_fails_the_job_at_once(
    fake_cosyvoice, settings, django_capture_on_commit_callbacks
):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    fake_cosyvoice.refuse()
    job = queue_tts(django_capture_on_commit_callbacks, spk_id="中文女")
    run_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.retries) == (JobStatus.FAILED, ErrorKind.UNREACHABLE, 0)
    assert job.error_message == f"Voice server unreachable at {fake_cosyvoice.url}."


@pytest.mark.django_db(transaction=True)
def test_a_sample_outside_media_fails_the_job_as_config(fake_cosyvoice, settings, django_capture_on_commit_callbacks):
    settings.COSYVOICE_URL = fake_cosyvoice.url
    job = queue_tts(django_capture_on_commit_callbacks, prompt_text="你好", prompt_wav="../../etc/passwd")
    run_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_kind) == (JobStatus.FAILED, ErrorKind.CONFIG)
    assert job.error_message == "Voice sample: ../../etc/passwd is outside the media folder."
    assert fake_cosyvoice.requests() == []


# --- through a real CPU worker process -------------------------------------------------------------


def run_cpu_worker(**env: str) -> str:
    """`manage.py rqworker cpu --burst` against the test's database, Redis and media; returns its output."""
    environ = subprocess_env(**env)
    result = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "cpu", "--burst"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_tts_job_runs_through_a_real_cpu_worker(fake_cosyvoice, settings, rq_clean):
    job = services.job_enqueue_task(
        kind=JobKind.TTS, params={"text": CHINESE, "spk_id": "中文女", "prompt_text": "", "prompt_wav": ""}
    )
    output_text = run_cpu_worker(COSYVOICE_URL=fake_cosyvoice.url, COSYVOICE_SAMPLE_RATE="22050")

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error_message, output_text)
    assert job.progress_percent == 100
    [request] = fake_cosyvoice.requests()
    assert request.fields == {"tts_text": CHINESE, "spk_id": "中文女"}
    [output] = job.outputs.all()
    stored = Path(settings.MEDIA_ROOT) / output.file.name
    assert output.file.name == f"factory/tts/job-{job.pk}-1.wav" and output.content_type == "audio/wav"
    assert output.size == stored.stat().st_size and output.sha256 == sha256_of(stored)
    # The fake streams at 24 kHz without saying so: the file is what COSYVOICE_SAMPLE_RATE told the worker.
    assert wav_params(stored) == (1, 2, 22050, fake_cosyvoice.expected_frames(CHINESE))


@pytest.mark.django_db(transaction=True)
def test_without_a_voice_server_a_tts_job_fails_with_the_config_message(settings, rq_clean):
    job = services.job_enqueue_task(kind=JobKind.TTS, params={"text": CHINESE, "spk_id": "中文女"})
    output_text = run_cpu_worker(COSYVOICE_URL="")
    job.refresh_from_db()
    assert (job.status, job.error_kind) == (JobStatus.FAILED, ErrorKind.CONFIG), output_text
    assert job.error_message == "No voice server is set (COSYVOICE_URL)."
    assert not (Path(settings.MEDIA_ROOT) / "factory").exists()
