"""Row 6b of the fault matrix: the GPU worker's websocket to ComfyUI drops, through a real TCP fault proxy.

The worker (a real `run_gpu_worker` subprocess) talks to the fake ComfyUI only through the proxy
(`--comfyui-url` = the proxy), so its HTTP calls and its event socket cross a connection the test can
reset, black-hole or refuse. The socket is only a hint: the worker must reopen it or fall back on its
/history poll, submit the prompt once (I2) and store one output (I3).
"""

import pytest
import websocket

from factory.models import JobStatus
from tests.factory.test_faults import enqueue, finished, running_on_the_server
from tests.fakes.fault_proxy import FaultProxy
from tests.faults.conftest import wait_for
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault, pytest.mark.timeout(120)]


@pytest.fixture
def proxy(fake_comfyui):
    with FaultProxy(fake_comfyui.url) as proxy:
        yield proxy


def websockets(proxy: FaultProxy) -> list:
    return [c for c in proxy.connections() if c.websocket]


def test_a_socket_reset_mid_prompt_is_reopened_and_the_job_succeeds_with_one_submit(fake_comfyui, proxy, start_worker):
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 8, 0.25  # ~6 s of work over three nodes
    start_worker(proxy.url)
    job = running_on_the_server(enqueue().pk, fake_comfyui)
    assert len(websockets(proxy)) == 1  # opened before the submit, as the protocol wants

    proxy.reset_after(0, websocket_only=True, times=1)  # RST at the socket's next frame (a progress event)
    proxy.wait_until(lambda: proxy.resets == 1, what="the socket reset")
    assert fake_comfyui.history_entry(job.prompt_id) is None, "the reset must land while the prompt runs"
    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    first, *again = websockets(proxy)
    assert first.outcome == "reset" and again, "the worker never reopened its socket"
    assert all(c.request.startswith(f"GET /ws?clientId={first.request.split('clientId=')[1]}") for c in again)
    assert job.attempts == 1 and [p.prompt_id for p in fake_comfyui.prompts_submitted()] == [job.prompt_id]
    assert fake_comfyui.interrupts() == []  # never taken for a stall
    assert_invariants(jobs=[job], fakes=[fake_comfyui])


def test_sockets_reset_at_every_handshake_leave_the_job_to_the_history_poll(fake_comfyui, proxy, start_worker):
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 4, 0.25
    proxy.reset_after(0, websocket_only=True)  # every socket dies before its 101 reaches the worker
    start_worker(proxy.url)
    job = enqueue()

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    sockets = websockets(proxy)
    assert sockets and all(c.outcome == "reset" and c.bytes_down == 0 for c in sockets)
    assert proxy.resets == len(sockets)  # HTTP went through untouched
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(jobs=[job], fakes=[fake_comfyui])


def test_a_socket_that_drops_after_every_greeting_is_not_taken_for_a_stall(fake_comfyui, proxy, start_worker):
    # Each reopened socket says hello (`status`) and dies at its next frame: the worker hears of the
    # prompt's progress only through /history. ~6 s of work is longer than the 4 s stall deadline (FAST),
    # so judging silence on a socket that keeps dropping would interrupt a healthy prompt.
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 8, 0.25
    job = enqueue()
    # The socket id of worker "gpu-test-1"'s first attempt at the job.
    greeting = measure_greeting(proxy, client_id=f"mcn-gpu-test-1-{job.pk}-1")
    proxy.reset_after(greeting, websocket_only=True)
    start_worker(proxy.url, name="gpu-test-1")

    job = wait_for(lambda: finished(job.pk), what="the job to finish")

    assert job.status == JobStatus.SUCCEEDED, (job.error_kind, job.error_message)
    assert proxy.resets >= 2 and fake_comfyui.interrupts() == []
    assert job.attempts == 1 and len(fake_comfyui.prompts_submitted()) == 1
    assert_invariants(jobs=[job], fakes=[fake_comfyui])


def measure_greeting(proxy: FaultProxy, *, client_id: str) -> int:
    """Bytes a fresh socket receives up to its first event: the 101 handshake plus the `status` frame,
    which carries the client id (so the probe uses an id of the same length as the worker's)."""
    probe_id = "p" * len(client_id)
    socket = websocket.create_connection(
        f"{proxy.url.replace('http://', 'ws://')}/ws?clientId={probe_id}", timeout=5, suppress_origin=True
    )
    try:
        assert '"type": "status"' in socket.recv()
    finally:
        socket.close()
    [probe] = [c for c in proxy.connections() if c.request.startswith(f"GET /ws?clientId={probe_id} ")]
    closed = proxy.wait_until(
        lambda: [c for c in proxy.connections() if c.number == probe.number and c.outcome != "open"],
        what="the probe socket to close",
    )
    return closed[0].bytes_down
