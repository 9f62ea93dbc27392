"""Give GPU memory back between jobs: ComfyUI's models, and our own process's CUDA cache."""

import gc
import logging

from factory.comfyui import ComfyUIClient, ComfyUIError

log = logging.getLogger(__name__)


def release(client: ComfyUIClient | None, *, mode: str) -> None:
    """`mode`: "none", "unload_models" (drop models from VRAM) or "free_memory" (also ComfyUI's cache)."""
    if client is not None and mode in {"unload_models", "free_memory"}:
        try:
            client.free(unload_models=True, free_memory=mode == "free_memory")
        except ComfyUIError as error:
            log.info("could not free ComfyUI memory: %s", error)
    empty_torch_cache()


def empty_torch_cache() -> bool:
    """gc + torch.cuda.empty_cache() when torch with CUDA is importable (GPU workers only); True if it ran."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    # Only here: tensors caught in reference cycles hold CUDA memory until a full collection. Without
    # CUDA the process holds no GPU memory, and a full collection of a Django worker costs ~150 ms a
    # job on 2 vCPU (bench/factory_dispatch.py, B1/B3): most of the time between two prompts.
    gc.collect()
    torch.cuda.empty_cache()
    return True


def device_memory() -> dict | None:
    """Free/total bytes of this process's CUDA device, or None without torch+CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return {"device": torch.cuda.get_device_name(0), "free": free, "total": total}
