import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError


@pytest.mark.parametrize(
    ("url", "code"),
    [("127.0.0.1:6379", "factory.E001"), ("http://127.0.0.1:6379/0", "factory.E001"), ("redis:///0", "factory.E002")],
)
def test_check_refuses_a_redis_url_it_cannot_use(settings, url, code):
    settings.REDIS_URL = url
    with pytest.raises(SystemCheckError, match=code):
        call_command("check")


def test_check_accepts_redis_and_unix_urls(settings):
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.internal:6380/1", "unix:///run/redis.sock"):
        settings.REDIS_URL = url
        call_command("check")


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        ("COMFYUI_URL", "127.0.0.1:8188", "factory.E003"),
        ("COMFYUI_URL", "ftp://gpu:8188", "factory.E003"),
        ("FACTORY_JOB_DEADLINE", 4000, "factory.E004"),
        ("FACTORY_FREE_AFTER_JOB", "everything", "factory.E005"),
        ("FACTORY_UNREACHABLE_RETRIES", ["10", "soon"], "factory.E006"),
    ],
)
def test_check_refuses_factory_settings_it_cannot_use(settings, setting, value, code):
    setattr(settings, setting, value)
    with pytest.raises(SystemCheckError, match=code):
        call_command("check")


def test_check_refuses_an_ffmpeg_that_is_not_there(settings):
    settings.FFMPEG_BINARY = "/nowhere/ffmpeg"
    with pytest.raises(SystemCheckError, match=r"factory\.E007.*FFMPEG_BINARY='/nowhere/ffmpeg' is not an executable"):
        call_command("check")


def test_check_refuses_a_font_file_that_is_not_there(settings):
    settings.MCN_FONT_FILE = "/nowhere/font.ttc"
    with pytest.raises(SystemCheckError, match=r"factory\.E008"):
        call_command("check")
