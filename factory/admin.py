"""The ops console of the GPU factory: jobs, workflow templates, GPU workers.

Jobs are written by factory.services only (callers, `manage.py submit_job`, the
workers), so their pages are read-only and the two things ops may do to a job,
cancel and retry, are admin actions that call those services. The queue
dashboard (django-rq) is linked from here for ops; status is read from the
database, never from rq.
"""

import json
import re

import httpx
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince

from factory import preflight, selectors, services
from factory.comfyui import ComfyUIError
from factory.execution import client_for
from factory.models import GpuWorker, Job, JobEvent, JobOutput, JobStatus, Lane, Rate, RateKind, WorkflowTemplate
from factory.templating import infer_declarations
from mcn_site.lib.admin import ReadOnlyAdmin, ReadOnlyInline, badge, thumbnail
from mcn_site.lib.forms import AdminModelForm
from mcn_site.lib.roles import is_ops

STATUS_COLOURS = {
    JobStatus.QUEUED: "#d97706",
    JobStatus.RUNNING: "#2563eb",
    JobStatus.SUCCEEDED: "#16a34a",
    JobStatus.FAILED: "#dc2626",
    JobStatus.CANCELLED: "#6b7280",
}
BAR_COLOURS = {**STATUS_COLOURS, JobStatus.QUEUED: "#9ca3af"}
VIP_COLOUR = "#7c3aed"
GIB = 2**30


# --- small renderers ---------------------------------------------------------------------


# A list that json.dumps(indent=...) spread over lines, holding no list, object or bracket.
# A raw newline never occurs inside a JSON string, so "[\n" is always structure, never text.
_SCALAR_LIST = re.compile(r"\[\n[ ]+([^\[\]{}\n]+(?:\n[ ]+[^\[\]{}\n]+)*)\n[ ]*\]")


def json_text(value) -> str:
    """Indented JSON with lists of plain values kept on one line, as ComfyUI links read best: ["4", 1]."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _SCALAR_LIST.sub(lambda m: "[" + ", ".join(item.strip() for item in m.group(1).split(",\n")) + "]", text)


def nowrap(content) -> str:
    return format_html('<span style="white-space:nowrap">{}</span>', content)


def pretty_json(value, *, max_height: int = 360) -> str:
    """A JSON value as an indented, scrollable block (for params, overrides, workflows)."""
    if value in (None, {}, []):
        return "–"
    return format_html(
        '<pre style="margin:0;max-height:{}px;overflow:auto;white-space:pre-wrap;font-size:12px;'
        'background:var(--darkened-bg);padding:6px 8px;border-radius:4px">{}</pre>',
        max_height,
        json_text(value),
    )


def bar(percent: float, colour: str, *, width: int = 110) -> str:
    percent = min(100.0, max(0.0, percent))
    return format_html(
        '<span style="display:inline-block;vertical-align:middle;width:{}px;height:8px;border-radius:4px;'
        'background:var(--hairline-color, #e5e7eb);overflow:hidden">'
        '<span style="display:block;height:100%;width:{}%;background:{}"></span></span>',
        width,
        f"{percent:.1f}",
        colour,
    )


def duration_text(seconds: float) -> str:
    """1.5 s, 42 s, 3m 05s, 2h 07m."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def job_status_badge(job: Job) -> str:
    label = job.get_status_display()
    if job.status == JobStatus.RUNNING and job.cancel_requested:
        label = "Cancelling"
    return badge(label, STATUS_COLOURS.get(job.status, "#6b7280"))


def node_label(job: Job) -> str:
    """The node a job is at, named by its class from the template ("KSampler #3")."""
    if not job.progress_node:
        return ""
    workflow = job.template.workflow if job.template_id else None
    node = workflow.get(job.progress_node) if isinstance(workflow, dict) else None
    class_type = node.get("class_type") if isinstance(node, dict) else None
    return f"{class_type} #{job.progress_node}" if class_type else f"node {job.progress_node}"


def job_progress(job: Job) -> str:
    if not job.started_at and not job.progress_percent:
        return "–"  # never ran (queued, or cancelled while queued)
    where = node_label(job) if job.status == JobStatus.RUNNING else ""
    return format_html(
        '<span style="white-space:nowrap">{} <span style="font-variant-numeric:tabular-nums">{}%</span></span>{}',
        bar(job.progress_percent, BAR_COLOURS.get(job.status, "#6b7280"), width=60),
        f"{job.progress_percent:.0f}",
        format_html('<br><small style="color:var(--body-quiet-color)">{}</small>', where) if where else "",
    )


def job_duration(job: Job) -> str:
    if not job.started_at:
        return "–"
    if job.finished_at:
        return duration_text((job.finished_at - job.started_at).total_seconds())
    if job.status == JobStatus.RUNNING:
        return f"{duration_text((timezone.now() - job.started_at).total_seconds())}…"
    return "–"


def rq_dashboard_context(request) -> dict:
    """The queue dashboard link, for the users who may open it (ops only: it can empty queues)."""
    return {"rq_dashboard_url": reverse("django_rq:home")} if is_ops(request.user) else {}


# --- jobs -------------------------------------------------------------------------------


class JobOutputInline(ReadOnlyInline):
    model = JobOutput
    verbose_name_plural = "Outputs"
    fields = ["preview", "file_link", "attempt", "node_id", "kind", "content_type", "file_size", "sha256"]
    readonly_fields = fields

    @admin.display(description="Preview")
    def preview(self, output):
        if output.content_type.startswith("image/"):
            return format_html('<a href="{}">{}</a>', output.file.url, thumbnail(output.file, size=96))
        return "–"

    @admin.display(description="File")
    def file_link(self, output):
        return format_html('<a href="{}">{}</a>', output.file.url, output.original_name or output.file.name)

    @admin.display(description="Size")
    def file_size(self, output):
        return filesizeformat(output.size)


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    verbose_name_plural = "Event trail"
    fields = ["created_at", "kind", "message", "event_data"]
    readonly_fields = fields

    @admin.display(description="Data")
    def event_data(self, event):
        if not event.data:
            return ""
        return format_html(
            '<code style="font-size:11px">{}</code>', json.dumps(event.data, ensure_ascii=False, sort_keys=True)
        )


class JobChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        # The list never shows these, and a submitted workflow can weigh tens of KB per row.
        heavy = ("submitted_workflow", "error_details", "provenance")
        return super().get_queryset(request, exclude_parameters).defer(*heavy)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    empty_value_display = "–"
    list_display = [
        "job_id",
        "template_label",
        "subject",
        "status_label",
        "lane_label",
        "progress",
        "attempts_label",
        "error_kind_label",
        "worker",
        "duration",
        "created",
    ]
    list_display_links = ["job_id"]
    list_filter = ["status", "lane", "kind", "error_kind", "template", "created_at"]
    list_select_related = ["template"]
    search_fields = ["subject", "prompt_id", "worker_name", "error_message"]
    # Newest first (the changelist adds -pk as the tie-break); the status/lane/created index serves filtered lists.
    ordering = ["-created_at"]
    list_per_page = 50
    inlines = [JobOutputInline, JobEventInline]
    actions = ["cancel_jobs", "retry_jobs"]
    fieldsets = [
        (
            "Job",
            {"fields": ["kind", "template_link", "subject", "lane_label", "status_label", "cancel_requested"]},
        ),
        ("Parameters", {"fields": ["params_json", "overrides_json"]}),
        (
            "Run",
            {
                "fields": [
                    "progress_detail",
                    "attempts_label",
                    "retries",
                    "prompt_id",
                    "server",
                    "worker_name",
                    "rq_job",
                ]
            },
        ),
        (
            # The cost ledger's raw figures (what the job consumed); prices are applied elsewhere.
            "Usage",
            {
                "fields": [
                    "gpu_seconds",
                    "queue_seconds",
                    "wall_seconds",
                    "audio_seconds",
                    "llm_model",
                    "llm_prompt_tokens",
                    "llm_completion_tokens",
                ]
            },
        ),
        ("Error", {"fields": ["error_kind", "error_message", "error_details_json"]}),
        (
            "Times",
            {
                "fields": [
                    "created_by",
                    "created_at",
                    "queued_at",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                    "duration",
                ]
            },
        ),
        ("Submitted workflow", {"classes": ["collapse"], "fields": ["submitted_workflow_json"]}),
        ("Provenance", {"classes": ["collapse"], "fields": ["provenance_json"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("template", "created_by")

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not (obj.error_kind or obj.error_message):
            fieldsets = [fieldset for fieldset in fieldsets if fieldset[0] != "Error"]
        return fieldsets

    def get_inlines(self, request, obj):
        if obj is not None and not obj.outputs.exists():
            return [JobEventInline]
        return self.inlines

    def get_changelist(self, request, **kwargs):
        return JobChangeList

    # Jobs are made by services (callers, `manage.py submit_job`) and changed by workers:
    # no add page, a read-only job page, and only superusers may delete history.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # The changelist (obj None) needs it for the cancel/retry actions; a job page is view-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def changelist_view(self, request, extra_context=None):
        context = {"title": "Jobs", **rq_dashboard_context(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The job page offers the actions that apply to this job as buttons (posted to the changelist).
        buttons = []
        if obj is not None and self.has_change_permission(request):
            if obj.status == JobStatus.QUEUED or (obj.status == JobStatus.RUNNING and not obj.cancel_requested):
                buttons.append(("cancel_jobs", "Cancel job"))
            if obj.status in {JobStatus.FAILED, JobStatus.CANCELLED}:
                buttons.append(("retry_jobs", "Retry job"))
        context["job_buttons"] = buttons
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- columns ---------------------------------------------------------------

    @admin.display(description="Job", ordering="id")
    def job_id(self, job):
        return f"#{job.pk}"

    @admin.display(description="Template", ordering="template__name")
    def template_label(self, job):
        return nowrap(str(job.template) if job.template_id else job.get_kind_display())

    @admin.display(description="Worker", ordering="worker_name")
    def worker(self, job):
        return nowrap(job.worker_name) if job.worker_name else "–"

    @admin.display(description="Created", ordering="created_at")
    def created(self, job):
        local = timezone.localtime(job.created_at)
        today = local.date() == timezone.localdate()
        return format_html(
            '<span style="white-space:nowrap" title="{}">{}</span>',
            local.isoformat(timespec="seconds"),
            local.strftime("%H:%M" if today else "%b %d, %H:%M"),
        )

    @admin.display(description="ComfyUI server")
    def server(self, job):
        return job.server_url or "–"

    @admin.display(description="rq job id")
    def rq_job(self, job):
        return job.rq_job_id or "–"

    @admin.display(description="Template")
    def template_link(self, job):
        if not job.template_id:
            return "–"
        url = reverse("admin:factory_workflowtemplate_change", args=[job.template_id])
        return format_html('<a href="{}">{}</a>', url, job.template)

    @admin.display(description="Status", ordering="status")
    def status_label(self, job):
        return job_status_badge(job)

    @admin.display(description="Lane", ordering="lane")
    def lane_label(self, job):
        if job.lane == Lane.VIP:
            return badge("★ VIP", VIP_COLOUR)
        return job.get_lane_display()

    @admin.display(description="Progress", ordering="progress_percent")
    def progress(self, job):
        return job_progress(job)

    @admin.display(description="Progress")
    def progress_detail(self, job):
        steps = f"step {job.progress_value}/{job.progress_max}" if job.progress_max else ""
        where = " · ".join(part for part in [node_label(job), steps] if part)
        return format_html(
            "{} {}%{}",
            bar(job.progress_percent, BAR_COLOURS.get(job.status, "#6b7280"), width=220),
            f"{job.progress_percent:.1f}",
            format_html(" · {}", where) if where else "",
        )

    @admin.display(description="Attempts", ordering="attempts")
    def attempts_label(self, job):
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="Error", ordering="error_kind")
    def error_kind_label(self, job):
        if not job.error_kind:
            return ""
        return format_html('<span title="{}">{}</span>', job.error_message, job.get_error_kind_display())

    @admin.display(description="Duration")
    def duration(self, job):
        return nowrap(job_duration(job))

    @admin.display(description="Params")
    def params_json(self, job):
        return pretty_json(job.params)

    @admin.display(description="Overrides")
    def overrides_json(self, job):
        return pretty_json(job.overrides)

    @admin.display(description="Error details")
    def error_details_json(self, job):
        return pretty_json(job.error_details)

    @admin.display(description="How the output was made (factory.provenance)")
    def provenance_json(self, job):
        return pretty_json(job.provenance, max_height=640)

    @admin.display(description="Workflow sent to ComfyUI (last attempt)")
    def submitted_workflow_json(self, job):
        return pretty_json(job.submitted_workflow, max_height=640)

    # --- actions: each one a service call per job ------------------------------

    def _apply(self, request, queryset, call) -> list[Job]:
        done = []
        for job in queryset.order_by("pk"):
            try:
                done.append(call(job.pk))
            except ValidationError as error:  # JobStateError names the job and its state
                self.message_user(request, " ".join(error.messages), messages.ERROR)
        return done

    def _back(self, request):
        """From the job page's buttons, go back to that page; from the changelist, stay there."""
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
            return HttpResponseRedirect(target)
        return None

    @admin.action(description="Cancel", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        jobs = self._apply(request, queryset, lambda pk: services.job_cancel(job_id=pk, actor=request.user))
        cancelled = [job for job in jobs if job.status == JobStatus.CANCELLED]
        asked = [job for job in jobs if job.status == JobStatus.RUNNING]
        if cancelled:
            names = ", ".join(f"#{job.pk}" for job in cancelled)
            self.message_user(request, f"Cancelled {len(cancelled)} job(s): {names}.", messages.SUCCESS)
        for job in asked:
            self.message_user(
                request, f"{job} is running: its worker will interrupt it on the GPU server.", messages.WARNING
            )
        return self._back(request)

    @admin.action(description="Retry", permissions=["change"])
    def retry_jobs(self, request, queryset):
        jobs = self._apply(request, queryset, lambda pk: services.job_retry(job_id=pk, actor=request.user))
        if jobs:
            names = ", ".join(f"#{job.pk}" for job in jobs)
            self.message_user(request, f"Queued again {len(jobs)} job(s): {names}.", messages.SUCCESS)
        return self._back(request)


# --- workflow templates -----------------------------------------------------------------


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the value indented, one node per few lines."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if self.encoder is not None:
            return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)
        return json_text(value)


JSON_TEXTAREA = forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family:monospace;font-size:12px"})


class WorkflowTemplateForm(AdminModelForm):
    workflow = PrettyJSONField(
        widget=JSON_TEXTAREA,
        help_text="Paste ComfyUI's API format: in ComfyUI use Workflow › Export (API). "
        "Put {{KEY}} where a job's value goes (a seed, a prompt, an image).",
    )
    placeholders = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 100, "style": "font-family:monospace;font-size:12px"}),
        help_text='Declared parameters: {"SEED": {"type": "int", "default": 0}}. '
        "Leave empty to infer the types from where each {{KEY}} stands.",
    )

    class Meta:
        model = WorkflowTemplate
        fields = ["name", "description", "active", "gpu_pool", "workflow", "placeholders"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "cols": 100})}

    def clean(self):
        cleaned = super().clean()
        workflow = cleaned.get("workflow")
        if "placeholders" in cleaned and cleaned["placeholders"] in (None, ""):
            # Nothing declared: infer, as `manage.py import_workflow` does.
            cleaned["placeholders"] = infer_declarations(workflow) if isinstance(workflow, dict) else {}
        return cleaned


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(admin.ModelAdmin):
    empty_value_display = "–"
    form = WorkflowTemplateForm
    list_display = [
        "name",
        "version",
        "active",
        "gpu_pool",
        "node_count",
        "placeholder_keys",
        "job_count",
        "created_at",
    ]
    list_display_links = ["name", "version"]
    list_filter = ["active", "gpu_pool"]
    search_fields = ["name"]
    # Explicit: Meta.ordering is dropped from the GROUP BY query the job count makes.
    ordering = ["name", "-version"]
    actions = ["preflight_templates"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_jobs=Count("jobs"))

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # the version is the next free one for the name (factory.services.template_import)
            return [
                (
                    None,
                    {
                        "fields": [
                            "name",
                            "description",
                            "gpu_pool",
                            "workflow",
                            "placeholders",
                            "result_node",
                            "manifest",
                        ]
                    },
                )
            ]
        return [
            (None, {"fields": ["name", "version", "active", "gpu_pool", "description"]}),
            ("Workflow", {"fields": ["workflow", "placeholders", "result_node", "manifest"]}),
            ("📊 Meta", {"fields": ["job_count", "created_by", "created_at"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Jobs ask for a template by name and record the version they ran: both stay as they are.
        return ["name", "version", "job_count", "created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        saved = services.template_import(
            name=obj.name,
            workflow=obj.workflow,
            placeholders=obj.placeholders,
            description=obj.description,
            created_by=request.user,
            gpu_pool=obj.gpu_pool,
            result_node=obj.result_node or None,
            manifest=obj.manifest,
        )
        form.instance = saved
        obj.pk, obj.version, obj.created_by, obj.created_at = (
            saved.pk,
            saved.version,
            saved.created_by,
            saved.created_at,
        )
        return None

    @admin.display(description="Nodes")
    def node_count(self, template):
        return len(template.workflow) if isinstance(template.workflow, dict) else 0

    @admin.display(description="Placeholders")
    def placeholder_keys(self, template):
        keys = sorted(template.placeholders) if isinstance(template.placeholders, dict) else []
        if not keys:
            return "–"
        return format_html_join(" ", "<code>{}</code>", ((key,) for key in keys))

    @admin.display(description="Jobs", ordering="n_jobs")
    def job_count(self, template):
        count = getattr(template, "n_jobs", None)
        if count is None:
            count = template.jobs.count()
        url = reverse("admin:factory_job_changelist") + f"?template__id__exact={template.pk}"
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.action(description="Preflight against the GPU server", permissions=["view"])
    def preflight_templates(self, request, queryset):
        url = settings.COMFYUI_URL
        try:
            info = preflight.object_info(client_for(url), max_age=0)
        except ComfyUIError as error:
            reason = error.details.get("error") or error.message
            self.message_user(
                request, f"GPU server unreachable at {url} ({reason}): no template was checked.", messages.ERROR
            )
            return
        except (httpx.HTTPError, ValueError) as error:  # a 4xx, or not JSON: something else answers there
            self.message_user(
                request,
                f"The GPU server at {url} gave no node catalogue ({error}): no template was checked.",
                messages.ERROR,
            )
            return
        for template in queryset:
            problems = preflight.template_problems(template, info)
            if problems:
                self.message_user(request, f"✗ {template}: {' '.join(problems)}", messages.ERROR)
            else:
                self.message_user(
                    request, f"✓ {template}: every node, input and model checks out on {url}.", messages.SUCCESS
                )


# --- GPU workers ------------------------------------------------------------------------


def vram_bar(worker: GpuWorker) -> str:
    if not worker.vram_total:
        return "–"
    used = worker.vram_total - (worker.vram_free or 0)
    share = 100.0 * used / worker.vram_total
    colour = "#dc2626" if share >= 90 else "#d97706" if share >= 70 else "#16a34a"
    return format_html(
        '<span style="white-space:nowrap">{} <span style="font-variant-numeric:tabular-nums">{} / {} GiB</span></span>',
        bar(share, colour, width=70),
        f"{used / GIB:.1f}",
        f"{worker.vram_total / GIB:.1f}",
    )


@admin.register(GpuWorker)
class GpuWorkerAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The GPU workers as their heartbeats last reported them. Written only by the workers."""

    empty_value_display = "–"

    list_display = ["worker_name", "server", "reachable", "device", "vram", "current_job_link", "last_seen"]
    list_filter = ["server_reachable"]
    list_select_related = ["current_job__template"]
    search_fields = ["name", "server_url", "device_name"]
    fields = [
        "name",
        "server_url",
        "queues",
        "reachable",
        "device_name",
        "vram",
        "current_job_link",
        "last_seen",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("current_job__template")

    def changelist_view(self, request, extra_context=None):
        context = {"title": "GPU workers", **rq_dashboard_context(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    @admin.display(description="Worker", ordering="name")
    def worker_name(self, worker):
        return nowrap(worker.name)

    @admin.display(description="Server", ordering="server_url")
    def server(self, worker):
        return worker.server_url.removeprefix("http://")

    @admin.display(description="Device", ordering="device_name")
    def device(self, worker):
        # ComfyUI names it "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync": the card is what ops look for.
        short = re.sub(r"^cuda:\d+\s+", "", worker.device_name.split(" : ")[0])
        if not short:
            return "–"
        return format_html('<span title="{}">{}</span>', worker.device_name, short)

    @admin.display(description="ComfyUI", ordering="server_reachable")
    def reachable(self, worker):
        if worker.server_reachable:
            return badge("reachable", STATUS_COLOURS[JobStatus.SUCCEEDED])
        return badge("unreachable", STATUS_COLOURS[JobStatus.FAILED])

    @admin.display(description="VRAM used", ordering="vram_total")
    def vram(self, worker):
        return vram_bar(worker)

    @admin.display(description="Current job", ordering="current_job")
    def current_job_link(self, worker):
        job = worker.current_job
        if job is None:
            return "–"
        return format_html(
            '<a href="{}" title="{}" style="white-space:nowrap">#{}</a>',
            reverse("admin:factory_job_change", args=[job.pk]),
            f"{job} {job.subject}",
            job.pk,
        )

    @admin.display(description="Last seen", ordering="last_seen_at")
    def last_seen(self, worker):
        # A worker heartbeats every FACTORY_HEARTBEAT_SECONDS; three missed beats and its row is history.
        age = (timezone.now() - worker.last_seen_at).total_seconds()
        text = f"{duration_text(age)} ago" if age < 86400 else f"{timesince(worker.last_seen_at)} ago"
        stale = badge("stale", STATUS_COLOURS[JobStatus.FAILED]) if age > 3 * settings.FACTORY_HEARTBEAT_SECONDS else ""
        return format_html(
            '<span style="white-space:nowrap" title="{}">{}</span> {}',
            timezone.localtime(worker.last_seen_at).isoformat(timespec="seconds"),
            text,
            stale,
        )


# --- ops status page --------------------------------------------------------------------

WORKER_STATE_COLOURS = {selectors.LIVE: "#16a34a", selectors.STALE: "#d97706", selectors.GONE: "#6b7280"}


def ops_status_view(request):
    """/admin/factory/status/: workers and their GPUs, queue depths, throughput, the oldest queued job.

    Mounted in mcn_site.urls behind admin_view (staff login); the jobs' view permission decides who
    sees it (ops). The page reloads itself every 15 s.
    """
    if not request.user.has_perm("factory.view_job"):
        raise PermissionDenied
    snapshot = selectors.ops_snapshot(now=timezone.now())
    columns = GpuWorkerAdmin(GpuWorker, admin.site)  # the GPU worker list's renderers, reused
    workers = [
        {
            "name": status.worker.name,
            "server": columns.server(status.worker),
            "queues": ", ".join(status.queues) or "–",
            "state": badge(status.state, WORKER_STATE_COLOURS[status.state]),
            "comfyui": columns.reachable(status.worker),
            "device": columns.device(status.worker),
            "vram": vram_bar(status.worker),
            "free": f"{status.worker.vram_free / GIB:.1f} GiB free" if status.worker.vram_free is not None else "",
            "job": columns.current_job_link(status.worker),
            "last_seen": f"{duration_text(status.seconds_since_seen)} ago"
            if status.seconds_since_seen < 86400
            else f"{timesince(status.worker.last_seen_at, snapshot.now)} ago",
        }
        for status in snapshot.workers
    ]
    oldest = snapshot.oldest_queued
    context = {
        **admin.site.each_context(request),
        **rq_dashboard_context(request),
        "title": "Factory status",
        "snapshot": snapshot,
        "workers": workers,
        "jobs_url": reverse("admin:factory_job_changelist"),
        "workers_url": reverse("admin:factory_gpuworker_changelist"),
        "failure_percent": None
        if snapshot.failure_rate_last_day is None
        else f"{100 * snapshot.failure_rate_last_day:.1f}",
        "oldest": oldest,
        "oldest_age": duration_text(snapshot.oldest_queued_age.total_seconds()) if oldest else "",
        "oldest_url": reverse("admin:factory_job_change", args=[oldest.pk]) if oldest else "",
        "live_seconds": 3 * settings.FACTORY_HEARTBEAT_SECONDS,
    }
    return TemplateResponse(request, "admin/factory/status.html", context)


# --- rates (the cost ledger's prices) ----------------------------------------------------------


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    """Prices, ops only: a GPU hour per pool, a million LLM tokens per model, a CPU hour (factory.costs).

    A rate in force is history (jobs were priced at it): change a price by adding a rate valid from now.
    """

    list_display = ["kind", "pool_or_default", "model_or_default", "price", "currency", "valid_from", "note"]
    list_filter = ["kind", "pool", "currency"]
    search_fields = ["model", "pool", "note"]
    date_hierarchy = "valid_from"
    fields = ["kind", "pool", "model", "price", "currency", "valid_from", "note", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        machine = ["currency", "created_by", "created_at"]
        if obj is not None and obj.valid_from <= timezone.now():
            return [*machine, "kind", "pool", "model", "price", "valid_from"]
        return machine

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="GPU pool", ordering="pool")
    def pool_or_default(self, rate):
        return rate.pool or ("default" if rate.kind == RateKind.GPU_HOUR else "–")

    @admin.display(description="LLM model", ordering="model")
    def model_or_default(self, rate):
        return rate.model or ("any other" if rate.kind in (RateKind.LLM_PROMPT, RateKind.LLM_COMPLETION) else "–")
