"""Jobs the factory runs on GPU/CPU workers, the workflow templates they use, and the workers.

The Job row is the source of truth: Redis/rq only rings the doorbell. The factory
knows nothing of posts or artists; a caller names its work with a `subject` key
such as "post.42/shot.7" and hears back through factory.signals.job_changed.
A subject may end in "@<key>" (the inputs' hash: "post.42/shot.7/picture@3f2a..."): the part before
names the work, and a later job for the same work supersedes an earlier one (it is not retried).
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from factory.templating import manifest_problems, result_node_problems, template_problems


class PlaceholderType(models.TextChoices):
    STRING = "string", "Text"
    INT = "int", "Whole number"
    FLOAT = "float", "Number"
    BOOL = "bool", "Yes/no"
    IMAGE = "image", "Image file"
    AUDIO = "audio", "Audio file"


class WorkflowTemplate(models.Model):
    """A ComfyUI workflow in API format with declared `{{KEY}}` placeholders."""

    name = models.SlugField(max_length=100, help_text="Jobs ask for a template by this name (latest active version).")
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    workflow = models.JSONField(help_text="ComfyUI API format: node ids mapping to {class_type, inputs}.")
    placeholders = models.JSONField(
        default=dict,
        blank=True,
        help_text='Declared parameters: {"SEED": {"type": "int", "default": 0}, "PROMPT": {"type": "string"}}.',
    )
    manifest = models.JSONField(
        default=dict,
        blank=True,
        help_text='From <name>.manifest.json: {"step", "fps", "time_budget_seconds", "defaults", "models": '
        '[{"file", "folder", "bytes", "licence", "source"}]}. Preflight names a missing model file and where to '
        "get it; the watch loop waits time_budget_seconds for a long silent node.",
    )
    active = models.BooleanField(default=True)
    result_node = models.CharField(
        max_length=50,
        blank=True,
        help_text="The node whose saved file is the job's result (e.g. the SaveVideo). Required when the workflow "
        "saves files from several nodes; only this node's files are collected.",
    )
    gpu_pool = models.SlugField(
        max_length=50,
        blank=True,
        verbose_name="GPU pool",
        help_text="Which GPU machines run it: blank for the default pool, or a pool declared in MCN_GPU_POOLS "
        "(e.g. video, for workflows that need the 48 GB cards). Its workers run `run_gpu_worker --pool <name>`.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="workflowtemplate_name_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def clean(self) -> None:
        from factory.queues import pool_problem  # factory.queues imports this module

        if self.manifest is None:  # a blank manifest box in the admin: no manifest
            self.manifest = {}
        problems = template_problems(self.workflow, self.placeholders) + manifest_problems(self.manifest)
        problems += result_node_problems(self.workflow, self.result_node) if not problems else []
        if problems:
            raise ValidationError(problems)
        problem = pool_problem(self.gpu_pool)
        if problem:
            raise ValidationError({"gpu_pool": problem})


class JobKind(models.TextChoices):
    COMFYUI = "comfyui", "ComfyUI workflow"
    TTS = "tts", "Text to speech"
    RENDER = "render", "Video assembly"
    LLM = "llm", "LLM request"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Lane(models.TextChoices):
    VIP = "vip", "VIP"
    NORMAL = "normal", "Normal"


class ErrorKind(models.TextChoices):
    CONFIG = "config", "Configuration"
    UNREACHABLE = "unreachable", "Server unreachable"
    OOM = "oom", "Out of GPU memory"
    STALLED = "stalled", "Stalled"
    LOST = "lost", "Lost"
    EXECUTION = "execution", "Execution error"
    CANCELLED = "cancelled", "Cancelled"


class JobQuerySet(models.QuerySet):
    def unfinished(self) -> "JobQuerySet":
        return self.exclude(status__in=TERMINAL_STATUSES)

    def superseding(self, job: "Job") -> "JobQuerySet":
        """Jobs made after `job` for the same work: its subject, with any "@<key>" ending (none without a subject)."""
        if not job.subject:
            return self.none()
        work = job.subject.partition("@")[0]
        return self.filter(Q(subject=work) | Q(subject__startswith=f"{work}@"), pk__gt=job.pk)

    def stalled(self, *, before) -> "JobQuerySet":
        """Unfinished jobs that have shown no sign of life since `before` (the reconciler's list)."""
        return self.unfinished().filter(Q(heartbeat_at__lt=before) | Q(heartbeat_at__isnull=True, queued_at__lt=before))


class Job(models.Model):
    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.COMFYUI)
    template = models.ForeignKey(WorkflowTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs")
    params = models.JSONField(default=dict, blank=True, help_text="Placeholder values, by key.")
    overrides = models.JSONField(default=dict, blank=True, help_text='Node inputs by node id: {"3": {"steps": 30}}.')
    subject = models.CharField(max_length=200, blank=True, help_text="What the caller made this for: post.42/shot.7.")
    lane = models.CharField(max_length=10, choices=Lane.choices, default=Lane.NORMAL)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Prompts submitted so far (each one an attempt).")
    max_attempts = models.PositiveSmallIntegerField(default=3)
    retries = models.PositiveSmallIntegerField(default=0, help_text="Waits for an unreachable server so far.")
    # ComfyUI: our own prompt id, minted and stored before submitting, and where it was sent.
    prompt_id = models.CharField(max_length=64, blank=True)
    server_url = models.CharField(max_length=300, blank=True)
    submitted_workflow = models.JSONField(null=True, blank=True, editable=False)
    progress_node = models.CharField(max_length=200, blank=True)
    progress_value = models.PositiveIntegerField(default=0)
    progress_max = models.PositiveIntegerField(default=0)
    progress_percent = models.FloatField(default=0)
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True)
    error_message = models.TextField(blank=True, help_text="What went wrong, in words a producer can act on.")
    error_details = models.JSONField(default=dict, blank=True, help_text="For staff: node, exception, traceback.")
    cancel_requested = models.BooleanField(default=False)
    worker_name = models.CharField(max_length=200, blank=True)
    # The fencing token: job_start mints a new one at each claim (a take-over included), and every write
    # the worker makes afterwards is a conditional UPDATE on it, so a worker presumed dead that wakes up
    # (SIGSTOP, a long pause) finds its writes refused (services.ClaimLost) and stops quietly.
    claim = models.UUIDField(default=uuid.uuid4, editable=False, help_text="Token of the worker holding the job.")
    rq_job_id = models.CharField(max_length=100, blank=True)
    # The cost ledger's raw figures (posts and the admin price them with factory.models rates).
    # Filled by factory.services (job_start, _finish, job_record_usage) and factory.usage; see docs/architecture.md.
    gpu_seconds = models.FloatField(
        default=0,
        help_text="GPU execution time: execution_start to its end message, ComfyUI's own timestamps, summed over "
        "every prompt of the job (OOM and stall retries), each prompt once. 0 for CPU jobs (TTS, render, LLM).",
    )
    queue_seconds = models.FloatField(
        default=0,
        help_text="Waiting before execution began: queued_at to the first start by a worker (re-queues after a "
        "transient failure or a lost worker are not counted: queued_at is then the retry's due time), plus "
        "ComfyUI's own queue (our submit to its execution_start) for each prompt.",
    )
    wall_seconds = models.FloatField(
        default=0,
        help_text="Time in a worker's hands: from each start to the finish or the return to the queue, summed "
        "(the backoff between retries not counted).",
    )
    audio_seconds = models.FloatField(default=0, help_text="TTS: seconds of audio made (the WAV's length).")
    llm_model = models.CharField(max_length=200, blank=True, help_text="LLM: the model that answered (the last call).")
    llm_prompt_tokens = models.PositiveIntegerField(
        default=0, help_text="LLM: prompt tokens, from the answers' usage, summed over the job's calls."
    )
    llm_completion_tokens = models.PositiveIntegerField(
        default=0, help_text="LLM: completion tokens, from the answers' usage, summed over the job's calls."
    )
    provenance = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="How the output was made: template name/version/hash, params, seed, server version, model files, "
        "TTS model and voice, LLM model.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from the worker.")
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Admin job list and the queue panel: filter by status and lane, newest first.
            models.Index(fields=["status", "lane", "created_at"], name="job_status_lane_created_idx"),
            # Callers look up their jobs by subject (post.42/shot.7), and by its prefix: a post's jobs
            # ("post.42/%": the content cache, the ledger), a work's supersedings. On PostgreSQL a LIKE
            # 'prefix%' uses a btree only with the pattern operator class (other databases ignore it).
            models.Index(fields=["subject"], name="job_subject_idx", opclasses=["varchar_pattern_ops"]),
            # The reconciler's scan: unfinished jobs only.
            models.Index(
                fields=["heartbeat_at"],
                name="job_unfinished_heartbeat_idx",
                condition=Q(status__in=["queued", "running"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(lane__in=Lane.values), name="job_lane_valid"),
            models.CheckConstraint(
                condition=Q(progress_percent__gte=0, progress_percent__lte=100), name="job_progress_0_100"
            ),
            models.CheckConstraint(
                condition=~Q(kind="comfyui") | Q(template__isnull=False), name="job_comfyui_has_template"
            ),
        ]

    def __str__(self) -> str:
        label = self.template.name if self.template_id else self.get_kind_display()
        return f"Job {self.pk} ({label})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(models.Model):
    """Append-only trail of a job: status changes, attempts, errors, outputs."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["job", "created_at"], name="jobevent_job_created_idx")]  # the job page

    def __str__(self) -> str:
        return f"{self.job}: {self.kind}"


class OutputKind(models.TextChoices):
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"  # a clip: MP4/WebM, and animated WebP/GIF/PNG
    AUDIO = "audio", "Audio"


class JobOutput(models.Model):
    """A file a job produced, copied into our media storage (never served from ComfyUI)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    attempt = models.PositiveSmallIntegerField()
    node_id = models.CharField(max_length=50, blank=True)
    index = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to="factory/", max_length=300)
    original_name = models.CharField(max_length=300, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    kind = models.CharField(
        max_length=10, choices=OutputKind.choices, blank=True, help_text="A still, a clip or a sound ('' = older row)."
    )
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "attempt", "node_id", "index"]
        # Which job made a media file: the media access check (posts.selectors.media_visible_to).
        indexes = [models.Index(fields=["file"], name="joboutput_file_idx")]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "node_id", "index"], name="joboutput_unique_slot"),
        ]

    def __str__(self) -> str:
        return self.original_name or self.file.name


class GpuWorker(models.Model):
    """A worker process and the ComfyUI server it drives, as last heard from its heartbeat."""

    name = models.CharField(max_length=200, unique=True)
    server_url = models.CharField(max_length=300)
    queues = models.CharField(max_length=300, blank=True)
    device_name = models.CharField(max_length=200, blank=True)
    vram_total = models.PositiveBigIntegerField(null=True, blank=True)
    vram_free = models.PositiveBigIntegerField(null=True, blank=True)
    server_reachable = models.BooleanField(default=False)
    current_job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU worker"
        verbose_name_plural = "GPU workers"

    def __str__(self) -> str:
        return self.name


class RateKind(models.TextChoices):
    GPU_HOUR = "gpu_hour", "GPU hour (per pool)"
    CPU_HOUR = "cpu_hour", "CPU hour (TTS and render jobs)"
    LLM_PROMPT = "llm_prompt", "Million LLM prompt tokens (per model)"
    LLM_COMPLETION = "llm_completion", "Million LLM completion tokens (per model)"


def _default_currency() -> str:
    return settings.MCN_CURRENCY


class Rate(models.Model):
    """A price, valid from an instant until a later row of the same kind, pool and model replaces it.

    A price change is a new row (valid from now): a job is priced at the rates valid when it finished
    (factory.costs), so history keeps the prices it was made at. `pool` (GPU hours) is a declared GPU
    pool, blank for the default pool (also the price of a pool without a row of its own); `model`
    (LLM tokens) is the model the answer names, blank for the default row of every other model.
    """

    kind = models.CharField(max_length=20, choices=RateKind.choices)
    pool = models.SlugField(
        max_length=50, blank=True, verbose_name="GPU pool", help_text="GPU hours: blank = the default pool."
    )
    model = models.CharField(
        max_length=200, blank=True, verbose_name="LLM model", help_text="LLM tokens: blank = any other model."
    )
    price = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Per hour (GPU, CPU) or per million tokens (LLM), in the currency.",
    )
    currency = models.CharField(max_length=3, default=_default_currency, editable=False)
    valid_from = models.DateTimeField(
        default=timezone.now, help_text="From when jobs are priced at it (a later row of the same kind replaces it)."
    )
    note = models.CharField(max_length=200, blank=True, help_text="Where the price comes from (invoice, offer).")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["kind", "pool", "model", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "pool", "model", "currency", "valid_from"], name="rate_unique_from"
            ),
            models.CheckConstraint(condition=Q(kind__in=RateKind.values), name="rate_kind_valid"),
            models.CheckConstraint(condition=Q(price__gte=0), name="rate_price_not_negative"),
            # A pool only prices GPU hours, a model only LLM tokens.
            models.CheckConstraint(condition=Q(kind="gpu_hour") | Q(pool=""), name="rate_pool_only_gpu"),
            models.CheckConstraint(
                condition=Q(kind__in=["llm_prompt", "llm_completion"]) | Q(model=""), name="rate_model_only_llm"
            ),
        ]
        # factory.costs.rate_at: the latest row of a kind (and pool/model) valid at an instant.
        indexes = [models.Index(fields=["kind", "valid_from"], name="rate_kind_valid_from_idx")]

    def __str__(self) -> str:
        what = self.pool or self.model or "default"
        return f"{self.get_kind_display()} [{what}]: {self.price} {self.currency} from {self.valid_from:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        from factory.queues import DEFAULT_POOL, pool_problem  # factory.queues imports this module

        if self.pool == DEFAULT_POOL:
            self.pool = ""
        errors = {}
        if self.pool and self.kind != RateKind.GPU_HOUR:
            errors["pool"] = "Only GPU hours are priced per pool: leave it blank."
        elif self.pool and (problem := pool_problem(self.pool)):
            errors["pool"] = problem
        if self.model and self.kind not in (RateKind.LLM_PROMPT, RateKind.LLM_COMPLETION):
            errors["model"] = "Only LLM tokens are priced per model: leave it blank."
        if self.currency != settings.MCN_CURRENCY:
            errors["price"] = (
                f"This rate is in {self.currency} but the ledger counts in {settings.MCN_CURRENCY} (MCN_CURRENCY): "
                "add a new rate instead."
            )
        if errors:
            raise ValidationError(errors)
