"""Give GPU memory back between jobs: ComfyUI's models, and our own process's CUDA cache."""

import gc
import logging

from factory.comfyui import ComfyUIClient, ComfyUIError

log = logging.getLogger(__name__)


MODES = ("auto", "none", "unload_models", "free_memory")  # FACTORY_FREE_AFTER_JOB

# The workflow (template row id) this process last ran on each ComfyUI server, by base URL: what that
# server has loaded, as far as we know (None: nothing, or unknown). Mode auto unloads on a change of it,
# and the GPU worker's dispatch (factory.dispatch) prefers jobs of it: both mean one thing by "workflow".
_last_workflow: dict[str, int | None] = {}


def loaded_workflow(base_url: str) -> int | None:
    """The workflow whose models this process left loaded on that server; None if none or unknown
    (a fresh worker, or a mode that unloads after every job)."""
    return _last_workflow.get(base_url.rstrip("/"))


def before_job(client: ComfyUIClient, *, workflow: int | None, mode: str) -> bool:
    """Mode "auto": unload ComfyUI's models before a job whose workflow is not the one this worker ran
    there last (or the first since the worker started: what is loaded is unknown). True if it freed.

    A backlog of one workflow keeps its checkpoint loaded: unloading after every job made ComfyUI load
    it again for the next (seconds a job on a GPU, and 10 ms of the gap between prompts even on the
    fake: bench B3). ComfyUI still evicts models on its own when a new one does not fit.
    """
    last = _last_workflow.get(client.base_url, "unknown")
    _last_workflow[client.base_url] = workflow  # in every mode: the dispatch asks what is loaded
    if mode != "auto" or last == workflow:
        return False
    _free(client, unload_models=True, free_memory=False)
    return True


def release(client: ComfyUIClient | None, *, mode: str) -> None:
    """After a job. `mode`: "none" and "auto" (see before_job) send nothing here, "unload_models" drops
    ComfyUI's models from VRAM, "free_memory" also its cache; then our own CUDA cache, where there is one."""
    if client is not None and mode in {"unload_models", "free_memory"}:
        _free(client, unload_models=True, free_memory=mode == "free_memory")
        _last_workflow[client.base_url] = None  # nothing loaded: no workflow to prefer
    empty_torch_cache()


def _free(client: ComfyUIClient, **what: bool) -> None:
    try:
        client.free(**what)
    except ComfyUIError as error:
        log.info("could not free ComfyUI memory: %s", error)


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
