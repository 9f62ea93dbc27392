"""How each output was made, kept on Job.provenance so a video can be reproduced or audited.

A ComfyUI job records, when its prompt is submitted: the template (name, version, content hash), the
values sent (media as the content-named files uploaded), the overrides, the seed, and the model files
its loader nodes named; at success, the version of the ComfyUI that ran it (/system_stats). A `tts`
job records the voice: model, mode, speaker id or the sha256 of the sample cloned, and the rate the
server spoke at. An `llm` job records its model. Every write is fenced by the worker's claim
(services.ClaimLost), like any other write of a worker.

    {"format": 1,
     "template": {"name": "portrait", "version": 3, "sha256": "9f2c..."},
     "params": {"SEED": 42, "PROMPT": "...", "FACE_IMAGE": "mcn/3b1f....png"}, "seed": 42,
     "models": [{"node": "1", "class_type": "UNETLoader", "input": "unet_name", "file": "qwen....safetensors",
                 "folder": "diffusion_models"}],
     "attempt": 1, "prompt_id": "...", "comfyui": {"version": "0.3.64", "device": "cuda:0 NVIDIA H100 ..."}}

    {"format": 1, "tts": {"engine": "cosyvoice", "model": "CosyVoice2-0.5B", "mode": "sft", "speaker": "中文女",
                          "sample_rate": 24000}, "params": {"text": "...", "spk_id": "中文女"}}

    {"format": 1, "llm": {"model": "deepseek-chat", "mode": "llm"}}
"""

import hashlib
import json
import logging
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from factory.comfyui import ComfyUIError
from factory.models import Job, JobStatus
from factory.preflight import node_order_key
from factory.services import ClaimLost

log = logging.getLogger(__name__)

FORMAT = 1

# Inputs that name a model file on the loader nodes of our templates and of the old stack's workflows:
# core (CheckpointLoaderSimple, UNETLoader, CLIPLoader, DualCLIPLoader, VAELoader, LoraLoader(ModelOnly),
# CLIPVisionLoader, ModelPatchLoader, AudioEncoderLoader, UpscaleModelLoader, ControlNetLoader) and
# Kijai's WanVideo nodes (WanVideoModelLoader, WanVideoVAELoader, WanVideoLoraSelect,
# LoadWanVideoClipTextEncoder, DownloadAndLoadWav2VecModel).
MODEL_INPUTS = frozenset(
    {
        *("ckpt_name", "unet_name", "vae_name", "lora_name", "lora", "model_name", "model", "name"),
        *("clip_name", "clip_name1", "clip_name2", "clip_name3", "clip_name4", "clip_vision_name"),
        *("audio_encoder_name", "wav2vec_model", "wav2vec2_model", "control_net_name", "upscale_model_name"),
        *("style_model_name", "gligen_name", "patch_name", "model_path"),
    }
)
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
_LOADER_WORDS = ("load", "select")  # a class whose name has neither is not a loader: its "model" is a link or text

_VERSIONS: dict[str, tuple[float, dict]] = {}  # ComfyUI's version and device, by server (base URL)


# --- pure helpers -----------------------------------------------------------------------------------


def canonical_json(value) -> bytes:
    """One byte string per JSON value whatever the key order or spacing (the hashed form)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def template_hash(template) -> str:
    """sha256 of the canonical JSON of the template's workflow, placeholders and manifest: what it makes."""
    manifest = template.manifest or {}
    content = {"workflow": template.workflow, "placeholders": template.placeholders, "manifest": manifest}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def template_facts(template) -> dict:
    return {"name": template.name, "version": template.version, "sha256": template_hash(template)}


def _is_loader(class_type: str) -> bool:
    lowered = class_type.lower()
    return any(word in lowered for word in _LOADER_WORDS)


def model_files(workflow: dict, manifest: dict | None = None) -> list[dict]:
    """The model files a submitted (placeholder-free) workflow's loader nodes name, in node order.

    A value counts when it stands in a model input of a loader class (ckpt_name on CheckpointLoaderSimple,
    name on ModelPatchLoader, ...), ends like a model file in any input, or is one of the manifest's
    `models` files; the manifest also gives its folder.
    """
    folders = {}
    for entry in (manifest or {}).get("models") or []:
        if isinstance(entry, dict) and entry.get("file"):
            folders[str(entry["file"])] = str(entry.get("folder") or "")
    found = []
    for node_id in sorted(workflow, key=node_order_key):
        node = workflow[node_id]
        if not isinstance(node, dict):
            continue
        class_type = str(node.get("class_type") or "")
        for name, value in (node.get("inputs") or {}).items():
            if not isinstance(value, str) or not value.strip():
                continue  # a link ([node, slot]) or a number
            basename = value.rsplit("/", 1)[-1]
            known = value in folders or basename in folders
            looks = value.lower().endswith(MODEL_SUFFIXES)
            loader, model_input = _is_loader(class_type), name in MODEL_INPUTS
            if known or (loader and (model_input or looks)) or (looks and model_input):
                entry = {"node": str(node_id), "class_type": class_type, "input": name, "file": value}
                folder = folders.get(value) or folders.get(basename)
                if folder:
                    entry["folder"] = folder
                found.append(entry)
    return found


def seed_of(values: dict, workflow: dict) -> int | None:
    """The seed the job ran with: its SEED value, else the first sampler's seed/noise_seed in the workflow."""
    for key, value in values.items():
        if key.upper() == "SEED" and isinstance(value, int) and not isinstance(value, bool):
            return value
    for node_id in sorted(workflow, key=node_order_key):
        node = workflow[node_id]
        inputs = (node.get("inputs") or {}) if isinstance(node, dict) else {}
        for name in ("seed", "noise_seed"):
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def server_facts(client, *, max_age: float | None = None) -> dict:
    """{"version", "device"} of a ComfyUI server from its /system_stats, cached per server for `max_age`
    seconds (FACTORY_PREFLIGHT_CACHE_SECONDS): a version changes only when the server restarts."""
    max_age = settings.FACTORY_PREFLIGHT_CACHE_SECONDS if max_age is None else max_age
    cached = _VERSIONS.get(client.base_url)
    if cached and time.monotonic() - cached[0] < max_age:
        return cached[1]
    stats = client.system_stats()
    system = stats.get("system") or {}
    devices = stats.get("devices") or [{}]
    facts = {"version": str(system.get("comfyui_version") or ""), "device": str(devices[0].get("name") or "")}
    _VERSIONS[client.base_url] = (time.monotonic(), facts)
    return facts


def forget_server(base_url: str) -> None:
    _VERSIONS.pop(base_url.rstrip("/"), None)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the service --------------------------------------------------------------------------------------


@transaction.atomic
def job_provenance_record(*, job_id: int, claim, **facts) -> dict:
    """Merge `facts` into the job's provenance (top-level keys replaced) and return it; ClaimLost when `claim`
    no longer holds the running job (a worker presumed dead writes nothing)."""
    # Race: a take-over between the read and the write; the row lock holds it until commit, and the
    # UPDATE's own claim filter refuses the write of a worker whose claim has moved on.
    held = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING, claim=claim)
    current = held.values_list("provenance", flat=True).first()
    if current is None:
        raise ClaimLost(job_id, claim)
    provenance = {**(current or {}), "format": FORMAT, **facts}
    if not held.update(provenance=provenance):
        raise ClaimLost(job_id, claim)
    return provenance


# --- what the runners call ---------------------------------------------------------------------------


def record_submission(job: Job, *, workflow: dict, values: dict, attempt: int, prompt_id: str) -> dict:
    """At submit: the template, the values and overrides sent, the seed and the loader nodes' model files."""
    template = job.template
    facts = {
        "template": template_facts(template),
        "params": values,
        "seed": seed_of(values, workflow),
        "models": model_files(workflow, template.manifest),
        "attempt": attempt,
        "prompt_id": prompt_id,
    }
    if job.overrides:
        facts["overrides"] = job.overrides
    return job_provenance_record(job_id=job.pk, claim=job.claim, **facts)


def record_server(job: Job, client) -> dict | None:
    """At success: the version (and device) of the ComfyUI that ran the prompt. A server that does not answer
    /system_stats now leaves the version blank: the job's own result is not at stake."""
    try:
        facts = server_facts(client)
    except (ComfyUIError, OSError, ValueError) as error:
        log.warning("job %s: ComfyUI version not known (%s)", job.pk, error)
        facts = {"version": "", "device": ""}
    return job_provenance_record(job_id=job.pk, claim=job.claim, comfyui=facts)


def record_voice(job: Job, *, params: dict, prompt_wav: Path | None, output: Path) -> dict:
    """A tts job's voice: the model (COSYVOICE_MODEL: the server does not say), the mode, the built-in speaker or
    the sha256 of the sample cloned, and the rate the WAV came out at (the server's, when it sent one)."""
    import wave

    voice = {"engine": "cosyvoice", "model": settings.COSYVOICE_MODEL}
    sent = {"text": str(params.get("text") or "")}
    if prompt_wav is not None:
        sample = _sha256_of(prompt_wav)
        voice.update(mode="zero_shot", sample_sha256=sample)
        sent.update(prompt_text=str(params.get("prompt_text") or ""), prompt_wav_sha256=sample)
    else:
        voice.update(mode="sft", speaker=str(params.get("spk_id") or ""))
        sent["spk_id"] = voice["speaker"]
    try:
        with wave.open(str(output), "rb") as reader:
            voice["sample_rate"] = reader.getframerate()
    except (OSError, wave.Error, EOFError):
        pass
    return job_provenance_record(job_id=job.pk, claim=job.claim, tts=voice, params=sent)


def record_llm(job: Job, *, mode: str) -> dict:
    """An llm job's model: the one the answer named (Job.llm_model, from the usage), else the one asked for;
    mode "offline" (no LLM key: the offline director wrote it) names none."""
    model = ""
    if mode == "llm":
        model = Job.objects.filter(pk=job.pk).values_list("llm_model", flat=True).first() or settings.LLM_MODEL
    return job_provenance_record(job_id=job.pk, claim=job.claim, llm={"model": model, "mode": mode})


# --- reading it back ---------------------------------------------------------------------------------------


def summary(job: Job | None) -> dict | None:
    """A compact, display-ready view of a finished job's provenance (None when there is none to show)."""
    if job is None or job.status != JobStatus.SUCCEEDED:
        return None
    data = job.provenance or {}
    if not data:
        return None
    out: dict = {"job": job.pk}
    template = data.get("template")
    if template:
        out["template"] = {
            "name": template.get("name", ""),
            "version": template.get("version"),
            "sha256": template.get("sha256", ""),
        }
        out["seed"] = data.get("seed")
        out["models"] = [entry.get("file", "") for entry in data.get("models") or []]
        out["comfyui_version"] = (data.get("comfyui") or {}).get("version", "")
    if data.get("tts"):
        voice = data["tts"]
        out["tts"] = {
            "model": voice.get("model", ""),
            "mode": voice.get("mode", ""),
            "voice": voice.get("speaker") or (f"sample {voice['sample_sha256']}" if voice.get("sample_sha256") else ""),
        }
    if data.get("llm"):
        out["llm"] = {"model": data["llm"].get("model", ""), "mode": data["llm"].get("mode", "")}
    return out
