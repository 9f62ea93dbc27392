"""Memory is given back between jobs: ComfyUI's models (POST /free) and our own process's caches."""

import importlib.util

import pytest

from factory import vram
from factory.comfyui import ComfyUIClient


@pytest.fixture(autouse=True)
def _fresh_worker_memory(monkeypatch):
    """As in a worker that just started: no server's last workflow known (a port may be reused)."""
    monkeypatch.setattr(vram, "_last_workflow", {})


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


def test_auto_mode_unloads_models_only_when_the_workflow_changes(fake_comfyui, client):
    ran = [vram.before_job(client, workflow=workflow, mode="auto") for workflow in (7, 7, 7, 9, 9, 7)]

    # The first job: what the server holds is unknown. Then only the switches 7 -> 9 and 9 -> 7.
    assert ran == [True, False, False, True, False, True]
    assert fake_comfyui.free_calls() == [{"unload_models": True, "free_memory": False}] * 3
    vram.release(client, mode="auto")  # nothing after a job
    assert len(fake_comfyui.free_calls()) == 3


@pytest.mark.parametrize("mode", ["none", "unload_models", "free_memory"])
def test_the_other_modes_send_nothing_before_a_job(fake_comfyui, client, mode):
    assert [vram.before_job(client, workflow=workflow, mode=mode) for workflow in (1, 2)] == [False, False]
    assert fake_comfyui.free_calls() == []


def test_an_unreachable_server_does_not_stop_the_cleanup(fake_comfyui, client):
    fake_comfyui.refuse_connections = True
    vram.release(client, mode="free_memory")  # logs and carries on: the next job must still run
    assert fake_comfyui.free_calls() == []


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="this host has torch (GPU worker image)")
def test_without_torch_the_cuda_step_is_skipped_and_reported():
    assert vram.empty_torch_cache() is False
    assert vram.device_memory() is None


def test_the_loaded_workflow_is_what_this_process_last_ran_there_and_none_once_unloaded(fake_comfyui, client):
    """What factory.dispatch prefers: the same "workflow" (template row id) auto mode compares."""
    assert vram.loaded_workflow(fake_comfyui.url) is None  # unknown: a fresh worker
    vram.before_job(client, workflow=7, mode="auto")
    assert vram.loaded_workflow(fake_comfyui.url + "/") == 7
    vram.before_job(client, workflow=9, mode="none")
    assert vram.loaded_workflow(fake_comfyui.url) == 9
    vram.release(client, mode="unload_models")
    assert vram.loaded_workflow(fake_comfyui.url) is None
