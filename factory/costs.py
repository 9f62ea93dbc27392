"""What a job cost: its measured usage (the Job's ledger columns) at the rates (factory.models.Rate) valid
when it finished.

    ComfyUI     gpu_seconds / 3600 x the GPU hour of its template's pool (a pool without a rate of its own:
                the default pool's)
    TTS, render wall_seconds / 3600 x the CPU hour (no CPU rate: free)
    LLM         prompt tokens / 1e6 x the prompt rate + completion tokens / 1e6 x the completion rate of its
                model (a model without a rate of its own: the default row); its wall time waits on a remote
                API and costs no CPU hour

A failed or cancelled job costs what it consumed, like a finished one. A price that has no row at that
instant is 0: the ledger says what is known, and the admin lists the rates so a missing one shows.
Every amount is in settings.MCN_CURRENCY.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from factory.models import Job, JobKind, Rate, RateKind

AMOUNT_PLACES = Decimal("0.000001")  # the ledger's precision: a millionth of the currency
CPU_KINDS = (JobKind.TTS, JobKind.RENDER)
DEFAULT_POOL = "default"  # factory.queues.DEFAULT_POOL (not imported: queues pulls django_rq)


@dataclass(frozen=True)
class JobCost:
    gpu: Decimal
    llm: Decimal
    cpu: Decimal
    pool: str  # the GPU pool that ran it ("" = default; "" for CPU jobs too)
    cpu_seconds: float  # the wall time charged at the CPU hour (0 for GPU and LLM jobs)

    @property
    def total(self) -> Decimal:
        return self.gpu + self.llm + self.cpu


def _decimal(value) -> Decimal:
    return Decimal(str(value or 0))


def rate_at(kind: str, *, at: datetime, pool: str = "", model: str = "") -> Decimal:
    """The price of `kind` valid at `at` in MCN_CURRENCY: the row of this pool or model, else the default row;
    0 when none."""
    # Rates of another currency (entered before MCN_CURRENCY changed) are not summed with these.
    rates = Rate.objects.filter(kind=kind, valid_from__lte=at, currency=settings.MCN_CURRENCY).order_by("-valid_from")
    own = pool or model
    if own:
        price = rates.filter(pool=pool, model=model).values_list("price", flat=True).first()
        if price is not None:
            return price
    price = rates.filter(pool="", model="").values_list("price", flat=True).first()
    return price if price is not None else Decimal("0")


def job_pool(job: Job) -> str:
    """The GPU pool a ComfyUI job ran in ("" for the default pool, and for every other kind of job)."""
    if job.kind != JobKind.COMFYUI or job.template_id is None:
        return ""
    pool = job.template.gpu_pool
    return "" if pool == DEFAULT_POOL else pool


def job_cost_parts(job: Job, *, at: datetime | None = None) -> JobCost:
    """The job's cost, split GPU / LLM / CPU, at the rates valid at `at` (default: when it finished, else now)."""
    at = at or job.finished_at or timezone.now()
    pool = job_pool(job)
    gpu = llm = cpu = Decimal("0")
    cpu_seconds = 0.0
    if job.gpu_seconds and job.kind == JobKind.COMFYUI:
        gpu = _decimal(job.gpu_seconds) / 3600 * rate_at(RateKind.GPU_HOUR, at=at, pool=pool)
    if job.llm_prompt_tokens or job.llm_completion_tokens:
        model = job.llm_model
        llm = (
            Decimal(job.llm_prompt_tokens) * rate_at(RateKind.LLM_PROMPT, at=at, model=model)
            + Decimal(job.llm_completion_tokens) * rate_at(RateKind.LLM_COMPLETION, at=at, model=model)
        ) / Decimal(1_000_000)
    if job.kind in CPU_KINDS and job.wall_seconds:
        cpu_seconds = job.wall_seconds
        cpu = _decimal(cpu_seconds) / 3600 * rate_at(RateKind.CPU_HOUR, at=at)
    return JobCost(
        gpu=gpu.quantize(AMOUNT_PLACES),
        llm=llm.quantize(AMOUNT_PLACES),
        cpu=cpu.quantize(AMOUNT_PLACES),
        pool=pool,
        cpu_seconds=cpu_seconds,
    )


def job_cost(job: Job) -> Decimal:
    """What a finished job cost, in settings.MCN_CURRENCY, at the rates valid when it finished."""
    return job_cost_parts(job).total


def currency() -> str:
    return settings.MCN_CURRENCY
