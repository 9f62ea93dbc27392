import pytest


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploads land in a per-test folder, never in the developer's var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"
