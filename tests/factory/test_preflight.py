"""Preflight: a workflow checked against the node catalogue of a (fake) ComfyUI before any GPU time."""

import os

import pytest

from factory import preflight
from factory.comfyui import ComfyUIClient
from tests.fakes.comfyui import FakeComfyUI

pytestmark = pytest.mark.timeout(30)

# A new-style node whose combo is ["COMBO", {"options": [...]}], as ImageBlend answers /object_info.
IMAGE_BLEND = {
    "input": {
        "required": {
            "image1": ["IMAGE", {}],
            "image2": ["IMAGE", {}],
            "blend_factor": ["FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}],
            "blend_mode": [
                "COMBO",
                {
                    "options": ["normal", "multiply", "screen", "overlay", "soft_light", "difference"],
                    "multiselect": False,
                },
            ],
        }
    },
    "input_order": {"required": ["image1", "image2", "blend_factor", "blend_mode"]},
    "output": ["IMAGE"],
    "output_is_list": [False],
    "output_name": ["IMAGE"],
    "name": "ImageBlend",
    "display_name": "Image Blend",
    "description": "",
    "python_module": "comfy_extras.nodes_post_processing",
    "category": "image/postprocessing",
    "output_node": False,
}


def txt2img(ckpt: str = "sd_xl_base_1.0.safetensors", sampler="euler") -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{PROMPT}}", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": "{{SEED}}",
                "steps": 4,
                "cfg": 7.0,
                "sampler_name": sampler,
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "t2i"}},
    }


@pytest.fixture
def client(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url, client_id="mcn-preflight")
    preflight.forget(client.base_url)  # the cache is per process and ports get reused between tests
    yield client
    preflight.forget(client.base_url)
    client.close()


def catalogue(client) -> dict:
    return preflight.object_info(client, max_age=0)


def test_a_workflow_the_server_can_run_has_no_problems(client):
    assert preflight.workflow_problems(txt2img(), catalogue(client)) == []


def test_a_missing_node_class_is_named(client):
    workflow = {**txt2img(), "8": {"class_type": "UltimateSDUpscale", "inputs": {"image": ["6", 0]}}}

    assert preflight.workflow_problems(workflow, catalogue(client)) == [
        "Node 8: node type UltimateSDUpscale is not installed on the GPU server."
    ]


def test_a_model_the_server_does_not_offer_is_named(fake_comfyui, client):
    fake_comfyui.set_models(["flux1-dev.safetensors"])

    problems = preflight.workflow_problems(txt2img(ckpt="sd_xl_base_1.0.safetensors"), catalogue(client))

    assert problems == [
        "Node 1 (CheckpointLoaderSimple): ckpt_name 'sd_xl_base_1.0.safetensors' is not installed on the GPU server."
    ]
    assert preflight.workflow_problems(txt2img(ckpt="flux1-dev.safetensors"), catalogue(client)) == []


def test_placeholders_and_links_are_not_checked_as_combo_values(fake_comfyui, client):
    fake_comfyui.set_models([])
    workflow = txt2img(ckpt="{{MODEL}}", sampler="{{SAMPLER}}")
    workflow["5"]["inputs"]["seed"] = ["9", 0]  # fed by another node: a link, not a value
    workflow["9"] = {"class_type": "PrimitiveInt", "inputs": {"value": 1}}
    workflow["1"]["inputs"]["ckpt_name"] = "models/{{MODEL}}.safetensors"  # a placeholder inside text too

    assert preflight.workflow_problems(workflow, catalogue(client)) == []


def test_load_image_file_names_are_not_checked(fake_comfyui, client):
    assert not list(fake_comfyui.input_dir.iterdir())  # nothing uploaded yet: the file comes per job
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mcn/job7-input_image.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }

    assert preflight.workflow_problems(workflow, catalogue(client)) == []


def test_both_combo_shapes_are_checked(fake_comfyui, client):
    fake_comfyui.add_node_class(IMAGE_BLEND)
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {  # legacy shape: [["nearest-exact", ...]] (no options dict at all)
            "class_type": "ImageScale",
            "inputs": {"image": ["1", 0], "upscale_method": "magic", "width": 4, "height": 4, "crop": "center"},
        },
        "3": {  # new shape: ["COMBO", {"options": [...]}]
            "class_type": "ImageBlend",
            "inputs": {"image1": ["1", 0], "image2": ["2", 0], "blend_factor": 0.5, "blend_mode": "dodge"},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }

    assert preflight.workflow_problems(workflow, catalogue(client)) == [
        "Node 2 (ImageScale): upscale_method 'magic' is not installed on the GPU server.",
        "Node 3 (ImageBlend): blend_mode 'dodge' is not installed on the GPU server.",
    ]
    workflow["2"]["inputs"]["upscale_method"] = "bilinear"
    workflow["3"]["inputs"]["blend_mode"] = "multiply"
    assert preflight.workflow_problems(workflow, catalogue(client)) == []


def test_object_info_is_cached_per_server_for_max_age(fake_comfyui, client):
    with FakeComfyUI() as other:
        other_client = ComfyUIClient(other.url, client_id="mcn-preflight")
        preflight.forget(other.url)
        try:
            first = preflight.object_info(client, max_age=60)
            assert preflight.object_info(client, max_age=60) is first
            assert len(fake_comfyui.requests("GET", "/object_info")) == 1

            # Another server has its own entry.
            preflight.object_info(other_client, max_age=60)
            assert len(other.requests("GET", "/object_info")) == 1
            assert len(fake_comfyui.requests("GET", "/object_info")) == 1

            # Older than max_age (0 here): fetched again; forget() drops the entry.
            preflight.object_info(client, max_age=0)
            assert len(fake_comfyui.requests("GET", "/object_info")) == 2
            preflight.forget(client.base_url)
            preflight.object_info(client, max_age=60)
            assert len(fake_comfyui.requests("GET", "/object_info")) == 3
        finally:
            preflight.forget(other.url)
            other_client.close()


# --- inputs against the server's catalogue (the real 0.3.64 entries in tests/fakes/object_info_subset.json) ---

WAN_MANIFEST = {
    "step": "motion",
    "models": [
        {
            "file": "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
            "folder": "diffusion_models",
            "bytes": 14_300_000_000,
            "licence": "Apache-2.0",
            "source": "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        }
    ],
}


def wan_i2v(**node12) -> dict:
    """Wan 2.2 image-to-video with core nodes, as the library wires it (start image, 81 frames)."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "{{UNET}}", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "{{CLIP}}", "type": "wan"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "{{SOURCE_IMAGE}}"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{PROMPT}}", "clip": ["2", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["2", 0]}},
        "12": {
            "class_type": "WanImageToVideo",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "vae": ["3", 0],
                "width": "{{WIDTH}}",
                "height": 480,
                "length": 81,
                "batch_size": 1,
                "start_image": ["4", 0],
                **node12,
            },
        },
    }


WAN_PLACEHOLDERS = {
    "UNET": {"type": "string"},
    "CLIP": {"type": "string"},
    "SOURCE_IMAGE": {"type": "image"},
    "PROMPT": {"type": "string"},
    "WIDTH": {"type": "int", "default": 832},
}


def test_a_well_wired_video_workflow_has_no_problems(client):
    assert preflight.workflow_problems(wan_i2v(), catalogue(client), placeholders=WAN_PLACEHOLDERS) == []


def test_the_old_wan_i2v_wiring_is_named_input_by_input(client):
    # The old stack's wan_i2v.json fed the core WanImageToVideo the wrapper's inputs: "image", "num_frames".
    workflow = wan_i2v(image=["4", 0], num_frames=81)
    del workflow["12"]["inputs"]["start_image"], workflow["12"]["inputs"]["length"]

    problems = preflight.workflow_problems(workflow, catalogue(client), placeholders=WAN_PLACEHOLDERS)

    inputs = "positive, negative, vae, width, height, length, batch_size, clip_vision_output?, start_image?"
    assert problems == [
        "Node 12 (WanImageToVideo): required input 'length' is missing.",
        f"Node 12 (WanImageToVideo): input 'image' does not exist on this server's WanImageToVideo (inputs: {inputs}).",
        "Node 12 (WanImageToVideo): input 'num_frames' does not exist on this server's WanImageToVideo "
        f"(inputs: {inputs}).",
    ]


def test_a_link_of_the_wrong_type_or_to_nowhere_is_named(client):
    workflow = wan_i2v(vae=["2", 0], negative=["7", 3], start_image=["99", 0])

    problems = preflight.workflow_problems(workflow, catalogue(client), placeholders=WAN_PLACEHOLDERS)

    assert problems == [
        "Node 12 (WanImageToVideo): input 'negative' links to output 3 of node 7, which has 1.",
        "Node 12 (WanImageToVideo): input 'vae' takes VAE but is linked to output 0 of node 2 (CLIPLoader), "
        "which gives CLIP.",
        "Node 12 (WanImageToVideo): input 'start_image' links to node 99, which the workflow does not have.",
    ]


def test_numbers_outside_the_servers_limits_and_defaults_that_do_not_fit_are_named(client):
    workflow = wan_i2v(height=8, length=1.5, batch_size="two")
    placeholders = {**WAN_PLACEHOLDERS, "WIDTH": {"type": "int", "default": 20000}}

    problems = preflight.workflow_problems(workflow, catalogue(client), placeholders=placeholders)

    assert problems == [
        "Node 12 (WanImageToVideo): input 'width' is 20000, above this server's maximum 16384.",
        "Node 12 (WanImageToVideo): input 'height' is 8, below this server's minimum 16.",
        "Node 12 (WanImageToVideo): input 'length' takes a whole number, not 1.5.",
        "Node 12 (WanImageToVideo): input 'batch_size' takes a whole number, not 'two'.",
    ]
    # A placeholder declared as text where the server wants a number fails every job: said now.
    placeholders["WIDTH"] = {"type": "string"}
    assert preflight.workflow_problems(wan_i2v(), catalogue(client), placeholders=placeholders) == [
        "Node 12 (WanImageToVideo): input 'width' takes a number but {{WIDTH}} is declared string."
    ]


def test_a_missing_model_says_which_file_to_put_where_from_the_manifest(client):
    workflow = wan_i2v()
    workflow["1"]["inputs"]["unet_name"] = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    workflow["8"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["1", 0], "lora_name": "{{LORA_NAME}}", "strength_model": 1.0},
    }
    placeholders = {**WAN_PLACEHOLDERS, "LORA_NAME": {"type": "string", "default": "wardrobe_red.safetensors"}}

    info = catalogue(client)
    problems = preflight.workflow_problems(workflow, info, placeholders=placeholders, manifest=WAN_MANIFEST)

    assert problems == [
        "Node 1 (UNETLoader): unet_name 'wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors' is not installed on the "
        "GPU server: put wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors (14.3 GB) in models/diffusion_models "
        "(licence Apache-2.0, from https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged).",
        # A LoRA default the server does not list (no manifest entry: no hint).
        "Node 8 (LoraLoaderModelOnly): lora_name 'wardrobe_red.safetensors' is not installed on the GPU server.",
    ]


def test_an_installed_model_passes(fake_comfyui, client):
    info = catalogue(client)
    info["UNETLoader"]["input"]["required"]["unet_name"][0] = ["wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"]
    workflow = wan_i2v()
    workflow["1"]["inputs"]["unet_name"] = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"

    assert preflight.workflow_problems(workflow, info, placeholders=WAN_PLACEHOLDERS, manifest=WAN_MANIFEST) == []


def test_problems_are_listed_in_numeric_node_order(client):
    workflow = {
        "10": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "9": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 0, "batch_size": 1, "color": 0}},
        "2": {"class_type": "NoSuchNode", "inputs": {}},
    }

    assert preflight.workflow_problems(workflow, catalogue(client)) == [
        "Node 2: node type NoSuchNode is not installed on the GPU server.",
        "Node 9 (EmptyImage): input 'height' is 0, below this server's minimum 1.",
        "Node 10 (EmptyImage): input 'width' is 0, below this server's minimum 1.",
    ]


@pytest.mark.skipif(not os.environ.get("MCN_REAL_COMFYUI_URL"), reason="set MCN_REAL_COMFYUI_URL to a real ComfyUI")
def test_a_real_comfyui_names_the_old_wan_wiring_as_the_fake_does():
    # The fake's Wan entries are a capture: a real server (0.3.64) must still declare the same inputs.
    real = ComfyUIClient(os.environ["MCN_REAL_COMFYUI_URL"], client_id="mcn-preflight-real")
    try:
        info = real.object_info()
    finally:
        real.close()
    workflow = wan_i2v(image=["4", 0])
    del workflow["12"]["inputs"]["length"]

    problems = preflight.workflow_problems(workflow, info, placeholders=WAN_PLACEHOLDERS)

    assert "Node 12 (WanImageToVideo): required input 'length' is missing." in problems
    assert any(p.startswith("Node 12 (WanImageToVideo): input 'image' does not exist") for p in problems)
