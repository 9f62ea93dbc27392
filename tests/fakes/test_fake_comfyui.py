"""The fake ComfyUI answers like the real 0.3.64 captures (shared/docs/comfyui-transcripts.json) and its
scripted faults do what they promise. Expected values below are copied from those captures."""

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys

import httpx
import pytest
import websocket
from PIL import Image

from tests.factories import wav_bytes
from tests.fakes.comfyui import VHS_NODES, FakeComfyUI

pytestmark = pytest.mark.timeout(30)

BASIC = {  # ⟶ success
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 3368652}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 2, "sigma": 1.0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "mcn_basic"}},
    "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


def injected(width=32, height=24, seed=123456789, prefix="mcn/job-42", image="mcn_red.png"):
    """⟶ success_placeholder_injected (the template after injection)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": width,
                "height": height,
                "crop": "disabled",
            },
        },
        "3": {"class_type": "ImageAddNoise", "inputs": {"image": ["2", 0], "seed": seed, "strength": 0.25}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": prefix}},
    }


def txt2img(ckpt="sd_xl_base_1.0.safetensors", steps=3, prefix="jobs/job-1"):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 32, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 7,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


def png(color=(255, 0, 0), size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fake():
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def http(fake):
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        yield client


class Socket:
    """A websocket-client connection; every recv is bounded by the socket timeout."""

    def __init__(self, fake, client_id=None, timeout=5.0):
        url = fake.ws_url + (f"?clientId={client_id}" if client_id else "")
        self.ws = websocket.create_connection(url, timeout=timeout)

    def recv(self):
        frame = self.ws.recv()
        return json.loads(frame) if isinstance(frame, str) else frame

    def until_done(self, prompt_id):
        """JSON frames up to and including executing{node: null} of prompt_id (binary frames skipped)."""
        frames = []
        while True:
            frame = self.recv()
            if isinstance(frame, bytes):
                continue
            frames.append(frame)
            if frame["type"] == "executing" and frame["data"] == {"node": None, "prompt_id": prompt_id}:
                return frames

    def until(self, event, **data):
        while True:
            frame = self.recv()
            if isinstance(frame, dict) and frame["type"] == event and data.items() <= frame["data"].items():
                return frame

    def close(self):
        self.ws.close()


@pytest.fixture
def sockets(fake):
    opened = []

    def open_socket(client_id=None):
        opened.append(Socket(fake, client_id))
        return opened[-1]

    yield open_socket
    for s in opened:
        s.ws.abort()


def tokens(frames):
    """Compact form of a frame sequence, as used for the captured sequences below."""
    out = []
    for frame in frames:
        kind, data = frame["type"], frame["data"]
        if kind == "status":
            out.append(f"status:{data['status']['exec_info']['queue_remaining']}")
        elif kind in ("executing", "executed"):
            out.append(f"{kind}:{data['node']}")
        elif kind == "execution_cached":
            out.append("execution_cached:" + ",".join(data["nodes"]))
        elif kind == "progress":
            out.append(f"progress:{data['node']}:{data['value']}/{data['max']}")
        else:
            out.append(kind)
    return out


def submit(http, prompt, client_id="mcn-test", **extra):
    response = http.post("/prompt", json={"prompt": prompt, "client_id": client_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


def upload(http, name, data, **fields):
    return http.post("/upload/image", files={"image": (name, data, "image/png")}, data=fields)


# ---------------------------------------------------------------------------------------------- replays

SUCCESS_FRAMES = [  # ⟶ success, the client's socket
    "status:0", "status:1", "status:1", "execution_start", "execution_cached:", "progress_state", "executing:1",
    "progress_state", "progress_state", "executing:5", "executed:5", "progress_state", "progress_state",
    "executing:2", "progress_state", "progress_state", "executing:3", "progress_state", "progress_state",
    "executing:4", "executed:4", "progress_state", "execution_success", "status:0", "executing:None",
]  # fmt: skip
CACHED_RERUN_FRAMES = [  # ⟶ success_cached_rerun (after the first frame)
    "status:1", "status:1", "execution_start", "execution_cached:1,2,3,4,5", "executed:5", "progress_state",
    "executed:4", "progress_state", "execution_success", "status:0", "executing:None",
]  # fmt: skip


def test_success_replays_the_captured_frames_history_and_file(fake, http, sockets):
    observer = sockets()
    client = sockets("mcn-2ab960e6")
    hello = client.recv()
    assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "mcn-2ab960e6"}}
    assert len(observer.recv()["data"]["sid"]) == 32  # a hex uuid when no clientId is given

    response = http.post(
        "/prompt",
        json={
            "prompt": BASIC,
            "client_id": "mcn-2ab960e6",
            "extra_data": {"extra_pnginfo": {"workflow_ref": "mcn-test"}},
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body == {"prompt_id": body["prompt_id"], "number": 0, "node_errors": {}}
    prompt_id = body["prompt_id"]

    frames = [hello, *client.until_done(prompt_id)]
    assert tokens(frames) == SUCCESS_FRAMES
    by_type = {f["type"]: f["data"] for f in frames}
    assert list(by_type["execution_start"]) == ["prompt_id", "timestamp"]
    assert list(by_type["execution_success"]) == ["prompt_id", "timestamp"]
    executing = next(f["data"] for f in frames if f["type"] == "executing")
    assert executing == {"node": "1", "display_node": "1", "prompt_id": prompt_id}
    executed_4 = [f["data"] for f in frames if f["type"] == "executed"][-1]
    assert executed_4 == {
        "node": "4",
        "display_node": "4",
        "output": {"images": [{"filename": "mcn_basic_00001_.png", "subfolder": "", "type": "output"}]},
        "prompt_id": prompt_id,
    }
    state = frames[-4]["data"]  # the last progress_state: every node finished
    assert state["prompt_id"] == prompt_id
    assert state["nodes"]["4"] == {
        "value": 1.0,
        "max": 1.0,
        "state": "finished",
        "node_id": "4",
        "prompt_id": prompt_id,
        "display_node_id": "4",
        "parent_node_id": None,
        "real_node_id": "4",
    }
    # The observer (no matching clientId) only hears the status broadcasts.
    assert tokens([observer.recv() for _ in range(3)]) == ["status:1", "status:1", "status:0"]

    entry = http.get(f"/history/{prompt_id}").json()[prompt_id]
    assert list(entry) == ["prompt", "outputs", "status", "meta"]
    assert entry["prompt"][:2] == [0, prompt_id]
    assert entry["prompt"][2] == BASIC
    assert entry["prompt"][3] == {"extra_pnginfo": {"workflow_ref": "mcn-test"}, "client_id": "mcn-2ab960e6"}
    assert entry["prompt"][4] == ["5", "4"]  # as captured (a set's order on the real server)
    assert entry["outputs"]["4"] == {
        "images": [{"filename": "mcn_basic_00001_.png", "subfolder": "", "type": "output"}]
    }
    [preview] = entry["outputs"]["5"]["images"]
    assert preview["type"] == "temp" and preview["filename"].startswith("ComfyUI_temp_")
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["meta"]["4"] == {"node_id": "4", "display_node": "4", "parent_node": None, "real_node_id": "4"}

    view = http.get("/view", params={"filename": "mcn_basic_00001_.png", "subfolder": "", "type": "output"})
    assert view.status_code == 200
    assert view.headers["content-type"] == "image/png"
    assert view.headers["content-disposition"] == 'filename="mcn_basic_00001_.png"'
    image = Image.open(io.BytesIO(view.content))
    assert (image.format, image.size, image.mode) == ("PNG", (64, 48), "RGB")
    assert sorted(image.text) == ["prompt", "workflow_ref"]
    assert http.get("/view", params={"filename": preview["filename"], "type": "temp"}).status_code == 200
    assert fake.output_files() == ["mcn_basic_00001_.png"]


def test_unchanged_rerun_is_served_from_the_cache_without_a_new_file(fake, http, sockets):
    submit(http, BASIC, "first")
    fake.wait_until(lambda: len(fake.history()) == 1)
    client = sockets("mcn-cb92dc5f")
    client.recv()
    prompt_id = submit(http, BASIC, "mcn-cb92dc5f")

    assert tokens(client.until_done(prompt_id)) == CACHED_RERUN_FRAMES
    entry = fake.history_entry(prompt_id)
    assert entry["outputs"]["4"]["images"][0]["filename"] == "mcn_basic_00001_.png"  # the old file, reported again
    assert fake.output_files() == ["mcn_basic_00001_.png"]
    assert fake.nodes_started(prompt_id) == []


def test_injected_template_then_numeric_strings_replay_with_the_node_cache(fake, http, sockets):
    uploaded = upload(http, "mcn_red.png", png())
    assert uploaded.json() == {"name": "mcn_red.png", "subfolder": "", "type": "input"}
    client = sockets("mcn-09286ea9")
    client.recv()

    prompt_id = submit(http, injected(), "mcn-09286ea9")
    assert tokens(client.until_done(prompt_id)) == [  # ⟶ success_placeholder_injected
        "status:1", "status:1", "execution_start", "execution_cached:", "progress_state", "executing:1",
        "progress_state", "progress_state", "executing:2", "progress_state", "progress_state", "executing:3",
        "progress_state", "progress_state", "executing:4", "progress_state", "progress_state", "executing:5",
        "executed:5", "progress_state", "execution_success", "status:0", "executing:None",
    ]  # fmt: skip
    outputs = fake.history_entry(prompt_id)["outputs"]
    assert outputs == {"5": {"images": [{"filename": "job-42_00001_.png", "subfolder": "mcn", "type": "output"}]}}
    view = http.get("/view", params={"filename": "job-42_00001_.png", "subfolder": "mcn", "type": "output"})
    assert Image.open(io.BytesIO(view.content)).size == (32, 24)

    # ⟶ success_numeric_strings: "40" is cast by validation; LoadImage (unchanged) comes from the cache.
    strings = injected(width="40", height="30", seed="42", prefix="mcn/job-str-ints")
    prompt_id = submit(http, strings, "mcn-09286ea9")
    assert tokens(client.until_done(prompt_id))[:5] == [
        "status:1", "status:1", "execution_start", "execution_cached:1", "progress_state",
    ]  # fmt: skip
    stored = fake.history_entry(prompt_id)["prompt"][2]
    assert stored["2"]["inputs"]["width"] == 40 and stored["3"]["inputs"]["seed"] == 42
    assert fake.output_files() == ["mcn/job-42_00001_.png", "mcn/job-str-ints_00001_.png"]


def test_client_prompt_id_front_and_explicit_number(fake, http):
    fake.hang_after_start = True  # keep the first prompt running so the others stay pending
    first = submit(http, BASIC)
    fake.wait_for_running(first)
    front = http.post(
        "/prompt",
        json={"prompt": BASIC, "client_id": "c", "prompt_id": "11111111-2222-3333-4444-555555555555", "front": True},
    ).json()
    assert front == {"prompt_id": "11111111-2222-3333-4444-555555555555", "number": -1, "node_errors": {}}
    explicit = http.post("/prompt", json={"prompt": BASIC, "client_id": "c", "number": 7})
    assert '"number": 7.0' in explicit.text  # echoed as a float
    pending = http.get("/queue").json()["queue_pending"]
    assert [item[0] for item in pending] == [-1, 7.0]
    http.post("/queue", json={"clear": True})
    http.post("/interrupt", json={"prompt_id": first})
    fake.wait_for_history(first)


# ---------------------------------------------------------------------------------------------- 400s

VALIDATION_CASES = {  # ⟶ validation_errors_400: request prompt -> (error, node_errors), tracebacks left out
    "no prompt": (
        None,
        {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}},
        {},
    ),
    "unknown class_type": (
        {"1": {"class_type": "NoSuchNode", "inputs": {}}},
        {
            "type": "invalid_prompt",
            "message": "Cannot execute because node NoSuchNode does not exist.",
            "details": "Node ID '#1'",
            "extra_info": {},
        },
        {},
    ),
    "node without class_type": (
        {"1": {"inputs": {}}},
        {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#1'",
            "extra_info": {},
        },
        {},
    ),
    "no output node": (
        {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}},
        {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
        {},
    ),
    "value below min": (
        {**BASIC, "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 48, "batch_size": 1, "color": 1}}},
        None,
        {
            "1": {
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value 0 smaller than min of 1",
                        "details": "width",
                        "extra_info": {
                            "input_name": "width",
                            "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                            "received_value": 0,
                        },
                    }
                ],
                "dependent_outputs": ["4", "5"],
                "class_type": "EmptyImage",
            }
        },
    ),
    "required input missing": (
        {**BASIC, "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "batch_size": 1, "color": 1}}},
        None,
        {
            "1": {
                "errors": [
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": "height",
                        "extra_info": {"input_name": "height"},
                    }
                ],
                "dependent_outputs": ["4", "5"],
                "class_type": "EmptyImage",
            }
        },
    ),
    "un-injected placeholders": (
        injected(
            width="{{WIDTH}}",
            height="{{HEIGHT}}",
            seed="{{SEED}}",
            prefix="mcn/job-{{JOB_ID}}",
            image="{{INPUT_IMAGE}}",
        ),
        None,
        {
            "1": {
                "errors": [
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "image - Invalid image file: {{INPUT_IMAGE}}",
                        "extra_info": {"input_name": "image"},
                    }
                ],
                "dependent_outputs": ["5"],
                "class_type": "LoadImage",
            },
            "2": {
                "errors": [
                    {
                        "type": "invalid_input_type",
                        "message": "Failed to convert an input value to a INT value",
                        "details": f"{name}, {{{{{key}}}}}, invalid literal for int() with base 10: '{{{{{key}}}}}'",
                        "extra_info": {
                            "input_name": name,
                            "input_config": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
                            "received_value": f"{{{{{key}}}}}",
                            "exception_message": f"invalid literal for int() with base 10: '{{{{{key}}}}}'",
                        },
                    }
                    for name, key in (("width", "WIDTH"), ("height", "HEIGHT"))
                ],
                "dependent_outputs": ["5"],
                "class_type": "ImageScale",
            },
            "3": {
                "errors": [
                    {
                        "type": "invalid_input_type",
                        "message": "Failed to convert an input value to a INT value",
                        "details": "seed, {{SEED}}, invalid literal for int() with base 10: '{{SEED}}'",
                        "extra_info": {
                            "input_name": "seed",
                            "input_config": [
                                "INT",
                                {
                                    "default": 0,
                                    "min": 0,
                                    "max": 18446744073709551615,
                                    "control_after_generate": True,
                                    "tooltip": "The random seed used for creating the noise.",
                                },
                            ],
                            "received_value": "{{SEED}}",
                            "exception_message": "invalid literal for int() with base 10: '{{SEED}}'",
                        },
                    }
                ],
                "dependent_outputs": ["5"],
                "class_type": "ImageAddNoise",
            },
        },
    ),
    "combo value not in list": (
        {**injected(), "2": {**injected()["2"], "inputs": {**injected()["2"]["inputs"], "upscale_method": "magic"}}},
        None,
        {
            "2": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "upscale_method: 'magic' not in "
                        "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
                        "extra_info": {
                            "input_name": "upscale_method",
                            "input_config": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}],
                            "received_value": "magic",
                        },
                    }
                ],
                "dependent_outputs": ["5"],
                "class_type": "ImageScale",
            }
        },
    ),
    "link type mismatch": (
        {
            **injected(),
            "3": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 1], "seed": 1, "strength": 0.25}},
        },
        None,
        {
            "3": {
                "errors": [
                    {
                        "type": "return_type_mismatch",
                        "message": "Return type mismatch between linked nodes",
                        "details": "image, received_type(MASK) mismatch input_type(IMAGE)",
                        "extra_info": {
                            "input_name": "image",
                            "input_config": ["IMAGE", {}],
                            "received_type": "MASK",
                            "linked_node": ["1", 1],
                        },
                    }
                ],
                "dependent_outputs": ["5"],
                "class_type": "ImageAddNoise",
            }
        },
    ),
    "bad link": (
        {
            k: v
            for k, v in {**BASIC, "2": {"class_type": "ImageInvert", "inputs": {"image": ["1"]}}}.items()
            if k != "5"
        },
        None,
        {
            "2": {
                "errors": [
                    {
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        "details": "image",
                        "extra_info": {"input_name": "image", "input_config": ["IMAGE", {}], "received_value": ["1"]},
                    }
                ],
                "dependent_outputs": ["4"],
                "class_type": "ImageInvert",
            }
        },
    ),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_invalid_prompts_get_the_real_400_shapes(fake, http, case):
    prompt, error, node_errors = VALIDATION_CASES[case]
    if case == "combo value not in list" or case == "link type mismatch":
        upload(http, "mcn_red.png", png())
    body = {"client_id": "x"} if prompt is None else {"prompt": prompt}
    response = http.post("/prompt", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    answer = response.json()
    for entry in answer["node_errors"].values():
        entry["dependent_outputs"].sort()  # a set on the real server: order varies
    expected_error = error or {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    }
    assert answer == {"error": expected_error, "node_errors": node_errors}
    assert fake.queue() == {"queue_running": [], "queue_pending": []}


def test_dangling_links_fail_validation_like_the_real_server(http):
    output_node = http.post(
        "/prompt",
        json={"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}}},
    ).json()
    assert output_node["error"]["details"] == "Exception when validating node: '99'"
    [reason] = output_node["node_errors"]["1"]["errors"]
    assert (reason["type"], reason["details"], reason["extra_info"]["exception_type"]) == (
        "exception_during_validation",
        "'99'",
        "KeyError",
    )
    assert isinstance(reason["extra_info"]["traceback"], list)

    upstream = http.post(
        "/prompt",
        json={
            "prompt": {
                "1": {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
            }
        },
    ).json()
    assert upstream["error"]["details"] == ""
    [reason] = upstream["node_errors"]["1"]["errors"]
    assert reason["type"] == "exception_during_inner_validation"
    assert {k: reason["extra_info"][k] for k in ("input_name", "exception_type", "linked_node")} == {
        "input_name": "images",
        "exception_type": "KeyError",
        "linked_node": ["1", 0],
    }
    assert upstream["node_errors"]["1"]["class_type"] == "ImageInvert"

    index = http.post(
        "/prompt",
        json={
            "prompt": {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 5], "filename_prefix": "x"}},
            }
        },
    ).json()
    assert index["error"]["details"] == "Exception when validating node: tuple index out of range"


def test_malformed_json_gets_the_real_500_page(http):
    response = http.post("/prompt", content=b"{not json")
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"


def test_partial_validation_runs_the_valid_outputs_and_reports_the_rest(fake, http, sockets):
    submit(http, {**BASIC, "4": {**BASIC["4"], "inputs": {**BASIC["4"]["inputs"], "filename_prefix": "warm"}}})
    fake.wait_until(lambda: len(fake.history()) == 1)
    client = sockets("mcn-60f5eb6e")
    client.recv()
    prompt = {
        **BASIC,
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "mcn_partial"}},
        "6": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "never"}},
    }
    body = http.post("/prompt", json={"prompt": prompt, "client_id": "mcn-60f5eb6e"}).json()
    assert list(body["node_errors"]) == ["6"]
    assert body["node_errors"]["6"]["dependent_outputs"] == ["7"]

    assert tokens(client.until_done(body["prompt_id"])) == [  # ⟶ partial_validation_200_with_node_errors
        "status:1", "status:1", "execution_start", "execution_cached:1,2,3,5", "executed:5", "progress_state",
        "progress_state", "executing:4", "executed:4", "progress_state", "execution_success", "status:0",
        "executing:None",
    ]  # fmt: skip
    entry = fake.history_entry(body["prompt_id"])
    assert sorted(entry["outputs"]) == ["4", "5"] and entry["prompt"][4] == ["5", "4"]
    assert "never_00001_.png" not in fake.output_files()


# ---------------------------------------------------------------------------------------------- execution errors


def test_execution_error_of_a_corrupt_upload(fake, http, sockets):
    assert upload(http, "mcn_corrupt.png", b"this is not an image" * 5).json()["name"] == "mcn_corrupt.png"
    client = sockets("mcn-907b1820")
    client.recv()
    prompt = injected(width=8, height=8, seed=1, prefix="mcn/job-err", image="mcn_corrupt.png")
    prompt_id = submit(http, prompt, "mcn-907b1820")

    frames = client.until_done(prompt_id)
    assert tokens(frames) == [  # ⟶ execution_error
        "status:1", "status:1", "execution_start", "execution_cached:", "progress_state", "executing:1",
        "execution_error", "status:0", "executing:None",
    ]  # fmt: skip
    error = frames[-3]["data"]
    assert list(error) == [
        "prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "traceback",
        "current_inputs", "current_outputs", "timestamp",
    ]  # fmt: skip
    assert (error["node_id"], error["node_type"], error["executed"]) == ("1", "LoadImage", [])
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["exception_message"] == f"cannot identify image file '{fake.input_dir / 'mcn_corrupt.png'}'\n"
    assert error["current_inputs"] == {"image": ["mcn_corrupt.png"]}
    entry = fake.history_entry(prompt_id)
    assert entry["outputs"] == {} and entry["meta"] == {}
    assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)
    assert entry["status"]["messages"][-1] == ["execution_error", error]


def test_save_outside_the_output_folder_is_an_execution_error(fake, http, sockets):
    client = sockets("mcn-dc3813ab")
    client.recv()
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "../escape"}},
    }
    prompt_id = submit(http, prompt, "mcn-dc3813ab")
    error = client.until("execution_error", prompt_id=prompt_id)["data"]
    assert (error["node_type"], error["executed"], error["exception_type"]) == ("SaveImage", ["1"], "Exception")
    assert error["exception_message"].startswith("**** ERROR: Saving image outside the output folder is not allowed.")
    assert sorted(error["current_inputs"]) == ["extra_pnginfo", "filename_prefix", "images", "prompt"]


# ---------------------------------------------------------------------------------------------- interrupt, queue


def test_targeted_interrupt_only_stops_the_running_prompt(fake, http, sockets):
    fake.steps_per_node = 40
    fake.step_seconds = 0.05
    client = sockets("mcn-int2-9f72d1")
    client.recv()
    prompt_id = submit(http, BASIC, "mcn-int2-9f72d1")
    client.until("progress", node="1", value=1)

    assert http.post("/interrupt", json={"prompt_id": "not-the-running-one"}).status_code == 200
    client.until("progress", node="1", value=2)  # ⟶ interrupt_targeted_during_progress: ignored, still running
    response = http.post("/interrupt", json={"prompt_id": prompt_id})
    assert (response.status_code, response.text, response.headers.get("content-type")) == (200, "", None)

    interrupted = client.until("execution_interrupted")["data"]
    assert list(interrupted) == ["prompt_id", "node_id", "node_type", "executed", "timestamp"]
    assert (interrupted["prompt_id"], interrupted["node_id"], interrupted["executed"]) == (prompt_id, "1", [])
    assert tokens([client.recv(), client.recv()]) == ["status:0", "executing:None"]
    status = fake.wait_for_history(prompt_id)["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1][0] == "execution_interrupted"
    assert fake.interrupts() == ["not-the-running-one", prompt_id]


def test_global_interrupt_of_a_hung_prompt(fake, http, sockets):
    fake.hang_after_start = True
    client = sockets("mcn-int-9eade0")
    client.recv()
    prompt_id = submit(http, BASIC, "mcn-int-9eade0")
    fake.wait_for_node(prompt_id, "1")
    assert http.get(f"/history/{prompt_id}").json() == {}  # {} while running
    running = http.get("/queue").json()["queue_running"]
    assert [item[:2] for item in running] == [[0, prompt_id]] and running[0][3] == {"client_id": "mcn-int-9eade0"}

    assert http.post("/interrupt").status_code == 200  # no body: global
    assert tokens(client.until_done(prompt_id)) == [
        "status:1", "status:1", "execution_start", "execution_cached:", "progress_state", "executing:1",
        "execution_interrupted", "status:0", "executing:None",
    ]  # fmt: skip
    assert fake.interrupts() == [None]


def test_queue_operations_replay(fake, http, sockets):
    fake.hang_after_start = True
    client = sockets("mcn-q-e2d2b8")
    client.recv()
    a = submit(http, BASIC, "mcn-q-e2d2b8")
    fake.wait_for_node(a, "1")
    b, c = (
        submit(http, {**BASIC, "9": {"class_type": "PreviewAny", "inputs": {"source": n}}}, "mcn-q-e2d2b8")
        for n in "BC"
    )
    d = http.post("/prompt", json={"prompt": BASIC, "client_id": "mcn-q-e2d2b8", "front": True}).json()
    assert d["number"] == -3

    queue = http.get("/queue").json()
    assert [item[1] for item in queue["queue_running"]] == [a]
    # The raw heap array, not sorted (the capture shows -36, 35, 34 the same way).
    assert [(item[0], item[1]) for item in queue["queue_pending"]] == [(-3, d["prompt_id"]), (2, c), (1, b)]
    assert queue["queue_pending"][1][3:] == [{"client_id": "mcn-q-e2d2b8"}, ["9", "5", "4"]]
    assert http.get("/prompt").json() == {"exec_info": {"queue_remaining": 4}}

    for body in ({"delete": [b]}, {"delete": ["nope"]}, {"delete": [a]}):
        response = http.post("/queue", json=body)
        assert (response.status_code, response.text) == (200, "")
    assert [item[1] for item in http.get("/queue").json()["queue_pending"]] == [d["prompt_id"], c]
    http.post("/queue", json={"clear": True})
    assert http.get("/queue").json()["queue_pending"] == []
    http.post("/interrupt", json={})

    assert tokens(client.until_done(a)) == [  # ⟶ queue_operations (there, node 1 was cached)
        "status:1", "status:1", "execution_start", "execution_cached:", "progress_state", "executing:1", "status:2",
        "status:3", "status:4", "status:3", "status:1", "execution_interrupted", "status:0", "executing:None",
    ]  # fmt: skip
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_history_listing_delete_and_clear(fake, http):
    first = submit(http, BASIC)
    fake.wait_for_history(first)
    second = submit(http, txt2img())
    fake.wait_for_history(second)

    assert list(http.get("/history").json()) == [first, second]
    assert list(http.get("/history", params={"max_items": 1}).json()) == [second]
    assert list(http.get("/history", params={"max_items": 1, "offset": 0}).json()) == [first]
    assert http.get("/history/does-not-exist").json() == {}
    response = http.post("/history", json={"delete": [first]})
    assert (response.status_code, response.text) == (200, "")
    assert http.get(f"/history/{first}").json() == {}
    http.post("/api/history", json={"clear": True})
    assert http.get("/api/history").json() == {}


def test_upload_image_dedup_rename_overwrite_like_the_real_server(fake, http):
    red, other = png((255, 0, 0)), png((0, 0, 255))
    assert upload(http, "mcn_red.png", red).json() == {"name": "mcn_red.png", "subfolder": "", "type": "input"}
    assert upload(http, "mcn_red.png", red).json()["name"] == "mcn_red.png"  # same bytes: same name
    assert upload(http, "mcn_red.png", other).json()["name"] == "mcn_red (1).png"  # different bytes: renamed
    assert upload(http, "mcn_red.png", other).json()["name"] == "mcn_red (1).png"  # ... and deduplicated there
    assert upload(http, "mcn_red.png", other, overwrite="true").json()["name"] == "mcn_red.png"
    assert (fake.input_dir / "mcn_red.png").read_bytes() == other
    assert upload(http, "mcn_sub.png", red, subfolder="mcn", type="input").json() == {
        "name": "mcn_sub.png",
        "subfolder": "mcn",
        "type": "input",
    }
    assert upload(http, "mcn_tmp.png", red, type="temp").json() == {
        "name": "mcn_tmp.png",
        "subfolder": "",
        "type": "temp",
    }
    missing = http.post("/upload/image", files={"foo": ("x.txt", b"bar")})
    assert (missing.status_code, missing.text, missing.headers.get("content-type")) == (400, "", None)
    assert upload(http, "x.png", red, subfolder="../../etc").status_code == 400
    assert fake.requests("POST", "/upload/image")[-1].form == {"image": "x.png", "subfolder": "../../etc"}

    # LoadImage accepts "subfolder/name" and /object_info lists the top-level input files.
    options = http.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"]
    assert options == [["mcn_red (1).png", "mcn_red.png"], {"image_upload": True}]
    prompt_id = submit(http, injected(image="mcn/mcn_sub.png"))
    assert fake.wait_for_history(prompt_id)["status"]["status_str"] == "success"


def test_view_refuses_traversal_and_answers_404_for_missing_files(http):
    assert http.get("/view", params={"filename": "../secret.png"}).status_code == 400
    assert http.get("/view", params={"filename": "/etc/passwd"}).status_code == 400
    assert http.get("/view", params={"filename": "x.png", "type": "bogus"}).status_code == 400
    assert http.get("/view", params={"filename": "x.png", "subfolder": "../.."}).status_code == 403
    missing = http.get("/view", params={"filename": "missing.png", "type": "output"})
    assert (missing.status_code, missing.text) == (404, "")
    assert http.get("/view").status_code == 404


def test_free_is_recorded_and_free_memory_empties_the_cache(fake, http):
    first = submit(http, BASIC)
    fake.wait_for_history(first)
    for body in ({"unload_models": True}, {"unload_models": True, "free_memory": True}):
        response = http.post("/free", json=body)
        assert (response.status_code, response.text, response.headers.get("content-type")) == (200, "", None)
    assert fake.free_calls() == [{"unload_models": True}, {"unload_models": True, "free_memory": True}]
    second = submit(http, BASIC)
    assert fake.wait_for_history(second)["outputs"]["4"]["images"][0]["filename"] == "mcn_basic_00002_.png"


def test_system_stats_object_info_and_api_prefix(fake, http):
    stats = http.get("/system_stats").json()
    assert list(stats["system"]) == [
        "os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version", "installed_templates_version",
        "required_templates_version", "python_version", "pytorch_version", "embedded_python", "argv",
    ]  # fmt: skip
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert stats["devices"] == [
        {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": 25276502016,
            "vram_free": 24123392000,
            "torch_vram_total": 25276502016,
            "torch_vram_free": 24123392000,
        }
    ]
    fake.set_device(
        "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", vram_total=85_000_000_000, vram_free=80_000_000_000
    )
    [device] = http.get("/api/system_stats").json()["devices"]
    assert (device["type"], device["index"], device["vram_free"]) == ("cuda", 0, 80_000_000_000)

    assert http.get("/object_info/EmptyImage").json() == {  # ⟶ http_basics, verbatim
        "EmptyImage": {
            "input": {
                "required": {
                    "width": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                    "height": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                    "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
                    "color": ["INT", {"default": 0, "min": 0, "max": 16777215, "step": 1, "display": "color"}],
                }
            },
            "input_order": {"required": ["width", "height", "batch_size", "color"]},
            "output": ["IMAGE"],
            "output_is_list": [False],
            "output_name": ["IMAGE"],
            "name": "EmptyImage",
            "display_name": "EmptyImage",
            "description": "",
            "python_module": "nodes",
            "category": "image",
            "output_node": False,
        }
    }
    nothing = http.get("/object_info/NoSuchNode")
    assert (nothing.status_code, nothing.json()) == (200, {})
    catalogue = http.get("/api/object_info").json()
    assert {"EmptyImage", "ImageInvert", "ImageBlur", "ImageScale", "LoadImage", "SaveImage", "PreviewImage"} <= set(
        catalogue
    )
    assert {"PrimitiveInt", "PreviewAny", "CheckpointLoaderSimple", "KSampler"} <= set(catalogue)
    fake.set_models(["a.safetensors", "b.safetensors"])
    ckpt = http.get("/object_info/CheckpointLoaderSimple").json()["CheckpointLoaderSimple"]["input"]["required"]
    assert ckpt["ckpt_name"][0] == ["a.safetensors", "b.safetensors"]
    assert http.get("/features").json() == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    assert [r.raw_path for r in fake.requests("GET", "/system_stats")] == ["/system_stats", "/api/system_stats"]


def test_missing_model_is_a_value_not_in_list_400(http):
    response = http.post("/prompt", json={"prompt": txt2img(ckpt="x.safetensors")})
    assert response.status_code == 400
    [error] = response.json()["node_errors"]["1"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == "ckpt_name: 'x.safetensors' not in ['sd_xl_base_1.0.safetensors']"


# ---------------------------------------------------------------------------------------------- sockets


def test_websocket_feature_flags_reconnect_and_routing(fake, http, sockets):
    flagged = sockets("mcn-ff")
    flagged.ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    assert flagged.recv()["data"]["sid"] == "mcn-ff"
    assert flagged.recv() == {
        "type": "feature_flags",
        "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
    }

    fake.hang_after_start = True
    first = sockets("mcn-rc-5b1621")
    first.recv()
    prompt_id = submit(http, txt2img(), "mcn-rc-5b1621")
    first.until("executing", node="1")
    first.close()  # close the old socket first: its close would unregister a newer one (server.py pops by sid)
    fake.wait_until(lambda: "mcn-rc-5b1621" not in fake.connected_clients())
    second = sockets("mcn-rc-5b1621")
    assert second.recv()["data"] == {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "mcn-rc-5b1621"}
    assert second.recv() == {"type": "executing", "data": {"node": "1"}}  # ⟶ reconnect: no prompt_id
    fake.hang_after_start = False
    frames = second.until_done(prompt_id)
    assert [f["data"]["value"] for f in frames if f["type"] == "progress"] == [1, 2, 3]  # KSampler steps
    assert tokens([flagged.recv(), flagged.recv()]) == ["status:1", "status:1"]  # other clients: status only


def test_prompt_without_client_id_broadcasts_progress_only(fake, http, sockets):
    observer = sockets("mcn-unrelated-observer")
    observer.recv()
    response = http.post("/prompt", json={"prompt": txt2img(steps=2)})
    prompt_id = response.json()["prompt_id"]
    seen = []
    while "status:0" not in seen:  # the last frame: no executing{null} without a client_id
        seen.append(tokens([observer.recv()])[0])
    assert "progress:5:1/2" in seen and "progress:5:2/2" in seen and "progress_state" in seen
    assert not any(t.startswith(("executing", "executed", "execution_")) for t in seen)
    assert fake.history_entry(prompt_id)["prompt"][3] == {}


def test_origin_guard_refuses_a_foreign_origin(http):
    assert http.get("/queue", headers={"Origin": "http://evil.example"}).status_code == 403
    assert http.get(
        "/queue", headers={"Origin": http.base_url.scheme + "://" + http.base_url.netloc.decode()}
    ).is_success


# ---------------------------------------------------------------------------------------------- scripted faults


def test_steps_per_node_and_previews(fake, http, sockets):
    fake.steps_per_node = 2
    fake.send_previews = True
    client = sockets("c")
    client.recv()
    prompt_id = submit(http, BASIC, "c")
    binary = []
    frames = []
    while not frames or frames[-1] != {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}:
        frame = client.recv()
        (binary if isinstance(frame, bytes) else frames).append(frame)
    progress = [t for t in tokens(frames) if t.startswith("progress:")]
    assert progress == [f"progress:{n}:{v}/2" for n in "15234" for v in (1, 2)]
    assert len(binary) == 10 and binary[0][:8] == bytes.fromhex("0000000100000001")  # type 1, JPEG


def test_die_mid_run_then_restart_gives_a_fresh_server_on_the_same_port(fake, http, sockets):
    done = submit(http, BASIC)
    fake.wait_for_history(done)
    port = fake.port
    fake.die_mid_run = True
    client = sockets("c")
    client.recv()
    lost = submit(
        http, {**BASIC, "4": {**BASIC["4"], "inputs": {**BASIC["4"]["inputs"], "filename_prefix": "lost"}}}, "c"
    )
    assert fake.died.wait(5)
    assert fake.nodes_started(lost) == [(lost, "4")]  # node 4 was the first to run (1, 2, 3, 5 cached)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            client.recv()
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/queue", timeout=2)
    assert not fake.die_mid_run

    fake.restart()
    assert fake.port == port and not fake.died.is_set()
    assert http.get("/history").json() == {}
    assert http.get(f"/history/{lost}").json() == {}
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    again = submit(http, BASIC)
    assert fake.wait_for_history(again)["prompt"][0] == 0  # the counter restarted too
    assert fake.output_files() == ["mcn_basic_00001_.png", "mcn_basic_00002_.png"]  # files on disk survive
    assert [p.prompt_id for p in fake.prompts_submitted()] == [done, lost, again]


def test_oom_at_node_then_free_and_retry(fake, http, sockets):
    fake.oom_at_node("5")
    client = sockets("c")
    client.recv()
    first = submit(http, txt2img(), "c")
    error = client.until("execution_error")["data"]
    assert (error["prompt_id"], error["node_id"], error["node_type"]) == (first, "5", "KSampler")
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"].endswith(
        "\nThis error means you ran out of memory on your GPU.\n\n"
        "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."
    )
    assert fake.wait_for_history(first)["status"]["status_str"] == "error"

    http.post("/free", json={"unload_models": True, "free_memory": True})
    second = submit(http, txt2img(), "c")
    assert fake.wait_for_history(second)["status"]["status_str"] == "success"
    assert fake.free_calls() == [{"unload_models": True, "free_memory": True}]
    assert len(fake.prompts_submitted()) == 2


def test_execution_error_at_node(fake, http):
    fake.execution_error_at_node("3", "boom", exception_type="RuntimeError", times=2)
    for _ in range(2):
        prompt_id = submit(http, BASIC)
        [event, data] = fake.wait_for_history(prompt_id)["status"]["messages"][-1]
        assert (event, data["node_id"], data["exception_type"], data["exception_message"]) == (
            "execution_error",
            "3",
            "RuntimeError",
            "boom\n",
        )
        http.post("/free", json={"free_memory": True})
    assert fake.wait_for_history(submit(http, BASIC))["status"]["status_str"] == "success"


def test_finish_before_ws(fake, http, sockets):
    fake.finish_before_ws = True
    client = sockets("c")
    client.recv()
    prompt_id = submit(http, BASIC, "c")
    assert http.get(f"/history/{prompt_id}").json()[prompt_id]["status"]["status_str"] == "success"
    fake.finish_before_ws = False
    after = submit(http, BASIC, "c")
    # The socket heard only the status broadcasts of the first prompt.
    assert tokens(client.until_done(after))[:6] == [
        "status:1", "status:1", "status:0", "status:1", "status:1", "execution_start",
    ]  # fmt: skip


def test_silent_socket(fake, http, sockets):
    fake.silent_socket = True
    client = sockets("c")
    prompt_id = submit(http, BASIC, "c")
    assert fake.wait_for_history(prompt_id)["status"]["status_str"] == "success"
    fake.silent_socket = False
    after = submit(http, BASIC, "c")
    assert tokens(client.until_done(after))[:3] == ["status:1", "status:1", "execution_start"]


def test_refuse_connections_closes_the_port_until_cleared(fake, http):
    prompt_id = submit(http, BASIC)
    fake.wait_for_history(prompt_id)
    fake.refuse_connections = True
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fake.port), timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/system_stats", timeout=2)
    fake.refuse_connections = False
    assert prompt_id in http.get("/history").json()  # state kept, unlike restart()


def test_refusing_from_the_start_then_coming_up_on_the_announced_port():
    down = FakeComfyUI()
    down.refuse_connections = True
    with down:
        assert down.port != 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(down.url + "/system_stats", timeout=2)
        down.refuse_connections = False
        assert httpx.get(down.url + "/system_stats", timeout=2).status_code == 200


def test_http_500_on_prompt_queues_nothing(fake, http):
    fake.http_500_on_prompt(times=2)
    for _ in range(2):
        response = http.post("/prompt", json={"prompt": BASIC})
        assert (response.status_code, response.text) == (
            500,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
    assert fake.history() == {} and fake.queue()["queue_pending"] == []
    assert http.post("/prompt", json={"prompt": BASIC}).json()["number"] == 0


def test_accept_then_timeout_queues_the_prompt_but_the_reply_is_late(fake):
    fake.accept_then_timeout(2.0)
    with httpx.Client(base_url=fake.url, timeout=httpx.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/prompt", json={"prompt": BASIC, "prompt_id": "ours-1", "client_id": "c"})
        assert fake.wait_for_history("ours-1")["status"]["status_str"] == "success"
        assert client.get("/history/ours-1").json()["ours-1"]["prompt"][1] == "ours-1"
    assert [p.prompt_id for p in fake.prompts_submitted()] == ["ours-1"]


def test_request_log_and_helpers(fake, http):
    http.post("/api/prompt", json={"prompt": BASIC, "prompt_id": "p-1", "client_id": "c-1"})
    http.post("/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
    fake.wait_for_history("p-1")
    [first, rejected] = fake.prompts_submitted()
    assert first == ("p-1", BASIC, "c-1")
    assert rejected.prompt_id is None and rejected.client_id is None
    record = fake.requests("POST", "/prompt")[0]
    assert (record.raw_path, record.status, record.response_json["prompt_id"]) == ("/api/prompt", 200, "p-1")
    assert fake.wait_for_request("POST", "/prompt", count=2)[1].status == 400


def test_a_client_in_another_process_is_served(fake):
    script = (
        "import httpx, sys\n"
        "r = httpx.post(sys.argv[1] + '/prompt', json={'prompt': {'1': {'class_type': 'PrimitiveInt', "
        "'inputs': {'value': 5}}, '2': {'class_type': 'PreviewAny', 'inputs': {'source': ['1', 0]}}}, "
        "'prompt_id': 'from-a-worker'})\n"
        "r.raise_for_status()\n"
    )
    subprocess.run([sys.executable, "-c", script, fake.url], check=True, timeout=20)
    entry = fake.wait_for_history("from-a-worker")
    assert entry["outputs"] == {"2": {"text": ["5"]}}


def test_closing_a_replaced_socket_unregisters_its_successor_as_server_py_does(fake, sockets):
    old = sockets("same-id")
    old.recv()
    new = sockets("same-id")
    new.recv()
    old.close()
    fake.wait_until(lambda: "same-id" not in fake.connected_clients())  # the new socket is open but hears nothing
    assert new.ws.connected


def test_prompt_seconds_hold_the_executor_one_prompt_at_a_time_and_executions_record_it(fake, http):
    fake.prompt_seconds = 0.1
    for n in (1, 2):
        http.post("/prompt", json={"prompt": BASIC, "prompt_id": f"timed-{n}"}).raise_for_status()
    fake.wait_for_history("timed-2")
    first, second = fake.executions()
    assert (first.prompt_id, second.prompt_id, first.success, second.success) == ("timed-1", "timed-2", True, True)
    assert first.ended - first.started >= 0.1 and second.ended - second.started >= 0.1
    assert second.started >= first.ended  # the one executor: the second waited in the queue


def test_an_interrupt_cuts_prompt_seconds_short(fake, http):
    fake.prompt_seconds = 30
    http.post("/prompt", json={"prompt": BASIC, "prompt_id": "long"}).raise_for_status()
    fake.wait_for_running("long")
    http.post("/interrupt", json={"prompt_id": "long"}).raise_for_status()
    entry = fake.wait_for_history("long")
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    [execution] = fake.executions()
    assert not execution.success and execution.ended - execution.started < 5


# ------------------------------------------------------------------ video outputs (issue 16)


def ffprobe(data: bytes, tmp_path, name) -> dict:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe (Debian package ffmpeg) is not installed")
    path = tmp_path / name
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def run_prompt(fake, http, prompt) -> dict:
    answer = http.post("/prompt", json={"prompt": prompt})
    assert answer.status_code == 200, answer.text
    entry = fake.wait_for_history(answer.json()["prompt_id"], timeout=20)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


def preview_avatar(fps=25, amount=50, prefix="video/mcn"):
    """The model-free avatar preview: a face and a voice -> frames -> CreateVideo(audio) -> SaveVideo."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "face.png"}},
        "2": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
        "3": {
            "class_type": "ImageScale",
            "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 96, "height": 64, "crop": "disabled"},
        },
        "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": amount}},
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "fps": fps, "audio": ["2", 0]}},
        "6": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["5", 0], "filename_prefix": prefix, "format": "auto", "codec": "auto"},
        },
    }


def put_input(http, name, data, content_type="image/png"):
    answer = http.post("/upload/image", files={"image": (name, data, content_type)}, data={"type": "input"})
    assert answer.status_code == 200
    return answer.json()


def test_save_video_writes_an_mp4_with_the_uploaded_audio_cut_to_the_frames(fake, http, tmp_path):
    put_input(http, "face.png", png(size=(40, 30)))
    put_input(http, "voice.wav", wav_bytes(seconds=3.0), "audio/wav")

    entry = run_prompt(fake, http, preview_avatar(fps=25, amount=50))

    assert entry["outputs"]["6"] == {
        "images": [{"filename": "mcn_00001_.mp4", "subfolder": "video", "type": "output"}],
        "animated": [True],
    }
    clip = http.get("/view", params={"filename": "mcn_00001_.mp4", "subfolder": "video", "type": "output"})
    assert clip.status_code == 200
    info = ffprobe(clip.content, tmp_path, "clip.mp4")
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (96, 64)
    assert streams["video"]["nb_read_frames"] == "50"
    assert streams["audio"]["codec_name"] == "aac"
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.05)  # 50 frames at 25 fps


def test_a_video_model_node_takes_its_frame_count_from_length_or_from_the_audio(tmp_path):
    talk = {
        "input": {"required": {"image": ["IMAGE"], "audio": ["AUDIO"], "width": ["INT", {}], "height": ["INT", {}]}},
        "output": ["IMAGE"],
        "name": "FakeTalkingHead",
    }
    i2v = {"input": {"required": {"start_image": ["IMAGE"], "length": ["INT", {}]}}, "output": ["IMAGE"], "name": "I2V"}
    with FakeComfyUI(extra_nodes={"a": talk, "b": i2v}) as fake, httpx.Client(base_url=fake.url, timeout=5) as http:
        put_input(http, "face.png", png(size=(40, 30)))
        put_input(http, "voice.wav", wav_bytes(seconds=1.2), "audio/wav")
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "face.png"}},
            "2": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
            "3": {
                "class_type": "FakeTalkingHead",
                "inputs": {"image": ["1", 0], "audio": ["2", 0], "width": 64, "height": 48},
            },
            "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 25, "audio": ["2", 0]}},
            "5": {
                "class_type": "SaveVideo",
                "inputs": {"video": ["4", 0], "filename_prefix": "talk", "format": "mp4", "codec": "h264"},
            },
            "6": {"class_type": "I2V", "inputs": {"start_image": ["1", 0], "length": 33}},
            "7": {
                "class_type": "SaveWEBM",
                "inputs": {"images": ["6", 0], "filename_prefix": "move", "codec": "vp9", "fps": 16, "crf": 32},
            },
        }
        entry = run_prompt(fake, http, prompt)
        talk_info = ffprobe((fake.output_dir / "talk_00001_.mp4").read_bytes(), tmp_path, "talk.mp4")
        move = entry["outputs"]["7"]
        assert move == {
            "images": [{"filename": "move_00001_.webm", "subfolder": "", "type": "output"}],
            "animated": [True],
        }
        move_info = ffprobe((fake.output_dir / "move_00001_.webm").read_bytes(), tmp_path, "move.webm")

    video = next(s for s in talk_info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"], video["nb_read_frames"]) == (64, 48, "30")  # 1.2 s at 25 fps
    assert float(talk_info["format"]["duration"]) == pytest.approx(1.2, abs=0.05)
    webm = move_info["streams"][0]
    assert (webm["codec_name"], webm["width"], webm["height"], webm["nb_read_frames"]) == ("vp9", 40, 30, "33")


def test_animated_webp_and_png_are_reported_as_animated_images(fake, http):
    put_input(http, "face.png", png(size=(20, 10)))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "face.png"}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 12}},
        "3": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["2", 0],
                "filename_prefix": "w",
                "fps": 6.0,
                "lossless": False,
                "quality": 80,
                "method": "default",
            },
        },
        "4": {
            "class_type": "SaveAnimatedPNG",
            "inputs": {"images": ["2", 0], "filename_prefix": "p", "fps": 6.0, "compress_level": 4},
        },
    }
    entry = run_prompt(fake, http, prompt)
    assert entry["outputs"]["3"] == {"images": [{"filename": "w_00001_.webp", "subfolder": "", "type": "output"}],
                                     "animated": [True]}  # fmt: skip
    assert entry["outputs"]["4"]["animated"] == [True]
    for name in ("w_00001_.webp", "p_00001_.png"):
        with Image.open(io.BytesIO(http.get("/view", params={"filename": name}).content)) as img:
            assert img.n_frames == 12
            assert img.size == (20, 10)


def test_vhs_video_combine_reports_the_audio_clip_under_gifs_with_its_first_frame_png(tmp_path):
    with FakeComfyUI(extra_nodes=VHS_NODES) as fake, httpx.Client(base_url=fake.url, timeout=5) as http:
        put_input(http, "face.png", png(size=(32, 32)))
        put_input(http, "voice.wav", wav_bytes(seconds=1.0), "audio/wav")
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "face.png"}},
            "2": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
            "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 25}},
            "4": {
                "class_type": "VHS_VideoCombine",
                "inputs": {
                    "images": ["3", 0],
                    "audio": ["2", 0],
                    "frame_rate": 25,
                    "loop_count": 0,
                    "filename_prefix": "LongCat",
                    "format": "video/h264-mp4",
                    "pingpong": False,
                    "save_output": True,
                },
            },
        }
        entry = run_prompt(fake, http, prompt)
        files = fake.output_files()
        clip = http.get("/view", params={"filename": "LongCat_00001-audio.mp4", "type": "output"}).content

    gifs = entry["outputs"]["4"]["gifs"]
    assert [(g["filename"], g["subfolder"], g["type"], g["format"], g["workflow"]) for g in gifs] == [
        ("LongCat_00001-audio.mp4", "", "output", "video/h264-mp4", "LongCat_00001.png")
    ]
    assert files == ["LongCat_00001-audio.mp4", "LongCat_00001.mp4", "LongCat_00001.png"]
    info = ffprobe(clip, tmp_path, "vhs.mp4")
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert float(info["format"]["duration"]) == pytest.approx(1.0, abs=0.05)


def test_uploads_are_recorded_and_a_restart_can_lose_the_input_folder(fake, http):
    data = png()
    put_input(http, "a.png", data)
    put_input(http, "a.png", data)  # same bytes: the same name again
    [first, second] = fake.uploads()
    assert (first.name, first.subfolder, first.type, first.sha256) == (
        "a.png",
        "",
        "input",
        hashlib.sha256(data).hexdigest(),
    )
    assert second.name == "a.png"

    fake.restart(lose_inputs=True)
    assert http.get("/view", params={"filename": "a.png", "type": "input"}).status_code == 404
    prompt = preview_avatar()
    prompt["2"]["inputs"]["audio"] = "v.wav"
    prompt["1"]["inputs"]["image"] = "a.png"
    answer = http.post("/prompt", json={"prompt": prompt})
    assert answer.status_code == 400
    errors = answer.json()["node_errors"]
    assert errors["1"]["errors"][0]["details"] == "image - Invalid image file: a.png"
    assert errors["2"]["errors"][0]["details"] == "audio - Invalid audio file: v.wav"


def test_queue_unanswered_holds_get_queue_until_cleared(fake, http):
    fake.queue_unanswered = True
    with pytest.raises(httpx.ReadTimeout):
        http.get("/queue", timeout=0.5)
    assert http.get("/history").status_code == 200  # only the queue is stuck

    fake.queue_unanswered = False
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_the_wan_nodes_are_served_as_a_real_0_3_64_declares_them(http):
    node = http.get("/object_info/WanImageToVideo").json()["WanImageToVideo"]
    assert node["input_order"] == {
        "required": ["positive", "negative", "vae", "width", "height", "length", "batch_size"],
        "optional": ["clip_vision_output", "start_image"],
    }
    assert node["output"] == ["CONDITIONING", "CONDITIONING", "LATENT"]
    assert http.get("/object_info/UNETLoader").json()["UNETLoader"]["input"]["required"]["unet_name"] == [[]]


def test_model_load_seconds_is_charged_only_when_a_prompts_models_differ_from_those_loaded(fake, http):
    fake.set_models(["a.safetensors", "b.safetensors"])
    fake.model_load_seconds = 0.3
    order = ["a.safetensors", "a.safetensors", "b.safetensors", "a.safetensors"]
    ids = [submit(http, txt2img(ckpt=ckpt, steps=1, prefix=f"jobs/{n}")) for n, ckpt in enumerate(order)]
    for prompt_id in ids:
        fake.wait_for_history(prompt_id, timeout=15)

    # The first prompt loads (nothing was loaded), the second finds its checkpoint loaded, then two switches.
    assert fake.model_switches() == 3
    assert [prompt_id for prompt_id, _models in fake.model_loads()] == [ids[0], ids[2], ids[3]]
    assert fake.model_loads()[1][1] == ["CheckpointLoaderSimple:ckpt_name=b.safetensors"]
    took = {e.prompt_id: e.ended - e.started for e in fake.executions()}
    assert all(took[prompt_id] >= 0.3 for prompt_id in (ids[0], ids[2], ids[3]))


def test_an_unload_models_free_makes_the_next_prompt_load_again_and_free_memory_alone_does_not(fake, http):
    fake.wait_for_history(submit(http, txt2img(prefix="jobs/1")))
    assert http.post("/free", json={"free_memory": True}).status_code == 200
    fake.wait_for_history(submit(http, txt2img(prefix="jobs/2")))
    assert fake.model_switches() == 1

    assert http.post("/free", json={"unload_models": True}).status_code == 200
    fake.wait_for_history(submit(http, txt2img(prefix="jobs/3")))
    assert fake.model_switches() == 2


def test_without_loader_nodes_a_prompts_models_are_its_node_classes_and_a_restart_unloads(fake, http):
    fake.put_input_file("mcn_red.png", png())
    for prompt in (BASIC, BASIC, injected(), BASIC):
        fake.wait_for_history(submit(http, prompt))
    assert fake.model_switches() == 3  # BASIC, then the injected template (other classes), then BASIC again

    fake.restart()
    fake.wait_for_history(submit(http, BASIC))
    assert fake.model_switches() == 4  # a restarted server has nothing loaded; the count is the test's
