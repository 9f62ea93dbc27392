"""Production tests run real workers: the factory tests' process fixtures, shared."""

from tests.factory.conftest import (  # noqa: F401 - fixtures used by tests/posts/test_production_e2e.py
    fake_comfyui,
    fake_cosyvoice,
    rq_clean,
    start_worker,
)
