"""Preflight: a workflow checked against the node catalogue of a (fake) ComfyUI before any GPU time."""

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
    workflow["5"]["inputs"]["scheduler"] = ["9", 0]  # fed by another node: a link, not a value
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
