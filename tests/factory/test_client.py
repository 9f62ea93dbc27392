"""ComfyUIClient against a real fake ComfyUI on 127.0.0.1: requests, the wait loop, errors and files."""

import re
import threading
import uuid

import pytest

from factory.comfyui import (
    Cancelled,
    ComfyUIClient,
    Deadlines,
    ExecutionFailed,
    OutOfMemory,
    Stalled,
    Unreachable,
    WorkflowRejected,
    output_files,
)
from tests.factories import png_bytes

pytestmark = pytest.mark.timeout(30)

# Example A of the protocol notes: model-free, one saved file (node 4) and one temp preview (node 5).
BASIC = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 3368652}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 2, "sigma": 1.0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "mcn_basic"}},
    "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}
FAST = Deadlines(total_seconds=20, stall_seconds=5, poll_seconds=0.2)


def basic(prefix: str = "mcn_basic") -> dict:
    """BASIC with its own filename_prefix, so the fake's execution cache never skips the SaveImage."""
    return {**BASIC, "4": {**BASIC["4"], "inputs": {**BASIC["4"]["inputs"], "filename_prefix": prefix}}}


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def client(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url, client_id="mcn-test-client", connect_timeout=1, read_timeout=5)
    yield client
    client.close()


def run(client: ComfyUIClient, prompt: dict, *, deadlines: Deadlines = FAST, **wait_options) -> tuple[str, dict]:
    """Open the socket, submit under our own id, wait: the worker's sequence. Returns (prompt id, history entry)."""
    prompt_id = new_id()
    socket = client.open_socket()
    client.submit(prompt, prompt_id=prompt_id)
    return prompt_id, client.wait(prompt_id, socket=socket, deadlines=deadlines, **wait_options)


def test_system_stats_reports_the_device(fake_comfyui, client):
    fake_comfyui.set_device("cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", vram_total=80 * 2**30, vram_free=2**30)
    stats = client.system_stats()
    assert stats["system"]["comfyui_version"] == "0.3.64"
    [device] = stats["devices"]
    assert device["name"].startswith("cuda:0 NVIDIA H100") and device["vram_free"] == 2**30


def test_submit_then_wait_returns_the_history_entry(fake_comfyui, client):
    prompt_id, entry = run(client, basic())

    assert entry["status"]["status_str"] == "success"
    assert entry == fake_comfyui.history_entry(prompt_id)
    [submitted] = fake_comfyui.prompts_submitted()
    assert submitted.prompt_id == prompt_id and submitted.client_id == "mcn-test-client"


def test_progress_callbacks_carry_node_value_max_and_percent(fake_comfyui, client):
    fake_comfyui.steps_per_node = 2
    fake_comfyui.step_seconds = 0.03  # slow enough that the events arrive before the first /history poll ends it
    seen = []
    run(client, basic(), on_progress=lambda p: seen.append((p.node, p.value, p.maximum, p.percent)))

    steps = [s for s in seen if s[2]]  # `executing` gives (node, 0, 0); `progress` events have a max
    assert ("4", 1, 2, 50.0) in steps and ("4", 2, 2, 100.0) in steps
    assert {node for node, *_ in steps} == {"1", "2", "3", "4", "5"}
    assert ("4", 0, 0, 0.0) in seen  # a node change is reported before its steps


def test_an_unknown_node_class_is_rejected_as_a_config_error(fake_comfyui, client):
    prompt = {**basic(), "6": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(WorkflowRejected) as caught:
        client.submit(prompt, prompt_id=new_id())

    assert caught.value.kind == "config"
    assert "NoSuchNode does not exist" in caught.value.message and "#6" in caught.value.message
    assert caught.value.details["error"]["type"] == "invalid_prompt"
    assert fake_comfyui.history() == {}


def test_a_node_level_400_names_the_node_and_the_reason(client):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }
    prompt["2"]["inputs"]["width"] = "wide"
    with pytest.raises(WorkflowRejected) as caught:
        client.submit(prompt, prompt_id=new_id())

    message = caught.value.message
    assert message.startswith("Workflow invalid: node 2 (EmptyImage): ")
    assert "width, wide, invalid literal for int() with base 10: 'wide'" in message
    assert caught.value.details["node_errors"]["2"]["errors"][0]["type"] == "invalid_input_type"


def test_a_value_below_the_minimum_is_reported_with_the_reason(client):
    prompt = basic()
    prompt["1"] = {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 48, "batch_size": 1, "color": 0}}
    prompt["3"] = {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "sigma": 1.0}}  # blur_radius missing
    with pytest.raises(WorkflowRejected) as caught:
        client.submit(prompt, prompt_id=new_id())

    message = caught.value.message  # today: "Workflow invalid: node 1 (EmptyImage): width; node 3 (ImageBlur): ..."
    assert "node 1 (EmptyImage)" in message and "smaller than min of 1" in message and "width" in message
    assert "node 3 (ImageBlur)" in message and "Required input is missing" in message and "blur_radius" in message


def test_partial_acceptance_is_a_rejection_and_the_prompt_is_stopped(fake_comfyui, client):
    prompt = {
        **basic("partial"),
        "6": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "never"}},
    }
    prompt_id = new_id()
    with pytest.raises(WorkflowRejected) as caught:
        client.submit(prompt, prompt_id=prompt_id)

    assert caught.value.kind == "config"
    assert caught.value.message.startswith("Workflow invalid: node 6 (EmptyImage)")
    assert caught.value.details["node_errors"]["6"]["dependent_outputs"] == ["7"]
    # ComfyUI queued the valid branch (200): the client takes it back by id.
    assert fake_comfyui.interrupts() == [prompt_id]
    assert fake_comfyui.requests("POST", "/queue")[-1].json == {"delete": [prompt_id]}


def test_locate_says_done_running_pending_or_absent(fake_comfyui, client):
    fake_comfyui.hang_after_start = True
    first, second = new_id(), new_id()
    client.submit(basic("first"), prompt_id=first)
    fake_comfyui.wait_for_node(first, "1")
    client.submit(basic("second"), prompt_id=second)

    assert client.locate(first).state == "running"
    assert client.locate(second).state == "pending"
    assert client.locate(new_id()).state == "absent"

    client.interrupt(first)
    fake_comfyui.wait_for_history(first)
    done = client.locate(first)
    assert done.state == "done" and done.history["status"]["messages"][-1][0] == "execution_interrupted"


def test_interrupt_targets_the_prompt_and_drops_it_if_pending(fake_comfyui, client):
    fake_comfyui.hang_after_start = True
    running, waiting = new_id(), new_id()
    client.submit(basic("running"), prompt_id=running)
    fake_comfyui.wait_for_node(running, "1")
    client.submit(basic("waiting"), prompt_id=waiting)

    client.interrupt(waiting)  # not running: only taken off the queue
    assert client.locate(waiting).state == "absent"
    assert client.locate(running).state == "running"

    client.interrupt(running)
    assert fake_comfyui.wait_for_history(running)["status"]["status_str"] == "error"
    assert fake_comfyui.interrupts() == [waiting, running]  # never a global interrupt


def test_an_execution_error_names_the_node_and_keeps_the_traceback(fake_comfyui, client):
    fake_comfyui.execution_error_at_node("3", "sigma must be positive", exception_type="ValueError")
    with pytest.raises(ExecutionFailed) as caught:
        run(client, basic())

    error = caught.value
    assert type(error) is ExecutionFailed and error.kind == "execution"
    assert error.message == "Failed on node 3 (ImageBlur): sigma must be positive"
    assert error.details["node_id"] == "3" and error.details["exception_type"] == "ValueError"
    assert isinstance(error.details["traceback"], list) and error.details["traceback"]


def test_out_of_memory_is_its_own_error(fake_comfyui, client):
    fake_comfyui.oom_at_node("3")
    with pytest.raises(OutOfMemory) as caught:
        run(client, basic())

    assert caught.value.kind == "oom"
    assert caught.value.message == "Out of GPU memory on node 3 (ImageBlur)."
    assert caught.value.details["exception_type"] == "torch.OutOfMemoryError"


def test_a_stopped_server_is_unreachable_with_its_url(fake_comfyui, client):
    fake_comfyui.stop()
    with pytest.raises(Unreachable) as caught:
        client.system_stats()

    assert caught.value.kind == "unreachable"
    assert fake_comfyui.url in caught.value.message
    with pytest.raises(Unreachable):
        client.submit(basic(), prompt_id=new_id())


def test_a_server_that_is_not_comfyui_is_a_clear_error(fake_comfyui):
    wrong = ComfyUIClient(fake_comfyui.url + "/not-comfyui", client_id="mcn-test-client", connect_timeout=1)
    try:
        with pytest.raises(Unreachable) as caught:
            wrong.system_stats()  # every path answers 404 there
    finally:
        wrong.close()
    assert "404" in caught.value.message and fake_comfyui.url + "/not-comfyui" in caught.value.message


def test_a_silent_socket_still_finishes_through_history_polling(fake_comfyui, client):
    fake_comfyui.silent_socket = True
    prompt_id, entry = run(client, basic())

    assert entry["status"]["status_str"] == "success"
    assert not [e for e in fake_comfyui.sent_events() if e[1] != "status"]  # nothing of ours came over the socket
    assert len(fake_comfyui.requests("GET", f"/history/{prompt_id}")) >= 1


def test_a_hung_prompt_the_server_still_runs_is_waited_for_until_the_time_budget(fake_comfyui, client):
    # Silence alone proves nothing (a video node runs for minutes without an event): the server still answers
    # and runs the prompt, so it is busy until the budget (total_seconds) is spent; then interrupted by its id.
    fake_comfyui.hang_after_start = True
    prompt_id = new_id()
    socket = client.open_socket()
    client.submit(basic(), prompt_id=prompt_id)
    long_nodes = []

    with pytest.raises(Stalled) as caught:
        client.wait(
            prompt_id,
            socket=socket,
            deadlines=Deadlines(total_seconds=3, stall_seconds=1, poll_seconds=0.2),
            on_long_node=lambda node, seconds: long_nodes.append((node, seconds)),
        )

    assert caught.value.kind == "stalled"
    assert caught.value.message == "Timed out after 3 s (the time budget); cancelled on the GPU server."
    assert caught.value.details == {"node": "1", "interrupted": True, "prompt_id": prompt_id}
    assert [node for node, _ in long_nodes] == ["1"] * len(long_nodes) and len(long_nodes) >= 1
    assert all(seconds > 1 for _, seconds in long_nodes)
    assert fake_comfyui.interrupts() == [prompt_id]
    assert fake_comfyui.wait_for_history(prompt_id)["status"]["messages"][-1][0] == "execution_interrupted"


def test_a_node_silent_longer_than_the_stall_deadline_is_a_long_node_not_a_stall(fake_comfyui, client):
    fake_comfyui.node_seconds = 1.5  # each of the nodes: silent 1.5 s, the stall deadline is 1 s
    prompt_id = new_id()
    socket = client.open_socket()
    client.submit(basic("long"), prompt_id=prompt_id)
    long_nodes = []

    entry = client.wait(
        prompt_id,
        socket=socket,
        deadlines=Deadlines(total_seconds=30, stall_seconds=1, poll_seconds=0.2),
        on_long_node=lambda node, seconds: long_nodes.append(node),
    )

    assert entry["status"]["status_str"] == "success"
    assert fake_comfyui.interrupts() == []
    assert long_nodes and set(long_nodes) <= set(basic())


def test_a_silent_prompt_on_a_server_whose_queue_no_longer_answers_is_stuck_and_interrupted(fake_comfyui, client):
    fake_comfyui.hang_after_start = True
    prompt_id = new_id()
    socket = client.open_socket()
    client.submit(basic(), prompt_id=prompt_id)
    fake_comfyui.wait_for_node(prompt_id, "1")
    # Once the wait has heard the socket: from then on the server's queue holds every answer.
    stop_answering = threading.Timer(0.5, lambda: setattr(fake_comfyui, "queue_unanswered", True))
    stop_answering.start()

    with pytest.raises(Stalled) as caught:
        client.wait(prompt_id, socket=socket, deadlines=Deadlines(stall_seconds=1, poll_seconds=0.2))

    assert caught.value.message == (
        "Stalled: no progress for 1 s and the GPU server does not answer; cancelled on the GPU server."
    )
    assert caught.value.details == {"node": "1", "interrupted": True, "prompt_id": prompt_id}
    assert fake_comfyui.interrupts() == [prompt_id]


def test_waiting_in_the_servers_queue_is_not_a_stall(fake_comfyui, client):
    fake_comfyui.hang_after_start = True
    ahead, ours = new_id(), new_id()
    client.submit(basic("ahead"), prompt_id=ahead)  # e.g. left running by a worker that was killed
    fake_comfyui.wait_for_node(ahead, "1")
    socket = client.open_socket()
    client.submit(basic("ours"), prompt_id=ours)
    release = threading.Timer(1.8, lambda: setattr(fake_comfyui, "hang_after_start", False))
    release.start()
    try:
        entry = client.wait(ours, socket=socket, deadlines=Deadlines(stall_seconds=1, poll_seconds=0.2))
    finally:
        release.cancel()

    assert entry["status"]["status_str"] == "success"
    assert ours not in fake_comfyui.interrupts()


def test_should_cancel_interrupts_and_raises_cancelled(fake_comfyui, client):
    fake_comfyui.hang_after_start = True
    prompt_id = new_id()
    socket = client.open_socket()
    client.submit(basic(), prompt_id=prompt_id)
    fake_comfyui.wait_for_node(prompt_id, "1")

    with pytest.raises(Cancelled) as caught:
        client.wait(prompt_id, socket=socket, deadlines=FAST, should_cancel=lambda: True)

    assert caught.value.kind == "cancelled"
    assert fake_comfyui.interrupts() == [prompt_id]
    assert fake_comfyui.wait_for_history(prompt_id)["status"]["status_str"] == "error"


def test_upload_returns_the_name_for_load_image(fake_comfyui, client, tmp_path):
    data = png_bytes(16, 16)
    source = tmp_path / "face.png"
    source.write_bytes(data)

    name = client.upload(source, name="job7-input_image.png")

    assert name == "mcn/job7-input_image.png"
    assert (fake_comfyui.input_dir / "mcn" / "job7-input_image.png").read_bytes() == data
    # Uploading again replaces the file (overwrite) instead of renaming it "... (1).png".
    source.write_bytes(png_bytes(8, 8))
    assert client.upload(source, name="job7-input_image.png") == name
    assert (fake_comfyui.input_dir / "mcn" / "job7-input_image.png").read_bytes() == png_bytes(8, 8)


def test_download_streams_the_exact_bytes_and_previews_are_not_outputs(fake_comfyui, client):
    _, entry = run(client, basic("mcn/dl"))

    assert sorted(entry["outputs"]) == ["4", "5"]  # node 5 is a PreviewImage in temp/
    [output] = output_files(entry)
    assert (output.node_id, output.index, output.subfolder, output.type) == ("4", 0, "mcn", "output")
    data = b"".join(client.download(output))
    assert data == (fake_comfyui.output_dir / "mcn" / output.filename).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_download_of_a_missing_file_is_an_execution_error(client):
    gone = {"filename": "gone.png", "subfolder": "", "type": "output"}
    [output] = output_files({"outputs": {"4": {"images": [gone]}}})
    with pytest.raises(ExecutionFailed, match=re.escape("gone.png could not be fetched (404).")):
        b"".join(client.download(output))


def test_output_files_keeps_saved_files_in_node_order_and_skips_temp():
    entry = {
        "outputs": {
            "9": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
            "3": {
                "images": [
                    {"filename": "a1.png", "subfolder": "mcn", "type": "output"},
                    {"filename": "ComfyUI_temp_x.png", "subfolder": "", "type": "temp"},
                    {"filename": "a2.png", "subfolder": "mcn", "type": "output"},
                ]
            },
            "5": {"text": ["not a file"]},
        }
    }
    assert [(o.node_id, o.index, o.filename) for o in output_files(entry)] == [
        ("3", 0, "a1.png"),
        ("3", 1, "a2.png"),
        ("9", 0, "b.png"),
    ]


@pytest.mark.parametrize("borrowed", [True, False])
def test_a_borrowed_socket_id_forgotten_by_comfyui_is_reopened_not_taken_for_a_stall(fake_comfyui, client, borrowed):
    # Worker A submitted under its socket id and went silent; worker B re-attaches under the same id. When A's old
    # socket closes, ComfyUI forgets the id (one socket per id): B's socket hears nothing more of the prompt.
    fake_comfyui.steps_per_node, fake_comfyui.step_seconds = 10, 0.2  # ~6 s: longer than the 2 s stall deadline
    old = client.open_socket(client_id="mcn-worker-a-1-1")
    prompt_id = new_id()
    client.submit(basic(f"borrowed-{borrowed}"), prompt_id=prompt_id, client_id="mcn-worker-a-1-1")
    fake_comfyui.wait_for_running(prompt_id)
    socket = client.open_socket(client_id="mcn-worker-a-1-1")  # B's: ComfyUI now sends to it, not to A's
    assert '"status"' in socket.recv()
    old.close()  # A wakes up and lets its socket go: ComfyUI pops the id, B's with it
    deadlines = Deadlines(total_seconds=20, stall_seconds=2, poll_seconds=0.5)

    def wait():
        return client.wait(
            prompt_id, socket=socket, deadlines=deadlines, client_id="mcn-worker-a-1-1", borrowed=borrowed
        )

    if borrowed:
        assert wait()["status"]["status_str"] == "success"
        assert fake_comfyui.interrupts() == []
        assert len(fake_comfyui.requests("GET", "/ws")) == 3  # A's, B's, and B's again once it went quiet
    else:  # an id of our own: silence after hearing, but the server still runs the prompt: waited for, not a stall
        long_nodes = []
        entry = client.wait(
            prompt_id,
            socket=socket,
            deadlines=deadlines,
            client_id="mcn-worker-a-1-1",
            on_long_node=lambda node, seconds: long_nodes.append(node),
        )
        assert entry["status"]["status_str"] == "success"
        assert fake_comfyui.interrupts() == [] and long_nodes
