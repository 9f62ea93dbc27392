"""Memory is given back between jobs: ComfyUI's models (POST /free) and our own process's caches."""

import importlib.util

import pytest

from factory import vram
from factory.comfyui import ComfyUIClient


@pytest.fixture
def client(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url, client_id="vram-test")
    yield client
    client.close()


def test_unload_models_mode_asks_comfyui_to_unload_but_keep_its_cache(fake_comfyui, client):
    vram.release(client, mode="unload_models")
    assert fake_comfyui.free_calls() == [{"unload_models": True, "free_memory": False}]


def test_free_memory_mode_also_clears_comfyuis_cache(fake_comfyui, client):
    vram.release(client, mode="free_memory")
    assert fake_comfyui.free_calls() == [{"unload_models": True, "free_memory": True}]


def test_none_mode_sends_nothing(fake_comfyui, client):
    vram.release(client, mode="none")
    assert fake_comfyui.free_calls() == []


def test_an_unreachable_server_does_not_stop_the_cleanup(fake_comfyui, client):
    fake_comfyui.refuse_connections = True
    vram.release(client, mode="free_memory")  # logs and carries on: the next job must still run
    assert fake_comfyui.free_calls() == []


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="this host has torch (GPU worker image)")
def test_without_torch_the_cuda_step_is_skipped_and_reported():
    assert vram.empty_torch_cache() is False
    assert vram.device_memory() is None
