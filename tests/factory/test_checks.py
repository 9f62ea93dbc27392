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
