"""A fake ComfyUI 0.3.64 server for tests: real HTTP and websocket on 127.0.0.1, scriptable faults.

It answers with the shapes captured from a real server (shared/docs/comfyui-transcripts.json): the same
keys, status codes, empty-body 200s and websocket event order. It runs prompts the way ComfyUI's executor
does: validation with type coercion and the real 400 shapes, a topological order that prefers output
nodes, the per-signature execution cache (an unchanged node is not run again, and SaveImage then writes no
new file), `executing{node: null}` as the end marker, history written before the last `status`. Node work
is simulated; SaveImage and PreviewImage write real small PNGs under `root`. Video outputs are real files
made with ffmpeg (imageio-ffmpeg's binary): SaveVideo (MP4, h264 + AAC of the LoadAudio file CreateVideo got,
cut to the frames), SaveWEBM, SaveAnimatedWEBP/PNG (`images` + `animated: [true]`), and VideoHelperSuite's
VHS_VideoCombine with `extra_nodes=VHS_NODES` (`gifs`: the clip, its `-audio` twin, the first-frame PNG as
`workflow`). A clip has the frames of its image batch (EmptyImage batch_size, RepeatImageBatch amount, a
`length`/`num_frames`/`frame_count` input of a video model node, else the audio's length at the node's fps
or 25) at the fps of CreateVideo/SaveWEBM/VHS. Uploads are recorded (`uploads()`: name, subfolder, type,
sha256); `restart(lose_inputs=True)` is a fresh machine behind the same URL.

The server runs in a background thread with its own event loop, so clients in other processes (rq
workers) use it over HTTP like the real one. Every state change happens in that loop; tests read state
and flip switches through thread-safe methods and properties, and wait on a condition variable
(`wait_until` and friends), never on sleeps.

    with FakeComfyUI() as fake:
        fake.oom_at_node("3")                  # faults: hang_after_start, die_mid_run, refuse_connections, ...
        ...                                    # client code against fake.url
        fake.wait_for_history(prompt_id)
        assert [p.prompt_id for p in fake.prompts_submitted()] == [prompt_id, prompt_id]
        assert fake.free_calls() == [{"unload_models": True, "free_memory": True}]

Where the fake differs from the real server: node work is simulated (sizes and colours only), sampler
previews are off unless `send_previews`, the output list of a prompt is in reversed prompt order (a set on
the real server), `/upload/mask`, `/userdata`, subgraphs and lazy inputs are not implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import heapq
import inspect
import io
import ipaddress
import itertools
import json
import logging
import math
import mimetypes
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import WSMsgType, web
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from tests.fakes.loop_server import start_runner

__all__ = ["VHS_NODES", "Execution", "FakeComfyUI", "RecordedRequest", "SubmittedPrompt", "Upload"]

log = logging.getLogger(__name__)

COMFYUI_VERSION = "0.3.64"
MAX_UPLOAD_SIZE = 104857600  # --max-upload-size 100 (MB), as /features reports it
MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\n"
    "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."
)
DEFAULT_OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free."
)
MAX_PIXELS_PER_SIDE = 4096  # a fake: the PNG of a 16384x16384 request would take 768 MB to build
CPU_RAM = 25276502016
CPU_RAM_FREE = 24123392000

# Binary websocket frame types (protocol.py BinaryEventTypes).
PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4


# --------------------------------------------------------------------------------------------
# Node catalogue. The first nine entries are copied from the captured /object_info answers; the
# rest are written from ComfyUI's nodes.py / comfy_extras (marked [source]) so that a txt2img graph
# (checkpoint -> CLIP encode -> KSampler -> VAE decode -> SaveImage) and the captured template with
# ImageAddNoise can run.
# --------------------------------------------------------------------------------------------

_CAPTURED_NODES: dict[str, dict] = {
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
    },
    "ImageInvert": {
        "input": {"required": {"image": ["IMAGE"]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "ImageInvert",
        "display_name": "Invert Image",
        "description": "",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "ImageBlur": {
        "input": {
            "required": {
                "image": ["IMAGE", {}],
                "blur_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
                "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}],
            }
        },
        "input_order": {"required": ["image", "blur_radius", "sigma"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "output_tooltips": [None],
        "name": "ImageBlur",
        "display_name": None,
        "description": "",
        "python_module": "comfy_extras.nodes_post_processing",
        "category": "image/postprocessing",
        "output_node": False,
        "deprecated": False,
        "experimental": False,
        "api_node": False,
    },
    "ImageScale": {
        "input": {
            "required": {
                "image": ["IMAGE"],
                "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]],
                "width": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
                "height": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
                "crop": [["disabled", "center"]],
            }
        },
        "input_order": {"required": ["image", "upscale_method", "width", "height", "crop"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "ImageScale",
        "display_name": "Upscale Image",
        "description": "",
        "python_module": "nodes",
        "category": "image/upscaling",
        "output_node": False,
    },
    "LoadImage": {
        # The option list is the live listing of the input folder (filled in per request).
        "input": {"required": {"image": [[], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE", "MASK"],
        "output_is_list": [False, False],
        "output_name": ["IMAGE", "MASK"],
        "name": "LoadImage",
        "display_name": "Load Image",
        "description": "",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "SaveImage": {
        "input": {
            "required": {
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": [
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. This may include formatting information such as "
                        "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
                    },
                ],
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "input_order": {"required": ["images", "filename_prefix"], "hidden": ["prompt", "extra_pnginfo"]},
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": "SaveImage",
        "display_name": "Save Image",
        "description": "Saves the input images to your ComfyUI output directory.",
        "python_module": "nodes",
        "category": "image",
        "output_node": True,
    },
    "PreviewImage": {
        "input": {"required": {"images": ["IMAGE"]}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
        "input_order": {"required": ["images"], "hidden": ["prompt", "extra_pnginfo"]},
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": "PreviewImage",
        "display_name": "Preview Image",
        # Sic: PreviewImage inherits SaveImage's description on the real server.
        "description": "Saves the input images to your ComfyUI output directory.",
        "python_module": "nodes",
        "category": "image",
        "output_node": True,
    },
    "PrimitiveInt": {
        "input": {
            "required": {
                "value": [
                    "INT",
                    {"min": -9223372036854775807, "max": 9223372036854775807, "control_after_generate": True},
                ]
            }
        },
        "input_order": {"required": ["value"]},
        "output": ["INT"],
        "output_is_list": [False],
        "output_name": ["INT"],
        "output_tooltips": [None],
        "name": "PrimitiveInt",
        "display_name": "Int",
        "description": "",
        "python_module": "comfy_extras.nodes_primitive",
        "category": "utils/primitive",
        "output_node": False,
        "deprecated": False,
        "experimental": False,
        "api_node": False,
    },
    "PreviewAny": {
        "input": {"required": {"source": ["*", {}]}},
        "input_order": {"required": ["source"]},
        "output": [],
        "output_is_list": [],
        "output_name": [],
        "name": "PreviewAny",
        "display_name": "Preview Any",
        "description": "",
        "python_module": "comfy_extras.nodes_preview_any",
        "category": "utils",
        "output_node": True,
    },
}

_KSAMPLER_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]  # fmt: skip
_KSAMPLER_SCHEDULERS = [
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
]  # fmt: skip


def _v1_info(
    name: str,
    display_name: str,
    category: str,
    description: str,
    required: dict,
    outputs: list[str],
    output_tooltips: list[str] | None = None,
    python_module: str = "nodes",
) -> dict:
    """node_info() of a classic (V1) node: the key order of server.py, tooltips appended last."""
    info = {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": outputs,
        "output_is_list": [False] * len(outputs),
        "output_name": list(outputs),
        "name": name,
        "display_name": display_name,
        "description": description,
        "python_module": python_module,
        "category": category,
        "output_node": False,
    }
    if output_tooltips is not None:
        info["output_tooltips"] = output_tooltips
    return info


_SOURCE_NODES: dict[str, dict] = {
    "ImageAddNoise": _v1_info(  # [source] comfy_extras/nodes_images.py
        "ImageAddNoise",
        "ImageAddNoise",
        "image",
        "",
        {
            "image": ["IMAGE"],
            "seed": [
                "INT",
                {
                    "default": 0,
                    "min": 0,
                    "max": 18446744073709551615,
                    "control_after_generate": True,
                    "tooltip": "The random seed used for creating the noise.",
                },
            ],
            "strength": ["FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}],
        },
        ["IMAGE"],
        python_module="comfy_extras.nodes_images",
    ),
    "CheckpointLoaderSimple": _v1_info(  # [source] nodes.py; the option list is FakeComfyUI(models=...)
        "CheckpointLoaderSimple",
        "Load Checkpoint",
        "loaders",
        "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        {"ckpt_name": [[], {"tooltip": "The name of the checkpoint (model) to load."}]},
        ["MODEL", "CLIP", "VAE"],
        [
            "The model used for denoising latents.",
            "The CLIP model used for encoding text prompts.",
            "The VAE model used for encoding and decoding images to and from latent space.",
        ],
    ),
    "CLIPTextEncode": _v1_info(  # [source] nodes.py
        "CLIPTextEncode",
        "CLIP Text Encode (Prompt)",
        "conditioning",
        "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model "
        "towards generating specific images.",
        {
            "text": ["STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}],
            "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
        },
        ["CONDITIONING"],
        ["A conditioning containing the embedded text used to guide the diffusion model."],
    ),
    "EmptyLatentImage": _v1_info(  # [source] nodes.py
        "EmptyLatentImage",
        "Empty Latent Image",
        "latent",
        "Create a new batch of empty latent images to be denoised via sampling.",
        {
            "width": [
                "INT",
                {
                    "default": 512,
                    "min": 16,
                    "max": 16384,
                    "step": 8,
                    "tooltip": "The width of the latent images in pixels.",
                },
            ],
            "height": [
                "INT",
                {
                    "default": 512,
                    "min": 16,
                    "max": 16384,
                    "step": 8,
                    "tooltip": "The height of the latent images in pixels.",
                },
            ],
            "batch_size": [
                "INT",
                {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."},
            ],
        },
        ["LATENT"],
        ["The empty latent image batch."],
    ),
    "KSampler": _v1_info(  # [source] nodes.py; sampler/scheduler lists of comfy/samplers.py at 0.3.64
        "KSampler",
        "KSampler",
        "sampling",
        "Uses the provided model, positive and negative conditioning to denoise the latent image.",
        {
            "model": ["MODEL", {"tooltip": "The model used for denoising the input latent."}],
            "seed": [
                "INT",
                {
                    "default": 0,
                    "min": 0,
                    "max": 18446744073709551615,
                    "control_after_generate": True,
                    "tooltip": "The random seed used for creating the noise.",
                },
            ],
            "steps": [
                "INT",
                {
                    "default": 20,
                    "min": 1,
                    "max": 10000,
                    "tooltip": "The number of steps used in the denoising process.",
                },
            ],
            "cfg": [
                "FLOAT",
                {
                    "default": 8.0,
                    "min": 0.0,
                    "max": 100.0,
                    "step": 0.1,
                    "round": 0.01,
                    "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. "
                    "Higher values result in images more closely matching the prompt however too high values will "
                    "negatively impact quality.",
                },
            ],
            "sampler_name": [
                _KSAMPLER_SAMPLERS,
                {
                    "tooltip": "The algorithm used when sampling, this can affect the quality, speed, and style of "
                    "the generated output."
                },
            ],
            "scheduler": [
                _KSAMPLER_SCHEDULERS,
                {"tooltip": "The scheduler controls how noise is gradually removed to form the image."},
            ],
            "positive": [
                "CONDITIONING",
                {"tooltip": "The conditioning describing the attributes you want to include in the image."},
            ],
            "negative": [
                "CONDITIONING",
                {"tooltip": "The conditioning describing the attributes you want to exclude from the image."},
            ],
            "latent_image": ["LATENT", {"tooltip": "The latent image to denoise."}],
            "denoise": [
                "FLOAT",
                {
                    "default": 1.0,
                    "min": 0.0,
                    "max": 1.0,
                    "step": 0.01,
                    "tooltip": "The amount of denoising applied, lower values will maintain the structure of the "
                    "initial image allowing for image to image sampling.",
                },
            ],
        },
        ["LATENT"],
        ["The denoised latent."],
    ),
    "VAEDecode": _v1_info(  # [source] nodes.py
        "VAEDecode",
        "VAE Decode",
        "latent",
        "Decodes latent images back into pixel space images.",
        {
            "samples": ["LATENT", {"tooltip": "The latent to be decoded."}],
            "vae": ["VAE", {"tooltip": "The VAE model used for decoding the latent."}],
        },
        ["IMAGE"],
        ["The decoded image."],
    ),
}


def _output_node(info: dict) -> dict:
    info["input"]["hidden"] = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    info["input_order"]["hidden"] = ["prompt", "extra_pnginfo"]
    info["output_node"] = True
    return info


_SOURCE_NODES.update(
    {
        "LoadAudio": _v1_info(  # [source] comfy_extras/nodes_audio.py; the option list is input/'s audio and video
            "LoadAudio", "Load Audio", "audio", "", {"audio": [[], {"audio_upload": True}]}, ["AUDIO"],
            python_module="comfy_extras.nodes_audio",
        ),
        "RepeatImageBatch": _v1_info(  # [source] comfy_extras/nodes_images.py
            "RepeatImageBatch", "RepeatImageBatch", "image/batch", "",
            {"image": ["IMAGE"], "amount": ["INT", {"default": 1, "min": 1, "max": 4096}]}, ["IMAGE"],
            python_module="comfy_extras.nodes_images",
        ),
        "SaveAnimatedWEBP": _output_node(
            _v1_info(  # [source] comfy_extras/nodes_images.py
                "SaveAnimatedWEBP", "SaveAnimatedWEBP", "image/animation", "",
                {
                    "images": ["IMAGE"],
                    "filename_prefix": ["STRING", {"default": "ComfyUI"}],
                    "fps": ["FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}],
                    "lossless": ["BOOLEAN", {"default": True}],
                    "quality": ["INT", {"default": 80, "min": 0, "max": 100}],
                    "method": [["default", "fastest", "slowest"]],
                },
                [], python_module="comfy_extras.nodes_images",
            )
        ),
        "SaveAnimatedPNG": _output_node(
            _v1_info(  # [source] comfy_extras/nodes_images.py
                "SaveAnimatedPNG", "SaveAnimatedPNG", "image/animation", "",
                {
                    "images": ["IMAGE"],
                    "filename_prefix": ["STRING", {"default": "ComfyUI"}],
                    "fps": ["FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}],
                    "compress_level": ["INT", {"default": 4, "min": 0, "max": 9}],
                },
                [], python_module="comfy_extras.nodes_images",
            )
        ),
    }
)  # fmt: skip


def _v3_info(
    name: str,
    display_name: str | None,
    description: str,
    required: dict,
    outputs: list[str],
    *,
    optional: dict | None = None,
    output_node: bool = False,
    experimental: bool = False,
) -> dict:
    """GET_NODE_INFO_V1() of a new-style (V3) node, as comfy_api builds it (dumped from 0.3.64's source)."""
    inputs: dict = {"required": required}
    order: dict = {"required": list(required)}
    if optional:
        inputs["optional"] = optional
        order["optional"] = list(optional)
    if output_node:
        inputs["hidden"] = {"prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]}
        order["hidden"] = ["prompt", "extra_pnginfo"]
    return {
        "input": inputs, "input_order": order, "output": outputs, "output_is_list": [False] * len(outputs),
        "output_name": list(outputs), "output_tooltips": [None] * len(outputs), "name": name,
        "display_name": display_name, "description": description, "python_module": "comfy_extras.nodes_video",
        "category": "image/video", "output_node": output_node, "deprecated": False, "experimental": experimental,
        "api_node": False,
    }  # fmt: skip


_PREFIX_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or "
    "%Empty Latent Image.width% to include values from nodes."
)
_SOURCE_NODES.update(
    {
        "CreateVideo": _v3_info(  # [source] comfy_extras/nodes_video.py
            "CreateVideo", "Create Video", "Create a video from images.",
            {
                "images": ["IMAGE", {"tooltip": "The images to create a video from."}],
                "fps": ["FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}],
            },
            ["VIDEO"], optional={"audio": ["AUDIO", {"tooltip": "The audio to add to the video."}]},
        ),
        "SaveVideo": _v3_info(  # [source] comfy_extras/nodes_video.py
            "SaveVideo", "Save Video", "Saves the input images to your ComfyUI output directory.",
            {
                "video": ["VIDEO", {"tooltip": "The video to save."}],
                "filename_prefix": ["STRING", {"tooltip": _PREFIX_TOOLTIP, "default": "video/ComfyUI",
                                               "multiline": False}],
                "format": ["COMBO", {"tooltip": "The format to save the video as.", "default": "auto",
                                     "multiselect": False, "options": ["auto", "mp4"]}],
                "codec": ["COMBO", {"tooltip": "The codec to use for the video.", "default": "auto",
                                    "multiselect": False, "options": ["auto", "h264"]}],
            },
            [], output_node=True,
        ),
        "SaveWEBM": _v3_info(  # [source] comfy_extras/nodes_video.py
            "SaveWEBM", None, "",
            {
                "images": ["IMAGE", {}],
                "filename_prefix": ["STRING", {"default": "ComfyUI", "multiline": False}],
                "codec": ["COMBO", {"multiselect": False, "options": ["vp9", "av1"]}],
                "fps": ["FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}],
                "crf": ["FLOAT", {"tooltip": "Higher crf means lower quality with a smaller file size, lower crf "
                                  "means higher quality higher filesize.", "default": 32.0, "min": 0, "max": 63.0,
                                  "step": 1}],
            },
            [], output_node=True, experimental=True,
        ),
    }
)  # fmt: skip

VHS_VIDEO_FORMATS = ["image/gif", "image/webp", "video/h264-mp4", "video/webm"]
VHS_NODES: dict[str, dict] = {  # FakeComfyUI(extra_nodes=VHS_NODES): ComfyUI-VideoHelperSuite's Video Combine
    "VHS_VideoCombine": {
        "input": {
            "required": {
                "images": ["IMAGE"],
                "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
                "loop_count": ["INT", {"default": 0, "min": 0, "max": 100, "step": 1}],
                "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
                "format": [VHS_VIDEO_FORMATS, {}],
                "pingpong": ["BOOLEAN", {"default": False}],
                "save_output": ["BOOLEAN", {"default": True}],
            },
            "optional": {"audio": ["AUDIO"], "meta_batch": ["VHS_BatchManager"], "vae": ["VAE"]},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        },
        "input_order": {
            "required": ["images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"],
            "optional": ["audio", "meta_batch", "vae"],
            "hidden": ["prompt", "extra_pnginfo", "unique_id"],
        },
        "output": ["VHS_FILENAMES"],
        "output_is_list": [False],
        "output_name": ["Filenames"],
        "name": "VHS_VideoCombine",
        "display_name": "Video Combine 🎥🅥🅗🅢",
        "description": "",
        "python_module": "custom_nodes.ComfyUI-VideoHelperSuite",
        "category": "Video Helper Suite 🎥🅥🅗🅢",
        "output_node": True,
    }
}
# Inputs of a video model node (WanImageToVideo, WanInfiniteTalkToVideo, ...) that give the clip's frame count.
_FRAME_COUNT_INPUTS = ("length", "num_frames", "frame_count", "video_length")
# Real /object_info entries of the video-model nodes (Wan image-to-video, InfiniteTalk's loaders), captured from
# ComfyUI 0.3.64 without models (their combos list no files): preflight tests check inputs against them.
_REAL_SUBSET: dict[str, dict] = json.loads(
    (Path(__file__).with_name("object_info_subset.json")).read_text(encoding="utf-8")
)["nodes"]

_MODEL_FOLDERS = (  # GET /models, as captured
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
    "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "custom_nodes",
    "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
)  # fmt: skip
_IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# folder_paths.filter_files_content_types(files, ["audio", "video"]), by extension
_AUDIO_VIDEO_EXTENSIONS = {
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".webm", ".mkv", ".mov", ".avi",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


class SubmittedPrompt(NamedTuple):
    """One `POST /prompt` that carried a `prompt` (accepted or not)."""

    prompt_id: str | None  # the client's `prompt_id`, else the id the server answered with (None if rejected)
    prompt: Any
    client_id: str | None


class Upload(NamedTuple):
    """One accepted `POST /upload/image`: where it landed and what it held."""

    name: str  # the name answered (maybe renamed "x (1).png")
    subfolder: str
    type: str
    sha256: str  # of the uploaded bytes
    size: int
    generation: int  # server incarnation (restart() increments it)


class Execution(NamedTuple):
    """One prompt's time on the executor: from leaving the queue to its history entry (time.time())."""

    prompt_id: str
    started: float
    ended: float
    success: bool


@dataclass
class RecordedRequest:
    """One HTTP request as the fake saw it (websocket upgrades included)."""

    method: str
    path: str  # route path without the /api prefix, e.g. "/prompt", "/history/abc"
    raw_path: str  # as requested, e.g. "/api/prompt"
    query: dict[str, str]
    json: Any  # parsed JSON body, or None (no body, not JSON, or multipart)
    body: bytes  # raw body; b"" for multipart uploads (see `form`)
    time: float  # time.time() on arrival
    generation: int  # server incarnation: restart() increments it
    status: int | None = None  # None while in flight, or if the connection died first
    response_json: Any = None
    form: dict[str, str] | None = None  # multipart fields; a file field maps to its filename


_RECORD = web.RequestKey("record", RecordedRequest)


# --------------------------------------------------------------------------------------------
# Simulated values flowing between nodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Picture:
    width: int
    height: int
    batch: int = 1
    rgb: tuple[int, int, int] = (0, 0, 0)

    def __str__(self) -> str:  # how it appears in execution_error.current_inputs ("tensor(...)" on the real one)
        return f"tensor(<image batch={self.batch} {self.height}x{self.width}x3>)"


@dataclass(frozen=True)
class _Latent:
    width: int
    height: int
    batch: int = 1

    def __str__(self) -> str:
        return f"{{'samples': tensor(<latent batch={self.batch} 4x{self.height // 8}x{self.width // 8}>)}}"


@dataclass(frozen=True)
class _Audio:
    path: str
    seconds: float
    sample_rate: int

    def __str__(self) -> str:
        return f"{{'waveform': tensor(<audio {self.seconds:.3f}s>), 'sample_rate': {self.sample_rate}}}"


@dataclass(frozen=True)
class _Video:
    images: _Picture
    fps: float
    audio: _Audio | None = None

    def __str__(self) -> str:
        return f"<VideoFromComponents {self.images.batch} frames at {self.fps} fps>"


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError so the reported exception_type is the real one."""


OutOfMemoryError.__module__ = "torch"


class _InterruptProcessing(Exception):
    pass


class _ScriptedError(Exception):
    def __init__(self, exception_type: str, message: str):
        super().__init__(message)
        self.exception_type = exception_type


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


def _is_link(value: Any) -> bool:
    # comfy_execution/graph_utils.is_link
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
    )


def _get_input_info(info: dict, name: str) -> tuple[Any, str | None, dict | None]:
    # comfy_execution/graph.get_input_info, on the JSON form of INPUT_TYPES
    for category in ("required", "optional", "hidden"):
        spec = info.get("input", {}).get(category, {}).get(name)
        if spec is not None:
            if category == "hidden":
                return spec, category, {}
            return spec[0], category, (spec[1] if len(spec) > 1 else {})
    return None, None, None


def _validate_node_input(received_type: Any, input_type: Any) -> bool:
    # comfy_execution/validation.validate_node_input (non-strict)
    if received_type == input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    expected = {t.strip() for t in input_type.split(",")}
    if "*" in received or "*" in expected:
        return True
    return bool(received & expected)


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


def _rgb(color: int) -> tuple[int, int, int]:
    return ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)


def _error(kind: str, message: str, details: str, **extra_info: Any) -> dict:
    """The {type, message, details, extra_info} shape of every validation error."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


# --------------------------------------------------------------------------------------------
# Server state: everything a real ComfyUI process keeps in memory (lost on restart)
# --------------------------------------------------------------------------------------------


@dataclass
class _Job:
    drop_events: bool  # finish_before_ws: nobody was there to hear this prompt's events
    fast: bool  # ... and it ran at once
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _State:
    generation: int
    queue: list = field(default_factory=list)  # heap of (number, prompt_id, seq, item, job)
    seq: Iterable[int] = field(default_factory=itertools.count)
    running: dict[int, list] = field(default_factory=dict)
    task_counter: int = 0
    history: dict[str, dict] = field(default_factory=dict)
    number: int = 0
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    sockets_metadata: dict[str, dict] = field(default_factory=dict)
    connections: dict[web.WebSocketResponse, Any] = field(default_factory=dict)  # ws -> transport
    client_id: str | None = None
    last_node_id: str | None = None
    interrupt: bool = False
    flags: dict[str, Any] = field(default_factory=dict)
    loaded_models: frozenset | None = None  # the models the last prompt loaded; None: none (start, /free unload)
    outputs_cache: dict[str, tuple] = field(default_factory=dict)  # signature -> node outputs
    ui_cache: dict[str, dict] = field(default_factory=dict)  # signature -> {"meta", "output"}
    objects: dict[str, dict] = field(default_factory=dict)  # node id -> per-instance data (PreviewImage prefix)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task] = field(default_factory=list)
    alive: bool = True


def _prompt_models(prompt: dict) -> frozenset:
    """What a prompt needs loaded: each loader node's class_type and string inputs (its model file names), or,
    for a prompt without loader nodes, its class_types."""
    nodes = [node for node in prompt.values() if isinstance(node, dict)]
    loaded = frozenset(
        f"{node['class_type']}:{key}={value}"
        for node in nodes
        if "Loader" in str(node.get("class_type", ""))
        for key, value in (node.get("inputs") or {}).items()
        if isinstance(value, str)
    )
    return loaded or frozenset(str(node.get("class_type")) for node in nodes)


class _ExecutionList:
    """comfy_execution/graph.ExecutionList without lazy inputs and subgraphs."""

    def __init__(self, prompt: dict, is_cached: Callable[[str], bool], is_output: Callable[[str], bool]):
        self.prompt = prompt
        self.is_cached = is_cached
        self.is_output = is_output
        self.pending: dict[str, None] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict]] = {}

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = None
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if _is_link(value):
                    from_id, from_socket = value
                    if not self.is_cached(from_id):
                        stack.append(from_id)
                    links.append((from_id, from_socket, unique_id))
        for link in links:
            self.add_strong_link(*link)

    def add_strong_link(self, from_id: str, from_socket: Any, to_id: str) -> None:
        if not self.is_cached(from_id):
            self.add_node(from_id)
            if to_id not in self.blocking[from_id]:
                self.blocking[from_id][to_id] = {}
                self.block_count[to_id] += 1
            self.blocking[from_id][to_id][from_socket] = True

    def next_node(self) -> str:
        available = [n for n in self.pending if self.block_count[n] == 0]
        if not available:
            raise RuntimeError("Dependency cycle detected")
        # ux_friendly_pick_node: outputs first, then nodes feeding an output, then two levels up.
        for node_id in available:
            if self.is_output(node_id):
                return node_id
        for node_id in available:
            if any(self.is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in available:
            for blocked in self.blocking[node_id]:
                if any(self.is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return available[0]

    def complete(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        for blocked in self.blocking.get(node_id, {}):
            self.block_count[blocked] -= 1


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


class FakeComfyUI:
    """A scriptable ComfyUI server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        port: int = 0,
        *,
        root: str | os.PathLike | None = None,
        models: Iterable[str] = ("sd_xl_base_1.0.safetensors",),
        device_name: str = "cpu",
        vram_total: int = CPU_RAM,
        vram_free: int = CPU_RAM_FREE,
        torch_vram_total: int | None = None,
        torch_vram_free: int | None = None,
        extra_nodes: dict[str, dict] | None = None,
    ):
        self._port = port
        self._owns_root = root is None
        self.root = (Path(tempfile.mkdtemp(prefix="fake-comfyui-")) if root is None else Path(root)).resolve()
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        self.temp_dir = self.root / "temp"
        for folder in (self.input_dir, self.output_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._models = list(models)
        self._device: dict[str, Any] = {}
        self._set_device(device_name, vram_total, vram_free, torch_vram_total, torch_vram_free)
        self._nodes: dict[str, dict] = {
            **copy.deepcopy(_REAL_SUBSET),
            **copy.deepcopy(_CAPTURED_NODES),
            **copy.deepcopy(_SOURCE_NODES),
        }
        for info in (extra_nodes or {}).values():
            self._nodes[info["name"]] = copy.deepcopy(info)

        # Fault script and knobs: changed only inside the loop (through _call), read there.
        self._step_seconds = 0.0
        self._node_seconds = 0.0
        self._prompt_seconds = 0.0
        self._model_load_seconds = 0.0
        self._steps_per_node: int | None = None
        self._send_previews = False
        self._hang_after_start = False
        self._die_mid_run = False
        self._finish_before_ws = False
        self._silent_socket = False
        self._queue_unanswered = False
        self._refuse_connections = False
        self._http_500_remaining = 0
        self._accept_then_timeout: list[float] = []
        self._node_faults: list[dict] = []

        self._requests: list[RecordedRequest] = []
        self._uploads: list[Upload] = []
        self._node_log: list[tuple[int, str, str]] = []  # (generation, prompt_id, node_id) of every node start
        self._executions: list[Execution] = []  # when each prompt held the "GPU" (the executor)
        self._model_loads: list[tuple[str, list[str]]] = []  # (prompt_id, models) of every model switch
        self._sent: list[tuple[int, str | None, Any, Any]] = []  # (generation, sid, event, data) actually sent
        self.died = threading.Event()  # set when die_mid_run fires; restart() clears it

        self._generation = 0
        self._state: _State | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._version = 0
        self._rng = random.Random(0)  # noqa: S311 - PreviewImage file-name noise, not security
        self._aux_tasks: set[asyncio.Task] = set()
        self._closing = asyncio.Event()  # set when the port closes; a fresh one per listen

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (the port stays the same across restart())."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws"

    def start(self) -> FakeComfyUI:
        """Start the loop thread and listen. Returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeComfyUI is already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="fake-comfyui", daemon=True)
        self._thread.start()
        # The thread runs the loop a moment later: wait for it (on a busy machine _call found it not yet running).
        deadline = time.monotonic() + 15
        while not self._loop.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError("FakeComfyUI's loop thread did not start within 15 s")
            time.sleep(0.001)
        self._call(self._boot)
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop thread and delete the temporary root (if the fake made it)."""
        if self._thread is None or self._loop is None:
            return
        try:
            self._call(self._shutdown_state)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._thread = None
            self._loop = None
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, *, lose_inputs: bool = False) -> None:
        """Like a restarted ComfyUI process: empty queue, history and cache, temp/ wiped, same port.

        Files in input/ and output/ stay (they are on disk), so the SaveImage counter continues; with
        `lose_inputs` input/ is emptied too (a fresh machine behind the same URL). The fault script (switches,
        counters) and the request and upload logs are the test's, and are kept. `died` is cleared.
        """
        self._call(self._restart, lose_inputs)

    def __enter__(self) -> FakeComfyUI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- fault switches and knobs

    def _knob(name: str, doc: str, *, poke: bool = True):  # a property factory, used in the class body only
        attr = "_" + name

        def getter(self: FakeComfyUI) -> Any:
            return getattr(self, attr)

        def setter(self: FakeComfyUI, value: Any) -> None:
            def apply() -> None:
                setattr(self, attr, value)
                if poke:
                    self._poke()

            self._call(apply)

        return property(getter, setter, doc=doc)

    step_seconds = _knob("step_seconds", "Seconds per progress step (default 0). Interrupts cut a step short.")
    node_seconds = _knob("node_seconds", "Seconds each executed node takes besides its steps; not interruptible.")
    prompt_seconds = _knob(
        "prompt_seconds",
        "Seconds of simulated GPU time each prompt takes after `execution_start`, whatever the cache holds "
        "(default 0). An interrupt cuts it short and stops the prompt at its first executed node.",
    )
    model_load_seconds = _knob(
        "model_load_seconds",
        "Seconds a prompt takes, after `execution_start`, when its models differ from those loaded (default 0): "
        "a prompt's models are its loader nodes (class_type + string inputs: ckpt_name, unet_name, ...), or, "
        "without loaders, its set of class_types. Nothing is loaded at start, after restart() or after a /free "
        "with unload_models. Every switch is counted, whatever this is (`model_switches()`).",
    )
    steps_per_node = _knob(
        "steps_per_node",
        "Progress steps per executed node. None (default) is like the real nodes: KSampler reports its `steps` "
        "input, every other node none.",
    )
    send_previews = _knob("send_previews", "Send a JPEG preview frame per progress step (type 1, or 4 if negotiated).")
    hang_after_start = _knob(
        "hang_after_start",
        "While True, a prompt stops at its first executed node (after `executing`) until interrupted; setting it "
        "back to False lets the hung prompt go on.",
    )
    die_mid_run = _knob(
        "die_mid_run",
        "One-shot: when the next prompt starts executing its first (non-cached) node, right after that node's "
        "`executing` went out, the server 'process' dies: every connection is aborted (no close frame), the port "
        "refuses, the in-memory state is gone. `died` is set; call restart(). Resets itself.",
    )
    finish_before_ws = _knob(
        "finish_before_ws",
        "While True, each accepted prompt runs at once and completes before the POST /prompt reply; none of its "
        "events reaches any socket (status broadcasts still do).",
    )
    silent_socket = _knob(
        "silent_socket",
        "While True, no websocket frame at all is sent (not even the first `status`); execution and history "
        "go on normally.",
    )
    queue_unanswered = _knob(
        "queue_unanswered",
        "While True, GET /queue holds its reply (a stuck server: its queue no longer answers); every other route "
        "and the running prompt go on. Setting it back to False lets the held replies go.",
    )
    del _knob

    @property
    def refuse_connections(self) -> bool:
        """While True the port is closed (connect fails with ECONNREFUSED); state and execution are kept."""
        return self._refuse_connections

    @refuse_connections.setter
    def refuse_connections(self, value: bool) -> None:
        if self._thread is None:  # before start(): start() then never listens until cleared
            self._refuse_connections = bool(value)
            return
        self._call(self._set_refuse, bool(value))

    def http_500_on_prompt(self, times: int = 1) -> None:
        """The next `times` POST /prompt answer the real 500 text/plain page and queue nothing."""

        def apply() -> None:
            self._http_500_remaining = times

        self._call(apply)

    def accept_then_timeout(self, seconds: float, times: int = 1) -> None:
        """The next `times` POST /prompt queue the prompt (it runs) but hold the HTTP reply for `seconds`."""

        def apply() -> None:
            self._accept_then_timeout = [seconds] * times

        self._call(apply)

    def oom_at_node(self, node_id: str, times: int = 1, message: str = DEFAULT_OOM_MESSAGE) -> None:
        """The next `times` prompts that execute `node_id` fail there with torch.OutOfMemoryError (+ ComfyUI's tip)."""
        self._add_node_fault(node_id, times, OutOfMemoryError(message))

    def execution_error_at_node(
        self, node_id: str, message: str, *, exception_type: str = "Exception", times: int = 1
    ) -> None:
        """The next `times` prompts that execute `node_id` fail there with `execution_error` (message + "\\n")."""
        self._add_node_fault(node_id, times, _ScriptedError(exception_type, message))

    def clear_faults(self) -> None:
        """Every fault switch and counter back to its default (knobs such as step_seconds are kept)."""

        def apply() -> None:
            self._hang_after_start = False
            self._die_mid_run = False
            self._finish_before_ws = False
            self._silent_socket = False
            self._queue_unanswered = False
            self._http_500_remaining = 0
            self._accept_then_timeout = []
            self._node_faults = []
            self._poke()

        self._call(apply)
        self.refuse_connections = False

    def set_models(self, names: Iterable[str]) -> None:
        """The checkpoint names offered by CheckpointLoaderSimple.ckpt_name (and /models/checkpoints)."""
        names = list(names)
        self._call(lambda: setattr(self, "_models", names))

    def set_device(
        self,
        name: str,
        *,
        vram_total: int,
        vram_free: int,
        torch_vram_total: int | None = None,
        torch_vram_free: int | None = None,
    ) -> None:
        """What /system_stats reports as the device; a name starting with "cuda" reports type cuda, index 0."""
        self._call(self._set_device, name, vram_total, vram_free, torch_vram_total, torch_vram_free)

    def add_node_class(self, info: dict) -> None:
        """Register an extra node class from its /object_info entry (executed generically: outputs are tokens)."""
        info = copy.deepcopy(info)
        self._call(lambda: self._nodes.__setitem__(info["name"], info))

    # ---------------------------------------------------------------- inspection (thread-safe)

    def requests(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Every request so far (oldest first), optionally filtered by method and /api-less path."""

        def read() -> list[RecordedRequest]:
            return [
                replace(
                    r, query=dict(r.query), json=copy.deepcopy(r.json), response_json=copy.deepcopy(r.response_json)
                )
                for r in self._requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

        return self._call(read)

    def prompts_submitted(self) -> list[SubmittedPrompt]:
        """(prompt_id, prompt, client_id) of every POST /prompt that carried a prompt, accepted or not."""
        out = []
        for r in self.requests("POST", "/prompt"):
            if not isinstance(r.json, dict) or "prompt" not in r.json:
                continue
            prompt_id = r.json.get("prompt_id")
            if prompt_id is None and isinstance(r.response_json, dict):
                prompt_id = r.response_json.get("prompt_id")
            out.append(
                SubmittedPrompt(
                    None if prompt_id is None else str(prompt_id), r.json["prompt"], r.json.get("client_id")
                )
            )
        return out

    def interrupts(self) -> list[str | None]:
        """The `prompt_id` of each POST /interrupt (None for a global one)."""
        out = []
        for r in self.requests("POST", "/interrupt"):
            out.append(r.json.get("prompt_id") if isinstance(r.json, dict) else None)
        return out

    def free_calls(self) -> list[Any]:
        """The JSON body of each POST /free."""
        return [r.json for r in self.requests("POST", "/free")]

    def history(self) -> dict[str, dict]:
        """A copy of the current server's history (what GET /history answers, all entries)."""
        return self._call(lambda: copy.deepcopy(self._state.history) if self._state else {})

    def history_entry(self, prompt_id: str) -> dict | None:
        return self.history().get(prompt_id)

    def queue(self) -> dict[str, list]:
        """What GET /queue would answer now."""
        return self._call(lambda: copy.deepcopy(self._queue_json(self._state)))

    def running_prompt_id(self) -> str | None:
        running = self.queue()["queue_running"]
        return running[0][1] if running else None

    def nodes_started(self, prompt_id: str | None = None) -> list[tuple[str, str]]:
        """(prompt_id, node_id) of every node that began executing (cached nodes don't), in order."""
        return [(p, n) for _g, p, n in self._call(lambda: list(self._node_log)) if prompt_id is None or p == prompt_id]

    def model_switches(self) -> int:
        """How many prompts found other models loaded than theirs (and loaded theirs) since start()."""
        return self._call(lambda: len(self._model_loads))

    def model_loads(self) -> list[tuple[str, list[str]]]:
        """(prompt_id, its models, sorted) of every model switch, oldest first (see `model_load_seconds`)."""
        return self._call(lambda: list(self._model_loads))

    def executions(self) -> list[Execution]:
        """When each prompt held the executor (the "GPU"), oldest first: time.time() at pop and at history."""
        return self._call(lambda: list(self._executions))

    def sent_events(self, event: str | None = None) -> list[tuple[str | None, Any, Any]]:
        """(sid or None for a broadcast, event, data) of every websocket frame sent; binary data as bytes."""
        return [
            (sid, ev, copy.deepcopy(data))
            for _g, sid, ev, data in self._call(lambda: list(self._sent))
            if event is None or ev == event
        ]

    def connected_clients(self) -> list[str]:
        """The sid (clientId) of every socket currently registered for events."""
        return self._call(lambda: list(self._state.sockets) if self._state else [])

    def output_files(self) -> list[str]:
        """Files under output/, as sorted POSIX paths relative to it (e.g. "mcn/job-42_00001_.png")."""
        return sorted(p.relative_to(self.output_dir).as_posix() for p in self.output_dir.rglob("*") if p.is_file())

    def uploads(self) -> list[Upload]:
        """Every accepted POST /upload/image (oldest first): name answered, subfolder, type, sha256 of the bytes."""
        return self._call(lambda: list(self._uploads))

    def put_input_file(self, name: str, data: bytes, subfolder: str = "") -> Path:
        """Place a file in input/ directly (as if uploaded earlier)."""
        folder = self.input_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        return path

    # ---------------------------------------------------------------- waiting (no sleeps: a condition variable)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Block until predicate() is truthy (re-checked on every server-side change); return its value."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._version
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"FakeComfyUI: timed out after {timeout}s waiting for {what}")
            with self._cond:
                self._cond.wait_for(lambda seen=seen: self._version != seen, remaining)

    def wait_for_history(self, prompt_id: str, timeout: float = 5.0) -> dict:
        """The history entry of `prompt_id`, once the prompt has finished."""
        return self.wait_until(lambda: self.history_entry(prompt_id), timeout, f"history of {prompt_id}")

    def wait_for_running(self, prompt_id: str, timeout: float = 5.0) -> None:
        self.wait_until(lambda: self.running_prompt_id() == prompt_id, timeout, f"{prompt_id} to run")

    def wait_for_node(self, prompt_id: str, node_id: str, timeout: float = 5.0) -> None:
        """Until node `node_id` of `prompt_id` has begun executing (its `executing` is queued for sending)."""
        self.wait_until(
            lambda: (prompt_id, node_id) in self.nodes_started(prompt_id), timeout, f"node {node_id} of {prompt_id}"
        )

    def wait_for_request(self, method: str, path: str, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Until at least `count` requests METHOD path have arrived; returns them."""

        def enough() -> list[RecordedRequest] | None:
            found = self.requests(method, path)
            return found if len(found) >= count else None

        return self.wait_until(enough, timeout, f"{count} x {method} {path}")

    # ================================================================ internals: loop plumbing

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, fn: Callable, *args: Any, timeout: float = 15.0) -> Any:
        """Run fn(*args) (sync or async) inside the server loop and return its result."""
        loop = self._loop
        if loop is None or not loop.is_running():
            result = fn(*args)
            if inspect.iscoroutine(result):
                result.close()
                raise RuntimeError("FakeComfyUI is not started")
            return result
        if threading.current_thread() is self._thread:
            raise RuntimeError("FakeComfyUI: _call from inside the server loop")

        async def run() -> Any:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def _changed(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _poke(self) -> None:
        if self._state is not None:
            self._state.wake.set()
        self._changed()

    def _set_device(self, name, vram_total, vram_free, torch_vram_total, torch_vram_free) -> None:
        cuda = name.startswith("cuda")
        self._device = {
            "name": name,
            "type": "cuda" if cuda else "cpu",
            "index": 0 if cuda else None,
            "vram_total": vram_total,
            "vram_free": vram_free,
            "torch_vram_total": vram_total if torch_vram_total is None else torch_vram_total,
            "torch_vram_free": vram_free if torch_vram_free is None else torch_vram_free,
        }

    def _add_node_fault(self, node_id: str, times: int, error: Exception) -> None:
        def apply() -> None:
            self._node_faults.append({"node_id": str(node_id), "remaining": times, "error": error})

        self._call(apply)

    async def _boot(self) -> None:
        if self._port == 0 and self._refuse_connections:
            # Refusing from the start: pick a free port now, so that `url` is known before it ever listens.
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self._port = probe.getsockname()[1]
        self._new_state()
        if not self._refuse_connections:
            await self._listen()

    def _new_state(self) -> None:
        self._generation += 1
        state = _State(generation=self._generation)
        self._state = state
        state.tasks.append(asyncio.get_running_loop().create_task(self._worker(state)))
        state.tasks.append(asyncio.get_running_loop().create_task(self._publisher(state)))
        self._changed()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[self._record_mw, self._origin_mw])
        for method, path, handler in self._routes():
            app.router.add_route(method, "/api" + path, handler)
            app.router.add_route(method, path, handler)
        self._closing = asyncio.Event()
        runner = await start_runner(app, self._port, shutdown_timeout=1.0)
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def _unlisten(self, state: _State | None) -> None:
        """Close the port and drop every connection, like a dead process (websockets see no close frame)."""
        self._closing.set()
        if state is not None:
            for transport in list(state.connections.values()):
                if transport is not None:
                    transport.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _set_refuse(self, value: bool) -> None:
        self._refuse_connections = value
        if value and self._runner is not None:
            await self._unlisten(self._state)
        elif not value and self._runner is None and self._state is not None and self._state.alive:
            await self._listen()
        self._changed()

    async def _shutdown_state(self) -> None:
        state = self._state
        if state is not None:
            state.alive = False
        await self._unlisten(state)
        if state is not None:
            for task in state.tasks:
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
        self._changed()

    async def _restart(self, lose_inputs: bool = False) -> None:
        await self._shutdown_state()
        if lose_inputs:
            shutil.rmtree(self.input_dir, ignore_errors=True)
            self.input_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # main.py cleanup_temp() at start-up
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.died.clear()
        self._new_state()
        if not self._refuse_connections:
            await self._listen()

    async def _crash(self, state: _State) -> None:
        # Let what was already emitted (the first `executing`) reach the sockets, then vanish.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.messages.join(), 2.0)
        if self._state is state:
            await self._shutdown_state()
        self.died.set()
        self._changed()

    # ================================================================ internals: websocket sending

    def _send_sync(self, state: _State, event: Any, data: Any, sid: str | None) -> None:
        state.messages.put_nowait((event, data, sid))

    async def _publisher(self, state: _State) -> None:
        while True:
            event, data, sid = await state.messages.get()
            try:
                await self._send(state, event, data, sid)
            finally:
                state.messages.task_done()

    async def _send(self, state: _State, event: Any, data: Any, sid: str | None) -> None:
        if self._silent_socket:
            return
        if isinstance(event, int):
            message: Any = struct.pack(">I", event) + bytes(data)
        else:
            message = {"type": event, "data": data}
        if sid is None:
            targets = list(state.sockets.values())
        elif sid in state.sockets:
            targets = [state.sockets[sid]]
        else:
            return
        self._sent.append((state.generation, sid, event, data))
        self._changed()
        for ws in targets:
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_json(message)
            except Exception as error:  # server.py send_socket_catch_exception: log and go on
                log.debug("fake comfyui send error: %s", error)

    def _queue_info(self, state: _State) -> dict:
        return {"exec_info": {"queue_remaining": len(state.queue) + len(state.running)}}

    def _queue_updated(self, state: _State) -> None:
        self._send_sync(state, "status", {"status": self._queue_info(state)}, None)
        self._changed()

    def _queue_json(self, state: _State | None) -> dict:
        if state is None:
            return {"queue_running": [], "queue_pending": []}
        return {
            "queue_running": list(state.running.values()),
            "queue_pending": [entry[3] for entry in state.queue],  # the raw heap array, as the real one
        }

    # ================================================================ internals: HTTP

    def _routes(self) -> list[tuple[str, str, Callable]]:
        return [
            ("GET", "/ws", self._ws),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/features", self._features),
            ("GET", "/prompt", self._get_prompt),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/free", self._post_free),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_item),
            ("POST", "/history", self._post_history),
            ("GET", "/view", self._view),
            ("POST", "/upload/image", self._upload_image),
            ("GET", "/object_info", self._object_info),
            ("GET", "/object_info/{node_class}", self._object_info_node),
            ("GET", "/models", self._models_route),
            ("GET", "/models/{folder}", self._models_folder),
            ("GET", "/embeddings", self._embeddings),
        ]

    @web.middleware
    async def _record_mw(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        body = b""
        parsed = None
        if request.can_read_body and not request.content_type.startswith("multipart/"):
            body = await request.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        record = RecordedRequest(
            method=request.method,
            path=path,
            raw_path=request.path,
            query=dict(request.query),
            json=parsed,
            body=body,
            time=time.time(),
            generation=self._generation,
        )
        request[_RECORD] = record
        self._requests.append(record)
        self._changed()
        try:
            response = await handler(request)
        except web.HTTPException as error:
            record.status = error.status
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            record.status = 500  # aiohttp answers the "Server got itself in trouble" page, as ComfyUI does
            self._changed()
            raise
        record.status = response.status
        self._changed()
        return response

    @web.middleware
    async def _origin_mw(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        # server.py create_origin_only_middleware: a loopback Host with a different Origin is refused.
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain = parsed.netloc.lower()
            host_parsed = urllib.parse.urlsplit("//" + host_domain)
            loopback = _is_loopback(host_parsed.hostname)
            if parsed.port is None:
                host_domain = host_parsed.hostname
            if host_parsed.port is None:
                origin_domain = parsed.hostname
            if loopback and host_domain and origin_domain and host_domain != origin_domain:
                return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    def _json(self, request: web.Request, data: Any, status: int = 200) -> web.Response:
        request[_RECORD].response_json = copy.deepcopy(data)
        return web.json_response(data, status=status)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        state = self._state
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        if sid:
            state.sockets.pop(sid, None)  # reusing a session: the old socket gets nothing more
        else:
            sid = uuid.uuid4().hex
        state.sockets[sid] = ws
        state.sockets_metadata[sid] = {"feature_flags": {}}
        state.connections[ws] = request.transport
        self._changed()
        try:
            await self._send(state, "status", {"status": self._queue_info(state), "sid": sid}, sid)
            if state.client_id == sid and state.last_node_id is not None:
                # The reconnecting owner of the running prompt: no prompt_id, no display_node [seen].
                await self._send(state, "executing", {"node": state.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    if first_message and data.get("type") == "feature_flags":
                        state.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                        await self._send(
                            state,
                            "feature_flags",
                            {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE},
                            sid,
                        )
                    first_message = False
                except Exception as error:  # the real handler logs and carries on
                    log.debug("fake comfyui ws message ignored: %s", error)
        finally:
            # As server.py: pops by sid, so an old socket closing after a reconnect unregisters the new one.
            state.sockets.pop(sid, None)
            state.sockets_metadata.pop(sid, None)
            state.connections.pop(ws, None)
            self._changed()
        return ws

    async def _system_stats(self, request: web.Request) -> web.Response:
        stats = {
            "system": {
                "os": "posix",
                "ram_total": CPU_RAM,
                "ram_free": CPU_RAM_FREE,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "2.9.1+cu128",
                "embedded_python": False,
                "argv": ["main.py", "--listen", "127.0.0.1", "--port", str(self._port)],
            },
            "devices": [dict(self._device)],
        }
        if self._device["type"] == "cpu":
            stats["system"]["argv"].insert(1, "--cpu")
        return self._json(request, stats)

    async def _features(self, request: web.Request) -> web.Response:
        return self._json(request, {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return self._json(request, self._queue_info(self._state))

    async def _post_prompt(self, request: web.Request) -> web.Response:
        state = self._state
        if self._http_500_remaining > 0:
            self._http_500_remaining -= 1
            request[_RECORD].status = 500
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble", content_type="text/plain"
            )
        json_data = await request.json()  # not JSON: aiohttp's 500 text/plain, as on the real server

        if "number" in json_data:
            number: int | float = float(json_data["number"])
        else:
            number = state.number
            if json_data.get("front"):
                number = -number
            state.number += 1

        if "prompt" not in json_data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return self._json(request, {"error": error, "node_errors": {}}, status=400)

        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        partial = json_data.get("partial_execution_targets")
        valid, error, outputs, node_errors = self._validate_prompt(prompt, partial)
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid:
            return self._json(request, {"error": error, "node_errors": node_errors}, status=400)

        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra_data.pop(key, None)
        job = _Job(drop_events=self._finish_before_ws, fast=self._finish_before_ws)
        item = [number, prompt_id, prompt, extra_data, outputs]
        heapq.heappush(state.queue, (number, prompt_id, next(state.seq), item, job))
        self._queue_updated(state)
        state.wake.set()

        if job.fast:
            await asyncio.wait_for(job.done.wait(), 30)
        if self._accept_then_timeout:
            delay = self._accept_then_timeout.pop(0)
            with contextlib.suppress(TimeoutError):  # cut short when the port closes (die, refuse, stop)
                await asyncio.wait_for(self._closing.wait(), delay)
        return self._json(request, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def _get_queue(self, request: web.Request) -> web.Response:
        for _ in range(600):  # at most 30 s, so a test's server still stops
            if not self._queue_unanswered:
                break
            await asyncio.sleep(0.05)
        return self._json(request, self._queue_json(self._state))

    async def _post_queue(self, request: web.Request) -> web.Response:
        state = self._state
        json_data = await request.json()
        if json_data.get("clear"):
            state.queue = []
            self._queue_updated(state)
        for id_to_delete in json_data.get("delete", []):
            # PromptQueue.delete_queue_item: pending items only, first match; the last one goes via wipe_queue
            for index, entry in enumerate(state.queue):
                if entry[1] == id_to_delete:
                    if len(state.queue) == 1:
                        state.queue = []
                        self._queue_updated(state)
                    else:
                        state.queue.pop(index)
                        heapq.heapify(state.queue)
                    self._queue_updated(state)
                    break
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        state = self._state
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if prompt_id:
            if any(item[1] == prompt_id for item in state.running.values()):
                state.interrupt = True
        else:
            state.interrupt = True
        state.wake.set()
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.Response:
        state = self._state
        json_data = await request.json()
        if json_data.get("unload_models", False):
            state.flags["unload_models"] = json_data["unload_models"]
        if json_data.get("free_memory", False):
            state.flags["free_memory"] = json_data["free_memory"]
        state.wake.set()
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        state = self._state
        max_items = request.query.get("max_items")
        max_items = int(max_items) if max_items is not None else None
        offset = request.query.get("offset")
        offset = int(offset) if offset is not None else -1
        out = {}
        if offset < 0 and max_items is not None:
            offset = len(state.history) - max_items
        for i, key in enumerate(state.history):
            if i >= offset:
                out[key] = state.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return self._json(request, out)

    async def _get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._state.history.get(prompt_id)
        return self._json(request, {} if entry is None else {prompt_id: entry})

    async def _post_history(self, request: web.Request) -> web.Response:
        state = self._state
        json_data = await request.json()
        if json_data.get("clear"):
            state.history = {}
        for id_to_delete in json_data.get("delete", []):
            state.history.pop(id_to_delete, None)
        self._changed()
        return web.Response(status=200)

    def _directory_by_type(self, kind: str) -> str | None:
        return {"output": str(self.output_dir), "input": str(self.input_dir), "temp": str(self.temp_dir)}.get(kind)

    def _annotated_filepath(self, name: str) -> tuple[str, str | None]:
        for kind in ("output", "input", "temp"):
            suffix = f" [{kind}]"
            if name.endswith(f"[{kind}]"):
                return name[: -len(suffix)], self._directory_by_type(kind)
        return name, None

    async def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = self._annotated_filepath(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:  # the real server's whole traversal check
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self._directory_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full_output_dir = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full_output_dir), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full_output_dir
        filename = os.path.basename(filename)
        file = os.path.join(output_dir, filename)
        if not os.path.isfile(file):
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        channel = query.get("channel", "rgba")
        if "preview" in query:
            preview_info = query["preview"].split(";")
            image_format = preview_info[0]
            if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                image_format = "webp"
            quality = int(preview_info[-1]) if preview_info[-1].isdigit() else 90
            with Image.open(file) as img:
                if image_format == "jpeg" or query.get("channel", "") == "rgb":
                    img = img.convert("RGB")
                buffer = io.BytesIO()
                img.save(buffer, format=image_format, quality=quality)
            return web.Response(body=buffer.getvalue(), content_type=f"image/{image_format}", headers=disposition)
        if channel == "rgb":
            with Image.open(file) as img:
                buffer = io.BytesIO()
                img.convert("RGB").save(buffer, format="PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png", headers=disposition)
        if channel == "a":
            with Image.open(file) as img:
                alpha = img.split()[3] if img.mode == "RGBA" else Image.new("L", img.size, 255)
                alpha_img = Image.new("RGBA", img.size)
                alpha_img.putalpha(alpha)
                buffer = io.BytesIO()
                alpha_img.save(buffer, format="PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png", headers=disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        request[_RECORD].form = {
            key: (value.filename if hasattr(value, "filename") else str(value)) for key, value in post.items()
        }
        image = post.get("image")
        overwrite = post.get("overwrite")
        kind = post.get("type") or "input"
        upload_dir = self._directory_by_type(kind)
        if upload_dir is None:
            raise ValueError(f"unknown upload type {kind!r}")  # the real get_dir_by_type crashes too: a 500
        if not image or not image.file:  # a text field named image: AttributeError, a 500 as on the real one
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        full_output_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(full_output_folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(full_output_folder, exist_ok=True)
        data = image.file.read()
        split = os.path.splitext(filename)
        duplicate = False
        if overwrite not in ("true", "1"):
            i = 1
            while os.path.exists(filepath):
                if hashlib.sha256(Path(filepath).read_bytes()).digest() == hashlib.sha256(data).digest():
                    duplicate = True  # same name, same bytes: not rewritten, that name returned
                    break
                filename = f"{split[0]} ({i}){split[1]}"
                filepath = os.path.join(full_output_folder, filename)
                i += 1
        if not duplicate:
            Path(filepath).write_bytes(data)
        self._uploads.append(
            Upload(filename, subfolder, kind, hashlib.sha256(data).hexdigest(), len(data), self._generation)
        )
        return self._json(request, {"name": filename, "subfolder": subfolder, "type": kind})

    def _node_info(self, name: str) -> dict:
        info = copy.deepcopy(self._nodes[name])
        if name == "LoadImage":
            info["input"]["required"]["image"][0] = self._input_images()
        elif name == "CheckpointLoaderSimple":
            info["input"]["required"]["ckpt_name"][0] = list(self._models)
        elif name == "LoadAudio":
            info["input"]["required"]["audio"][0] = self._input_images(_AUDIO_VIDEO_EXTENSIONS)
        return info

    def _input_images(self, extensions: set[str] = _IMAGE_EXTENSIONS) -> list[str]:
        return sorted(p.name for p in self.input_dir.iterdir() if p.is_file() and p.suffix.lower() in extensions)

    async def _object_info(self, request: web.Request) -> web.Response:
        return self._json(request, {name: self._node_info(name) for name in self._nodes})

    async def _object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return self._json(request, {name: self._node_info(name)} if name in self._nodes else {})

    async def _models_route(self, request: web.Request) -> web.Response:
        return self._json(request, list(_MODEL_FOLDERS))

    async def _models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder == "checkpoints":
            return self._json(request, list(self._models))
        if folder in _MODEL_FOLDERS:
            return self._json(request, [])
        return web.Response(status=404)

    async def _embeddings(self, request: web.Request) -> web.Response:
        return self._json(request, [])

    # ================================================================ internals: validation (execution.py)

    def _validate_prompt(self, prompt: Any, partial: Any) -> tuple[bool, dict | None, list[str], dict]:
        """execution.validate_prompt: (valid, error, outputs to run, node_errors)."""
        outputs: list[str] = []
        for x in prompt:
            if "class_type" not in prompt[x]:
                message = "Cannot execute because a node is missing the class_type property."
                return False, _error("invalid_prompt", message, f"Node ID '#{x}'"), [], {}
            class_type = prompt[x]["class_type"]
            info = self._nodes.get(class_type) if isinstance(class_type, str) else None
            if info is None:
                message = f"Cannot execute because node {class_type} does not exist."
                return False, _error("invalid_prompt", message, f"Node ID '#{x}'"), [], {}
            if info.get("output_node") is True and (partial is None or x in partial) and x not in outputs:
                outputs.append(x)
        # The real server iterates a set here; the captures show ["5", "4"] for outputs 4 and 5 (in history,
        # /queue and dependent_outputs), and reversed prompt order reproduces that.
        outputs.reverse()
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

        good_outputs: list[str] = []
        errors: list[tuple[str, list]] = []
        node_errors: dict[str, dict] = {}
        validated: dict[str, tuple] = {}
        for o in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(prompt, o, validated)
            except Exception as ex:  # reported to the client, as the real server does
                valid = False
                reasons = [
                    _error(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(ex),
                        exception_type=_full_type_name(type(ex)),
                        traceback=traceback.format_tb(ex.__traceback__),
                    )
                ]
                validated[o] = (False, reasons, o)
            if valid is True:
                good_outputs.append(o)
                continue
            errors.append((o, reasons))
            # Every failed node validated so far is charged to this output (the real server does the same).
            for node_id, result in validated.items():
                if result[0] is not True and len(result[1]) > 0:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": result[1],
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(o)
        if not good_outputs:
            details = "\n".join(f"{e['message']}: {e['details']}" for _o, reasons in errors for e in reasons)
            return (
                False,
                _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                [],
                node_errors,
            )
        return True, None, good_outputs, node_errors

    def _validate_inputs(self, prompt: dict, unique_id: str, validated: dict) -> tuple:
        """execution.validate_inputs: (valid, errors, node id); coerces literal values in place."""
        if unique_id in validated:
            return validated[unique_id]
        inputs = prompt[unique_id]["inputs"]
        class_type = prompt[unique_id]["class_type"]
        info = self._node_info(class_type)
        # LoadImage.VALIDATE_INPUTS(image), LoadAudio.VALIDATE_INPUTS(audio)
        custom_validated = {"LoadImage": ["image"], "LoadAudio": ["audio"]}.get(class_type, [])
        errors: list[dict] = []
        valid = True
        names = list(info.get("input", {}).get("required", {})) + list(info.get("input", {}).get("optional", {}))
        for x in names:
            input_type, category, extra_info = _get_input_info(info, x)
            if x not in inputs:
                if category == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", x, input_name=x))
                continue
            val = inputs[x]
            config = [input_type, extra_info]
            if isinstance(val, list):
                if len(val) != 2:
                    message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                    errors.append(
                        _error("bad_linked_input", message, x, input_name=x, input_config=config, received_value=val)
                    )
                    continue
                o_id = val[0]
                o_class_type = prompt[o_id]["class_type"]  # KeyError for a dangling link, as on the real one
                received_type = tuple(self._nodes[o_class_type]["output"])[val[1]]
                if not _validate_node_input(received_type, input_type):
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{x}, received_type({received_type}) mismatch input_type({input_type})",
                            input_name=x,
                            input_config=config,
                            received_type=received_type,
                            linked_node=val,
                        )
                    )
                    continue
                try:
                    if self._validate_inputs(prompt, o_id, validated)[0] is False:
                        valid = False
                except Exception as ex:  # charged to the upstream node, as on the real server
                    valid = False
                    reason = _error(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        str(ex),
                        input_name=x,
                        input_config=config,
                        exception_message=str(ex),
                        exception_type=_full_type_name(type(ex)),
                        traceback=traceback.format_tb(ex.__traceback__),
                        linked_node=val,
                    )
                    validated[o_id] = (False, [reason], o_id)
                continue
            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = val["__value__"]
                    inputs[x] = val
                if input_type == "INT":
                    val = int(val)
                    inputs[x] = val
                if input_type == "FLOAT":
                    val = float(val)
                    inputs[x] = val
                if input_type == "STRING":
                    val = str(val)
                    inputs[x] = val
                if input_type == "BOOLEAN":
                    val = bool(val)  # so "false" becomes True, as on the real server
                    inputs[x] = val
            except Exception as ex:  # reported to the client
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {input_type} value",
                        f"{x}, {val}, {ex}",
                        input_name=x,
                        input_config=config,
                        received_value=val,
                        exception_message=str(ex),
                    )
                )
                continue
            if x in custom_validated:
                continue
            if "min" in extra_info and val < extra_info["min"]:
                message = "Value {} smaller than min of {}".format(val, extra_info["min"])
                errors.append(
                    _error("value_smaller_than_min", message, x, input_name=x, input_config=config, received_value=val)
                )
                continue
            if "max" in extra_info and val > extra_info["max"]:
                message = "Value {} bigger than max of {}".format(val, extra_info["max"])
                errors.append(
                    _error("value_bigger_than_max", message, x, input_name=x, input_config=config, received_value=val)
                )
                continue
            if isinstance(input_type, list) or input_type == "COMBO":
                options = extra_info.get("options", []) if input_type == "COMBO" else input_type
                if val not in options:
                    input_config: Any = config
                    if len(options) > 20:  # long lists (model files) are elided
                        list_info = f"(list of length {len(options)})"
                        input_config = None
                    else:
                        list_info = str(options)
                    errors.append(
                        _error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{x}: '{val}' not in {list_info}",
                            input_name=x,
                            input_config=input_config,
                            received_value=val,
                        )
                    )
        for x in custom_validated:
            if x in inputs and not _is_link(inputs[x]) and not os.path.exists(self._input_path(inputs[x])):
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{x} - Invalid {x} file: {inputs[x]}",
                        input_name=x,
                    )
                )
        result = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
        validated[unique_id] = result
        return result

    def _input_path(self, name: str) -> str:
        name, base = self._annotated_filepath(str(name))
        return os.path.join(base or str(self.input_dir), name)

    # ================================================================ internals: execution (main.py prompt_worker)

    async def _worker(self, state: _State) -> None:
        while True:
            if state.flags:
                self._apply_flags(state)
            if not state.queue:
                state.wake.clear()
                await state.wake.wait()
                continue
            _number, prompt_id, _seq, item, job = heapq.heappop(state.queue)
            item_id = state.task_counter
            state.task_counter += 1
            state.running[item_id] = copy.deepcopy(item)
            self._queue_updated(state)
            started = time.time()
            try:
                success, history_result, messages = await self._execute(state, job, item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the fake must not wedge the queue; the prompt ends as an error
                log.exception("fake comfyui: executing %s failed", prompt_id)
                success, history_result, messages = False, {"outputs": {}, "meta": {}}, []
            state.running.pop(item_id, None)
            if len(state.history) > MAXIMUM_HISTORY_SIZE:
                state.history.pop(next(iter(state.history)))
            state.history[prompt_id] = {
                "prompt": copy.deepcopy(item),
                "outputs": {},
                "status": {"status_str": "success" if success else "error", "completed": success, "messages": messages},
            }
            state.history[prompt_id].update(history_result)
            self._executions.append(Execution(prompt_id, started, time.time(), success))
            self._queue_updated(state)
            if state.client_id is not None and not job.drop_events:
                self._send_sync(state, "executing", {"node": None, "prompt_id": prompt_id}, state.client_id)
            job.done.set()
            self._changed()

    def _apply_flags(self, state: _State) -> None:
        flags, state.flags = state.flags, {}
        if flags.get("unload_models", False):
            state.loaded_models = None  # the next prompt loads its models again, whichever they are
        if flags.get("free_memory", False):
            # PromptExecutor.reset(): a new cache set, so every node runs again (and PreviewImage gets a new prefix)
            state.outputs_cache.clear()
            state.ui_cache.clear()
            state.objects.clear()
        self._changed()

    async def _execute(self, state: _State, job: _Job, item: list) -> tuple[bool, dict, list]:
        _number, prompt_id, original_prompt, extra_data, execute_outputs = item
        prompt = copy.deepcopy(original_prompt)
        state.interrupt = False
        state.client_id = extra_data.get("client_id")
        client_id = state.client_id
        messages: list[list] = []
        progress_nodes: dict[str, dict] = {}

        def emit(event: Any, data: Any, sid: str | None) -> None:
            if not job.drop_events:
                self._send_sync(state, event, data, sid)

        def add_message(event: str, data: dict, broadcast: bool) -> None:
            data = {**data, "timestamp": int(time.time() * 1000)}
            messages.append([event, data])
            if client_id is not None or broadcast:
                emit(event, data, client_id)

        def progress_state(node_id: str, value: Any, maximum: Any, node_state: str) -> None:
            # progress_state goes to the client, or to everybody for a prompt without client_id [seen].
            progress_nodes[node_id] = {
                "value": value,
                "max": maximum,
                "state": node_state,
                "node_id": node_id,
                "prompt_id": prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            emit("progress_state", {"prompt_id": prompt_id, "nodes": copy.deepcopy(progress_nodes)}, client_id)

        add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        models = _prompt_models(prompt)
        if models != state.loaded_models:
            state.loaded_models = models
            self._model_loads.append((prompt_id, sorted(models)))
            self._changed()
            if self._model_load_seconds and not job.fast:
                await self._pause(state, self._model_load_seconds)  # an interrupt stops at the first node
        if self._prompt_seconds and not job.fast:
            await self._pause(state, self._prompt_seconds)  # an interrupt stays set for the first executed node

        memo: dict[str, str] = {}
        signatures = {node_id: self._signature(prompt, node_id, memo) for node_id in prompt}
        wanted = set(signatures.values())
        for cache in (state.outputs_cache, state.ui_cache):  # classic cache: keep only what this prompt can use
            for key in [k for k in cache if k not in wanted]:
                del cache[key]
        cached_nodes = [n for n in prompt if signatures[n] in state.outputs_cache]
        add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)

        def is_cached(node_id: str) -> bool:
            return node_id in signatures and signatures[node_id] in state.outputs_cache

        def is_output(node_id: str) -> bool:
            return bool(self._nodes[prompt[node_id]["class_type"]].get("output_node"))

        execution_list = _ExecutionList(prompt, is_cached, is_output)
        for node_id in execute_outputs:
            execution_list.add_node(node_id)
        executed: list[str] = []
        current_outputs = list(prompt)
        success = True
        first_node = True

        while execution_list.pending:
            node_id = execution_list.next_node()
            class_type = prompt[node_id]["class_type"]
            signature = signatures[node_id]
            if signature in state.outputs_cache:
                if client_id is not None:
                    ui = state.ui_cache.get(signature) or {}
                    emit(
                        "executed",
                        {"node": node_id, "display_node": node_id, "output": ui.get("output"), "prompt_id": prompt_id},
                        client_id,
                    )
                previous = progress_nodes.get(node_id)
                maximum = previous["max"] if previous else 1
                progress_state(node_id, maximum, maximum, "finished")
                execution_list.complete(node_id)
                continue

            inputs = self._resolve_inputs(state, prompt, node_id, signatures)
            progress_state(node_id, 0.0, 1.0, "running")
            if client_id is not None:
                state.last_node_id = node_id
                emit("executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, client_id)
            self._node_log.append((state.generation, prompt_id, node_id))
            self._changed()
            try:
                if first_node and self._die_mid_run:
                    self._die_mid_run = False
                    crash = asyncio.get_running_loop().create_task(self._crash(state))
                    self._aux_tasks.add(crash)  # not in state.tasks: the crash cancels those
                    crash.add_done_callback(self._aux_tasks.discard)
                    await asyncio.Event().wait()  # cancelled by the crash
                first_node = False
                self._check_interrupt(state)
                while self._hang_after_start and not state.interrupt:
                    state.wake.clear()
                    await state.wake.wait()
                self._check_interrupt(state)
                fault = self._take_node_fault(node_id)
                if fault is not None:
                    raise fault
                await self._run_steps(state, job, prompt_id, node_id, class_type, inputs, progress_state, emit)
                if self._node_seconds and not job.fast:
                    await asyncio.sleep(self._node_seconds)
                outputs, ui = self._run_node(state, prompt, original_prompt, extra_data, node_id, class_type, inputs)
            except asyncio.CancelledError:
                raise
            except _InterruptProcessing:
                add_message(
                    "execution_interrupted",
                    {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": list(executed)},
                    broadcast=True,
                )
                success = False
                break
            except Exception as ex:  # a node failure is reported like the real executor does
                success = False
                exception_type = getattr(ex, "exception_type", None) or _full_type_name(type(ex))
                tips = OOM_TIPS if isinstance(ex, OutOfMemoryError) else ""
                add_message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": class_type,
                        "executed": list(executed),
                        "exception_message": f"{ex}\n{tips}",
                        "exception_type": exception_type,
                        "traceback": traceback.format_tb(ex.__traceback__),
                        "current_inputs": self._format_inputs(node_id, class_type, inputs, original_prompt, extra_data),
                        "current_outputs": current_outputs,
                    },
                    broadcast=False,
                )
                break
            if ui:
                state.ui_cache[signature] = {
                    "meta": {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id},
                    "output": ui,
                }
                if client_id is not None:
                    emit(
                        "executed",
                        {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id},
                        client_id,
                    )
            state.outputs_cache[signature] = outputs
            maximum = progress_nodes[node_id]["max"]
            progress_state(node_id, maximum, maximum, "finished")
            executed.append(node_id)
            execution_list.complete(node_id)
        else:
            add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)

        outputs_ui: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in prompt:
            ui_info = state.ui_cache.get(signatures[node_id])
            if ui_info is not None:
                outputs_ui[node_id] = ui_info["output"]
                meta[node_id] = ui_info["meta"]
        state.last_node_id = None
        return success, {"outputs": outputs_ui, "meta": meta}, messages

    def _check_interrupt(self, state: _State) -> None:
        # model_management.throw_exception_if_processing_interrupted: the flag is consumed
        if state.interrupt:
            state.interrupt = False
            raise _InterruptProcessing

    def _take_node_fault(self, node_id: str) -> Exception | None:
        for fault in self._node_faults:
            if fault["node_id"] == node_id and fault["remaining"] > 0:
                fault["remaining"] -= 1
                error = fault["error"]
                return (
                    type(error)(*error.args)
                    if not isinstance(error, _ScriptedError)
                    else _ScriptedError(error.exception_type, str(error))
                )
        return None

    async def _run_steps(self, state, job, prompt_id, node_id, class_type, inputs, progress_state, emit) -> None:
        if self._steps_per_node is not None:
            steps = int(self._steps_per_node)
        elif class_type == "KSampler":
            steps = int(inputs.get("steps", 0))
        else:
            steps = 0
        client_id = state.client_id
        for value in range(1, steps + 1):
            if self._step_seconds and not job.fast:
                await self._pause(state, self._step_seconds)
            self._check_interrupt(state)  # the progress hook checks before reporting
            progress_state(node_id, value, steps, "running")
            supports_metadata = client_id is not None and state.sockets_metadata.get(client_id, {}).get(
                "feature_flags", {}
            ).get("supports_preview_metadata")
            if self._send_previews and supports_metadata:
                metadata = json.dumps(
                    {
                        "node_id": node_id,
                        "prompt_id": prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": "image/jpeg",
                    }
                ).encode()
                emit(PREVIEW_IMAGE_WITH_METADATA, struct.pack(">I", len(metadata)) + metadata + _jpeg(), client_id)
            emit("progress", {"value": value, "max": steps, "prompt_id": prompt_id, "node": node_id}, client_id)
            if self._send_previews and not supports_metadata:
                emit(PREVIEW_IMAGE, struct.pack(">I", 1) + _jpeg(), client_id)

    async def _pause(self, state: _State, seconds: float) -> None:
        """Sleep `seconds`, cut short by an interrupt (other wake-ups just re-check)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not state.interrupt:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            state.wake.clear()
            try:
                await asyncio.wait_for(state.wake.wait(), remaining)
            except TimeoutError:
                return

    def _signature(self, prompt: dict, node_id: str, memo: dict[str, str], depth: int = 0) -> str:
        """CacheKeySetInputSignature in spirit: class, literal inputs and ancestors' signatures (not node ids)."""
        if node_id in memo:
            return memo[node_id]
        node = prompt.get(node_id) if isinstance(prompt, dict) else None
        if not isinstance(node, dict) or depth > 200:
            return json.dumps(["missing", str(node_id)])
        items = []
        inputs = node.get("inputs", {}) if isinstance(node.get("inputs"), dict) else {}
        for name in sorted(inputs):
            value = inputs[name]
            if _is_link(value):
                items.append([name, "link", self._signature(prompt, value[0], memo, depth + 1), value[1]])
            else:
                items.append([name, value])
        if node.get("class_type") in ("LoadImage", "LoadAudio"):  # IS_CHANGED: the file's hash
            path = self._input_path(inputs.get("image" if node.get("class_type") == "LoadImage" else "audio", ""))
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else "nan"
            items.append(["__is_changed__", digest])
        memo[node_id] = json.dumps([node.get("class_type"), items], sort_keys=True, default=str)
        return memo[node_id]

    def _resolve_inputs(self, state: _State, prompt: dict, node_id: str, signatures: dict[str, str]) -> dict:
        resolved = {}
        for name, value in prompt[node_id]["inputs"].items():
            if _is_link(value):
                outputs = state.outputs_cache.get(signatures.get(value[0], ""))
                slot = int(value[1])
                resolved[name] = outputs[slot] if outputs is not None and slot < len(outputs) else None
            else:
                resolved[name] = value
        return resolved

    def _format_inputs(self, node_id, class_type, inputs, original_prompt, extra_data) -> dict:
        info = self._nodes[class_type]
        formatted = {name: [_format_value(value)] for name, value in inputs.items()}
        for name, kind in info.get("input", {}).get("hidden", {}).items():
            kind = kind[0] if isinstance(kind, list) else kind  # new-style nodes: ["PROMPT"]
            if kind == "PROMPT":
                formatted[name] = [str(original_prompt)]
            elif kind == "EXTRA_PNGINFO":
                formatted[name] = [_format_value(extra_data.get("extra_pnginfo"))]
        return formatted

    # ---------------------------------------------------------------- simulated nodes

    def _run_node(self, state, prompt, original_prompt, extra_data, node_id, class_type, inputs) -> tuple[tuple, dict]:
        def picture(value: Any) -> _Picture:
            return value if isinstance(value, _Picture) else _Picture(64, 64)

        if class_type == "EmptyImage":
            return (_Picture(inputs["width"], inputs["height"], inputs["batch_size"], _rgb(inputs["color"])),), {}
        if class_type == "LoadImage":
            path = self._input_path(inputs["image"])
            with Image.open(path) as img:  # a non-image raises PIL.UnidentifiedImageError, as seen
                img.load()
                rgb = img.convert("RGB").getpixel((0, 0))
                width, height = img.size
            return (_Picture(width, height, 1, rgb), f"tensor(<mask 1x{height}x{width}>)"), {}
        if class_type == "ImageInvert":
            src = picture(inputs["image"])
            return (replace(src, rgb=tuple(255 - c for c in src.rgb)),), {}
        if class_type == "ImageScale":
            src = picture(inputs["image"])
            width, height = inputs["width"], inputs["height"]
            if width == 0 and height == 0:
                width, height = src.width, src.height
            elif width == 0:
                width = max(1, round(src.width * height / src.height))
            elif height == 0:
                height = max(1, round(src.height * width / src.width))
            return (replace(src, width=width, height=height),), {}
        if class_type in ("ImageBlur", "ImageAddNoise"):
            return (picture(inputs["image"]),), {}
        if class_type == "PrimitiveInt":
            return (inputs["value"],), {}
        if class_type == "CheckpointLoaderSimple":
            name = inputs["ckpt_name"]
            return (f"<ModelPatcher {name}>", f"<CLIP {name}>", f"<VAE {name}>"), {}
        if class_type == "CLIPTextEncode":
            return ([["<conditioning>", {"text": inputs["text"]}]],), {}
        if class_type == "EmptyLatentImage":
            return (_Latent(inputs["width"], inputs["height"], inputs["batch_size"]),), {}
        if class_type == "KSampler":
            latent = inputs["latent_image"]
            return (latent if isinstance(latent, _Latent) else _Latent(64, 64),), {}
        if class_type == "VAEDecode":
            latent = inputs["samples"]
            if isinstance(latent, _Latent):
                return (_Picture(latent.width, latent.height, latent.batch, (128, 128, 128)),), {}
            return (_Picture(64, 64),), {}
        if class_type in ("SaveImage", "PreviewImage"):
            images = picture(inputs["images"])
            if class_type == "SaveImage":
                results = self._save_images(
                    images, inputs.get("filename_prefix", "ComfyUI"), str(self.output_dir), "output", original_prompt,
                    extra_data,
                )  # fmt: skip
            else:
                suffix = state.objects.setdefault(node_id, {}).setdefault(
                    "prefix_append",
                    "_temp_" + "".join(self._rng.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5)),
                )
                results = self._save_images(
                    images, "ComfyUI" + suffix, str(self.temp_dir), "temp", original_prompt, extra_data
                )
            return (), {"images": results}
        if class_type == "PreviewAny":
            source = inputs.get("source")
            if isinstance(source, str):
                text = source
            elif isinstance(source, int | float | bool):
                text = str(source)
            elif source is None:
                text = "None"
            else:
                try:
                    text = json.dumps(source)
                except TypeError:
                    text = str(source)
            return (), {"text": [text]}
        media = self._run_media_node(class_type, inputs, original_prompt, extra_data)
        if media is not None:
            return media
        # An extra node class: one token per declared output; images pass through when there is one.
        info = self._nodes[class_type]
        passthrough = next((v for v in inputs.values() if isinstance(v, _Picture)), None)
        clip = self._clip_shape(inputs, passthrough)
        if clip is not None:  # a video model node: its IMAGE/LATENT outputs carry the clip's frames
            passthrough = clip
        outputs = tuple(
            passthrough
            if kind == "IMAGE" and passthrough
            else _Latent(clip.width, clip.height, clip.batch)
            if kind == "LATENT" and clip is not None
            else f"<{kind} from {class_type} {node_id}>"
            for kind in info["output"]
        )
        return outputs, {}

    @staticmethod
    def _clip_shape(inputs: dict, picture: _Picture | None) -> _Picture | None:
        """The frames a video model node makes: a `length`-like input, else the audio's length (at its `fps`
        input, 25 by default); size from width/height inputs, else the image it animates. None: not a video node."""
        frames = next((inputs[name] for name in _FRAME_COUNT_INPUTS if isinstance(inputs.get(name), int)), None)
        audio = next((v for v in inputs.values() if isinstance(v, _Audio)), None)
        if frames is None and audio is not None:
            fps = next((inputs[n] for n in ("fps", "frame_rate") if isinstance(inputs.get(n), int | float)), 25)
            frames = max(1, math.ceil(audio.seconds * fps))
        if frames is None:
            return None
        base = picture or _Picture(64, 64, 1, (128, 128, 128))
        width = inputs.get("width") if isinstance(inputs.get("width"), int) else base.width
        height = inputs.get("height") if isinstance(inputs.get("height"), int) else base.height
        return replace(base, width=width, height=height, batch=max(1, int(frames)))

    def _run_media_node(self, class_type: str, inputs: dict, prompt: Any, extra_data: dict) -> tuple | None:
        """Audio and video nodes: real files, made with ffmpeg (None: not one of them)."""

        def picture(value: Any) -> _Picture:
            return value if isinstance(value, _Picture) else _Picture(64, 64)

        def saved(prefix: str, images: _Picture, folder: Path, kind: str = "output"):
            full, filename, counter, subfolder = _get_save_image_path(prefix, str(folder), images.width, images.height)
            return Path(full), filename, counter, subfolder, kind

        if class_type == "LoadAudio":
            path = self._input_path(inputs["audio"])
            seconds, sample_rate = _media_seconds(path)
            return (_Audio(path, seconds, sample_rate),), {}
        if class_type == "RepeatImageBatch":
            src = picture(inputs["image"])
            return (replace(src, batch=src.batch * inputs["amount"]),), {}
        if class_type == "CreateVideo":
            audio = inputs.get("audio") if isinstance(inputs.get("audio"), _Audio) else None
            return (_Video(picture(inputs["images"]), float(inputs["fps"]), audio),), {}
        if class_type in ("SaveVideo", "SaveWEBM"):
            if class_type == "SaveVideo":
                video = inputs["video"] if isinstance(inputs["video"], _Video) else _Video(_Picture(64, 64), 30.0)
                extension, codec = "mp4", "h264"
            else:
                video = _Video(picture(inputs["images"]), float(inputs["fps"]))
                extension, codec = "webm", inputs["codec"]
            folder, filename, counter, subfolder, kind = saved(inputs["filename_prefix"], video.images, self.output_dir)
            file = f"{filename}_{counter:05}_.{extension}"
            _encode_clip(folder / file, video, codec, metadata={"prompt": json.dumps(prompt)})
            return (), {"images": [{"filename": file, "subfolder": subfolder, "type": kind}], "animated": [True]}
        if class_type in ("SaveAnimatedWEBP", "SaveAnimatedPNG"):
            images = picture(inputs["images"])
            folder, filename, counter, subfolder, kind = saved(inputs["filename_prefix"], images, self.output_dir)
            extension = "webp" if class_type == "SaveAnimatedWEBP" else "png"
            file = f"{filename}_{counter:05}_.{extension}"
            frames = _frames(images)
            options = {"lossless": inputs["lossless"], "quality": inputs["quality"]} if extension == "webp" else {}
            frames[0].save(
                folder / file, save_all=True, duration=int(1000.0 / inputs["fps"]), append_images=frames[1:], **options
            )
            animated = images.batch != 1 if extension == "webp" else True
            return (), {"images": [{"filename": file, "subfolder": subfolder, "type": kind}], "animated": [animated]}
        if class_type == "VHS_VideoCombine":
            return self._video_combine(inputs, prompt)
        return None

    def _video_combine(self, inputs: dict, prompt: Any) -> tuple:
        """VideoHelperSuite's VideoCombine: a first-frame PNG, the clip, and `-audio` beside it when audio is
        connected; the UI names the last of them under `gifs` and the PNG as its `workflow`."""
        images = inputs["images"] if isinstance(inputs["images"], _Picture) else _Picture(64, 64)
        save_output = inputs["save_output"]
        kind = "output" if save_output else "temp"
        base = self.output_dir if save_output else self.temp_dir
        full, filename, _counter, subfolder = _get_save_image_path(
            inputs["filename_prefix"], str(base), images.width, images.height
        )
        folder = Path(full)
        matcher = re.compile(f"{re.escape(filename)}_(\\d+)\\D*\\..+", re.IGNORECASE)
        counter = 1 + max(
            (int(m.group(1)) for m in map(matcher.fullmatch, os.listdir(folder)) if m is not None), default=0
        )
        metadata = PngInfo()
        metadata.add_text("prompt", json.dumps(prompt))
        first_image_file = f"{filename}_{counter:05}.png"
        _frames(replace(images, batch=1))[0].save(folder / first_image_file, pnginfo=metadata, compress_level=4)
        output_files = [str(folder / first_image_file)]
        video_format = inputs["format"]
        extension = video_format.split("/")[-1].split("-")[-1]
        file = f"{filename}_{counter:05}.{extension}"
        fps = float(inputs["frame_rate"])
        if video_format.startswith("image/"):
            frames = _frames(images)
            frames[0].save(folder / file, save_all=True, duration=round(1000 / fps), append_images=frames[1:], loop=0)
        else:
            _encode_clip(folder / file, _Video(images, fps), "vp9" if extension == "webm" else "h264")
        output_files.append(str(folder / file))
        audio = inputs.get("audio")
        if isinstance(audio, _Audio) and video_format.startswith("video/"):
            file = f"{filename}_{counter:05}-audio.{extension}"
            _encode_clip(folder / file, _Video(images, fps, audio), "vp9" if extension == "webm" else "h264")
            output_files.append(str(folder / file))
        preview = {
            "filename": file,
            "subfolder": subfolder,
            "type": kind,
            "format": video_format,
            "frame_rate": fps,
            "workflow": first_image_file,
            "fullpath": output_files[-1],
        }
        return ((save_output, output_files),), {"gifs": [preview]}

    def _save_images(self, images: _Picture, filename_prefix: str, output_dir: str, kind: str, prompt, extra_data):
        full_output_folder, filename, counter, subfolder = _get_save_image_path(
            filename_prefix, output_dir, images.width, images.height
        )
        metadata = PngInfo()
        metadata.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_data.get("extra_pnginfo") or {}).items():
            metadata.add_text(key, json.dumps(value))
        results = []
        for batch_number in range(images.batch):
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            size = (min(images.width, MAX_PIXELS_PER_SIDE), min(images.height, MAX_PIXELS_PER_SIDE))
            Image.new("RGB", size, images.rgb).save(
                os.path.join(full_output_folder, file), pnginfo=metadata, compress_level=4 if kind == "output" else 1
            )
            results.append({"filename": file, "subfolder": subfolder, "type": kind})
            counter += 1
        return results


def _get_save_image_path(filename_prefix: str, output_dir: str, width: int, height: int) -> tuple[str, str, int, str]:
    """folder_paths.get_save_image_path: subfolder from the prefix, counter after the highest existing file."""

    def map_filename(name: str) -> tuple[int, str]:
        prefix_len = len(os.path.basename(filename_prefix))
        prefix = name[: prefix_len + 1]
        try:
            digits = int(name[prefix_len + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        return digits, prefix

    if "%" in filename_prefix:
        now = time.localtime()
        for key, value in {
            "%width%": width,
            "%height%": height,
            "%year%": now.tm_year,
            "%month%": f"{now.tm_mon:02}",
            "%day%": f"{now.tm_mday:02}",
            "%hour%": f"{now.tm_hour:02}",
            "%minute%": f"{now.tm_min:02}",
            "%second%": f"{now.tm_sec:02}",
        }.items():
            filename_prefix = filename_prefix.replace(key, str(value))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    common = os.path.commonpath((output_dir, os.path.abspath(full_output_folder)))
    if common != output_dir:
        # The real server raises a bare Exception: "exception_type": "Exception".
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            + "\n full_output_folder: "
            + os.path.abspath(full_output_folder)
            + "\n         output_dir: "
            + output_dir
            + "\n         commonpath: "
            + common
        )
    try:
        counter = (
            max(
                filter(
                    lambda a: os.path.normcase(a[1][:-1]) == os.path.normcase(filename) and a[1][-1] == "_",
                    map(map_filename, os.listdir(full_output_folder)),
                )
            )[0]
            + 1
        )
    except ValueError:
        counter = 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder


def _ffmpeg() -> str:
    """imageio-ffmpeg's binary (a requirement of the project), else ffmpeg on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg") or "ffmpeg"


def _media_seconds(path: str) -> tuple[float, int]:
    """(duration, sample rate) of an audio file; raises on a file that holds no audio (LoadAudio fails too)."""
    try:
        with wave.open(path, "rb") as wav:
            return wav.getnframes() / wav.getframerate(), wav.getframerate()
    except (wave.Error, EOFError):
        pass
    probe = subprocess.run([_ffmpeg(), "-hide_banner", "-i", path], capture_output=True, text=True, check=False)
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", probe.stderr)
    rate = re.search(r"Audio: .*?(\d+) Hz", probe.stderr)
    if duration is None or rate is None:
        raise RuntimeError(f"Failed to load audio file {path}: no audio stream")
    hours, minutes, seconds = duration.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds), int(rate.group(1))


def _frames(images: _Picture) -> list[Image.Image]:
    """The batch as PIL frames: the picture's colour with a mark that moves, so no two frames are the same."""
    size = (min(images.width, MAX_PIXELS_PER_SIDE), min(images.height, MAX_PIXELS_PER_SIDE))
    mark = tuple(255 - c for c in images.rgb)
    frames = []
    for index in range(images.batch):
        frame = Image.new("RGB", size, images.rgb)
        frame.putpixel((index % size[0], (index // size[0]) % size[1]), mark)
        frames.append(frame)
    return frames


def _encode_clip(path: Path, video: _Video, codec: str, metadata: dict[str, str] | None = None) -> None:
    """Write `video` as a real clip with ffmpeg: its frame count at its fps, h264 (mp4) or vp9/av1 (webm), and its
    audio as AAC (mp4) or Opus (webm) cut to the clip's length, as SaveVideo cuts the waveform."""
    images = video.images
    width, height = min(images.width, MAX_PIXELS_PER_SIDE), min(images.height, MAX_PIXELS_PER_SIDE)
    seconds = images.batch / video.fps
    colour = "0x{:02x}{:02x}{:02x}".format(*images.rgb)
    command = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r={video.fps}"]
    if video.audio is not None:
        command += ["-i", video.audio.path, "-map", "0:v", "-map", "1:a"]
        command += ["-c:a", "aac" if path.suffix == ".mp4" else "libopus", "-t", f"{seconds:.6f}"]
    command += ["-frames:v", str(images.batch), "-pix_fmt", "yuv420p"]
    command += {
        "h264": ["-c:v", "libx264", "-preset", "ultrafast"],
        "vp9": ["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32", "-deadline", "realtime", "-cpu-used", "8"],
        "av1": ["-c:v", "libsvtav1", "-preset", "12"],
    }[codec]
    for key, value in (metadata or {}).items():
        command += ["-metadata", f"{key}={value}"]
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path.name}: {result.stderr.strip()[-500:]}")


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    ImageOps.contain(Image.new("RGB", (64, 43), (200, 120, 40)), (512, 512)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
